import datetime as dt
import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st

from qmonit.core import http
from qmonit.core.errors import SourceError
from qmonit.jobs import transform
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


def test_null_keys_are_counted_under_unknown(caplog):
    # PanDA's text reply (no JSON Accept header) writes a null key as None.
    text = ("{'Q': {None: {None: {'running': 3}, 'SCORE': {'running': 1}}, "
            "'user': {'': {'running': 2}, 'MCORE': {'running': 5}}, "
            "'unknown': {'unknown': {'running': 4}}}}")
    url = "http://panda/x"
    stats = panda.validate(url, http.parse_json(url, text, allow_python_literal=True))
    caplog.set_level(logging.WARNING, logger="qmonit.sources.panda")
    stats = panda.null_keys_to_unknown(url, stats)
    assert stats == {"Q": {"unknown": {"unknown": {"running": 7}, "SCORE": {"running": 1}},
                           "user": {"unknown": {"running": 2}, "MCORE": {"running": 5}}}}
    assert len(caplog.records) == 1 and "3 series with a null or empty key" in caplog.text
    # and the transform takes it (it crashed on a None resource type)
    slot = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)
    assert len(transform.job_lines(stats, {}, {}, slot, 10)) == 4
    # JSON writes a null key as "null"
    assert panda.null_keys_to_unknown(url, {"null": {"user": {"SCORE": {"running": 1}}}}) == \
        {"unknown": {"user": {"SCORE": {"running": 1}}}}


def test_clean_reply_is_left_alone(caplog):
    stats = {"Q": {"user": {"SCORE": {"running": 1}}}}
    assert panda.null_keys_to_unknown("http://x", stats) is stats
    assert caplog.text == ""
