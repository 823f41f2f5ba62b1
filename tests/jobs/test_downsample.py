"""downsample.py and qmonit/downsample.py: planning, the arithmetic, and runs on a real InfluxDB
checked against an independent recomputation from the raw 10m points."""
import datetime as dt
import fcntl
import itertools
import math
import random
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest
from conftest import CLOCK
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import downsample as script
from qmonit.core import schema
from qmonit.core.config import Config
from qmonit.core.errors import UsageError
from qmonit.core.influxql import quote_ident
from qmonit.jobs import downsample, rollups, transform
from qmonit.sinks.influx import Influx

HOUR, DAY = 3600, 86400
MEAN = schema.JOBS_MEAN_FIELDS
# Two days of data, three days ago (the 10m policy keeps 7 days of wall-clock time).
_wall = int(CLOCK.timestamp())
BASE = _wall - _wall % DAY - 3 * DAY
_databases = itertools.count()

SERIES = [
    {"panda_queue": "CERN-PROD", "prod_source": "managed", "resource": "SCORE",
     "job_status": "running", "atlas_site": "CERN-PROD", "cloud": "CERN", "country": "Switzerland",
     "tier": "T0", "type": "production", "site_state": "ACTIVE", "federation": "CH-CERN"},
    # Names that need escaping, and a metadata tag that is absent.
    {"panda_queue": "RU Dostalo,2", "prod_source": "user", "resource": "MCORE",
     "job_status": "failed", "atlas_site": "a=b", "cloud": "RU", "country": "Russian Federation",
     "tier": "T2", "type": "analysis", "site_state": "ACTIVE"},
    {"panda_queue": "CERN-PROD", "prod_source": "managed", "resource": "SCORE",
     "job_status": "finished", "atlas_site": "CERN-PROD", "cloud": "CERN", "country": "Switzerland",
     "tier": "T0", "type": "production", "site_state": "ACTIVE", "federation": "CH-CERN"},
]


def at(text):
    return dt.datetime.fromtimestamp(text, dt.UTC)


def make_config(tmp_path, url, database, extra=""):
    return Config.from_string(f"""[credentials]
database = {database}
[influxdb]
url = {url}
timeout = 30
[paths]
data_dir = {tmp_path / "data"}
{extra}""", path=tmp_path / "config.cfg", base_dir=tmp_path)


def new_database(influx_server, tmp_path, extra=""):
    name = f"qmonit_ds_{next(_databases)}"
    config = make_config(tmp_path, influx_server.url, name, extra)
    influx = Influx(influx_server.url, name)
    influx.ensure_database()
    return config, influx


def write_raw(influx, points):
    """points: {(series index, time): fields} written to "10m"."jobs"."""
    lines = transform.encode(schema.JOBS, [
        transform.Point(SERIES[s], fields, t) for (s, t), fields in sorted(points.items())])
    if lines:
        influx.write_lines(schema.RP_10M, lines)


def read_rollup(influx, rp):
    """{(frozenset of tags, time): fields} of "rp"."jobs"."""
    out = {}
    for series in influx.query(f'SELECT * FROM {quote_ident(rp)}."jobs" GROUP BY *')[0]:
        tags = frozenset((k, v) for k, v in series["tags"].items() if v)
        for row in series["values"]:
            fields = {c: v for c, v in zip(series["columns"][1:], row[1:]) if v is not None}
            out[(tags, row[0])] = fields
    return out


def expected(raw, step, start=None, stop=None):
    """The rollup recomputed from the raw 10m points, independently: {(tags, bucket): fields}."""
    groups = defaultdict(list)
    for (s, t), fields in raw.items():
        if (start is None or t >= start) and (stop is None or t < stop):
            groups[(frozenset(SERIES[s].items()), t - t % step)].append(fields)
    out = {}
    for key, rows in groups.items():
        # A point without a jobs value is no sample: it is left out altogether.
        rows = [r for r in rows if "jobs" in r]
        jobs = [r["jobs"] for r in rows]
        if not jobs:
            continue
        fields = {"jobs": sum(jobs) / len(jobs), "jobs_sum": sum(jobs), "samples": len(jobs)}
        for name in MEAN:
            values = [r[name] for r in rows if name in r]
            if values:
                fields[name] = math.fsum(values) / len(values)
        out[key] = fields
    return out


def assert_same(got, want, what):
    assert set(got) == set(want), f"{what}: buckets differ: {sorted(set(got) ^ set(want))[:3]}"
    for key, fields in want.items():
        assert set(got[key]) == set(fields), (what, key, got[key], fields)
        for name, value in fields.items():
            if name in ("jobs_sum", "samples"):
                assert got[key][name] == value, (what, key, name)
            else:
                assert math.isclose(got[key][name], value, rel_tol=1e-9, abs_tol=1e-12), \
                    (what, key, name, got[key][name], value)


# --- planning ------------------------------------------------------------------------------

def test_last_complete_bucket_is_never_the_open_one():
    assert downsample.last_complete(BASE + 5 * HOUR + 14 * 60, HOUR) == BASE + 4 * HOUR
    assert downsample.last_complete(BASE + 5 * HOUR, HOUR) == BASE + 4 * HOUR
    assert downsample.last_complete(BASE + DAY + 6 * 60, DAY) == BASE


def test_lookback_buckets():
    now = BASE + 2 * DAY + 15 * 60
    buckets = downsample.lookback_buckets(now, HOUR, 48 * HOUR)
    assert buckets == [BASE + i * HOUR for i in range(48)]
    assert downsample.lookback_buckets(now, HOUR, 0) == [BASE + 47 * HOUR]
    assert downsample.lookback_buckets(now, DAY, 14 * DAY)[-1] == BASE + DAY
    assert len(downsample.lookback_buckets(now, DAY, 14 * DAY)) == 14


def test_requested_buckets_stop_at_the_last_complete_one():
    now = BASE + 10 * HOUR + 30 * 60
    assert downsample.requested_buckets(now, HOUR, BASE + 8 * HOUR + 5) == [
        BASE + 8 * HOUR, BASE + 9 * HOUR]
    assert downsample.requested_buckets(now, HOUR, BASE, BASE + 2 * HOUR) == [BASE, BASE + HOUR]
    assert downsample.requested_buckets(now, HOUR, BASE + 9 * HOUR, BASE + 20 * HOUR) == [
        BASE + 9 * HOUR]
    assert downsample.requested_buckets(now, HOUR, BASE + 10 * HOUR) == []
    with pytest.raises(UsageError):
        downsample.requested_buckets(now, HOUR, BASE + HOUR, BASE + HOUR)


def test_plan():
    b = [BASE + i * HOUR for i in range(6)]
    target = {b[0]: 6, b[1]: 6, b[2]: 6, b[5]: 6}
    source = {b[0]: 6, b[1]: 7, b[3]: 2, b[4]: 0, b[5]: 6}
    chosen = dict(downsample.plan(b, source, target, b[5]))
    # b2: the source has expired or is empty: the rollup stays. b4: nothing to roll up.
    assert list(chosen) == [b[1], b[3], b[5]]
    assert chosen[b[1]].startswith("changed")
    assert chosen[b[3]] == "missing" and chosen[b[5]] == "latest"


def test_ranges_are_contiguous_and_bounded():
    b = [BASE + i * HOUR for i in (0, 1, 2, 3, 5, 6, 9)]
    assert downsample.ranges(b, HOUR, 3) == [
        (BASE, BASE + 3 * HOUR), (BASE + 3 * HOUR, BASE + 4 * HOUR),
        (BASE + 5 * HOUR, BASE + 7 * HOUR), (BASE + 9 * HOUR, BASE + 10 * HOUR)]
    assert downsample.ranges([], HOUR, 3) == []


# --- the arithmetic, without a server ----------------------------------------------------

TAGS = downsample.tag_keys([])
raw_rows = st.lists(st.tuples(
    st.integers(0, len(SERIES) - 1), st.integers(0, 2 * 144 - 1),
    st.one_of(st.none(), st.integers(0, 2 ** 40)),
    *[st.one_of(st.none(), st.floats(0, 1e7, allow_nan=False)) for _ in MEAN]),
    max_size=60)


def as_answer(level, rows):
    """A raw-query answer as InfluxDB sends it: time, the source fields, the tags."""
    columns = ["time", *level.source_fields, *TAGS]
    values = []
    for tags, t, fields in rows:
        values.append([t] + [fields.get(f) for f in level.source_fields]
                      + [tags.get(k) for k in TAGS])
    return {"name": "jobs", "columns": columns, "values": values}


def raw_from(rows):
    raw = {}
    for s, slot, jobs, *means in rows:
        fields = {k: v for k, v in zip(("jobs",) + MEAN, (jobs, *means)) if v is not None}
        raw[(s, BASE + slot * 600)] = fields
    return raw


@given(raw_rows, st.integers(1, 4))
def test_rollup_from_raw_points_matches_recomputation(rows, parts):
    raw = raw_from(rows)
    level = downsample.LEVELS["1h"]
    items = [(SERIES[s], t, f) for (s, t), f in sorted(raw.items(), key=lambda x: x[0][1])]
    # Split into partial rollups (parallel reads) and merge: the result must not change.
    rollup = downsample.Rollup(level, TAGS)
    for k in range(parts):
        part = downsample.Rollup(level, TAGS)
        part.add(as_answer(level, items[k::parts]))
        rollup.merge(part)
    got = {(frozenset(p.tags.items()), p.time): p.fields for p in rollup.points()}
    assert_same(got, expected(raw, HOUR), "1h")
    # The fast encoder writes exactly what transform.encode would.
    lines = rollup.lines()
    assert sorted(line for ls in lines.values() for line in ls) == sorted(
        transform.encode(level.target, rollup.points()))


@given(raw_rows)
def test_daily_from_hourly_equals_daily_from_raw(rows):
    """1d built from 1h equals the mean over the raw points, where each hour's points carry
    every field; a field missing in whole hours is averaged over the hours that have it."""
    # Every point has jobs, and a field is in all points of a series' hour or in none.
    raw = {k: f for k, f in raw_from(rows).items() if "jobs" in f}
    common = {}
    for (s, t), fields in raw.items():
        key = (s, t - t % HOUR)
        common[key] = common.get(key, set(MEAN)) & set(fields)
    for (s, t), fields in raw.items():
        for name in MEAN:
            if name not in common[(s, t - t % HOUR)]:
                fields.pop(name, None)
    hourly = downsample.Rollup(downsample.LEVELS["1h"], TAGS)
    hourly.add(as_answer(downsample.LEVELS["1h"], [
        (SERIES[s], t, f) for (s, t), f in sorted(raw.items(), key=lambda x: x[0][1])]))
    daily = downsample.Rollup(downsample.LEVELS["1d"], TAGS)
    daily.add(as_answer(downsample.LEVELS["1d"], [(p.tags, p.time, p.fields)
                                                   for p in hourly.points()]))
    got = {(frozenset(p.tags.items()), p.time): p.fields for p in daily.points()}
    assert_same(got, expected(raw, DAY), "1d")


def test_field_types_in_lines():
    level = downsample.LEVELS["1h"]
    rollup = downsample.Rollup(level, TAGS)
    rollup.add(as_answer(level, [(SERIES[0], BASE, {"jobs": 3, "corepower": 10}),
                                 (SERIES[0], BASE + 600, {"jobs": 4, "corepower": 11.5})]))
    (line,) = rollup.lines()[BASE]
    assert " jobs=3.5,jobs_sum=7i,samples=2i,corepower=10.75 " in line


def test_lines_refuse_sums_line_protocol_cannot_carry():
    """An overflowing mean (inf) is an error naming the series, not a line InfluxDB refuses."""
    level = downsample.LEVELS["1h"]
    rollup = downsample.Rollup(level, TAGS)
    rollup.add(as_answer(level, [(SERIES[0], BASE, {"jobs": 1, "corepower": 1e308}),
                                 (SERIES[0], BASE + 600, {"jobs": 1, "corepower": 1e308}),
                                 (SERIES[1], BASE, {"jobs": 2, "corepower": 1.0})]))
    with pytest.raises(ValueError, match="cannot carry"):
        rollup.lines()


def test_one_hour_is_posted_in_two_writes():
    """Small writes stay whole; an hour of 25k series written alone goes as two concurrent
    writes, the hours of a backfill whole; at 250k series, writes of WRITE_LINES."""
    assert downsample.piece_size(0) == 1 and downsample.piece_size(9999, alone=True) == 9999
    assert downsample.piece_size(25401, alone=True) == 12701
    assert downsample.piece_size(25401) == 25401
    assert downsample.piece_size(254000) == downsample.WRITE_LINES
    assert downsample.piece_size(254000, alone=True) == downsample.WRITE_LINES


# --- on the real InfluxDB -----------------------------------------------------------------

def run(config, when, average="1h", **kw):
    return downsample.run(config, at(when), average, **kw)


events = st.lists(st.tuples(
    st.integers(0, len(SERIES) - 1), st.integers(0, 2 * 144 - 1), st.integers(0, 10 ** 6),
    st.sampled_from([1.0, 8.0]), st.floats(0, 100, allow_nan=False),
    st.floats(0, 1e6, allow_nan=False)), max_size=25)


@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
@given(initial=events, late=st.lists(events, max_size=3),
       hours=st.lists(st.integers(1, 47), max_size=3, unique=True), data=st.data())
def test_runs_match_recomputation_from_raw_points(influx_server, tmp_path_factory, initial,
                                                  late, hours, data):
    """Sparse 10m data, hourly runs at random hours (the others missed), late points arriving
    between runs: after every run each complete hour equals the recomputation from the raw
    points, no open hour is written, and the final 1d equals the raw daily means. Reruns
    change nothing."""
    config, influx = new_database(influx_server, tmp_path_factory.mktemp("ds"))
    raw = {}

    def add(rows):
        new = {}
        for s, slot, jobs, factor, corepower, pledge in rows:
            key = (s, BASE + slot * 600)
            if key in raw or key in new:
                continue  # late data adds points; rewritten values are not detected (README)
            new[key] = {"jobs": jobs, "resource_factor": factor, "corepower": corepower,
                        "federation_HS06_pledge": pledge}
        write_raw(influx, new)
        raw.update(new)

    add(initial)
    schedule = sorted(hours) + [48]
    for i, hour in enumerate(schedule):
        now = BASE + hour * HOUR + data.draw(st.integers(0, 59 * 60), label="minute")
        run(config, now)
        open_from = now - now % HOUR
        stored = read_rollup(influx, "1h")
        assert_same(stored, expected(raw, HOUR, stop=open_from), f"1h after run at +{hour}h")
        if i < len(late):
            add(late[i])

    final = BASE + 2 * DAY + 6 * 60
    run(config, final, "1d")
    hourly, daily = read_rollup(influx, "1h"), read_rollup(influx, "1d")
    assert_same(hourly, expected(raw, HOUR), "1h after the 1d run")
    assert_same(daily, expected(raw, DAY), "1d")
    assert_day_sums(config, daily)

    run(config, final, "1d")
    run(config, BASE + 2 * DAY + 15 * 60, "1h")
    assert read_rollup(influx, "1h") == hourly and read_rollup(influx, "1d") == daily
    influx.query(f"DROP DATABASE {quote_ident(influx.database)}")


def assert_day_sums(config, daily):
    """Each day written left its sums per series key, as the written 1d points add up."""
    want = defaultdict(dict)
    for (tags, day), fields in daily.items():
        tags = dict(tags)
        key = tuple(tags.get(t, "") for t in schema.SERIES_KEY)
        have = want[day].get(key, (0, 0))
        want[day][key] = (have[0] + fields["jobs_sum"], have[1] + fields["samples"])
    kept = rollups.DaySums(config.data_dir())
    for day, sums in want.items():
        columns = kept.load(day)
        assert columns is not None, day
        assert {tuple(k.split(kept.SEP)): (total, samples)
                for k, total, samples in zip(*columns)} == sums


def test_rollup_field_and_tag_types(influx_server, tmp_path):
    config, influx = new_database(influx_server, tmp_path)
    write_raw(influx, {(1, BASE + 600 * i): {"jobs": i, "resource_factor": 8.0, "corepower": 9.5,
                                             "federation_HS06_pledge": 0.0} for i in range(12)})
    run(config, BASE + DAY + 60, "1d")
    for rp in ("1h", "1d"):
        types = dict(influx.query(f'SHOW FIELD KEYS FROM {quote_ident(rp)}."jobs"')[0][0]["values"])
        assert types == {"jobs": "float", "jobs_sum": "integer", "samples": "integer",
                         "resource_factor": "float", "corepower": "float",
                         "federation_HS06_pledge": "float"}
        series = influx.query(f'SELECT * FROM {quote_ident(rp)}."jobs" GROUP BY *')[0]
        assert [s["tags"] for s in series] == [SERIES[1]]
    assert read_rollup(influx, "1d")[(frozenset(SERIES[1].items()), BASE)] == {
        "jobs": 5.5, "jobs_sum": 66, "samples": 12, "resource_factor": 8,
        "corepower": 9.5, "federation_HS06_pledge": 0}


def test_late_data_is_rolled_up_and_an_empty_source_never_erases(influx_server, tmp_path):
    config, influx = new_database(influx_server, tmp_path)
    fields = {"jobs": 10, "resource_factor": 1.0, "corepower": 1.0, "federation_HS06_pledge": 1.0}
    write_raw(influx, {(0, BASE + 600 * i): dict(fields) for i in range(3)})
    run(config, BASE + 3 * HOUR + 900)
    key = (frozenset(SERIES[0].items()), BASE)
    assert read_rollup(influx, "1h")[key]["samples"] == 3
    # A 10m slot of hour 0 arrives late (a spooled write flushed hours later).
    write_raw(influx, {(0, BASE + 3000): dict(fields, jobs=40)})
    run(config, BASE + 5 * HOUR + 900)
    assert read_rollup(influx, "1h")[key] == {
        "jobs": 17.5, "jobs_sum": 70, "samples": 4, "resource_factor": 1, "corepower": 1,
        "federation_HS06_pledge": 1}
    # A rollup whose source is gone (expired 10m data) stays as it is.
    influx.write_lines("1h",
                       [f"jobs,panda_queue=gone jobs=1.0,jobs_sum=1i,samples=1i {BASE + HOUR}"])
    run(config, BASE + 6 * HOUR)
    assert read_rollup(influx, "1h")[(frozenset({("panda_queue", "gone")}), BASE + HOUR)] == {
        "jobs": 1, "jobs_sum": 1, "samples": 1}


def test_rewritten_values_need_an_explicit_range(influx_server, tmp_path):
    """A rerun of a 10m slot with other counts keeps the sample count: the look-back cannot
    see it (documented); --start/--end recomputes the range."""
    config, influx = new_database(influx_server, tmp_path)
    write_raw(influx, {(0, BASE): {"jobs": 1}})
    run(config, BASE + HOUR)
    write_raw(influx, {(0, BASE): {"jobs": 5}})
    run(config, BASE + 2 * HOUR)
    key = (frozenset(SERIES[0].items()), BASE)
    assert read_rollup(influx, "1h")[key]["jobs_sum"] == 1
    run(config, BASE + 2 * HOUR, start=at(BASE), end=at(BASE + HOUR))
    assert read_rollup(influx, "1h")[key]["jobs_sum"] == 5


def test_daily_run_rolls_up_the_last_hour_first(influx_server, tmp_path):
    """At 00:06 the hourly run of 00:15 has not written 23:00 yet; the daily run does."""
    config, influx = new_database(influx_server, tmp_path)
    raw = {(0, BASE + 600 * i): {"jobs": i % 7} for i in range(144)}
    write_raw(influx, raw)
    run(config, BASE + 23 * HOUR + 900)      # hourly runs up to 22:00
    assert max(t for _, t in read_rollup(influx, "1h")) == BASE + 22 * HOUR
    run(config, BASE + DAY + 360, "1d")
    assert_same(read_rollup(influx, "1d"), expected(raw, DAY), "1d")


def test_dry_run_writes_nothing(influx_server, tmp_path, capsys):
    config, influx = new_database(influx_server, tmp_path)
    write_raw(influx, {(0, BASE + 1200): {"jobs": 4, "corepower": 2.5}})
    run(config, BASE + HOUR + 60, dry_run=True)
    out = capsys.readouterr().out
    assert '"1h"."jobs"' in out and "missing" in out
    assert "jobs=4.0,jobs_sum=4i,samples=1i,corepower=2.5" in out
    assert read_rollup(influx, "1h") == {}
    run(config, BASE + DAY + 360, "1d", dry_run=True)
    out = capsys.readouterr().out
    assert out.index('"1h"."jobs"') < out.index("a dry run does not apply the changes above")
    assert read_rollup(influx, "1h") == {} and read_rollup(influx, "1d") == {}
    assert influx.query('SELECT * FROM "10m"."qmonit_runs"')[0] == []
    assert not rollups.DaySums(config.data_dir()).directory.exists()


def test_run_is_recorded(influx_server, tmp_path):
    config, influx = new_database(influx_server, tmp_path)
    write_raw(influx, {(0, BASE + 1200): {"jobs": 4}, (1, BASE + 1200): {"jobs": 1}})
    run(config, BASE + HOUR + 60)
    (series,) = influx.query('SELECT * FROM "10m"."qmonit_runs" GROUP BY *')[0]
    assert series["tags"] == {"script": "downsample_1h", "status": "ok"}
    row = dict(zip(series["columns"], series["values"][0]))
    assert row["points"] == 2 and row["errors"] == 0 and row["time"] == BASE + HOUR


# --- the script ----------------------------------------------------------------------------

def write_config_file(tmp_path, url, database, extra=""):
    path = tmp_path / "config.cfg"
    path.write_text(f"[credentials]\ndatabase = {database}\n[influxdb]\nurl = {url}\n"
                    f"timeout = 5\n[paths]\ndata_dir = {tmp_path / 'data'}\n{extra}")
    return str(path)


def test_main_success_is_quiet(influx_server, tmp_path, capsys):
    config, influx = new_database(influx_server, tmp_path)
    write_raw(influx, {(0, BASE + 600): {"jobs": 2}})
    path = write_config_file(tmp_path, influx_server.url, influx.database)
    stamp = at(BASE + HOUR + 900).strftime("%Y-%m-%d %H:%M:%S")
    assert script.main(["--config", path, "--average", "1h", "--timestamp", stamp]) == 0
    assert capsys.readouterr().err == ""
    assert len(read_rollup(influx, "1h")) == 1
    day = at(BASE).strftime("%Y-%m-%d")
    assert script.main(["--config", path, "--average", "1d", "--timestamp", stamp,
                        "--start", day, "--end", at(BASE + DAY).strftime("%Y-%m-%d")]) == 0
    # The day is not complete at the timestamp: nothing to do, said once.
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no complete 1d bucket" in err[0]
    assert read_rollup(influx, "1d") == {}


@pytest.mark.parametrize("args, message", [
    ([], "--average"),
    (["--average", "2h"], "invalid choice"),
    (["--average", "1h", "--end", "2026-01-01"], "--end needs --start"),
    (["--average", "1h", "--start", "2026-01-02", "--end", "2026-01-01"], "--end must be after"),
    (["--average", "1h", "--start", "yesterday"], "invalid timestamp"),
])
def test_main_usage_errors(tmp_path, capsys, args, message):
    path = write_config_file(tmp_path, "http://127.0.0.1:9", "x")
    assert script.main(["--config", path, "--timestamp", "2026-01-03 00:00:00", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_main_bad_lookback(tmp_path, capsys):
    path = write_config_file(tmp_path, "http://127.0.0.1:9", "x",
                             "[downsample]\nlookback_1h = two days\n")
    assert script.main(["--config", path, "--average", "1h"]) == 2
    err = capsys.readouterr().err
    assert "[downsample] lookback_1h" in err and str(path) in err


def test_main_influxdb_down(tmp_path, capsys):
    from qmonit.dev.devservers import free_port
    url = f"http://127.0.0.1:{free_port()}"
    path = write_config_file(tmp_path, url, "x")
    assert script.main(["--config", path, "--average", "1h"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and url in err[0] and err[0].startswith("downsample.py: error:")


def test_demo_scale_smoke(influx_server, tmp_path):
    """A few hundred series over a day through main(): 1h then 1d agree with the raw data."""
    config, influx = new_database(influx_server, tmp_path)
    rnd = random.Random(5)
    series = [{**SERIES[0], "panda_queue": f"Q{i}", "job_status": st_} for i in range(60)
              for st_ in ("running", "failed", "assigned")]
    raw = {}
    lines = []
    for slot in range(0, 144):
        t = BASE + slot * 600
        for k, tags in enumerate(series):
            if rnd.random() < 0.1:
                continue
            fields = {"jobs": rnd.randrange(1000), "resource_factor": 8.0,
                      "corepower": 10.0 + k % 3, "federation_HS06_pledge": 1e5}
            raw[(k, t)] = fields
            lines.append(transform.Point(tags, fields, t))
    influx.write_lines("10m", transform.encode(schema.JOBS, lines))
    path = write_config_file(tmp_path, influx_server.url, influx.database)
    stamp = at(BASE + DAY + 360).strftime("%Y-%m-%d %H:%M:%S")
    assert script.main(["--config", path, "--average", "1d", "--timestamp", stamp]) == 0
    daily = read_rollup(influx, "1d")
    assert len(daily) == len(series)
    want = defaultdict(list)
    for (k, _t), fields in raw.items():
        want[frozenset(series[k].items())].append(fields["jobs"])
    for (tags, t), fields in daily.items():
        assert t == BASE and fields["jobs_sum"] == sum(want[tags])
        assert math.isclose(fields["jobs"], sum(want[tags]) / len(want[tags]), rel_tol=1e-12)


# --- the cron wrappers -----------------------------------------------------------------------

ROOT = Path(script.__file__).resolve().parent


def wrapper(name, *args, cwd):
    return subprocess.run([str(ROOT / name), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120)


def test_wrappers_run_from_anywhere_and_pass_the_status_on(influx_server, tmp_path):
    config, influx = new_database(influx_server, tmp_path)
    write_raw(influx, {(0, BASE + 600): {"jobs": 2}})
    path = write_config_file(tmp_path, influx_server.url, influx.database)
    stamp = at(BASE + DAY + 360).strftime("%Y-%m-%d %H:%M:%S")
    done = wrapper("run_downsample_1d.sh", "--config", path, "--timestamp", stamp, cwd="/")
    assert (done.returncode, done.stderr) == (0, "")
    assert len(read_rollup(influx, "1h")) == 1 and len(read_rollup(influx, "1d")) == 1
    bad = write_config_file(tmp_path, influx_server.url, "x", "[downsample]\nlookback_1h = ?\n")
    failed = wrapper("run_downsample_1h.sh", "--config", bad, cwd=tmp_path)
    assert failed.returncode == 2 and "lookback_1h" in failed.stderr


def test_wrapper_never_overlaps_itself(tmp_path):
    lock = ROOT / "data" / ".lock-downsample-1h"
    lock.parent.mkdir(exist_ok=True)
    with open(lock, "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        done = wrapper("run_downsample_1h.sh", "--config", "/nonexistent", cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.strip() == ("run_downsample_1h.sh: the previous run still holds "
                                   "data/.lock-downsample-1h; not starting another")


def test_rollup_of_what_fetch_queues_writes(config_path, sim, influx):
    """The real path: six slots through fetch_queues.py, then downsample.py; the 1h rollup
    equals the recomputation from the 10m points as stored."""
    import fetch_queues
    hour = BASE + 5 * HOUR
    try:
        for i in range(6):
            sim.set_time(at(hour + i * 600 + 30))
            stamp = at(hour + i * 600 + 30).strftime("%Y-%m-%d %H:%M:%S")
            assert fetch_queues.main(["--config", str(config_path), "--timestamp", stamp]) == 0
    finally:
        sim.set_time(None)
    stamp = at(hour + HOUR + 900).strftime("%Y-%m-%d %H:%M:%S")
    assert script.main(["--config", str(config_path), "--average", "1h", "--timestamp", stamp]) == 0
    raw = defaultdict(list)
    for series in influx.query('SELECT * FROM "10m"."jobs" GROUP BY *')[0]:
        tags = frozenset((k, v) for k, v in series["tags"].items() if v)
        raw[tags] += [dict(zip(series["columns"], row)) for row in series["values"]]
    stored = read_rollup(influx, "1h")
    assert len(stored) == len(raw) > 1000
    for tags, rows in raw.items():
        got = stored[(tags, hour)]
        assert got["samples"] == len(rows) and got["jobs_sum"] == sum(r["jobs"] for r in rows)
        for name in ("jobs",) + MEAN:
            want = math.fsum(r[name] for r in rows) / len(rows)
            assert math.isclose(got[name], want, rel_tol=1e-9, abs_tol=1e-12), (tags, name)


def test_server_side_into_agrees_but_is_not_what_runs(influx_server, tmp_path):
    """What InfluxDB's own SELECT ... INTO ... GROUP BY time(...), * gives (the queries of
    bench/bench_downsample.py, the reference there): the same rows, tags kept as tags with
    GROUP BY *, and the same field types (sum and count of integers stay integers). It is
    exact; downsample.py does not use it only because it is slower at ATLAS scale."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
    from bench_downsample import server_queries

    config, influx = new_database(influx_server, tmp_path)
    rng = random.Random(5)
    raw = {(s, BASE + 600 * i): {"jobs": rng.randrange(10 ** 6),
                                 "resource_factor": rng.choice([1.0, 8.0]),
                                 "corepower": rng.uniform(0, 100),
                                 "federation_HS06_pledge": rng.uniform(0, 1e6)}
           for s in range(len(SERIES)) for i in range(144) if rng.random() < 0.8}
    write_raw(influx, raw)
    run(config, BASE + DAY + 60, "1d")
    hourly, daily = server_queries(BASE, BASE + DAY, "jobs_into")
    influx.query(hourly)
    influx.query(daily)

    def types(rp, name):
        return dict(influx.query(f"SHOW FIELD KEYS FROM {quote_ident(rp)}.{quote_ident(name)}"
                                 )[0][0]["values"])

    def tag_keys(rp, name):
        return {row[0] for row in influx.query(
            f"SHOW TAG KEYS FROM {quote_ident(rp)}.{quote_ident(name)}")[0][0]["values"]}

    for rp, step in (("1h", HOUR), ("1d", DAY)):
        assert types(rp, "jobs_into") == types(rp, "jobs")
        assert tag_keys(rp, "jobs_into") == tag_keys(rp, "jobs") == set(schema.JOBS.tags)
        theirs = {}
        for series in influx.query(f'SELECT * FROM {quote_ident(rp)}."jobs_into" GROUP BY *')[0]:
            tags = frozenset((k, v) for k, v in series["tags"].items() if v)
            for row in series["values"]:
                theirs[(tags, row[0])] = {c: v for c, v in zip(series["columns"][1:], row[1:])
                                          if v is not None}
        want = expected(raw, step)
        assert_same(theirs, want, f"INTO {rp}")
        assert_same(read_rollup(influx, rp), want, rp)
