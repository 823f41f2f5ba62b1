"""Atomic writes and small JSON state files under data_dir."""
import json
import os
from pathlib import Path

from .errors import SinkError


def atomic_write(path, text):
    """Write text to path so that a reader sees the old or the new file, never half of one."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
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
