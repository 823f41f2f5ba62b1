"""Real servers for the tests: private InfluxDB and MariaDB on loopback, and the simulator."""
import datetime as dt
import itertools
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hypothesis import settings  # noqa: E402

from qmonit.dev import devservers  # noqa: E402

# Fewer examples than hypothesis' default keep `make test` within its time budget; the
# integration properties set their own, smaller counts.
settings.register_profile("qmonit", max_examples=40, deadline=None)
settings.load_profile("qmonit")

RECORDED = ROOT / "tests" / "data" / "recorded"

# The suite's one clock, read once. Every time a test writes to the servers derives from it:
# near now, so inside every retention policy on any day (and a year ahead under libfaketime).
# Pure tests may use fixed dates; nothing with a fixed date reaches a retention policy.
CLOCK = dt.datetime.now(dt.UTC)


def recent_hour(back=3):
    """The start of the UTC hour `back` hours before the suite's clock."""
    return CLOCK.replace(minute=0, second=0, microsecond=0) - dt.timedelta(hours=back)


def recent_slot(back=2):
    """The start of the 10-minute slot `back` slots before the suite's clock."""
    start = CLOCK.replace(minute=CLOCK.minute - CLOCK.minute % 10, second=0, microsecond=0)
    return start - back * dt.timedelta(minutes=10)


def stamp(moment):
    """The --timestamp text of a datetime."""
    return moment.strftime("%Y-%m-%d %H:%M:%S")
_names = itertools.count()


def free_port():
    return devservers.free_port()


def free_port_url():
    """A loopback URL where nothing listens: connections are refused."""
    return f"http://127.0.0.1:{devservers.free_port()}"


@pytest.fixture(scope="session")
def influx_server(tmp_path_factory):
    server = devservers.start_influxdb(tmp_path_factory.mktemp("influxdb"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def mariadb_server(tmp_path_factory):
    server = devservers.start_mariadb(tmp_path_factory.mktemp("mariadb"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def simulator():
    from qmonit.dev.simulator import Simulator
    sim = Simulator(seed=7, series=3000)
    sim.start()
    yield sim
    sim.stop()


@pytest.fixture
def sim(simulator):
    """The session's simulator, with no faults or anomalies left over from another test."""
    simulator.clear_faults()
    simulator.clear_anomalies()
    yield simulator
    simulator.clear_faults()
    simulator.clear_anomalies()


def write_config(path, influx_url, mysql_port, database, sim_url, data_dir, extra=""):
    from qmonit.dev.configfile import config_text
    text = config_text(influx_url, mysql_port, database, sim_url, data_dir,
                       panda={"timeout": 5}, cric={"timeout": 5})
    path.write_text(text + extra)
    return path


@pytest.fixture
def database_name():
    """A fresh database/schema name per test, so tests never see each other's data."""
    return f"qmonit_test_{next(_names)}"


@pytest.fixture
def config_path(tmp_path, influx_server, mariadb_server, sim, database_name):
    return write_config(tmp_path / "config.cfg", influx_server.url, mariadb_server.port,
                        database_name, sim.url, tmp_path / "data")


@pytest.fixture
def config(config_path):
    from qmonit.core import config as config_module
    return config_module.load(str(config_path), str(ROOT / "fetch_queues.py"))


@pytest.fixture
def influx(config):
    from qmonit.sinks.influx import Influx
    return Influx.from_config(config)


@pytest.fixture
def mysql(config):
    from qmonit.sinks.mysqlstore import MySQLStore
    store = MySQLStore.from_config(config)
    yield store
    store.close()


def split_unescaped(text, sep):
    """Split on sep where it is not preceded by a backslash escape (the parser's rule)."""
    parts, current, i = [], "", 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text):
            current += text[i:i + 2]
            i += 2
            continue
        if text[i] == sep:
            parts.append(current)
            current = ""
        else:
            current += text[i]
        i += 1
    parts.append(current)
    return parts
