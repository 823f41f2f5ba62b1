import datetime as dt
import json
import logging

import pytest
from conftest import RECORDED

from qmonit.core import http, schema
from qmonit.core.errors import SourceError
from qmonit.sources import cric


def recorded(name):
    return json.loads((RECORDED / name).read_text())


def test_recorded_pandaqueue_parses_by_panda_resource():
    queues = cric.queue_metadata(recorded("test_input_agis_pandaqueue.json"))
    # The CRIC key SLAC_ES-lsf is PanDA's SLAC_ES; the empty entry is skipped.
    assert set(queues) == {"AGLT2_HOSPITAL", "SLAC_ES"}
    aglt2 = queues["AGLT2_HOSPITAL"]
    assert (aglt2.atlas_site, aglt2.cloud, aglt2.country, aglt2.tier, aglt2.federation) == \
        ("AGLT2", "US", "USA", "T2D", "US-AGLT2")
    assert aglt2.corecount == 8 and aglt2.corepower == pytest.approx(10.96)
    assert "MWT2_DATADISK" in aglt2.read_lan
    assert queues["SLAC_ES"].atlas_site == "WT2"


def test_recorded_federation_pledge():
    feds = recorded("test_input_rebus_federation.json")
    when = dt.datetime(2021, 5, 1, tzinfo=dt.UTC)
    assert cric.federation_pledges(feds, when) == {"US-AGLT2": 73000.0}
    # No pledge for the current quarter: nothing, not a guess.
    assert cric.federation_pledges(feds, dt.datetime(2026, 1, 1, tzinfo=dt.UTC)) == {}
    # January-March 2021 belong to pledge year 2020, which the recording does not hold.
    assert cric.federation_pledges(feds, dt.datetime(2021, 3, 31, tzinfo=dt.UTC)) == {}


def _utc(*args):
    return dt.datetime(*args, tzinfo=dt.UTC)


@pytest.mark.parametrize("when, period", [
    (_utc(2026, 2, 14, 12), (2025, "Q4")),     # January-March: the previous pledge year's Q4
    (_utc(2026, 1, 1), (2025, "Q4")),
    (_utc(2026, 3, 31, 23, 59), (2025, "Q4")),
    (_utc(2026, 4, 1), (2026, "Q1")),          # the pledge year starts on 1 April
    (_utc(2026, 4, 20, 8), (2026, "Q1")),
    (_utc(2026, 7, 1), (2026, "Q2")),
    (_utc(2026, 12, 24, 18), (2026, "Q3")),
])
def test_pledge_quarter_follows_the_wlcg_pledge_year(when, period):
    assert cric.pledge_quarter(when) == period


def test_pledges_of_february_april_and_december():
    def quarters(year, base):
        return {q: {"atlas": {"CPU": base + i}} for i, q in enumerate(("Q1", "Q2", "Q3", "Q4"))}
    feds = {"F": {"pledges": {"2025": quarters(2025, 1000), "2026": quarters(2026, 2000)}}}
    assert cric.federation_pledges(feds, _utc(2026, 2, 10)) == {"F": 1003.0}
    assert cric.federation_pledges(feds, _utc(2026, 4, 10)) == {"F": 2000.0}
    assert cric.federation_pledges(feds, _utc(2026, 12, 10)) == {"F": 2002.0}


def test_recorded_site_and_ddm_payloads_are_lists_of_objects():
    for name in ("test_input_agis_site.json", "test_input_agis_ddm.json"):
        payload = recorded(name)
        assert isinstance(payload, list) and all(isinstance(x, dict) for x in payload)


def test_unknown_metadata_becomes_unknown():
    queues = cric.queue_metadata({"Q1": {"panda_resource": "Q1", "cloud": "", "corecount": None}})
    assert queues["Q1"].cloud == schema.UNKNOWN and queues["Q1"].corecount is None


def test_site_and_ddmendpoint_dumps_read_in_both_shapes():
    for name in ("test_input_agis_site.json", "test_input_agis_ddm.json"):
        as_list = [entry for entry in recorded(name) if entry.get("name")]
        keyed = {entry["name"]: {k: v for k, v in entry.items() if k != "name"}
                 for entry in as_list}
        assert as_list and cric.records(keyed) == cric.records(as_list) == as_list


def test_null_corepower_is_the_sites_and_status_is_the_site_state():
    sites = {"S": {"corepower": 12.5}, "T": {"corepower": None}}
    queues = cric.queue_metadata({
        "A": {"atlas_site": "S", "corepower": None, "status": "brokeroff", "site_state": "ACTIVE"},
        "B": {"atlas_site": "T", "corepower": None, "status": "test"},
        "C": {"atlas_site": "S", "corepower": 9.0, "status": "online"},
    }, sites)
    assert [queues[q].corepower for q in "ABC"] == [12.5, 0.0, 9.0]
    assert [queues[q].site_state for q in "ABC"] == ["brokeroff", "test", "online"]


def test_read_lan_analysis_is_preferred_for_analysis_jobs():
    queues = cric.queue_metadata({
        "A": {"astorages": {"read_lan": ["X_DATADISK"], "read_lan_analysis": ["Y_DATADISK"]}},
        "B": {"astorages": {"read_lan": ["X_DATADISK"]}}})
    assert queues["A"].analysis_read_lan() == ("Y_DATADISK",)
    assert queues["B"].analysis_read_lan() == ("X_DATADISK",)


def test_refresh_caches_and_falls_back(tmp_path, sim, caplog):
    caplog.set_level(logging.WARNING, logger="qmonit.sources.cric")
    cache = cric.Cache(tmp_path)
    url = sim.url + "/api/atlas/pandaqueue/query/?json"
    session = http.session()
    fresh = cric.refresh(session, cache, "pandaqueue", url, 5)
    assert cache.read("pandaqueue") == fresh
    sim.set_fault("cric", "500")
    again = cric.refresh(session, cache, "pandaqueue", url, 5)
    assert again == fresh
    assert "using the cached copy" in caplog.text
    sim.set_fault("cric", "truncated")
    assert cric.refresh(session, cache, "pandaqueue", url, 5) == fresh


def test_refresh_takes_a_site_dump_keyed_by_name(tmp_path, sim):
    url = sim.url + "/api/atlas/site/query/?json"
    payload = cric.refresh(http.session(), cric.Cache(tmp_path), "site", url, 5)
    assert isinstance(payload, dict) and payload
    assert all(name == entry["name"] for name, entry in payload.items())


def test_refresh_without_cache_fails_naming_the_url(tmp_path, sim):
    sim.set_fault("cric", "500")
    url = sim.url + "/api/atlas/pandaqueue/query/?json"
    with pytest.raises(SourceError) as e:
        cric.refresh(http.session(), cric.Cache(tmp_path), "pandaqueue", url, 5)
    assert url in str(e.value) and "HTTP 500" in str(e.value)
    assert not cric.Cache(tmp_path).path("pandaqueue").exists()
