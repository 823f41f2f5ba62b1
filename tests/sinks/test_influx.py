"""sinks/influx.py on a real InfluxDB: retention policies, the spool, chunked reads, quoting."""
import itertools

import pytest
from conftest import CLOCK

from qmonit.core import lineprotocol
from qmonit.core.config import Config
from qmonit.core.errors import ConfigError, SinkError
from qmonit.core.influxql import quote_ident, quote_string
from qmonit.sinks import influx as influx_module
from qmonit.sinks.influx import Influx

_names = itertools.count()


@pytest.fixture
def db(influx_server, tmp_path):
    """A fresh database on the session's InfluxDB, spooling under tmp_path/spool."""
    client = Influx(influx_server.url, f"qmonit_influx_{next(_names)}",
                    spool_dir=tmp_path / "spool")
    yield client
    client.query(f"DROP DATABASE {quote_ident(client.database)}")


def policies(client):
    (series,) = client.query(f"SHOW RETENTION POLICIES ON {quote_ident(client.database)}")[0]
    return {row[0]: (influx_module.duration_seconds(row[1]),
                     influx_module.duration_seconds(row[2])) for row in series["values"]}


# One timestamp for the whole file: lines for "the same point" must be the same second.
NOW = int(CLOCK.timestamp())


def now_line(value, measurement="probe"):
    return f"{measurement},k=v value={value}i {NOW}"


def values(client, measurement="probe"):
    series = client.query(f'SELECT "value" FROM "10m".{quote_ident(measurement)}')[0]
    return [row[1] for s in series for row in s["values"]]


# --- retention policies ---------------------------------------------------------------------

def test_ensure_database_creates_the_policies(db):
    db.ensure_database()
    rps = policies(db)
    assert rps == {"autogen": rps["autogen"], "10m": (7 * 86400, 7 * 86400),
                   "1h": (180 * 86400, 7 * 86400), "1d": (0, 7 * 86400)}
    db.ensure_database()  # idempotent
    assert policies(db) == rps


def test_an_existing_10m_policy_gets_week_long_shard_groups(db):
    """24 h of 10m points in one shard group (grouped reads cost per series and shard); the
    points already there stay."""
    db.query(f"CREATE DATABASE {quote_ident(db.database)}")
    db.query(f'CREATE RETENTION POLICY "10m" ON {quote_ident(db.database)} DURATION 7d '
             "REPLICATION 1")
    assert policies(db)["10m"] == (7 * 86400, 86400)
    db.write_lines("10m", [now_line(4)])
    db.ensure_database()
    assert policies(db)["10m"] == (7 * 86400, 7 * 86400)
    assert values(db) == [4]


def test_changed_durations_are_applied(db):
    db.ensure_database()
    # Shorter than the existing shard groups (180d and INF have 7-day groups): influxd refuses
    # that unless the shard group duration changes with it.
    db.ensure_database({"10m": "2d", "1h": "3d", "1d": "5d"})
    rps = policies(db)
    assert rps["10m"] == (2 * 86400, 86400)
    assert rps["1h"] == (3 * 86400, 86400)
    assert rps["1d"] == (5 * 86400, 86400)
    db.ensure_database({"10m": "30h", "1h": "400d", "1d": "INF"})
    rps = policies(db)
    assert rps["10m"] == (30 * 3600, 3600)
    assert rps["1h"] == (400 * 86400, 7 * 86400)
    assert rps["1d"] == (0, 7 * 86400)
    db.ensure_database({"10m": "8d"})
    assert policies(db)["10m"] == (8 * 86400, 7 * 86400)


def test_data_survives_a_duration_change(db):
    db.ensure_database()
    db.write_lines("10m", [now_line(3)])
    db.ensure_database({"10m": "3d"})
    assert values(db) == [3]


def config_with(text, tmp_path):
    return Config.from_string(f"[influxdb]\n{text}\n", path=tmp_path / "c.cfg")


def test_retention_durations_from_config(tmp_path):
    assert influx_module.retention_durations(config_with("", tmp_path)) == {
        "10m": "7d", "1h": "180d", "1d": "INF"}
    got = influx_module.retention_durations(config_with("rp_1h = 1h30m\nrp_1d = 520w", tmp_path))
    assert got["1h"] == "1h30m" and got["1d"] == "520w"
    with pytest.raises(ConfigError, match=r"\[influxdb\] rp_1d"):
        influx_module.retention_durations(config_with("rp_1d = forever", tmp_path))
    with pytest.raises(ConfigError, match=r"\[influxdb\] rp_10m.*25h"):
        influx_module.retention_durations(config_with("rp_10m = 24h", tmp_path))


def test_shard_durations_follow_influxd():
    assert influx_module.shard_duration(0) == "7d"
    assert influx_module.shard_duration(180 * 86400) == "7d"
    assert influx_module.shard_duration(179 * 86400) == "1d"
    assert influx_module.shard_duration(2 * 86400) == "1d"
    assert influx_module.shard_duration(47 * 3600) == "1h"


# --- reading ----------------------------------------------------------------------------------

def test_query_chunks_reads_everything_past_the_row_limit(db):
    db.ensure_database()
    start = NOW - 3600
    db.write_lines("10m", [f"probe,k=s{i % 7} value={i}i {start + i}" for i in range(2500)])
    series = list(db.query_chunks('SELECT "value", "k"::tag FROM "10m"."probe"', chunk_size=300))
    assert len(series) > 1
    rows = [row for s in series for row in s["values"]]
    assert sorted(row[1] for row in rows) == list(range(2500))
    assert all(row[2] == f"s{row[1] % 7}" for row in rows)


def test_query_errors_name_the_server(db):
    with pytest.raises(SinkError, match="database not found") as failure:
        list(db.query_chunks('SELECT * FROM "10m"."probe"'))
    assert db.url in str(failure.value)
    with pytest.raises(SinkError, match="error parsing query"):
        db.query("SELEC nothing")


def test_quoting_round_trips_odd_names(db):
    db.ensure_database()
    name, tag = 'we"ird na,me', "it's a\\b"
    db.write_lines("10m", [f"{lineprotocol.escape_measurement(name)},"
                           f"k={lineprotocol.escape_key(tag)} value=1i {NOW}"])
    series = db.query(f'SELECT "value" FROM "10m".{quote_ident(name)} '
                      f'WHERE "k" = {quote_string(tag)}')[0]
    assert [row[1] for row in series[0]["values"]] == [1]


def test_points_beyond_retention_are_not_spooled(db, tmp_path):
    """InfluxDB drops them as beyond retention now and on every replay: never kept."""
    db.ensure_database()
    # 1970: past the 7-day policy by the server's clock whatever the client's (libfaketime).
    old = 86400
    with pytest.raises(SinkError) as e:
        db.write_lines("10m", [f"probe,k=v value=1i {old}"])
    assert "beyond retention policy" in str(e.value) and "not kept" in str(e.value)
    assert not [p for p in (tmp_path / "spool").glob("*") if not p.name.startswith(".")]


def test_check_retained_names_the_slot_and_the_duration(db):
    import datetime as dt
    slot = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    day = 86400
    db.check_retained("10m", slot, wall=slot.timestamp() + 7 * day - 1)    # still held
    db.check_retained("1d", slot, wall=slot.timestamp() + 10**9)            # INF holds all
    with pytest.raises(SinkError, match=r"slot 2026-01-01 00:00:00 UTC is older than the 10m "
                                        r"retention policy \(7d\); nothing written"):
        db.check_retained("10m", slot, wall=slot.timestamp() + 7 * day + 1)


def test_an_answer_that_is_not_json_names_the_server(tmp_path):
    """A proxy's HTML page with status 200: one SinkError naming InfluxDB, never 'unexpected'."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Html(BaseHTTPRequestHandler):
        def do_POST(self):
            body = b"<html>login</html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Html)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        client = Influx(f"http://127.0.0.1:{server.server_port}", "db",
                        spool_dir=tmp_path / "spool")
        with pytest.raises(SinkError, match="bad answer") as e:
            client.query("SHOW DATABASES")
        assert f"InfluxDB http://127.0.0.1:{server.server_port}" in str(e.value)
    finally:
        server.shutdown()


# --- split writes -------------------------------------------------------------------------

def test_a_split_write_writes_every_piece_or_keeps_them_all(db, influx_server, tmp_path):
    from qmonit.dev.devservers import free_port

    db.ensure_database()
    lines = [f"probe,k={i} value={i}i {NOW}" for i in range(25)]
    assert db.write_lines_split("10m", lines, parts=2, at_least=10) == 25
    assert sorted(values(db)) == list(range(25))
    assert not [p for p in (tmp_path / "spool").glob("*") if not p.name.startswith(".")]
    # InfluxDB unreachable: both pieces stay in the spool, and the next writer replays them.
    down = Influx(f"http://127.0.0.1:{free_port()}", db.database, spool_dir=tmp_path / "later")
    late = [line.replace("probe,", "late,") for line in lines]
    with pytest.raises(SinkError) as e:
        down.write_lines_split("10m", late, parts=2, at_least=10)
    assert "kept in" in str(e.value)
    assert len([p for p in (tmp_path / "later").glob("*") if not p.name.startswith(".")]) == 2
    Influx(influx_server.url, db.database, spool_dir=tmp_path / "later").flush_spool()
    assert sorted(values(db, "late")) == list(range(25))
