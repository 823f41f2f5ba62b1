"""The Grafana dashboards: generated JSON matches the definitions, provisioning follows the
config, and every panel and variable query, expanded as Grafana expands it, runs on a real
InfluxDB / MariaDB filled by the real scripts from the simulator."""
import contextlib
import datetime as dt
import importlib
import io
import json
import logging
import os
import re
import stat
from dataclasses import dataclass, field

import pytest
import trustme
from conftest import CLOCK, ROOT, write_config

from dashboards import definitions as defs
from dashboards import generate
from qmonit.core import schema
from qmonit.core.influxql import quote_ident, quote_string
from qmonit.dev.simulator import Simulator, config_urls
from qmonit.sinks.influx import Influx
from qmonit.sinks.mysqlstore import MySQLStore

UTC = dt.UTC
HOUR = dt.timedelta(hours=1)
SLOT = dt.timedelta(minutes=10)

# Which script writes what a query reads: a query over a measurement whose script is missing
# or failed fails with that script's message, never silently.
WRITERS = {
    schema.JOBS.qualified: "fetch_queues.py",
    schema.RUNS.qualified: "fetch_queues.py",
    schema.JOBS_1H.qualified: "downsample.py",
    schema.JOBS_1D.qualified: "downsample.py",
    schema.AVERAGES.qualified: "suspicious.py",
    schema.SUSPICIOUS.qualified: "suspicious.py",
    schema.DATADISKS.qualified: "datadisk.py",
}
SCRIPTS = ("fetch_queues.py", "suspicious.py", "downsample.py", "datadisk.py")


def writers(target_query, datasource=defs.INFLUXDB):
    if datasource == defs.MYSQL:
        # fetch_queues.py fills the table; suspicious.py its avg* columns.
        return ["fetch_queues.py"] + (["suspicious.py"] if "`avg" in target_query else [])
    return sorted({script for name, script in WRITERS.items() if name in target_query})


def fmt(when):
    return when.strftime("%Y-%m-%d %H:%M:%S")


@dataclass
class Data:
    """What build() wrote, and where: the demo values the queries are expanded with."""
    config_path: object
    influx: Influx
    mysql: MySQLStore
    sim: Simulator
    midnight: dt.datetime
    start: dt.datetime            # first 10m slot
    end: dt.datetime              # just after the last slot
    queue: str = ""               # the queue whose running jobs collapse after midnight
    site: str = ""
    cloud: str = ""
    label: str = ""
    datadisk: str = ""
    datadisk_cloud: str = ""
    problems: dict = field(default_factory=dict)   # script -> why it did not run cleanly

    def scripts_failed(self, scripts):
        return [f"{s}: {self.problems[s]}" for s in scripts if s in self.problems]


def _run(data, name, *args):
    try:
        module = importlib.import_module(name.removesuffix(".py"))
    except ModuleNotFoundError:
        data.problems.setdefault(name, f"{name} is missing from the repository")
        return
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = module.main(["--config", str(data.config_path), *args])
    if code != 0:
        data.problems.setdefault(name, f"{name} {' '.join(args)} exited {code}: "
                                       f"{err.getvalue().strip()[-400:]}")


def biggest_known_queue(sim, slot):
    """The PanDA queue with the most running jobs that CRIC knows (so it has a site)."""
    known = {sim.panda_resource(n) for n in sim.cric_queue_names()}
    running = {}
    for queue, labels in sim.expected_stats(slot).items():
        if queue in known:
            running[queue] = sum(s.get("running", 0) for rs in labels.values()
                                 for s in rs.values())
    return max(running, key=lambda q: (running[q], q))


def build(influx_server, mariadb_server, directory, database, before_midnight=2,
          suspicious_slots=3, rollups=True, series=2000, seed=11):
    """Fill InfluxDB and MariaDB through the real scripts, as cron would, over the slots from
    `before_midnight` hours before a UTC midnight to 50 minutes after it: so that the
    1h and 1d rollups both have buckets. The biggest queue's running jobs collapse 20 minutes
    after midnight, so suspicious.py (run on the last slots) flags it. A few slots and
    series keep it fast; suspicious.py's averages look back 24 h whatever it is given."""
    sim = Simulator(seed=seed, series=series)
    sim.start()
    urls = config_urls(sim.url)
    config_path = write_config(
        directory / "config.cfg", influx_server.url, mariadb_server.port, database, sim.url,
        directory / "data",
        extra=f"\n[credentials_monit_grafana]\ntoken = demo\nurl = {urls['monit_url']}\n")
    from qmonit.core import config as config_module
    config = config_module.load(str(config_path), str(ROOT / "fetch_queues.py"))
    # The last midnight with every run below behind the clock (the last, downsample.py --average
    # 1d, at 01:16): scripts distrust times after the clock, and at 00:30 the data would be.
    midnight = (CLOCK - dt.timedelta(minutes=80)).replace(hour=0, minute=0, second=0,
                                                          microsecond=0)
    slots = [midnight - before_midnight * HOUR + i * SLOT
             for i in range(before_midnight * 6 + 6)]
    data = Data(config_path, Influx.from_config(config), MySQLStore.from_config(config), sim,
                midnight, slots[0], slots[-1] + SLOT)
    data.queue = biggest_known_queue(sim, slots[0])
    sim.add_anomaly(data.queue, "collapse", midnight + 2 * SLOT)

    for slot in slots:
        sim.set_time(slot)
        _run(data, "fetch_queues.py", "--timestamp", fmt(slot + dt.timedelta(seconds=30)))
    if rollups:
        # The hourly rollup at :15, then the daily one (its bucket: the day before midnight).
        _run(data, "downsample.py", "--average", "1h", "--timestamp",
             fmt(slots[-1] + dt.timedelta(minutes=25)))
        _run(data, "downsample.py", "--average", "1d", "--timestamp",
             fmt(slots[-1] + dt.timedelta(minutes=26)))
    for hour in slots[::6]:
        sim.set_time(hour)
        _run(data, "datadisk.py", "--timestamp", fmt(hour + dt.timedelta(minutes=5)))
    # An operator's silence (of a site that has no flag), for the silences table.
    _run(data, "suspicious.py", "--timestamp", fmt(slots[0]), "--silence", "SILENCED-SITE",
         "--until", fmt(slots[-1] + 2 * HOUR), "--reason", "dashboard test")
    for slot in slots[-suspicious_slots:]:
        sim.set_time(slot)
        _run(data, "suspicious.py", "--timestamp", fmt(slot + dt.timedelta(seconds=90)))
    # setup_logging left its handler on our captured stderr.
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_qmonit", False):
            root.removeHandler(handler)

    if "fetch_queues.py" in data.problems:
        return data                   # every query test fails with its message
    [series_] = data.influx.query(
        f"SELECT last(\"jobs\") FROM {schema.JOBS.qualified} WHERE "
        f"{quote_ident('panda_queue')} = {quote_string(data.queue)} GROUP BY "
        f"{quote_ident('atlas_site')}, {quote_ident('cloud')}, {quote_ident('prod_source')}")
    data.site, data.cloud = series_[0]["tags"]["atlas_site"], series_[0]["tags"]["cloud"]
    data.label = sorted(s["tags"]["prod_source"] for s in series_)[0]
    if "datadisk.py" not in data.problems:
        [disks] = data.influx.query(f"SELECT last(\"imbalance\") FROM "
                                    f"{schema.DATADISKS.qualified} GROUP BY \"datadisk\", "
                                    "\"cloud\"")
        if disks:
            data.datadisk = disks[0]["tags"]["datadisk"]
            data.datadisk_cloud = disks[0]["tags"]["cloud"]
    return data


@pytest.fixture(scope="module")
def data(influx_server, mariadb_server, tmp_path_factory):
    built = build(influx_server, mariadb_server, tmp_path_factory.mktemp("dashboards"),
                  "qmonit_dashboards")
    yield built
    built.sim.stop()
    built.mysql.close()


# --- views: the demo values of the variables -----------------------------------------------

VIEWS = ("defaults", "picked")
BAND_WIDTH = {schema.RP_10M: None, schema.RP_1H: dt.timedelta(days=3),
              schema.RP_1D: dt.timedelta(days=40)}


def picks(data, dashboard):
    """Concrete picks that exist in the data, per dashboard."""
    if dashboard is defs.JOBS_DASHBOARD:
        return {"cloud": [data.cloud], "atlas_site": [data.site], "panda_queue": [data.queue],
                "prod_source": [data.label], "job_status": ["running", "activated"],
                "group_by": "panda_queue"}
    if dashboard is defs.SUSPICIOUS_DASHBOARD:
        return {"cloud": [data.cloud], "level": ["queue"], "panda_queue": data.queue,
                "job_status": "running"}
    if not data.datadisk:
        pytest.fail("no datadisk in \"1h\".\"datadisks\": datadisk.py wrote nothing")
    return {"cloud": [data.datadisk_cloud], "datadisk": [data.datadisk]}


def context(data, dashboard, view, rp=schema.RP_10M, values=None):
    """The view's time range: the slots written, or wider so that auto picks rollup rp."""
    width = BAND_WIDTH[rp]
    start = data.start if width is None else data.end - width
    chosen = dict(picks(data, dashboard)) if view == "picked" else {}
    chosen.update(values or {})
    return defs.Context(start, data.end, chosen)


def run(data, query, datasource=defs.INFLUXDB):
    if datasource == defs.INFLUXDB:
        [series] = data.influx.query(query, epoch="ms")
        return series
    return data.mysql.select(query)


def need(data, scripts):
    failed = data.scripts_failed(scripts)
    if failed:
        pytest.fail("the data this query reads was not written: " + "; ".join(failed))


def values_of(series, column):
    i = series["columns"].index(column)
    return [row[i] for row in series["values"]]


# --- the generated files --------------------------------------------------------------------

def test_committed_dashboards_and_provisioning_match_the_definitions():
    files = generate.outputs()
    assert {"jobs.json", "suspicious.json", "daod.json"} <= set(files)
    changed = generate.differences(files)
    assert not changed, f"out of date: {changed}; run `make dashboards` and commit the result"
    assert generate.main(["--check"]) == 0


def test_check_notices_an_edited_dashboard(tmp_path):
    files = generate.outputs()
    generate.write(files, tmp_path)
    assert generate.differences(files, tmp_path) == []
    path = tmp_path / "jobs.json"
    path.write_text(path.read_text().replace("Jobs by status", "Jobs by state"))
    (tmp_path / generate.PROVIDER_FILE).unlink()
    assert sorted(generate.differences(files, tmp_path)) == sorted(
        ["jobs.json", generate.PROVIDER_FILE])


def test_provisioning_follows_the_config(tmp_path, capsys):
    config = tmp_path / "config.cfg"
    config.write_text("[credentials]\nusername = grafana_reader\npassword = s3cret\n"
                      "database = monit_x\n[influxdb]\nurl = https://influx.example:8443\n"
                      "verify_ssl = false\n[mysql]\nhost = db.example\nport = 3307\n")
    out = tmp_path / "provisioning"
    assert generate.main(["--config", str(config), "--out", str(out)]) == 0
    text = (out / "datasources" / "qmonit.yaml").read_text()
    for expected in ('url: "https://influx.example:8443"', 'dbName: "monit_x"',
                     'user: "grafana_reader"', 'password: "s3cret"', "tlsSkipVerify: true",
                     'url: "db.example:3307"', 'database: "monit_x"',
                     f'uid: "{defs.DATASOURCE_UIDS[defs.INFLUXDB]}"',
                     f'uid: "{defs.DATASOURCE_UIDS[defs.MYSQL]}"'):
        assert expected in text
    assert stat.S_IMODE(os.stat(out / "datasources" / "qmonit.yaml").st_mode) == 0o600
    provider = (out / "dashboards" / "qmonit.yaml").read_text()
    assert f'path: "{generate.HERE}"' in provider
    # The committed copy holds config.cfg.example's defaults and no password.
    committed = (generate.HERE / generate.DATASOURCES_FILE).read_text()
    assert 'url: "http://localhost:8086"' in committed and 'url: "localhost:3306"' in committed
    assert "password" not in committed


def provisioned(text, source_type):
    """{key: value} of one data source's lines in the generated YAML (values are JSON)."""
    block = text.split("- name: ")[1 if source_type == "influxdb" else 2]
    assert f'type: "{source_type}"' in block
    return {k.strip(): json.loads(v) for k, v in (line.split(": ", 1)
                                                  for line in block.splitlines()[1:]
                                                  if ": " in line)}


def test_provisioning_carries_the_tls_files_inline(tmp_path, capsys):
    ca, other = trustme.CA(), trustme.CA()
    client = ca.issue_cert("qmonit-reader")
    ca.cert_pem.write_to_path(tmp_path / "ca.pem")
    client.cert_chain_pems[0].write_to_path(tmp_path / "client.pem")
    client.private_key_pem.write_to_path(tmp_path / "client.key")
    # A grid-style CA directory: each CA once as a file, again as its hash link; not PEM too.
    grid = tmp_path / "certificates"
    grid.mkdir()
    for name, authority in (("a.pem", ca), ("b.pem", other)):
        authority.cert_pem.write_to_path(grid / name)
    (grid / "1a2b3c4d.0").symlink_to(grid / "a.pem")
    (grid / "README").write_text("hashed CA certificates\n")
    (grid / "1a2b3c4d.r0").write_text("-----BEGIN X509 CRL-----\nMIIB\n-----END X509 CRL-----\n")
    config = tmp_path / "config.cfg"
    config.write_text(f"[influxdb]\nurl = https://influx.example:8443\nca_path = {tmp_path}/ca.pem"
                      f"\ncert = {tmp_path}/client.pem\nkey = {tmp_path}/client.key\n"
                      f"[mysql]\nssl_ca = {grid}\n")
    out = tmp_path / "provisioning"
    assert generate.main(["--config", str(config), "--out", str(out)]) == 0
    text = (out / "datasources" / "qmonit.yaml").read_text()
    influx, mysql = provisioned(text, "influxdb"), provisioned(text, "mysql")
    assert influx["tlsAuthWithCACert"] is True and influx["tlsAuth"] is True
    assert influx["tlsSkipVerify"] is False
    assert influx["tlsCACert"] == ca.cert_pem.bytes().decode()
    assert influx["tlsClientCert"] == client.cert_chain_pems[0].bytes().decode()
    assert influx["tlsClientKey"] == client.private_key_pem.bytes().decode()
    assert mysql["tlsAuthWithCACert"] is True and "tlsAuth" not in mysql
    assert mysql["tlsCACert"] == ca.cert_pem.bytes().decode() + other.cert_pem.bytes().decode()
    assert stat.S_IMODE(os.stat(out / "datasources" / "qmonit.yaml").st_mode) == 0o600
    # Without TLS keys the data sources carry none of it (the committed copy).
    committed = (generate.HERE / generate.DATASOURCES_FILE).read_text()
    assert "tlsAuth" not in committed and "tlsCACert" not in committed


@pytest.mark.parametrize("keys, where", [
    ("[mysql]\nssl_ca = {tmp}/missing.pem\n", "[mysql] ssl_ca"),
    ("[influxdb]\nca_path = {tmp}/empty.pem\n", "[influxdb] ca_path"),
    ("[influxdb]\nkey = {tmp}/empty.pem\n", "[influxdb] key"),
    ("[influxdb]\ncert = {tmp}/cert.pem\nkey = {tmp}/cert.pem\n", "[influxdb] key"),
])
def test_provisioning_with_a_bad_tls_file_exits_2(tmp_path, capsys, keys, where):
    (tmp_path / "empty.pem").write_text("")
    trustme.CA().cert_pem.write_to_path(tmp_path / "cert.pem")      # no key in it
    config = tmp_path / "config.cfg"
    config.write_text(keys.format(tmp=tmp_path))
    out = tmp_path / "provisioning"
    assert generate.main(["--config", str(config), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert str(config) in err and where in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_bad_generate_usage_exits_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        generate.main(["--config", str(tmp_path / "c.cfg")])
    assert e.value.code == 2
    assert "--config and --out go together" in capsys.readouterr().err
    assert generate.main(["--config", str(tmp_path / "nope.cfg"), "--out",
                          str(tmp_path / "o")]) == 2
    assert "nope.cfg" in capsys.readouterr().err


@pytest.mark.parametrize("dashboard", defs.DASHBOARDS, ids=lambda d: d.uid)
def test_dashboard_json_is_what_grafana_needs(dashboard):
    model = json.loads((generate.HERE / generate.dashboard_file(dashboard)).read_text())
    assert model["uid"] == dashboard.uid and model["annotations"] == {"list": []}
    panels = model["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)) and 0 not in ids
    variables = model["templating"]["list"]
    names = {v["name"] for v in variables}
    assert names == {v.name for v in dashboard.variables}
    assert [v["id"] for v in variables] == [v["name"] for v in variables]   # Grafana keys by id
    queries = 0
    for p in panels:
        for target in p.get("targets", []):
            queries += 1
            assert target["datasource"]["uid"] in defs.DATASOURCE_UIDS.values()
            assert target["datasource"] == p["datasource"]
            assert target.get("query") or target.get("rawSql")
    assert queries == sum(len(p.targets) for p in dashboard.panels())
    if dashboard is defs.JOBS_DASHBOARD:
        assert {"cloud", "atlas_site", "panda_queue", "prod_source", "resource", "job_status",
                "rp"} <= names
        for p in dashboard.panels():
            if p.key.startswith(("jobs_", "cores_")):
                assert [t.rp for t in p.targets] == list(schema.RETENTION_POLICIES)


# --- every query on real data ---------------------------------------------------------------

def test_every_script_the_dashboards_read_ran_cleanly(data):
    missing = [s for s in SCRIPTS if not (ROOT / s).is_file()]
    assert not missing, f"scripts the dashboards read from are missing: {missing}"
    assert not data.problems, "; ".join(data.problems.values())


VARIABLE_CASES = [(d, v, view) for d in defs.DASHBOARDS for v in d.variables if v.query
                  for view in VIEWS]


@pytest.mark.parametrize("dashboard,variable,view", VARIABLE_CASES,
                         ids=[f"{d.uid}-{v.name}-{view}" for d, v, view in VARIABLE_CASES])
def test_variable_queries_list_values(data, dashboard, variable, view):
    need(data, writers(variable.query))
    query = defs.expand(variable.query, dashboard, context(data, dashboard, view))
    assert not re.search(r"\$\w|\$\{|\[\[", query), query
    series = run(data, query)
    assert series and series[0]["values"], query


QUERY_CASES = [(d, p, ref, t, view) for d in defs.DASHBOARDS
               for p, ref, t in defs.queries(d) for view in VIEWS]


@pytest.mark.parametrize("dashboard,panel,ref,target,view", QUERY_CASES,
                         ids=[f"{d.uid}-{p.key}-{ref}-{view}" for d, p, ref, t, view
                              in QUERY_CASES])
def test_panel_queries_return_data(data, dashboard, panel, ref, target, view):
    need(data, writers(target.query, target.datasource))
    ctx = context(data, dashboard, view, target.rp or schema.RP_10M)
    query = defs.expand(target.query, dashboard, ctx, target.datasource, panel.min_interval)
    assert not re.search(r"\$\w|\$\{|\[\[", query), query
    result = run(data, query, target.datasource)
    assert result, f"no data for {panel.title} ({ref}): {query}"
    if target.datasource == defs.INFLUXDB:
        assert any(v is not None for s in result for row in s["values"] for v in row[1:])


JOBS_PANELS = [p for p in defs.JOBS_DASHBOARD.panels() if p.key.startswith(("jobs_", "cores_"))]


@pytest.mark.parametrize("rp", schema.RETENTION_POLICIES)
def test_auto_rollup_reads_exactly_one_policy(data, rp):
    """With rp = auto the time range decides: only the target of that rollup returns data."""
    need(data, ["fetch_queues.py", "downsample.py"])
    ctx = context(data, defs.JOBS_DASHBOARD, "defaults", rp)
    assert defs.active_rollup(ctx) == rp
    for panel in JOBS_PANELS:
        answered = [t.rp for t in panel.targets if run(data, defs.expand(
            t.query, defs.JOBS_DASHBOARD, ctx, min_interval=panel.min_interval))]
        assert answered == [rp], panel.title


@pytest.mark.parametrize("rp", schema.RETENTION_POLICIES)
def test_choosing_a_rollup_overrides_the_range(data, rp):
    need(data, ["fetch_queues.py", "downsample.py"])
    ctx = defs.Context(data.end - dt.timedelta(days=3), data.end, {"rp": rp})
    assert defs.active_rollup(ctx) == rp
    panel = defs.JOBS_DASHBOARD.panel("jobs_by_status")
    answered = [t.rp for t in panel.targets
                if run(data, defs.expand(t.query, defs.JOBS_DASHBOARD, ctx))]
    assert answered == [rp]


def _series(data, panel_key, ctx, rp=schema.RP_10M):
    panel = defs.JOBS_DASHBOARD.panel(panel_key)
    [target] = [t for t in panel.targets if t.rp == rp]
    series = run(data, defs.expand(target.query, defs.JOBS_DASHBOARD, ctx,
                                   min_interval=panel.min_interval))
    return {tuple(s["tags"].values())[0]: dict(s["values"]) for s in series}


def test_jobs_by_status_adds_up_what_panda_reported(data):
    need(data, ["fetch_queues.py"])
    ctx = defs.Context(data.start, data.end)
    by_status = _series(data, "jobs_by_status", ctx)
    last = data.end - SLOT
    stats = data.sim.expected_stats(last)
    for status in ("running", "activated", "assigned"):
        want = sum(s.get(status, 0) for labels in stats.values() for rs in labels.values()
                   for s in rs.values())
        assert by_status[status][int(last.timestamp() * 1000)] == pytest.approx(want)


def test_cores_are_jobs_times_resource_factor(data):
    need(data, ["fetch_queues.py"])
    ctx = defs.Context(data.start, data.end, {"cloud": [data.cloud]})
    cores = _series(data, "cores_per_group", ctx)[data.cloud]
    [raw] = data.influx.query(
        f'SELECT "jobs", "resource_factor" FROM {schema.JOBS.qualified} WHERE '
        f'"cloud" = {quote_string(data.cloud)} AND time >= {int(data.start.timestamp())}s',
        epoch="ms")
    want = {}
    for when, jobs, factor in raw[0]["values"]:
        want[when] = want.get(when, 0) + jobs * factor
    assert cores == pytest.approx(want)


def test_hs06_used_is_running_cores_times_corepower_per_federation(data):
    need(data, ["fetch_queues.py"])
    ctx = defs.Context(data.start, data.end, {"cloud": [data.cloud]})
    panel = defs.JOBS_DASHBOARD.panel("hs06_used_vs_pledged")
    [used, pledged] = [t for t in panel.targets if t.rp == schema.RP_10M]
    got = {}
    for s in run(data, defs.expand(used.query, defs.JOBS_DASHBOARD, ctx,
                                   min_interval=panel.min_interval)):
        got[s["tags"]["federation"]] = dict(s["values"])
    [raw] = data.influx.query(
        f'SELECT "jobs", "resource_factor", "corepower" FROM {schema.JOBS.qualified} WHERE '
        f'"cloud" = {quote_string(data.cloud)} AND "job_status" = \'running\' AND '
        f'"federation" != \'unknown\' AND time >= {int(data.start.timestamp())}s '
        'GROUP BY "federation"', epoch="ms")
    want = {}
    for s in raw:
        per_slot = want.setdefault(s["tags"]["federation"], {})
        for when, jobs, factor, corepower in s["values"]:
            per_slot[when] = per_slot.get(when, 0) + jobs * factor * corepower
    assert got and set(got) == set(want)
    for federation, values in want.items():
        assert got[federation] == pytest.approx(values)
    pledges = run(data, defs.expand(pledged.query, defs.JOBS_DASHBOARD, ctx,
                                    min_interval=panel.min_interval))
    assert {s["tags"]["federation"] for s in pledges} == set(want)


def test_hourly_rollup_shows_the_mean_of_the_10m_totals(data):
    need(data, ["fetch_queues.py", "downsample.py"])
    ctx = defs.Context(data.start, data.end, {"rp": schema.RP_1H})
    hourly = _series(data, "jobs_by_status", ctx, schema.RP_1H)["running"]
    ten = _series(data, "jobs_by_status", defs.Context(data.start, data.end),
                  schema.RP_10M)["running"]
    hour = int(data.start.timestamp() * 1000)
    in_hour = [v for t, v in ten.items() if hour <= t < hour + 3600_000]
    assert len(in_hour) == 6
    assert hourly[hour] == pytest.approx(sum(in_hour) / 6)


def test_filters_narrow_the_panels(data):
    need(data, ["fetch_queues.py"])
    ctx = context(data, defs.JOBS_DASHBOARD, "picked")
    per_queue = _series(data, "jobs_per_group", ctx)
    assert list(per_queue) == [data.queue]
    by_status = _series(data, "jobs_by_status", ctx)
    assert set(by_status) == {"running", "activated"}


def test_flag_table_lists_the_collapsed_queue(data):
    need(data, ["suspicious.py"])
    panel = defs.SUSPICIOUS_DASHBOARD.panel("flags")
    query = defs.expand(panel.targets[0].query, defs.SUSPICIOUS_DASHBOARD,
                        defs.Context(data.start, data.end))
    rows = [{**s["tags"], **dict(zip(s["columns"], s["values"][0]))} for s in run(data, query)]
    assert set(panel.columns) - {"Time"} <= set(rows[0]) | {"time"}
    drops = [r for r in rows if r["panda_queue"] == data.queue and r["job_status"] == "running"]
    assert drops and all(r["direction"] == "drop" and r["level"] == "queue" for r in drops)
    # Only the last run's flags: every row is at the last slot.
    assert {r["time"] for r in rows} == {int((data.end - SLOT).timestamp() * 1000)}


def test_averages_panel_shows_the_collapse(data):
    need(data, ["suspicious.py"])
    panel = defs.SUSPICIOUS_DASHBOARD.panel("averages")
    ctx = defs.Context(data.start, data.end, {"panda_queue": data.queue,
                                              "job_status": "running"})
    [series] = run(data, defs.expand(panel.targets[0].query, defs.SUSPICIOUS_DASHBOARD, ctx,
                                     min_interval=panel.min_interval))
    last = dict(zip(series["columns"], series["values"][-1]))
    assert last["current"] < 0.5 * last["avg24h"]


def test_preview_panels_exist():
    for dashboard in defs.DASHBOARDS:
        dashboard.panel(defs.MAIN_PANELS[dashboard.uid])


def test_expand_escapes_like_grafana():
    d = defs.JOBS_DASHBOARD
    t0 = dt.datetime(2026, 1, 1, tzinfo=UTC)
    ctx = defs.Context(t0, t0 + HOUR, {"cloud": ["A.B", "C/D"], "atlas_site": "X+Y",
                                       "panda_queue": defs.ALL})
    assert defs.expand('/^$cloud$/ /^$atlas_site$/ /^$panda_queue$/', d, ctx) == \
        r"/^(A\.B|C\/D)$/ /^X\+Y$/ /^.*$/"
    assert defs.expand("'^${cloud:regex}$' '$rp' $group_by", d, ctx, defs.MYSQL) == \
        r"'^(A\.B|C\/D)$' 'auto' cloud"
    assert defs.expand("$cloud", d, ctx, defs.MYSQL) == "'A.B','C/D'"
    assert defs.expand("$timeFilter ${__from} $__interval", d, ctx) == \
        f"time >= {int(t0.timestamp()) * 1000}ms and time <= " \
        f"{int(t0.timestamp()) * 1000 + 3600_000}ms {int(t0.timestamp()) * 1000} 5s"
    assert defs.expand("$__interval", d, ctx, min_interval="10m") == "10m"
    assert defs.expand("$tag_cloud", d, ctx) == "$tag_cloud"    # not a variable: left alone


def test_flags_hide_suppressed_by_default_link_to_bigpanda_and_silences_show(data):
    need(data, ["suspicious.py"])
    board = defs.SUSPICIOUS_DASHBOARD
    panel = board.panel("flags")
    shown = defs.expand(panel.targets[0].query, board, defs.Context(data.start, data.end))
    everything = defs.expand(panel.targets[0].query, board,
                             defs.Context(data.start, data.end, {"suppressed": defs.ALL}))
    assert '"suppressed" =~ /^(no)$/' in shown or '"suppressed" =~ /^no$/' in shown
    rows = [dict(zip(s["columns"], s["values"][0]), **s["tags"]) for s in run(data, shown)]
    assert rows and {r["suppressed"] for r in rows} == {"no"}
    assert all(r["slots"] >= 1 for r in rows)
    assert len(run(data, everything)) >= len(rows)
    model = json.loads(generate.dashboard_json(board))
    [flags] = [p for p in model["panels"] if p.get("title") == panel.title]
    links = {o["matcher"]["options"]: o["properties"][0]["value"]
             for o in flags["fieldConfig"]["overrides"]
             if o["properties"][0]["id"] == "links"}
    assert links[schema.PANDA_QUEUE][0]["url"] == (
        "${bigpanda}/jobs/?computingsite=${__data.fields.panda_queue}"
        "&jobstatus=${__data.fields.job_status}&hours=24")
    silences = board.panel("silences")
    query = defs.expand(silences.targets[0].query, board, defs.Context(data.start, data.end),
                        defs.MYSQL)
    assert [r[1] for r in run(data, query, defs.MYSQL)] == ["SILENCED-SITE"]
    later = defs.Context(data.end + 3 * HOUR, data.end + 4 * HOUR)
    assert not run(data, defs.expand(silences.targets[0].query, board, later, defs.MYSQL),
               defs.MYSQL)
