"""fetch_queues.py end to end: the simulator, real InfluxDB and real MariaDB."""
import datetime as dt

import pytest
from conftest import recent_hour, stamp, write_config

import fetch_queues
from qmonit.core import schema
from qmonit.core.influxql import quote_string

T = recent_hour()
TS = stamp(T + dt.timedelta(minutes=3, seconds=17))     # inside T's slot


def run(config_path, *args):
    return fetch_queues.main(["--config", str(config_path), *args])


def influx_counts(influx, slot=T):
    """{series key: jobs} at one slot, straight from InfluxDB."""
    [series] = influx.query(
        f'SELECT "jobs", "time_window" FROM {schema.JOBS.qualified} '
        f'WHERE time = {int(slot.timestamp())}s '
        'GROUP BY "panda_queue", "prod_source", "resource", "job_status"')
    return {tuple(s["tags"][k] for k in schema.SERIES_KEY): s["values"][0][1] for s in series}


def flatten(stats):
    return {(q, l, r, s): n for q, ls in stats.items() for l, rs in ls.items()
            for r, ss in rs.items() for s, n in ss.items()}


def test_every_count_round_trips(config_path, sim, influx, mysql, capsys):
    sim.set_time(T)
    assert run(config_path, "--timestamp", TS) == 0
    out = capsys.readouterr()
    assert out.err == "" and out.out == ""          # quiet under cron
    expected = flatten(sim.expected_stats(T, 10))
    assert influx_counts(influx) == expected
    rows = mysql.select("SELECT panda_queue, prod_source, resource, running_jobs, failed_jobs, "
                        "atlas_site, last_seen FROM jobs")
    assert len(rows) == len({k[:3] for k in expected})
    for queue, label, resource, running, failed, _site, last_seen in rows:
        assert running == expected.get((queue, label, resource, "running"), 0)
        assert failed == expected.get((queue, label, resource, "failed"), 0)
        assert last_seen == T.replace(tzinfo=None)


def test_metadata_tags_and_unknown_queues(config_path, sim, influx):
    sim.set_time(T)
    assert run(config_path, "--timestamp", TS) == 0
    [series] = influx.query(f'SELECT last("jobs") FROM {schema.JOBS.qualified} '
                            'GROUP BY "panda_queue", "atlas_site", "cloud", "federation"')
    sites = {s["tags"]["panda_queue"]: s["tags"] for s in series}
    known = {sim.panda_resource(name) for name in sim.cric_queue_names()}
    unknown = [q for q in sim.panda_queues() if q not in known]
    assert unknown, "the simulator should report queues CRIC does not know"
    for queue in unknown:
        assert sites[queue]["atlas_site"] == schema.UNKNOWN
    renamed = [n for n in sim.cric_queue_names() if sim.panda_resource(n) != n
               and sim.panda_resource(n) in sites]
    assert renamed, "some CRIC names differ from panda_resource"
    for name in renamed:
        assert sites[sim.panda_resource(name)]["atlas_site"] != schema.UNKNOWN


def test_rerun_is_idempotent(config_path, sim, influx, mysql):
    sim.set_time(T)
    assert run(config_path, "--timestamp", TS) == 0
    first = influx_counts(influx)
    rows = mysql.select("SELECT COUNT(*) FROM jobs")
    assert run(config_path, "--timestamp", stamp(T + dt.timedelta(minutes=9, seconds=59))) == 0
    assert influx_counts(influx) == first
    [series] = influx.query(f'SELECT count("jobs") FROM {schema.JOBS.qualified}')
    assert series[0]["values"][0][1] == len(first)      # overwritten, not duplicated
    assert mysql.select("SELECT COUNT(*) FROM jobs") == rows


def test_missed_runs_widen_the_time_window(config_path, sim, influx):
    sim.set_time(T)
    assert run(config_path, "--timestamp", TS) == 0
    later = T + dt.timedelta(minutes=30)
    sim.set_time(later)
    assert run(config_path, "--timestamp", stamp(T + dt.timedelta(minutes=30))) == 0
    [series] = influx.query(f'SELECT "time_window" FROM {schema.JOBS.qualified} '
                            f'WHERE time = {int(later.timestamp())}s LIMIT 1')
    assert series[0]["values"][0][1] == 30
    # The finished counts are PanDA's for a 30-minute window.
    finished = {k: v for k, v in flatten(sim.expected_stats(later, 30)).items()
                if k[3] == "finished"}
    got = influx_counts(influx, later)
    assert all(got[k] == v for k, v in finished.items())


def test_dry_run_writes_nothing(config_path, sim, influx, capsys, tmp_path):
    sim.set_time(T)
    assert run(config_path, "--timestamp", TS, "--dry-run") == 0
    out = capsys.readouterr().out
    assert '# would write' in out and '"10m"."jobs"' in out and "would upsert" in out
    assert sum(1 for line in out.splitlines() if line.startswith("jobs,")) == \
        len(flatten(sim.expected_stats(T, 10)))
    [databases] = influx.query("SHOW DATABASES")
    names = {v[0] for s in databases for v in s.get("values", [])}
    assert influx.database not in names
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize("fault,reason", [
    ("500", "HTTP 500"),
    ("success_false", "success is false"),
    ("truncated", "invalid JSON"),
    ("hang", "timed out after 1 s"),
])
def test_panda_failures_exit_1_and_write_nothing(tmp_path, influx_server, mariadb_server, sim,
                                                 database_name, influx, capsys, fault, reason):
    config_path = write_config(tmp_path / "c.cfg", influx_server.url, mariadb_server.port,
                               database_name, sim.url, tmp_path / "data",
                               extra="")
    text = config_path.read_text().replace("timeout = 5\n\n[cric]", "timeout = 1\n\n[cric]")
    config_path.write_text(text)
    sim.set_time(T)
    sim.set_fault("panda", fault)
    assert run(config_path, "--timestamp", TS) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert "/api/v1/statistics/job_stats_by_site_share_and_resource_type?time_window=10" in err
    assert reason in err
    [series] = influx.query(f"SELECT count(*) FROM {schema.JOBS.qualified}")
    assert series == []
    # The failed run is on record.
    [runs] = influx.query(f"SELECT * FROM {schema.RUNS.qualified}")
    assert runs and runs[0]["values"][0][runs[0]["columns"].index("status")] == "error"


def test_panda_refusing_connections(tmp_path, influx_server, mariadb_server, sim, database_name,
                                    capsys):
    from conftest import free_port_url
    config_path = write_config(tmp_path / "c.cfg", influx_server.url, mariadb_server.port,
                               database_name, sim.url, tmp_path / "data")
    dead = free_port_url()
    config_path.write_text(config_path.read_text().replace(f"url = {sim.url}\n", f"url = {dead}\n"))
    assert run(config_path, "--timestamp", TS) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and dead in err and "connection refused" in err


def test_legacy_api(config_path, sim, influx):
    text = config_path.read_text().replace("[panda]\n", "[panda]\napi = legacy\n")
    config_path.write_text(text)
    sim.set_time(T)
    assert run(config_path, "--timestamp", TS) == 0
    assert influx_counts(influx) == flatten(sim.expected_stats(T, 10))


def test_influx_down_spools_then_next_run_writes(tmp_path, influx_server, mariadb_server, sim,
                                                 database_name, influx, capsys):
    from conftest import free_port_url
    down = free_port_url()
    config_path = write_config(tmp_path / "c.cfg", down, mariadb_server.port, database_name,
                               sim.url, tmp_path / "data")
    sim.set_time(T)
    assert run(config_path, "--timestamp", TS) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "InfluxDB" in err and "kept in" in err
    spooled = list((tmp_path / "data" / "spool").glob("*.lp.gz"))
    assert spooled
    # InfluxDB is back: the next slot writes the spooled slot first, then its own.
    config_path.write_text(config_path.read_text().replace(down, influx_server.url))
    later = T + dt.timedelta(minutes=10)
    sim.set_time(later)
    assert run(config_path, "--timestamp", stamp(T + dt.timedelta(minutes=10))) == 0
    assert influx_counts(influx, T) == flatten(sim.expected_stats(T, 10))
    assert influx_counts(influx, later) == flatten(sim.expected_stats(later, 10))
    assert not list((tmp_path / "data" / "spool").glob("*.lp.gz"))


def test_cric_down_uses_the_cache(config_path, sim, influx, capsys):
    sim.set_time(T)
    assert run(config_path, "--timestamp", TS) == 0
    sim.set_fault("cric", "500")
    assert run(config_path, "--timestamp", stamp(T + dt.timedelta(minutes=10))) == 0
    err = capsys.readouterr().err
    assert "using the cached copy" in err and "WARNING" in err


def test_cric_down_without_cache_exits_1(config_path, sim, capsys):
    sim.set_fault("cric", "500")
    assert run(config_path, "--timestamp", TS) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "/api/atlas/pandaqueue/query/?json" in err and "HTTP 500" in err


def test_mysql_down_exits_1(tmp_path, influx_server, sim, database_name, capsys):
    from conftest import free_port
    port = free_port()
    config_path = write_config(tmp_path / "c.cfg", influx_server.url, port, database_name,
                               sim.url, tmp_path / "data")
    assert run(config_path, "--timestamp", TS) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"MySQL 127.0.0.1:{port}" in err


@pytest.mark.parametrize("section,key,value,message", [
    ("panda", "time_window", "ten", "not an integer"),
    ("panda", "time_window", "90", "at most 60"),
    ("panda", "api", "v2", "must be one of"),
    ("influxdb", "rp_10m", "2h", "at least 25h"),
    ("influxdb", "url", "localhost:8086", "not an http(s) URL"),
])
def test_bad_config_exits_2_naming_file_and_key(config_path, capsys, section, key, value, message):
    text = config_path.read_text()
    if f"[{section}]\n" in text:
        text = text.replace(f"[{section}]\n", f"[{section}]\n{key} = {value}\n", 1)
        # A later duplicate would be a parse error: drop the original line.
        lines, seen, current = [], set(), None
        for line in text.splitlines():
            if line.startswith("["):
                current = line
            if line.split("=")[0].strip() == key and current == f"[{section}]":
                if (current, key) in seen:
                    continue
                seen.add((current, key))
            lines.append(line)
        text = "\n".join(lines) + "\n"
    else:
        text += f"\n[{section}]\n{key} = {value}\n"
    config_path.write_text(text)
    assert run(config_path, "--timestamp", TS) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert str(config_path) in err and f"[{section}] {key}" in err and message in err


def test_missing_config_exits_2(tmp_path, capsys):
    assert run(tmp_path / "nope.cfg") == 2
    assert "nope.cfg" in capsys.readouterr().err


def test_bad_usage_exits_2(config_path, capsys):
    assert run(config_path, "--timestamp", "noon") == 2
    assert "noon" in capsys.readouterr().err


def test_stale_rows_are_removed_after_24h(config_path, sim, mysql):
    sim.set_time(T)
    assert run(config_path, "--timestamp", TS) == 0
    mysql.select("UPDATE jobs SET last_seen = %s WHERE panda_queue = %s",
                 ((T - dt.timedelta(hours=25)).replace(tzinfo=None), sim.panda_queues()[0]))
    before = mysql.select("SELECT COUNT(*) FROM jobs")[0][0]
    gone = mysql.select("SELECT COUNT(*) FROM jobs WHERE panda_queue = %s",
                        (sim.panda_queues()[0],))[0][0]
    sim.set_time(T + dt.timedelta(minutes=10))
    assert run(config_path, "--timestamp", stamp(T + dt.timedelta(minutes=10))) == 0
    # The queue is reported again, so its rows come back with a fresh last_seen.
    assert mysql.select("SELECT COUNT(*) FROM jobs")[0][0] == before
    assert gone > 0


def test_backfill_does_not_overwrite_newer_mysql_state(config_path, sim, mysql):
    later = T + dt.timedelta(hours=1)
    sim.set_time(later)
    assert run(config_path, "--timestamp", stamp(T + dt.timedelta(hours=1))) == 0
    newest = mysql.select("SELECT panda_queue, prod_source, resource, running_jobs FROM jobs")
    sim.set_time(T)
    assert run(config_path, "--timestamp", TS) == 0
    got = mysql.select("SELECT panda_queue, prod_source, resource, running_jobs FROM jobs")
    assert got == newest


def test_mysql_table_is_migrated(config_path, sim, mysql):
    def old_table(cur):
        cur.execute("CREATE TABLE jobs (panda_queue VARCHAR(191) NOT NULL, prod_source "
                    "VARCHAR(191) NOT NULL, resource VARCHAR(191) NOT NULL, running_jobs INT, "
                    "PRIMARY KEY (panda_queue, prod_source, resource))")
    mysql.transaction(old_table)
    sim.set_time(T)
    assert run(config_path, "--timestamp", TS) == 0
    columns = {r[0] for r in mysql.select(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = %s "
        "AND table_name = 'jobs'", (mysql.database,))}
    assert set(schema.MYSQL_JOBS_COLUMNS) <= columns


def test_odd_names_round_trip_in_influxdb_and_mysql(tmp_path, influx_server, mariadb_server,
                                                    database_name, influx, mysql):
    """Spaces, commas, '=', both quotes, a backslash and non-ASCII in queue, label, resource and
    site names come back exactly from both databases."""
    from qmonit.dev.simulator import Simulator
    with Simulator(seed=3, series=800, odd_names=True) as odd:
        config_path = write_config(tmp_path / "c.cfg", influx_server.url, mariadb_server.port,
                                   database_name, odd.url, tmp_path / "data")
        odd.set_time(T)
        assert run(config_path, "--timestamp", TS) == 0
        expected = flatten(odd.expected_stats(T, 10))
        pandaqueues = odd.cric_data("pandaqueue")
    odd_keys = [k for k in expected if any(c in "".join(k) for c in ' ,="\'ü')]
    assert len(odd_keys) >= 3
    assert influx_counts(influx) == expected
    site = next(v["atlas_site"] for v in pandaqueues.values() if "spaces" in v["atlas_site"])
    [series] = influx.query(f'SELECT count("jobs") FROM {schema.JOBS.qualified} WHERE '
                            f'"atlas_site" = {quote_string(site)}')
    assert series and series[0]["values"][0][1] > 0
    rows = {r[:3]: r[3] for r in mysql.select(
        "SELECT panda_queue, prod_source, resource, running_jobs FROM jobs")}
    for key in odd_keys:
        assert rows[key[:3]] == expected.get(key[:3] + ("running",), 0)
    [[stored_site]] = mysql.select("SELECT DISTINCT atlas_site FROM jobs WHERE atlas_site = %s",
                                   (site,))
    assert stored_site == site


def test_a_slot_past_the_10m_policy_is_refused_before_anything_is_written(config_path, sim,
                                                                           influx, mysql, capsys):
    old = T - dt.timedelta(days=7, hours=1)
    sim.set_time(old)
    assert run(config_path, "--timestamp", stamp(old)) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f"slot {stamp(old)} UTC is older than the 10m retention policy (7d)" in err
    assert not list((config_path.parent / "data").rglob("*.lp*"))
    assert not (config_path.parent / "data" / "state").exists() or \
        not list((config_path.parent / "data" / "state").iterdir())


def test_cric_status_pledges_null_corecounts_and_corepowers(config_path, sim, influx, mysql,
                                                            tmp_path):
    """site_state is the queue's CRIC status; the pledge is that of the WLCG pledge quarter;
    a null corecount counts 8 cores for multi-core jobs, a null corepower is the site's."""
    from qmonit.core import http
    from qmonit.dev.simulator import config_urls
    from qmonit.sources import cric
    urls = config_urls(sim.url)
    sim.set_time(T)
    cache = cric.Cache(tmp_path / "data")
    for kind in ("federation", "site"):        # what the hourly job leaves in the cache
        cric.refresh(http.session(), cache, kind, urls[f"{kind}_url"], 5)
    assert run(config_path, "--timestamp", TS) == 0
    [series] = influx.query(
        f'SELECT last("jobs"), "federation_HS06_pledge", "resource_factor", "corepower" FROM '
        f'{schema.JOBS.qualified} GROUP BY "panda_queue", "resource", "site_state", "federation"')
    pandaqueues = sim.cric_data("pandaqueue")
    by_resource = {q["panda_resource"]: q for q in pandaqueues.values()}
    sites = sim.cric_data("site")
    pledges = sim.expected_pledges(T)
    checked = {"null corecount": 0, "null corepower": 0, "pledge": 0}
    for s in series:
        tags, (_, _, pledge, factor, corepower) = s["tags"], s["values"][0]
        q = by_resource.get(tags["panda_queue"])
        if q is None:
            assert tags["site_state"] == schema.UNKNOWN
            continue
        assert tags["site_state"] == q["status"] in ("online", "brokeroff", "test")
        assert pledge == pledges.get(tags["federation"], 0)
        checked["pledge"] += tags["federation"] in pledges
        if q["corecount"] is None and tags["resource"].startswith("MCORE"):
            assert factor == 8.0
            checked["null corecount"] += 1
        if q["corepower"] is None:
            assert corepower == sites[q["atlas_site"]]["corepower"]
            checked["null corepower"] += 1
    assert all(checked.values()), checked
    states = mysql.select("SELECT DISTINCT site_state FROM jobs")
    assert {s for (s,) in states} <= {"online", "brokeroff", "test", schema.UNKNOWN}
    assert len(states) >= 3
