import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from qmonit.core.errors import SourceError
from qmonit.sources import panda

T0 = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)


def test_urls():
    assert panda.stats_url("https://p:25443/", "v1", 10) == \
        "https://p:25443/api/v1/statistics/job_stats_by_site_share_and_resource_type?time_window=10"
    assert panda.stats_url("https://p:25443", "legacy", 30) == \
        "https://p:25443/server/panda/get_job_statistics_per_site_label_resource?time_window=30"


@pytest.mark.parametrize("payload,message", [
    ([], "expected an object of queues"),
    ({"Q": []}, "expected an object of labels"),
    ({"Q": {"user": {"SCORE": {"running": -1}}}}, "bad count -1"),
    ({"Q": {"user": {"SCORE": {"running": 1.5}}}}, "bad count 1.5"),
    ({"Q": {"user": {"SCORE": {"running": True}}}}, "bad count True"),
    ({"Q": {"user": {"SCORE": 3}}}, "expected an object"),
])
def test_validation_names_the_bad_place(payload, message):
    with pytest.raises(SourceError, match=message) as e:
        panda.validate("http://x", payload)
    assert str(e.value).startswith("http://x: ")


@given(configured=st.integers(1, 60), gap_slots=st.integers(-10, 100))
def test_time_window_bounds(configured, gap_slots):
    last = T0 - dt.timedelta(minutes=10 * gap_slots)
    window = panda.time_window(configured, last, T0)
    assert configured <= window <= 60
    if gap_slots > 0:
        assert window == min(60, max(configured, 10 * gap_slots))
    else:
        assert window == configured


def test_time_window_first_run():
    assert panda.time_window(10, None, T0) == 10
