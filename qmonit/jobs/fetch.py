"""The 10-minute job: PanDA job counts + CRIC metadata -> "10m"."jobs" and the MySQL snapshot."""
import datetime as dt
import logging
import time
from concurrent.futures import ThreadPoolExecutor

from ..core import schema
from ..core.errors import ConfigError
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
    }


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
    last = state.load().get("last_slot")
    last_slot = dt.datetime.fromtimestamp(last, dt.UTC) if last else None
    window = panda.time_window(opts["time_window"], last_slot, slot)

    try:
        stats, queues, pledges, hs06 = fetch(sessions, cric.Cache(data_dir), opts, window,
                                             now, dry_run)
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
              "min; transform %.2f s", slot, len(stats), unknown, len(lines), len(rows),
              window, time.monotonic() - started)
    if dry_run:
        print_lines(schema.JOBS, lines, out)
        print_rows("upsert", transform.MYSQL_ROW_COLUMNS, rows, out)
        return 0

    started = time.monotonic()
    averages.forget_carried(data_dir, slot)
    carry = downsample.SlotCarry(data_dir, slot.timestamp(), lines)
    carry.declare()
    try:
        with ThreadPoolExecutor(1) as pool:
            writing = pool.submit(influx.write_lines, schema.JOBS.rp, lines)
            # The hour's carried sums are built while InfluxDB takes the points.
            carry.add(transform.iter_job_points(stats, queues, pledges, slot, window, hs06))
            writing.result()
    finally:
        # Written or spooled, the counts are kept: the next window starts from this slot.
        if last_slot is None or slot > last_slot:
            state.save({"last_slot": int(slot.timestamp())})
    run_record.points = len(lines)
    log.debug("InfluxDB: %d points in %.2f s", len(lines), time.monotonic() - started)

    started = time.monotonic()
    try:
        mysql.ensure_jobs_table()
        mysql.upsert(transform.MYSQL_ROW_COLUMNS, rows, guard="last_seen")
        removed = mysql.delete_stale(slot, STALE_AFTER)
    except Exception:
        run_record.errors = 1
        run_record.record(influx, "error")
        raise
    finally:
        mysql.close()
    log.debug("MySQL: %d rows upserted, %d stale removed in %.2f s", len(rows), removed,
              time.monotonic() - started)
    run_record.record(influx, "ok")
    return 0


def fetch(sessions, cache, opts, window, now, dry_run):
    """PanDA counts, CRIC queue metadata and federation pledges; any failure raises.

    sessions: (PanDA session, CRIC session)."""
    panda_session, session = sessions
    started = time.monotonic()
    stats = panda.fetch_job_stats(panda_session, opts["panda_url"], opts["api"], window,
                                  opts["timeout"])
    log.debug("PanDA: %d queues in %.2f s", len(stats), time.monotonic() - started)
    started = time.monotonic()
    pandaqueues = cric.refresh(session, cache, "pandaqueue", opts["pandaqueue_url"],
                               opts["cric_timeout"], dry_run=dry_run)
    # The hourly job refreshes the site dump: the corepower of queues CRIC gives none.
    queues = cric.queue_metadata(pandaqueues, cache.read("site"))
    # The hourly job refreshes the federation data; without a copy the pledge is 0.
    pledges = cric.federation_pledges(cache.read("federation"), now)
    # The hourly job refreshes the benchmarks too; none while [credentials_elasticsearch]
    # host is empty.
    hs06 = benchmarks.Cache(cache.directory.parent).read() if opts["benchmarks"] else {}
    log.debug("CRIC: %d queues, %d pledges in %.2f s", len(queues), len(pledges),
              time.monotonic() - started)
    return stats, queues, pledges, hs06
