"""Property tests of the pure 10-minute transforms."""
import datetime as dt

from conftest import split_unescaped
from hypothesis import given
from hypothesis import strategies as st

from qmonit.core import schema
from qmonit.jobs import transform
from qmonit.sources.cric import QueueInfo

names = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
                min_size=1, max_size=12)
counts = st.dictionaries(st.sampled_from(schema.STATUSES), st.integers(0, 10**6), min_size=1)
stats_strategy = st.dictionaries(
    names, st.dictionaries(names, st.dictionaries(
        st.sampled_from(schema.RESOURCE_TYPES + ("MCORE_LOMEM",)), counts, min_size=1),
        min_size=1, max_size=3), max_size=5)
slots = st.datetimes(min_value=dt.datetime(2020, 1, 1), max_value=dt.datetime(2030, 1, 1),
                     timezones=st.just(dt.UTC))


@given(stats_strategy, slots, st.integers(1, 60))
def test_one_point_per_count_and_nothing_lost(stats, now, window):
    slot = transform.slot_of(now)
    known = {q: QueueInfo(atlas_site="S", cloud="C", corecount=8, federation="F")
             for i, q in enumerate(sorted(stats)) if i % 2 == 0}
    points = transform.job_points(stats, known, {"F": 1234.0}, slot, window)
    expected = {(q, l, r, s): n for q, ls in stats.items() for l, rs in ls.items()
                for r, ss in rs.items() for s, n in ss.items()}
    got = {tuple(p.tags[k] for k in schema.SERIES_KEY): p.fields["jobs"] for p in points}
    assert got == expected and len(points) == len(expected)
    for p in points:
        assert set(p.tags) == set(schema.JOBS.tags) and set(p.fields) == set(schema.JOBS.fields)
        assert p.fields["HS06_benchmark"] is None         # no benchmarks given
        assert p.time == int(slot.timestamp()) and p.time % 600 == 0
        assert p.fields["time_window"] == window
        info = known.get(p.tags[schema.PANDA_QUEUE])
        if info is None:
            assert p.tags[schema.ATLAS_SITE] == schema.UNKNOWN
            assert p.fields["federation_HS06_pledge"] == 0.0
        else:
            assert p.tags[schema.ATLAS_SITE] == "S"
            assert p.fields["federation_HS06_pledge"] == 1234.0
        # Known queues have corecount 8; unknown ones none, so MCORE* counts 8 there too.
        factor = 1.0 if p.tags[schema.RESOURCE].startswith("SCORE") else 8.0
        assert p.fields["resource_factor"] == factor


@given(stats_strategy, slots)
def test_mysql_rows_pivot_statuses(stats, now):
    rows = transform.mysql_rows(stats, {}, transform.slot_of(now))
    columns = transform.MYSQL_ROW_COLUMNS
    keys = [(q, l, r) for q, ls in stats.items() for l, rs in ls.items() for r in rs]
    assert [row[:3] for row in rows] == keys
    for row in rows:
        record = dict(zip(columns, row))
        statuses = stats[row[0]][row[1]][row[2]]
        for status in schema.STATUSES:
            assert record[schema.status_column(status)] == statuses.get(status, 0)


@given(slots)
def test_slot_is_the_exact_bucket_start(now):
    slot = transform.slot_of(now)
    assert slot <= now < slot + transform.SLOT
    assert slot.timestamp() % 600 == 0 and slot.tzinfo == dt.UTC


@given(stats_strategy, slots)
def test_encoding_keeps_one_line_per_point(stats, now):
    points = transform.job_points(stats, {}, {}, transform.slot_of(now), 10)
    lines = transform.encode(schema.JOBS, points)
    assert len(lines) == len(points)
    assert all("\n" not in line and line.startswith("jobs,") for line in lines)


@given(stats_strategy, slots, st.integers(1, 60))
def test_fast_lines_equal_the_generic_encoding(stats, now, window):
    slot = transform.slot_of(now)
    known = {q: QueueInfo(atlas_site="S t", cloud="C,", corecount=4, corepower=9.5,
                          federation="F=") for q in sorted(stats)[:2]}
    pledges = {"F=": 17.25}
    hs06 = {q: 11.5 + i for i, q in enumerate(sorted(stats)[1:3])}
    fast = transform.job_lines(stats, known, pledges, slot, window, hs06)
    generic = transform.encode(schema.JOBS, transform.job_points(stats, known, pledges, slot,
                                                                 window, hs06))
    with_benchmark = [line for line in fast if ",HS06_benchmark=" in line]
    assert len(with_benchmark) == sum(len(s) for q in hs06 for rs in stats[q].values()
                                      for s in rs.values())

    def canonical(line):
        # Same tags and fields, in any order.
        head, fields, ts = transform_split(line)
        return head[0], sorted(head[1:]), sorted(fields), ts

    assert [canonical(x) for x in fast] == [canonical(x) for x in generic]


def transform_split(line):
    head, fields, ts = split_unescaped(line, " ")
    return split_unescaped(head, ","), split_unescaped(fields, ","), ts


def test_resource_factor_without_a_corecount():
    assert transform.resource_factor("MCORE", None) == 8.0
    assert transform.resource_factor("MCORE_HIMEM", None) == 8.0
    assert transform.resource_factor("SCORE_HIMEM", None) == 1.0
    assert transform.resource_factor("unknown", None) == 1.0
    assert transform.resource_factor(None, None) == 1.0
    assert transform.resource_factor("MCORE", 12) == 12.0
    assert transform.resource_factor("SCORE", 12) == 1.0
