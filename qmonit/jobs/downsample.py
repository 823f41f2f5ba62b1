"""Rollups of "jobs": 10m -> 1h and 1h -> 1d, exact, with a look-back that backfills.

Each run writes the last complete bucket, and rewrites every bucket of a look-back window
that is missing from the rollup or whose source sample count differs from the rollup's (late
10m data, a cron run that never happened). --start/--end recompute a range unconditionally.

The 1h rollup is mean/sum/count of the 10m points. The 1d rollup is built from the 1h rollup
so that it equals what the 10m points would give: jobs = sum(jobs_sum) / sum(samples), and the
other means are weighted by samples.

Why not SELECT ... INTO: at ATLAS scale (25k series, 11 tags) InfluxDB 1.6 does per-tag-set
work for GROUP BY *, once per aggregate call, and 1d needs a subquery for the weighted means.
Reading the raw points (tags as columns, no GROUP BY) and summing here gave the same numbers
(exactly) 2.4x faster for an hour and 11x faster for a day (bench/bench_downsample.py), and
keeps the arithmetic in one place, with exact integer sums.

Mostly nothing is read at all: fetch_queues.py carries each hour's sums as it writes the slots,
and each hour written here is carried into its day's (rollups.py). A bucket is built from its
carried sums when their sample total equals InfluxDB's count of its source samples, and read
otherwise; the look-back counts only buckets whose carried parts changed since they were
rolled up. With --start/--end, and in a cron run where only the last bucket is left to count,
the count runs while the sums are loaded and encoded; writes go
WRITERS at a time while the next buckets are encoded and each written hour is carried into
its day, so a backfill keeps influxd ingesting.

Why one module of ~680 lines: planning, the Rollup arithmetic, the carried-sum shortcut and the
late-hour recheck together decide which bucket is built from what; split apart, each piece would
reach into the others' internals (rollups.py keeps only the books on disk).
"""
import collections
import datetime as dt
import itertools
import logging
import math
import operator
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from ..core import lineprotocol, schema
from ..core.errors import ConfigError, SinkError, UsageError
from ..core.gcpause import without_gc
from ..core.influxql import quote_ident, time_literal
from ..sinks.influx import Influx, duration_seconds, retention_durations
from ..sources.cric import UNKNOWN_QUEUE
from . import rollups, transform
from .runs import Run, print_lines

log = logging.getLogger(__name__)

JOBS, JOBS_SUM, SAMPLES = schema.JOBS_1H.fields[:3]
MEAN_FIELDS = schema.JOBS_MEAN_FIELDS
HOUR = 3600
DAY = 86400
# Parallel reads: influxd answers one query on one core; two keep both busy on a small host.
READERS = 2
# Writes in flight at once. influxd takes the same lines in with less CPU the more writes
# overlap (measured, 48 hours of 25k 1h lines prebuilt: 2 at once 34 s and 66 s of influxd
# CPU, 4 at once 25 s and 46 s).
WRITERS = 4
# Lines of the buckets in flight, at most (one bucket at least): four hours at 25k series,
# one at 250k, where an hour is 80 MB of lines.
IN_FLIGHT_LINES = 120000
# Lines per write (one spool file, then POSTs of influx.BATCH_LINES).
WRITE_LINES = 50000
# A bucket written alone (one hour, the cron run's last hour) of at least this many lines is
# split in two writes posted at once, so that influxd ingests it on both cores; buckets of a
# backfill go whole, several at once (fewer, larger writes cost influxd less).
SPLIT_LINES = 10000


@dataclass(frozen=True)
class Level:
    name: str            # "1h" or "1d": the --average value and the target policy
    step: int            # bucket length in seconds
    source: schema.Measurement
    target: schema.Measurement
    # Buckets read by one query. influxd sets up every series for each query, whatever its
    # time range (about as long as reading an hour of 10m points), so reads are large.
    chunk: int

    @property
    def script(self):
        return f"downsample_{self.name}"

    @property
    def source_fields(self):
        if self.source is schema.JOBS:
            return (JOBS,) + MEAN_FIELDS
        return (JOBS_SUM, SAMPLES) + MEAN_FIELDS


LEVELS = {
    "1h": Level("1h", HOUR, schema.JOBS, schema.JOBS_1H, chunk=6),
    "1d": Level("1d", DAY, schema.JOBS_1H, schema.JOBS_1D, chunk=1),
}


# --- planning (pure) ----------------------------------------------------------------------

def last_complete(now, step):
    """Start (epoch seconds) of the last bucket that ended at or before now."""
    now = int(now)
    return now - now % step - step


def lookback_buckets(now, step, lookback):
    """Bucket starts to check, oldest first: the last complete one and the others that end
    within lookback seconds before its end."""
    latest = last_complete(now, step)
    count = max(1, math.ceil(lookback / step))
    return [latest - i * step for i in range(count - 1, -1, -1)]


def requested_buckets(now, step, start, end=None):
    """Complete buckets that overlap [start, end) (end: up to the last complete one)."""
    if end is not None and end <= start:
        raise UsageError("--end must be after --start")
    latest = last_complete(now, step)
    first = int(start) - int(start) % step
    stop = latest + step if end is None else min(int(end), latest + step)
    return list(range(first, stop, step))


def plan(buckets, source, target, latest):
    """[(bucket, reason)] to (re)write, oldest first.

    source and target map bucket -> total samples. A bucket whose source is empty is left
    alone: a rollup is never removed (its 10m data may simply have expired). Otherwise the
    latest bucket is always written, and any other that the target lacks or whose sample
    counts differ.
    """
    chosen = []
    for bucket in buckets:
        stored = target.get(bucket)
        have = source.get(bucket, 0)
        if not have:
            continue
        if stored is None:
            chosen.append((bucket, "missing"))
        elif have != stored:
            chosen.append((bucket, f"changed ({stored} -> {have} samples)"))
        elif bucket == latest:
            chosen.append((bucket, "latest"))
    return chosen


def ranges(buckets, step, chunk):
    """Sorted bucket starts as contiguous [start, stop) ranges of at most chunk buckets."""
    out = []
    for bucket in buckets:
        if out and out[-1][1] == bucket and out[-1][1] - out[-1][0] < chunk * step:
            out[-1][1] = bucket + step
        else:
            out.append([bucket, bucket + step])
    return [tuple(r) for r in out]


# --- InfluxQL (pure) ----------------------------------------------------------------------

def _where(start, stop):
    return f"time >= {time_literal(start)} AND time < {time_literal(stop)}"


def tag_keys(shown):
    """Every tag key to carry over: the schema's, then any other the source has, sorted."""
    extra = sorted(set(shown) - set(schema.JOBS.tags))
    return tuple(schema.JOBS.tags) + tuple(extra)


def source_query(level, tags, start, stop):
    """The raw source points of [start, stop) with their tags as columns.

    No GROUP BY: InfluxDB 1.6 answers a raw SELECT far faster than per-series groups.
    """
    columns = [f"{quote_ident(f)}::field" for f in level.source_fields]
    columns += [f"{quote_ident(t)}::tag" for t in tags]
    return (f"SELECT {', '.join(columns)} FROM {level.source.qualified} "
            f"WHERE {_where(start, stop)}")


def count_queries(level, start, stop):
    """Per bucket of [start, stop): total samples in the source, and in the target."""
    group = f"GROUP BY time({level.step}s) fill(none)"
    if level.source is schema.JOBS:
        source = f"count({quote_ident(JOBS)})"
    else:
        source = f"sum({quote_ident(SAMPLES)})"
    return (f"SELECT {source} FROM {level.source.qualified} WHERE {_where(start, stop)} {group}",
            f"SELECT sum({quote_ident(SAMPLES)}) FROM {level.target.qualified} "
            f"WHERE {_where(start, stop)} {group}")


def bucket_counts(series_list):
    """{bucket: count} from a count_queries answer."""
    out = {}
    for series in series_list:
        for row in series.get("values", []):
            if row[1] is not None:
                out[int(row[0])] = int(row[1])
    return out


# --- the arithmetic (pure) ----------------------------------------------------------------

class Rollup:
    """Accumulates source rows into target points, per (tags, bucket).

    From 10m rows: samples = rows with a jobs value (others are no samples and are left
    out), jobs_sum = their sum, and per mean field the sum and count of the rows that have it.
    From 1h rows: the same sums, with each mean
    weighted by the hour's samples. Partial rollups of the same buckets merge exactly.
    """

    def __init__(self, level, tags):
        self.level = level
        self.tags = tuple(tags)
        self.groups = {}
        self.rows = 0

    def add(self, series):
        """Add the rows of one answer series (columns: time, source fields, tags)."""
        columns = series["columns"]
        index = {name: i for i, name in enumerate(columns)}
        rows = series.get("values", [])
        # A column the answer lacks reads as null (InfluxDB always sends the selected ones).
        missing = len(columns)
        tag_at = [index.get(t, missing) for t in self.tags]
        means = [(index.get(f, missing), 2 + 2 * n) for n, f in enumerate(MEAN_FIELDS)]
        from_raw = self.level.source is schema.JOBS
        count_at = index.get(JOBS if from_raw else SAMPLES, missing)
        sum_at = index.get(JOBS if from_raw else JOBS_SUM, missing)
        pad = missing in tag_at + [at for at, _ in means] + [count_at, sum_at]
        tags_of = operator.itemgetter(*tag_at) if len(tag_at) > 1 else (
            lambda row: (row[tag_at[0]],))
        step = self.level.step
        groups = self.groups
        width = 2 + 2 * len(MEAN_FIELDS)
        for row in rows:
            if pad:
                row = list(row) + [None]
            total = row[sum_at]
            weight = 1 if from_raw else row[count_at]
            if total is None or not weight:
                continue
            key = (tags_of(row), row[0] - row[0] % step)
            acc = groups.get(key)
            if acc is None:
                acc = groups[key] = [0] * width
            acc[0] += weight
            acc[1] += total
            for at, slot in means:
                value = row[at]
                if value is not None:
                    acc[slot] += value * weight
                    acc[slot + 1] += weight
        self.rows += len(rows)

    @classmethod
    def carried(cls, level, tags, bucket, kept_tags, groups):
        """A Rollup of one bucket from carried sums ({kept tag values: acc}), or None when
        they have a tag this rollup lacks."""
        if not set(kept_tags) <= set(tags):
            return None
        rollup = cls(level, tags)
        if tuple(kept_tags) == rollup.tags:
            # The usual case: the keys are already this rollup's, and unique (the sums are
            # taken over, not copied: the caller's are loaded for this rollup alone).
            rollup.groups = {(values, bucket): acc for values, acc in groups.items()}
            return rollup
        at = [kept_tags.index(t) if t in kept_tags else None for t in tags]
        for values, acc in groups.items():
            key = tuple(None if i is None else values[i] for i in at)
            rollups.merge_into(rollup.groups, (key, bucket), acc)
        return rollup

    def terms(self):
        """{bucket: {tag values: acc}}: the groups as carried parts."""
        out = {}
        for (tags, bucket), acc in self.groups.items():
            out.setdefault(bucket, {})[tags] = acc
        return out

    def daily_terms(self):
        """{hour: {tag values: acc}}: what each hour of this 1h rollup adds to its day, as
        Rollup.add of the written 1h points adds it (one term per series and hour): weight
        samples, total jobs_sum, each mean times samples (the means as lines() writes them)."""
        out = {}
        means = range(2, 2 + 2 * len(MEAN_FIELDS), 2)
        for (tags, bucket), acc in self.groups.items():
            samples, jobs_sum = acc[0], acc[1]
            if not samples:
                continue
            samples = int(samples)
            jobs_sum = jobs_sum if isinstance(jobs_sum, int) else int(round(jobs_sum))
            term = [0 + samples, 0 + jobs_sum]
            for slot in means:
                if acc[slot + 1]:
                    term += (0 + (acc[slot] / acc[slot + 1]) * samples, 0 + samples)
                else:
                    term += (0, 0)
            out.setdefault(bucket, {})[tags] = term
        return out

    def series_sums(self):
        """{bucket: {series key: [jobs_sum, samples]}}: the written points' jobs_sum and
        samples added up per series key (schema.SERIES_KEY, a missing tag as ""), as a
        GROUP BY of those tags sums them over the other tags."""
        at = [self.tags.index(t) if t in self.tags else None for t in schema.SERIES_KEY]
        out = {}
        for (tags, bucket), acc in self.groups.items():
            samples, jobs_sum = acc[0], acc[1]
            if not samples:
                continue
            jobs_sum = jobs_sum if isinstance(jobs_sum, int) else int(round(jobs_sum))
            key = tuple("" if i is None else tags[i] or "" for i in at)
            rollups.merge_into(out.setdefault(bucket, {}), key, (jobs_sum, int(samples)))
        return out

    def merge(self, other):
        for key, acc in other.groups.items():
            rollups.merge_into(self.groups, key, acc)
        self.rows += other.rows
        return self

    def _rows(self):
        """(tags, bucket, fields) per group with samples, in (bucket, tags) order."""
        for (tags, bucket), acc in sorted(self.groups.items(), key=_order):
            samples, jobs_sum = acc[0], acc[1]
            if not samples:
                continue
            jobs_sum = jobs_sum if isinstance(jobs_sum, int) else int(round(jobs_sum))
            fields = {JOBS: jobs_sum / samples, JOBS_SUM: jobs_sum, SAMPLES: int(samples)}
            for n, name in enumerate(MEAN_FIELDS):
                if acc[3 + 2 * n]:
                    fields[name] = acc[2 + 2 * n] / acc[3 + 2 * n]
            yield tags, bucket, fields

    def points(self):
        """transform.Points in (bucket, tags) order."""
        return [transform.Point({k: v for k, v in zip(self.tags, tags) if v not in (None, "")},
                                fields, bucket)
                for tags, bucket, fields in self._rows()]

    def lines(self):
        """{bucket: line protocol lines}: what transform.encode(target, points()) gives,
        built straight from the sums (the hot path). Built column by column: each distinct
        tag value is escaped once, and the per-series work runs in C (map, zip, join)."""
        items = [(key, acc) for key, acc in self.groups.items() if acc[0]]
        if not items:
            return {}
        keys, accs = zip(*items)
        series, buckets = zip(*keys)
        columns = list(zip(*accs))
        samples = list(map(int, columns[0]))
        sums = [s if isinstance(s, int) else int(round(s)) for s in columns[1]]
        jobs = list(map(operator.truediv, sums, columns[0]))
        parts = [[lineprotocol.escape_measurement(self.level.target.name)] * len(items)]
        for tag, values in zip(self.tags, zip(*series)):
            key = f",{lineprotocol.escape_key(tag)}="
            text = {v: "" if v in (None, "") else key + lineprotocol.escape_key(str(v))
                    for v in set(values)}
            parts.append(list(map(text.__getitem__, values)))
        heads = list(map("".join, zip(*parts)))
        del parts
        means, texts = [], []
        for n, field in enumerate(MEAN_FIELDS):
            key = f",{lineprotocol.escape_key(field)}="
            weighted, counts = columns[2 + 2 * n], columns[3 + 2 * n]
            values = [w / c if c else 0.0 for w, c in zip(weighted, counts)]
            means.append(values)
            texts.append([key + repr(v) if c else "" for v, c in zip(values, counts)])
        if not all(all(map(math.isfinite, values)) for values in [jobs, *means]):
            bad = next(i for i, row in enumerate(zip(jobs, *means))
                       if not all(map(math.isfinite, row)))
            raise ValueError(f"line protocol cannot carry the sums of {heads[bad]}")
        form = (f"{{}} {JOBS}={{!r}},{JOBS_SUM}={{}}i,{SAMPLES}={{}}i"
                + "{}" * len(MEAN_FIELDS) + " {}")
        lines = list(map(form.format, heads, jobs, sums, samples, *texts, buckets))
        first = buckets[0]
        if buckets.count(first) == len(buckets):
            return {first: lines}
        out = {}
        for bucket, line in zip(buckets, lines):
            out.setdefault(bucket, []).append(line)
        return out


def slot_terms(points):
    """{tag values: acc}: what the points of one 10m slot add to their hour's rollup, as a
    read of them adds it (fetch_queues.py carries these; see rollups.py). The same as
    Rollup.add of the points, without its row building (the hot path of every fetch cycle)."""
    tags = schema.JOBS.tags
    out = {}
    for point in points:
        fields = point.fields
        jobs = fields.get(JOBS)
        if jobs is None:
            continue
        acc = [1, jobs]
        for name in MEAN_FIELDS:
            value = fields.get(name)
            # 0 + value * 1: what Rollup.add computes for a first row of weight 1.
            acc += (0, 0) if value is None else (0 + value * 1, 1)
        key = tuple(map(point.tags.get, tags))
        if None in key or "" in key:
            key = tuple(v or None for v in key)
        mine = out.get(key)
        if mine is None:
            out[key] = acc
        else:   # the same series twice: summed as a read would (InfluxDB keeps one: the
            for i, value in enumerate(acc):     # count then disagrees, the sums go unused)
                mine[i] += value
    return out


def stats_terms(stats, queues, pledges):
    """slot_terms(transform.iter_job_points(stats, queues, pledges, ...)) without building a
    Point per series: the fetch cycle's hot path (time_window and HS06_benchmark are not
    among the rolled-up fields)."""
    width = 2 + 2 * len(MEAN_FIELDS)
    out = {}
    for queue, labels in stats.items():
        info = queues.get(queue, UNKNOWN_QUEUE)
        tags = info.tags()
        meta = tuple(tags.get(t) or None for t in schema.QUEUE_METADATA)
        common = {"corepower": float(info.corepower),
                  "federation_HS06_pledge": float(pledges.get(info.federation, 0.0))}
        for label, resources in labels.items():
            for resource, statuses in resources.items():
                means = dict(common, resource_factor=transform.resource_factor(
                    resource, info.corecount))
                # 0 + value * 1: what Rollup.add computes for a first row of weight 1.
                tail = [x for name in MEAN_FIELDS for x in (0 + means[name] * 1, 1)]
                head = (queue or None, label or None, resource or None)
                for status, count in statuses.items():
                    key = (*head, status or None, *meta)
                    acc = [1, int(count), *tail]
                    mine = out.get(key)
                    if mine is None:
                        out[key] = acc
                    else:   # as slot_terms: a series twice is summed
                        for i in range(width):
                            mine[i] += acc[i]
    return out


class SlotCarry:
    """fetch_queues.py's side of the carried hour sums: declare() before the slot's lines are
    written, add(points) after or while they are (written or spooled)."""

    def __init__(self, data_dir, slot, lines):
        self.carried = rollups.Carried(data_dir, "1h")
        self.slot = int(slot)
        self.hour = self.slot - self.slot % HOUR
        # Every jobs line is one sample (a point without jobs is never written).
        self.info = (len(lines), rollups.digest(lines))

    def declare(self):
        self.carried.declare(self.hour, {self.slot: self.info})

    def add(self, points=None, terms=None):
        """Add the slot's points, or their terms (stats_terms) when already built."""
        started = time.monotonic()
        try:
            if terms is None:
                terms = slot_terms(points)
            self.carried.add(self.hour, [(self.slot, self.info, terms)], schema.JOBS.tags)
        except SinkError as e:
            # Only a shortcut: downsample.py reads the points instead.
            log.warning("could not carry the rollup sums of %s: %s", _iso(self.slot), e)
        log.debug("carried the rollup sums of %s in %.2f s", _iso(self.slot),
                  time.monotonic() - started)


def _order(item):
    (tags, bucket), _ = item
    return bucket, tuple("" if v is None else v for v in tags)


# --- the job ------------------------------------------------------------------------------

def settings(config):
    """Look-back windows in seconds per level, from [downsample] (bad ones exit 2)."""
    return {"1h": _lookback(config, "lookback_1h", config.get("downsample", "lookback_1h", "48h")),
            "1d": _lookback(config, "lookback_1d", config.get("downsample", "lookback_1d", "14d"))}


def _lookback(config, key, value):
    try:
        seconds = duration_seconds(value)
    except ValueError as e:
        raise ConfigError(config.path, str(e), "downsample", key) from None
    if not seconds and value.strip().lower() == "inf":
        raise ConfigError(config.path, "must be a finite duration", "downsample", key)
    return seconds


@without_gc
def run(config, now, average, start=None, end=None, dry_run=False, influx=None, out=None):
    """Write (with dry_run: print) the rollup given by average, "1h" or "1d".

    Without start: the last complete bucket and what the look-back finds missing or changed;
    "1d" first does the same for "1h", so the daily run at 00:06 sees the day's last hour,
    which the hourly run at :15 has not written yet. With start (and end): exactly the
    complete buckets of that range. now, start and end are aware datetimes.
    """
    level = LEVELS[average]
    lookbacks = settings(config)
    durations = retention_durations(config)
    influx = influx or Influx.from_config(config)
    now_s = int(now.timestamp())
    record = Run(level.script, transform.slot_of(now))
    books = {name: rollups.Book(config.data_dir(), name) for name in LEVELS}
    # Each day written leaves its sums per series for suspicious.py (its avg7d/avg30d).
    days = rollups.DaySums(config.data_dir()) if not dry_run else None
    written = 0
    counter = ThreadPoolExecutor(1)
    try:
        counts = None
        if not dry_run:
            influx.ensure_database(durations)
        if start is not None:
            buckets = requested_buckets(now_s, level.step, int(start.timestamp()),
                                        None if end is None else int(end.timestamp()))
            if not buckets:
                log.warning("no complete %s bucket in the requested range; nothing to do",
                            level.name)
            book = books[level.name]
            book.sort(buckets)
            # Counted only where carried sums could stand in for the read, while the rest
            # gets ready and the sums are encoded (used only once the count agrees).
            counts = counter.submit(lambda: bucket_totals(
                influx, level, [b for b in buckets if b in book.seen], target=False)[0])
        tags = tag_keys(_shown_tag_keys(influx, level))
        if start is not None:
            written += write(influx, level, tags, [(b, "requested") for b in buckets],
                             dry_run, out, counts, books, days if level.name == "1d" else None)
            resolved(counts)    # a failed count is an error even when nothing needed it
        else:
            # One level after the other: the 1d check must see the 1h rollup just written.
            levels = [LEVELS["1h"], level] if level.name == "1d" else [level]
            for each in levels:
                if dry_run and each is level and len(levels) > 1:
                    print(f"# {level.name} is computed from {level.source.qualified} as stored: "
                          "a dry run does not apply the changes above", file=out)
                chosen, counts = check(influx, each, now_s, lookbacks[each.name],
                                       books[each.name], counter)
                # Late hours beyond the look-back have no count here: they are read raw.
                late, done = late_buckets(influx, each, now_s, chosen,
                                          duration_seconds(durations[schema.RP_10M]))
                written += write(influx, each, tags, sorted(chosen + late), dry_run, out,
                                 counts, books, days if each.name == "1d" else None)
                resolved(counts)    # a failed count is an error even when nothing needed it
                if done and not dry_run:
                    influx.spool.forget_late_hours(done)
        if not dry_run:
            _keep(books, ["1h", "1d"] if level.name == "1d" else [level.name], now_s, lookbacks)
            days.prune(now_s - now_s % DAY - days.KEEP_DAYS * DAY)
    except Exception:
        counter.shutdown(wait=False, cancel_futures=True)
        if not dry_run:
            record.errors = 1
            record.points = written
            record.record(influx, "error")
        raise
    counter.shutdown()
    if not dry_run:
        record.points = written
        record.record(influx, "ok")
    log.debug("%s: %d points in %.2f s", level.script, written, record.elapsed())
    return 0


def _keep(books, names, now, lookbacks):
    """Save what was rolled up; drop the carried sums no look-back reaches any more."""
    for name in names:
        book, step = books[name], LEVELS[name].step
        oldest = lookback_buckets(now, step, lookbacks[name])[0] - step
        book.save(oldest)
        book.carried.prune(oldest)


def _shown_tag_keys(influx, level):
    shown = influx.query(f"SHOW TAG KEYS FROM {quote_ident(level.source.name)}")[0]
    return [row[0] for series in shown for row in series.get("values", [])]


def late_buckets(influx, level, now, chosen, retention):
    """Hours whose 10m points a spool replay wrote late, to roll up however old, while the
    10m policy (retention seconds, 0: forever) holds them: ([(bucket, reason)], the hours
    to forget once written). Hours not complete yet wait."""
    spool = getattr(influx, "spool", None)
    if level.name != "1h" or spool is None:
        return [], []
    latest = last_complete(now, level.step)
    have = {bucket for bucket, _ in chosen}
    late, done = [], []
    for hour in spool.late_hours():
        if hour > latest:
            continue
        done.append(hour)
        if retention and hour + level.step <= now - retention:
            log.warning("%s: hour %s was written late, but its 10m points are past the 10m "
                        "retention policy; not rolled up", level.name, _iso(hour))
        elif hour not in have:
            late.append((hour, "late (replayed from the spool)"))
    return late, done


def bucket_totals(influx, level, buckets, target=True):
    """({bucket: source samples}, {bucket: target samples}) from InfluxDB: one number a
    bucket, one query per contiguous range of buckets, all in one request."""
    queries = []
    for bounds in ranges(sorted(buckets), level.step, len(buckets) or 1):
        source_q, target_q = count_queries(level, *bounds)
        queries += [source_q, target_q] if target else [source_q]
    source, stored = {}, {}
    if not queries:
        return source, stored
    answers = influx.query("; ".join(queries))
    width = 2 if target else 1
    for i in range(0, len(answers), width):
        source.update(bucket_counts(answers[i]))
        if target:
            stored.update(bucket_counts(answers[i + 1]))
    return source, stored


def check(influx, level, now, lookback, book=None, counter=None):
    """The buckets of the look-back to (re)write, with why, and the source sample counts of
    those: ([(bucket, reason)], {bucket: samples}, or a future of it).

    A bucket whose carried parts are as when it was last rolled up is not counted again;
    one whose parts were declared again with other values is rewritten. When only the latest
    bucket is left (the steady cron run) and counter (an executor) is given, its count runs
    there while its carried sums are loaded and encoded."""
    buckets = lookback_buckets(now, level.step, lookback)
    latest = buckets[-1]
    started = time.monotonic()
    unchanged, rewritten = book.sort(buckets) if book else (set(), set())
    unchanged.discard(latest)
    asked = [b for b in buckets if b not in unchanged]
    if counter is not None and asked == [latest]:
        # The latest bucket is written whatever the rollup holds: only its source count is
        # needed, to check the carried sums against (a bucket with no source writes nothing).
        counts = counter.submit(lambda: bucket_totals(influx, level, asked, target=False)[0])
        log.debug("%s: checked %d buckets (%d unchanged since rolled up) in %.2f s: %s latest "
                  "(counted while it is built)", level.name, len(buckets), len(buckets) - 1,
                  time.monotonic() - started, _iso(latest))
        return [(latest, "latest")], counts
    # Counting costs a fraction of reading, and spares reading buckets with no source data.
    source, target = bucket_totals(influx, level, asked)
    chosen = plan(asked, source, target, latest)
    have = {b for b, _ in chosen}
    chosen = sorted(chosen + [(b, "rewritten with other values") for b in rewritten
                              if b not in have and source.get(b)])
    if book:
        for bucket in asked:
            if bucket not in have and source.get(bucket) and source[bucket] == target.get(bucket):
                book.mark(bucket, source[bucket])
    log.debug("%s: checked %d buckets (%d unchanged since rolled up) in %.2f s: %s",
              level.name, len(buckets), len(buckets) - len(asked), time.monotonic() - started,
              ", ".join(f"{_iso(b)} {why}" for b, why in chosen) or "nothing to write")
    return chosen, source


def compute(influx, level, tags, buckets, counts=None, carried=None, prepare=None):
    """Yield a Rollup per range of buckets (or prepare(Rollup), done in the same thread), in
    order, READERS ranges read at once.

    A bucket whose carried sums hold exactly InfluxDB's count of source samples (counts) is
    built from them; the others are read. counts may be a future of the counts (a count query
    still running): the sums are loaded and encoded meanwhile, and used once it agrees."""
    pending = hasattr(counts, "result")

    def task(bounds):
        if bounds[1] - bounds[0] == level.step and bounds[0] in usable:
            done = from_carried(bounds[0])
            if done is not None:
                return done
        rollup = Rollup(level, tags)
        for series in influx.query_chunks(source_query(level, tags, *bounds)):
            rollup.add(series)
        return rollup if prepare is None else prepare(rollup)

    def from_carried(bucket):
        kept = carried.load(bucket)
        if kept is None or not rollups.total(kept[0]):
            return None
        samples = rollups.total(kept[0])
        rollup = Rollup.carried(level, tags, bucket, kept[1], kept[2])
        del kept        # only the rollup's copy is kept while it is encoded
        if rollup is None:
            return None
        done = rollup if prepare is None else prepare(rollup)
        del rollup
        if samples != resolved(counts).get(bucket):
            return None
        log.debug("%s %s: from the carried sums", level.name, _iso(bucket))
        return done

    usable = set()
    if carried is not None:
        for bucket in buckets:
            declared = rollups.total(carried.parts(bucket))
            if declared and (pending or declared == resolved(counts).get(bucket)):
                usable.add(bucket)
    # Raw buckets next to each other are read together (one query sets up every series).
    merged = []
    for bounds in ((b, b + level.step) for b in buckets):
        if (merged and bounds[0] not in usable and merged[-1][0] not in usable
                and merged[-1][1] == bounds[0]
                and merged[-1][1] - merged[-1][0] < level.chunk * level.step):
            merged[-1] = (merged[-1][0], bounds[1])
        else:
            merged.append(bounds)
    with ThreadPoolExecutor(READERS) as pool:
        yield from _ordered(pool, task, merged, READERS)


def resolved(counts):
    """counts, or what the future counts gives (waiting for it)."""
    if hasattr(counts, "result"):
        return counts.result()
    return counts or {}


def _ordered(pool, fn, items, ahead):
    """pool.map with at most `ahead` results in flight, so memory stays bounded."""
    pending = []
    for item in items:
        pending.append(pool.submit(fn, item))
        if len(pending) > ahead:
            yield pending.pop(0).result()
    for future in pending:
        yield future.result()


def write(influx, level, tags, chosen, dry_run=False, out=None, counts=None, books=None,
          day_sums=None):
    """Compute and write (or print) the chosen buckets; returns the points written.

    Each hour written is also added to its day's carried sums (declared before it is
    written), and each bucket is booked as rolled up from counts[bucket] source samples.
    With day_sums (a rollups.DaySums), each day written leaves its sums per series there
    once its points are written (or spooled).
    Up to WRITERS writes (IN_FLIGHT_LINES lines) are in flight at once, so influxd always has
    the next batch to take in while this process encodes and carries the sums."""
    reasons = dict(chosen)
    books = books or {}
    book = books.get(level.name)
    daily = books.get("1d") if level.name == "1h" and not dry_run else None
    day = None
    written = 0

    def prepare(rollup):
        # In the reading threads: Python work overlaps the writes, which wait on influxd.
        by_bucket = rollup.lines()
        terms = rollup.daily_terms() if daily is not None else {}
        infos = {hour: (sum(acc[0] for acc in terms[hour].values()),
                        rollups.digest(by_bucket[hour])) for hour in sorted(terms)}
        sums = rollup.series_sums() if day_sums is not None and not dry_run else {}
        return by_bucket, terms, infos, sums

    def finish(entry):
        nonlocal written
        futures, buckets, started, sums, _ = entry
        lines = sum(future.result() for future in futures)
        for bucket in sorted(sums):
            day_sums.save(bucket, sums[bucket])
        if book is not None:
            known = resolved(counts)
            for bucket in buckets:
                if bucket in known:
                    book.mark(bucket, known[bucket])
        written += lines
        log.debug("%s %s: %d points written in %.2f s", level.target.qualified,
                  ", ".join(f"{_iso(b)} ({reasons[b]})" for b in buckets),
                  lines, time.monotonic() - started)

    in_flight = collections.deque()
    with ThreadPoolExecutor(WRITERS) as writers:
        for by_bucket, terms, infos, sums in compute(influx, level, tags, sorted(reasons), counts,
                                               book.carried if book else None, prepare):
            if dry_run:
                for bucket in sorted(by_bucket):
                    print(f"# {level.target.qualified} {_iso(bucket)}: {reasons[bucket]}",
                          file=out)
                    print_lines(level.target, sorted(by_bucket[bucket]), out)
                continue
            lines = [line for bucket in sorted(by_bucket) for line in by_bucket[bucket]]
            if daily is not None and lines:
                for start, hours in itertools.groupby(infos, key=lambda h: h - h % DAY):
                    daily.carried.declare(start, {h: infos[h] for h in hours})
            while in_flight and (len(in_flight) >= WRITERS or sum(
                    e[4] for e in in_flight) + len(lines) > IN_FLIGHT_LINES):
                finish(in_flight.popleft())
            # Spooled and posted in pieces: at 250k series an hour is 80 MB of lines, and
            # the spool's gzip would copy it whole several times.
            size = piece_size(len(lines), alone=len(reasons) == 1)
            in_flight.append(([writers.submit(influx.write_lines, level.target.rp,
                                              lines[i:i + size])
                               for i in range(0, len(lines), size)],
                              sorted(by_bucket), time.monotonic(), sums, len(lines)))
            del lines, sums
            # Carried into the day while the points are posted (as fetch_queues.py does).
            for hour in sorted(terms):
                if day is None or day.bucket != hour - hour % DAY:
                    if day is not None:
                        day.save()
                    day = daily.carried.open(hour - hour % DAY, tags)
                day.add(hour, infos[hour], terms[hour])
        if day is not None:
            day.save()          # while the last write is still posted
        while in_flight:
            finish(in_flight.popleft())
    return written


def piece_size(count, alone=False):
    """Lines per write for count lines: writes of at most WRITE_LINES; a bucket written alone
    of SPLIT_LINES or more in two writes at least."""
    if alone and count >= SPLIT_LINES:
        return min(WRITE_LINES, -(-count // 2))
    return max(min(count, WRITE_LINES), 1)


def _iso(epoch):
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
