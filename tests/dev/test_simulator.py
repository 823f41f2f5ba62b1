"""Tests for the PanDA/CRIC simulator (qmonit/dev/simulator/)."""
import ast
import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st

from qmonit.dev.simulator import FINAL_STATUSES, STATUSES, ZERO_FILLED, Simulator, config_urls

REPO = Path(__file__).resolve().parents[2]
RECORDED = REPO / "tests" / "data" / "recorded"
V1 = "/api/v1/statistics/job_stats_by_site_share_and_resource_type"
LEGACY = "/server/panda/get_job_statistics_per_site_label_resource"
JSON = {"Accept": "application/json"}
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def count_series(data):
    return sum(len(statuses) for labels in data.values()
               for resources in labels.values() for statuses in resources.values())


def iter_series(data):
    for queue, labels in data.items():
        for label, resources in labels.items():
            for resource, statuses in resources.items():
                yield queue, label, resource, statuses


@pytest.fixture(scope="module")
def server():
    sim = Simulator(seed=1, time=T0, hang_seconds=30)
    sim.start()
    yield sim
    sim.stop()


@pytest.fixture
def sim(server):
    """The shared server, reset to T0 with no faults or anomalies after each test."""
    yield server
    server.clear_faults()
    server.clear_anomalies()
    server.set_time(T0)


def get_v1(sim, time_window=10, headers=JSON, **kw):
    return requests.get(f"{sim.url}{V1}?time_window={time_window}", headers=headers,
                        timeout=kw.pop("timeout", 10), **kw)


# --- PanDA formats -------------------------------------------------------------------

def test_v1_json_envelope_and_content_type(sim):
    r = get_v1(sim)
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "text/plain"
    body = json.loads(r.content)
    assert body["success"] is True and body["message"] == ""
    assert body["data"] == sim.expected_stats(T0, 10)
    assert body == sim.expected_stats(T0, 10, envelope=True)


def test_v1_without_accept_is_python_str(sim):
    r = get_v1(sim, headers={})
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "text/plain"
    assert r.text.startswith("{'success': True")
    with pytest.raises(ValueError):
        json.loads(r.text)
    assert ast.literal_eval(r.text) == get_v1(sim).json()


def test_legacy_is_bare_dict(sim):
    r = requests.get(f"{sim.url}{LEGACY}?time_window=10", headers=JSON, timeout=10)
    assert r.headers["Content-Type"] == "text/plain"
    assert r.json() == sim.expected_stats(T0, 10)
    r = requests.get(f"{sim.url}{LEGACY}?time_window=10", timeout=10)
    assert r.headers["Content-Type"] == "text/plain"
    assert ast.literal_eval(r.text) == sim.expected_stats(T0, 10)


def test_bad_time_window_and_unknown_path(sim):
    assert get_v1(sim, time_window="abc").status_code == 400
    assert requests.get(sim.url + "/api/v1/nothing", timeout=5).status_code == 404
    assert requests.get(sim.url + "/", timeout=5).status_code == 404
    assert requests.post(sim.url + V1, timeout=5).status_code == 404


# --- determinism and variation -------------------------------------------------------

def test_same_seed_and_slot_give_identical_bytes(sim):
    first = get_v1(sim).content
    sim.set_time(T0 + timedelta(minutes=9, seconds=59))  # same 10-minute slot
    assert get_v1(sim).content == first
    with Simulator(seed=1, time=T0) as other:
        assert requests.get(f"{other.url}{V1}?time_window=10", headers=JSON,
                            timeout=10).content == first
        assert (requests.get(config_urls(other.url)["pandaqueue_url"], timeout=10).content
                == requests.get(config_urls(sim.url)["pandaqueue_url"], timeout=10).content)


def test_other_slot_or_seed_changes_counts(sim):
    now = sim.expected_stats(T0, 10)
    later = sim.expected_stats(T0 + timedelta(minutes=10), 10)
    assert set(now) == set(later)  # same universe
    changed = sum(1 for q, l, r, s in iter_series(now) if later[q][l][r] != s)
    assert changed > len(now)  # most series moved
    other = Simulator(seed=2)
    assert set(other.panda_queues()) != set(sim.panda_queues())


def test_day_night_variation(sim):
    def running(data, queue=None):
        return sum(s["running"] for q, l, r, s in iter_series(data)
                   if queue is None or q == queue)

    days = [sim.expected_stats(T0.replace(hour=h), 10) for h in range(0, 24, 3)]
    biggest = max(days[0], key=lambda q: running(days[0], q))
    per_queue = [running(d, biggest) for d in days]
    assert max(per_queue) > 1.3 * min(per_queue), per_queue
    total = [running(d) for d in days]
    assert max(total) > 1.1 * min(total), total
    assert running(days[0], biggest) > 1000  # big queues run thousands of jobs


@settings(max_examples=25, deadline=None)
@given(minutes=st.integers(0, 60 * 24 * 365), window=st.integers(1, 720))
def test_reply_structure_properties(server, minutes, window):
    when = T0 + timedelta(minutes=minutes)
    data = server.expected_stats(when, window)
    assert data == server.expected_stats(when, window)
    for queue, label, resource, statuses in iter_series(data):
        assert set(ZERO_FILLED) <= set(statuses), (queue, label, resource)
        for status, n in statuses.items():
            assert status in STATUSES
            assert isinstance(n, int) and n >= 0
            if status not in ZERO_FILLED:
                assert n > 0, (queue, label, resource, status)
        # failures are a fraction of the work done, not more
    finished = sum(s["finished"] for *_, s in iter_series(data))
    failed = sum(s["failed"] for *_, s in iter_series(data))
    assert 0 < failed < 0.5 * finished


def test_time_window_scales_final_statuses_only(sim):
    short = sim.expected_stats(T0, 10)
    long = sim.expected_stats(T0, 60)
    for queue, label, resource, statuses in iter_series(short):
        other = long[queue][label][resource]
        for status in set(statuses) | set(other):
            if status not in FINAL_STATUSES:
                assert statuses[status] == other[status]
    finished = [sum(s["finished"] for *_, s in iter_series(d)) for d in (short, long)]
    assert 5 < finished[1] / finished[0] < 7


def test_labels_and_resources(sim):
    data = sim.expected_stats(T0, 10)
    labels = {l for _, l, _, _ in iter_series(data)}
    resources = {r for _, _, r, _ in iter_series(data)}
    assert {"managed", "user", "test"} <= labels
    assert {"SCORE", "MCORE", "SCORE_HIMEM", "MCORE_HIMEM"} <= resources
    analy = [q for q in data if q.startswith("ANALY_")]
    assert analy and all("managed" not in data[q] for q in analy)
    assert sum("user" in data[q] for q in analy) == len(analy)


# --- size and speed ------------------------------------------------------------------

def test_default_size(sim):
    n = count_series(get_v1(sim).json()["data"])
    assert 22500 <= n <= 27500
    assert 600 <= len(sim.panda_queues()) <= 850
    assert 120 <= len(sim.cric_data("site")) <= 200
    state = requests.get(sim.url + "/_sim/state", timeout=10).json()
    assert state["series"] == n
    assert state["queues"] == sim.panda_queues()


def test_large_size_is_fast():
    with Simulator(seed=5, series=63000, time=T0) as big:
        timings = []
        for window in (10, 11, 12):  # distinct windows, so nothing is cached
            started = time.perf_counter()
            r = requests.get(f"{big.url}{V1}?time_window={window}", headers=JSON, timeout=10)
            timings.append(time.perf_counter() - started)
            assert r.status_code == 200
        assert 56700 <= count_series(r.json()["data"]) <= 69300
        assert min(timings) < 1.0, timings


# --- CRIC ------------------------------------------------------------------------------

PANDAQUEUE_FIELDS = ("panda_resource", "atlas_site", "cloud", "country", "tier", "tier_level",
                     "type", "status", "state", "site_state", "resource_type", "corecount",
                     "corepower", "rc_site", "rc", "astorages")


def test_cric_endpoints_shapes(sim):
    urls = config_urls(sim.url)
    responses = {key: requests.get(url, timeout=10) for key, url in urls.items()
                 if key not in ("panda_url", "monit_url")}
    for r in responses.values():
        assert r.status_code == 200
        assert r.headers["Content-Type"] == "application/json"
    queues = responses["pandaqueue_url"].json()
    sites = responses["site_url"].json()
    ddms = responses["ddmendpoint_url"].json()
    feds = responses["federation_url"].json()
    # Today's CRIC: every dump an object keyed by name
    assert isinstance(queues, dict) and isinstance(sites, dict) and isinstance(ddms, dict)
    assert all(name == entry["name"] for dump in (sites, ddms) for name, entry in dump.items())
    sites, ddms = list(sites.values()), list(ddms.values())
    assert list(queues) == sim.cric_queue_names()

    # same field names as the recorded real payload
    recorded = json.loads((RECORDED / "test_input_agis_pandaqueue.json").read_text())
    real = recorded["AGLT2_HOSPITAL"]
    for name, q in queues.items():
        for field in PANDAQUEUE_FIELDS:
            assert field in q, (name, field)
            assert type(q[field]) is type(real[field]) or field == "corepower" or \
                (field == "corecount" and q[field] is None), field
        assert q["tier"] in ("T1", "T2D", "T2", "T3")
        assert q["type"] in ("production", "analysis", "unified")
        assert q["status"] in ("online", "offline", "test", "brokeroff")
        assert q["resource_type"] in ("GRID", "hpc", "cloud")
        assert q["nickname"] == name
    size = len(responses["pandaqueue_url"].content) / len(queues)
    assert 2000 <= size <= 4000

    # storages point at endpoints that exist; some queues read other sites' datadisks
    ddm_names = {d["name"] for d in ddms}
    for q in queues.values():
        for activity in ("read_lan", "write_lan"):
            assert set(q["astorages"][activity]) <= ddm_names
    datadisks = [[e for e in q["astorages"]["read_lan"] if e.endswith("_DATADISK")]
                 for q in queues.values()]
    assert any(len(d) >= 2 for d in datadisks)
    assert 0 < sum(not d for d in datadisks) < 0.05 * len(queues)
    assert {"DATADISK", "SCRATCHDISK", "LOCALGROUPDISK"} <= {d["type"] for d in ddms}
    assert all(d["token"] == "ATLAS" + d["type"] for d in ddms)

    site_names = {s["name"] for s in sites}
    assert {q["atlas_site"] for q in queues.values()} <= site_names
    assert all(set(s["ddmendpoints"]) <= ddm_names for s in sites)

    year = T0.year
    rc_sites = {s["rc_site"] for s in sites}
    for name, fed in feds.items():
        assert fed["name"] == name
        assert set(fed["pledges"]) == {str(year - 1), str(year)}
        for quarters in fed["pledges"].values():
            assert set(quarters) == {"Q1", "Q2", "Q3", "Q4"}
            assert all(q["atlas"]["CPU"] > 0 for q in quarters.values())
        assert set(fed["rcsites"]) <= rc_sites
    known = sum(q["rc"] in feds for q in queues.values())
    assert 0.5 * len(queues) < known < len(queues)  # Tier3s have no pledge


def test_todays_cric_fields(sim):
    queues = sim.cric_data("pandaqueue")
    sites = sim.cric_data("site")
    ddms = sim.cric_data("ddmendpoint")
    analysis = [q for q in queues.values() if "read_lan_analysis" in q["astorages"]]
    assert 0 < len(analysis) < len(queues) / 3
    for q in analysis:
        assert q["type"] in ("analysis", "unified")
        [disk] = q["astorages"]["read_lan_analysis"]
        assert ddms[disk]["type"] == "DATADISK" and disk not in q["astorages"]["read_lan"]
    null_cores = [q for q in queues.values() if q["corecount"] is None]
    assert null_cores and all(q["capability"] != "score" for q in null_cores)
    null_power = [q for q in queues.values() if q["corepower"] is None]
    assert null_power
    assert all(sites[q["atlas_site"]]["corepower"] == q["corepower_data"]["corepower"]
               for q in null_power)


def test_agis_lists_and_pledge_years():
    with Simulator(seed=3, series=300, time=T0, agis_lists=True) as old:
        assert isinstance(old.cric_data("site"), list)
        assert isinstance(old.cric_data("ddmendpoint"), list)
        feds = old.cric_data("federation")
        for when, (year, quarter) in (("2026-02-10 00:00:00", ("2025", "Q4")),
                                      ("2026-04-10 00:00:00", ("2026", "Q1")),
                                      ("2026-12-10 00:00:00", ("2026", "Q3"))):
            old.set_time(when)
            feds = old.cric_data("federation")
            expected = old.expected_pledges(when)
            assert expected and {name: fed["pledges"][year][quarter]["atlas"]["CPU"]
                                 for name, fed in feds.items()} == expected


def test_panda_resource_differs_from_name_sometimes(sim):
    queues = sim.cric_data("pandaqueue")
    differ = {name: q["panda_resource"] for name, q in queues.items()
              if name != q["panda_resource"]}
    assert 0.02 * len(queues) < len(differ) < 0.1 * len(queues)
    reported = set(sim.expected_stats(T0, 10))
    assert any(resource in reported for resource in differ.values())
    assert not any(name in reported for name in differ)


def test_queues_unknown_to_one_side(sim):
    resources = {q["panda_resource"] for q in sim.cric_data("pandaqueue").values()}
    reported = set(sim.expected_stats(T0, 10))
    panda_only = reported - resources
    assert 3 <= len(panda_only) <= 20
    cric_only = resources - reported
    assert cric_only


def test_cric_query_strings_and_paths(sim):
    for suffix in ("?json", "", "?json&preset=full"):
        r = requests.get(sim.url + "/api/atlas/ddmendpoint/query/" + suffix, timeout=10)
        assert r.status_code == 200
    assert requests.get(sim.url + "/api/atlas/nothing/?json", timeout=5).status_code == 404


# --- anomalies -----------------------------------------------------------------------

def test_collapse_from_start(sim):
    base = sim.expected_stats(T0, 10)
    queue = max(base, key=lambda q: sum(s["running"] for *_, s in iter_series({q: base[q]})))
    sim.add_anomaly(queue, "collapse", start=T0 + timedelta(minutes=20))
    before = sim.expected_stats(T0 + timedelta(minutes=10), 10)
    after = sim.expected_stats(T0 + timedelta(minutes=20), 10)
    assert sum(s["running"] for *_, s in iter_series({queue: before[queue]})) > 100
    assert all(s["running"] <= 2 for *_, s in iter_series({queue: after[queue]}))
    # others untouched
    sim.clear_anomalies()
    clean = sim.expected_stats(T0 + timedelta(minutes=20), 10)
    assert {q: v for q, v in clean.items() if q != queue} == \
        {q: v for q, v in after.items() if q != queue}
    assert clean[queue] != after[queue]


def test_spike_over_http_with_end(sim):
    queue = sim.panda_queues()[3]
    sim.add_anomaly(queue, "spike", start=T0, end=T0 + timedelta(minutes=10))
    data = get_v1(sim).json()["data"]
    for *_, s in iter_series({queue: data[queue]}):
        assert s["failed"] >= 200
        assert s["failed"] >= 10 * s["finished"]
    later = sim.expected_stats(T0 + timedelta(minutes=10), 10)
    assert any(s["failed"] < 200 for *_, s in iter_series({queue: later[queue]}))


def test_anomaly_by_cric_name_and_bad_input(sim):
    queues = sim.cric_data("pandaqueue")
    reported = set(sim.panda_queues())
    name = next(n for n, q in queues.items()
                if n != q["panda_resource"] and q["panda_resource"] in reported)
    sim.add_anomaly(name, "collapse", start=T0)
    data = sim.expected_stats(T0, 10)
    assert all(s["running"] <= 2
               for *_, s in iter_series({0: data[queues[name]["panda_resource"]]}))
    with pytest.raises(ValueError):
        sim.add_anomaly("NO_SUCH_QUEUE", "collapse")
    with pytest.raises(ValueError):
        sim.add_anomaly(name, "explode")


def test_anomaly_defaults_to_now(sim):
    queue = sim.panda_queues()[0]
    sim.set_time(T0 + timedelta(minutes=35))  # mid-slot: the 12:30 slot is affected
    sim.add_anomaly(queue, "spike")
    assert all(s["failed"] >= 200 for *_, s in
               iter_series({0: sim.expected_stats(T0 + timedelta(minutes=30), 10)[queue]}))
    assert not all(s["failed"] >= 200 for *_, s in
                   iter_series({0: sim.expected_stats(T0 + timedelta(minutes=20), 10)[queue]}))


# --- faults --------------------------------------------------------------------------

def test_fault_500_with_count(sim):
    sim.set_fault("panda", "500", count=2)
    assert get_v1(sim).status_code == 500
    r = requests.get(f"{sim.url}{LEGACY}?time_window=10", timeout=5)
    assert r.status_code == 500 and r.text
    assert get_v1(sim).status_code == 200
    # CRIC was never affected
    sim.set_fault("cric", "500")
    for _ in range(3):
        assert requests.get(config_urls(sim.url)["site_url"], timeout=5).status_code == 500
    assert get_v1(sim).status_code == 200
    sim.clear_faults()
    assert requests.get(config_urls(sim.url)["site_url"], timeout=5).status_code == 200


def test_fault_success_false_only_on_v1(sim):
    sim.set_fault("panda", "success_false", count=1)
    legacy = requests.get(f"{sim.url}{LEGACY}?time_window=10", headers=JSON, timeout=10)
    assert legacy.status_code == 200 and "success" not in legacy.json()
    r = get_v1(sim)
    assert r.status_code == 200
    body = r.json()
    assert body["success"] is False and body["message"] and body["data"] == {}
    assert get_v1(sim).json()["success"] is True
    sim.set_fault("panda", "success_false", count=1)
    assert ast.literal_eval(get_v1(sim, headers={}).text)["success"] is False


def test_fault_truncated(sim):
    full = requests.get(config_urls(sim.url)["federation_url"], timeout=10).content
    sim.set_fault("/api/core/", "truncated", count=1)
    r = requests.get(config_urls(sim.url)["federation_url"], timeout=10)
    assert r.status_code == 200
    assert r.content == full[:len(full) // 2]
    with pytest.raises(ValueError):
        r.json()
    sim.set_fault("panda", "truncated", count=1)
    with pytest.raises(ValueError):
        get_v1(sim).json()
    assert get_v1(sim).json()["success"] is True


def test_fault_path_prefix_is_specific(sim):
    sim.set_fault("/api/atlas/site/query/", "500", count=1)
    urls = config_urls(sim.url)
    assert requests.get(urls["site_url"], timeout=5).status_code == 500
    sim.set_fault("/api/atlas/site", "500")
    assert requests.get(urls["site_url"], timeout=5).status_code == 500
    assert requests.get(urls["ddmendpoint_url"], timeout=10).status_code == 200
    assert requests.get(sim.url + "/_sim/state", timeout=10).status_code == 200
    with pytest.raises(ValueError):
        sim.set_fault("nowhere", "500")
    with pytest.raises(ValueError):
        sim.set_fault("panda", "refuse")


def test_fault_hang_times_out_client_and_stop_is_prompt():
    with Simulator(seed=1, series=2000, time=T0, hang_seconds=30) as local:
        local.set_fault("panda", "hang")
        started = time.perf_counter()
        with pytest.raises(requests.exceptions.Timeout):
            requests.get(f"{local.url}{V1}?time_window=10", headers=JSON, timeout=0.3)
        assert time.perf_counter() - started < 2
        # other requests are still answered while one hangs
        assert requests.get(config_urls(local.url)["site_url"], timeout=5).status_code == 200
        with pytest.raises(requests.exceptions.Timeout):  # keep one hanging during stop()
            requests.get(f"{local.url}{LEGACY}?time_window=10", timeout=0.2)
        started = time.perf_counter()
    assert time.perf_counter() - started < 2


# --- control endpoint -----------------------------------------------------------------

def test_control_endpoint(sim):
    control = sim.url + "/_sim/control"
    when = "2024-06-02 03:17:00"
    queue = sim.panda_queues()[5]
    r = requests.post(control, timeout=10, json={
        "time": when,
        "anomalies": [{"queue": queue, "kind": "collapse", "start": "2024-06-02 03:00:00",
                       "end": None}],
        "faults": [{"target": "cric", "kind": "500", "count": 1}],
    })
    assert r.status_code == 200
    state = r.json()
    assert state["time"] == when and state["slot"] == "2024-06-02 03:10:00"
    assert state["anomalies"][0]["queue"] == queue
    assert state["faults"] == [{"target": "cric", "kind": "500", "count": 1}]
    data = get_v1(sim).json()["data"]
    assert data == sim.expected_stats("2024-06-02 03:10:00", 10)
    assert all(s["running"] <= 2 for *_, s in iter_series({0: data[queue]}))
    assert requests.get(config_urls(sim.url)["site_url"], timeout=5).status_code == 500

    r = requests.post(control, json={"clear": True, "time": None}, timeout=10)
    state = r.json()
    assert state["time"] is None and state["anomalies"] == [] and state["faults"] == []
    now = datetime.now(UTC)
    assert abs(datetime.fromisoformat(state["now"]).replace(tzinfo=UTC) - now) \
        < timedelta(minutes=1)

    assert requests.post(control, data=b"{not json", timeout=5).status_code == 400
    assert requests.post(control, json={"anomalies": [{"queue": "NOPE", "kind": "spike"}]},
                         timeout=5).status_code == 400
    assert requests.post(control, json={"time": "yesterday"}, timeout=5).status_code == 400


# --- lifecycle, CLI, import ----------------------------------------------------------

def test_stop_closes_keepalive_connections():
    local = Simulator(seed=1, series=2000)
    url = local.start()
    session = requests.Session()
    assert session.get(url + "/_sim/state", timeout=5).status_code == 200
    local.stop()
    local.stop()  # idempotent
    with pytest.raises(requests.exceptions.ConnectionError):
        session.get(url + "/_sim/state", timeout=5)
    assert local.url is None


def test_config_urls():
    urls = config_urls("http://127.0.0.1:1234/")
    assert urls == {
        "panda_url": "http://127.0.0.1:1234",
        "pandaqueue_url": "http://127.0.0.1:1234/api/atlas/pandaqueue/query/?json",
        "site_url": "http://127.0.0.1:1234/api/atlas/site/query/?json",
        "ddmendpoint_url": "http://127.0.0.1:1234/api/atlas/ddmendpoint/query/?json",
        "federation_url": "http://127.0.0.1:1234/api/core/federation/query/?json",
        "monit_url": "http://127.0.0.1:1234/api/datasources/proxy/7811/_msearch",
    }


def test_cli_serves_and_stops_on_sigterm():
    proc = subprocess.Popen(
        [sys.executable, "-m", "qmonit.dev.simulator", "--port", "0", "--seed", "3",
         "--series", "3000", "--time", "2024-05-01 12:00:00"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        data = requests.get(f"{url}{V1}?time_window=10", headers=JSON, timeout=10).json()
        assert data["data"] == Simulator(seed=3, series=3000).expected_stats(T0, 10)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_import_is_cheap_and_silent():
    code = ("import logging, sys, qmonit.dev.simulator as s; "
            "print('http.server' in sys.modules, "
            "logging.getLogger(s.__name__).handlers, logging.getLogger().handlers)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                         text=True, timeout=30, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert out.stdout.strip() == "False [] []", out.stderr


# --- MONIT: Rucio accounting behind the Grafana proxy ----------------------------------

DAY_MS = 86400 * 1000
YESTERDAY = datetime(2024, 4, 30, tzinfo=UTC)   # T0's last complete day
AUTH = {"Authorization": "Bearer demo-token", "Content-Type": "application/x-ndjson"}


def msearch(sim, *queries, headers=AUTH, index="monit_prod_rucioacc_enr_site*", raw=None):
    header = json.dumps({"search_type": "query_then_fetch", "ignore_unavailable": True,
                         "index": [index]})
    body = raw if raw is not None else "".join(f"{header}\n{json.dumps(q)}\n" for q in queries)
    return requests.post(config_urls(sim.url)["monit_url"], data=body.encode(),
                         headers=headers, timeout=30)


def per_rse(filters=(), day=YESTERDAY, size=10000, order=None):
    start = int(day.timestamp()) * 1000
    terms = {"field": "data.rse", "size": size}
    if order:
        terms["order"] = order
    return {"size": 0,
            "query": {"bool": {"filter": [{"range": {"metadata.timestamp": {
                "gte": start, "lt": start + DAY_MS, "format": "epoch_millis"}}}, *filters]}},
            "aggs": {"4": {"terms": terms, "aggs": {"1": {"sum": {"field": "data.files"}},
                                                    "3": {"sum": {"field": "data.bytes"}}}}}}


def rse_sums(response):
    return {b["key"]: (b["1"]["value"], b["3"]["value"])
            for b in response["aggregations"]["4"]["buckets"]}


DAOD_DATADISK = ({"term": {"data.datatype_grouped": "DAOD"}},
                 {"terms": {"data.token": ["ATLASDATADISK"]}})
# What the DDM dashboards (and QMonit) leave out: UNKNOWN tombstones, RSEs named like "none".
COUNTED = DAOD_DATADISK + ({"bool": {"must_not": [
    {"term": {"data.tombstone": "UNKNOWN"}}, {"wildcard": {"data.rse": "*none*"}}]}},)


def test_monit_reply_shape_like_the_recorded_one(sim):
    r = msearch(sim, per_rse(DAOD_DATADISK))
    assert r.status_code == 200 and r.headers["Content-Type"] == "application/json"
    [item] = r.json()["responses"]
    recorded = json.loads((RECORDED / "test_input_grafana_datadisks.json").read_text())
    [model] = recorded["responses"]
    assert set(model) <= set(item)
    assert set(model["aggregations"]["4"]) == set(item["aggregations"]["4"])
    bucket = item["aggregations"]["4"]["buckets"][0]
    assert set(bucket) == set(model["aggregations"]["4"]["buckets"][0])
    assert item["status"] == 200 and item["hits"]["hits"] == []
    # Only yesterday's index is searched; the others are skipped by the time range.
    assert item["_shards"]["skipped"] == item["_shards"]["total"] - 1


def test_monit_daod_datadisk_filter_gives_the_expected_volumes(sim):
    sums = rse_sums(msearch(sim, per_rse(COUNTED)).json()["responses"][0])
    unfiltered = rse_sums(msearch(sim, per_rse(DAOD_DATADISK)).json()["responses"][0])
    assert "none" in unfiltered and "none" not in sums
    assert sum(unfiltered[r] != sums.get(r) for r in unfiltered) > 1  # UNKNOWN tombstones
    expected = sim.expected_daod_volumes(YESTERDAY)
    assert sums == {rse: (float(f), float(b)) for rse, (f, b) in expected.items()}
    # PB scale at the large sites, realistic file sizes
    assert max(b for _, b in sums.values()) > 1e15
    files, nbytes = map(sum, zip(*sums.values()))
    assert 0.5e9 < nbytes / files < 5e9


def test_monit_serves_what_a_query_does_not_filter_out(sim):
    everything = rse_sums(msearch(sim, per_rse()).json()["responses"][0])
    daod = rse_sums(msearch(sim, per_rse(COUNTED)).json()["responses"][0])
    datadisk_only = rse_sums(msearch(sim, per_rse(DAOD_DATADISK[1:])).json()["responses"][0])
    daod_any = rse_sums(msearch(sim, per_rse(DAOD_DATADISK[:1])).json()["responses"][0])
    assert any(rse.endswith("_SCRATCHDISK") for rse in everything)
    assert any(rse.endswith("_SCRATCHDISK") for rse in daod_any)       # user DAODs on scratch
    assert not any(rse.endswith("_SCRATCHDISK") for rse in datadisk_only)
    for rse, (_, nbytes) in daod.items():
        assert datadisk_only[rse][1] > nbytes     # AOD, HITS, ... on the same DATADISK
        assert everything[rse] == datadisk_only[rse]


def test_monit_datadisks_are_cric_datadisks_and_read_lan_ones(sim):
    sums = rse_sums(msearch(sim, per_rse(COUNTED)).json()["responses"][0])
    cric = sim.cric_data("ddmendpoint")
    assert all(cric[rse]["type"] == "DATADISK" and cric[rse]["token"] == "ATLASDATADISK"
               for rse in sums)
    read = {e for q in sim.cric_data("pandaqueue").values() for e in q["astorages"]["read_lan"]
            if e.endswith("_DATADISK")}
    assert read <= set(cric) and len(read & set(sums)) >= len(read) * 0.8


@settings(max_examples=15, deadline=None)
@given(tokens=st.sets(st.sampled_from(["ATLASDATADISK", "ATLASSCRATCHDISK",
                                       "ATLASLOCALGROUPDISK", "ATLASDATATAPE"]), min_size=1),
       groups=st.sets(st.sampled_from(["DAOD", "AOD", "HITS", "RAW", "log"]), min_size=1),
       primary_only=st.booleans())
def test_monit_filters_are_honoured(server, tokens, groups, primary_only):
    filters = [{"terms": {"data.token": sorted(tokens)}},
               {"bool": {"should": [{"term": {"data.datatype_grouped": g}} for g in groups]}}]
    if primary_only:
        filters.append({"bool": {"must_not": {"term": {"data.tombstone": "secondary"}}}})
    got = rse_sums(msearch(server, per_rse(filters)).json()["responses"][0])
    expected = {}
    for doc in server.rucio_documents(YESTERDAY):
        d = doc["data"]
        if d["token"] in tokens and d["datatype_grouped"] in groups and (
                not primary_only or d["tombstone"] != "secondary"):
            files, nbytes = expected.get(d["rse"], (0, 0))
            expected[d["rse"]] = (files + d["files"], nbytes + d["bytes"])
    assert got == {k: (float(f), float(b)) for k, (f, b) in expected.items()}


def test_monit_terms_size_order_and_other_doc_count(sim):
    item = msearch(sim, per_rse(COUNTED, size=3, order={"_key": "desc"})).json()
    agg = item["responses"][0]["aggregations"]["4"]
    keys = [b["key"] for b in agg["buckets"]]
    everything = sorted(sim.expected_daod_volumes(YESTERDAY), reverse=True)
    assert keys == everything[:3]
    assert agg["sum_other_doc_count"] > 0
    by_bytes = msearch(sim, per_rse(COUNTED, size=2, order={"3": "desc"})).json()
    top = [b["3"]["value"] for b in by_bytes["responses"][0]["aggregations"]["4"]["buckets"]]
    assert top == sorted((b for _, b in sim.expected_daod_volumes(YESTERDAY).values()),
                         reverse=True)[:2]


def test_monit_accounting_arrives_a_day_late(sim):
    today = datetime(2024, 5, 1, tzinfo=UTC)
    sim.set_time(today + timedelta(hours=2))
    late = msearch(sim, per_rse(DAOD_DATADISK)).json()["responses"][0]
    assert late["aggregations"]["4"]["buckets"] == [] and late["hits"]["total"] == 0
    sim.set_time(today + timedelta(hours=3))
    assert rse_sums(msearch(sim, per_rse(DAOD_DATADISK)).json()["responses"][0])
    # deterministic (but for "took"), and a different day has (slightly) different volumes
    first, again = (msearch(sim, per_rse(DAOD_DATADISK)).json()["responses"][0]
                    for _ in range(2))
    assert {**first, "took": 0} == {**again, "took": 0}
    before = rse_sums(msearch(sim, per_rse(DAOD_DATADISK, day=YESTERDAY - timedelta(days=1)))
                      .json()["responses"][0])
    now = rse_sums(msearch(sim, per_rse(DAOD_DATADISK)).json()["responses"][0])
    assert before.keys() == now.keys() and before != now


def test_monit_token_is_required(sim):
    assert msearch(sim, per_rse(), headers={"Content-Type": "application/json"}).status_code \
        == 401
    no_token = {"Authorization": "Bearer ", "Content-Type": "application/json"}
    assert msearch(sim, per_rse(), headers=no_token).status_code == 401
    assert msearch(sim, per_rse(), headers={**AUTH, "Authorization": "Bearer x"}).status_code \
        == 200
    with Simulator(seed=1, series=2000, time=T0, monit_token="secret") as local:
        assert msearch(local, per_rse(), headers=AUTH).status_code == 401
        good = {**AUTH, "Authorization": "Bearer secret"}
        assert msearch(local, per_rse(), headers=good).status_code == 200


def test_monit_bad_requests(sim):
    r = msearch(sim, raw=json.dumps({"index": "x"}) + "\n" + json.dumps(per_rse()))
    assert r.status_code == 400 and "terminated by a newline" in r.text
    r = msearch(sim, per_rse(), headers={**AUTH, "Content-Type": "text/plain"})
    assert r.status_code == 406
    r = msearch(sim, {"size": 0, "query": {"query_string": {"query": "data.rse:*"}}})
    assert r.status_code == 200
    [item] = r.json()["responses"]
    assert item["status"] == 400 and item["error"]["type"] == "parsing_exception"
    r = msearch(sim, per_rse(), index="no_such_index")
    assert r.status_code == 200 and r.json()["responses"][0]["aggregations"]["4"]["buckets"] == []
    r = requests.post(sim.url + "/api/datasources/proxy/7811/_search", headers=AUTH, timeout=5,
                      data=b"{}\n")
    assert r.status_code == 404
    # two queries, two responses
    assert len(msearch(sim, per_rse(), per_rse(DAOD_DATADISK)).json()["responses"]) == 2


def test_monit_faults(sim):
    sim.set_fault("monit", "no_aggregations", count=1)
    item = msearch(sim, per_rse()).json()["responses"][0]
    assert "aggregations" not in item and item["status"] == 200
    assert "aggregations" in msearch(sim, per_rse()).json()["responses"][0]
    sim.set_fault("monit", "500", count=1)
    assert msearch(sim, per_rse()).status_code == 500
    sim.set_fault("/api/datasources/proxy/", "truncated", count=1)
    with pytest.raises(ValueError):
        msearch(sim, per_rse()).json()
    # no_aggregations only concerns MONIT
    sim.set_fault("cric", "no_aggregations", count=1)
    assert requests.get(config_urls(sim.url)["site_url"], timeout=10).status_code == 200
    sim.set_fault("monit", "hang", count=1)
    with pytest.raises(requests.exceptions.Timeout):
        requests.post(config_urls(sim.url)["monit_url"], data=b"x\n", headers=AUTH,
                      timeout=0.3)
