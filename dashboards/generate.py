#!/usr/bin/env python3
"""Write QMonit's Grafana dashboards (dashboards/*.json) and provisioning files
(dashboards/provisioning/) from dashboards/definitions.py, with the Grafana Foundation SDK.

Without options it rewrites the committed files; their data sources carry the defaults of
config.cfg.example. With --config PATH --out DIR it writes provisioning for a real Grafana
instead: the InfluxDB and MySQL data sources from PATH's [influxdb] url/verify_ssl/ca_path/
cert/key, [credentials] username/password/database and [mysql] host/port/ssl_ca/ssl_cert/
ssl_key (the files' PEM text goes inline, as Grafana takes it), and a dashboards provider
that reads the JSON from --dashboards-path. --check only compares: exit 1 if a committed file
differs from what the definitions give.
"""
import argparse
import json
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from grafana_foundation_sdk.builders import barchart, common, table, timeseries  # noqa: E402
from grafana_foundation_sdk.builders import dashboard as sdk  # noqa: E402
from grafana_foundation_sdk.cog import builder as cogbuilder  # noqa: E402
from grafana_foundation_sdk.cog import variants as cogvariants  # noqa: E402
from grafana_foundation_sdk.cog.encoder import JSONEncoder  # noqa: E402
from grafana_foundation_sdk.models import common as common_models  # noqa: E402
from grafana_foundation_sdk.models import dashboard as models  # noqa: E402

from dashboards import definitions as defs  # noqa: E402
from qmonit.core import config as config_module  # noqa: E402
from qmonit.core import tls  # noqa: E402
from qmonit.core.errors import ConfigError, QMonitError  # noqa: E402
from qmonit.sinks import mysqlstore  # noqa: E402

EXAMPLE_CONFIG = ROOT / "config.cfg.example"
PROVISIONING = "provisioning"
DATASOURCES_FILE = f"{PROVISIONING}/datasources/qmonit.yaml"
PROVIDER_FILE = f"{PROVISIONING}/dashboards/qmonit.yaml"
DEFAULT_DASHBOARDS_PATH = "/var/lib/grafana/dashboards/qmonit"
FOLDER = "QMonit"


# --- queries: this SDK build has no InfluxDB or MySQL query types, so two small ones ----------

class _Query(cogvariants.Dataquery):
    def __init__(self, payload):
        self.payload = payload

    def to_json(self):
        return self.payload


class Query(cogbuilder.Builder[_Query]):
    """A raw InfluxQL or SQL target in the JSON shape Grafana's own editors save."""

    def __init__(self, target, ref):
        datasource = datasource_ref(target.datasource).to_json()
        if target.datasource == defs.INFLUXDB:
            payload = {"refId": ref, "datasource": datasource, "query": target.query,
                       "rawQuery": True, "resultFormat": target.format}
            if target.alias:
                payload["alias"] = target.alias
        else:
            payload = {"refId": ref, "datasource": datasource, "rawSql": target.query,
                       "rawQuery": True, "editorMode": "code", "format": target.format}
        self._query = _Query(payload)

    def build(self):
        return self._query


def datasource_ref(kind):
    return models.DataSourceRef(type_val=kind, uid=defs.DATASOURCE_UIDS[kind])


# --- variables -----------------------------------------------------------------------------

def _option(variable, value):
    if value == defs.ALL:
        text, value = "All", defs.ALL
    elif isinstance(value, tuple):
        text = value = list(value)
    else:
        text = value
    if variable.multi and not isinstance(value, list):
        value, text = [value], [text]
    return models.VariableOption(selected=True, text=text, value=value)


def variable(v):
    if v.kind == "query":
        b = (sdk.QueryVariable(v.name).query(v.query).datasource(datasource_ref(defs.INFLUXDB))
             .refresh(models.VariableRefresh.ON_DASHBOARD_LOAD)
             .sort(models.VariableSort.ALPHABETICAL_ASC))
    else:
        options = [models.VariableOption(selected=o == v.default, text=o, value=o)
                   for o in v.values]
        b = sdk.CustomVariable(v.name).values(",".join(v.values)).options(options)
    # Grafana keys variables by id and keeps id == name; the SDK's default id is one shared
    # all-zero UUID.
    b = (b.id(v.name).label(v.label).multi(v.multi).include_all(v.include_all)
         .current(_option(v, v.default)))
    if v.include_all:
        b = b.all_value(v.all_value)
    if v.description:
        b = b.description(v.description)
    return b


# --- panels --------------------------------------------------------------------------------

def _legend():
    return (common.VizLegendOptions().display_mode(common_models.LegendDisplayMode.TABLE)
            .placement(common_models.LegendPlacement.BOTTOM).show_legend(True)
            .calcs(["lastNotNull", "max"]).sort_by("Last *").sort_desc(True))


def _tooltip():
    return (common.VizTooltipOptions().mode(common_models.TooltipDisplayMode.MULTI)
            .sort(common_models.SortOrder.DESCENDING))


def _transform(id_val, options):
    return models.DataTransformerConfig(id_val=id_val, options=options)


# One table however many series (one per tag group) the InfluxDB answer has.
_MERGE = models.DataTransformerConfig(id_val="merge", options={})


def _organize(columns):
    return _transform("organize", {"indexByName": {c: i for i, c in enumerate(columns)},
                                   "excludeByName": {}, "renameByName": {}})


def panel(p, panel_id):
    if p.kind == "timeseries":
        b = (timeseries.Panel().legend(_legend()).tooltip(_tooltip()).line_width(1)
             .fill_opacity(60 if p.stack else 10)
             .show_points(common_models.VisibilityMode.NEVER))
        if p.stack:
            b = (b.stacking(common.StackingConfig().mode(common_models.StackingMode.NORMAL))
                 .draw_style(common_models.GraphDrawStyle.BARS))
    elif p.kind == "table":
        b = table.Panel().show_header(True).cell_height(common_models.TableCellHeight.SM)
        if p.targets[0].datasource == defs.INFLUXDB:
            b = b.with_transformation(_MERGE)
        if p.sort_by:
            b = b.sort_by([common.TableSortByFieldState().display_name(p.sort_by).desc(True)])
        if p.columns:
            b = b.with_transformation(_organize(p.columns))
    elif p.kind == "barchart":
        b = (barchart.Panel().x_field(p.x_field)
             .orientation(common_models.VizOrientation.HORIZONTAL)
             .legend(common.VizLegendOptions().show_legend(True)
                     .display_mode(common_models.LegendDisplayMode.LIST)
                     .placement(common_models.LegendPlacement.BOTTOM))
             .tooltip(_tooltip()).show_value(common_models.VisibilityMode.NEVER)
             .fill_opacity(80))
        # Grafana sorts and cuts the rows: InfluxQL has no ORDER BY on a field.
        b = (b.with_transformation(_MERGE)
             .with_transformation(_transform("sortBy", {"fields": {}, "sort": [
                {"field": p.sort_by, "desc": True}]}))
             .with_transformation(_transform("limit", {"limitField": p.limit}))
             .with_transformation(_transform("filterFieldsByName", {
                 "include": {"names": list(p.columns)}})))
    else:
        raise ValueError(f"unknown panel kind {p.kind!r}")
    b = (b.id(panel_id).title(p.title).datasource(datasource_ref(p.targets[0].datasource))
         .span(p.width).height(p.height))
    if p.description:
        b = b.description(p.description)
    if p.unit:
        b = b.unit(p.unit)
    if p.min_interval:
        b = b.interval(p.min_interval)
    for name, unit in p.units:
        b = b.override_by_name(name, [models.DynamicConfigValue(id_val="unit", value=unit)])
    links = {}
    for name, title, url in p.links:
        links.setdefault(name, []).append({"title": title, "url": url, "targetBlank": True})
    for name, items in links.items():
        b = b.override_by_name(name, [models.DynamicConfigValue(id_val="links", value=items)])
    for i, target in enumerate(p.targets):
        b = b.with_target(Query(target, defs.ref_id(i)))
    return b


def build(d):
    """The SDK's dashboard model for one definitions.Dashboard."""
    b = (sdk.Dashboard(d.title).uid(d.uid).description(d.description).tags(list(d.tags))
         .time(d.time_from, "now").refresh(d.refresh).timezone("utc").editable()
         .tooltip(models.DashboardCursorSync.CROSSHAIR).annotations([])
         .timepicker(sdk.TimePicker().refresh_intervals(["1m", "5m", "10m", "30m", "1h"])))
    for v in d.variables:
        b = b.with_variable(variable(v))
    panel_id = 0
    for row in d.rows:
        panel_id += 1
        b = b.with_row(sdk.Row(row.title).id(panel_id))
        for p in row.panels:
            panel_id += 1
            b = b.with_panel(panel(p, panel_id))
    return b.build()


def dashboard_json(d):
    return JSONEncoder(sort_keys=True, indent=2).encode(build(d)) + "\n"


def dashboard_file(d):
    return d.uid.removeprefix("qmonit-") + ".json"


# --- provisioning --------------------------------------------------------------------------

def _yaml(value, indent=0):
    """YAML for nested dicts and lists of scalars; strings as JSON (valid YAML) scalars."""
    pad = " " * indent
    lines = []
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, (dict, list)) and item:
                lines.append(f"{pad}{key}:")
                lines.append(_yaml(item, indent + 2))
            else:
                lines.append(f"{pad}{key}: {_scalar(item)}")
    else:
        for item in value:
            body = _yaml(item, indent + 2).lstrip()
            lines.append(f"{pad}- {body}")
    return "\n".join(lines)


def _scalar(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, (dict, list)):
        return "{}" if isinstance(value, dict) else "[]"
    return json.dumps(str(value))


CERTIFICATE = "-----BEGIN CERTIFICATE-----"
PRIVATE_KEY = " PRIVATE KEY-----"


def _pem(config, section, key, path, marker=CERTIFICATE):
    """The PEM text Grafana takes inline for a file QMonit's config names, which must hold
    `marker`. A directory of hashed CA certificates (as /etc/grid-security/certificates)
    gives each certificate file in it once (not the hash links, CRLs or policy files)."""
    where = Path(path)
    files = ([where] if not where.is_dir() else
             sorted({f.resolve() for f in where.iterdir() if f.is_file()}))
    texts = []
    for f in files:
        try:
            text = f.read_text(encoding="ascii")
        except (OSError, UnicodeDecodeError) as e:
            if f == where:
                raise ConfigError(config.path, f"{path}: cannot be read as PEM text ({e})",
                                  section, key) from None
            continue
        if marker in text:
            texts.append(text.strip() + "\n")
    if not texts:
        what = "private key" if marker == PRIVATE_KEY else "certificate"
        raise ConfigError(config.path, f"{path}: no PEM {what} in it", section, key)
    return "".join(texts)


def _tls(config, section, keys, files):
    """(jsonData, secureJsonData) of a data source's TLS from the CA, cert and key files of
    [section] (their key names in `keys`), as QMonit's own clients checked and use them:
    Grafana verifies against the CA and presents the cert."""
    ca, cert, key = files
    ca_key, cert_key, key_key = keys
    json_data, secure = {}, {}
    if ca:
        json_data["tlsAuthWithCACert"] = True
        secure["tlsCACert"] = _pem(config, section, ca_key, ca)
    if cert:
        json_data["tlsAuth"] = True
        secure["tlsClientCert"] = _pem(config, section, cert_key, cert)
        # As QMonit's own clients: without a key, the cert file holds it (a proxy does).
        secure["tlsClientKey"] = _pem(config, section, key_key if key else cert_key,
                                      key or cert, PRIVATE_KEY)
    return json_data, secure


def datasources(config):
    """Grafana's provisioning of the two data sources, from QMonit's own config keys."""
    user = config.get("credentials", "username", "")
    password = config.get("credentials", "password", "")
    database = config.get("credentials", "database", "monit_jobs")
    influx_url = config.get("influxdb", "url", "http://localhost:8086")
    verify_ssl = config.get_bool("influxdb", "verify_ssl", True)
    mysql_host = config.get("mysql", "host", "localhost")
    mysql_port = config.get_int("mysql", "port", 3306)
    secure = {"password": password} if password else {}
    influx = {
        "name": defs.DATASOURCE_NAMES[defs.INFLUXDB], "uid": defs.DATASOURCE_UIDS[defs.INFLUXDB],
        "type": "influxdb", "access": "proxy", "url": influx_url, "user": user,
        "database": database,
        "jsonData": {"dbName": database, "httpMode": "POST", "timeInterval": "10m",
                     "tlsSkipVerify": not verify_ssl},
    }
    mysql = {
        "name": defs.DATASOURCE_NAMES[defs.MYSQL], "uid": defs.DATASOURCE_UIDS[defs.MYSQL],
        "type": "mysql", "url": f"{mysql_host}:{mysql_port}", "user": user,
        "database": database,
        "jsonData": {"database": database, "timeInterval": "10m"},
    }
    influx_tls = tls.settings(config, "influxdb")
    for source, section, keys, files in (
            (influx, "influxdb", ("ca_path", "cert", "key"),
             (influx_tls.ca_path, influx_tls.cert, influx_tls.key)),
            (mysql, "mysql", ("ssl_ca", "ssl_cert", "ssl_key"), mysqlstore.ssl_files(config))):
        json_data, secure_tls = _tls(config, section, keys, files)
        source["jsonData"].update(json_data)
        if secure or secure_tls:
            source["secureJsonData"] = {**secure, **secure_tls}
    header = ("# Generated by dashboards/generate.py from the [influxdb], [credentials] and "
              "[mysql] keys\n# of QMonit's config; do not edit, regenerate.\n")
    return header + _yaml({"apiVersion": 1, "datasources": [influx, mysql]}) + "\n"


def provider(dashboards_path):
    header = ("# Generated by dashboards/generate.py: loads the QMonit dashboards JSON from "
              "`path`.\n")
    return header + _yaml({"apiVersion": 1, "providers": [{
        "name": "QMonit", "orgId": 1, "folder": FOLDER, "type": "file",
        "disableDeletion": False, "allowUiUpdates": False, "updateIntervalSeconds": 60,
        "options": {"path": str(dashboards_path), "foldersFromFilesStructure": False},
    }]}) + "\n"


def load_config(path):
    return config_module.load(str(path), str(ROOT / "fetch_queues.py"))


def outputs(config_path=EXAMPLE_CONFIG, dashboards_path=DEFAULT_DASHBOARDS_PATH,
            with_dashboards=True):
    """{path relative to dashboards/: text} of everything this script writes."""
    files = {}
    if with_dashboards:
        for d in defs.DASHBOARDS:
            files[dashboard_file(d)] = dashboard_json(d)
    files[DATASOURCES_FILE] = datasources(load_config(config_path))
    files[PROVIDER_FILE] = provider(dashboards_path)
    return files


def differences(files, directory=HERE):
    """Relative paths whose file under directory is missing or differs from files."""
    changed = []
    for name, text in files.items():
        path = directory / name
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            changed.append(name)
    return changed


def write(files, directory, secret=False):
    for name, text in files.items():
        path = Path(directory) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(text, encoding="utf-8")
        if secret:
            os.chmod(tmp, 0o600)      # it holds the database password
        tmp.replace(path)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="generate.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", metavar="PATH",
                        help="take the data sources from this QMonit config (needs --out)")
    parser.add_argument("--out", metavar="DIR",
                        help="with --config: write datasources/ and dashboards/ provisioning "
                             "here (a Grafana provisioning directory)")
    parser.add_argument("--dashboards-path", metavar="DIR", default=None,
                        help="with --out: where Grafana reads the dashboard JSON (default: "
                             "this repository's dashboards/; the committed provider says "
                             f"{DEFAULT_DASHBOARDS_PATH})")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 if a committed file is out of date")
    args = parser.parse_args(argv)
    try:
        if args.config or args.out:
            if not (args.config and args.out) or args.check:
                parser.error("--config and --out go together, without --check")
        elif args.dashboards_path:
            parser.error("--dashboards-path needs --config and --out")
        if args.config:
            files = outputs(args.config, args.dashboards_path or HERE, with_dashboards=False)
            files = {name.removeprefix(PROVISIONING + "/"): text for name, text in files.items()}
            write(files, args.out, secret=True)
            for name in files:
                print(Path(args.out) / name)
            return 0
        files = outputs()
        if args.check:
            changed = differences(files)
            for name in changed:
                print(f"generate.py: dashboards/{name} is out of date; run `make dashboards`",
                      file=sys.stderr)
            return 1 if changed else 0
        write(files, HERE)
        return 0
    except QMonitError as e:
        print(f"generate.py: error: {e}", file=sys.stderr)
        return e.exit_code


if __name__ == "__main__":
    sys.exit(main())
