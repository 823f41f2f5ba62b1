"""Every panel, query and template variable of the three QMonit dashboards, and Grafana's
expansion of their variables.

The queries live here, not in the JSON: generate.py turns this model into dashboard JSON with
the Grafana Foundation SDK, while tests/test_dashboards.py and qmonit/dev/preview.py expand the very
same texts with `expand` and run them on real servers.

Choosing the rollup. InfluxDB 1.x cannot take a retention policy from the time range, and no
Grafana variable can compute one (an interval variable's "auto" yields any round interval, such
as 15m or 3h, not one of 10m/1h/1d). So each jobs panel has one target per rollup, and each
target carries a condition that InfluxQL folds to true or false before it reads anything:

    ('$rp' = '1h' OR ('$rp' = 'auto' AND ${__to} - ${__from} > 172800000
                                      AND ${__to} - ${__from} <= 2678400000))

With the `rp` variable on "auto", exactly one target returns data for any time range (10m up to
2 days, 1h up to 31 days, 1d beyond); picking 10m, 1h or 1d forces that rollup (for instance
1h for a short range older than the 10m policy's 7 days).
"""
import datetime as dt
import re
from dataclasses import dataclass, field

from qmonit.core import schema
from qmonit.core.influxql import quote_ident
from qmonit.sinks.mysqlstore import quote_ident as sql_ident

INFLUXDB, MYSQL = "influxdb", "mysql"
# Provisioned data sources carry these uids, so the dashboards find them in any Grafana.
DATASOURCE_UIDS = {INFLUXDB: "qmonit-influxdb", MYSQL: "qmonit-mysql"}
DATASOURCE_NAMES = {INFLUXDB: "QMonit InfluxDB", MYSQL: "QMonit MySQL"}
TIME_SERIES, TABLE = "time_series", "table"
ALL = "$__all"           # Grafana's value for "All"
ALL_VALUE = ".*"         # what "All" becomes in a regex match: no filter at all
AUTO = "auto"

# (retention policy, step of its buckets, widest auto range in seconds; None: no limit)
ROLLUPS = (
    (schema.RP_10M, "10m", 2 * 86400),
    (schema.RP_1H, "1h", 31 * 86400),
    (schema.RP_1D, "1d", None),
)
_RANGE = "${__to} - ${__from}"
# Flags are written at the 10-minute slot a minute or two after it starts; 11 minutes back from
# the end of the range holds the latest run's flags and (in the first minute) at most the one
# before it, which last() per series then shows once.
FLAG_WINDOW = "11m"
# datadisk.py writes hourly; 3 h back always holds each datadisk's latest point.
DATADISK_WINDOW = "3h"


@dataclass(frozen=True)
class Variable:
    name: str
    label: str
    query: str = ""                 # InfluxQL of a query variable
    values: tuple = ()              # the options of a custom variable
    multi: bool = True
    include_all: bool = True
    default: object = ALL           # ALL, a value, or a tuple of values
    description: str = ""

    @property
    def kind(self):
        return "query" if self.query else "custom"

    @property
    def all_value(self):
        return ALL_VALUE if self.include_all else None


@dataclass(frozen=True)
class Target:
    datasource: str
    query: str
    format: str = TIME_SERIES
    alias: str = ""
    rp: str = ""                    # the rollup a gated jobs target reads


@dataclass(frozen=True)
class Panel:
    key: str
    title: str
    kind: str                       # timeseries, table, barchart
    targets: tuple
    width: int = 12
    height: int = 9
    unit: str = ""
    description: str = ""
    min_interval: str = ""
    # Table and bar chart layout: column order, sort, row limit, the bar chart's x field.
    columns: tuple = ()
    sort_by: str = ""
    limit: int = 0
    x_field: str = ""
    stack: bool = False
    units: tuple = ()               # (field, unit) overrides


@dataclass(frozen=True)
class Row:
    title: str
    panels: tuple


@dataclass(frozen=True)
class Dashboard:
    uid: str
    title: str
    description: str
    variables: tuple
    rows: tuple
    time_from: str = "now-6h"
    refresh: str = "5m"
    tags: tuple = ("qmonit",)

    def panels(self):
        return [p for row in self.rows for p in row.panels]

    def panel(self, key):
        for p in self.panels():
            if p.key == key:
                return p
        raise KeyError(key)

    def variable(self, name):
        for v in self.variables:
            if v.name == name:
                return v
        raise KeyError(name)


def ref_id(index):
    return "ABCDEFGHIJKLMNOPQRSTUVWXYZ"[index]


# --- InfluxQL building blocks --------------------------------------------------------------

def match(tag, variable=None):
    """tag =~ /^$variable$/: Grafana regex-escapes multi-value picks, "All" is .*"""
    return f"{quote_ident(tag)} =~ /^${variable or tag}$/"


def tags(names):
    return ", ".join(quote_ident(n) for n in names)


def rollup_gate(rp, low, high):
    """True when the `rp` variable names this rollup, or is auto and the range fits it."""
    auto = [f"'$rp' = '{AUTO}'"]
    if low is not None:
        auto.append(f"{_RANGE} > {low * 1000}")
    if high is not None:
        auto.append(f"{_RANGE} <= {high * 1000}")
    return f"('$rp' = '{rp}' OR ({' AND '.join(auto)}))"


def _bands():
    low = None
    for rp, step, high in ROLLUPS:
        yield rp, step, low, high
        low = high


JOB_FILTER_TAGS = (schema.CLOUD, schema.ATLAS_SITE, schema.PANDA_QUEUE, schema.PROD_SOURCE,
                   schema.RESOURCE, schema.JOB_STATUS)
JOB_FILTERS = " AND ".join(match(t) for t in JOB_FILTER_TAGS)
_JOBS = {schema.RP_10M: schema.JOBS, schema.RP_1H: schema.JOBS_1H, schema.RP_1D: schema.JOBS_1D}


def jobs_query(rp, step, low, high, group, cores=False):
    """Jobs (or cores = jobs x resource_factor) summed over series per bucket of the rollup,
    then averaged to Grafana's $__interval. Summing first and averaging after keeps a total
    right at any interval: a plain sum over a wide interval would add up several slots."""
    source = _JOBS[rp].qualified
    where = f"$timeFilter AND {JOB_FILTERS} AND {rollup_gate(rp, low, high)}"
    if cores:
        value = "cores"
        raw = f'SELECT "jobs" * "resource_factor" AS "cores" FROM {source} WHERE {where}'
        level = (f'SELECT sum("cores") AS "cores" FROM ({raw}) WHERE $timeFilter '
                 f"GROUP BY time({step}), {group}")
    else:
        value = "jobs"
        level = (f'SELECT sum("jobs") AS "jobs" FROM {source} WHERE {where} '
                 f"GROUP BY time({step}), {group}")
    return (f'SELECT mean("{value}") AS "{value}" FROM ({level}) WHERE $timeFilter '
            f"GROUP BY time($__interval), {group} fill(none)")


def jobs_targets(group, cores=False, alias=""):
    return tuple(Target(INFLUXDB, jobs_query(rp, step, low, high, group, cores), alias=alias,
                        rp=rp)
                 for rp, step, low, high in _bands())


HS06_FILTERS = " AND ".join(match(t) for t in (schema.CLOUD, schema.ATLAS_SITE,
                                                schema.PANDA_QUEUE, schema.PROD_SOURCE,
                                                schema.RESOURCE))
_RUNNING = f"{quote_ident(schema.JOB_STATUS)} = 'running'"
_FEDERATION = quote_ident(schema.FEDERATION)
_KNOWN_FEDERATION = f"{_FEDERATION} != '{schema.UNKNOWN}'"


def hs06_used_query(rp, step, low, high):
    """HS06 in use per federation: running jobs x resource_factor (cores) x corepower (HS06
    per core), summed per bucket of the rollup, then averaged to $__interval."""
    where = (f"$timeFilter AND {_RUNNING} AND {_KNOWN_FEDERATION} AND {HS06_FILTERS} "
             f"AND {rollup_gate(rp, low, high)}")
    raw = (f'SELECT "jobs" * "resource_factor" * "corepower" AS "hs06" FROM '
           f"{_JOBS[rp].qualified} WHERE {where}")
    level = (f'SELECT sum("hs06") AS "used" FROM ({raw}) WHERE $timeFilter '
             f"GROUP BY time({step}), {_FEDERATION}")
    return (f'SELECT mean("used") AS "used" FROM ({level}) WHERE $timeFilter '
            f"GROUP BY time($__interval), {_FEDERATION} fill(none)")


def hs06_pledge_query(rp, step, low, high):
    """The federation's CPU pledge (HS06, HEPScore23 since 2024), which every jobs point of
    the federation carries."""
    where = (f"$timeFilter AND {_RUNNING} AND {_KNOWN_FEDERATION} AND {HS06_FILTERS} "
             f"AND {rollup_gate(rp, low, high)}")
    level = (f'SELECT max("federation_HS06_pledge") AS "pledged" FROM {_JOBS[rp].qualified} '
             f"WHERE {where} GROUP BY time({step}), {_FEDERATION}")
    return (f'SELECT mean("pledged") AS "pledged" FROM ({level}) WHERE $timeFilter '
            f"GROUP BY time($__interval), {_FEDERATION} fill(none)")


def hs06_targets():
    return tuple(Target(INFLUXDB, make(rp, step, low, high),
                        alias=f"$tag_{schema.FEDERATION} {what}", rp=rp)
                 for rp, step, low, high in _bands()
                 for make, what in ((hs06_used_query, "used"), (hs06_pledge_query, "pledged")))


# The latest slot per queue: CRIC's declared HS06 per core (corepower) beside the measured one
# (HS06_benchmark, the benchmark Elasticsearch; 10m only). measured / declared below 1: the
# queue's cores are slower than CRIC says, and its share of the pledge is overstated.
HS06_PER_CORE = (
    'SELECT "measured" / "declared" AS "ratio", "declared", "measured" FROM '
    '(SELECT mean("corepower") AS "declared", mean("HS06_benchmark") AS "measured" FROM '
    f"{schema.JOBS.qualified} WHERE time > ${{__to}}ms - {FLAG_WINDOW} AND time <= ${{__to}}ms "
    f"AND {_RUNNING} AND {HS06_FILTERS} "
    f"GROUP BY {tags((schema.PANDA_QUEUE, schema.ATLAS_SITE, schema.FEDERATION))}) "
    f"WHERE time > ${{__to}}ms - {FLAG_WINDOW} AND time <= ${{__to}}ms "
    f"GROUP BY {tags((schema.PANDA_QUEUE, schema.ATLAS_SITE, schema.FEDERATION))}")


# --- Jobs Monitoring -----------------------------------------------------------------------

_JOBS_TAG_VALUES = f"SHOW TAG VALUES FROM {schema.JOBS.qualified} WITH KEY = "

JOBS_VARIABLES = (
    Variable(schema.CLOUD, "Cloud", _JOBS_TAG_VALUES + quote_ident(schema.CLOUD)),
    Variable(schema.ATLAS_SITE, "Site", _JOBS_TAG_VALUES + quote_ident(schema.ATLAS_SITE)
             + f" WHERE {match(schema.CLOUD)}"),
    Variable(schema.PANDA_QUEUE, "Queue", _JOBS_TAG_VALUES + quote_ident(schema.PANDA_QUEUE)
             + f" WHERE {match(schema.CLOUD)} AND {match(schema.ATLAS_SITE)}"),
    Variable(schema.PROD_SOURCE, "Label", _JOBS_TAG_VALUES + quote_ident(schema.PROD_SOURCE)),
    Variable(schema.RESOURCE, "Resource type", _JOBS_TAG_VALUES + quote_ident(schema.RESOURCE)),
    Variable(schema.JOB_STATUS, "Status", values=schema.STATUSES),
    Variable("group_by", "Group by", values=(schema.CLOUD, schema.ATLAS_SITE, schema.PANDA_QUEUE),
             multi=False, include_all=False, default=schema.CLOUD,
             description="the tag the 'per' panels split by"),
    Variable("rp", "Rollup", values=(AUTO,) + tuple(r[0] for r in ROLLUPS), multi=False,
             include_all=False, default=AUTO,
             description="auto: 10m up to 2 days, 1h up to 31 days, 1d beyond"),
)

_STATUS = quote_ident(schema.JOB_STATUS)
_GROUP_BY = quote_ident("$group_by")

_SNAPSHOT_COLUMNS = (schema.PANDA_QUEUE, schema.PROD_SOURCE, schema.RESOURCE, schema.ATLAS_SITE,
                     schema.CLOUD)


def _regexp(column):
    """A MySQL REGEXP filter from a Grafana variable; "All" is .* (raw), picks are (a|b)."""
    return f"{sql_ident(column)} REGEXP '^${{{column}:regex}}$'"



def _sql_select(columns, where, order):
    """SELECT of (name, expression or None) pairs from the jobs table."""
    listed = ", ".join(sql_ident(name) if expr is None else f"{expr} AS {sql_ident(name)}"
                       for name, expr in columns)
    return (f"SELECT {listed} FROM {sql_ident(schema.MYSQL_JOBS_TABLE)} WHERE {where} "
            f"ORDER BY {sql_ident(order)} DESC LIMIT 100")


_SNAPSHOT = (
    [(c, None) for c in _SNAPSHOT_COLUMNS]
    + [("running_jobs", None),
       ("running_cores", f"{sql_ident('running_jobs')} * {sql_ident('resource_factor')}")]
    + [(schema.status_column(s), None) for s in ("activated", "assigned", "finished", "failed")]
    + [(schema.avg_column("avg24h", "running"), None), ("last_seen", None)])
SNAPSHOT_NAMES = tuple(name for name, _ in _SNAPSHOT)
SNAPSHOT_SQL = _sql_select(
    _SNAPSHOT, " AND ".join(_regexp(c) for c in (schema.CLOUD, schema.ATLAS_SITE,
                                                 schema.PANDA_QUEUE, schema.PROD_SOURCE,
                                                 schema.RESOURCE)),
    "running_cores")

_RUNS = schema.RUNS.qualified
RUN_DURATION = (f'SELECT max("duration_s") AS "duration_s" FROM {_RUNS} WHERE $timeFilter '
                f"GROUP BY time($__interval), {quote_ident(schema.SCRIPT)} fill(none)")
RUN_COUNTS = (f'SELECT count("duration_s") AS "runs" FROM {_RUNS} WHERE $timeFilter '
              f"GROUP BY time($__interval), {tags((schema.SCRIPT, schema.STATUS))} fill(none)")
LAST_RUNS = (f'SELECT last("duration_s") AS "duration_s", "points", "errors" FROM {_RUNS} '
             f"WHERE $timeFilter GROUP BY {tags((schema.SCRIPT, schema.STATUS))}")

JOBS_DASHBOARD = Dashboard(
    uid="qmonit-jobs",
    title="QMonit: Jobs Monitoring",
    description="PanDA jobs and cores per status, cloud, site and queue, from the 10m, 1h or 1d "
                "rollup by time range, and QMonit's own health.",
    variables=JOBS_VARIABLES,
    rows=(
        Row("Jobs", (
            Panel("jobs_by_status", "Jobs by status", "timeseries",
                  jobs_targets(_STATUS, alias=f"$tag_{schema.JOB_STATUS}"), min_interval="10m",
                  description="Jobs of the selected queues per status; final statuses count "
                              "the jobs that ended in each 10-minute window."),
            Panel("jobs_per_group", "Jobs per $group_by", "timeseries",
                  jobs_targets(_GROUP_BY), min_interval="10m"),
        )),
        Row("Cores (jobs x resource_factor)", (
            Panel("cores_by_status", "Cores by status", "timeseries",
                  jobs_targets(_STATUS, cores=True, alias=f"$tag_{schema.JOB_STATUS}"),
                  min_interval="10m"),
            Panel("cores_per_group", "Cores per $group_by", "timeseries",
                  jobs_targets(_GROUP_BY, cores=True), min_interval="10m"),
        )),
        Row("HS06: pledged, used, declared and measured", (
            Panel("hs06_used_vs_pledged", "HS06 used vs pledged per federation", "timeseries",
                  hs06_targets(), min_interval="10m",
                  description="Running cores x corepower (CRIC's HS06 per core) summed per "
                              "federation, against its CPU pledge for the WLCG pledge quarter "
                              "(HS06; HEPScore23 since 2024, numerically comparable)."),
            Panel("hs06_per_core", "Declared vs measured HS06 per core", "table",
                  (Target(INFLUXDB, HS06_PER_CORE, TABLE),), sort_by="ratio",
                  columns=(schema.PANDA_QUEUE, schema.ATLAS_SITE, schema.FEDERATION,
                           "declared", "measured", "ratio", "Time"),
                  description="Per queue with running jobs, latest slot: CRIC's corepower "
                              "(declared) and the mean fastBmk result of the last 7 days "
                              "(measured, empty without a benchmark). A ratio well below 1: "
                              "the cores are slower than declared."),
        )),
        Row("Now (MySQL snapshot)", (
            Panel("snapshot", "Queues now, by running cores", "table",
                  (Target(MYSQL, SNAPSHOT_SQL, TABLE),), width=24, sort_by="running_cores",
                  description="The MySQL jobs table: one row per queue, label and resource "
                              "type, as of the last fetch_queues.py run."),
        )),
        Row("QMonit health", (
            Panel("run_duration", "Run duration per script", "timeseries",
                  (Target(INFLUXDB, RUN_DURATION, alias=f"$tag_{schema.SCRIPT}"),), width=8,
                  unit="s", min_interval="10m"),
            Panel("run_counts", "Runs per script and status", "timeseries",
                  (Target(INFLUXDB, RUN_COUNTS,
                          alias=f"$tag_{schema.SCRIPT} $tag_{schema.STATUS}"),),
                  width=8, min_interval="10m", stack=True),
            Panel("last_runs", "Last run per script and status", "table",
                  (Target(INFLUXDB, LAST_RUNS, TABLE),), width=8,
                  columns=(schema.SCRIPT, schema.STATUS, "Time", "duration_s", "points",
                           "errors"),
                  description="A script whose last ok run is old, or whose last run is an "
                              "error, needs a look (see its cron mail)."),
        )),
    ),
)


# --- Suspicious sites ----------------------------------------------------------------------

_SUSPICIOUS = schema.SUSPICIOUS
_AVERAGE_FIELDS = ("current",) + schema.AVERAGE_WINDOWS

SUSPICIOUS_VARIABLES = (
    Variable(schema.CLOUD, "Cloud", _JOBS_TAG_VALUES + quote_ident(schema.CLOUD)),
    Variable(schema.LEVEL, "Level", values=("queue", "site")),
    Variable(schema.PANDA_QUEUE, "Queue",
             f"SHOW TAG VALUES FROM {schema.AVERAGES.qualified} WITH KEY = "
             f"{quote_ident(schema.PANDA_QUEUE)} WHERE {match(schema.CLOUD)}",
             multi=False, description="All: the sum over every queue"),
    Variable(schema.JOB_STATUS, "Status", values=schema.STATUSES, multi=False,
             include_all=False, default="running"),
)

FLAGS = (
    f'SELECT last("score") AS "score", "current", "baseline", "ratio" FROM '
    f"{_SUSPICIOUS.qualified} WHERE time > ${{__to}}ms - {FLAG_WINDOW} AND time <= ${{__to}}ms "
    f"AND {match(schema.CLOUD)} AND {match(schema.LEVEL)} GROUP BY {tags(_SUSPICIOUS.tags)}")
FLAG_COUNTS = (
    f'SELECT mean("flags") AS "flags" FROM (SELECT count("score") AS "flags" FROM '
    f"{_SUSPICIOUS.qualified} WHERE $timeFilter AND {match(schema.CLOUD)} AND "
    f"{match(schema.LEVEL)} GROUP BY time(10m), {tags((schema.LEVEL, schema.DIRECTION))}) "
    f"WHERE $timeFilter GROUP BY time($__interval), {tags((schema.LEVEL, schema.DIRECTION))} "
    "fill(none)")
AVERAGES = (
    "SELECT " + ", ".join(f'mean("{f}") AS "{f}"' for f in _AVERAGE_FIELDS)
    + " FROM (SELECT " + ", ".join(f'sum("{f}") AS "{f}"' for f in _AVERAGE_FIELDS)
    + f" FROM {schema.AVERAGES.qualified} WHERE $timeFilter AND {match(schema.PANDA_QUEUE)} "
    f"AND {quote_ident(schema.JOB_STATUS)} = '${schema.JOB_STATUS}' AND {match(schema.CLOUD)} "
    "GROUP BY time(10m)) WHERE $timeFilter GROUP BY time($__interval) fill(none)")
_AVERAGES_NOW = (
    [(c, None) for c in (schema.PANDA_QUEUE, schema.PROD_SOURCE, schema.RESOURCE,
                         schema.ATLAS_SITE)]
    + [(c, None) for s in schema.MYSQL_AVG_STATUSES
       for c in (schema.status_column(s), schema.avg_column("avg24h", s))]
    + [(schema.avg_column(w, "running"), None) for w in schema.AVERAGE_WINDOWS
       if w != "avg24h"])
AVERAGES_NAMES = tuple(name for name, _ in _AVERAGES_NOW)
AVERAGES_SQL = _sql_select(
    _AVERAGES_NOW, f"{_regexp(schema.PANDA_QUEUE)} AND {_regexp(schema.CLOUD)}",
    "running_jobs")

SUSPICIOUS_DASHBOARD = Dashboard(
    uid="qmonit-suspicious",
    title="QMonit: Suspicious sites",
    description="Queues and sites whose job counts depart sharply from their moving average "
                "(suspicious.py), and current vs moving averages for one queue.",
    variables=SUSPICIOUS_VARIABLES,
    rows=(
        Row("Flags", (
            Panel("flags", "Current flags, by score", "table", (Target(INFLUXDB, FLAGS, TABLE),),
                  width=24, height=10, sort_by="score",
                  columns=(schema.LEVEL, schema.ATLAS_SITE, schema.PANDA_QUEUE,
                           schema.PROD_SOURCE, schema.RESOURCE, schema.JOB_STATUS,
                           schema.DIRECTION, "current", "baseline", "ratio", "score",
                           schema.CLOUD, "Time"),
                  description="The flags of the last suspicious.py run before the end of the "
                              "time range. score = |current - baseline| x |log2((current+1)/"
                              "(baseline+1))|."),
            Panel("flag_counts", "Flags over time", "timeseries",
                  (Target(INFLUXDB, FLAG_COUNTS,
                          alias=f"$tag_{schema.LEVEL} $tag_{schema.DIRECTION}"),),
                  width=24, height=7, min_interval="10m"),
        )),
        Row("Moving averages: $panda_queue, $job_status", (
            Panel("averages", "Current vs moving averages: $panda_queue, $job_status",
                  "timeseries", (Target(INFLUXDB, AVERAGES),), min_interval="10m"),
            Panel("averages_now", "Moving averages now (MySQL)", "table",
                  (Target(MYSQL, AVERAGES_SQL, TABLE),), sort_by="running_jobs"),
        )),
    ),
)


# --- DAOD distribution ---------------------------------------------------------------------

_DATADISKS = schema.DATADISKS
_DATADISK_TAG_VALUES = f"SHOW TAG VALUES FROM {_DATADISKS.qualified} WITH KEY = "
DATADISK_FILTERS = f"{match(schema.CLOUD)} AND {match(schema.DATADISK)}"

DAOD_VARIABLES = (
    Variable(schema.CLOUD, "Cloud", _DATADISK_TAG_VALUES + quote_ident(schema.CLOUD)),
    Variable(schema.DATADISK, "Datadisk", _DATADISK_TAG_VALUES + quote_ident(schema.DATADISK)
             + f" WHERE {match(schema.CLOUD)}"),
)

_LATEST_FIELDS = ("daod_files", "jobs_share", "data_share", "imbalance",
                  "running_analysis_jobs", "running_analysis_cores")
_LATEST_WINDOW = (f"time > ${{__to}}ms - {DATADISK_WINDOW} AND time <= ${{__to}}ms")
# Each datadisk's latest hour (daod_bytes is always written; imbalance is left out where the
# data share is 0), with gap = |jobs_share - data_share|: the part of all analysis jobs that
# sits there beyond (or short of) its part of the data. A ratio would rank tiny datadisks first.
DAOD_NOW = (
    'SELECT abs("jobs_share" - "data_share") AS "gap", "daod_bytes", '
    + ", ".join(f'"{f}"' for f in _LATEST_FIELDS)
    + ' FROM (SELECT last("daod_bytes") AS "daod_bytes", '
    + ", ".join(f'"{f}"' for f in _LATEST_FIELDS)
    + f" FROM {_DATADISKS.qualified} WHERE {_LATEST_WINDOW} AND {DATADISK_FILTERS} "
    f"GROUP BY {tags(_DATADISKS.tags)}) WHERE {_LATEST_WINDOW} GROUP BY {tags(_DATADISKS.tags)}")
IMBALANCE_TREND = (
    f'SELECT mean("imbalance") AS "imbalance" FROM {_DATADISKS.qualified} WHERE $timeFilter '
    f"AND {DATADISK_FILTERS} GROUP BY time($__interval), {quote_ident(schema.DATADISK)} "
    "fill(none)")
SHARE_TREND = (
    'SELECT mean("jobs_share") AS "jobs_share", mean("data_share") AS "data_share" FROM '
    '(SELECT sum("jobs_share") AS "jobs_share", sum("data_share") AS "data_share" FROM '
    f"{_DATADISKS.qualified} WHERE $timeFilter AND {DATADISK_FILTERS} GROUP BY time(1h)) "
    "WHERE $timeFilter GROUP BY time($__interval) fill(none)")

DAOD_DASHBOARD = Dashboard(
    uid="qmonit-daod",
    title="QMonit: DAOD distribution",
    description="Where DAOD data sits vs where analysis jobs run, per datadisk (datadisk.py, "
                "hourly).",
    variables=DAOD_VARIABLES,
    time_from="now-2d",
    refresh="1h",
    rows=(
        Row("Now", (
            Panel("daod_shares", "Jobs share vs data share: the 20 datadisks with the largest gap",
                  "barchart", (Target(INFLUXDB, DAOD_NOW, TABLE),), width=24, height=10,
                  unit="percentunit", sort_by="gap", limit=20, x_field=schema.DATADISK,
                  columns=(schema.DATADISK, "jobs_share", "data_share"),
                  description="Share of the running analysis jobs vs share of the DAOD bytes "
                              "per datadisk, latest hour; gap = |jobs share - data share|."),
            Panel("daod_table", "Datadisks now, by gap", "table",
                  (Target(INFLUXDB, DAOD_NOW, TABLE),), width=24, height=10,
                  sort_by="gap",
                  columns=(schema.DATADISK, schema.ATLAS_SITE, schema.CLOUD, schema.TIER,
                           "jobs_share", "data_share", "gap", "imbalance",
                           "running_analysis_jobs", "running_analysis_cores", "daod_bytes",
                           "daod_files", "Time"),
                  units=(("jobs_share", "percentunit"), ("data_share", "percentunit"),
                         ("gap", "percentunit"), ("daod_bytes", "bytes")),
                  description="imbalance = jobs share / data share (none where the data share "
                              "is 0)."),
        )),
        Row("Trend", (
            Panel("imbalance_trend", "Imbalance per datadisk", "timeseries",
                  (Target(INFLUXDB, IMBALANCE_TREND, alias=f"$tag_{schema.DATADISK}"),),
                  min_interval="1h"),
            Panel("share_trend", "Jobs share and data share of the selected datadisks",
                  "timeseries", (Target(INFLUXDB, SHARE_TREND),), unit="percentunit",
                  min_interval="1h"),
        )),
    ),
)

DASHBOARDS = (JOBS_DASHBOARD, SUSPICIOUS_DASHBOARD, DAOD_DASHBOARD)
# The panel each dashboard is about, for the preview.
MAIN_PANELS = {JOBS_DASHBOARD.uid: "jobs_by_status", SUSPICIOUS_DASHBOARD.uid: "flags",
               DAOD_DASHBOARD.uid: "daod_shares"}


# --- Grafana's variable expansion ----------------------------------------------------------

# $name, [[name]], [[name:format]], ${name}, ${name:format}: Grafana's own variable syntax.
_VARIABLE = re.compile(r"\$(\w+)|\[\[(\w+?)(?::(\w+))?\]\]|\$\{(\w+)(?::([^}]+))?\}")
_REGEX_SPECIAL = re.compile(r"[\\^$*+?.()|\[\]{}/]")
_INTERVALS = (("1s", 1), ("5s", 5), ("10s", 10), ("30s", 30), ("1m", 60), ("5m", 300),
              ("10m", 600), ("30m", 1800), ("1h", 3600), ("3h", 10800), ("6h", 21600),
              ("12h", 43200), ("1d", 86400), ("7d", 604800))


def regex_escape(value):
    return _REGEX_SPECIAL.sub(lambda m: "\\" + m.group(0), value)


def _seconds(interval):
    """Seconds in a Grafana interval such as 30s, 10m, 1h or 7d."""
    return int(interval[:-1]) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[interval[-1]]


def auto_interval(start, end, min_interval="", max_points=1000):
    """$__interval as Grafana picks it: the range over the data points, rounded up to a round
    step, no less than the panel's min interval."""
    wanted = max((end - start).total_seconds() / max_points, _seconds(min_interval or "1s"))
    for name, seconds in _INTERVALS:
        if seconds >= wanted:
            return name
    return _INTERVALS[-1][0]


@dataclass
class Context:
    """One view of a dashboard: the time range and the variables' picks (ALL, a value, or a
    list of values); unset variables take their defaults."""
    start: dt.datetime
    end: dt.datetime
    values: dict = field(default_factory=dict)
    interval: str = ""

    def value(self, variable):
        return self.values.get(variable.name, variable.default)


def _ms(when):
    return int(when.timestamp() * 1000)


def _format(variable, value, fmt, datasource):
    if value == ALL:
        if variable.all_value is None:
            raise ValueError(f"variable {variable.name} has no All option")
        return variable.all_value          # Grafana inserts a custom all value raw
    if isinstance(value, tuple):
        value = list(value)
    if fmt == "regex":
        escaped = [regex_escape(v) for v in (value if isinstance(value, list) else [value])]
        return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"
    if fmt:
        raise ValueError(f"format {fmt!r} of ${{{variable.name}}} is not supported here")
    picks = variable.multi or variable.include_all
    if datasource == INFLUXDB:
        if isinstance(value, list):
            return "(" + "|".join(regex_escape(v) for v in value) + ")"
        return regex_escape(value) if picks else value
    quote = lambda v: "'" + v.replace("'", "''") + "'"   # noqa: E731 - Grafana's SQL quoting
    if isinstance(value, list):
        return ",".join(quote(v) for v in value)
    return quote(value) if picks else value


def expand(text, dashboard, context, datasource=INFLUXDB, min_interval=""):
    """The query Grafana sends for `text` in this view of `dashboard`."""
    interval = context.interval or auto_interval(context.start, context.end, min_interval)
    builtins = {
        "__from": str(_ms(context.start)), "__to": str(_ms(context.end)),
        "__interval": interval, "__interval_ms": str(_seconds(interval) * 1000),
    }
    if datasource == INFLUXDB:
        builtins["timeFilter"] = (f"time >= {_ms(context.start)}ms and "
                                  f"time <= {_ms(context.end)}ms")
    variables = {v.name: v for v in dashboard.variables}

    def replace(m):
        name = m.group(1) or m.group(2) or m.group(4)
        fmt = m.group(3) or m.group(5) or ""
        if name in builtins:
            return builtins[name]
        if name in variables:
            variable = variables[name]
            return _format(variable, context.value(variable), fmt, datasource)
        return m.group(0)                 # Grafana leaves unknown names alone

    return _VARIABLE.sub(replace, text)


def queries(dashboard):
    """(panel, refId, target) for every panel query of a dashboard."""
    for panel in dashboard.panels():
        for i, target in enumerate(panel.targets):
            yield panel, ref_id(i), target


def active_rollup(context):
    """The rollup the gated jobs targets read in this view (its time range and `rp` pick)."""
    rp = context.values.get("rp", AUTO)
    if rp != AUTO:
        return rp
    width = (context.end - context.start).total_seconds()
    for name, _step, high in ROLLUPS:
        if high is None or width <= high:
            return name
    return ROLLUPS[-1][0]
