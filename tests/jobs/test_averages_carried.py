"""The seed from the hour sums fetch_queues.py carries equals the seed by grouping in
InfluxDB exactly (sums, counts and metadata of every piece), through the real InfluxDB: with
metadata changes inside a piece, missing slots, series appearing mid-window, hours whose sums
are missing and hours whose count disagrees with InfluxDB."""
import datetime as dt

from hypothesis import given
from hypothesis import strategies as st

from qmonit.core import schema
from qmonit.jobs import averages, downsample, rollups, transform

from . import test_averages as base
from .test_averages import METAS, counts, now_slot, series_keys, slow

fresh_influx = base.fresh_influx

SLOT = dt.timedelta(minutes=10)


@st.composite
def carried_histories(draw):
    """(T, {slot offset: {key: (value, meta)}}, {offset: how}) with how: "carry" (as
    fetch_queues.py), "bare" (written without carrying: the hour's count disagrees) or
    "drop" (its hour's sums are lost afterwards)."""
    slot = now_slot() - draw(st.integers(12, 400)) * SLOT
    keys = draw(series_keys)
    slots = {}
    for offset in sorted(draw(st.sets(st.integers(-155, 0), max_size=50))):
        present = draw(st.sets(st.sampled_from(range(len(keys))), max_size=len(keys)))
        if present:
            slots[offset] = {keys[i]: (draw(counts), draw(st.sampled_from(METAS)))
                             for i in sorted(present)}
    how = dict.fromkeys(slots, "carry")
    for offset in draw(st.sets(st.sampled_from(sorted(slots)), max_size=3)) if slots else ():
        how[offset] = draw(st.sampled_from(["bare", "drop"]))
    return slot, slots, how


def write_carried(influx, data_dir, slot, slots, how):
    for offset in sorted(slots):
        at = slot + offset * SLOT
        points = []
        for key, (value, meta) in slots[offset].items():
            tags = dict(zip(schema.SERIES_KEY, key))
            tags.update(zip(averages.META, meta))
            points.append(transform.Point(tags, {"jobs": value, "time_window": 10},
                                          int(at.timestamp())))
        lines = transform.encode(schema.JOBS, points)
        if how[offset] != "bare":
            carry = downsample.SlotCarry(data_dir, at.timestamp(), lines)
            carry.declare()
        influx.write_lines(schema.RP_10M, lines)
        if how[offset] != "bare":
            carry.add(points)
    for offset in sorted(slots):
        if how[offset] == "drop":
            epoch = int((slot + offset * SLOT).timestamp())
            rollups.Carried(data_dir, "1h").drop_sums(epoch - epoch % 3600)


def seeds(influx, data_dir, slot):
    reader = averages._Reader(influx, 2)
    try:
        return averages._seed(reader, slot), averages._seed_carried(reader, data_dir, slot)
    finally:
        reader.close()


@slow(15)
@given(history=carried_histories())
def test_seed_from_carried_hours_equals_grouped_seed(fresh_influx, tmp_path_factory, history):
    slot, slots, how = history
    influx = fresh_influx()
    data_dir = tmp_path_factory.mktemp("carried")
    write_carried(influx, data_dir, slot, slots, how)
    grouped, carried = seeds(influx, data_dir, slot)
    if all(h == "carry" for h in how.values()):
        assert carried is not None
    if carried is not None:
        assert carried.sums == grouped.sums
        assert carried.meta == grouped.meta


def test_seed_uses_carried_hours_and_falls_back(fresh_influx, tmp_path):
    """All slots carried: the carried seed is used and exact; a slot written behind the
    carried sums' back in every hour: it falls back (None)."""
    slot = now_slot() - 30 * SLOT
    keys = [("Q1", "managed", "SCORE", "running"), ("Q2", "user", "MCORE", "failed")]
    # Q1 changes its metadata mid-window; Q2 appears 5 hours before T.
    slots = {o: {keys[0]: (o * o % 97, METAS[0] if o < -40 else METAS[1])}
             for o in range(-150, 1)}
    for o in range(-30, 1):
        slots[o][keys[1]] = (o + 1000, METAS[1])
    del slots[-7]
    influx = fresh_influx()
    write_carried(influx, tmp_path, slot, slots, {o: "carry" for o in slots})
    grouped, carried = seeds(influx, tmp_path, slot)
    assert carried is not None
    assert carried.sums == grouped.sums and carried.meta == grouped.meta
    assert carried.sums[averages.join(keys[0])][6] == sum(
        v[keys[0]][0] for o, v in slots.items() if o > -144)
    assert carried.sums[averages.join(keys[0])][7] == sum(1 for o in slots if o > -144)
    # One more point in every hour that the carried sums never saw.
    extra = [transform.Point(dict(zip(schema.SERIES_KEY + averages.META,
                                      ("Q3", "test", "SCORE", "running") + METAS[0])),
                             {"jobs": 5, "time_window": 10},
                             int((slot - k * dt.timedelta(hours=1)).timestamp()))
             for k in range(25)]
    influx.write_lines(schema.RP_10M, transform.encode(schema.JOBS, extra))
    grouped, carried = seeds(influx, tmp_path, slot)
    assert carried is None
