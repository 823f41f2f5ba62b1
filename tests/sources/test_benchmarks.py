"""The benchmark Elasticsearch source: the recorded reply, the age rule, the simulator's index,
the cache and its fallback."""
import datetime as dt
import json
import logging

import pytest
from conftest import RECORDED

from qmonit.core import http
from qmonit.core.config import Config
from qmonit.sources import benchmarks

RECORDING = json.loads((RECORDED / "test_input_elasticsearch_benchmarks.json").read_text())


def results_of(queue):
    for hit in RECORDING["hits"]["hits"]:
        if hit["fields"]["metadata.PanDAQueue"] == [queue]:
            return [(dt.datetime.fromisoformat(r["_source"]["timestamp"].replace("Z", "+00:00")),
                     r["_source"]["profiles"]["fastBmk"]["value"])
                    for r in hit["inner_hits"]["most_recent"]["hits"]["hits"]]
    raise KeyError(queue)


def mean(values):
    return sum(values) / len(values)


def test_recorded_reply_gives_the_mean_of_the_recent_results():
    now = dt.datetime(2019, 8, 13, 12, 0, tzinfo=dt.UTC)
    got = benchmarks.parse_reply("u", RECORDING, now)
    assert set(got) == {"LRZ-LMU_UCORE", "ANALY_LRZ"}
    for queue, value in got.items():
        assert value == pytest.approx(mean([v for t, v in results_of(queue) if t <= now]))
    assert 5 < got["ANALY_LRZ"] < 30      # est. HS06 per core


def test_age_rule_takes_now_as_an_argument():
    # Results after `now` do not count yet ...
    early = dt.datetime(2019, 8, 12, 0, 0, tzinfo=dt.UTC)
    got = benchmarks.parse_reply("u", RECORDING, early)
    assert got["ANALY_LRZ"] == pytest.approx(
        mean([v for t, v in results_of("ANALY_LRZ") if t <= early]))
    # ... and those older than MAX_AGE no longer do.
    late = dt.datetime(2019, 8, 18, 6, 0, tzinfo=dt.UTC)
    got = benchmarks.parse_reply("u", RECORDING, late)
    kept = [v for t, v in results_of("LRZ-LMU_UCORE") if t > late - benchmarks.MAX_AGE]
    assert 0 < len(kept) < len(results_of("LRZ-LMU_UCORE"))
    assert got["LRZ-LMU_UCORE"] == pytest.approx(mean(kept))
    # Beyond every result: no value at all rather than a stale one.
    assert benchmarks.parse_reply("u", RECORDING, late + dt.timedelta(days=7)) == {}


def test_bad_replies_name_the_url():
    with pytest.raises(http.SourceError, match="^u: not an Elasticsearch search reply"):
        benchmarks.parse_reply("u", {"responses": []}, dt.datetime.now(dt.UTC))
    with pytest.raises(http.SourceError, match="timed out"):
        benchmarks.parse_reply("u", {"hits": {"hits": []}, "timed_out": True},
                               dt.datetime.now(dt.UTC))


def config_for(url, extra=""):
    return Config.from_string(f"[credentials_elasticsearch]\nhost = {url}\nusername = reader\n"
                              f"password = pw\ntimeout = 5\n{extra}")


def test_empty_host_means_no_benchmarks():
    assert benchmarks.settings(Config.from_string("[credentials_elasticsearch]\nhost =\n")) \
        is None
    opts = benchmarks.settings(config_for("es.example.org:9203/os"))
    assert opts["url"] == "https://es.example.org:9203/os/benchmarks-*/_search"
    assert opts["auth"] == ("reader", "pw")


def test_the_simulators_index_gives_its_expected_means(sim):
    now = sim.now().replace(microsecond=0)
    sim.es_auth = ("reader", "pw")
    try:
        got = benchmarks.fetch(http.session(), benchmarks.settings(config_for(sim.url)), now)
    finally:
        sim.es_auth = None
    expected = sim.expected_benchmarks(now)
    assert expected and set(got) == set(expected)
    assert all(got[q] == pytest.approx(expected[q]) for q in expected)
    # some queues have none, and no queue's mean reaches back beyond the age rule
    assert len(expected) < len(sim.panda_queues())


def test_a_failing_index_keeps_the_last_good_copy(sim, tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="qmonit.sources.benchmarks")
    now = sim.now().replace(microsecond=0)
    cache = benchmarks.Cache(tmp_path)
    opts = benchmarks.settings(config_for(sim.url))
    good = benchmarks.refresh(http.session(), cache, opts, now)
    assert good and cache.read() == pytest.approx(good)
    sim.es_auth = ("reader", "another password")
    try:
        again = benchmarks.refresh(http.session(), cache, opts, now)
    finally:
        sim.es_auth = None
    assert again == pytest.approx(good)
    assert "HTTP 401" in caplog.text and "keeping the last good copy" in caplog.text
    assert "another password" not in caplog.text and "pw" not in caplog.text.split()
    # no copy at all: nothing, with the same warning
    assert benchmarks.refresh(http.session(), benchmarks.Cache(tmp_path / "none"),
                              {**opts, "url": sim.url + "/benchmarks-x/nothing"}, now) == {}
