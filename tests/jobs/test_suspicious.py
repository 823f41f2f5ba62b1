"""suspicious.py: flag rules (property tests), and the script end to end on the real InfluxDB
and MariaDB with history from the simulator."""
import datetime as dt
import math

import pytest
from conftest import recent_slot, write_config
from hypothesis import given
from hypothesis import strategies as st

import suspicious as script
from qmonit.core import schema
from qmonit.core.influxql import quote_ident
from qmonit.dev.devservers import free_port
from qmonit.jobs import averages, fetch, suspicious, transform
from qmonit.sources import cric

UTC = dt.UTC
SLOT = dt.timedelta(minutes=10)


def avg(queue="Q1", status="running", current=0, baseline=100.0, site="SITE", cloud="DE",
        label="managed", resource="SCORE", **windows):
    values = {name: baseline for name in schema.AVERAGE_WINDOWS}
    values.update(windows)
    return averages.Average(queue, label, resource, status, site, cloud, "T2",
                            current=current, coverage=1.0, **values)


# --- rules and flags (pure) ---------------------------------------------------------------------

counts = st.integers(0, 10**5)
baselines = st.one_of(st.none(), st.floats(0, 10**5))


@given(counts, baselines, st.floats(1.01, 10), st.floats(0, 0.99), st.floats(0, 100))
def test_direction_follows_the_rules(current, baseline, spike, drop, min_change):
    rules = suspicious.Rules(spike_factor=spike, drop_factor=drop, min_change=min_change)
    direction = rules.direction(current, baseline)
    if baseline is None or abs(current - baseline) < min_change:
        assert direction is None
    elif current > baseline and current >= spike * baseline:
        assert direction == "spike"
    elif current < baseline and current <= drop * baseline:
        assert direction == "drop"
    else:
        assert direction is None


@given(counts, st.floats(0, 10**5), counts, st.floats(0, 10**5))
def test_score_is_change_times_doublings(c1, b1, c2, b2):
    s1 = suspicious.score(c1, b1)
    assert s1 >= 0 and suspicious.score(c1, float(c1)) == 0
    # Further from the baseline in both jobs and ratio: a higher score.
    if abs(c2 - b2) >= abs(c1 - b1) and abs(math.log2((c2 + 1) / (b2 + 1))) >= \
            abs(math.log2((c1 + 1) / (b1 + 1))):
        assert suspicious.score(c2, b2) >= s1 * (1 - 1e-12)


def test_collapse_outranks_wobble():
    assert suspicious.score(0, 500) > 100 * suspicious.score(10, 30)
    rules = suspicious.Rules()
    assert rules.direction(0, 500) == "drop" and rules.direction(10, 30) == "drop"
    assert rules.direction(25, 30) is None and rules.direction(15, 5) is None


def test_flags_at_queue_and_site_level():
    series = [
        avg("Q1", current=0, baseline=500.0),                      # collapse
        avg("Q2", current=520, baseline=500.0),                    # fine; same site
        avg("Q3", current=10, baseline=30.0, site="SMALL"),        # wobble
        avg("Q4", "failed", current=900, baseline=30.0, site="B", cloud="US"),
        avg("Q5", "holding", current=900, baseline=1.0, site="B"),  # not watched
        avg("Q6", current=0, baseline=800.0, site=schema.UNKNOWN),  # no site sums
        avg("Q7", current=300, baseline=None, site="NEW"),          # no baseline yet
    ]
    flags = suspicious.find_flags(series, suspicious.Rules())
    got = {(f.level, f.atlas_site, f.panda_queue, f.job_status, f.direction) for f in flags}
    assert got == {("queue", "SITE", "Q1", "running", "drop"),
                   ("queue", "SMALL", "Q3", "running", "drop"),
                   ("site", "SMALL", "all", "running", "drop"),
                   ("queue", "B", "Q4", "failed", "spike"),
                   ("site", "B", "all", "failed", "spike"),
                   ("queue", schema.UNKNOWN, "Q6", "running", "drop")}
    # SITE: 520 of 1000 is not a drop at site level.
    assert [f.score for f in flags] == sorted((f.score for f in flags), reverse=True)
    site_b = next(f for f in flags if f.level == "site" and f.atlas_site == "B")
    assert (site_b.prod_source, site_b.resource, site_b.cloud) == ("all", "all", "US")
    assert site_b.current == 900 and site_b.baseline == 30.0 and site_b.ratio == 30.0
    lines = transform.encode(schema.SUSPICIOUS, suspicious.flag_points(flags, dt.datetime(
        2026, 11, 25, tzinfo=UTC)))
    assert all(line.startswith("suspicious,level=") for line in lines)
    assert any(",panda_queue=all,prod_source=all,resource=all," in line for line in lines)


@given(st.lists(st.tuples(st.sampled_from(["S1", "S2", "S3"]), st.sampled_from(["Q1", "Q2"]),
                          st.sampled_from(["running", "failed"]), counts, baselines),
                max_size=30))
def test_site_flags_sum_their_series(rows):
    series = [avg(f"{site}_{queue}", status, current, baseline, site=site, label=f"l{i}")
              for i, (site, queue, status, current, baseline) in enumerate(rows)]
    rules = suspicious.Rules(min_change=0)
    for f in suspicious.find_flags(series, rules):
        if f.level != "site":
            continue
        members = [a for a in series if a.atlas_site == f.atlas_site and
                   a.job_status == f.job_status]
        assert f.current == sum(a.current for a in members)
        assert math.isclose(f.baseline, sum(a.avg24h for a in members if a.avg24h is not None),
                            rel_tol=1e-9, abs_tol=1e-9)
        assert f.direction == rules.direction(f.current, f.baseline)


def test_mysql_rows_pivot_watched_statuses():
    series = [avg("Q1", "running", 5, 4.0), avg("Q1", "failed", 1, 2.0, avg7d=None),
              avg("Q1", "holding", 9, 9.0), avg("Q2", "assigned", 3, 3.0)]
    rows = {row[:3]: dict(zip(suspicious.MYSQL_COLUMNS, row))
            for row in suspicious.mysql_rows(series)}
    assert set(rows) == {("Q1", "managed", "SCORE"), ("Q2", "managed", "SCORE")}
    q1 = rows[("Q1", "managed", "SCORE")]
    assert q1["avg1h_running_jobs"] == 4.0 and q1["avg7d_failed_jobs"] is None
    assert q1["avg24h_assigned_jobs"] is None


# --- the script on real servers -------------------------------------------------------------------

def now_slot():
    # 20 minutes back, so that the 24 h before it are well inside the 10m policy.
    return recent_slot(2)


def stamp(slot):
    return f"{slot + dt.timedelta(minutes=3):%Y-%m-%d %H:%M:%S}"


def write_history(sim, influx, slot, offsets):
    """10m points straight from the simulator for slot - k*10m, k in offsets."""
    influx.ensure_database()
    queues = cric.queue_metadata(sim.cric_data("pandaqueue"))
    lines = []
    for k in offsets:
        at = slot - k * SLOT
        lines += transform.encode(schema.JOBS, transform.job_points(
            sim.expected_stats(at), queues, {}, at, 10))
    influx.write_lines(schema.RP_10M, lines)


def pick_queues(sim, slot):
    """A queue that holds most of its site's running jobs, and a queue at another site."""
    queues = cric.queue_metadata(sim.cric_data("pandaqueue"))
    stats = sim.expected_stats(slot)
    running, by_site = {}, {}
    for queue, labels in stats.items():
        if queue not in queues:
            continue
        n = sum(s.get("running", 0) for rs in labels.values() for s in rs.values())
        running[queue] = n
        by_site.setdefault(queues[queue].atlas_site, []).append(queue)
    collapse = max((q for qs in by_site.values() for q in qs
                    if running[q] >= 0.8 * sum(running[x] for x in qs)), key=running.get)
    spike = max((q for q in running if queues[q].atlas_site != queues[collapse].atlas_site),
                key=running.get)
    return collapse, spike, queues


def select(influx, measurement, slot, fields="*"):
    [series] = influx.query(f"SELECT {fields} FROM {measurement.qualified} "
                            f"WHERE time = {int(slot.timestamp())}s")
    if not series:
        return []
    columns = series[0]["columns"]
    return [dict(zip(columns, row)) for row in series[0]["values"]]


def run(config_path, *args):
    return script.main(["--config", str(config_path), *args])


@pytest.fixture
def history(sim, influx):
    """A day of history every 2 hours, the last hour every 10 minutes, then the fetch at T
    with a collapse and a spike injected."""
    slot = now_slot()
    write_history(sim, influx, slot, list(range(1, 7)) + list(range(12, 144, 12)))
    return slot


def test_end_to_end_flags_averages_mysql(config_path, config, sim, history, influx, mysql,
                                         capsys):
    slot = history
    collapse, spike, queues = pick_queues(sim, slot)
    sim.add_anomaly(collapse, "collapse", start=slot, end=slot + SLOT)
    sim.add_anomaly(spike, "spike", start=slot, end=slot + SLOT)
    sim.set_time(slot)
    assert fetch.run(config, slot) == 0
    # A row PanDA stopped reporting 25 h ago; a row already updated after T (as when a
    # backfill runs behind the cron job) keeps its newer values.
    columns = ("panda_queue", "prod_source", "resource", "last_seen", "updated_at")
    old = (slot - dt.timedelta(hours=25)).replace(tzinfo=None)
    mysql.upsert(columns, [("GONE_QUEUE", "managed", "SCORE", old, old)])
    # One row, chosen by its key, of a queue neither probed nor flagged below.
    [later] = mysql.select("SELECT panda_queue, prod_source, resource FROM jobs "
                           "WHERE panda_queue NOT IN (%s, %s) "
                           "ORDER BY panda_queue, prod_source, resource LIMIT 1", (spike, collapse))
    mysql.transaction(lambda cur: cur.execute(
        "UPDATE jobs SET last_seen = %s WHERE panda_queue = %s AND prod_source = %s AND "
        "resource = %s", ((slot + SLOT).replace(tzinfo=None),) + tuple(later)))

    assert run(config_path, "--timestamp", stamp(slot)) == 0
    assert capsys.readouterr().err == ""

    # Averages: one point per series of the day, matching the simulator's numbers.
    points = select(influx, schema.AVERAGES, slot)
    expected_now = {(q, l, r, s): n for q, ls in sim.expected_stats(slot).items()
                    for l, rs in ls.items() for r, ss in rs.items() for s, n in ss.items()}
    keys = {tuple(p[k] for k in schema.SERIES_KEY) for p in points}
    assert keys >= set(expected_now)
    for p in points:
        key = tuple(p[k] for k in schema.SERIES_KEY)
        assert p["current"] == expected_now.get(key, 0)
        assert p.get("avg7d") is None and p.get("avg30d") is None  # no rollup: left out
        assert 0 < p["coverage"] <= 18 / 144
    probe = next(p for p in points if p["panda_queue"] == spike and p["job_status"] == "running")
    hour = [sim.expected_stats(slot - k * SLOT)[spike][probe["prod_source"]][probe["resource"]]
            ["running"] for k in range(6)]
    assert math.isclose(probe["avg1h"], sum(hour) / 6, rel_tol=1e-9)
    assert probe["atlas_site"] == queues[spike].atlas_site

    # Flags: the collapse at queue and site level, the spike in failed jobs.
    flags = select(influx, schema.SUSPICIOUS, slot)
    found = {(f["level"], f["panda_queue"], f["job_status"], f["direction"]) for f in flags}
    assert ("site", "all", "running", "drop") in found
    assert any(f["level"] == "queue" and f["panda_queue"] == collapse and
               f["job_status"] == "running" and f["direction"] == "drop" for f in flags)
    assert any(f["level"] == "queue" and f["panda_queue"] == spike and
               f["job_status"] == "failed" and f["direction"] == "spike" for f in flags)
    site = next(f for f in flags if f["level"] == "site" and
                f["atlas_site"] == queues[collapse].atlas_site and f["job_status"] == "running")
    assert site["direction"] == "drop" and site["score"] > 0 and site["ratio"] <= 0.5

    # MySQL: avg columns filled, the stale row gone, the newer row untouched.
    rows = {row[:3]: row[3:] for row in mysql.select(
        "SELECT panda_queue, prod_source, resource, avg1h_running_jobs, avg24h_failed_jobs, "
        "avg7d_running_jobs FROM jobs")}
    assert not any(key[0] == "GONE_QUEUE" for key in rows)
    assert rows.pop(tuple(later)) == (None, None, None)
    assert all(a1 is not None and a24 is not None and a7 is None
               for a1, a24, a7 in rows.values())
    probe_row = rows[(spike, probe["prod_source"], probe["resource"])]
    assert math.isclose(probe_row[0], probe["avg1h"], rel_tol=1e-12)

    recorded = influx.query(f"SELECT * FROM {schema.RUNS.qualified} WHERE "
                            f"{quote_ident(schema.SCRIPT)} = 'suspicious'")[0][0]
    row = dict(zip(recorded["columns"], recorded["values"][-1]))
    assert row["status"] == "ok" and row["errors"] == 0
    assert row["points"] == len(points) + len(flags)

    # A rerun after the anomalies are gone replaces the slot's flags instead of adding to them.
    sim.clear_anomalies()
    assert fetch.run(config, slot) == 0
    assert run(config_path, "--timestamp", stamp(slot)) == 0
    again = select(influx, schema.SUSPICIOUS, slot)
    assert not any(f["panda_queue"] in (collapse, spike) for f in again)
    assert len(select(influx, schema.AVERAGES, slot)) == len(points)


def test_rollup_averages_and_vanished_series(config_path, config, sim, influx, mysql):
    slot = now_slot()
    influx.ensure_database()
    key = {"panda_queue": "Q", "prod_source": "managed", "resource": "SCORE",
           "job_status": "running", "atlas_site": "S", "cloud": "DE", "tier": "T2"}
    day = averages.day_start(slot)
    rolled = [transform.Point(key, {"jobs": 10.0, "jobs_sum": 1440.0, "samples": 144},
                              int((day - d * dt.timedelta(days=1)).timestamp()))
              for d in (1, 2, 10)]
    influx.write_lines(schema.RP_1D, transform.encode(schema.JOBS_1D, rolled))
    # Q's series was last seen an hour ago; another series is there at T.
    other = dict(key, panda_queue="P")
    influx.write_lines(schema.RP_10M, transform.encode(schema.JOBS, [
        transform.Point(key, {"jobs": 30}, int((slot - 6 * SLOT).timestamp())),
        transform.Point(other, {"jobs": 7}, int(slot.timestamp()))]))
    assert run(config_path, "--timestamp", stamp(slot)) == 0
    points = {p["panda_queue"]: p for p in select(influx, schema.AVERAGES, slot)}
    assert points["Q"]["current"] == 0 and points["Q"]["avg1h"] is None
    assert points["Q"]["avg6h"] == 30 and points["Q"]["avg7d"] == 10 == points["Q"]["avg30d"]
    assert points["P"]["avg7d"] is None and points["P"]["current"] == 7


def test_a_slot_fetched_again_after_it_was_carried_is_taken_in(config_path, config, sim,
                                                               influx, mysql):
    """The averages carry window sums from run to run; fetch_queues.py writing a slot they
    already took in (by hand, with other counts) makes the next run seed again, so the
    averages still equal a recomputation from the 10m points."""
    slot = now_slot()
    write_history(sim, influx, slot, range(2, 8))
    for at in (slot - SLOT, slot):
        sim.set_time(at)
        assert fetch.run(config, at) == 0 and run(config_path, "--timestamp", stamp(at)) == 0
    assert averages.Store(config.data_dir()).carried_slot() == int(slot.timestamp())
    _, spike, _ = pick_queues(sim, slot)
    sim.add_anomaly(spike, "spike", start=slot - SLOT)
    sim.set_time(slot - SLOT)
    before = select(influx, schema.JOBS, slot - SLOT, '"jobs", "panda_queue", "job_status"')
    assert fetch.run(config, slot - SLOT) == 0
    after = select(influx, schema.JOBS, slot - SLOT, '"jobs", "panda_queue", "job_status"')
    assert before != after                      # the slot's counts did change
    assert averages.Store(config.data_dir()).carried_slot() is None
    sim.set_time(slot + SLOT)
    assert fetch.run(config, slot + SLOT) == 0
    assert run(config_path, "--timestamp", stamp(slot + SLOT)) == 0
    got = {tuple(p[t] for t in schema.SERIES_KEY): p["avg1h"]
           for p in select(influx, schema.AVERAGES, slot + SLOT) if p["avg1h"] is not None}
    where = (f"time > {int((slot - 5 * SLOT).timestamp())}s AND "
             f"time <= {int((slot + SLOT).timestamp())}s")
    [series] = influx.query(f"SELECT mean(\"jobs\") FROM {schema.JOBS.qualified} WHERE {where} "
                            f"GROUP BY {', '.join(quote_ident(t) for t in schema.SERIES_KEY)}")
    want = {tuple(s["tags"][t] for t in schema.SERIES_KEY): s["values"][0][1] for s in series}
    assert set(got) == set(want)
    assert all(math.isclose(got[k], want[k], rel_tol=1e-9) for k in want)
    assert any(k[0] == spike and k[3] == "running" for k in want)


def test_dry_run_writes_nothing(config_path, config, sim, history, influx, mysql, capsys):
    slot = history
    sim.set_time(slot)
    assert fetch.run(config, slot) == 0
    before = mysql.select("SELECT * FROM jobs ORDER BY panda_queue, prod_source, resource")
    assert run(config_path, "--timestamp", stamp(slot), "--dry-run") == 0
    out = capsys.readouterr().out
    assert '# would write ' in out and 'points to "10m"."averages"' in out
    assert 'points to "10m"."suspicious"' in out
    assert "# would update avg columns of" in out and "# would delete the rows" in out
    assert select(influx, schema.AVERAGES, slot) == []
    assert mysql.select("SELECT * FROM jobs ORDER BY panda_queue, prod_source, resource") == before
    # (fetch_queues.py has carried its rollup sums under cache/rollups: not this run's.)
    assert not (config.data_dir() / "cache" / "averages").exists()
    assert not (config.data_dir() / "cache" / "rollup_averages.json").exists()
    assert not (config.data_dir() / "state" / "suspicious_notifications.json").exists()


def test_no_jobs_at_the_slot_is_exit_1(config_path, sim, history, influx, capsys):
    slot = history + SLOT  # fetch_queues.py never ran for it
    assert run(config_path, "--timestamp", stamp(slot)) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("suspicious.py: error: InfluxDB http://127.0.0.1:")
    assert f"no {schema.JOBS.qualified} points at {slot:%Y-%m-%d %H:%M:%S} UTC" in err
    [row] = select(influx, schema.RUNS, slot)
    assert row["status"] == "error" and row["script"] == "suspicious"
    assert select(influx, schema.AVERAGES, slot) == []


def test_unreachable_influxdb_is_exit_1(tmp_path, mariadb_server, sim, capsys):
    path = write_config(tmp_path / "c.cfg", f"http://127.0.0.1:{free_port()}",
                        mariadb_server.port, "qmonit_x", sim.url, tmp_path / "data")
    assert run(path, "--timestamp", stamp(now_slot())) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "InfluxDB http://127.0.0.1:" in err


def test_unreachable_mysql_is_exit_1_after_influxdb_is_written(tmp_path, influx_server, sim,
                                                                database_name, capsys):
    port = free_port()
    path = write_config(tmp_path / "c.cfg", influx_server.url, port, database_name, sim.url,
                        tmp_path / "data")
    from qmonit.core import config as config_module
    from qmonit.sinks.influx import Influx
    influx = Influx.from_config(config_module.load(str(path), str(script.__file__)))
    slot = now_slot()
    write_history(sim, influx, slot, [0, 1])
    assert run(path, "--timestamp", stamp(slot)) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"MySQL 127.0.0.1:{port}/{database_name}" in err
    assert select(influx, schema.AVERAGES, slot), "InfluxDB is written all the same"
    [row] = select(influx, schema.RUNS, slot)
    assert row["status"] == "error" and row["errors"] == 1


def test_failed_notification_is_counted_not_fatal(tmp_path, influx_server, mariadb_server, sim,
                                                 database_name, caplog):
    extra = (f"\n[notifications]\nwebhook_url = http://127.0.0.1:{free_port()}/hooks/secret\n"
             "timeout = 2\n[suspicious]\nmin_change = 0\nspike_factor = 1.01\n"
             "drop_factor = 0.99\n")
    path = write_config(tmp_path / "c.cfg", influx_server.url, mariadb_server.port,
                        database_name, sim.url, tmp_path / "data", extra)
    from qmonit.core import config as config_module
    from qmonit.sinks.influx import Influx
    config = config_module.load(str(path), str(script.__file__))
    influx = Influx.from_config(config)
    slot = now_slot()
    write_history(sim, influx, slot, [0, 1, 2, 3])
    assert run(path, "--timestamp", stamp(slot)) == 0
    assert "notification by webhook failed" in caplog.text and "secret" not in caplog.text
    [row] = select(influx, schema.RUNS, slot)
    assert row["status"] == "ok" and row["errors"] == 1 and row["points"] > 0
    assert select(influx, schema.SUSPICIOUS, slot), "the loose rules flag something"


@pytest.mark.parametrize("section,text,key", [
    ("suspicious", "statuses = running, sleeping", "statuses"),
    ("suspicious", "baseline = avg2h", "baseline"),
    ("suspicious", "spike_factor = 1", "spike_factor"),
    ("suspicious", "drop_factor = 1.5", "drop_factor"),
    ("suspicious", "min_change = -1", "min_change"),
    ("notifications", "smtp_host = mail.example.org", "email_to"),
    # flags in context
    ("suspicious", "grace = two hours", "grace"),
    ("suspicious", "notify_after = 0", "notify_after"),
    ("suspicious", "not_notified = failed sideways", "not_notified"),
    ("suspicious", "bigpanda_url = bigpanda.cern.ch", "bigpanda_url"),
    ("notifications", "stale_after = 0", "stale_after"),
    ("routes", "DE = not-a-recipient", "de"),
])
def test_bad_config_is_exit_2_naming_the_key(tmp_path, section, text, key, capsys):
    path = tmp_path / "c.cfg"
    path.write_text(f"[{section}]\n{text}\n")
    assert run(path) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{path}: [{section}] {key}" in err


def test_help_describes_the_script(capsys):
    assert run("x.cfg", "--help") == 0
    out = capsys.readouterr().out
    assert "averages" in out and "--timestamp" in out and "--dry-run" in out
