"""fetch_queues.py when things go wrong (issue 12): sinks independent, state advanced only when
the slot is kept, bad records left out, the clock ahead. Real InfluxDB, MariaDB, simulator."""
import copy
import datetime as dt
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from conftest import CLOCK, recent_hour, stamp, write_config

import fetch_queues
from qmonit.core import schema
from qmonit.dev.simulator import config_urls
from qmonit.jobs import fetch

T = recent_hour()
TS = stamp(T + dt.timedelta(minutes=3))


def run(config_path, *args):
    return fetch_queues.main(["--config", str(config_path), *args])


def flatten(stats):
    return {(q, l, r, s): n for q, ls in stats.items() for l, rs in ls.items()
            for r, ss in rs.items() for s, n in ss.items()}


def influx_counts(influx, slot=T):
    series = influx.query(
        f'SELECT "jobs" FROM {schema.JOBS.qualified} WHERE time = {int(slot.timestamp())}s '
        'GROUP BY "panda_queue", "prod_source", "resource", "job_status"')[0]
    return {tuple(s["tags"][k] for k in schema.SERIES_KEY): s["values"][0][1] for s in series}


def time_window_at(influx, slot):
    [series] = influx.query(f'SELECT "time_window" FROM {schema.JOBS.qualified} '
                            f'WHERE time = {int(slot.timestamp())}s LIMIT 1')
    return series[0]["values"][0][1]


def mysql_keys(mysql):
    return {tuple(r) for r in mysql.select("SELECT panda_queue, prod_source, resource FROM jobs")}


def runs_errors(influx, slot=T):
    [series] = influx.query(f'SELECT "errors", "status" FROM {schema.RUNS.qualified} '
                            f'WHERE time = {int(slot.timestamp())}s')
    return [row[1:] for s in series for row in s["values"]]


def config_for(tmp_path, influx_url, mysql_port, database, sim, **urls):
    path = write_config(tmp_path / "c.cfg", influx_url, mysql_port, database, sim.url,
                        tmp_path / "data")
    text = path.read_text()
    for key, url in urls.items():
        name = "url" if key == "panda_url" else key
        old = f"\n{name} = {config_urls(sim.url)[key]}\n"
        assert old in text
        text = text.replace(old, f"\n{name} = {url}\n")
    path.write_text(text)
    return path


class Upstream:
    """A stand-in PanDA or CRIC answering fixed JSON bodies (records the simulator never
    sends: names too long, counts too big)."""

    def __init__(self):
        self.bodies = {}
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                body = upstream.bodies.get(self.path.split("?")[0].rstrip("/"))
                code, body = (200, body) if body is not None else (404, b"not found")
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def upstream():
    server = Upstream()
    yield server
    server.close()


# --- sinks independent ------------------------------------------------------------------------

def test_influxdb_down_still_updates_mysql(tmp_path, mariadb_server, sim, database_name, mysql,
                                           capsys):
    from conftest import free_port_url
    config_path = config_for(tmp_path, free_port_url(), mariadb_server.port, database_name, sim)
    sim.set_time(T)
    assert run(config_path, "--timestamp", TS) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "InfluxDB" in err and "kept in" in err
    assert mysql_keys(mysql) == {k[:3] for k in flatten(sim.expected_stats(T, 10))}


def test_mysql_down_still_writes_influxdb_and_advances(tmp_path, influx_server, sim,
                                                       database_name, influx, capsys):
    from conftest import free_port
    port = free_port()
    config_path = config_for(tmp_path, influx_server.url, port, database_name, sim)
    sim.set_time(T)
    assert run(config_path, "--timestamp", TS) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"MySQL 127.0.0.1:{port}" in err
    assert influx_counts(influx) == flatten(sim.expected_stats(T, 10))
    assert runs_errors(influx) == [[1, "error"]]
    state = json.loads((tmp_path / "data" / "state" / "fetch_queues.json").read_text())
    assert state["last_slot"] == int(T.timestamp())


def test_both_down_names_both_servers_on_one_line(tmp_path, sim, database_name, capsys):
    from conftest import free_port, free_port_url
    influx_url, port = free_port_url(), free_port()
    config_path = config_for(tmp_path, influx_url, port, database_name, sim)
    assert run(config_path, "--timestamp", TS) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f"InfluxDB {influx_url}" in err and f"MySQL 127.0.0.1:{port}" in err


def test_a_slot_neither_written_nor_kept_is_fetched_again(tmp_path, influx_server,
                                                          mariadb_server, sim, database_name,
                                                          influx, capsys):
    """InfluxDB down and the spool unwritable: last_slot stays, the next window covers both."""
    from conftest import free_port_url
    config_path = config_for(tmp_path, influx_server.url, mariadb_server.port, database_name,
                             sim)
    sim.set_time(T)
    assert run(config_path, "--timestamp", TS) == 0
    good = config_path.read_text()
    config_path.write_text(good.replace(influx_server.url, free_port_url()))
    spool = tmp_path / "data" / "spool"
    spool.rename(tmp_path / "old-spool")
    spool.write_text("not a directory\n")
    later = T + dt.timedelta(minutes=10)
    sim.set_time(later)
    assert run(config_path, "--timestamp", stamp(later)) == 1
    last = capsys.readouterr().err.splitlines()[-1]
    assert "InfluxDB" in last and "NOT kept" in last and "cannot connect" in last
    config_path.write_text(good)
    spool.unlink()
    latest = T + dt.timedelta(minutes=20)
    sim.set_time(latest)
    assert run(config_path, "--timestamp", stamp(latest)) == 0
    assert time_window_at(influx, latest) == 20


def test_a_corrupt_spool_file_blocks_nothing(config_path, sim, influx, capsys, tmp_path):
    spool = tmp_path / "data" / "spool"
    spool.mkdir(parents=True)
    (spool / "00000000000000000001-deadbeef.10m.lp").write_bytes(b"jobs,a=\xff b=1i 1\n")
    sim.set_time(T)
    assert run(config_path, "--timestamp", TS) == 0
    assert influx_counts(influx) == flatten(sim.expected_stats(T, 10))
    assert "set aside" in capsys.readouterr().err
    assert (spool / "00000000000000000001-deadbeef.10m.lp.corrupt").exists()


# --- bad records --------------------------------------------------------------------------------

def test_bad_panda_records_are_left_out_and_counted(tmp_path, influx_server, mariadb_server, sim,
                                                    database_name, influx, mysql, upstream,
                                                    capsys):
    sim.set_time(T)
    reply = sim.expected_stats(T, 10, envelope=True)
    data = reply["data"]
    good = flatten(data)
    some = copy.deepcopy(next(iter(data.values())))
    data["Q" * 192] = some                                          # MySQL: 1406 too long
    first = next(iter(data))
    label = next(iter(data[first]))
    resource = next(iter(data[first][label]))
    data[first][label][resource]["odd"] = 2**63                     # past int64
    data["Q X"] = some
    data["Q\nX"] = some                                             # collides with "Q X"
    good.update({("Q X", lb, r, s): n for lb, rs in some.items() for r, ss in rs.items()
                 for s, n in ss.items()})
    upstream.bodies[fetch.panda.V1_PATH] = json.dumps(reply).encode()
    config_path = config_for(tmp_path, influx_server.url, mariadb_server.port, database_name,
                             sim, panda_url=upstream.url)
    assert run(config_path, "--timestamp", TS) == 0
    err = capsys.readouterr().err
    assert err.count("WARNING") == 3 and "longer than 191" in err and "control character" in err
    assert influx_counts(influx) == good
    assert mysql_keys(mysql) == {k[:3] for k in good}
    assert runs_errors(influx) == [[3, "ok"]]


def test_a_bad_cric_payload_keeps_the_last_good_cache(tmp_path, influx_server, mariadb_server,
                                                      sim, database_name, influx, upstream,
                                                      capsys):
    config_path = config_for(tmp_path, influx_server.url, mariadb_server.port, database_name,
                             sim, pandaqueue_url=upstream.url + "/pq")
    upstream.bodies["/pq"] = json.dumps(sim.cric_data("pandaqueue")).encode()
    sim.set_time(T)
    assert run(config_path, "--timestamp", TS) == 0
    cache = tmp_path / "data" / "cric" / "pandaqueue.json"
    before = cache.read_bytes()
    bad = {"Q1": {"panda_resource": ["A", "B"]}, "Q2": {"panda_resource": "B", "corepower": "inf"}}
    upstream.bodies["/pq"] = json.dumps(bad).encode()
    later = T + dt.timedelta(minutes=10)
    sim.set_time(later)
    assert run(config_path, "--timestamp", stamp(later)) == 0
    err = capsys.readouterr().err
    assert "unexpected" not in err and "using the cached copy" in err
    assert cache.read_bytes() == before
    assert influx_counts(influx, later) == flatten(sim.expected_stats(later, 10))


# --- the clock ahead ----------------------------------------------------------------------------

def test_a_run_with_the_clock_ahead_does_not_freeze_later_runs(config_path, sim, influx, mysql,
                                                               capsys):
    ahead = CLOCK + dt.timedelta(days=400)
    sim.set_time(ahead)
    assert run(config_path, "--timestamp", stamp(ahead)) == 0
    sim.set_time(T)
    assert run(config_path, "--timestamp", TS) == 0
    err = capsys.readouterr().err
    assert "not trusted" in err
    expected = sim.expected_stats(T, 10)
    rows = mysql.select("SELECT panda_queue, prod_source, resource, running_jobs, last_seen "
                        "FROM jobs")
    assert {(q, lb, r): n for q, lb, r, n, _ in rows} == {
        (q, lb, r): ss.get("running", 0) for q, ls in expected.items() for lb, rs in ls.items()
        for r, ss in rs.items()}
    assert {row[4] for row in rows} == {T.replace(tzinfo=None)}
    later = T + dt.timedelta(minutes=30)
    sim.set_time(later)
    assert run(config_path, "--timestamp", stamp(later)) == 0
    assert time_window_at(influx, later) == 30
