"""Moving averages: every value equals an independent recomputation from the raw 10m points
(and the 1d rollup), through the real InfluxDB, including gaps and series that vanish; for
the first run (seed) and for runs carried from the previous one (step, rerun, gaps)."""
import datetime as dt
import gzip
import itertools
import logging
import math

import pytest
from conftest import recent_slot
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qmonit.core import schema
from qmonit.core.influxql import quote_ident
from qmonit.jobs import averages, rollups, transform
from qmonit.sinks.influx import Influx

UTC = dt.UTC
SLOT = dt.timedelta(minutes=10)
WINDOW_SLOTS = {"avg1h": 6, "avg6h": 36, "avg12h": 72, "avg24h": 144}
_databases = itertools.count()

# Tag values that need escaping in line protocol, and plain ones.
tag_text = st.text(alphabet="abcXYZ09_-. ,=", min_size=1, max_size=6).filter(
    lambda s: s.strip() == s)
series_keys = st.lists(st.tuples(tag_text, st.sampled_from(("managed", "user", "test")),
                                 st.sampled_from(("SCORE", "MCORE")),
                                 st.sampled_from(("running", "failed", "holding"))),
                       min_size=1, max_size=5, unique=True)
counts = st.integers(0, 10**7)
METAS = [("SITE_A", "DE", "T2"), ("SITE_B", "US", "T1")]


def now_slot():
    return recent_slot(0)


@st.composite
def histories(draw, low=-150, high=3):
    """(T, raw, daily): raw[key] = {slot offset from T: (value, meta)} with offsets in
    [low, high] (some outside the 24 h window), daily[key] = {days before T's day: (jobs_sum,
    samples)}."""
    # T up to ~4 days back (the 10m policy holds 7), at any time of day.
    slot = now_slot() - draw(st.integers(12, 600)) * SLOT
    raw, daily = {}, {}
    for key in draw(series_keys):
        offsets = draw(st.sets(st.integers(low, high), max_size=40))
        raw[key] = {o: (draw(counts), draw(st.sampled_from(METAS))) for o in offsets}
        days = draw(st.sets(st.integers(-1, 32), max_size=6))
        daily[key] = {d: (float(draw(st.integers(0, 10**8))), draw(st.integers(1, 144)))
                      for d in days}
    return slot, raw, daily


def expected(raw, daily, at=0, day_shift=0):
    """The contract's definitions from the raw points, one series at a time, at offset `at`.
    day_shift: how many days T's day is after the day the daily offsets count from."""
    out = {}
    for key, points in raw.items():
        inside = {o: v for o, (v, _) in points.items() if at - 144 < o <= at}
        if not inside:
            continue
        row = {"current": inside.get(at, 0)}
        for name, n in WINDOW_SLOTS.items():
            values = [v for o, v in inside.items() if at - n < o]
            row[name] = sum(values) / len(values) if values else None
        for name, n in (("avg7d", 7), ("avg30d", 30)):
            rolled = [daily[key][d] for d in range(1 - day_shift, n + 1 - day_shift)
                      if d in daily[key]]
            samples = sum(s for _, s in rolled)
            row[name] = math.fsum(j for j, _ in rolled) / samples if samples else None
        row["coverage"] = len(inside) / 144
        row["metas"] = {m for _, m in points.values()}
        row["meta_now"] = points[at][1] if at in points else None
        out[key] = row
    return out


def write(influx, slot, raw, daily):
    points, rolled = [], []
    day = averages.day_start(slot)
    for key, series in raw.items():
        for offset, (value, meta) in series.items():
            tags = dict(zip(schema.SERIES_KEY, key))
            tags.update(zip(averages.META, meta))
            points.append(transform.Point(tags, {"jobs": value, "time_window": 10},
                                          int((slot + offset * SLOT).timestamp())))
        for days, (jobs_sum, samples) in daily.get(key, {}).items():
            tags = dict(zip(schema.SERIES_KEY, key))
            rolled.append(transform.Point(
                tags, {"jobs": jobs_sum / samples, "jobs_sum": jobs_sum, "samples": samples},
                int((day - days * dt.timedelta(days=1)).timestamp())))
    if points:
        influx.write_lines(schema.RP_10M, transform.encode(schema.JOBS, points))
    if rolled:
        influx.write_lines(schema.RP_1D, transform.encode(schema.JOBS_1D, rolled))


def close(a, b):
    if a is None or b is None:
        return a is b
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


def check(got, want):
    assert {tuple(a[:4]) for a in got} == set(want)
    for a in got:
        row = want[tuple(a[:4])]
        assert a.current == row["current"] and isinstance(a.current, int)
        for name in schema.AVERAGE_WINDOWS + ("coverage",):
            assert close(getattr(a, name), row[name]), (a[:4], name, getattr(a, name), row[name])
        meta = (a.atlas_site, a.cloud, a.tier)
        assert meta == row["meta_now"] if row["meta_now"] else meta in row["metas"]


@pytest.fixture
def fresh_influx(influx_server):
    made = []

    def make():
        influx = Influx(influx_server.url, f"qmonit_avg_{next(_databases)}")
        influx.ensure_database()
        made.append(influx)
        return influx

    yield make
    for influx in made:
        influx.query(f"DROP DATABASE {quote_ident(influx.database)}")


def slow(examples):
    return settings(max_examples=examples, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])


@slow(30)
@given(history=histories())
def test_seed_matches_a_recomputation_from_raw_points(fresh_influx, history):
    slot, raw, daily = history
    influx = fresh_influx()
    write(influx, slot, raw, daily)
    got, at_slot = averages.compute(influx, slot)
    assert at_slot == any(0 in points for points in raw.values())
    check(got, expected(raw, daily))
    assert all(isinstance(getattr(a, n), float) for a in got for n in schema.AVERAGE_WINDOWS
               if getattr(a, n) is not None)


# Runs after the first: 1 = the next slot, 0 = the same slot again after its points changed,
# 2-3 = after missed runs, 9 = a long gap (seeds again), -4 = a backfill of an older slot.
moves = st.lists(st.sampled_from([1, 1, 1, 0, 2, 3, 9, -4]), min_size=1, max_size=6)


@slow(25)
@given(history=histories(low=-150, high=40), moves=moves, data=st.data())
def test_carried_runs_match_a_recomputation(fresh_influx, tmp_path_factory, history, moves,
                                            data):
    slot, raw, daily = history
    influx = fresh_influx()
    data_dir = tmp_path_factory.mktemp("avg")
    write(influx, slot, raw, daily)
    at = 0
    got, _ = averages.compute(influx, slot, data_dir)
    check(got, expected(raw, daily))
    for move in moves:
        if move == 0:
            # fetch_queues.py ran again for the slot: its points change, some go or come.
            when = slot + at * SLOT
            for key in raw:
                change = data.draw(st.sampled_from(["keep", "set", "drop"]), label="change")
                if change == "keep" or (change == "drop" and at not in raw[key]):
                    continue
                # Out with the old point (any metadata); a day start may hold a 1d point too.
                if at in raw[key] and when != averages.day_start(when):
                    influx.query(f"DELETE FROM {quote_ident(schema.JOBS.name)} WHERE "
                                 + " AND ".join(f"{quote_ident(t)} = '{v}'"
                                                for t, v in zip(schema.SERIES_KEY, key))
                                 + f" AND time = {int(when.timestamp())}s")
                    del raw[key][at]
                if change == "set" and at not in raw[key]:
                    raw[key][at] = (data.draw(counts), data.draw(st.sampled_from(METAS)))
                elif change == "set":
                    raw[key][at] = (data.draw(counts), raw[key][at][1])
            write(influx, slot, {k: {at: v[at]} for k, v in raw.items() if at in v}, {})
        else:
            at += move
        here = slot + at * SLOT
        shift = (averages.day_start(here) - averages.day_start(slot)).days
        got, _ = averages.compute(influx, here, data_dir)
        check(got, expected(raw, daily, at, shift))


@given(st.lists(st.dictionaries(st.sampled_from("abcd"), st.integers(0, 99), max_size=4),
                min_size=150, max_size=150),
       st.lists(st.sampled_from([1, 1, 1, -1]), max_size=12))
def test_steps_and_undos_keep_exact_window_sums(columns, moves):
    """Windows.step/unstep against sums recomputed from the columns (pure)."""
    keys = lambda c: {(k, "l", "r", "s"): v for k, v in c.items()}  # noqa: E731
    cols = [keys(c) for c in columns]   # cols[i]: the slot at offset i - 143 from T

    def brute(i):
        out = {}
        for name, n in WINDOW_SLOTS.items():
            for j in range(max(0, i - n + 1), i + 1):
                for key, v in cols[j].items():
                    row = out.setdefault(key, {w: [0, 0] for w in WINDOW_SLOTS})
                    row[name][0] += v
                    row[name][1] += 1
        return {k: [x for w in WINDOW_SLOTS for x in row[w]] for k, row in out.items()
                if row["avg24h"][1]}

    slot = dt.datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    i = 143
    windows = averages.Windows(slot, brute(i), {})
    lengths = list(WINDOW_SLOTS.values())
    for move in moves:
        if move == 1 and i + 1 < len(cols):
            i += 1
            windows.step(cols[i], {}, [cols[i - n] if i - n >= 0 else {} for n in lengths])
        elif move == -1 and i - 1 >= max(lengths):
            windows.unstep(cols[i], [cols[i - n] for n in lengths], [{}] * 4)
            i -= 1
        assert windows.sums == brute(i)


def test_window_edges_are_half_open(fresh_influx):
    """(T - w, T]: a point exactly at T - 1h is out of avg1h and in avg6h; T + 10m is out."""
    influx = fresh_influx()
    slot = now_slot()
    key = ("Q", "managed", "SCORE", "running")
    meta = ("S", "C", "T2")
    raw = {key: {-6: (600, meta), -5: (60, meta), 0: (6, meta), 1: (10**6, meta),
                 -144: (10**6, meta)}}
    write(influx, slot, raw, {})
    (a,), at_slot = averages.compute(influx, slot)
    assert at_slot and a.current == 6
    assert a.avg1h == 33 and a.avg6h == 222 and a.avg24h == 222
    assert a.avg7d is None and a.avg30d is None
    assert a.coverage == 3 / 144


def test_vanished_series_is_current_zero_and_metadata_follows(fresh_influx, tmp_path):
    influx = fresh_influx()
    slot = now_slot() - 3 * SLOT
    gone = ("GONE", "user", "SCORE", "running")
    moved = ("MOVED", "managed", "MCORE", "running")
    raw = {gone: {-100: (40, ("S1", "C", "T2")), -50: (20, ("S1", "C", "T2"))},
           moved: {-2: (7, ("OLD", "C", "T2")), 0: (9, ("NEW", "D", "T1")),
                   1: (11, ("NEWER", "D", "T1"))}}
    write(influx, slot, raw, {gone: {3: (1440.0, 144)}})
    got, _ = averages.compute(influx, slot, tmp_path)
    by_key = {tuple(a[:4]): a for a in got}
    assert by_key[gone].current == 0 and by_key[gone].avg1h is None
    assert by_key[gone].avg24h == 30 and by_key[gone].avg7d == 10 == by_key[gone].avg30d
    assert by_key[moved].avg1h == 8 and (by_key[moved].atlas_site, by_key[moved].cloud) == \
        ("NEW", "D")
    # The next run steps: the moved series takes its newest metadata.
    got, _ = averages.compute(influx, slot + SLOT, tmp_path)
    by_key = {tuple(a[:4]): a for a in got}
    assert by_key[moved].atlas_site == "NEWER" and by_key[moved].avg1h == 9
    assert by_key[gone].atlas_site == "S1" and by_key[gone].current == 0


def test_state_files_and_dry_runs(fresh_influx, tmp_path, caplog, monkeypatch):
    influx = fresh_influx()
    slot = now_slot() - 5 * SLOT
    key = ("Q", "managed", "SCORE", "running")
    write(influx, slot, {key: {k: (k + 200, ("S", "C", "T")) for k in range(-150, 6)}}, {})
    hour = lambda k: sum(o + 200 for o in range(k - 5, k + 1)) / 6  # noqa: E731
    store = averages.Store(tmp_path)
    # A dry run (save=False) writes nothing, not even a lock file.
    averages.compute(influx, slot, tmp_path, save=False)
    assert not (tmp_path / "cache").exists()
    averages.compute(influx, slot, tmp_path)
    assert store.load_windows().slot == slot and store.has_slot(slot)
    for k in (1, 2, 3):
        (a,), _ = averages.compute(influx, slot + k * SLOT, tmp_path)
        assert a.avg1h == hour(k)
    # Slots that left every window are removed; those read from InfluxDB are kept.
    kept = sorted(int(p.name[5:-8]) for p in store.directory.glob("slot-*.json.gz"))
    assert min(kept) >= int((slot + 3 * SLOT - dt.timedelta(hours=24)).timestamp())
    assert int((slot + 3 * SLOT - dt.timedelta(hours=1)).timestamp()) in kept
    # A backfill of an older slot leaves the carried state alone...
    averages.compute(influx, slot + SLOT, tmp_path)
    assert store.load_windows().slot == slot + 3 * SLOT
    # ...unless that slot's points changed since they were carried: then the next run seeds.
    write(influx, slot, {key: {1: (5, ("S", "C", "T"))}}, {})
    averages.compute(influx, slot + SLOT, tmp_path)
    assert store.load_windows() is None
    (a,), _ = averages.compute(influx, slot + 3 * SLOT, tmp_path)
    assert a.avg1h == hour(3) + (5 - 201) / 6 and store.load_windows().seeded == slot + 3 * SLOT
    write(influx, slot, {key: {1: (201, ("S", "C", "T"))}}, {})
    averages.compute(influx, slot + 1 * SLOT, tmp_path)
    # Carried sums are seeded again after RESEED_AFTER.
    monkeypatch.setattr(averages, "RESEED_AFTER", 2 * SLOT)
    averages.compute(influx, slot + 2 * SLOT, tmp_path)
    assert store.load_windows().seeded == slot + 2 * SLOT
    averages.compute(influx, slot + 3 * SLOT, tmp_path)
    assert store.load_windows().seeded == slot + 2 * SLOT
    averages.compute(influx, slot + 4 * SLOT, tmp_path)
    assert store.load_windows().seeded == slot + 4 * SLOT
    # An unreadable state is reported and seeded again.
    (store.directory / "windows.json.gz").write_bytes(gzip.compress(b"{broken"))
    (a,), _ = averages.compute(influx, slot + 5 * SLOT, tmp_path)
    assert "seeding again" in caplog.text and a.avg1h == hour(5)


def test_forget_carried_only_for_slots_inside_the_carried_windows(fresh_influx, tmp_path):
    influx = fresh_influx()
    slot = now_slot() - 5 * SLOT
    write(influx, slot, {("Q", "managed", "SCORE", "running"): {0: (7, METAS[0])}}, {})
    averages.forget_carried(tmp_path, slot)              # nothing carried: nothing to do
    averages.compute(influx, slot, tmp_path)
    store = averages.Store(tmp_path)
    assert store.carried_slot() == int(slot.timestamp())
    for outside in (slot + SLOT, slot - dt.timedelta(hours=24)):
        averages.forget_carried(tmp_path, outside)
        assert store.load_windows().slot == slot
    averages.forget_carried(tmp_path, slot - dt.timedelta(hours=24) + SLOT)
    assert store.load_windows() is None and store.carried_slot() is None


def test_pieces_merge_metadata_groups():
    tags = ["panda_queue", "prod_source", "resource", "job_status"]
    meta_tags = ["atlas_site", "cloud", "tier"]
    counts = [{"name": "jobs", "columns": ["time", "count"] + tags + meta_tags,
               "values": [[0, 100, "Q", "l", "r", "s", "OLD", "C", "T"],
                          [0, 44, "Q", "l", "r", "s", "NEW", "C", "T"],
                          [0, 3, "P", "l", "r", "s", None, None, None]]}]
    sums = [{"name": "jobs", "columns": ["time", "sum"] + tags,
             "values": [[0, 1440, "Q", "l", "r", "s"], [0, 3, "P", "l", "r", "s"]]}]
    got, meta = averages.parse_piece(sums, counts)
    q, p = averages.join(("Q", "l", "r", "s")), averages.join(("P", "l", "r", "s"))
    assert got == {q: [1440, 144], p: [3, 3]}
    assert meta == {q: averages.join(("OLD", "C", "T")), p: averages.NO_META}


def test_rollup_cache_is_reused_within_the_day_until_yesterday_exists(fresh_influx, tmp_path):
    influx = fresh_influx()
    # Yesterday noon: a slot well inside its day.
    slot = averages.day_start(now_slot()) - dt.timedelta(hours=12)
    key = ("Q", "managed", "SCORE", "running")
    meta = ("S", "C", "T2")
    cache = averages.RollupCache(tmp_path)
    write(influx, slot, {key: {0: (5, meta), -1: (5, meta), 1: (5, meta)}},
          {key: {2: (200.0, 100)}})
    (a,), _ = averages.compute(influx, slot, tmp_path)
    assert a.avg7d == 2.0 and cache.path.exists()
    # Yesterday's rollup was missing: the next run asks again and sees it.
    write(influx, slot, {key: {}}, {key: {1: (1000.0, 100)}})
    (a,), _ = averages.compute(influx, slot, tmp_path)
    assert a.avg7d == 6.0
    # Now complete: later slots of the day reuse the cache (a rewrite is not seen)...
    write(influx, slot, {key: {}}, {key: {1: (3000.0, 100)}})
    (a,), _ = averages.compute(influx, slot + SLOT, tmp_path)
    assert a.avg7d == 6.0
    # ...until it is 6 hours old, or for a slot before the cached one.
    (a,), _ = averages.compute(influx, slot - SLOT, tmp_path, save=False)
    assert a.avg7d == 16.0
    assert cache.load(slot + averages.ROLLUP_CACHE_MAX_AGE) is None
    assert cache.load(slot) is not None
    cache.path.write_text("{not json")
    assert cache.load(slot) is None


def test_a_seeding_run_leaves_a_stale_rollup_cache_to_the_next_run(fresh_influx, tmp_path):
    """Seeding and refreshing the rollup averages never fall on one run: a run that seeds uses
    the day's cache however old, and the next run (a step) refreshes it."""
    influx = fresh_influx()
    slot = averages.day_start(now_slot()) - dt.timedelta(hours=12)
    later = slot + averages.ROLLUP_CACHE_MAX_AGE + dt.timedelta(hours=1)
    key = ("Q", "managed", "SCORE", "running")
    meta = ("S", "C", "T2")
    write(influx, slot, {key: {0: (5, meta)}}, {key: {1: (200.0, 100)}})
    write(influx, later, {key: {0: (5, meta), 1: (5, meta)}}, {})
    (a,), _ = averages.compute(influx, slot, tmp_path)
    assert a.avg7d == 2.0
    write(influx, slot, {key: {}}, {key: {1: (300.0, 100)}})     # the rollup rewritten
    (a,), _ = averages.compute(influx, later, tmp_path)    # a gap of 7 h: seeds
    assert a.avg7d == 2.0
    (a,), _ = averages.compute(influx, later + SLOT, tmp_path)    # steps, and refreshes
    assert a.avg7d == 3.0
    (a,), _ = averages.compute(influx, later + 2 * SLOT, tmp_path)
    assert a.avg7d == 3.0


def keep_day_sums(data_dir, slot, daily, missing=()):
    """The day sums downsample.py keeps of the 1d points write() writes, for each of the 30
    days before T's day but the missing ones (as if each had been rolled up; a day without
    points is empty)."""
    kept = rollups.DaySums(data_dir)
    day = averages.day_start(slot)
    for k in sorted(set(range(1, 31)) - set(missing)):
        kept.save((day - k * averages.DAY).timestamp(),
                  {key: list(days[k]) for key, days in daily.items() if k in days})
    return kept


@slow(20)
@given(history=histories(), missing=st.sets(st.integers(1, 30), max_size=30))
def test_day_sums_stand_in_for_the_grouped_rollup(fresh_influx, tmp_path_factory, caplog,
                                                  history, missing):
    """The days without kept sums (any of them) are grouped in InfluxDB, the others added up
    from the files: the same averages."""
    slot, raw, daily = history
    influx = fresh_influx()
    data_dir = tmp_path_factory.mktemp("days")
    write(influx, slot, raw, daily)
    keep_day_sums(data_dir, slot, daily, missing)
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger=averages.__name__):
        got, _ = averages.compute(influx, slot, data_dir)
    if len(missing) < 30:
        assert f"from the day sums downsample.py kept ({30 - len(missing)} days" in caplog.text
    check(got, expected(raw, daily))


def test_day_sums_that_disagree_with_influxdb_are_dropped(fresh_influx, tmp_path, caplog):
    influx = fresh_influx()
    slot = averages.day_start(now_slot()) - dt.timedelta(hours=12)
    key = ("Q", "managed", "SCORE", "running")
    meta = ("S", "C", "T2")
    turn = (averages.day_start(slot) - averages.checked_days(slot)[1]).days
    daily = {key: {1: (200.0, 100), turn: (400.0, 100), 31: (900.0, 100)}}
    write(influx, slot, {key: {0: (5, meta)}}, daily)
    kept = keep_day_sums(tmp_path, slot, daily)
    caplog.set_level(logging.DEBUG, logger=averages.__name__)
    (a,), _ = averages.compute(influx, slot, tmp_path, save=False)
    assert (a.avg7d, a.avg30d) == (2.0, 3.0) and "from the day sums" in caplog.text
    # The turn's day rewritten behind downsample.py's back: its sums are not used again.
    write(influx, slot, {key: {}}, {key: {turn: (1000.0, 200)}})
    caplog.clear()
    (a,), _ = averages.compute(influx, slot, tmp_path)
    assert a.avg30d == 4.0 and "differ from InfluxDB" in caplog.text
    assert kept.load(averages.checked_days(slot)[1].timestamp()) is None
    # The day's sums kept again; yesterday's missing: that day alone is queried.
    keep_day_sums(tmp_path, slot, {key: {**daily[key], turn: (1000.0, 200)}})
    kept.drop((averages.day_start(slot) - averages.DAY).timestamp())
    averages.RollupCache(tmp_path).path.unlink()
    caplog.clear()
    (a,), _ = averages.compute(influx, slot, tmp_path)
    assert (a.avg7d, a.avg30d) == (2.0, 4.0) and "differ" not in caplog.text
    assert "from the day sums downsample.py kept (29 days; 1 queried)" in caplog.text


def test_points_leave_out_missing_windows():
    slot = dt.datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    a = averages.Average("Q", "managed", "SCORE", "running", "S", "C", "T2", current=3,
                         avg1h=2.5, avg6h=2.5, avg12h=2.5, avg24h=2.5, avg7d=None, avg30d=None,
                         coverage=2 / 144)
    (line,) = transform.encode(schema.AVERAGES, averages.points([a], slot))
    assert "avg7d" not in line and "avg30d" not in line
    assert "current=3i" in line and "avg24h=2.5" in line
    assert line.endswith(f" {int(slot.timestamp())}")
    assert set(averages.Average._fields) >= set(schema.AVERAGES.tags + schema.AVERAGES.fields)
