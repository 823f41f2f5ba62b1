"""Carried rollup sums, so that a cron rollup need not read back the points just written.

fetch_queues.py adds every 10m slot it writes to the partial sums of its hour, downsample.py
every hour it writes to those of its day, under data_dir/cache/rollups/:
- LEVEL-BUCKET.parts.json: the parts (slots of the hour, hours of the day) declared so far,
  each with its sample count and a digest of its lines. Written BEFORE the points go to
  InfluxDB, so it never knows less than InfluxDB holds.
- LEVEL-BUCKET.json.gz: the sums of the parts added so far, as downsample.Rollup keeps them
  (zlib of MAGIC and a marshal of them in columns; the JSON rows of earlier versions are
  read too).

InfluxDB stays the truth: downsample.py uses a bucket's sums only when their sample total
equals InfluxDB's own count for the bucket (one number, not one per series), and reads the
points otherwise. It skips counting a look-back bucket whose declared parts are the same as
when it last rolled that bucket up (data_dir/state/rollups_LEVEL.json).

Exactness: a part adds one term per series, in time order, as summing a read of the points
does (floating-point sums depend on their order). A part added out of order, or declared
again with other values, drops the sums; the raw read then takes over for that bucket.
"""
import contextlib
import hashlib
import json
import logging
import marshal
import zlib
from pathlib import Path

from ..core.files import State, atomic_write

log = logging.getLogger(__name__)

# The start of a carried-sums file (after zlib): marshal of tags, parts and sums in columns.
MAGIC = b"qmonit-rollup-sums 2\n"


def digest(lines):
    """A short digest of a part's line-protocol lines, in any order: tells a rerun with
    other values from one with the same."""
    h = hashlib.blake2b(digest_size=12)
    if lines:
        # One update of the whole text: the same digest as one update a line, in one pass.
        h.update(("\n".join(sorted(lines)) + "\n").encode())
    return h.hexdigest()


def total(parts):
    return sum(samples for samples, _ in parts.values())


def fingerprint(parts):
    return hashlib.blake2b(json.dumps(sorted(parts.items())).encode(),
                           digest_size=12).hexdigest()


def merge_into(groups, key, acc):
    """Add the sums acc to groups[key], element by element."""
    mine = groups.get(key)
    if mine is None:
        groups[key] = list(acc)
    else:
        for i, value in enumerate(acc):
            mine[i] += value


def columns(groups, width):
    """{tag values: acc} as stored: each distinct tag value once ("values"), each tag a column
    of indices into them ("columns"), the sums in the same order ("sums")."""
    keys = list(zip(*groups)) if groups else [()] * width
    values = list(set().union(*keys))
    index = {value: i for i, value in enumerate(values)}
    return {"values": values, "columns": [list(map(index.__getitem__, key)) for key in keys],
            "sums": list(groups.values())}


def _from_json(kept):
    """What load gives, from the JSON rows of earlier versions."""
    tags = tuple(kept["tags"])
    n = len(tags)
    same = {}
    groups = {tuple([same.setdefault(v, v) for v in row[:n]]): row[n:] for row in kept["rows"]}
    parts = {int(p): (int(v[0]), str(v[1])) for p, v in kept["parts"].items()}
    return parts, tags, groups


class Carried:
    """The carried sums of one level ("1h": of hours, from slots; "1d": of days, from hours)."""

    def __init__(self, data_dir, level):
        self.directory = Path(data_dir) / "cache" / "rollups"
        self.level = level

    def path(self, bucket, suffix):
        return self.directory / f"{self.level}-{int(bucket)}.{suffix}"

    def parts(self, bucket):
        """{part: (samples, digest)} declared for bucket ({} if none)."""
        try:
            raw = json.loads(self.path(bucket, "parts.json").read_bytes())
            return {int(p): (int(v[0]), str(v[1])) for p, v in raw.items()}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, TypeError, KeyError, IndexError) as e:
            log.warning("ignoring unreadable parts of %s bucket %s (%s)", self.level, bucket, e)
            return {}

    def declare(self, bucket, new):
        """Record parts {part: (samples, digest)} of bucket before they are written. A part
        declared again with another digest (other values) drops the bucket's sums."""
        parts = self.parts(bucket)
        if all(parts.get(p) == v for p, v in new.items()):
            return
        if any(p in parts and parts[p][1] != v[1] for p, v in new.items()):
            self.drop_sums(bucket)
        parts.update(new)
        atomic_write(self.path(bucket, "parts.json"),
                     json.dumps({str(p): list(v) for p, v in sorted(parts.items())}).encode(),
                     sync=False)

    def drop_sums(self, bucket):
        with contextlib.suppress(FileNotFoundError):
            self.path(bucket, "json.gz").unlink()

    def load(self, bucket):
        """(parts, tag names, {tag values: acc}) as added so far, or None."""
        path = self.path(bucket, "json.gz")
        try:
            raw = zlib.decompress(path.read_bytes())
            if raw.startswith(b"{"):
                return _from_json(json.loads(raw))     # written by an earlier version
            if not raw.startswith(MAGIC):
                raise ValueError("not carried sums")
            # Our own cache under data_dir (only this account writes it); marshal takes
            # a fifth of json's time for the 200k numbers of 25k series, keeps ints and
            # floats as they were, and a damaged file raises (ignored below).
            kept = marshal.loads(raw[len(MAGIC):])  # noqa: S302
            tags = tuple(kept["tags"])
            # Each distinct tag value once (clouds, sites, tiers repeat): the sums of 250k
            # series stay well inside memory, and the keys are built column by column in C.
            values = kept["values"]
            columns = [map(values.__getitem__, column) for column in kept["columns"]]
            sums = kept["sums"]
            groups = dict(zip(zip(*columns) if columns else [()], sums))
            if len(groups) != len(sums) or len(kept["columns"]) != len(tags):
                raise ValueError("columns and sums disagree")
            return dict(kept["parts"]), tags, groups
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError, KeyError, IndexError, EOFError,
                zlib.error) as e:
            log.warning("ignoring unreadable %s (%s)", path, e)
            return None

    def add(self, bucket, contributions, tags):
        """Add parts in time order: contributions [(part, (samples, digest), {tag values:
        acc})]. Returns False when the sums were dropped instead."""
        sums = self.open(bucket, tags)
        for part, info, accs in contributions:
            sums.add(part, info, accs)
        return sums.save()

    def open(self, bucket, tags):
        return Sums(self, bucket, tags)

    def prune(self, before):
        """Remove what is kept for buckets older than before."""
        for path in self.directory.glob(f"{self.level}-*"):
            try:
                bucket = int(path.name.split("-", 1)[1].split(".", 1)[0])
            except ValueError:
                continue
            if bucket < before:
                with contextlib.suppress(OSError):
                    path.unlink()


class Sums:
    """The carried sums of one bucket, open for adding parts one after the other."""

    def __init__(self, carried, bucket, tags):
        self.carried, self.bucket, self.tags = carried, bucket, tuple(tags)
        kept = carried.load(bucket)
        self.parts, self.groups = ({}, {}) if kept is None or kept[1] != self.tags \
            else (kept[0], kept[2])
        self.ok = True
        self.changed = False

    def add(self, part, info, accs):
        """Add one part: info (samples, digest), accs {tag values: acc}, one term a series."""
        if not self.ok or self.parts.get(part) == info:
            return                          # dropped, or the same part again: already in
        if part in self.parts or (self.parts and part < max(self.parts)):
            # Other values, or out of order: the sums would not be what a read gives.
            self.ok = False
            self.carried.drop_sums(self.bucket)
            return
        for key, acc in accs.items():
            merge_into(self.groups, key, acc)
        self.parts[part] = info
        self.changed = True

    def save(self):
        if not self.ok:
            return False
        if not self.changed:
            return True
        data = marshal.dumps({"tags": list(self.tags),
                              "parts": {int(p): (int(v[0]), str(v[1]))
                                        for p, v in self.parts.items()},
                              **columns(self.groups, len(self.tags))})
        atomic_write(self.carried.path(self.bucket, "json.gz"), zlib.compress(MAGIC + data, 1),
                     sync=False)
        return True


class Book:
    """What downsample.py last rolled up per bucket of a level: [source samples, fingerprint
    of the declared parts], so a bucket whose parts did not change since needs no count."""

    def __init__(self, data_dir, level):
        self.carried = Carried(data_dir, level)
        self.state = State(data_dir, f"rollups_{level}")
        try:
            self.rolled = {int(b): list(v) for b, v in self.state.load().items()}
        except (ValueError, TypeError):
            self.rolled = {}
        self.seen = {}

    def sort(self, buckets):
        """(unchanged, rewritten): buckets whose declared parts are as when rolled up, and
        those declared again with other values but the same sample count."""
        unchanged, rewritten = set(), set()
        for bucket in buckets:
            parts = self.carried.parts(bucket)
            if not parts:
                continue
            now = [total(parts), fingerprint(parts)]
            self.seen[bucket] = now
            before = self.rolled.get(bucket)
            if before == now:
                unchanged.add(bucket)
            elif before and before[0] == now[0]:
                rewritten.add(bucket)
        return unchanged, rewritten

    def mark(self, bucket, samples):
        """bucket is rolled up from samples source samples (InfluxDB's count)."""
        seen = self.seen.get(bucket)
        if seen is not None:
            self.rolled[bucket] = [samples, seen[1]]

    def save(self, keep_from):
        self.rolled = {b: v for b, v in self.rolled.items() if b >= keep_from}
        self.state.save({str(b): v for b, v in sorted(self.rolled.items())})


class DaySums:
    """Per series key, the jobs_sum and samples of the 1d rollup of each UTC day, as
    downsample.py last wrote it, in data_dir/cache/day_sums/DAY.json.gz: suspicious.py's
    avg7d/avg30d add 30 of them up instead of grouping 30 days of 25k+ series in InfluxDB
    (several seconds, more than the rest of a seed). suspicious.py checks a day's total samples
    against InfluxDB's before trusting the files (averages._RollupRead). Kept as columns, each
    key's parts joined by SEP: loading one is a few milliseconds at 25k series."""

    KEEP_DAYS = 32
    SEP = "\x1f"

    def __init__(self, data_dir):
        self.directory = Path(data_dir) / "cache" / "day_sums"

    def path(self, day):
        return self.directory / f"{int(day)}.json.gz"

    def save(self, day, sums):
        """sums: {series key tuple: [jobs_sum, samples]} of every series of the day."""
        keys = sorted(sums)
        data = json.dumps({"day": int(day), "keys": [self.SEP.join(k) for k in keys],
                           "sums": [sums[k][0] for k in keys],
                           "samples": [sums[k][1] for k in keys]},
                          separators=(",", ":")).encode()
        self.directory.mkdir(parents=True, exist_ok=True)
        atomic_write(self.path(day), zlib.compress(data, 1), sync=False)

    def load(self, day):
        """(keys joined by SEP, jobs_sums, samples) of day, three lists, or None (missing or
        unreadable)."""
        path = self.path(day)
        try:
            kept = json.loads(zlib.decompress(path.read_bytes()))
            columns = kept["keys"], kept["sums"], kept["samples"]
            if kept["day"] != int(day) or len({len(c) for c in columns}) != 1:
                raise ValueError("not this day's sums")
            return columns
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError, KeyError, zlib.error) as e:
            log.warning("ignoring unreadable %s (%s)", path, e)
            return None

    def drop(self, day):
        with contextlib.suppress(FileNotFoundError):
            self.path(day).unlink()

    def prune(self, before):
        """Remove the days older than before."""
        for path in self.directory.glob("*.json.gz"):
            try:
                if int(path.name.split(".", 1)[0]) < before:
                    path.unlink()
            except (ValueError, OSError):
                continue
