"""The 10-minute job: PanDA job counts + CRIC metadata -> "10m"."jobs" and the MySQL snapshot."""
import datetime as dt
import logging
import time
from concurrent.futures import ThreadPoolExecutor

from ..core import http, schema
from ..core.errors import ConfigError, QMonitError
from ..core.files import State
from ..sinks.influx import Influx
from ..sinks.mysqlstore import MySQLStore
from ..sources import benchmarks, cric, panda
from . import averages, downsample, transform
from .runs import Run, print_lines, print_rows

log = logging.getLogger(__name__)

SCRIPT = "fetch_queues"
STALE_AFTER = dt.timedelta(hours=24)


def settings(config):
    """The [panda] and [cric] settings this job needs, checked up front (bad ones exit 2)."""
    return {
        "panda_url": config.get("panda", "url", "https://pandaserver.cern.ch:25443"),
        "api": config.get_choice("panda", "api", panda.APIS, "v1"),
        "time_window": _time_window(config),
        "timeout": config.get_float("panda", "timeout", 120),
        "pandaqueue_url": config.get(
            "cric", "pandaqueue_url", "https://atlas-cric.cern.ch/api/atlas/pandaqueue/query/?json"),
        "cric_timeout": config.get_float("cric", "timeout", 120),
        "benchmarks": bool(config.get("credentials_elasticsearch", "host", "")),
        "max_bytes": max_reply_bytes(config, "panda"),
        "cric_max_bytes": max_reply_bytes(config, "cric"),
    }


def max_reply_bytes(config, section):
    """[section] max_reply_mb in bytes: a larger reply is refused."""
    mb = config.get_float(section, "max_reply_mb", http.DEFAULT_MAX_BYTES / 1e6)
    if not mb > 0:
        raise ConfigError(config.path, "must be above 0", section, "max_reply_mb")
    return int(mb * 1e6)


def _time_window(config):
    value = config.get_int("panda", "time_window", 10, minimum=1)
    if value > panda.MAX_TIME_WINDOW:
        raise ConfigError(config.path, f"at most {panda.MAX_TIME_WINDOW} minutes", "panda",
                          "time_window")
    return value


def run(config, now, dry_run=False, session=None, influx=None, mysql=None, out=None):
    """One cycle for the slot that holds `now`. Sources and sinks default to the config's."""
    opts = settings(config)
    data_dir = config.data_dir()
    # One session for both (tests), else each with its own TLS settings and credentials.
    sessions = (session, session) if session else (panda.session(config), cric.session(config))
    influx = influx or Influx.from_config(config)
    mysql = mysql or MySQLStore.from_config(config)
    slot = transform.slot_of(now)
    influx.check_retained(schema.JOBS.rp, slot)
    run_record = Run(SCRIPT, slot)
    state = State(data_dir, SCRIPT)
    last_slot = trusted_slot(state.load().get("last_slot"), state.path)
    window = panda.time_window(opts["time_window"], last_slot, slot)

    problems = []
    try:
        stats, queues, pledges, hs06 = fetch(sessions, cric.Cache(data_dir), opts, window,
                                             now, dry_run, problems)
    except Exception:
        if not dry_run:
            run_record.errors = 1
            run_record.record(influx, "error")
        raise

    started = time.monotonic()
    lines = transform.job_lines(stats, queues, pledges, slot, window, hs06)
    rows = transform.mysql_rows(stats, queues, slot)
    unknown = sum(1 for q in stats if q not in queues)
    log.debug("slot %s: %d queues (%d unknown to CRIC), %d points, %d rows, time_window %d "
              "min, %d bad records left out; transform %.2f s", slot, len(stats), unknown,
              len(lines), len(rows), window, len(problems), time.monotonic() - started)
    if dry_run:
        print_lines(schema.JOBS, lines, out)
        print_rows("upsert", transform.MYSQL_ROW_COLUMNS, rows, out)
        return 0

    # InfluxDB and MySQL are independent: one failing never keeps the other from being written.
    failures = []
    run_record.errors = len(problems)
    started = time.monotonic()
    try:
        averages.forget_carried(data_dir, slot)
    except (QMonitError, OSError) as e:
        # An unwritable data_dir must not keep the points from a healthy InfluxDB.
        log.warning("could not check the carried averages under %s: %s", data_dir, e)
    carry = downsample.SlotCarry(data_dir, slot.timestamp(), lines)
    try:
        carry.declare()
    except (QMonitError, OSError) as e:
        # Only a shortcut: without it downsample.py reads this hour's points back.
        log.warning("could not declare the rollup parts of %s under %s: %s", slot, data_dir, e)
        carry = None
    try:
        with ThreadPoolExecutor(1) as pool:
            writing = pool.submit(influx.write_lines_split, schema.JOBS.rp, lines)
            if carry is not None:
                # The hour's carried sums are built while InfluxDB takes the points.
                carry.add(terms=downsample.stats_terms(stats, queues, pledges))
            writing.result()
        safe = True
    except QMonitError as e:
        failures.append(e)
        safe = getattr(e, "safe", False)
    if safe and (last_slot is None or slot > last_slot):
        # Written or spooled, the counts are kept: the next window starts from this slot.
        # Neither: the next run asks PanDA for this slot's window again.
        try:
            state.save({"last_slot": int(slot.timestamp())})
        except QMonitError as e:
            failures.append(e)
    run_record.points = len(lines)
    log.debug("InfluxDB: %d points in %.2f s", len(lines), time.monotonic() - started)

    started = time.monotonic()
    removed = 0
    try:
        mysql.ensure_jobs_table()
        mysql.upsert(transform.MYSQL_ROW_COLUMNS, rows, guard="last_seen",
                     trusted_until=trust_limit())
        removed = mysql.delete_stale(slot, STALE_AFTER, trusted_until=trust_limit())
    except QMonitError as e:
        failures.append(e)
    finally:
        mysql.close()
    log.debug("MySQL: %d rows upserted, %d stale removed in %.2f s", len(rows), removed,
              time.monotonic() - started)
    run_record.finish(influx, failures)
    return 0


def trust_limit(wall=None):
    """Stored times after this are from a run with the clock ahead: not trusted as guards."""
    wall = dt.datetime.now(dt.UTC) if wall is None else wall
    return transform.slot_of(wall) + transform.SLOT


def trusted_slot(epoch, where, wall=None):
    """A stored slot as a datetime; None (with one warning) when it lies more than one slot
    after the wall clock, so a run with the clock far ahead never freezes later runs."""
    if not epoch:
        return None
    try:
        slot = dt.datetime.fromtimestamp(epoch, dt.UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        log.warning("%s: ignoring unreadable last_slot %r", where, epoch)
        return None
    limit = trust_limit(wall)
    if slot > limit:
        log.warning("%s: last_slot %s is after the clock (%s); not trusted", where,
                    f"{slot:%Y-%m-%d %H:%M}", f"{limit - transform.SLOT:%Y-%m-%d %H:%M}")
        return None
    return slot


def fetch(sessions, cache, opts, window, now, dry_run, problems=None):
    """PanDA counts, CRIC queue metadata and federation pledges; any failure raises.

    sessions: (PanDA session, CRIC session). Bad records are left out and listed in
    problems."""
    problems = [] if problems is None else problems
    panda_session, session = sessions
    started = time.monotonic()
    stats = panda.fetch_job_stats(panda_session, opts["panda_url"], opts["api"], window,
                                  opts["timeout"], problems, opts["max_bytes"])
    log.debug("PanDA: %d queues in %.2f s", len(stats), time.monotonic() - started)
    started = time.monotonic()
    checked = {}
    before = len(problems)
    # The hourly job refreshes the site dump: the corepower of queues CRIC gives none.
    sites = cache.read("site")

    def check(payload):
        # A payload without one usable queue never replaces the cached copy.
        del problems[before:]
        checked["queues"] = cric.queue_metadata(payload, sites, problems)
        checked["payload"] = payload
        if not checked["queues"]:
            raise ValueError("no usable queue")

    pandaqueues = cric.refresh(session, cache, "pandaqueue", opts["pandaqueue_url"],
                               opts["cric_timeout"], dry_run=dry_run, check=check,
                               max_bytes=opts["cric_max_bytes"])
    if checked.get("payload") is pandaqueues:
        queues = checked["queues"]
    else:
        del problems[before:]
        queues = cric.queue_metadata(pandaqueues, sites, problems)
    # The hourly job refreshes the federation data; without a copy the pledge is 0.
    pledges = cric.federation_pledges(cache.read("federation"), now)
    # The hourly job refreshes the benchmarks too; none while [credentials_elasticsearch]
    # host is empty.
    hs06 = benchmarks.Cache(cache.directory.parent).read() if opts["benchmarks"] else {}
    log.debug("CRIC: %d queues, %d pledges in %.2f s", len(queues), len(pledges),
              time.monotonic() - started)
    return stats, queues, pledges, hs06
