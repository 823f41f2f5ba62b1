"""Moving averages of every job-count series at a 10-minute slot T.

Definitions (see CONTRACT.md): current is the 10m value at T (0 for a series of the last 24 h
that is absent at T); avg1h .. avg24h are means of the 10m values in (T - w, T]; avg7d and
avg30d are sum(jobs_sum) / sum(samples) of the 1d rollup over the complete UTC days before T's
day; coverage is the share of the 144 expected 10m points of (T - 24h, T] that exist.

How, without pulling raw history point by point. In InfluxDB 1.x a GROUP BY over tens of
thousands of series costs mostly per series and per aggregate (about 4 s of server CPU per call
over 24 h at 25k series), while reading the points of one slot without grouping is cheap. So:

  - seed: the sums and counts of four disjoint pieces of (T - 24h, T] per series, in eight
    grouped queries run two at a time. Used for the first run, after a gap of more than
    MAX_STEPS slots, for a slot older than the last one computed, and without a data_dir.
  - step: afterwards each run reads the points of slot T only (no grouping), adds them to the
    window sums and subtracts the slot that leaves each window (T - 1h, T - 6h, T - 12h,
    T - 24h). The slots read are kept under data_dir/cache/averages, so what leaves a window is
    exactly what entered it; a slot from before the seed is read from InfluxDB once.
  - A rerun for the same slot undoes the slot and steps again with what InfluxDB has now.
  - Carried sums must never go stale: fetch_queues.py drops them when it writes a slot they
    took in (forget_carried), a run for an older slot drops them when it finds that slot's
    points changed, and they are seeded again every RESEED_AFTER whatever happens.

The 1d rollup part changes once a day; it is cached in data_dir/cache/rollup_averages.json and
recomputed when T's day changes, while yesterday's rollup is missing, and every 6 hours; a run
that seeds uses the day's cache however old and leaves that refresh to the next run (each costs
several seconds at ATLAS scale: they never add up in one run). Each day of the 1d rollup is
read once for both windows (7 days, then 23 more). The days whose sums downsample.py kept
(rollups.DaySums) are added up from those files instead of grouped in InfluxDB, once the
checked days' totals (yesterday and one in turn) agree with InfluxDB's; a day that disagrees is
dropped and every day queried.

One module of ~800 lines on purpose: the queries, the parsers, the window sums, the files that
carry them between runs and the seed/step computation are one algorithm whose invariants (what
enters and leaves each window, when carried sums are dropped) are stated above and checked together.
"""
import contextlib
import datetime as dt
import fcntl
import gzip
import json
import logging
import time
from collections import namedtuple
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ..core import schema
from ..core.files import atomic_write
from ..core.influxql import quote_ident, time_literal
from . import rollups
from .transform import Point

log = logging.getLogger(__name__)

SLOT = dt.timedelta(minutes=10)
DAY = dt.timedelta(days=1)
# 10m windows, in order: name -> length. Each is a mean over (T - length, T].
WINDOWS = {"avg1h": dt.timedelta(hours=1), "avg6h": dt.timedelta(hours=6),
           "avg12h": dt.timedelta(hours=12), "avg24h": dt.timedelta(hours=24)}
WINDOW_NAMES = tuple(WINDOWS)
# Rollup windows: name -> complete UTC days before T's day.
DAY_WINDOWS = {"avg7d": 7, "avg30d": 30}
# 10m points a series has in 24 h when no run was missed.
EXPECTED_24H = int(WINDOWS["avg24h"] / SLOT)
# Missed slots a run catches up on by reading them; after a longer gap it seeds again.
MAX_STEPS = 3
# Carried sums are seeded again this often: 10m points rewritten after their slot was
# carried (a fetch_queues.py backfill not followed by suspicious.py) are then taken in.
RESEED_AFTER = dt.timedelta(hours=6)
# Concurrent queries: influxd runs each on one core; the servers here have two.
QUERY_THREADS = 2
# The metadata tags that averages points carry besides the series key.
META = (schema.ATLAS_SITE, schema.CLOUD, schema.TIER)
# Inside, a series key and a metadata triple are each one string, their parts joined by
# SEP: dicts keyed by strings load from JSON and hash much faster than tuples. The day sums
# that downsample.py keeps are keyed the same way.
SEP = rollups.DaySums.SEP
NO_META = SEP.join(("", "", ""))
# How long cached rollup averages are trusted within one day (a backfilled day shows up).
ROLLUP_CACHE_MAX_AGE = dt.timedelta(hours=6)

Average = namedtuple("Average", schema.SERIES_KEY + META + ("current",)
                     + schema.AVERAGE_WINDOWS + ("coverage",))
# Windows builds the records positionally in this order, and unrolls its four windows.
if WINDOW_NAMES + tuple(DAY_WINDOWS) != schema.AVERAGE_WINDOWS or len(WINDOWS) != 4:
    raise ImportError("averages: window order differs from schema.AVERAGE_WINDOWS")


def join(parts):
    return SEP.join(parts)


def split(text):
    return tuple(text.split(SEP))


def _epoch(slot):
    return int(slot.timestamp())


def _tags(names):
    return ", ".join(quote_ident(t) for t in names)


def day_start(slot):
    return dt.datetime(slot.year, slot.month, slot.day, tzinfo=dt.UTC)


# --- queries ----------------------------------------------------------------------------------

def slot_query(slot):
    """The points of one slot, tags as columns: no grouping, so cheap."""
    return (f"SELECT {quote_ident('jobs')}, {_tags(schema.SERIES_KEY + META)} "
            f"FROM {schema.JOBS.qualified} WHERE time = {time_literal(slot)}")


def _flat(aggregates, source, where, group_tags):
    """Aggregates per group, returned as the rows of one series with the tags as columns:
    one JSON series per group costs InfluxDB more than the aggregate itself."""
    names = ", ".join(quote_ident(alias) for _, alias in aggregates)
    calls = ", ".join(f"{call} AS {quote_ident(alias)}" for call, alias in aggregates)
    return (f"SELECT {names}, {_tags(group_tags)} FROM (SELECT {calls} FROM {source} "
            f"WHERE {where} GROUP BY {_tags(group_tags)})")


# Disjoint pieces of (T - 24h, T] as (newer, older) offsets: (T - older, T - newer]. Each window
# is a union of whole pieces.
PIECES = tuple(zip((dt.timedelta(0),) + tuple(WINDOWS.values())[:-1], WINDOWS.values()))


def piece_queries(slot, newer, older):
    """sum(jobs) per series, and count(jobs) per series and metadata, in (T - older, T - newer].
    One aggregate a query: each finishes sooner, and they run side by side."""
    jobs = quote_ident("jobs")
    where = f"time > {time_literal(slot - older)} AND time <= {time_literal(slot - newer)}"
    return (_flat([(f"sum({jobs})", "sum")], schema.JOBS.qualified, where, schema.SERIES_KEY),
            _flat([(f"count({jobs})", "count")], schema.JOBS.qualified, where,
                  schema.SERIES_KEY + META))


def rollup_query(slot, days, after=0):
    """sum(jobs_sum) and sum(samples) per series over the complete days before T's, from the
    `after`+1-th to the `days`-th."""
    day = day_start(slot)
    return _flat([(f"sum({quote_ident('jobs_sum')})", "jobs_sum"),
                  (f"sum({quote_ident('samples')})", "samples")], schema.JOBS_1D.qualified,
                 f"time >= {time_literal(day - days * DAY)} AND "
                 f"time < {time_literal(day - after * DAY)}", schema.SERIES_KEY)


def rollup_ranges():
    """The disjoint day ranges (after, days) that the rollup windows are unions of: each day
    is read once (7 days, then 23 more), not 7 + 30."""
    ends = sorted(DAY_WINDOWS.values())
    return list(zip([0] + ends[:-1], ends))


def window_sums(by_range):
    """{window: {key: (sum, samples)}} from {(after, days): {key: (sum, samples)}}. jobs_sum
    values are integers (sums of job counts), so adding the ranges' float sums is exact."""
    out = {}
    for name, days in DAY_WINDOWS.items():
        sums = {}
        for (_, end), part in sorted(by_range.items()):
            if end > days:
                continue
            for key, (total, samples) in part.items():
                have = sums.get(key)
                sums[key] = (total, samples) if have is None else (have[0] + total,
                                                                  have[1] + samples)
        out[name] = sums
    return out


def day_total_query(day):
    """The 1d rollup's total samples of one day (no grouping: cheap)."""
    return (f"SELECT sum({quote_ident('samples')}) FROM {schema.JOBS_1D.qualified} "
            f"WHERE time = {time_literal(day)}")


def checked_days(slot):
    """The days whose kept sums (rollups.DaySums) are checked against InfluxDB before they
    stand in for the grouped query: yesterday, the day most likely to change, and one more
    in turn (the slot picks it)."""
    day = day_start(slot)
    span = max(DAY_WINDOWS.values())
    turn = 2 + (_epoch(slot) // int(SLOT.total_seconds())) % (span - 1)
    return [day - DAY, day - turn * DAY]


# --- parsing (pure) ---------------------------------------------------------------------------

def _rows(series_list, names):
    for series in series_list:
        columns = series["columns"]
        at = [columns.index(name) for name in names]
        for row in series.get("values") or ():
            yield row, at


def parse_slot(series_list):
    """({key: jobs}, {key: (atlas_site, cloud, tier)}) from a slot's points."""
    values, meta = {}, {}
    for row, at in _rows(series_list, ("jobs",) + schema.SERIES_KEY + META):
        value = row[at[0]]
        if value is None:
            continue
        key = SEP.join([row[i] or "" for i in at[1:5]])
        values[key] = values.get(key, 0) + int(value)
        meta[key] = SEP.join([row[i] or "" for i in at[5:]])
    return values, meta


def parse_counts(count_reply):
    """({key: [0, count]}, {key: metadata}) from a piece's count reply.

    A series whose CRIC metadata changed inside the piece has several count groups: they add
    up, and the metadata of the group with the most points is kept (ties: the larger)."""
    sums, meta, best = {}, {}, {}
    for row, at in _rows(count_reply, ("count",) + schema.SERIES_KEY + META):
        n = row[at[0]] or 0
        if not n:
            continue
        key = SEP.join([row[i] or "" for i in at[1:5]])
        group_meta = SEP.join([row[i] or "" for i in at[5:]])
        have = sums.get(key)
        if have is None:
            sums[key] = [0, n]
        else:
            have[1] += n
        if (n, group_meta) > best.get(key, (0, "")):
            best[key] = (n, group_meta)
            meta[key] = group_meta
    return sums, meta


def parse_sums(sum_reply):
    """{key: sum} from a piece's sum reply."""
    return {SEP.join([row[i] or "" for i in at[1:]]): int(row[at[0]] or 0)
            for row, at in _rows(sum_reply, ("sum",) + schema.SERIES_KEY)}


def join_piece(counted, totals):
    """parse_counts' result with the sums filled in from parse_sums'."""
    sums, meta = counted
    for key, row in sums.items():
        row[0] = totals.get(key, 0)
    return sums, meta


def parse_piece(sum_reply, count_reply):
    """({key: [sum, count]}, {key: metadata}) of one piece (see parse_counts)."""
    return join_piece(parse_counts(count_reply), parse_sums(sum_reply))


def parse_rollup(series_list):
    """{key: (sum of jobs_sum, sum of samples)} from a flat rollup reply."""
    out = {}
    for row, at in _rows(series_list, ("jobs_sum", "samples") + schema.SERIES_KEY):
        if row[at[1]]:
            out[SEP.join([row[i] or "" for i in at[2:]])] = (row[at[0]] or 0, row[at[1]])
    return out


def parse_total(series_list):
    """The number a day_total_query reply holds (0 without points)."""
    return int(sum(row[1] or 0 for s in series_list for row in s.get("values") or ()))


def add_day(sums, columns):
    """Add one day's kept sums (columns as rollups.DaySums.load gives them) to {key: [sum,
    samples]}; pure."""
    add_rows(sums, zip(*columns))


def add_rows(sums, rows):
    """Add (key, sum, samples) rows to {key: [sum, samples]}; pure. Sums of integers: exact
    in any order."""
    get = sums.get
    for key, total, samples in rows:
        have = get(key)
        if have is None:
            sums[key] = [total, samples]
        else:
            have[0] += total
            have[1] += samples


def rollup_averages(sums_by_window):
    """{key: (avg7d, avg30d)} from {window: {key: (sum, samples)}}; pure."""
    keys = set()
    for sums in sums_by_window.values():
        keys.update(sums)
    out = {}
    for key in keys:
        row = []
        for name in DAY_WINDOWS:
            total, samples = sums_by_window[name].get(key, (0, 0))
            row.append(total / samples if samples else None)
        out[key] = tuple(row)
    return out


# --- window sums (pure) -----------------------------------------------------------------------

class Windows:
    """Per series, the sum and count of its 10m values in each window ending at slot, and its
    latest metadata: sums[key] = [sum1h, n1h, sum6h, n6h, sum12h, n12h, sum24h, n24h];
    meta[key] = (atlas_site, cloud, tier); before[key] = the metadata before the last step
    that saw the series (so that undoing that step restores it)."""

    def __init__(self, slot, sums=None, meta=None, before=None, stepped=False, seeded=None):
        self.slot = slot
        self.sums = sums if sums is not None else {}
        self.meta = meta if meta is not None else {}
        self.before = before if before is not None else {}
        # Whether slot was reached by a step (which can be undone), or seeded; and when the
        # sums were seeded.
        self.stepped = stepped
        self.seeded = seeded or slot

    @classmethod
    def from_pieces(cls, slot, pieces, piece_meta):
        """From the [sum, count] of each PIECES entry (newest first); pure."""
        sums, meta = {}, {}
        for i in range(len(pieces) - 1, -1, -1):  # oldest first: newer metadata wins
            for key, (total, n) in pieces[i].items():
                row = sums.get(key)
                if row is None:
                    row = sums[key] = [0] * (2 * len(WINDOWS))
                # Piece i lies inside window j for every j >= i.
                for j in range(i, len(WINDOWS)):
                    row[2 * j] += total
                    row[2 * j + 1] += n
                meta[key] = piece_meta[i][key]
        return cls(slot, sums, meta)

    def step(self, values, meta, leaving):
        """Move to slot + 10m: values (and meta) enter every window; leaving[j] holds the
        values of the slot that leaves window j. Series with nothing left in 24 h go."""
        sums, own_meta, before = self.sums, self.meta, self.before
        for key, value in values.items():
            row = sums.get(key)
            if row is None:
                sums[key] = [value, 1, value, 1, value, 1, value, 1]
            else:
                # The four windows, unrolled: this loop runs for every series every run.
                row[0] += value
                row[1] += 1
                row[2] += value
                row[3] += 1
                row[4] += value
                row[5] += 1
                row[6] += value
                row[7] += 1
            before[key] = own_meta.get(key, NO_META)
            own_meta[key] = meta.get(key, NO_META)
        for j, gone in enumerate(leaving):
            total, count = 2 * j, 2 * j + 1
            for key, value in gone.items():
                row = sums.get(key)
                if row is not None:
                    row[total] -= value
                    row[count] -= 1
        self._drop_empty()
        self.slot += SLOT
        self.stepped = True

    def unstep(self, values, leaving, leaving_meta):
        """The inverse of step(values, _, leaving): back to slot - 10m."""
        width = 2 * len(WINDOWS)
        for j, gone in enumerate(leaving):
            for key, value in gone.items():
                row = self.sums.get(key)
                if row is None:
                    row = self.sums[key] = [0] * width
                    self.meta[key] = self.before[key] = leaving_meta[j].get(key, NO_META)
                row[2 * j] += value
                row[2 * j + 1] += 1
        for key, value in values.items():
            row = self.sums.setdefault(key, [0] * width)
            for j in range(0, width, 2):
                row[j] -= value
                row[j + 1] -= 1
            if key in self.before:
                self.meta[key] = self.before[key]
        self._drop_empty()
        self.slot -= SLOT
        self.stepped = False

    def _drop_empty(self):
        last = 2 * len(WINDOWS) - 1
        for key in [k for k, row in self.sums.items() if row[last] <= 0]:
            del self.sums[key]
            self.meta.pop(key, None)
            self.before.pop(key, None)

    def averages(self, current, current_meta, rollup):
        """Average records at self.slot, sorted by key; pure."""
        make = Average._make
        sums, meta = self.sums, self.meta
        out = []
        for key in sorted(sums):
            s1, n1, s6, n6, s12, n12, s24, n24 = sums[key]
            avg7d, avg30d = rollup.get(key, (None, None))
            out.append(make((
                *key.split(SEP), *(current_meta.get(key) or meta.get(key) or NO_META).split(SEP),
                current.get(key, 0), s1 / n1 if n1 else None, s6 / n6 if n6 else None,
                s12 / n12 if n12 else None, s24 / n24 if n24 else None, avg7d, avg30d,
                min(1.0, n24 / EXPECTED_24H))))
        return out

    def dump(self):
        return {"slot": _epoch(self.slot), "seeded": _epoch(self.seeded),
                "stepped": self.stepped, "sums": self.sums, "meta": self.meta,
                "before": self.before}

    @classmethod
    def load(cls, payload):
        slot, seeded = (dt.datetime.fromtimestamp(int(payload[name]), dt.UTC)
                        for name in ("slot", "seeded"))
        sums = payload["sums"]
        width = 2 * len(WINDOWS)
        if not all(type(row) is list and len(row) == width for row in sums.values()):
            raise ValueError("bad window sums")
        return cls(slot, sums, payload["meta"], payload["before"], bool(payload["stepped"]),
                   seeded)


# --- files under data_dir -----------------------------------------------------------------------

class Store:
    """The window sums and the slots they were built from, in data_dir/cache/averages/."""

    def __init__(self, data_dir):
        self.directory = Path(data_dir) / "cache" / "averages"

    @contextlib.contextmanager
    def lock(self):
        """One run at a time updates the sums (cron and a manual run may overlap)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.directory / ".lock", "w") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            yield

    def _slot_path(self, slot):
        return self.directory / f"slot-{_epoch(slot)}.json.gz"

    def load_windows(self):
        path = self.directory / "windows.json.gz"
        try:
            return Windows.load(json.loads(gzip.decompress(path.read_bytes())))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError, AttributeError, EOFError) as e:
            log.warning("ignoring unreadable %s (%s); seeding again", path, e)
            return None

    def drop_windows(self):
        for name in ("windows.json.gz", "carried"):
            with contextlib.suppress(FileNotFoundError):
                (self.directory / name).unlink()

    def save_windows(self, windows):
        data = json.dumps(windows.dump(), separators=(",", ":")).encode()
        atomic_write(self.directory / "windows.json.gz", gzip.compress(data, compresslevel=1),
                     sync=False)
        # The slot alone, for forget_carried (which runs in every fetch_queues.py cycle).
        atomic_write(self.directory / "carried", str(_epoch(windows.slot)).encode(), sync=False)

    def carried_slot(self):
        """The slot of the stored sums (None without them; 0 if that is unknown)."""
        if not (self.directory / "windows.json.gz").exists():
            return None
        try:
            return int((self.directory / "carried").read_text())
        except (OSError, ValueError):
            return 0

    def has_slot(self, slot):
        return self._slot_path(slot).is_file()

    def clear_slots(self):
        for path in self.directory.glob("slot-*.json.gz"):
            with contextlib.suppress(OSError):
                path.unlink()

    def get_slot(self, slot):
        """(values, meta) of a slot as read when it was current, or None."""
        path = self._slot_path(slot)
        try:
            kept = json.loads(gzip.decompress(path.read_bytes()))
            return kept["values"], kept["meta"]
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError, KeyError, AttributeError, EOFError) as e:
            log.warning("ignoring unreadable %s (%s)", path, e)
            return None

    def put_slot(self, slot, values, meta):
        data = json.dumps({"values": values, "meta": meta}, separators=(",", ":")).encode()
        atomic_write(self._slot_path(slot), gzip.compress(data, compresslevel=1),
                     sync=False)

    def prune(self, slot):
        """Remove the slots no window ending at slot or later can need."""
        oldest = _epoch(slot - WINDOWS["avg24h"])
        for path in self.directory.glob("slot-*.json.gz"):
            try:
                if int(path.name[5:-8]) < oldest:
                    path.unlink()
            except (ValueError, OSError):
                continue


def forget_carried(data_dir, slot):
    """Called by fetch_queues.py before it writes the points of slot: if the carried sums
    already took that slot in (a slot written again by hand, or late), they are dropped and
    the next run seeds, so what was carried never goes stale."""
    store = Store(data_dir)
    if not store.directory.is_dir():
        return
    with store.lock():
        carried = store.carried_slot()
        at = _epoch(slot)
        if carried is not None and (carried == 0 or carried - WINDOWS["avg24h"].total_seconds()
                                    < at <= carried):
            log.info("the points of %s are written again after the averages carried them; "
                     "the next suspicious.py run seeds", slot)
            store.drop_windows()


class RollupCache:
    """avg7d/avg30d of every series for one UTC day, in data_dir/cache/rollup_averages.json."""

    def __init__(self, data_dir):
        self.path = Path(data_dir) / "cache" / "rollup_averages.json"

    def load(self, slot, max_age=ROLLUP_CACHE_MAX_AGE):
        """The cached {key: (avg7d, avg30d)} if computed for slot T's day, complete, at most
        max_age before T; else None."""
        try:
            with open(self.path, encoding="utf-8") as f:
                cached = json.load(f)
            good = (cached["day"] == _epoch(day_start(slot)) and cached["complete"]
                    and 0 <= slot.timestamp() - int(cached["slot"]) < max_age.total_seconds())
            if not good:
                return None
            return {key: tuple(values) for key, values in cached["series"].items()}
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            log.warning("ignoring unreadable %s: %s", self.path, e)
            return None

    def save(self, slot, complete, rollup):
        payload = {"day": _epoch(day_start(slot)), "slot": _epoch(slot), "complete": complete,
                   "series": rollup}
        atomic_write(self.path, json.dumps(payload, separators=(",", ":")))


# --- the computation --------------------------------------------------------------------------

class _Reader:
    """Runs the queries of one computation concurrently. Each reply is read in chunks and
    parsed as it comes, in the query's thread: a grouped reply of 250k series held whole
    as JSON costs hundreds of MB, its parsed dict a fraction of that."""

    def __init__(self, influx, threads):
        self.influx = influx
        self.pool = ThreadPoolExecutor(max_workers=threads)
        self.queries = 0

    def submit(self, q, parse):
        self.queries += 1
        return self.pool.submit(lambda: parse(self.influx.query_chunks(q)))

    def close(self):
        self.pool.shutdown(wait=True)


def compute(influx, slot, data_dir=None, save=True, threads=QUERY_THREADS):
    """(averages at slot T of every series with 10m points in (T - 24h, T], whether T has
    points). With data_dir, the window sums are carried from run to run (see the module
    docstring); save=False (a dry run) reads them but writes nothing."""
    started = time.monotonic()
    reader = _Reader(influx, threads)
    try:
        current_future = reader.submit(slot_query(slot), parse_slot)
        rollup_cache = RollupCache(data_dir) if data_dir is not None else None
        rollup = rollup_cache.load(slot) if rollup_cache is not None else None
        # Older than ROLLUP_CACHE_MAX_AGE but of T's day: a run that seeds uses it and leaves
        # the refresh to the next run, so that seeding and refreshing (each several seconds
        # at ATLAS scale) never fall on the same run.
        kept = None
        if rollup is None and rollup_cache is not None and not _will_step(Store(data_dir), slot):
            kept = rollup_cache.load(slot, max_age=DAY)

        def query_rollup():
            return _RollupRead(reader, slot, data_dir, save)

        rollup_read = query_rollup() if rollup is None and kept is None else None
        if data_dir is None:
            windows, how = _seed(reader, slot), "seeded"
            current, current_meta = current_future.result()
        else:
            store = Store(data_dir)
            # A dry run only reads: it takes no lock (that would create files).
            with store.lock() if save else contextlib.nullcontext():
                windows, current, current_meta, how = _carry(reader, store, slot, current_future,
                                                             save)
        if kept is not None:
            if how.startswith("seeded"):
                rollup = kept
                log.debug("rollup averages of %d series from the cache (refreshed by the next "
                          "run)", len(rollup))
            else:
                rollup_read = query_rollup()
        if rollup_read is not None:
            by_range, complete, source = rollup_read.result()
            rollup = rollup_averages(window_sums(by_range))
            if rollup_cache is not None and save:
                rollup_cache.save(slot, complete, rollup)
            log.debug("rollup averages of %d series %s (yesterday's %s)", len(rollup), source,
                      "present" if complete else "missing")
    finally:
        reader.close()
    averages = windows.averages(current, current_meta, rollup)
    log.debug("averages at %s: %d series, %s with %d queries in %.2f s", slot, len(averages),
              how, reader.queries, time.monotonic() - started)
    return averages, bool(current)


class _RollupRead:
    """The 1d rollup sums of the days before T's. The days whose sums downsample.py kept
    (rollups.DaySums) are added up from those files, read in a thread of their own, once the
    checked days' totals agree with InfluxDB's; the other days are grouped in InfluxDB (cheap
    where it holds no shard: days before the database had any). Every day is grouped in
    InfluxDB when a checked day disagrees."""

    def __init__(self, reader, slot, data_dir, save):
        self.reader, self.slot, self.save = reader, slot, save
        self.day = day_start(slot)
        every = range(1, max(DAY_WINDOWS.values()) + 1)     # days before T's day
        self.kept = rollups.DaySums(data_dir) if data_dir is not None else None
        self.have = set()
        if self.kept is not None and self.kept.directory.is_dir():
            self.have = {k for k in every if self.kept.path(_epoch(self.day - k * DAY)).is_file()}
        yesterday = self.day - DAY
        self.checks = {d: reader.submit(day_total_query(d), parse_total)
                       for d in checked_days(slot)
                       if d == yesterday or (self.day - d).days in self.have}
        self.yesterday = self.checks[yesterday]
        self.grouped = self._query(set(every) - self.have)
        self.loading = None
        if self.have:
            self.files = ThreadPoolExecutor(max_workers=1)
            self.loading = self.files.submit(self._load)

    def _query(self, missing):
        """{(after, days): [futures]}: the missing days (days before T's) of each range
        grouped in InfluxDB, one query per run of consecutive days."""
        out = {}
        for after, days in rollup_ranges():
            futures = out[(after, days)] = []
            run = []
            for k in range(after + 1, days + 2):
                if k <= days and k in missing:
                    run.append(k)
                elif run:
                    futures.append(self.reader.submit(
                        rollup_query(self.slot, run[-1], run[0] - 1), parse_rollup))
                    run = []
        return out

    def _load(self):
        """({(after, days): {key: [sum, samples]}} of the kept days, {checked day: its total
        samples}), one day's file in memory at a time; None when a file cannot be read."""
        by_range, totals = {}, {}
        for after, days in rollup_ranges():
            sums = by_range[(after, days)] = {}
            for k in range(after + 1, days + 1):
                if k not in self.have:
                    continue
                day = self.day - k * DAY
                columns = self.kept.load(_epoch(day))
                if columns is None:
                    return None
                if day in self.checks:
                    totals[day] = sum(columns[2])
                add_day(sums, columns)
        return by_range, totals

    def _usable(self, loaded):
        if loaded is None:
            return False
        for day, total in loaded[1].items():
            if total != self.checks[day].result():
                log.info("the day sums of %s (%d samples) differ from InfluxDB's 1d rollup "
                         "(%d): they are dropped and the rollup is queried", day.date(),
                         total, self.checks[day].result())
                if self.save:
                    self.kept.drop(_epoch(day))
                return False
        return True

    def result(self):
        """({(after, days): {key: [sum, samples]}}, whether yesterday's rollup exists, how)."""
        how = "queried"
        by_range = {r: {} for r in rollup_ranges()}
        if self.loading is not None:
            try:
                loaded = self.loading.result()
            finally:
                self.files.shutdown()
            if self._usable(loaded):
                by_range = loaded[0]
                queried = max(DAY_WINDOWS.values()) - len(self.have)
                how = (f"from the day sums downsample.py kept ({len(self.have)} days"
                       + (f"; {queried} queried)" if queried else ")"))
            else:
                self.grouped = self._query(set(range(1, max(DAY_WINDOWS.values()) + 1)))
        for r, futures in self.grouped.items():
            sums = by_range[r]
            for future in futures:
                add_rows(sums, ((key, *pair) for key, pair in future.result().items()))
        return by_range, bool(self.yesterday.result()), how


def _within_steps(previous, slot):
    """Whether sums carried at epoch `previous` can be stepped to slot (at most MAX_STEPS)."""
    return previous < _epoch(slot) <= previous + MAX_STEPS * SLOT.total_seconds()


def _will_step(store, slot):
    """Whether the carried sums are near enough for _carry to step to slot (a cheap guess:
    it may still seed, after RESEED_AFTER)."""
    carried = store.carried_slot()
    return bool(carried) and _within_steps(carried, slot)


def _seed(reader, slot):
    # The longest pieces first: they finish last.
    futures = {}
    for i in sorted(range(len(PIECES)), key=lambda i: PIECES[i][0] - PIECES[i][1]):
        sum_query, count_query = piece_queries(slot, *PIECES[i])
        futures[i] = (reader.submit(count_query, parse_counts),
                      reader.submit(sum_query, parse_sums))
    parsed = [join_piece(futures[i][0].result(), futures[i][1].result())
              for i in range(len(PIECES))]
    return Windows.from_pieces(slot, [p[0] for p in parsed], [p[1] for p in parsed])


def _carry(reader, store, slot, current_future, save):
    """The windows at slot from the stored ones: by stepping, by undoing a slot and stepping
    again (a rerun), or by seeding."""
    windows = store.load_windows()
    previous = windows.slot if windows is not None else None
    # A rerun undoes the step that reached the slot (a seeded slot is seeded again).
    before = store.get_slot(slot) if previous == slot and windows.stepped else None
    rerun = before is not None
    near = (previous is not None and _within_steps(_epoch(previous), slot)
            and slot - windows.seeded < RESEED_AFTER)
    if not rerun and not near:
        windows = _seed(reader, slot)
        current, current_meta = current_future.result()
        if previous is not None and previous > slot:
            # A backfill behind the regular runs: their state stays as it is, unless this
            # slot is inside their windows and its points are not those they carry.
            if save and slot > previous - WINDOWS["avg24h"] and (
                    store.get_slot(slot) != (current, current_meta)):
                log.info("the points of %s changed since they were carried; the next run "
                         "seeds again", slot)
                store.drop_windows()
            return windows, current, current_meta, "seeded (before the carried slot)"
        if save:
            store.clear_slots()
            store.put_slot(slot, current, current_meta)
            store.save_windows(windows)
        return windows, current, current_meta, "seeded"

    targets = [slot] if rerun else [previous + k * SLOT
                                     for k in range(1, (slot - previous) // SLOT + 1)]
    needed = set(targets) | {t - length for t in targets for length in WINDOWS.values()}
    needed.discard(slot)
    # Slots not kept (from before the seed, or missed): read them, concurrently.
    pending = {s: reader.submit(slot_query(s), parse_slot) for s in sorted(needed)
               if not store.has_slot(s)}
    columns = {}
    read = set()

    def column(s):
        if s not in columns:
            kept = store.get_slot(s) if s not in pending else None
            if kept is None:
                future = pending.get(s) or reader.submit(slot_query(s), parse_slot)
                kept = future.result()
                read.add(s)
            columns[s] = kept
        return columns[s]

    if rerun:
        leaving = [column(slot - length) for length in WINDOWS.values()]
        windows.unstep(before[0], [v for v, _ in leaving], [m for _, m in leaving])
        how = "stepped again (a rerun)"
    else:
        how = f"stepped {len(targets)} slot{'s' if len(targets) > 1 else ''}"
    for target in targets:
        if target == slot:
            columns[slot] = current_future.result()
        values, meta = column(target)
        windows.step(values, meta, [column(target - length)[0]
                                    for length in WINDOWS.values()])
    current, current_meta = columns[slot]
    if save:
        # Kept: the new slots, and the older ones read now (each leaves four windows in turn).
        for s in sorted(read | {slot}):
            store.put_slot(s, *columns[s])
        store.save_windows(windows)
        store.prune(slot)
    return windows, current, current_meta, f"{how}, {len(read)} slots read"


def points(averages, slot):
    """"10m"."averages" points at slot T; windows without data are left out."""
    timestamp = _epoch(slot)
    tag_names = schema.AVERAGES.tags
    out = []
    for a in averages:
        tags = {t: getattr(a, t) for t in tag_names}
        fields = {"current": a.current}
        for name in schema.AVERAGE_WINDOWS:
            fields[name] = getattr(a, name)
        fields["coverage"] = a.coverage
        out.append(Point(tags, fields, timestamp))
    return out
