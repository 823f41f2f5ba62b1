"""downsample.py rolls up hours a spool replay wrote late, however old (issue 12)."""
import datetime as dt
import itertools

from conftest import CLOCK

from qmonit.core import schema
from qmonit.core.config import Config
from qmonit.jobs import downsample, transform
from qmonit.sinks.influx import Influx
from qmonit.sinks.spool import Spool

_names = itertools.count()
TAGS = {"panda_queue": "Q", "prod_source": "managed", "resource": "SCORE",
        "job_status": "running", "atlas_site": "S"}


def test_hours_replayed_late_are_rolled_up(influx_server, tmp_path):
    database = f"qmonit_late_{next(_names)}"
    config = Config.from_string(f"""[credentials]
database = {database}
[influxdb]
url = {influx_server.url}
[paths]
data_dir = {tmp_path / "data"}
""", path=tmp_path / "config.cfg", base_dir=tmp_path)
    influx = Influx.from_config(config)
    influx.ensure_database()
    wall = int(CLOCK.timestamp())
    hour = wall - wall % 3600 - 72 * 3600           # past the 48 h look-back, inside 10m's 7 days
    lines = transform.encode(schema.JOBS, [
        transform.Point(TAGS, {"jobs": n}, hour + 600 * i) for i, n in enumerate((3, 5, 7))])
    # A slot an earlier run could not write, replayed now.
    Spool(tmp_path / "data" / "spool").put(database, schema.RP_10M, lines)
    assert influx.flush_spool() == 3
    assert influx.spool.late_hours() == [hour]
    assert downsample.run(config, CLOCK, "1h", influx=influx) == 0
    [series] = influx.query(f'SELECT "jobs", "jobs_sum", "samples" FROM {schema.JOBS_1H.qualified}'
                            f' WHERE time = {hour}s')
    assert series and series[0]["values"][0][1:] == [5, 15, 3]
    assert influx.spool.late_hours() == []
    # Hours not complete yet wait for a later run.
    current = wall - wall % 3600
    influx.spool.add_late_hours([current])
    assert downsample.run(config, CLOCK, "1h", influx=influx) == 0
    assert influx.spool.late_hours() == [current]
    influx.query(f'DROP DATABASE "{database}"')
    assert dt.timedelta(seconds=wall - hour) > dt.timedelta(hours=48)
