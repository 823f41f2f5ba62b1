"""Why a suspicious flag may be expected, so that only the unexpected ones wake anyone.

The `suppressed` tag of a flag is `no` or the first reason that holds, in this order:
- queue_status: the queue's CRIC status at T is not online, or changed less than
  [suspicious] grace before T (a drain or a ramp-up after it);
- downtime: the site is in an OUTAGE downtime at T, or one that ended less than grace ago;
- silenced: an operator's silence covers it.
A site-level flag takes the reason of the queues that make up more than half of the change
between its baseline and its current (a site downtime or a site silence applies directly).

Statuses come from the cached CRIC pandaqueue dump; a small history of their changes under
data_dir/state keeps `grace` working across runs.
"""
import logging

from ..core import schema
from ..core.files import State

log = logging.getLogger(__name__)

NO = schema.SUPPRESSED_NO
REASONS = schema.SUPPRESSION_REASONS
QUEUE_STATUS, DOWNTIME, SILENCED = REASONS
ONLINE = "online"
HISTORY_NAME = "queue_status"
# Changes kept per queue: enough for any grace, small enough to stay a small file.
HISTORY_DEPTH = 8


def queue_statuses(pandaqueues):
    """{PanDA queue (CRIC panda_resource): CRIC status} from the pandaqueue dump; pure."""
    out = {}
    if not isinstance(pandaqueues, dict):
        return out
    for name in sorted(pandaqueues):
        entry = pandaqueues[name]
        if not isinstance(entry, dict):
            continue
        queue = entry.get("panda_resource") or name
        if queue in out:
            continue
        status = entry.get("status")
        out[queue] = str(status).strip().lower() if status else schema.UNKNOWN
    return out


def update_history(history, statuses, epoch):
    """The status history after seeing `statuses` at slot `epoch`; pure.

    history: {"slot": last epoch seen, "queues": {queue: [[since, status], ...]}}. A queue seen
    for the first time has had its status forever (since 0); a change is stamped with the slot
    it was first seen at. An older slot (a backfill) changes nothing."""
    queues = {q: [list(c) for c in changes] for q, changes in
              (history.get("queues") or {}).items()}
    last = history.get("slot") or 0
    if epoch < last:
        return {"slot": last, "queues": queues}
    for queue, status in statuses.items():
        changes = queues.get(queue)
        if not changes:
            queues[queue] = [[0, status]]
        elif changes[-1][1] != status:
            changes.append([epoch, status])
            del changes[:-HISTORY_DEPTH]
    return {"slot": epoch, "queues": queues}


def status_at(history, queue, epoch):
    """(status, since) of a queue at epoch from the history, or (None, None)."""
    found = (None, None)
    for since, status in (history.get("queues") or {}).get(queue, ()):
        if since <= epoch:
            found = (status, since)
    return found


class Context:
    """What is known at slot T: queue statuses and their changes, outages, silences."""

    def __init__(self, epoch, grace, now, history=None, outages=None, silences=()):
        self.epoch = epoch       # slot T, epoch seconds
        self.grace = grace       # seconds
        self.now = now           # the run's time (aware): silences are judged then
        self.history = history or {}
        self.outages = outages or {}
        self.silences = list(silences)

    def queue_status_reason(self, queue):
        status, since = status_at(self.history, queue, self.epoch)
        if status is None or status == schema.UNKNOWN:
            return False
        return status != ONLINE or (since > 0 and self.epoch - since < self.grace)

    def in_downtime(self, site):
        return any(start <= self.epoch < end + self.grace
                   for start, end in self.outages.get(site, ()))

    def silenced(self, flag):
        return any(s.covers(flag, self.now) for s in self.silences)

    def queue_reason(self, flag):
        if self.queue_status_reason(flag.panda_queue):
            return QUEUE_STATUS
        if self.in_downtime(flag.atlas_site):
            return DOWNTIME
        if self.silenced(flag):
            return SILENCED
        return NO

    def site_reason(self, flag, changes):
        """changes: {queue: current - baseline of that queue's series} for the flag's site and
        status."""
        total = sum(changes.values())
        by_reason = {}
        for queue, change in changes.items():
            probe = _Probe(schema.QUEUE_LEVEL, flag.atlas_site, queue, flag.job_status)
            reason = self.queue_reason(probe)
            by_reason[reason] = by_reason.get(reason, 0) + change

        def most(reason):
            return total != 0 and by_reason.get(reason, 0) / total > 0.5

        if most(QUEUE_STATUS):
            return QUEUE_STATUS
        if self.in_downtime(flag.atlas_site) or most(DOWNTIME):
            return DOWNTIME
        if self.silenced(flag) or most(SILENCED):
            return SILENCED
        expected = {r: v for r, v in by_reason.items() if r != NO}
        if total != 0 and sum(expected.values()) / total > 0.5:
            # Together, though none alone: the biggest part names it.
            return max(expected, key=lambda r: (expected[r] / total, -REASONS.index(r)))
        return NO


class _Probe:
    __slots__ = ("level", "atlas_site", "panda_queue", "job_status")

    def __init__(self, level, site, queue, status):
        self.level, self.atlas_site, self.panda_queue, self.job_status = \
            level, site, queue, status


def site_changes(series, baseline_of, statuses):
    """{(atlas_site, status): {queue: Σ(current - baseline)}} over the series a site flag
    sums (a series without a baseline counts its current); pure."""
    out = {}
    watched = set(statuses)
    for a in series:
        if a.job_status not in watched or not a.atlas_site or a.atlas_site == schema.UNKNOWN:
            continue
        baseline = getattr(a, baseline_of)
        by_queue = out.setdefault((a.atlas_site, a.job_status), {})
        by_queue[a.panda_queue] = by_queue.get(a.panda_queue, 0) + a.current - (baseline or 0)
    return out


def annotate(flags, context, changes):
    """The flags with their `suppressed` tag set; pure."""
    out = []
    for f in flags:
        if f.level == schema.QUEUE_LEVEL:
            reason = context.queue_reason(f)
        else:
            reason = context.site_reason(f, changes.get((f.atlas_site, f.job_status), {}))
        out.append(f._replace(suppressed=reason))
    return out


def load_history(data_dir, statuses, epoch, save=True):
    """Update and return the status history under data_dir/state."""
    state = State(data_dir, HISTORY_NAME)
    history = update_history(state.load(), statuses, epoch)
    if save:
        state.save(history)
    return history
