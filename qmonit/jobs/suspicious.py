"""The suspicious-sites job: moving averages at slot T, flags where the current number of jobs
departs sharply from its baseline (queue and site level), the MySQL avg* columns, and a
digest of new and cleared flags.

Flag rules ([suspicious]): a series of a watched status is a spike when
current >= spike_factor * baseline, a drop when current <= drop_factor * baseline, and
neither when |current - baseline| < min_change. Its score ranks flags:

    score = |current - baseline| * |log2((current + 1) / (baseline + 1))|

(jobs moved times doublings or halvings), so a 500 -> 0 collapse (score ~4500) ranks far
above a 30 -> 10 wobble (~30). A site sums every queue, label and resource of an atlas_site:
its current and its baseline are the sums of its series' (queues CRIC does not know, site
"unknown", are not summed into a site).
"""
import datetime as dt
import logging
import math
import sys
import time
from collections import namedtuple
from concurrent.futures import ThreadPoolExecutor, wait
from urllib.parse import quote

from ..core import schema
from ..core.cli import parse_timestamp
from ..core.errors import ConfigError, QMonitError, SinkError, SourceError, UsageError
from ..core.gcpause import without_gc
from ..core.influxql import quote_ident, time_literal
from ..sinks import notify, silences
from ..sinks.influx import Influx, duration_seconds, retention_durations
from ..sinks.mysqlstore import MySQLStore, update_jobs
from ..sinks.mysqlstore import quote_ident as sql_ident
from ..sources import cric, downtime
from . import averages as averages_module
from . import context as context_module
from . import deadman, transform
from .fetch import STALE_AFTER
from .runs import Run, print_lines, print_rows

log = logging.getLogger(__name__)

SCRIPT = "suspicious"
SECTION = "suspicious"
QUEUE, SITE = "queue", "site"
SPIKE, DROP = "spike", "drop"

# The tags and fields of "10m"."suspicious"; a flag is new and unsuppressed until told otherwise.
Flag = namedtuple("Flag", ("level", "atlas_site", "panda_queue", "prod_source", "resource",
                           "job_status", "cloud", "direction", "current", "baseline", "ratio",
                           "score", "suppressed", "slots"),
                  defaults=(schema.SUPPRESSED_NO, 1))
# Hours of each baseline window, for BigPanDA's hours=N.
WINDOW_HOURS = {"avg1h": 1, "avg6h": 6, "avg12h": 12, "avg24h": 24, "avg7d": 168,
                "avg30d": 720}
DEFAULT_BIGPANDA = "https://bigpanda.cern.ch"


class Rules:
    """The [suspicious] section."""

    def __init__(self, statuses=("running", "activated", "assigned", "failed"),
                 baseline="avg24h", spike_factor=2.0, drop_factor=0.5, min_change=20.0,
                 grace=2 * 3600, notify_after=1, bigpanda_url=DEFAULT_BIGPANDA,
                 not_notified=(("failed", DROP), ("running", SPIKE))):
        self.statuses = tuple(statuses)
        self.baseline = baseline
        self.spike_factor = spike_factor
        self.drop_factor = drop_factor
        self.min_change = min_change
        self.grace = grace                  # seconds
        self.notify_after = notify_after    # slots
        self.bigpanda_url = bigpanda_url.rstrip("/")
        # (status, direction) pairs flagged but never notified: fewer failed or more running
        # jobs is good news, and what mostly makes them is a 24 h mean lifted by a failed-job
        # spike or lowered by an outage, for a day after it (see BENCHMARKS.md, Backtest).
        self.not_notified = tuple(not_notified)

    @classmethod
    def from_config(cls, config):
        default = cls()
        statuses = config.get_list(SECTION, "statuses", list(default.statuses))
        unknown = [s for s in statuses if s not in schema.STATUSES]
        if unknown or not statuses:
            raise ConfigError(config.path, f"unknown job status {', '.join(unknown) or '(none)'}"
                              f"; use some of {', '.join(schema.STATUSES)}", SECTION, "statuses")
        spike = config.get_float(SECTION, "spike_factor", default.spike_factor)
        if not spike > 1:
            raise ConfigError(config.path, f"must be above 1, got {spike:g}", SECTION,
                              "spike_factor")
        drop = config.get_float(SECTION, "drop_factor", default.drop_factor)
        if not 0 <= drop < 1:
            raise ConfigError(config.path, f"must be in [0, 1), got {drop:g}", SECTION,
                              "drop_factor")
        min_change = config.get_float(SECTION, "min_change", default.min_change)
        if not min_change >= 0:
            raise ConfigError(config.path, f"must be at least 0, got {min_change:g}", SECTION,
                              "min_change")
        grace = config.get(SECTION, "grace", "2h")
        try:
            grace = duration_seconds(grace)
        except ValueError as e:
            raise ConfigError(config.path, str(e), SECTION, "grace") from None
        bigpanda = config.get(SECTION, "bigpanda_url", DEFAULT_BIGPANDA)
        if not bigpanda.startswith(("http://", "https://")):
            raise ConfigError(config.path, "not an http(s) URL", SECTION, "bigpanda_url")
        quiet = []
        for item in config.get_list(SECTION, "not_notified", "failed drop, running spike"):
            parts = item.split()
            if len(parts) != 2 or parts[0] not in schema.STATUSES or parts[1] not in (SPIKE,
                                                                                       DROP):
                raise ConfigError(config.path, f"expected 'STATUS spike|drop', got {item!r}",
                                  SECTION, "not_notified")
            quiet.append(tuple(parts))
        return cls(statuses,
                   config.get_choice(SECTION, "baseline", schema.AVERAGE_WINDOWS,
                                     default.baseline),
                   spike, drop, min_change, grace,
                   config.get_int(SECTION, "notify_after", 1, minimum=1), bigpanda, quiet)

    def direction(self, current, baseline):
        """spike, drop or None for one series (None also when there is no baseline)."""
        if baseline is None:
            return None
        change = current - baseline
        if abs(change) < self.min_change:
            return None
        if change > 0 and current >= self.spike_factor * baseline:
            return SPIKE
        if change < 0 and current <= self.drop_factor * baseline:
            return DROP
        return None


def score(current, baseline):
    return abs(current - baseline) * abs(math.log2((current + 1) / (baseline + 1)))


def _flag(rules, level, site, queue, label, resource, status, cloud, current, baseline):
    direction = rules.direction(current, baseline)
    if direction is None:
        return None
    return Flag(level, site, queue, label, resource, status, cloud, direction, current,
                float(baseline), current / baseline if baseline > 0 else None,
                score(current, baseline))


def find_flags(series, rules):
    """Queue- and site-level flags from averages.Average records; pure. Highest score first."""
    watched = set(rules.statuses)
    baseline_of = rules.baseline
    flags = []
    sites = {}  # (atlas_site, status) -> [current, baseline, has baseline, {cloud: count}]
    for a in series:
        if a.job_status not in watched:
            continue
        baseline = getattr(a, baseline_of)
        flag = _flag(rules, QUEUE, a.atlas_site, a.panda_queue, a.prod_source, a.resource,
                     a.job_status, a.cloud, a.current, baseline)
        if flag:
            flags.append(flag)
        if not a.atlas_site or a.atlas_site == schema.UNKNOWN:
            continue
        total = sites.get((a.atlas_site, a.job_status))
        if total is None:
            total = sites[(a.atlas_site, a.job_status)] = [0, 0.0, False, {}]
        total[0] += a.current
        if baseline is not None:
            total[1] += baseline
            total[2] = True
        total[3][a.cloud] = total[3].get(a.cloud, 0) + 1
    for (site, status), (current, baseline, has_baseline, clouds) in sorted(sites.items()):
        cloud = min(clouds, key=lambda c: (-clouds[c], c))
        flag = _flag(rules, SITE, site, schema.ALL, schema.ALL, schema.ALL, status, cloud,
                     current, baseline if has_baseline else None)
        if flag:
            flags.append(flag)
    flags.sort(key=lambda f: (-f.score, f.level, f.atlas_site, f.panda_queue, f.prod_source,
                              f.resource, f.job_status))
    return flags


def flag_points(flags, slot):
    timestamp = int(slot.timestamp())
    tag_names = schema.SUSPICIOUS.tags
    return [transform.Point({t: getattr(f, t) for t in tag_names},
                            {"current": int(f.current), "baseline": f.baseline,
                             "ratio": f.ratio, "score": f.score, "slots": int(f.slots)},
                            timestamp)
            for f in flags]


_IDENTITY = (schema.LEVEL, schema.ATLAS_SITE, schema.PANDA_QUEUE, schema.PROD_SOURCE,
             schema.RESOURCE, schema.JOB_STATUS, schema.DIRECTION)


def previous_slots(influx, slot):
    """{flag identity: slots} of the flags written at the slot before `slot`."""
    before = slot - transform.SLOT
    fields = ", ".join(quote_ident(c) for c in ("slots",) + _IDENTITY)
    reply = influx.query(f"SELECT {fields} FROM {schema.SUSPICIOUS.qualified} "
                         f"WHERE time = {time_literal(before)}")
    out = {}
    for series in reply[0] if reply else ():
        columns = series["columns"]
        for row in series.get("values") or ():
            point = dict(zip(columns, row))
            key = tuple(point.get(c) for c in _IDENTITY)
            out[key] = max(out.get(key, 0), int(point.get("slots") or 1))
    return out


def count_slots(flags, previous):
    """The flags with `slots`: one more than the same flag had at the slot before; pure."""
    return [f._replace(slots=previous.get(tuple(getattr(f, c) for c in _IDENTITY), 0) + 1)
            for f in flags]


def queue_link(bigpanda_url, queue, status, hours):
    return (f"{bigpanda_url}/jobs/?computingsite={quote(queue, safe='')}"
            f"&jobstatus={quote(status, safe='')}&hours={hours}")


def site_link(bigpanda_url, queue):
    return f"{bigpanda_url}/site/{quote(queue, safe='')}/"


def flag_links(flags, series, rules):
    """{notify.flag_id: [BigPanDA URLs]}: a queue's jobs page in that status over the
    baseline's window; for a site, the site page of each of its queues; pure."""
    hours = WINDOW_HOURS[rules.baseline]
    queues_of = {}
    for a in series:
        queues_of.setdefault(a.atlas_site, set()).add(a.panda_queue)
    links = {}
    for f in flags:
        if f.level == SITE:
            urls = [site_link(rules.bigpanda_url, q) for q in sorted(queues_of.get(f.atlas_site,
                                                                               ()))]
        else:
            urls = [queue_link(rules.bigpanda_url, f.panda_queue, f.job_status, hours)]
        links[notify.flag_id(f)] = urls
    return links


def in_context(flags, series, rules, config, influx, mysql, slot, now, dry_run):
    """The flags with `suppressed` and `slots` set, and the number of context sources that
    failed (those fall back, never fail the run)."""
    data_dir = config.data_dir()
    errors = 0
    epoch = int(slot.timestamp())
    statuses = context_module.queue_statuses(cric.Cache(data_dir).read("pandaqueue"))
    if not statuses:
        log.debug("no cached CRIC pandaqueue dump under %s: no queue status context",
                    data_dir)
    history = context_module.load_history(data_dir, statuses, epoch, save=not dry_run)
    url = config.get("cric", "downtime_url", "")
    # CRIC's TLS settings ([cric] ca_path, cert): the feed is CRIC's.
    feed = downtime.load(cric.session(config) if url else None, data_dir, url,
                         config.get_float("cric", "timeout", 120), dry_run=dry_run)
    # MySQL down: the saved silences; the MySQL update that follows fails and counts.
    active, _ = silences.for_run(mysql, now, data_dir, save=not dry_run)
    context = context_module.Context(epoch, rules.grace, now, history,
                                     downtime.outages(feed), active)
    changes = context_module.site_changes(series, rules.baseline, rules.statuses)
    flags = context_module.annotate(flags, context, changes)
    try:
        previous = previous_slots(influx, slot)
    except QMonitError as e:
        log.warning("could not read the flags of the slot before (%s); counting from 1", e)
        previous = {}
        errors += 1
    return count_slots(flags, previous), errors


AVG_COLUMNS = tuple(schema.avg_column(w, s) for w in schema.AVERAGE_WINDOWS
                    for s in schema.MYSQL_AVG_STATUSES)
MYSQL_COLUMNS = schema.MYSQL_KEY + AVG_COLUMNS


def mysql_rows(series):
    """One row per (panda_queue, prod_source, resource) in MYSQL_COLUMNS order; pure.
    A window without data is NULL."""
    statuses = set(schema.MYSQL_AVG_STATUSES)
    rows = {}
    for a in series:
        if a.job_status not in statuses:
            continue
        row = rows.get(a[:3])
        if row is None:
            row = rows[a[:3]] = {}
        for window in schema.AVERAGE_WINDOWS:
            row[schema.avg_column(window, a.job_status)] = getattr(a, window)
    return [key + tuple(row.get(c) for c in AVG_COLUMNS) for key, row in sorted(rows.items())]


def write_mysql(mysql, rows, slot):
    """Fill the avg* columns of existing rows and remove stale rows, in one transaction.

    A row that PanDA reported after slot (a backfill runs behind) keeps its newer values.
    Returns (rows updated, rows removed)."""
    when = slot.astimezone(dt.UTC).replace(tzinfo=None)

    def work(cur):
        updated = update_jobs(cur, "suspicious_averages", MYSQL_COLUMNS, schema.MYSQL_KEY,
                              AVG_COLUMNS, rows, where="j.`last_seen` <= %s", params=(when,))
        cur.execute(f"DELETE FROM {sql_ident(schema.MYSQL_JOBS_TABLE)} WHERE `last_seen` < %s",
                    (when - STALE_AFTER,))
        return updated, cur.rowcount

    return mysql.transaction(work)


@without_gc
def run(config, now, dry_run=False, influx=None, mysql=None, out=None):
    """One run for the slot that holds `now`. Sinks default to the config's."""
    rules = Rules.from_config(config)
    settings = notify.Settings.from_config(config)
    stale_after = deadman.stale_after(config)
    durations = retention_durations(config)
    data_dir = config.data_dir()
    influx = influx or Influx.from_config(config)
    mysql = mysql or MySQLStore.from_config(config)
    slot = transform.slot_of(now)
    influx.check_retained(schema.RP_10M, slot)
    record = Run(SCRIPT, slot)
    # Before anything can fail for want of data: a silent QMonit must not look like a quiet grid.
    record.errors += deadman.check(settings, stale_after, influx, now, data_dir, dry_run, out)
    try:
        if not dry_run:
            influx.ensure_database(durations)
        series, at_slot = averages_module.compute(influx, slot, data_dir, save=not dry_run)
        if not at_slot:
            raise SourceError(f"InfluxDB {influx.url}", f"no {schema.JOBS.qualified} points at "
                              f"{slot:%Y-%m-%d %H:%M:%S} UTC (has fetch_queues.py run for it?)")
    except Exception:
        if not dry_run:
            record.errors = 1
            record.record(influx, "error")
        raise

    started = time.monotonic()
    flags = find_flags(series, rules)
    flags, context_errors = in_context(flags, series, rules, config, influx, mysql, slot, now,
                                       dry_run)
    record.errors += context_errors
    links = flag_links(flags, series, rules)
    rows = mysql_rows(series)
    if dry_run:
        print_lines(schema.AVERAGES, _average_lines(series, slot, flags, rows, started), out)
        print_lines(schema.SUSPICIOUS, transform.encode(schema.SUSPICIOUS,
                                                        flag_points(flags, slot)), out)
        print_rows("update avg columns of", MYSQL_COLUMNS, rows, out)
        when = slot.replace(tzinfo=None) - STALE_AFTER
        print(f"# would delete the rows of MySQL `{schema.MYSQL_JOBS_TABLE}` last seen before "
              f"{when:%Y-%m-%d %H:%M:%S}", file=out or sys.stdout)
        notify.notify(settings, flags, slot, data_dir, dry_run=True, out=out,
                      notify_after=rules.notify_after, links=links,
                      quiet=rules.not_notified)
        return 0

    # MySQL mostly waits on its server: it runs beside the encoding and the InfluxDB write.
    with ThreadPoolExecutor(max_workers=1) as pool:
        mysql_done = pool.submit(update_mysql, mysql, rows, slot)
        try:
            lines = (_average_lines(series, slot, flags, rows, started)
                     + transform.encode(schema.SUSPICIOUS, flag_points(flags, slot)))
            started = time.monotonic()
            try:
                # Earlier runs' spooled flags of this slot first, so the clearing covers them.
                influx.flush_spool()
            except SinkError as e:
                log.debug("could not replay the spool before clearing %s: %s", slot, e)
            _clear_flags(influx, slot)
            influx.write_lines_split(schema.RP_10M, lines)
            record.points = len(lines)
            log.debug("InfluxDB: %d points in %.2f s", record.points,
                      time.monotonic() - started)
            # Not after MySQL: an operator hears of a collapse even while MySQL is down.
            record.errors += notify.notify(settings, flags, slot, data_dir,
                                           notify_after=rules.notify_after, links=links,
                      quiet=rules.not_notified)
            mysql_done.result()
        except Exception:
            record.errors += 1
            record.record(influx, "error")
            raise
        finally:
            wait([mysql_done])
            mysql.close()
    record.record(influx, "ok")
    return 0


def _average_lines(series, slot, flags, rows, started):
    lines = transform.encode(schema.AVERAGES, averages_module.points(series, slot))
    log.debug("slot %s: %d series, %d flags (%d at site level), %d MySQL rows; %.2f s",
              slot, len(series), len(flags), sum(f.level == SITE for f in flags), len(rows),
              time.monotonic() - started)
    return lines


def update_mysql(mysql, rows, slot):
    """The jobs table (created when missing), its avg columns and the stale rows removed."""
    started = time.monotonic()
    mysql.ensure_jobs_table()
    updated, removed = write_mysql(mysql, rows, slot)
    log.debug("MySQL: %d rows updated, %d stale removed in %.2f s", updated, removed,
              time.monotonic() - started)


def _clear_flags(influx, slot):
    """Remove flags an earlier run wrote at this slot, so that a rerun leaves only its own."""
    at = time_literal(slot)
    try:
        # Only on a rerun: a DELETE costs a scan of every series of the measurement, and the
        # backtest saw flags of other slots vanish from queries after many of them.
        [found] = influx.query(f'SELECT count("score") FROM {schema.SUSPICIOUS.qualified} '
                               f"WHERE time >= {at} AND time <= {at}")
        if not found:
            return
        influx.query(f"DELETE FROM {quote_ident(schema.SUSPICIOUS.name)} "
                     f"WHERE time >= {at} AND time <= {at}")
    except SinkError as e:
        # The write that follows spools its points if InfluxDB is gone.
        log.debug("could not clear earlier flags at %s: %s", slot, e)


# --- silences from the command line --------------------------------------------------------

def add_silence_arguments(parser):
    group = parser.add_argument_group("silences")
    group.add_argument("--silence", metavar="TARGET",
                       help="silence an atlas_site (with all its queues) or a panda_queue")
    group.add_argument("--until", metavar='"YYYY-mm-dd HH:MM:SS"', type=parse_timestamp,
                       help="UTC end of the silence (with --silence)")
    group.add_argument("--reason", metavar="TEXT", help="why (with --silence)")
    group.add_argument("--status", metavar="S", choices=schema.STATUSES,
                       help="silence one job status only (with --silence)")
    group.add_argument("--list-silences", action="store_true", help="print the active silences")
    group.add_argument("--unsilence", metavar="ID", type=int, help="end a silence now")


def is_silence_command(args):
    # Any silence option, even a stray --until or an empty --silence, is a silence command:
    # it must never fall through to a normal run.
    return bool(args.silence is not None or args.list_silences or args.unsilence is not None
                or args.until or args.reason or args.status)


def silence_command(config, args, now, mysql=None, out=None):
    """--silence, --list-silences or --unsilence; returns the exit status."""
    out = out or sys.stdout
    chosen = [name for name, on in (("--silence", args.silence),
                                    ("--list-silences", args.list_silences),
                                    ("--unsilence", args.unsilence is not None)) if on]
    if len(chosen) > 1:
        raise UsageError(f"{' and '.join(chosen)} cannot go together")
    if args.silence is not None and not args.silence.strip():
        raise UsageError("--silence needs an atlas_site or a panda_queue")
    if not args.silence and (args.until or args.reason or args.status):
        raise UsageError("--until, --reason and --status go with --silence")
    mysql = mysql or MySQLStore.from_config(config)
    try:
        if args.silence:
            if args.until is None or not args.reason:
                raise UsageError("--silence needs --until and --reason")
            if args.dry_run:
                print(f"# would silence {args.silence} ({args.status or 'every status'}) "
                      f"until {args.until:%Y-%m-%d %H:%M:%S} UTC: {args.reason}", file=out)
                return 0
            silence_id = silences.add(mysql, args.silence, args.until, args.reason, now,
                                      args.status, _user())
            print(silence_id, file=out)
        elif args.list_silences:
            for line in silences.format_table(silences.active(mysql, now,
                                                              create=not args.dry_run)):
                print(line, file=out)
        else:
            if args.dry_run:
                print(f"# would end silence {args.unsilence}", file=out)
                return 0
            if not silences.end(mysql, args.unsilence, now):
                raise UsageError(f"no active silence with id {args.unsilence} "
                                 f"(see --list-silences)")
    finally:
        mysql.close()
    return 0


def _user():
    import getpass
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return ""
