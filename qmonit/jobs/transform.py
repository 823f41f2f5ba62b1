"""Pure transforms of the 10-minute job: PanDA counts + CRIC metadata -> points and rows.

Nothing here does I/O or reads the clock; the slot time comes in as an argument.
"""
import datetime as dt
from collections import namedtuple
from functools import lru_cache

from ..core import lineprotocol, schema
from ..sources.cric import DEFAULT_MULTICORE, UNKNOWN_QUEUE

SLOT = dt.timedelta(minutes=10)

Point = namedtuple("Point", "tags fields time")


def floor_time(when, step):
    """The start of the bucket of length step (a timedelta) that holds when (aware UTC)."""
    seconds = int(step.total_seconds())
    epoch = int(when.timestamp())
    return dt.datetime.fromtimestamp(epoch - epoch % seconds, dt.UTC)


def slot_of(now):
    return floor_time(now, SLOT)


def resource_factor(resource, corecount):
    """Cores a job of this resource type holds: 1 for single-core, the queue's corecount else.

    Without a corecount (CRIC's is null), a multi-core type (MCORE, MCORE_HIMEM, ...) holds
    ATLAS's standard 8 cores, anything else 1."""
    kind = str(resource or "").upper()
    if kind.startswith("SCORE"):
        return 1.0
    if not corecount:
        return float(DEFAULT_MULTICORE) if "MCORE" in kind else 1.0
    return float(max(corecount, 1))


def job_points(stats, queues, pledges, slot, time_window, hs06=None):
    """One jobs point per (queue, label, resource, status) that PanDA reported: a list of
    iter_job_points(...)."""
    return list(iter_job_points(stats, queues, pledges, slot, time_window, hs06))


def iter_job_points(stats, queues, pledges, slot, time_window, hs06=None):
    """One jobs point per (queue, label, resource, status) that PanDA reported, one at a time.

    queues maps PanDA queue -> cric.QueueInfo; a queue CRIC does not know gets 'unknown' tags.
    pledges maps federation -> HS06 pledge; a missing one is 0.
    hs06 maps PanDA queue -> measured HS06 per core; a missing one leaves HS06_benchmark out.
    """
    hs06 = hs06 or {}
    timestamp = int(slot.timestamp())
    for queue, labels in stats.items():
        info = queues.get(queue, UNKNOWN_QUEUE)
        meta = info.tags()
        pledge = float(pledges.get(info.federation, 0.0))
        for label, resources in labels.items():
            for resource, statuses in resources.items():
                factor = resource_factor(resource, info.corecount)
                for status, count in statuses.items():
                    tags = {schema.PANDA_QUEUE: queue, schema.PROD_SOURCE: label,
                            schema.RESOURCE: resource, schema.JOB_STATUS: status, **meta}
                    fields = {"jobs": int(count), "time_window": int(time_window),
                              "resource_factor": factor, "corepower": float(info.corepower),
                              "federation_HS06_pledge": pledge,
                              "HS06_benchmark": hs06.get(queue)}
                    yield Point(tags, fields, timestamp)


@lru_cache(maxsize=200_000)
def _escaped(text):
    return lineprotocol.escape_key(text)


def encode(measurement, points):
    """Line protocol for points of one measurement; the tags are written in the order given."""
    name = lineprotocol.escape_measurement(measurement.name)
    fmt = lineprotocol.format_value
    lines = []
    for tags, fields, timestamp in points:
        tag_part = "".join(f",{_escaped(k)}={_escaped(str(v))}" for k, v in tags.items()
                           if v is not None and v != "")
        field_part = ",".join(f"{_escaped(k)}={fmt(v)}" for k, v in fields.items()
                              if v is not None)
        lines.append(f"{name}{tag_part} {field_part} {timestamp}")
    return lines


def job_lines(stats, queues, pledges, slot, time_window, hs06=None):
    """encode(JOBS, job_points(...)), built without a dict per point: the hot path at ATLAS scale.

    The escaped tags of a (queue, label, resource) are built once for all its statuses."""
    name = lineprotocol.escape_measurement(schema.JOBS.name)
    timestamp = int(slot.timestamp())
    fmt = lineprotocol.format_value
    status_key = _escaped(schema.JOB_STATUS)
    lines = []
    for queue, labels in stats.items():
        info = queues.get(queue, UNKNOWN_QUEUE)
        meta = "".join(f",{_escaped(k)}={_escaped(v)}" for k, v in info.tags().items() if v)
        pledge = fmt(float(pledges.get(info.federation, 0.0)))
        common = f"time_window={int(time_window)}i,corepower={fmt(float(info.corepower))}," \
                 f"federation_HS06_pledge={pledge}"
        measured = (hs06 or {}).get(queue)
        if measured is not None:
            common += f",HS06_benchmark={fmt(float(measured))}"
        queue_part = f"{name},{_escaped(schema.PANDA_QUEUE)}={_escaped(queue)}"
        for label, resources in labels.items():
            label_part = f"{queue_part},{_escaped(schema.PROD_SOURCE)}={_escaped(label)}"
            for resource, statuses in resources.items():
                factor = fmt(resource_factor(resource, info.corecount))
                prefix = f"{label_part},{_escaped(schema.RESOURCE)}={_escaped(resource)}"
                suffix = f"{meta} jobs="
                tail = f"i,{common},resource_factor={factor} {timestamp}"
                for status, count in statuses.items():
                    lines.append(f"{prefix},{status_key}={_escaped(status)}{suffix}"
                                 f"{int(count)}{tail}")
    return lines


MYSQL_ROW_COLUMNS = (schema.MYSQL_KEY + schema.MYSQL_METADATA
                     + ("resource_factor", "resource_type")
                     + tuple(schema.status_column(s) for s in schema.STATUSES)
                     + ("updated_at", "last_seen"))


def mysql_rows(stats, queues, slot):
    """One row per (queue, label, resource), in MYSQL_ROW_COLUMNS order; absent statuses are 0."""
    when = slot.astimezone(dt.UTC).replace(tzinfo=None)
    rows = []
    for queue, labels in stats.items():
        info = queues.get(queue, UNKNOWN_QUEUE)
        meta = info.tags()
        meta_values = tuple(meta[c] for c in schema.MYSQL_METADATA)
        for label, resources in labels.items():
            for resource, statuses in resources.items():
                counts = tuple(int(statuses.get(s, 0)) for s in schema.STATUSES)
                rows.append((queue, label, resource) + meta_values
                            + (resource_factor(resource, info.corecount), info.resource_type)
                            + counts + (when, when))
    return rows
