"""CRIC: queue metadata and the slow site/ddmendpoint/federation data, cached under data_dir.

A refresh writes the cache atomically. When CRIC fails, the last good copy is used with a
warning; with no copy, the SourceError goes up and the run exits 1.
"""
import datetime as dt
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from ..core import http, schema, tls
from ..core.errors import SourceError
from ..core.files import atomic_write

log = logging.getLogger(__name__)

KINDS = ("pandaqueue", "site", "ddmendpoint", "federation")
# The shape each kind must have, to reject a truncated or wrong reply before caching it.
# CRIC serves site and ddmendpoint keyed by name; AGIS (before 2020) served lists.
_SHAPES = {"pandaqueue": (dict,), "site": (dict, list), "ddmendpoint": (dict, list),
           "federation": (dict,)}
# A multi-core job on a queue whose corecount CRIC leaves null: ATLAS's standard 8-core slot.
DEFAULT_MULTICORE = 8


def session(config):
    """A session for [cric]: its CA and client certificate (X509_CERT_DIR, X509_USER_PROXY
    when empty)."""
    return http.session(tls=tls.settings(config, "cric", grid=True))


class Cache:
    def __init__(self, data_dir):
        self.directory = Path(data_dir) / "cric"

    def path(self, kind):
        return self.directory / f"{kind}.json"

    def read(self, kind):
        """The cached payload, or None when there is none (or it is unreadable)."""
        path = self.path(kind)
        try:
            with open(path, encoding="utf-8") as f:
                return json.load(f)
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:
            log.warning("ignoring unreadable CRIC cache %s: %s", path, e)
            return None

    def write(self, kind, payload):
        atomic_write(self.path(kind), json.dumps(payload))

    def age(self, kind):
        try:
            mtime = self.path(kind).stat().st_mtime
        except FileNotFoundError:
            return None
        return dt.datetime.now(dt.UTC).timestamp() - mtime


def refresh(session, cache, kind, url, timeout, dry_run=False):
    """Fetch one CRIC payload and cache it; on failure fall back to the cached copy."""
    try:
        payload = http.parse_json(url, http.fetch(session, url, timeout))
        if not isinstance(payload, _SHAPES[kind]) or not payload:
            shapes = " or ".join("object" if t is dict else "list" for t in _SHAPES[kind])
            raise SourceError(url, f"expected a non-empty JSON {shapes}")
    except SourceError as e:
        cached = cache.read(kind)
        if cached is None:
            raise
        age = cache.age(kind) or 0
        log.warning("CRIC %s failed (%s); using the cached copy from %.1f h ago",
                    kind, e, age / 3600)
        return cached
    if not dry_run:
        cache.write(kind, payload)
    return payload


@dataclass(frozen=True)
class QueueInfo:
    """What the jobs points and rows need from CRIC for one PanDA queue."""
    atlas_site: str = schema.UNKNOWN
    cloud: str = schema.UNKNOWN
    country: str = schema.UNKNOWN
    tier: str = schema.UNKNOWN
    type: str = schema.UNKNOWN
    site_state: str = schema.UNKNOWN
    federation: str = schema.UNKNOWN
    rc_site: str = schema.UNKNOWN
    resource_type: str = schema.UNKNOWN
    corecount: int | None = None     # None: CRIC has none (see transform.resource_factor)
    corepower: float = 0.0
    read_lan: tuple = field(default=())
    read_lan_analysis: tuple = field(default=())

    def analysis_read_lan(self):
        """Where analysis jobs read: read_lan_analysis when CRIC has it, else read_lan."""
        return self.read_lan_analysis or self.read_lan

    def tags(self):
        return {schema.ATLAS_SITE: self.atlas_site, schema.CLOUD: self.cloud,
                schema.COUNTRY: self.country, schema.TIER: self.tier, schema.TYPE: self.type,
                schema.SITE_STATE: self.site_state, schema.FEDERATION: self.federation}


UNKNOWN_QUEUE = QueueInfo()


def _text(value):
    if value is None:
        return schema.UNKNOWN
    value = str(value).strip()
    return value or schema.UNKNOWN


def _number(value, default, kind):
    try:
        number = kind(value)
    except (TypeError, ValueError):
        return default
    return number if number > 0 else default


def records(payload):
    """The entries of a site or ddmendpoint dump: CRIC's object keyed by name, or AGIS's
    list; an entry without a "name" gets its key."""
    if isinstance(payload, dict):
        return [{"name": name, **entry} if "name" not in entry else entry
                for name, entry in payload.items() if isinstance(entry, dict)]
    return [entry for entry in payload or () if isinstance(entry, dict)]


def site_corepowers(sites):
    """{ATLAS site: its corepower} from the site dump (either shape); unset ones absent."""
    out = {}
    for entry in records(sites):
        power = _number(entry.get("corepower"), None, float)
        if entry.get("name") and power is not None:
            out[str(entry["name"])] = power
    return out


def queue_metadata(pandaqueues, sites=None):
    """{PanDA queue: QueueInfo} keyed by CRIC's panda_resource (not the CRIC key).

    sites: the site dump (for the corepower of queues that have none), or None."""
    site_power = site_corepowers(sites) if sites else {}
    queues = {}
    for name in sorted(pandaqueues):
        entry = pandaqueues[name]
        if not isinstance(entry, dict) or not entry:
            continue
        panda_queue = entry.get("panda_resource") or name
        if panda_queue in queues:
            log.debug("CRIC queues %s and another both map to %s; keeping the first",
                      name, panda_queue)
            continue
        astorages = entry.get("astorages")
        astorages = astorages if isinstance(astorages, dict) else {}
        atlas_site = _text(entry.get("atlas_site"))
        corepower = _number(entry.get("corepower"), None, float)
        if corepower is None:
            corepower = site_power.get(atlas_site, 0.0)
        queues[panda_queue] = QueueInfo(
            atlas_site=atlas_site,
            cloud=_text(entry.get("cloud")),
            country=_text(entry.get("country")),
            tier=_text(entry.get("tier")),
            type=_text(entry.get("type")),
            # The queue's status (online, brokeroff, test, offline), as the original QMonit
            # wrote it: what operators filter on; CRIC's own site_state hardly ever changes.
            site_state=_text(entry.get("status")),
            federation=_text(entry.get("rc")),
            rc_site=_text(entry.get("rc_site")),
            resource_type=_text(entry.get("resource_type")),
            corecount=_number(entry.get("corecount"), None, int),
            corepower=corepower,
            read_lan=_endpoints(astorages.get("read_lan")),
            read_lan_analysis=_endpoints(astorages.get("read_lan_analysis")),
        )
    return queues


def _endpoints(value):
    return tuple(str(x) for x in value or ()) if isinstance(value, (list, tuple)) else ()


def pledge_quarter(now):
    """(pledge year, quarter) that holds now. WLCG pledge years start on 1 April: Q1 is
    April-June of the year, Q4 is January-March of the next calendar year."""
    if now.month < 4:
        return now.year - 1, "Q4"
    return now.year, f"Q{(now.month - 4) // 3 + 1}"


def federation_pledges(federations, now):
    """{federation name: ATLAS CPU pledge of the current pledge quarter}; missing ones absent.

    CPU pledges are in HS06, and in HEPScore23 since 2024 (numerically comparable)."""
    pledges = {}
    if not isinstance(federations, dict):
        return pledges
    year, q = pledge_quarter(now)
    year = str(year)
    for name, federation in federations.items():
        try:
            cpu = federation["pledges"][year][q]["atlas"]["CPU"]
        except (KeyError, TypeError):
            continue
        if isinstance(cpu, (int, float)) and not isinstance(cpu, bool):
            pledges[name] = float(cpu)
    return pledges
