"""What every job shares around its work: timing, the qmonit_runs record, dry-run output."""
import datetime as dt
import json
import logging
import sys
import time

from ..core import schema
from ..core.errors import QMonitError
from .transform import Point, encode

log = logging.getLogger(__name__)


class Run:
    """Times one run of a script and records it in "10m"."qmonit_runs" at its slot.

    The record is best effort: a run that cannot reach InfluxDB is failing already.
    """

    def __init__(self, script, slot):
        self.script = script
        self.slot = slot
        self.started = time.monotonic()
        self.points = 0
        self.errors = 0

    def elapsed(self):
        return time.monotonic() - self.started

    def point(self, status):
        return Point({schema.SCRIPT: self.script, schema.STATUS: status},
                     {"duration_s": round(self.elapsed(), 3), "points": int(self.points),
                      "errors": int(self.errors)},
                     int(self.slot.timestamp()))

    def record(self, influx, status):
        # Lines InfluxDB refused for good (dead letters) are errors of this run.
        self.errors += getattr(influx, "dead_letters", 0)
        influx.dead_letters = 0
        try:
            influx.write_lines(schema.RUNS.rp, encode(schema.RUNS, [self.point(status)]))
        except QMonitError as e:
            log.debug("could not record the run in %s: %s", schema.RUNS.name, e)

    def finish(self, influx, failures=()):
        """Record the run, counting `failures` (sinks that failed while the others were still
        written), then raise them as one error naming every server."""
        self.errors += len(failures)
        self.record(influx, "error" if failures else "ok")
        if len(failures) == 1:
            raise failures[0]
        if failures:
            raise QMonitError("; and ".join(str(e) for e in failures))


def print_lines(measurement, lines, out=None):
    out = out or sys.stdout
    print(f"# would write {len(lines)} points to {measurement.qualified}", file=out)
    for line in lines:
        print(line, file=out)


def print_rows(action, columns, rows, out=None):
    out = out or sys.stdout
    print(f"# would {action} {len(rows)} rows of MySQL `{schema.MYSQL_JOBS_TABLE}`", file=out)
    for row in rows:
        print(json.dumps(dict(zip(columns, row)), default=_json_default, ensure_ascii=False),
              file=out)


def _json_default(value):
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    return str(value)
