"""sources/rucio.py: the _msearch query, the reply parser (on the recorded reply) and the fetch
against the simulator's MONIT Grafana proxy."""
import datetime as dt
import json
import logging

import pytest
from conftest import RECORDED

from qmonit.core import http
from qmonit.core.errors import SourceError
from qmonit.dev.simulator import config_urls
from qmonit.sources import rucio

DAY = dt.datetime(2026, 11, 24, tzinfo=dt.UTC)
NOW = dt.datetime(2026, 11, 25, 12, 5, tzinfo=dt.UTC)
URL = "https://monit-grafana.example/api/datasources/proxy/1/_msearch"


def recorded():
    return json.loads((RECORDED / "test_input_grafana_datadisks.json").read_text())


def reply(aggregations=None, **extra):
    item = {"status": 200, "timed_out": False, "_shards": {"total": 2, "failed": 0},
            "hits": {"total": 1, "hits": []}, **extra}
    if aggregations is not None:
        item["aggregations"] = aggregations
    return {"responses": [item]}


def buckets(*items, other=0):
    return {rucio.BY_RSE: {"sum_other_doc_count": other, "buckets": [
        {"key": key, "doc_count": 1, rucio.FILES: {"value": files},
         rucio.BYTES: {"value": nbytes}} for key, files, nbytes in items]}}


# --- the query -----------------------------------------------------------------------------

def test_body_is_ndjson_header_and_query_for_one_day():
    body = rucio.msearch_body(DAY)
    assert body.endswith("\n") and body.count("\n") == 2
    header, query = (json.loads(line) for line in body.splitlines())
    assert header["index"] == [rucio.INDEX] and header["ignore_unavailable"] is True
    filters = query["query"]["bool"]["filter"]
    [time_range] = [f["range"][rucio.TIME_FIELD] for f in filters if "range" in f]
    start = int(DAY.timestamp()) * 1000
    assert time_range["gte"] == start and time_range["lt"] == start + 86400 * 1000
    assert {"term": {"data.datatype_grouped": "DAOD"}} in filters
    assert {"terms": {"data.token": ["ATLASDATADISK", "T2ATLASDATADISK"]}} in filters
    # as the DDM dashboards: no UNKNOWN tombstones, no RSE names containing "none"
    assert query["query"]["bool"]["must_not"] == [
        {"term": {"data.tombstone": "UNKNOWN"}}, {"wildcard": {"data.rse": "*none*"}},
        {"wildcard": {"data.rse": "*NONE*"}}]
    assert query["size"] == 0
    terms = query["aggs"]["4"]
    assert terms["terms"]["field"] == "data.rse" and terms["terms"]["size"] >= 1000
    assert terms["aggs"] == {"1": {"sum": {"field": "data.files"}},
                             "3": {"sum": {"field": "data.bytes"}}}


def test_custom_index():
    header = json.loads(rucio.msearch_body(DAY, "other_index*").splitlines()[0])
    assert header["index"] == ["other_index*"]


# --- the recorded reply --------------------------------------------------------------------

def test_recorded_reply_parses_to_files_and_bytes_per_rse():
    payload = recorded()
    volumes = rucio.parse_reply(URL, payload)
    raw = payload["responses"][0]["aggregations"]["4"]["buckets"]
    assert len(volumes) == len(raw) == 89
    assert volumes["WUPPERTALPROD_DATADISK"] == rucio.Volume(227911, 360855134522866)
    assert volumes["UKI-SOUTHGRID-CAM-HEP_DATADISK"] == rucio.Volume(1, 3192681238)
    assert sum(v.bytes for v in volumes.values()) == pytest.approx(
        sum(b["3"]["value"] for b in raw), rel=1e-12)
    # The recorded reply still holds group disks; dropping them is datadisk.py's job.
    assert "NDGF-T1_PHYS-HIGGS" in volumes


# --- bad replies ---------------------------------------------------------------------------

@pytest.mark.parametrize("payload, message", [
    ([], "no \"responses\""),
    ({"responses": []}, "no \"responses\""),
    ({"error": {"type": "security_exception", "reason": "no permissions"}, "status": 403},
     "security_exception: no permissions"),
    ({"responses": [{"error": {"type": "parsing_exception", "reason": "bad"}, "status": 400}]},
     "Elasticsearch error (status 400): parsing_exception: bad"),
    (reply(), "no aggregations"),
    (reply({"2": {"buckets": []}}), "no aggregations"),
    (reply({"4": {"value": 3}}), "no bucket list"),
    (reply(buckets(("A_DATADISK", 1, 2)), timed_out=True), "timed out"),
    (reply(buckets(("A_DATADISK", 1, 2), other=17)), "17 documents fell outside"),
    (reply(buckets(("A_DATADISK", 1, -2))), "not a non-negative number"),
    (reply(buckets(("A_DATADISK", "many", 2))), "not a non-negative number"),
    (reply({"4": {"buckets": [{"key": "A_DATADISK", "1": {"value": 1}}]}}),
     "lacks aggregation '3'"),
    (reply({"4": {"buckets": [{"1": {"value": 1}, "3": {"value": 1}}]}}), "without an RSE"),
])
def test_bad_replies_name_the_url(payload, message):
    with pytest.raises(SourceError) as e:
        rucio.parse_reply(URL, payload)
    assert str(e.value).startswith(URL + ": ") and message in str(e.value)


def test_null_sums_are_zero_and_failed_shards_warn(caplog):
    payload = reply(buckets(("A_DATADISK", None, None), ("B_DATADISK", 2.0, 5.0)))
    payload["responses"][0]["_shards"] = {"total": 10, "failed": 3}
    with caplog.at_level(logging.WARNING):
        volumes = rucio.parse_reply(URL, payload)
    assert volumes == {"A_DATADISK": (0, 0), "B_DATADISK": (2, 5)}
    assert "3 of 10 shards failed" in caplog.text


# --- against the simulator -----------------------------------------------------------------

@pytest.fixture
def monit(sim):
    sim.set_time(NOW)
    return config_urls(sim.url)["monit_url"]


def test_fetch_matches_the_simulated_accounting(sim, monit):
    volumes = rucio.fetch_volumes(http.session(), monit, "any-token", DAY, 10)
    expected = sim.expected_daod_volumes(DAY)
    assert volumes == {rse: rucio.Volume(*v) for rse, v in expected.items()}
    assert volumes and all(rse.endswith("_DATADISK") for rse in volumes)
    assert max(v.bytes for v in volumes.values()) > 1e15  # PB scale at the big sites


def test_latest_volumes_uses_yesterday_or_the_day_before(sim, monit):
    day, volumes = rucio.latest_volumes(http.session(), monit, "t", NOW, 10)
    assert day == DAY and volumes
    # At 02:05 yesterday's accounting is not in MONIT yet: the day before is used.
    early = dt.datetime(2026, 11, 25, 2, 5, tzinfo=dt.UTC)
    sim.set_time(early)
    day, volumes = rucio.latest_volumes(http.session(), monit, "t", early, 10)
    assert day == DAY - dt.timedelta(days=1)
    assert volumes == {r: rucio.Volume(*v) for r, v in sim.expected_daod_volumes(day).items()}


def test_no_data_on_either_day_fails(sim, monit):
    with pytest.raises(SourceError, match="no DAOD data on any DATADISK for 2026-11-24"):
        rucio.latest_volumes(http.session(), monit, "t", NOW, 10, index="nothing_here*")


@pytest.mark.parametrize("token, fault, message", [
    ("", None, "HTTP 401"),
    ("t", "500", "HTTP 500"),
    ("t", "truncated", "invalid JSON"),
    ("t", "no_aggregations", "no aggregations"),
    ("t", "hang", "timed out after 0.5 s"),
])
def test_failures_name_the_url(sim, monit, token, fault, message):
    if fault:
        sim.set_fault("monit", fault, count=1)
    with pytest.raises(SourceError) as e:
        rucio.fetch_volumes(http.session(), monit, token, DAY, 0.5)
    assert str(e.value).startswith(monit + ": ") and message in str(e.value)
    assert "\n" not in str(e.value)
