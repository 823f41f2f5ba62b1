"""CRIC's downtime feed ([cric] downtime_url): the OUTAGE periods of each atlas_site.

The feed is a JSON object keyed by site whose values are lists (or objects) of entries with
severity, start_time and end_time (UTC, ISO 8601 without a zone), site and rc_site. It is
cached like the other CRIC data; a failing feed uses the last good copy with a warning, and
with no copy there is no downtime context: the feed never fails a run.
"""
import datetime as dt
import logging

from ..core import http
from ..core.errors import SinkError, SourceError
from .cric import Cache

log = logging.getLogger(__name__)

KIND = "downtime"
OUTAGE = "OUTAGE"


def load(session, data_dir, url, timeout, dry_run=False):
    """The feed's payload (fresh, else the cached copy), or {} when there is neither."""
    if not url:
        return {}
    cache = Cache(data_dir)
    try:
        payload = http.parse_json(url, http.fetch(session, url, timeout))
        if not isinstance(payload, dict):
            raise SourceError(url, "expected a JSON object keyed by site")
    except SourceError as e:
        cached = cache.read(KIND)
        if cached is None:
            log.warning("CRIC downtime feed failed (%s) and there is no cached copy; "
                        "no downtime context this run", e)
            return {}
        log.warning("CRIC downtime feed failed (%s); using the cached copy from %.1f h ago",
                    e, (cache.age(KIND) or 0) / 3600)
        return cached if isinstance(cached, dict) else {}
    if not dry_run:
        try:
            cache.write(KIND, payload)
        except SinkError as e:
            log.warning("could not cache the CRIC downtime feed: %s", e)
    return payload


def _time(value):
    """Epoch seconds of an ISO 8601 UTC time ('2026-12-01T08:00:00', a zone is accepted)."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        when = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.timestamp()


def outages(payload):
    """{atlas_site: [(start, end) epoch seconds]} of the OUTAGE entries; pure. An entry applies
    to the site named by its key, its site and its rc_site; one without a valid start or end
    is skipped."""
    out = {}
    if not isinstance(payload, dict):
        return out
    for key, entries in payload.items():
        if isinstance(entries, dict):
            entries = list(entries.values()) if not {"start_time", "end_time"} & set(entries) \
                else [entries]
        if not isinstance(entries, list):
            continue
        for entry in entries:
            if not isinstance(entry, dict):
                continue
            if str(entry.get("severity", "")).upper() != OUTAGE:
                continue
            start, end = _time(entry.get("start_time")), _time(entry.get("end_time"))
            if start is None or end is None or end < start:
                continue
            for site in {key, entry.get("site"), entry.get("rc_site")}:
                if isinstance(site, str) and site:
                    out.setdefault(site, []).append((start, end))
    return {site: sorted(set(periods)) for site, periods in out.items()}
