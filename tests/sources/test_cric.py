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


def test_recorded_site_and_ddm_payloads_are_lists_of_objects():
    for name in ("test_input_agis_site.json", "test_input_agis_ddm.json"):
        payload = recorded(name)
        assert isinstance(payload, list) and all(isinstance(x, dict) for x in payload)


def test_unknown_metadata_becomes_unknown():
    queues = cric.queue_metadata({"Q1": {"panda_resource": "Q1", "cloud": "", "corecount": None}})
    assert queues["Q1"].cloud == schema.UNKNOWN and queues["Q1"].corecount == 1


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


def test_refresh_without_cache_fails_naming_the_url(tmp_path, sim):
    sim.set_fault("cric", "500")
    url = sim.url + "/api/atlas/pandaqueue/query/?json"
    with pytest.raises(SourceError) as e:
        cric.refresh(http.session(), cric.Cache(tmp_path), "pandaqueue", url, 5)
    assert url in str(e.value) and "HTTP 500" in str(e.value)
    assert not cric.Cache(tmp_path).path("pandaqueue").exists()


GOOD_ENTRY = {"panda_resource": "GOOD", "atlas_site": "SITE", "corecount": 8, "corepower": 10.5}


@pytest.mark.parametrize("bad,message", [
    ({"panda_resource": ["A", "B"]}, "panda_resource"),
    ({"panda_resource": "B", "corepower": "inf"}, "not a finite number"),
    ({"panda_resource": "B", "corecount": 1e400}, "not a finite number"),
    ({"panda_resource": "B", "corepower": [1]}, "not a number"),
    ({"panda_resource": "B", "atlas_site": "S" * 200}, "longer than 191"),
    ({"panda_resource": "B", "cloud": {"x": 1}}, "cloud"),
    ({"panda_resource": "B\nC"}, "control character"),
])
def test_a_bad_cric_entry_is_left_out_with_one_warning(bad, message, caplog):
    caplog.set_level(logging.WARNING)
    problems = []
    queues = cric.queue_metadata({"good": GOOD_ENTRY, "bad": bad}, problems)
    assert set(queues) == {"GOOD"} and queues["GOOD"].corepower == 10.5
    assert len(problems) == 1 and message in problems[0] and "'bad'" in problems[0]
    assert [r.levelname for r in caplog.records] == ["WARNING"]


def test_a_payload_the_check_refuses_never_replaces_the_cache(tmp_path, sim, caplog):
    caplog.set_level(logging.WARNING)
    session, cache = http.session(), cric.Cache(tmp_path)
    url = sim.url + "/api/atlas/pandaqueue/query/?json"
    good = cric.refresh(session, cache, "pandaqueue", url, 5)

    def check(payload):
        raise TypeError("unhashable type: 'list'")

    assert cric.refresh(session, cache, "pandaqueue", url, 5, check=check) == good
    assert cache.read("pandaqueue") == good
    assert "unusable pandaqueue data" in caplog.text and "using the cached copy" in caplog.text
