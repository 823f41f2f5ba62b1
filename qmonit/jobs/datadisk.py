"""The hourly job: are DAODs placed where the analysis jobs run?

1. Refresh the slow CRIC data (site, ddmendpoint, federation) and the measured HS06 per core
   of each queue (the benchmark Elasticsearch, when [credentials_elasticsearch] host is set)
   into the cache under data_dir; the 10-minute job reads the federation pledges, the site
   corepowers and the benchmarks from there.
2. DAOD files and bytes per DATADISK for the last complete UTC day, from MONIT's Rucio
   accounting (qmonit.rucio).
3. Running analysis jobs (label "user") per PanDA queue and resource type, from the latest
   complete 10-minute slot in "10m"."jobs" (no PanDA call), attributed to the DATADISKs the
   queue's analysis jobs read: CRIC's astorages.read_lan_analysis when the queue has it
   (PanDA's own brokerage honours it), else astorages.read_lan; split equally when it lists
   several.
4. "1h"."datadisks" at the exact hour, and the datadisk columns of the MySQL jobs rows.

Every datadisk with DAOD data or with running analysis jobs gets a point. jobs_share and
data_share are its part of the attributed jobs and of the DAOD bytes (each sums to 1 over the
datadisks); imbalance = jobs_share / data_share, left out where data_share is 0. Jobs on queues
with no DATADISK to read from (or unknown to CRIC) are attributed to none and left out.
"""
import datetime as dt
import logging
import time
from collections import Counter, namedtuple
from urllib.parse import urlsplit

from ..core import schema
from ..core.errors import ConfigError, QMonitError, SinkError, SourceError
from ..core.files import State, ahead_of_clock
from ..core.influxql import quote_ident, quote_string, time_literal
from ..sinks import notify
from ..sinks.influx import Influx
from ..sinks.mysqlstore import MySQLStore, update_jobs
from ..sources import benchmarks, cric, rucio
from . import deadman, transform
from .fetch import SCRIPT as FETCH_SCRIPT
from .fetch import max_reply_bytes
from .runs import Run, print_lines, print_rows

log = logging.getLogger(__name__)

SCRIPT = "datadisk"
HOUR = dt.timedelta(hours=1)
# Federation first: the 10-minute job reads the pledges from its cache.
CRIC_KINDS = ("federation", "site", "ddmendpoint")
CRIC_DEFAULTS = {
    "pandaqueue": "https://atlas-cric.cern.ch/api/atlas/pandaqueue/query/?json",
    "site": "https://atlas-cric.cern.ch/api/atlas/site/query/?json",
    "ddmendpoint": "https://atlas-cric.cern.ch/api/atlas/ddmendpoint/query/?json",
    "federation": "https://wlcg-cric.cern.ch/api/core/federation/query/?json",
}
DATADISK_TYPE = "DATADISK"
DATADISK_SUFFIX = "_DATADISK"
BYTES_PER_GB = 1e9

Endpoint = namedtuple("Endpoint", "atlas_site cloud tier is_datadisk")
UNKNOWN_ENDPOINT = Endpoint(schema.UNKNOWN, schema.UNKNOWN, schema.UNKNOWN, True)
# Running analysis jobs of one (queue, resource type) at the slot.
Running = namedtuple("Running", "panda_queue resource jobs resource_factor")
Record = namedtuple("Record", schema.DATADISKS.tags + schema.DATADISKS.fields)
# What attribution left out, for --debug and the tests.
Summary = namedtuple("Summary", "analysis_jobs attributed_jobs unattributed_jobs "
                                "queues_without_datadisk dropped_rses")


def settings(config):
    """The settings this job needs, checked up front (bad ones exit 2)."""
    url = config.get("credentials_monit_grafana", "url", "")
    if not url:
        raise ConfigError(config.path, "empty: the full URL of the MONIT Grafana _msearch proxy "
                          "endpoint is needed", "credentials_monit_grafana", "url")
    if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).hostname:
        raise ConfigError(config.path, f"not an http(s) URL: {url!r}",
                          "credentials_monit_grafana", "url")
    token = config.get("credentials_monit_grafana", "token", "")
    if not token:
        raise ConfigError(config.path, "empty: the MONIT Grafana proxy needs a bearer token",
                          "credentials_monit_grafana", "token")
    return {
        "monit_url": url,
        "token": token,
        "index": config.get("datadisk", "index", rucio.INDEX) or rucio.INDEX,
        "timeout": config.get_float("datadisk", "timeout", 120),
        "max_slot_age": dt.timedelta(
            minutes=config.get_int("datadisk", "max_slot_age", 60, minimum=10)),
        "cric_timeout": config.get_float("cric", "timeout", 120),
        "cric_max_bytes": max_reply_bytes(config, "cric"),
        "benchmarks": benchmarks.settings(config),
        "cric_urls": {
            "pandaqueue": config.get("cric", "pandaqueue_url", CRIC_DEFAULTS["pandaqueue"]),
            "site": config.get("cric", "site_url", CRIC_DEFAULTS["site"]),
            "ddmendpoint": config.get("cric", "ddmendpoint_url", CRIC_DEFAULTS["ddmendpoint"]),
            "federation": config.get("cric", "federation_url", CRIC_DEFAULTS["federation"]),
        },
    }


# --- pure transforms ----------------------------------------------------------------------

def _text(value):
    value = "" if value is None else str(value).strip()
    return value or schema.UNKNOWN


def _tier_of_level(level):
    try:
        level = int(level)
    except (TypeError, ValueError):
        return schema.UNKNOWN
    return f"T{level}" if 0 <= level <= 3 else schema.UNKNOWN


def endpoint_metadata(ddmendpoints, sites, queues):
    """{DDM endpoint: Endpoint(atlas_site, cloud, tier, is_datadisk)} from CRIC.

    tier is the tier the site's PanDA queues carry (T2D, T3D, ...: what the jobs points are
    tagged with), else T<tier_level> of the endpoint or its site.
    """
    tiers = Counter((q.atlas_site, q.tier) for q in queues.values()
                    if q.atlas_site != schema.UNKNOWN and q.tier != schema.UNKNOWN)
    site_tier = {}
    for (site, tier), _n in sorted(tiers.items(), key=lambda item: (-item[1], item[0])):
        site_tier.setdefault(site, tier)
    site_info = {s.get("name"): s for s in cric.records(sites)}
    endpoints = {}
    for entry in cric.records(ddmendpoints):
        if not entry.get("name"):
            continue
        atlas_site = _text(entry.get("site"))
        site = site_info.get(atlas_site) or {}
        kind = entry.get("type")
        is_datadisk = (kind == DATADISK_TYPE if kind
                       else entry.get("token") in rucio.DATADISK_TOKENS)
        tier = site_tier.get(atlas_site) or _tier_of_level(
            entry.get("tier_level", site.get("tier_level")))
        endpoints[str(entry["name"])] = Endpoint(
            atlas_site, _text(entry.get("cloud") or site.get("cloud")), tier, is_datadisk)
    return endpoints


def is_datadisk(name, endpoints):
    """CRIC's type says; an endpoint CRIC does not list counts by its name."""
    endpoint = endpoints.get(name)
    return endpoint.is_datadisk if endpoint else name.endswith(DATADISK_SUFFIX)


def queue_datadisks(queues, endpoints):
    """{PanDA queue: DATADISKs its analysis jobs read (read_lan_analysis, else read_lan), in
    CRIC's order}; queues without one absent."""
    out = {}
    for queue, info in queues.items():
        disks = tuple(dict.fromkeys(e for e in info.analysis_read_lan()
                                    if is_datadisk(e, endpoints)))
        if disks:
            out[queue] = disks
    return out


def attribute(running, queue_disks):
    """({datadisk: jobs}, {datadisk: cores}, (all jobs, attributed, unattributed, queues
    without a datadisk)). A queue's jobs are split equally over its datadisks."""
    per_queue = {}
    for r in running:
        jobs, cores = per_queue.get(r.panda_queue, (0, 0.0))
        per_queue[r.panda_queue] = (jobs + r.jobs, cores + r.jobs * r.resource_factor)
    jobs_by_disk, cores_by_disk = {}, {}
    total = attributed = unattributed = 0
    orphans = 0
    for queue, (jobs, cores) in per_queue.items():
        total += jobs
        disks = queue_disks.get(queue)
        if not disks:
            unattributed += jobs
            orphans += jobs > 0
            continue
        attributed += jobs
        share = 1.0 / len(disks)
        for disk in disks:
            jobs_by_disk[disk] = jobs_by_disk.get(disk, 0.0) + jobs * share
            cores_by_disk[disk] = cores_by_disk.get(disk, 0.0) + cores * share
    return jobs_by_disk, cores_by_disk, (total, attributed, unattributed, orphans)


def datadisk_records(running, queues, endpoints, volumes):
    """(Records sorted by datadisk, Summary); pure.

    running: Running tuples at the slot; queues: {PanDA queue: cric.QueueInfo};
    endpoints: endpoint_metadata(); volumes: {RSE: rucio.Volume} (non-DATADISKs are dropped).
    """
    jobs, cores, (total, attributed, unattributed, orphans) = attribute(
        running, queue_datadisks(queues, endpoints))
    data = {rse: v for rse, v in volumes.items() if is_datadisk(rse, endpoints)}
    names = sorted(set(data) | {disk for disk, n in jobs.items() if n > 0})
    total_jobs = sum(jobs.get(disk, 0.0) for disk in names)
    total_bytes = sum(v.bytes for v in data.values())
    records = []
    for disk in names:
        endpoint = endpoints.get(disk, UNKNOWN_ENDPOINT)
        volume = data.get(disk, rucio.Volume(0, 0))
        n = jobs.get(disk, 0.0)
        jobs_share = n / total_jobs if total_jobs > 0 else None
        data_share = volume.bytes / total_bytes if total_bytes > 0 else None
        imbalance = jobs_share / data_share if jobs_share is not None and data_share else None
        records.append(Record(disk, endpoint.atlas_site, endpoint.cloud, endpoint.tier,
                              int(volume.bytes), int(volume.files), float(n),
                              float(cores.get(disk, 0.0)), jobs_share, data_share, imbalance))
    summary = Summary(total, attributed, unattributed, orphans,
                      tuple(sorted(set(volumes) - set(data))))
    return records, summary


def points(records, hour):
    """"1h"."datadisks" points at the hour; fields without a value are left out."""
    timestamp = int(hour.timestamp())
    tags, fields = schema.DATADISKS.tags, schema.DATADISKS.fields
    return [transform.Point({t: getattr(r, t) for t in tags},
                            {f: getattr(r, f) for f in fields}, timestamp)
            for r in records]


MYSQL_COLUMNS = (schema.PANDA_QUEUE, "datadisk_name", "datadisk_occupied_gb", "datadisk_files")


def mysql_rows(queues, endpoints, volumes):
    """(panda_queue, datadisk_name, DAOD GB, DAOD files) per queue with a DATADISK; pure.

    A queue shows the first DATADISK its analysis jobs read (CRIC's order); one without DAOD data
    shows 0 GB and 0 files.
    """
    rows = []
    for queue, disks in sorted(queue_datadisks(queues, endpoints).items()):
        volume = volumes.get(disks[0], rucio.Volume(0, 0))
        rows.append((queue, disks[0], volume.bytes / BYTES_PER_GB, int(volume.files)))
    return rows


# --- sources -------------------------------------------------------------------------------

def latest_slot(influx, now, max_age):
    """The newest 10-minute slot in (now - max_age, now] that fetch_queues.py completed.

    Complete: fetch_queues.py recorded an ok run for it. Without any such record (jobs
    written by other means), the newest slot that has jobs points. None when there is none.
    """
    end = transform.slot_of(now)
    window = f"time > {time_literal(end - max_age)} AND time <= {time_literal(end)}"
    runs = (f"SELECT last({quote_ident('duration_s')}) FROM {schema.RUNS.qualified} "
            f"WHERE {quote_ident(schema.SCRIPT)} = {quote_string(FETCH_SCRIPT)} "
            f"AND {quote_ident(schema.STATUS)} = {quote_string('ok')} AND {window}")
    jobs = (f"SELECT last({quote_ident('jobs')}) FROM {schema.JOBS.qualified} "
            f"WHERE {quote_ident(schema.JOB_STATUS)} = {quote_string('running')} AND {window}")
    found = []
    for series in influx.query(f"{runs}; {jobs}", epoch="s"):
        values = series[0]["values"] if series and series[0].get("values") else None
        found.append(int(values[0][0]) if values else None)
    ok, newest = found
    slot = ok if ok is not None else newest
    return None if slot is None else dt.datetime.fromtimestamp(slot, dt.UTC)


def running_analysis(influx, slot):
    """Running analysis jobs per (queue, resource type) at the slot, with resource_factor."""
    at = time_literal(slot)
    q = (f"SELECT {quote_ident('jobs')}, {quote_ident('resource_factor')} "
         f"FROM {schema.JOBS.qualified} "
         f"WHERE {quote_ident(schema.PROD_SOURCE)} = {quote_string(schema.ANALYSIS_LABEL)} "
         f"AND {quote_ident(schema.JOB_STATUS)} = {quote_string('running')} "
         f"AND time >= {at} AND time <= {at} "
         f"GROUP BY {quote_ident(schema.PANDA_QUEUE)}, {quote_ident(schema.RESOURCE)}")
    out = []
    for series in influx.query(q, epoch="s")[0]:
        columns = series["columns"]
        # Two rows only if a rerun of the slot changed the metadata tags: keep one.
        row = series["values"][-1]
        jobs = row[columns.index("jobs")]
        factor = row[columns.index("resource_factor")]
        out.append(Running(series["tags"][schema.PANDA_QUEUE], series["tags"][schema.RESOURCE],
                           int(jobs or 0), float(factor) if factor is not None else 1.0))
    return out


Inputs = namedtuple("Inputs", "queues endpoints volumes day slot running")


def fetch(sessions, cache, influx, opts, now, dry_run):
    """CRIC (refreshed), the DAOD volumes and the running analysis jobs; any failure raises
    (the benchmarks are refreshed too, but fall back to their cache or to none).

    sessions: (CRIC session, MONIT session, benchmark Elasticsearch session)."""
    session, monit_session, benchmark_session = sessions
    started = time.monotonic()
    urls, timeout = opts["cric_urls"], opts["cric_timeout"]
    # Each kind is refreshed (or falls back to its cache) even when another fails, so one
    # broken dump does not leave the others stale; the first failure then fails the run.
    payloads, failure = {}, None
    for kind in CRIC_KINDS:
        try:
            payloads[kind] = cric.refresh(session, cache, kind, urls[kind], timeout,
                                          dry_run=dry_run, max_bytes=opts["cric_max_bytes"])
        except SourceError as e:
            failure = failure or e
    if failure is not None:
        raise failure
    if opts["benchmarks"]:
        means = benchmarks.refresh(benchmark_session, benchmarks.Cache(cache.directory.parent),
                                   opts["benchmarks"], now, dry_run=dry_run)
        log.debug("benchmarks: HS06 per core of %d queues", len(means))
    # fetch_queues.py keeps the pandaqueue cache fresh every 10 minutes.
    pandaqueues = cache.read("pandaqueue")
    if pandaqueues is None:
        pandaqueues = cric.refresh(session, cache, "pandaqueue", urls["pandaqueue"], timeout,
                                   dry_run=dry_run, max_bytes=opts["cric_max_bytes"])
    queues = cric.queue_metadata(pandaqueues, payloads["site"])
    endpoints = endpoint_metadata(payloads["ddmendpoint"], payloads["site"], queues)
    log.debug("CRIC: %d queues, %d endpoints in %.2f s", len(queues), len(endpoints),
              time.monotonic() - started)

    started = time.monotonic()
    slot = latest_slot(influx, now, opts["max_slot_age"])
    if slot is None:
        raise SourceError(f"InfluxDB {influx.url}", f"no {schema.JOBS.qualified} slot in the "
                          f"{opts['max_slot_age'].total_seconds() / 60:g} minutes up to "
                          f"{now:%Y-%m-%d %H:%M:%S} UTC (has fetch_queues.py run?)")
    running = running_analysis(influx, slot)
    log.debug("InfluxDB: slot %s, %d running analysis series in %.2f s", slot, len(running),
              time.monotonic() - started)

    started = time.monotonic()
    day, volumes = rucio.latest_volumes(monit_session, opts["monit_url"], opts["token"], now,
                                        opts["timeout"], opts["index"])
    log.debug("MONIT: %d RSEs with DAOD data on %s in %.2f s", len(volumes), f"{day:%Y-%m-%d}",
              time.monotonic() - started)
    return Inputs(queues, endpoints, volumes, day, slot, running)


# --- sinks ---------------------------------------------------------------------------------

def write_mysql(mysql, rows):
    """Set the datadisk columns of every jobs row from rows (one per queue), in one
    transaction; rows of queues without a DATADISK get NULLs. Returns the rows changed."""
    return mysql.transaction(lambda cur: update_jobs(
        cur, "datadisk_rows", MYSQL_COLUMNS, (schema.PANDA_QUEUE,), MYSQL_COLUMNS[1:], rows,
        outer=True))


def _clear_hour(influx, hour):
    """Remove points an earlier run wrote at this hour: a rerun leaves only its own (a
    datadisk gone, or an imbalance now left out, must not linger)."""
    at = time_literal(hour)
    try:
        influx.query(f"DELETE FROM {quote_ident(schema.DATADISKS.name)} "
                     f"WHERE time >= {at} AND time <= {at}")
    except SinkError as e:
        # The write that follows spools its points if InfluxDB is gone.
        log.debug("could not clear earlier datadisk points at %s: %s", hour, e)


def run(config, now, dry_run=False, session=None, influx=None, mysql=None, out=None):
    """One run for the hour that holds `now`. Sources and sinks default to the config's."""
    opts = settings(config)
    data_dir = config.data_dir()
    # One session for all (tests), else CRIC's and MONIT's, each with its TLS settings.
    sessions = (session, session, session) if session else (
        cric.session(config), rucio.session(config), benchmarks.session(config))
    influx = influx or Influx.from_config(config)
    mysql = mysql or MySQLStore.from_config(config)
    hour = transform.floor_time(now, HOUR)
    influx.check_retained(schema.DATADISKS.rp, hour)
    record = Run(SCRIPT, hour)
    # The dead-man switch (also in suspicious.py): tell when fetch_queues.py has gone quiet.
    record.errors += deadman.check(notify.Settings.from_config(config),
                                   deadman.stale_after(config), influx, now, data_dir, dry_run,
                                   out)
    try:
        inputs = fetch(sessions, cric.Cache(data_dir), influx, opts, now, dry_run)
    except Exception:
        if not dry_run:
            record.errors = 1
            record.record(influx, "error")
        mysql.close()
        raise

    started = time.monotonic()
    records, summary = datadisk_records(inputs.running, inputs.queues, inputs.endpoints,
                                        inputs.volumes)
    lines = transform.encode(schema.DATADISKS, points(records, hour))
    data = {rse: v for rse, v in inputs.volumes.items() if is_datadisk(rse, inputs.endpoints)}
    rows = mysql_rows(inputs.queues, inputs.endpoints, data)
    log.debug("hour %s: %d datadisks; %d running analysis jobs, %d attributed, %d on %d "
              "queues without a DATADISK; %d non-DATADISK RSEs dropped; %d MySQL queue rows; "
              "%.2f s", hour, len(records), summary.analysis_jobs, summary.attributed_jobs,
              summary.unattributed_jobs, summary.queues_without_datadisk,
              len(summary.dropped_rses), len(rows), time.monotonic() - started)
    if dry_run:
        print_lines(schema.DATADISKS, lines, out)
        print_rows("update the datadisk columns of", MYSQL_COLUMNS, rows, out)
        return 0

    state = State(data_dir, SCRIPT)
    last = state.load().get("last_hour")
    # InfluxDB and MySQL are independent: one failing never keeps the other from being written.
    failures = []
    try:
        try:
            started = time.monotonic()
            _clear_hour(influx, hour)
            influx.write_lines(schema.DATADISKS.rp, lines)
            record.points = len(lines)
            log.debug("InfluxDB: %d points in %.2f s", len(lines), time.monotonic() - started)
        except QMonitError as e:
            failures.append(e)
        # A backfill of an older hour must not put older volumes into the current snapshot.
        if last is None or int(hour.timestamp()) >= last or ahead_of_clock(last, state.path):
            try:
                started = time.monotonic()
                mysql.ensure_jobs_table()
                changed = write_mysql(mysql, rows)
                state.save({"last_hour": int(hour.timestamp())})
                log.debug("MySQL: %d rows changed in %.2f s", changed,
                          time.monotonic() - started)
            except QMonitError as e:
                failures.append(e)
        else:
            log.debug("MySQL left alone: hour %s is older than the last one written", hour)
    except Exception:
        record.errors += 1
        record.record(influx, "error")
        raise
    finally:
        mysql.close()
    record.finish(influx, failures)
    return 0
