"""Carried rollup sums (qmonit/jobs/rollups.py): the slots fetch_queues.py writes and the hours
downsample.py writes are summed as they go, and downsample.py builds a bucket from those sums
when InfluxDB's count of its source samples agrees. Every result here must equal, exactly,
the rollup the same run computes from the raw points in a database without carried sums."""
import json
import logging
import random
import shutil
import zlib

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from qmonit.core import schema
from qmonit.core.influxql import quote_ident
from qmonit.jobs import downsample, rollups, transform
from qmonit.sources.cric import QueueInfo

from .test_downsample import (
    BASE,
    DAY,
    HOUR,
    SERIES,
    assert_same,
    at,
    expected,
    new_database,
    read_rollup,
    run,
)


def fields_of(rng):
    return {"jobs": rng.randrange(10 ** 6), "resource_factor": rng.choice([1.0, 8.0]),
            "corepower": rng.uniform(0, 100), "federation_HS06_pledge": rng.uniform(0, 1e6)}


class Pair:
    """The same 10m points in two databases: `carried` written as fetch_queues.py writes them
    (sums carried under its data_dir) and rolled up by the cron runs, `plain` written directly
    and rolled up from the raw points (no carried sums)."""

    def __init__(self, influx_server, tmp_path_factory, extra=""):
        make = tmp_path_factory.mktemp
        self.carried_config, self.carried = new_database(influx_server, make("c"), extra)
        self.plain_config, self.plain = new_database(influx_server, make("p"))
        self.raw = {}

    def write_slot(self, slot, fields_by_series, carry=True, write=True):
        """One slot as fetch_queues.py writes it: declare, write, add."""
        points = [transform.Point(SERIES[s], f, slot) for s, f in sorted(fields_by_series.items())]
        lines = transform.encode(schema.JOBS, points)
        slot_carry = downsample.SlotCarry(self.carried_config.data_dir(), slot, lines)
        if carry:
            slot_carry.declare()
        if write:
            self.carried.write_lines(schema.RP_10M, lines)
            self.plain.write_lines(schema.RP_10M, lines)
            for s, f in fields_by_series.items():
                self.raw[(s, slot)] = f
        if carry:
            slot_carry.add(points)

    def run(self, now, average="1h"):
        """The cron run in the carried database; in the plain one, every complete bucket
        recomputed from its raw source (--start), without carried sums."""
        run(self.carried_config, now, average)
        plain = self.plain_config.data_dir() / "cache"
        shutil.rmtree(plain, ignore_errors=True)
        run(self.plain_config, now, "1h", start=at(BASE - DAY))
        if average == "1d":
            shutil.rmtree(plain, ignore_errors=True)
            run(self.plain_config, now, "1d", start=at(BASE - DAY))

    def assert_equal(self, rp):
        got, want = read_rollup(self.carried, rp), read_rollup(self.plain, rp)
        assert got == want, rp
        return got

    def drop(self):
        for influx in (self.carried, self.plain):
            influx.query(f"DROP DATABASE {quote_ident(influx.database)}")


def carried_used(caplog):
    return [r.getMessage() for r in caplog.records if "from the carried sums" in r.getMessage()]


def test_hour_and_day_from_carried_sums_equal_the_raw_read(influx_server, tmp_path_factory,
                                                           caplog):
    caplog.set_level(logging.DEBUG, logger="qmonit.jobs.downsample")
    pair = Pair(influx_server, tmp_path_factory)
    rng = random.Random(3)
    for slot in range(BASE, BASE + DAY, 600):
        pair.write_slot(slot, {s: fields_of(rng) for s in range(len(SERIES)) if rng.random() < .8})
    caplog.clear()
    pair.run(BASE + DAY + 360, "1d")
    # Every hour was missing: the carried database built all 24 from the sums, and the day.
    assert len(carried_used(caplog)) == 24 + 1
    hourly = pair.assert_equal("1h")
    daily = pair.assert_equal("1d")
    assert len(hourly) > 24 and daily
    assert_same(hourly, expected(pair.raw, HOUR), "1h")
    assert_same(daily, expected(pair.raw, DAY), "1d")
    pair.drop()


@pytest.mark.parametrize("requested", [False, True], ids=["cron", "start-end"])
def test_missing_or_disagreeing_sums_fall_back_to_the_raw_read(influx_server, tmp_path_factory,
                                                               caplog, requested):
    """With --start/--end the sums are encoded while the hours are counted: used only where
    the count agrees, as in the cron run."""
    caplog.set_level(logging.DEBUG, logger="qmonit.jobs.downsample")
    pair = Pair(influx_server, tmp_path_factory)
    rng = random.Random(4)
    # Hour 0: carried as usual. Hour 1: one slot never reached InfluxDB (the count disagrees).
    # Hour 2: one slot was not carried (a run before the upgrade). Hour 3: sums deleted.
    for slot in range(BASE, BASE + 4 * HOUR, 600):
        fields = {s: fields_of(rng) for s in range(len(SERIES))}
        pair.write_slot(slot, fields, write=slot != BASE + HOUR + 1200,
                        carry=slot != BASE + 2 * HOUR + 600)
    rollups.Carried(pair.carried_config.data_dir(), "1h").drop_sums(BASE + 3 * HOUR)
    caplog.clear()
    if requested:
        run(pair.carried_config, BASE + 4 * HOUR + 900, start=at(BASE), end=at(BASE + 4 * HOUR))
        run(pair.plain_config, BASE + 4 * HOUR + 900, "1h", start=at(BASE - DAY))
    else:
        pair.run(BASE + 4 * HOUR + 900)
    assert carried_used(caplog) == [f"1h {downsample._iso(BASE)}: from the carried sums"]
    assert_same(pair.assert_equal("1h"), expected(pair.raw, HOUR), "1h")
    pair.drop()


def test_steady_cron_run_counts_the_last_hour_while_it_is_built(influx_server,
                                                                  tmp_path_factory, caplog):
    """Every earlier hour of the look-back rolled up: the cron run counts only the last hour,
    while its sums are loaded, and uses them only when the count agrees."""
    caplog.set_level(logging.DEBUG, logger="qmonit.jobs.downsample")
    pair = Pair(influx_server, tmp_path_factory, "[downsample]\nlookback_1h = 3h\n")
    rng = random.Random(6)
    # Hour 4: one slot carried but never written to InfluxDB (the count disagrees).
    for slot in range(BASE, BASE + 5 * HOUR, 600):
        pair.write_slot(slot, {s: fields_of(rng) for s in range(len(SERIES))},
                        write=slot != BASE + 4 * HOUR + 1800)
    pair.run(BASE + 3 * HOUR + 900)                 # hours 0-2, all counted first
    for hour, used in ((3, True), (4, False)):
        caplog.clear()
        pair.run(BASE + (hour + 1) * HOUR + 900)
        checks = [r.getMessage() for r in caplog.records if "since rolled up)" in r.getMessage()]
        assert len(checks) == 1 and "(2 unchanged since rolled up)" in checks[0]
        assert checks[0].endswith(f"{downsample._iso(BASE + hour * HOUR)} latest (counted while "
                                  "it is built)")
        want = [f"1h {downsample._iso(BASE + hour * HOUR)}: from the carried sums"] if used else []
        assert carried_used(caplog) == want
        assert_same(pair.assert_equal("1h"),
                    expected(pair.raw, HOUR, stop=BASE + (hour + 1) * HOUR), f"1h after {hour}")
    pair.drop()


def test_look_back_counts_only_changed_hours(influx_server, tmp_path_factory, caplog):
    """Hours rolled up with the parts they still have are not counted again; a slot written
    late into one of them is, and is rolled up; so is a slot written again with other values
    (same count), which a count alone cannot see."""
    caplog.set_level(logging.DEBUG, logger="qmonit.jobs.downsample")
    pair = Pair(influx_server, tmp_path_factory)
    rng = random.Random(5)
    for slot in range(BASE, BASE + 8 * HOUR, 600):
        if slot != BASE + HOUR + 1800:
            pair.write_slot(slot, {s: fields_of(rng) for s in range(len(SERIES))})
    pair.run(BASE + 6 * HOUR + 900)

    def counted():
        lines = [r.getMessage() for r in caplog.records if "since rolled up)" in r.getMessage()]
        return lines[-1]

    caplog.clear()
    run(pair.carried_config, BASE + 7 * HOUR + 900)
    assert "(6 unchanged since rolled up)" in counted()      # all but the new last hour
    pair.write_slot(BASE + HOUR + 1800, {0: fields_of(rng)})            # late
    pair.write_slot(BASE + 3 * HOUR, {s: fields_of(rng) for s in range(len(SERIES))})  # rerun
    caplog.clear()
    run(pair.carried_config, BASE + 7 * HOUR + 1200)
    assert "(4 unchanged since rolled up)" in counted()   # 0, 2, 4, 5
    assert "rewritten with other values" in counted()
    assert_same(read_rollup(pair.carried, "1h"), expected(pair.raw, HOUR, stop=BASE + 7 * HOUR),
                "1h")
    pair.run(BASE + 7 * HOUR + 1200)
    pair.assert_equal("1h")
    pair.drop()


def test_damaged_cache_files_are_ignored(influx_server, tmp_path_factory):
    pair = Pair(influx_server, tmp_path_factory)
    rng = random.Random(6)
    for slot in range(BASE, BASE + HOUR, 600):
        pair.write_slot(slot, {s: fields_of(rng) for s in range(len(SERIES))})
    carried = rollups.Carried(pair.carried_config.data_dir(), "1h")
    carried.path(BASE, "json.gz").write_bytes(b"not zlib")
    carried.path(BASE, "parts.json").write_text("{")
    pair.run(BASE + HOUR + 900)
    pair.assert_equal("1h")
    pair.drop()


events = st.lists(st.tuples(
    st.integers(0, len(SERIES) - 1), st.integers(0, 2 * 144 - 1), st.integers(0, 10 ** 6),
    st.sampled_from([1.0, 8.0]), st.floats(0, 100, allow_nan=False),
    st.floats(0, 1e6, allow_nan=False)), min_size=1, max_size=30)


# Each example runs two databases: no shrinking (minutes); the failing example is printed.
@settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck),
          phases=(Phase.explicit, Phase.reuse, Phase.generate))
@given(rows=events, reruns=st.lists(st.integers(0, 29), max_size=3),
       hours=st.lists(st.integers(1, 47), max_size=4, unique=True), data=st.data())
def test_carried_runs_equal_raw_runs(influx_server, tmp_path_factory, rows, reruns, hours, data):
    """Slots written as fetch_queues.py writes them, some late and out of order, some again with
    other values; hourly runs at random times and a daily run: the carried database's rollups
    equal, exactly, those computed from the raw points, after every run."""
    pair = Pair(influx_server, tmp_path_factory)
    by_slot = {}
    for s, slot, jobs, factor, corepower, pledge in rows:
        by_slot.setdefault(BASE + slot * 600, {})[s] = {
            "jobs": jobs, "resource_factor": factor, "corepower": corepower,
            "federation_HS06_pledge": pledge}
    slots = sorted(by_slot)
    late = data.draw(st.lists(st.sampled_from(slots), max_size=3, unique=True), label="late")
    order = [s for s in slots if s not in late]
    schedule = sorted(hours) + [48]
    done = 0
    for hour in schedule:
        now = BASE + hour * HOUR + 900
        while done < len(order) and order[done] < now - now % 600:
            pair.write_slot(order[done], by_slot[order[done]])
            done += 1
        pair.run(now)
        pair.assert_equal("1h")
        for slot in late:                     # a spool replayed: late, out of order
            if slot < now - now % 600:
                pair.write_slot(slot, by_slot[slot])
        for i in reruns:                      # a slot fetched again by hand
            slot = slots[i % len(slots)]
            if slot < now - now % 600:
                by_slot[slot] = {s: dict(f, jobs=f["jobs"] + 1) for s, f in by_slot[slot].items()}
                pair.write_slot(slot, by_slot[slot])
    final = BASE + 2 * DAY + 360
    pair.run(final, "1d")
    pair.assert_equal("1h")
    pair.assert_equal("1d")
    pair.drop()


values = st.one_of(st.none(), st.floats(-1e6, 1e6, allow_nan=False), st.integers(0, 10 ** 6))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(SERIES) - 1),
                          st.one_of(st.none(), st.integers(0, 10 ** 6)), values, values, values),
                max_size=12))
def test_slot_terms_are_what_a_read_adds(rows):
    """fetch_queues.py's fast slot_terms equals Rollup.add of the same points, bit for bit."""
    points = []
    for s, jobs, *means in rows:
        fields = {"jobs": jobs, **dict(zip(schema.JOBS_MEAN_FIELDS, means))}
        points.append(transform.Point(dict(SERIES[s], tier=""), fields, BASE))
    tags = schema.JOBS.tags
    rollup = downsample.Rollup(downsample.LEVELS["1h"], tags)
    rollup.add({"columns": ["time", "jobs", *schema.JOBS_MEAN_FIELDS, *tags], "values": [
        [p.time, p.fields["jobs"], *(p.fields[f] for f in schema.JOBS_MEAN_FIELDS),
         *(p.tags.get(t) or None for t in tags)] for p in points]})
    want = {key: acc for (key, _), acc in rollup.groups.items()}
    got = downsample.slot_terms(points)
    assert got == want
    assert {k: [type(v) for v in acc] for k, acc in got.items()} == \
        {k: [type(v) for v in acc] for k, acc in want.items()}


def test_what_fetch_queues_carries_rolls_up_as_the_raw_read(config_path, config, sim, influx,
                                                             caplog):
    """The real path: six fetch_queues.py cycles carry their hour; downsample.py builds it from
    the sums, and the result equals, value for value, the same hour read from the raw points."""
    import fetch_queues
    hour = BASE + 5 * HOUR
    try:
        for i in range(6):
            sim.set_time(at(hour + i * 600 + 30))
            stamp = at(hour + i * 600 + 30).strftime("%Y-%m-%d %H:%M:%S")
            assert fetch_queues.main(["--config", str(config_path), "--timestamp", stamp]) == 0
    finally:
        sim.set_time(None)
    parts = rollups.Carried(config.data_dir(), "1h").parts(hour)
    [[[_, count]]] = [s["values"] for s in influx.query(
        f'SELECT count("jobs") FROM "10m"."jobs" WHERE time >= {hour}s AND time < {hour + HOUR}s'
    )[0]]
    assert sorted(parts) == list(range(hour, hour + HOUR, 600))
    assert rollups.total(parts) == count > 1000
    caplog.set_level(logging.DEBUG, logger="qmonit.jobs.downsample")
    run(config, hour + HOUR + 900)
    assert carried_used(caplog) == [f"1h {downsample._iso(hour)}: from the carried sums"]
    carried = read_rollup(influx, "1h")
    rollups.Carried(config.data_dir(), "1h").drop_sums(hour)
    caplog.clear()
    run(config, hour + HOUR + 900, start=at(hour), end=at(hour + HOUR))
    assert carried_used(caplog) == []
    assert read_rollup(influx, "1h") == carried and len(carried) >= count // 6


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(SERIES) - 1), st.integers(0, 11),
                          st.one_of(st.none(), st.integers(0, 10 ** 6)), values, values, values),
                max_size=20))
def test_daily_terms_are_what_a_read_of_the_hour_adds(rows):
    """What a written hour adds to its day's carried sums equals Rollup.add (1d) of the 1h
    points as lines() writes them, bit for bit."""
    tags = schema.JOBS.tags
    hourly = downsample.Rollup(downsample.LEVELS["1h"], tags)
    hourly.add({"columns": ["time", "jobs", *schema.JOBS_MEAN_FIELDS, *tags], "values": [
        [BASE + 600 * t, jobs, *means, *(SERIES[s].get(k) for k in tags)]
        for s, t, jobs, *means in rows]})
    want = {}
    for tags_, bucket, fields in hourly._rows():
        one = downsample.Rollup(downsample.LEVELS["1d"], tags)
        one.add({"columns": ["time", "jobs_sum", "samples", *schema.JOBS_MEAN_FIELDS, *tags],
                 "values": [[bucket, fields["jobs_sum"], fields["samples"],
                             *(fields.get(f) for f in schema.JOBS_MEAN_FIELDS), *tags_]]})
        want.setdefault(bucket, {}).update({k: acc for (k, _), acc in one.groups.items()})
    got = hourly.daily_terms()
    assert got == want
    assert {(h, k): [type(v) for v in acc] for h in got for k, acc in got[h].items()} == \
        {(h, k): [type(v) for v in acc] for h in want for k, acc in want[h].items()}


names = st.sampled_from(["Q1", "Q2", "", "A,B", "unknown"])
infos = st.builds(QueueInfo, atlas_site=st.sampled_from(["SITE_A", "", "unknown"]),
                  tier=st.sampled_from(["1", "2", ""]),
                  corecount=st.one_of(st.none(), st.integers(0, 64)),
                  corepower=st.floats(0, 100, allow_nan=False))


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(names, st.dictionaries(
           st.sampled_from(["managed", "user", ""]), st.dictionaries(
               st.sampled_from(["SCORE", "MCORE", "MCORE_HIMEM", ""]), st.dictionaries(
                   st.sampled_from(["running", "activated", ""]), st.integers(0, 10 ** 6),
                   max_size=3), max_size=3), max_size=2), max_size=4),
       st.dictionaries(names, infos, max_size=4),
       st.dictionaries(st.sampled_from(["SITE_A", "unknown", "FED"]),
                       st.floats(0, 1e6, allow_nan=False), max_size=2))
def test_stats_terms_are_slot_terms_of_the_points(stats, queues, pledges):
    """The fetch cycle's stats_terms (no Point built) equals slot_terms of the same slot's points,
    bit for bit and type for type, with unknown queues, empty tags and null core counts."""
    slot = at(BASE)
    want = downsample.slot_terms(transform.iter_job_points(stats, queues, pledges, slot, 10))
    got = downsample.stats_terms(stats, queues, pledges)
    assert got == want
    assert {k: [type(v) for v in acc] for k, acc in got.items()} == \
        {k: [type(v) for v in acc] for k, acc in want.items()}


def test_sums_keep_their_keys_and_types_on_disk(tmp_path):
    """Saved and loaded: the same keys (None tags too) and the same sums, ints staying ints
    and floats exact; a file in the JSON rows of earlier versions loads the same."""
    tags = ("queue", "site")
    groups = {("A", None): [3, 7, 0.1 + 0.2, 3], ("B,=x", "s"): [1, 2, 0, 0],
              (None, "s"): [2, 10 ** 20, 1e-300, 2]}
    carried = rollups.Carried(tmp_path, "1h")
    sums = carried.open(BASE, tags)
    sums.add(BASE, (6, "d1"), {k: list(v) for k, v in groups.items()})
    assert sums.save()
    parts, got_tags, got = carried.load(BASE)
    assert (parts, got_tags, got) == ({BASE: (6, "d1")}, tags, groups)
    assert [list(map(type, acc)) for acc in got.values()] == \
        [list(map(type, acc)) for acc in groups.values()]
    rows = [list(k) + v for k, v in groups.items()]
    carried.path(BASE, "json.gz").write_bytes(zlib.compress(json.dumps(
        {"tags": tags, "parts": {str(BASE): [6, "d1"]}, "rows": rows}).encode()))
    assert carried.load(BASE) == (parts, tags, groups)
    # A damaged file (the sums cut short) is ignored, not half read.
    sums = carried.open(BASE, tags)
    sums.changed = True
    sums.save()
    data = zlib.decompress(carried.path(BASE, "json.gz").read_bytes())
    carried.path(BASE, "json.gz").write_bytes(zlib.compress(data[:-40]))
    assert carried.load(BASE) is None
