"""The InfluxDB spool: a write-ahead log of line-protocol files under data_dir/spool.

Every write puts its lines on disk first (gzip, fsync, atomic rename), holding an exclusive
flock on the file until InfluxDB has them; then the file is removed. A file whose writer is
gone (failed, or killed) is replayed by a later run. Only the holder of spool/.replay.lock
replays, and it skips files whose writer still holds them, so no two processes ever post or
remove the same file.

File layout: `<ns>-<random>.lp.gz`, first line `# qmonit-spool {"db": ..., "rp": ...}`, then
the lines. Files from older versions (`<ns>-<random>.<rp>.lp`, plain text, no header) are read
too. Set aside (never replayed, never deleted): `*.corrupt` (unreadable), `*.failed` (InfluxDB
kept refusing it). Lines InfluxDB refuses one by one (HTTP 400) go to dead-letters.txt with the
reason. late-hours.json lists the hours whose 10m points were written by a replay, for
downsample.py.
"""
import contextlib
import fcntl
import gzip
import json
import logging
import os
import time
import uuid
import zlib
from pathlib import Path

from ..core.errors import SinkError
from ..core.files import atomic_write

log = logging.getLogger(__name__)

MAGIC = "# qmonit-spool "
SUFFIX = ".lp.gz"
LEGACY_SUFFIX = ".lp"
DEAD_LETTERS = "dead-letters.txt"
LATE_HOURS = "late-hours.json"
RETRIES = ".retries.json"
LOCK = ".replay.lock"
# A file InfluxDB refuses (not 400, not a connection failure) is tried this many times, the
# waits between tries doubling from retry_base seconds, then set aside.
MAX_ATTEMPTS = 5
# Temporary files older than this are leftovers of a killed writer.
STALE_TMP = 3600


class CorruptFile(Exception):
    """A spool file that cannot be read."""


class SpoolFull(SinkError):
    """Keeping these lines would take the spool past [paths] spool_max_mb."""


class Held:
    """A spool file and the open descriptor that holds its flock."""

    def __init__(self, path, fd):
        self.path = Path(path)
        self.fd = fd

    def release(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def remove(self):
        # Unlink before releasing: a replayer that waits for the lock finds the file gone.
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
        self.release()


class Spool:
    def __init__(self, directory, max_bytes=None, retry_base=600):
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.retry_base = retry_base

    # --- writing ------------------------------------------------------------------------

    def put(self, database, rp, lines, hold=False):
        """Keep lines on disk; returns the path, or with hold a Held whose flock is kept.

        Raises SpoolFull past max_bytes, SinkError when the directory cannot be written."""
        header = MAGIC + json.dumps({"db": database, "rp": rp}, sort_keys=True) + "\n"
        body = gzip.compress((header + "\n".join(lines) + "\n").encode("utf-8"),
                             compresslevel=1, mtime=0)
        if self.max_bytes is not None:
            used = self.size()
            if used + len(body) > self.max_bytes:
                full = SpoolFull(self.directory, (
                    f"spool full: {used / 1e6:.1f} MB kept, {len(body) / 1e6:.1f} MB more would "
                    f"pass [paths] spool_max_mb = {self.max_bytes / 1e6:g}"))
                full.needed = len(body)
                raise full
        name = f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}{SUFFIX}"
        path = self.directory / name
        tmp = self.directory / f".{name}.{os.getpid()}.tmp"
        fd = None
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX)
            view = memoryview(body)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
            os.replace(tmp, path)
            _fsync_dir(self.directory)
        except OSError as e:
            if fd is not None:
                os.close(fd)
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise SinkError(self.directory, e.strerror or str(e)) from None
        held = Held(path, fd)
        if hold:
            return held
        held.release()
        return path

    # --- reading ------------------------------------------------------------------------

    def files(self):
        """Replayable files, oldest first."""
        try:
            entries = list(os.scandir(self.directory))
        except OSError:
            return []
        names = sorted(e.name for e in entries if not e.name.startswith(".")
                       and (e.name.endswith(SUFFIX) or e.name.endswith(LEGACY_SUFFIX)))
        return [self.directory / n for n in names]

    def size(self):
        """Bytes the spool holds (every file in it, set-aside ones included)."""
        total = 0
        try:
            for entry in os.scandir(self.directory):
                with contextlib.suppress(OSError):
                    if entry.is_file(follow_symlinks=False):
                        total += entry.stat(follow_symlinks=False).st_size
        except OSError:
            pass
        return total

    def claim(self, path):
        """Hold a file no one else holds; None when its writer still has it, or it is gone."""
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            gone = os.fstat(fd).st_nlink == 0
        except OSError:
            os.close(fd)
            return None
        if gone:
            os.close(fd)
            return None
        return Held(path, fd)

    @staticmethod
    def read(held, database):
        """(database, rp, lines) of a held file; raises CorruptFile."""
        path = held.path
        try:
            with os.fdopen(os.dup(held.fd), "rb") as f:
                raw = f.read()
            if path.name.endswith(SUFFIX):
                raw = gzip.decompress(raw)
            text = raw.decode("utf-8")
        except (OSError, EOFError, zlib.error, UnicodeDecodeError) as e:
            raise CorruptFile(f"{type(e).__name__}: {e}") from None
        lines = text.split("\n")
        if path.name.endswith(SUFFIX):
            first = lines.pop(0) if lines else ""
            if not first.startswith(MAGIC):
                raise CorruptFile("no spool header")
            try:
                meta = json.loads(first[len(MAGIC):])
                db, rp = meta["db"], meta["rp"]
            except (ValueError, KeyError, TypeError):
                raise CorruptFile("unparsable spool header") from None
            if not (isinstance(db, str) and isinstance(rp, str) and db and rp):
                raise CorruptFile("unparsable spool header")
        else:
            db, rp = database, path.name.rsplit(".", 2)[-2]
        return db, rp, [line for line in lines if line and not line.startswith("#")]

    # --- replay bookkeeping ---------------------------------------------------------------

    @contextlib.contextmanager
    def replay_lock(self):
        """Yields True when this process holds the replay lock, False when another does."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.directory / LOCK, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as e:
            log.warning("cannot open the spool lock in %s (%s); not replaying", self.directory,
                        e.strerror or e)
            yield False
            return
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            yield True
        finally:
            os.close(fd)

    def set_aside(self, path, suffix, why):
        target = path.with_name(path.name + suffix)
        try:
            os.replace(path, target)
        except OSError as e:
            log.warning("spool file %s: %s; could not set it aside (%s)", path, why,
                        e.strerror or e)
            return None
        log.warning("spool file %s: %s; set aside as %s", path.name, why, target)
        return target

    def due(self, retries, path, now):
        entry = retries.get(path.name)
        return entry is None or entry.get("next", 0) <= now

    def refused(self, retries, path, now, why):
        """Count one refusal of a file; set it aside after MAX_ATTEMPTS. Returns the attempts."""
        entry = retries.setdefault(path.name, {"attempts": 0, "next": 0})
        entry["attempts"] += 1
        if entry["attempts"] >= MAX_ATTEMPTS:
            retries.pop(path.name, None)
            self.set_aside(path, ".failed", f"InfluxDB refused it {MAX_ATTEMPTS} times ({why})")
        else:
            wait = self.retry_base * 2 ** (entry["attempts"] - 1)
            entry["next"] = now + wait
            log.warning("spool file %s refused by InfluxDB (%s); try %d of %d in %.0f s",
                        path.name, why, entry["attempts"], MAX_ATTEMPTS, wait)
        return entry.get("attempts", MAX_ATTEMPTS)

    def load_retries(self):
        return _load_json(self.directory / RETRIES, {})

    def save_retries(self, retries):
        names = {p.name for p in self.files()}
        kept = {k: v for k, v in retries.items() if k in names}
        path = self.directory / RETRIES
        if kept or path.exists():
            _save_json(path, kept)

    def dead_letter(self, database, rp, refused):
        """Append (line, reason) pairs InfluxDB refused for good; returns the file."""
        path = self.directory / DEAD_LETTERS
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        text = "".join(f"# {stamp} db={database} rp={rp}: {' '.join(reason.split())[:300]}\n"
                       f"{line}\n" for line, reason in refused)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            with open(path, "a", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
        except OSError as e:
            raise SinkError(path, e.strerror or str(e)) from None
        return path

    def remove_stale_tmp(self, now):
        try:
            entries = list(os.scandir(self.directory))
        except OSError:
            return
        for entry in entries:
            if entry.name.startswith(".") and entry.name.endswith(".tmp"):
                with contextlib.suppress(OSError):
                    if entry.stat().st_mtime < now - STALE_TMP:
                        os.unlink(entry.path)

    # --- hours written late, for downsample.py --------------------------------------------

    def add_late_hours(self, hours):
        if not hours:
            return
        path = self.directory / LATE_HOURS
        try:
            with self._hours_lock():
                known = set(_load_json(path, []))
                if not set(hours) <= known:
                    _save_json(path, sorted(known | set(hours)))
        except (OSError, SinkError) as e:
            # The points are written; only downsample's late-hour recheck misses them.
            log.warning("could not record late hours in %s: %s", path, e)

    def late_hours(self):
        """Epoch starts of hours whose 10m points a replay wrote."""
        return sorted(h for h in _load_json(self.directory / LATE_HOURS, [])
                      if isinstance(h, int))

    def forget_late_hours(self, hours):
        path = self.directory / LATE_HOURS
        if not path.exists():
            return
        with self._hours_lock():
            left = sorted(set(_load_json(path, [])) - set(hours))
            _save_json(path, left)

    @contextlib.contextmanager
    def _hours_lock(self):
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.directory / ".late-hours.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


def line_hours(lines):
    """Hour starts (epoch seconds) of line-protocol lines with second timestamps."""
    hours = set()
    for line in lines:
        stamp = line.rpartition(" ")[2]
        if stamp.isdigit():
            hours.add(int(stamp) - int(stamp) % 3600)
    return hours


def _load_json(path, default):
    try:
        with open(path, encoding="utf-8") as f:
            value = json.load(f)
    except (OSError, ValueError):
        return default
    return value if isinstance(value, type(default)) else default


def _save_json(path, value):
    atomic_write(path, json.dumps(value))


def _fsync_dir(directory):
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
