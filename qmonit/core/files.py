"""Atomic writes and small JSON state files under data_dir."""
import json
import logging
import os
import time
from pathlib import Path

from .errors import SinkError

log = logging.getLogger(__name__)

# State dated more than one 10-minute slot after the wall clock is from a run with the clock
# (or --timestamp) far ahead: it must not keep later runs from updating anything.
AHEAD_MARGIN = 600


def atomic_write(path, data, sync=True):
    """Write text or bytes to path so that a reader sees the old or the new file, never half
    of one. sync=False skips the fsync, for caches that a crash may lose (they are rebuilt)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        binary = isinstance(data, bytes)
        with open(tmp, "wb" if binary else "w", encoding=None if binary else "utf-8") as f:
            f.write(data)
            if sync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise SinkError(path, e.strerror or str(e)) from None
    return path


class State:
    """A script's small JSON state (last slot, notified flags...) in data_dir/state/NAME.json."""

    def __init__(self, data_dir, name):
        self.path = Path(data_dir) / "state" / f"{name}.json"

    def load(self):
        try:
            with open(self.path, encoding="utf-8") as f:
                value = json.load(f)
            return value if isinstance(value, dict) else {}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError):
            return {}

    def save(self, value):
        atomic_write(self.path, json.dumps(value, indent=1, sort_keys=True))


def ahead_of_clock(epoch, where, wall=None):
    """True, with one warning, when a stored time (epoch seconds) lies more than one slot
    after the wall clock: such state is not trusted as a guard."""
    wall = time.time() if wall is None else wall
    limit = wall - wall % AHEAD_MARGIN + AHEAD_MARGIN
    if epoch is None or epoch <= limit:
        return False
    log.warning("%s: stored time %s is after the clock; not trusted", where,
                time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(epoch)))
    return True
