"""datadisk.py and qmonit/datadisk.py: the pure attribution (properties), the recorded
payloads, and the script end to end on the simulator, real InfluxDB and real MariaDB."""
import datetime as dt
import fcntl
import json
import subprocess

import pytest
from conftest import RECORDED, ROOT, recent_hour, stamp, write_config
from hypothesis import given
from hypothesis import strategies as st

import datadisk as script
import fetch_queues
from qmonit.core import schema
from qmonit.dev.simulator import config_urls
from qmonit.jobs import transform
from qmonit.jobs.datadisk import (
    Endpoint,
    Running,
    datadisk_records,
    endpoint_metadata,
    mysql_rows,
    points,
)
from qmonit.sources import cric, rucio
from qmonit.sources.cric import QueueInfo

T = recent_hour()
TS = stamp(T + dt.timedelta(minutes=5))
YESTERDAY = T.replace(hour=0) - dt.timedelta(days=1)
HOUR_AT = f"time = {int(T.timestamp())}s"


# --- the pure transform: properties ------------------------------------------------------

POOL = ["A_DATADISK", "B_DATADISK", "C_DATADISK", "D_DATADISK", "A_SCRATCHDISK",
        "B_LOCALGROUPDISK", "NOTCRIC_DATADISK", "GROUP_DATADISK", "X_PHYS-HIGGS"]
# CRIC knows all but NOTCRIC_DATADISK; GROUP_DATADISK is a GROUPDISK whatever its name says.
ENDPOINTS = {name: Endpoint(name.split("_")[0], "CL", "T2", name.endswith("_DATADISK"))
             for name in POOL if name != "NOTCRIC_DATADISK"}
ENDPOINTS["GROUP_DATADISK"] = Endpoint("GROUP", "CL", "T1", False)
DATADISKS = {"A_DATADISK", "B_DATADISK", "C_DATADISK", "D_DATADISK", "NOTCRIC_DATADISK"}

queue_names = [f"Q{i}" for i in range(6)]
queues_strategy = st.dictionaries(
    st.sampled_from(queue_names),
    st.lists(st.sampled_from(POOL), max_size=4).map(lambda lan: QueueInfo(read_lan=tuple(lan))))
running_strategy = st.lists(st.builds(
    Running, st.sampled_from(queue_names + ["NOT_IN_CRIC"]), st.sampled_from(["SCORE", "MCORE"]),
    st.integers(0, 5000), st.sampled_from([1.0, 8.0])), max_size=12,
    unique_by=lambda r: (r.panda_queue, r.resource))
volumes_strategy = st.dictionaries(
    st.sampled_from(POOL), st.builds(rucio.Volume, st.integers(0, 10**7), st.integers(0, 10**16)))


def datadisks_of(info):
    return list(dict.fromkeys(e for e in info.read_lan if e in DATADISKS))


@given(queues=queues_strategy, running=running_strategy, volumes=volumes_strategy)
def test_shares_sum_to_one_and_jobs_are_conserved(queues, running, volumes):
    records, summary = datadisk_records(running, queues, ENDPOINTS, volumes)
    names = [r.datadisk for r in records]
    assert names == sorted(set(names)) and set(names) <= DATADISKS

    with_disk = [r for r in running if r.panda_queue in queues
                 and datadisks_of(queues[r.panda_queue])]
    jobs = sum(r.jobs for r in with_disk)
    cores = sum(r.jobs * r.resource_factor for r in with_disk)
    assert sum(r.running_analysis_jobs for r in records) == pytest.approx(jobs, rel=1e-12,
                                                                           abs=1e-9)
    assert sum(r.running_analysis_cores for r in records) == pytest.approx(cores, rel=1e-12,
                                                                            abs=1e-9)
    assert summary.attributed_jobs == jobs
    assert summary.unattributed_jobs == sum(r.jobs for r in running) - jobs

    data = {k: v for k, v in volumes.items() if k in DATADISKS}
    assert set(summary.dropped_rses) == set(volumes) - set(data)
    # Both kinds appear: data without jobs, jobs without data.
    assert set(data) <= set(names)
    assert {d for r in with_disk if r.jobs for d in datadisks_of(queues[r.panda_queue])} \
        <= set(names)
    if jobs:
        assert abs(sum(r.jobs_share for r in records) - 1) <= 1e-9
    else:
        assert all(r.jobs_share is None for r in records)
    total_bytes = sum(v.bytes for v in data.values())
    if total_bytes:
        assert abs(sum(r.data_share for r in records) - 1) <= 1e-9
    for r in records:
        assert r.daod_bytes == data.get(r.datadisk, rucio.Volume(0, 0)).bytes
        if r.data_share and r.jobs_share is not None:
            assert r.imbalance == pytest.approx(r.jobs_share / r.data_share)
        else:
            assert r.imbalance is None


@given(n=st.integers(1, 10**6), k=st.integers(1, 7))
def test_a_queue_splits_equally_over_its_datadisks(n, k):
    disks = [f"S{i}_DATADISK" for i in range(k)]
    records, _ = datadisk_records([Running("Q", "MCORE", n, 8.0)],
                                  {"Q": QueueInfo(read_lan=tuple(disks) + ("S0_SCRATCHDISK",))},
                                  {}, {})
    assert [r.datadisk for r in records] == sorted(disks)
    for r in records:
        assert r.running_analysis_jobs == pytest.approx(n / k)
        assert r.running_analysis_cores == pytest.approx(8 * n / k)
        assert r.jobs_share == pytest.approx(1 / k)
        assert r.data_share is None and r.imbalance is None


def test_jobs_without_data_and_data_without_jobs_both_appear():
    queues = {"Q1": QueueInfo(read_lan=("A_DATADISK",)),
              "Q2": QueueInfo(read_lan=("A_SCRATCHDISK",))}
    running = [Running("Q1", "SCORE", 30, 1.0), Running("Q2", "SCORE", 70, 1.0)]
    volumes = {"B_DATADISK": rucio.Volume(10, 3000), "C_DATADISK": rucio.Volume(5, 1000),
               "A_SCRATCHDISK": rucio.Volume(1, 10**15)}
    records, summary = datadisk_records(running, queues, ENDPOINTS, volumes)
    by = {r.datadisk: r for r in records}
    assert set(by) == {"A_DATADISK", "B_DATADISK", "C_DATADISK"}
    a, b, c = by["A_DATADISK"], by["B_DATADISK"], by["C_DATADISK"]
    assert (a.daod_bytes, a.running_analysis_jobs, a.jobs_share, a.data_share, a.imbalance) \
        == (0, 30.0, 1.0, 0.0, None)
    assert (b.running_analysis_jobs, b.jobs_share, b.data_share, b.imbalance) \
        == (0.0, 0.0, 0.75, 0.0)
    assert c.data_share == 0.25
    assert summary.unattributed_jobs == 70 and summary.queues_without_datadisk == 1
    assert summary.dropped_rses == ("A_SCRATCHDISK",)
    lines = transform.encode(schema.DATADISKS, points(records, T))
    assert lines[0] == ("datadisks,datadisk=A_DATADISK,atlas_site=A,cloud=CL,tier=T2 "
                        "daod_bytes=0i,daod_files=0i,running_analysis_jobs=30.0,"
                        "running_analysis_cores=30.0,jobs_share=1.0,data_share=0.0 "
                        f"{int(T.timestamp())}")
    assert "imbalance=0.0" in lines[1]


def test_mysql_rows_show_the_first_datadisk_of_read_lan():
    queues = {"Q1": QueueInfo(read_lan=("A_SCRATCHDISK", "B_DATADISK", "A_DATADISK")),
              "Q2": QueueInfo(read_lan=("C_DATADISK",)), "Q3": QueueInfo(read_lan=()),
              "Q4": QueueInfo(read_lan=("GROUP_DATADISK",))}
    volumes = {"B_DATADISK": rucio.Volume(7, 2_500_000_000), "A_DATADISK": rucio.Volume(1, 1)}
    assert mysql_rows(queues, ENDPOINTS, volumes) == [("Q1", "B_DATADISK", 2.5, 7),
                                                      ("Q2", "C_DATADISK", 0.0, 0)]


# --- recorded payloads ---------------------------------------------------------------------

def recorded(name):
    return json.loads((RECORDED / name).read_text())


def test_recorded_reply_keeps_datadisks_only():
    queues = cric.queue_metadata(recorded("test_input_agis_pandaqueue.json"))
    endpoints = endpoint_metadata(recorded("test_input_agis_ddm.json"),
                                  recorded("test_input_agis_site.json"), queues)
    assert not endpoints["CERN-PROD_PHYS-EXOTICS"].is_datadisk      # a GROUPDISK
    assert not endpoints["RU-MOSCOW-SINP-LCG2_HOTDISK"].is_datadisk  # no type, HOTDISK token
    assert endpoints["CERN-PROD_PHYS-EXOTICS"].tier == "T0"          # from tier_level
    volumes = rucio.parse_reply("u", recorded("test_input_grafana_datadisks.json"))
    records, summary = datadisk_records([], queues, endpoints, volumes)
    assert len(records) == 82 and all(r.datadisk.endswith("_DATADISK") for r in records)
    assert set(summary.dropped_rses) == {
        "UKI-NORTHGRID-LANCS-HEP_PHYS-BEAUTY", "TRIUMF-LCG2_PERF-TAU", "NDGF-T1_PHYS-HIGGS",
        "IN2P3-CC_PHYS-HIGGS", "FZK-LCG2_PERF-TAU", "FZK-LCG2_PERF-IDTRACKING",
        "FR-ALPES_DATADISK_DATALAKES"}
    assert abs(sum(r.data_share for r in records) - 1) <= 1e-9
    # AGLT2_HOSPITAL reads four datadisks; none is in the recorded ddm payload.
    rows = mysql_rows(queues, endpoints, volumes)
    assert ("AGLT2_HOSPITAL", "BNL-OSG2_DATADISK") == rows[0][:2]


def test_endpoint_tier_comes_from_the_sites_queues():
    queues = {"Q": QueueInfo(atlas_site="S", tier="T2D"), "R": QueueInfo(atlas_site="S",
                                                                         tier="T2D")}
    ddm = [{"name": "S_DATADISK", "site": "S", "cloud": "DE", "tier_level": 2,
            "type": "DATADISK"},
           {"name": "U_DATADISK", "site": "U", "type": "DATADISK"}, {"name": ""}, "junk"]
    sites = [{"name": "U", "tier_level": 3, "cloud": "FR"}]
    endpoints = endpoint_metadata(ddm, sites, queues)
    assert endpoints == {"S_DATADISK": Endpoint("S", "DE", "T2D", True),
                         "U_DATADISK": Endpoint("U", "FR", "T3", True)}


# --- the script end to end -----------------------------------------------------------------

@pytest.fixture
def dd_config(tmp_path, influx_server, mariadb_server, sim, database_name):
    extra = (f"\n[credentials_monit_grafana]\nurl = {config_urls(sim.url)['monit_url']}\n"
             "token = test-token\n\n[datadisk]\ntimeout = 1\n")
    return write_config(tmp_path / "datadisk.cfg", influx_server.url, mariadb_server.port,
                        database_name, sim.url, tmp_path / "data", extra)


def fetch(config, sim, slot=T):
    sim.set_time(slot)
    assert fetch_queues.main(["--config", str(config), "--timestamp",
                              f"{slot:%Y-%m-%d %H:%M:%S}"]) == 0
    sim.set_time(slot + dt.timedelta(minutes=5))


def run(config, *args, timestamp=TS):
    return script.main(["--config", str(config), "--timestamp", timestamp, *args])


def read_points(influx, at=HOUR_AT):
    [series] = influx.query(f'SELECT * FROM {schema.DATADISKS.qualified} WHERE {at} '
                            'GROUP BY "datadisk", "atlas_site", "cloud", "tier"')
    return {s["tags"]["datadisk"]: {**s["tags"], **dict(zip(s["columns"], s["values"][0]))}
            for s in series}


def accounting_day(sim):
    """The day datadisk.py should take: yesterday (of T), or the day before while yesterday's
    accounting is not in MONIT yet (the first hours after midnight)."""
    indexed = sim.rucio_days()
    assert indexed, "the simulator's MONIT holds no day"
    if int(YESTERDAY.timestamp()) in indexed:
        return YESTERDAY
    assert int((YESTERDAY - dt.timedelta(days=1)).timestamp()) in indexed
    return YESTERDAY - dt.timedelta(days=1)


def expected_from_the_simulator(sim, slot=T, day=None):
    """Jobs and bytes per datadisk, worked out from the simulator's own data (its clock set
    as for the run)."""
    day = accounting_day(sim) if day is None else day
    disks = {}
    for q in sim.cric_data("pandaqueue").values():
        # analysis jobs read read_lan_analysis where CRIC has it
        storages = q["astorages"].get("read_lan_analysis") or q["astorages"]["read_lan"]
        disks[q["panda_resource"]] = list(dict.fromkeys(
            e for e in storages if e.endswith("_DATADISK")))
    jobs, attributed, total = {}, 0, 0
    for queue, labels in sim.expected_stats(slot, 10).items():
        n = sum(s.get("running", 0) for s in labels.get("user", {}).values())
        total += n
        if disks.get(queue):
            attributed += n
            for d in disks[queue]:
                jobs[d] = jobs.get(d, 0) + n / len(disks[queue])
    return jobs, attributed, total, sim.expected_daod_volumes(day), disks


def test_end_to_end_matches_the_simulator(dd_config, sim, influx, mysql, capsys, tmp_path):
    fetch(dd_config, sim)
    capsys.readouterr()
    assert run(dd_config) == 0
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""                     # quiet under cron
    got = read_points(influx)
    jobs, attributed, total, volumes, disks = expected_from_the_simulator(sim)
    assert attributed < total                                   # some queues have no datadisk
    assert set(got) == set(volumes) | {d for d, n in jobs.items() if n > 0}
    assert sum(p["running_analysis_jobs"] for p in got.values()) == pytest.approx(attributed)
    assert abs(sum(p["jobs_share"] for p in got.values()) - 1) <= 1e-9
    assert abs(sum(p["data_share"] for p in got.values()) - 1) <= 1e-9
    ddm = sim.cric_data("ddmendpoint")          # keyed by name, as today's CRIC
    for name, p in got.items():
        files, nbytes = volumes.get(name, (0, 0))
        assert (p["daod_files"], p["daod_bytes"]) == (files, nbytes)
        assert p["running_analysis_jobs"] == pytest.approx(jobs.get(name, 0))
        assert p["running_analysis_cores"] >= p["running_analysis_jobs"] - 1e-9
        assert (p["atlas_site"], p["cloud"]) == (ddm[name]["site"], ddm[name]["cloud"])
        assert p["tier"] in ("T1", "T2", "T2D", "T3")
        if p["data_share"]:
            assert p["imbalance"] == pytest.approx(p["jobs_share"] / p["data_share"])
        else:
            assert p["imbalance"] is None
    assert any(p["daod_bytes"] == 0 and p["running_analysis_jobs"] > 0 for p in got.values())

    # MySQL: every row of a queue shows its first DATADISK and that disk's DAOD volume.
    rows = mysql.select("SELECT panda_queue, datadisk_name, datadisk_occupied_gb, "
                        "datadisk_files FROM jobs")
    assert rows
    for queue, name, gb, files in rows:
        if disks.get(queue):
            assert name == disks[queue][0]
            f, b = volumes.get(name, (0, 0))
            assert files == f and gb == pytest.approx(b / 1e9)
        else:
            assert (name, gb, files) == (None, None, None)
    assert any(len(disks.get(q, ())) > 1 for q, *_ in rows)

    for kind in ("site", "ddmendpoint", "federation"):
        assert (tmp_path / "data" / "cric" / f"{kind}.json").is_file()
    [runs] = influx.query(f'SELECT "points" FROM {schema.RUNS.qualified} WHERE '
                          f'"script" = \'datadisk\' AND "status" = \'ok\' AND {HOUR_AT}')
    assert runs[0]["values"][0][1] == len(got)


def test_a_failing_site_dump_still_refreshes_the_federation_cache(dd_config, sim, capsys,
                                                                  tmp_path):
    fetch(dd_config, sim)
    capsys.readouterr()
    sim.set_fault("/api/atlas/site/query", "500")
    assert run(dd_config) == 1
    err = capsys.readouterr().err
    assert "/api/atlas/site/query/" in err and "HTTP 500" in err and err.count("\n") == 1
    cache = tmp_path / "data" / "cric"
    assert (cache / "federation.json").is_file() and (cache / "ddmendpoint.json").is_file()
    assert not (cache / "site.json").exists()


def test_benchmarks_are_refreshed_hourly_and_written_by_fetch_queues(dd_config, sim, influx,
                                                                     tmp_path):
    def hs06_at(slot):
        [series] = influx.query(f'SELECT last("HS06_benchmark"), count("jobs") FROM '
                                f'{schema.JOBS.qualified} WHERE time = {int(slot.timestamp())}s '
                                'GROUP BY "panda_queue"')
        return {s["tags"]["panda_queue"]: s["values"][0][1] for s in series}

    fetch(dd_config, sim)
    assert set(hs06_at(T).values()) == {None}          # no benchmark cache yet
    dd_config.write_text(dd_config.read_text()
                         + f"\n[credentials_elasticsearch]\nhost = {sim.url}\n")
    assert run(dd_config) == 0
    expected = sim.expected_benchmarks(T + dt.timedelta(minutes=5))
    cached = json.loads((tmp_path / "data" / "cric" / "benchmarks.json").read_text())["hs06"]
    assert cached == pytest.approx(expected)
    later = T + dt.timedelta(minutes=10)
    fetch(dd_config, sim, later)
    got = hs06_at(later)
    measured = {q: v for q, v in got.items() if v is not None}
    assert measured and set(got) - set(measured)       # some queues have no benchmark
    assert measured == pytest.approx({q: expected[q] for q in got if q in expected})
    # Without a host, the field is left out everywhere (even with a cache on disk).
    dd_config.write_text(dd_config.read_text().replace(f"host = {sim.url}", "host ="))
    fetch(dd_config, sim, later + dt.timedelta(minutes=10))
    assert set(hs06_at(later + dt.timedelta(minutes=10)).values()) == {None}


def test_dry_run_writes_nothing(dd_config, sim, influx, mysql, capsys, tmp_path):
    fetch(dd_config, sim)
    capsys.readouterr()
    assert run(dd_config, "--dry-run") == 0
    out = capsys.readouterr().out
    assert '# would write ' in out and 'points to "1h"."datadisks"' in out
    assert "datadisks,datadisk=" in out and "# would update the datadisk columns of" in out
    assert read_points(influx) == {}
    assert mysql.select("SELECT COUNT(*) FROM jobs WHERE datadisk_name IS NOT NULL") == [(0,)]
    assert not (tmp_path / "data" / "cric" / "site.json").exists()
    assert not (tmp_path / "data" / "state" / "datadisk.json").exists()


@pytest.mark.parametrize("fault, message", [
    ("401", "HTTP 401 Unauthorized"),
    ("500", "HTTP 500"),
    ("hang", "timed out after 1 s"),
    ("no_aggregations", "the reply has no aggregations"),
    ("truncated", "invalid JSON"),
])
def test_a_failing_proxy_exits_1_and_writes_nothing(dd_config, sim, influx, mysql, capsys,
                                                    fault, message):
    fetch(dd_config, sim)
    capsys.readouterr()
    if fault == "401":
        sim.monit_token = "another-token"
    else:
        sim.set_fault("monit", fault)
    try:
        assert run(dd_config) == 1
    finally:
        sim.monit_token = None
    err = capsys.readouterr().err
    url = config_urls(sim.url)["monit_url"]
    assert err.startswith(f"datadisk.py: error: {url}: ") and message in err
    assert err.count("\n") == 1
    assert read_points(influx) == {}
    assert mysql.select("SELECT COUNT(*) FROM jobs WHERE datadisk_name IS NOT NULL") == [(0,)]
    [runs] = influx.query(f'SELECT "errors" FROM {schema.RUNS.qualified} WHERE '
                          f'"script" = \'datadisk\' AND "status" = \'error\'')
    assert runs


@pytest.mark.parametrize("text, where", [
    ("url =\ntoken = t\n", "[credentials_monit_grafana] url: empty"),
    ("url = ftp://x/_msearch\ntoken = t\n", "[credentials_monit_grafana] url: not an http"),
    ("url = http://x/_msearch\ntoken =\n", "[credentials_monit_grafana] token: empty"),
])
def test_missing_monit_settings_exit_2(tmp_path, text, where, capsys):
    config = tmp_path / "c.cfg"
    config.write_text(f"[credentials_monit_grafana]\n{text}")
    assert run(config) == 2
    err = capsys.readouterr().err
    assert f"{config}: {where}" in err and err.count("\n") == 1


def test_without_a_recent_jobs_slot_exits_1(dd_config, sim, capsys):
    fetch(dd_config, sim, T - dt.timedelta(hours=3))
    capsys.readouterr()
    assert run(dd_config) == 1
    err = capsys.readouterr().err
    assert f"no \"10m\".\"jobs\" slot in the 60 minutes up to {TS} UTC" in err
    assert "has fetch_queues.py run?" in err


def test_rerun_replaces_the_hour_and_a_backfill_leaves_mysql(dd_config, sim, influx, mysql):
    fetch(dd_config, sim)
    assert run(dd_config) == 0
    first = read_points(influx)
    line = "datadisks,datadisk=GONE_DATADISK daod_bytes=1i " + str(int(T.timestamp()))
    influx.write_lines(schema.RP_1H, [line])
    assert run(dd_config) == 0
    assert read_points(influx) == first

    def mysql_state():
        return sorted(mysql.select("SELECT panda_queue, prod_source, resource, datadisk_name, "
                                   "datadisk_occupied_gb, datadisk_files FROM jobs"))
    before = mysql_state()
    day_before = T - dt.timedelta(days=1)
    fetch(dd_config, sim, day_before)
    sim.set_time(T + dt.timedelta(minutes=5))
    assert run(dd_config, timestamp=f"{day_before:%Y-%m-%d %H:%M:%S}") == 0
    older = read_points(influx, f"time = {int(day_before.timestamp())}s")
    assert older and older != first                       # another day's volumes ...
    # ... but MySQL keeps the newer hour's (rows fetch_queues added meanwhile aside).
    now_rows = {r[:3]: r[3:] for r in mysql_state()}
    assert all(now_rows[r[:3]] == r[3:] for r in before)


def test_jobs_from_elsewhere_and_data_without_jobs(dd_config, sim, influx):
    """Jobs points written without fetch_queues.py's run records: the newest slot is used."""
    sim.set_time(T + dt.timedelta(minutes=5))
    queues = cric.queue_metadata(sim.cric_data("pandaqueue"))
    volumes = sim.expected_daod_volumes(accounting_day(sim))
    [queue] = [q for q, info in sorted(queues.items())
               if len([e for e in info.analysis_read_lan() if e.endswith("_DATADISK")]) == 2][:1]
    disks = [e for e in queues[queue].analysis_read_lan() if e.endswith("_DATADISK")]
    influx.ensure_database()
    slot = T - dt.timedelta(minutes=10)
    tags = {schema.PANDA_QUEUE: queue, schema.PROD_SOURCE: schema.ANALYSIS_LABEL,
            schema.RESOURCE: "MCORE", schema.JOB_STATUS: "running"}
    influx.write_lines(schema.RP_10M, transform.encode(schema.JOBS, [
        transform.Point(tags, {"jobs": 10, "resource_factor": 8.0}, int(slot.timestamp())),
        transform.Point({**tags, schema.PROD_SOURCE: "managed"}, {"jobs": 99},
                        int(slot.timestamp()))]))
    assert run(dd_config) == 0
    got = read_points(influx)
    assert set(got) == set(volumes) | set(disks)
    for disk in disks:
        assert got[disk]["running_analysis_jobs"] == 5.0
        assert got[disk]["running_analysis_cores"] == 40.0
        assert got[disk]["jobs_share"] == 0.5
    idle = [p for name, p in got.items() if name not in disks]
    assert idle and all(p["running_analysis_jobs"] == 0 and p["jobs_share"] == 0 for p in idle)
    assert all(p["imbalance"] == 0 for p in idle if p["data_share"])


# --- run_1h.sh -----------------------------------------------------------------------------

def wrapper(*args, cwd="/"):
    return subprocess.run([str(ROOT / "run_1h.sh"), *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120)


def test_wrapper_passes_the_status_on_from_any_directory(dd_config, sim):
    fetch(dd_config, sim)
    result = wrapper("--config", str(dd_config), "--timestamp", TS)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    result = wrapper("--no-such-flag")
    assert result.returncode == 2 and "unrecognized arguments" in result.stderr


def test_wrapper_never_overlaps_itself():
    lock = ROOT / "data" / ".lock-1h"
    lock.parent.mkdir(exist_ok=True)
    with open(lock, "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        result = wrapper("--help")
    assert result.returncode == 1
    assert result.stderr == ("run_1h.sh: the previous run still holds data/.lock-1h; "
                             "not starting another\n")
    assert wrapper("--help").returncode == 0


def test_state_from_a_run_with_the_clock_ahead_is_not_trusted(dd_config, sim, mysql, capsys,
                                                              tmp_path):
    """A run far ahead left last_hour in the future: the next real run still updates MySQL."""
    fetch(dd_config, sim)
    state = tmp_path / "data" / "state" / "datadisk.json"
    state.parent.mkdir(parents=True, exist_ok=True)
    state.write_text(json.dumps({"last_hour": int(T.timestamp()) + 400 * 86400}))
    assert run(dd_config) == 0
    assert "not trusted" in capsys.readouterr().err
    assert mysql.select("SELECT COUNT(*) FROM jobs WHERE datadisk_name IS NOT NULL")[0][0] > 0
    assert json.loads(state.read_text())["last_hour"] == int(T.timestamp())


def test_mysql_down_still_writes_influxdb(dd_config, sim, influx, capsys):
    """The two sinks are independent: MySQL down, the datadisk points still reach InfluxDB."""
    from conftest import free_port
    fetch(dd_config, sim)
    port = free_port()
    text = dd_config.read_text()
    dd_config.write_text(text.replace("[mysql]\nhost = 127.0.0.1\nport = ",
                                      f"[mysql]\nhost = 127.0.0.1\nport = {port}\n#", 1))
    capsys.readouterr()
    assert run(dd_config) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"MySQL 127.0.0.1:{port}" in err
    assert read_points(influx)
    [runs] = influx.query(f'SELECT "errors" FROM {schema.RUNS.qualified} WHERE '
                          f'"script" = \'datadisk\' AND "status" = \'error\' AND {HOUR_AT}')
    assert runs and runs[0]["values"][-1][1] == 1


def test_influxdb_refusing_the_write_still_updates_mysql(dd_config, sim, mysql):
    """The other way round: InfluxDB answers the reads but refuses the write (as a full disk
    or a lost write permission would); MySQL is still updated and the run fails naming it."""
    from qmonit.core.errors import SinkError
    from qmonit.jobs import datadisk as job
    from qmonit.sinks.influx import Influx

    class RefusingWrites(Influx):
        def write_lines(self, rp, lines):
            if rp == schema.DATADISKS.rp:
                raise SinkError(f"InfluxDB {self.url}", "write refused")
            return super().write_lines(rp, lines)

    fetch(dd_config, sim)
    from qmonit.core import config as config_module
    cfg = config_module.load(str(dd_config), str(ROOT / "datadisk.py"))
    influx = RefusingWrites.from_config(cfg)
    with pytest.raises(SinkError, match="write refused"):
        job.run(cfg, T + dt.timedelta(minutes=5), influx=influx)
    assert mysql.select("SELECT COUNT(*) FROM jobs WHERE datadisk_name IS NOT NULL")[0][0] > 0
