"""Labelled events for the simulator: what the grid does to queues over days, and whether an
operator needs to hear of it.

Anomalies (labelled expected=False):
  collapse       running jobs of one queue fall to ~0 (a broken CE, a storage outage)
  failed_spike   failed jobs of one queue jump to ~10x its finished (a bad release, a
                 black-hole node)
Expected events (expected=True), with the drains and recoveries they cause:
  brokeroff      ADC's Switcher sets the queue brokeroff: no new jobs, running drains as
                 jobs end; back online it ramps up over RAMP
  offline        the queue is set offline: running drains fast
  hc_test        HammerCloud auto-exclusion: status test, comment HC.Blacklist.set.test,
                 only a few test jobs run
  downtime       an OUTAGE of the whole site in the downtime feed; with switcher=True the
                 queues go brokeroff SWITCHER_LEAD before it and offline during it, else
                 they stay online in CRIC and just lose their jobs

Counts stay a pure function of (seed, slot, events): the effects multiply the simulator's
levels by factors of the slot's time.
"""
import math
import random
from dataclasses import dataclass

ANOMALIES = ("collapse", "failed_spike")
EXPECTED = ("brokeroff", "offline", "hc_test", "downtime")
KINDS = ANOMALIES + EXPECTED
RAMP = 2 * 3600              # back online: jobs ramp up over 2 h
SWITCHER_LEAD = 2 * 3600     # the Switcher sets brokeroff 2 h ahead of a downtime
HC_COMMENT = "HC.Blacklist.set.test"
_DRAIN = {"brokeroff": 3 * 3600, "offline": 3600, "hc_test": 3600, "downtime": 1200}
_LIVE = ("activated", "assigned", "starting", "sent", "defined", "waiting", "throttled",
         "pending")


@dataclass(frozen=True)
class Event:
    kind: str
    site: str
    queues: tuple          # PanDA queue keys
    start: int             # epoch seconds
    end: int
    switcher: bool = False

    @property
    def expected(self):
        return self.kind in EXPECTED

    def as_dict(self):
        return {"kind": self.kind, "site": self.site, "queues": list(self.queues),
                "start": self.start, "end": self.end, "switcher": self.switcher,
                "expected": self.expected}


def status_at(event, t):
    """(CRIC status, comment) an event gives its queues at t, or None."""
    if event.kind in ANOMALIES:
        return None
    if event.kind == "downtime":
        if not event.switcher:
            return None
        if event.start - SWITCHER_LEAD <= t < event.start:
            return "brokeroff", "Switcher: downtime ahead"
        if event.start <= t < event.end:
            return "offline", "Switcher: site downtime"
        return None
    if event.start <= t < event.end:
        if event.kind == "hc_test":
            return "test", HC_COMMENT
        return event.kind, f"set {event.kind} by ADC"
    return None


def _running(event, t):
    """Share of the normal running jobs an expected event leaves at t (t >= its begin)."""
    tau = _DRAIN[event.kind]
    if event.kind == "downtime" and event.switcher:
        lead = event.start - SWITCHER_LEAD
        if t < event.start:
            return math.exp(-(t - lead) / _DRAIN["brokeroff"])
        at_start = math.exp(-SWITCHER_LEAD / _DRAIN["brokeroff"])
        if t < event.end:
            return at_start * math.exp(-(t - event.start) / tau)
        low = at_start * math.exp(-(event.end - event.start) / tau)
    else:
        if t < event.end:
            share = math.exp(-(t - event.start) / tau)
            # Excluded by HammerCloud, a queue still runs its test jobs.
            return max(share, 0.03) if event.kind == "hc_test" else share
        low = math.exp(-(event.end - event.start) / tau)
    return low + (1 - low) * min(1.0, (t - event.end) / RAMP)


def factors(event, t):
    """(running factor, other live statuses factor) of an expected event at t, or None."""
    if event.kind in ANOMALIES:
        return None
    begin = event.start - (SWITCHER_LEAD if event.kind == "downtime" and event.switcher else 0)
    if t < begin or t >= event.end + RAMP:
        return None
    live = 0.0 if t < event.end else min(1.0, (t - event.end) / RAMP)
    return _running(event, t), live


def apply(events, data, t):
    """Apply the events active at slot t to one slot's PanDA data (in place)."""
    for event in events:
        if event.kind in ANOMALIES:
            if not event.start <= t < event.end:
                continue
            for queue in event.queues:
                for label_data in data.get(queue, {}).values():
                    for counts in label_data.values():
                        if event.kind == "collapse":
                            counts["running"] = counts.get("running", 0) % 3
                        else:
                            finished = counts.get("finished", 0)
                            counts["failed"] = max(10 * finished, 200 + finished % 37)
            continue
        f = factors(event, t)
        if f is None:
            continue
        running, live = f
        for queue in event.queues:
            for label_data in data.get(queue, {}).values():
                for counts in label_data.values():
                    for status in counts:
                        if status == "running":
                            counts[status] = int(counts[status] * running)
                        elif status in _LIVE:
                            counts[status] = int(counts[status] * live)


def statuses(events, t):
    """{PanDA queue: (status, comment)} the events set at t (later events win)."""
    out = {}
    for event in events:
        s = status_at(event, t)
        if s:
            for queue in event.queues:
                out[queue] = s
    return out


def _iso(epoch):
    import datetime as dt
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")


def downtime_feed(events, rc_sites):
    """CRIC's downtime dump for the downtime events: {site: [entries]}, with a WARNING entry
    beside each OUTAGE (warnings never suppress anything)."""
    out = {}
    for i, event in enumerate(e for e in events if e.kind == "downtime"):
        rc = rc_sites.get(event.site, event.site)
        for severity, shift in (("OUTAGE", 0), ("WARNING", -86400)):
            out.setdefault(event.site, []).append({
                "id": 1000 + 2 * i + (severity == "WARNING"), "severity": severity,
                "description": f"simulated {severity.lower()}", "site": event.site,
                "rc_site": rc, "start_time": _iso(event.start + shift),
                "end_time": _iso(event.end + shift)})
    return out


def schedule(universe, start, days, seed=1, anomalies_per_day=6, expected_per_day=8,
             min_running=150):
    """A deterministic list of events over [start + 1 day, start + days): the first day is
    left quiet so that the 24 h baselines exist. Queues are picked among online CRIC queues
    with at least min_running running jobs; at most one event a site at a time."""
    rnd = random.Random(f"qmonit-sim/events/{seed}/{start}/{days}")
    queues = [q for q in universe.panda if q.status == "online" and q.in_cric
              and q.running >= min_running]
    sites = sorted({q.site.name for q in queues})
    site_queues = {s.name: [q.key for q in s.queues if q.in_panda and q.status == "online"]
                   for s in universe.sites}
    busy = {}  # site -> end of its last event (plus recovery)
    events = []
    kinds = ([k for k in ANOMALIES for _ in range(anomalies_per_day // len(ANOMALIES))]
             + [k for k in EXPECTED for _ in range(expected_per_day // len(EXPECTED))])
    for day in range(1, days):
        day_start = start + day * 86400
        for kind in kinds:
            for _ in range(50):
                begin = day_start + rnd.randrange(0, 86400 - 8 * 3600, 600)
                if kind in ANOMALIES:
                    length = rnd.choice((2, 3, 4, 6)) * 600
                else:
                    length = rnd.choice((2, 3, 4, 6)) * 3600
                if kind == "downtime":
                    site = rnd.choice(sites)
                    members = tuple(site_queues[site])
                else:
                    q = rnd.choice(queues)
                    site, members = q.site.name, (q.key,)
                lead = SWITCHER_LEAD if kind == "downtime" else 0
                if busy.get(site, 0) > begin - lead - 3600:
                    continue
                if not members:
                    continue
                busy[site] = begin + length + RAMP + 3600
                events.append(Event(kind, site, members, begin, begin + length,
                                    switcher=kind == "downtime" and rnd.random() < 0.5))
                break
    return sorted(events, key=lambda e: (e.start, e.site, e.kind))


def from_dicts(items, universe):
    """Events from /_sim/control's "events": [{"kind", "queue" (a PanDA queue or CRIC name)
    or "site", "start", "end" ("YYYY-mm-dd HH:MM:SS" UTC or epoch seconds), "switcher"}]."""
    import datetime as dt
    out = []
    for item in items:
        kind = item["kind"]
        if kind not in KINDS:
            raise ValueError(f"unknown event kind {kind!r}; use one of {', '.join(KINDS)}")

        def epoch(value):
            if isinstance(value, (int, float)):
                return int(value)
            return int(dt.datetime.strptime(value, "%Y-%m-%d %H:%M:%S")
                       .replace(tzinfo=dt.UTC).timestamp())

        if item.get("queue"):
            queue = item["queue"]
            q = universe.by_key.get(queue) or universe.by_name.get(queue)
            if q is None:
                raise ValueError(f"unknown queue {queue!r}")
            site, queues = q.site.name, (q.key,)
        else:
            site = item["site"]
            found = [s for s in universe.sites if s.name == site]
            if not found:
                raise ValueError(f"unknown site {site!r}")
            queues = tuple(q.key for q in found[0].queues if q.in_panda)
        out.append(Event(kind, site, queues, epoch(item["start"]), epoch(item["end"]),
                         bool(item.get("switcher"))))
    return out
