"""Measured HS06 per core of each PanDA queue, from the ATLAS benchmark Elasticsearch.

Pilots run a fast benchmark (DB12, "fastBmk") on the worker nodes and store one document per
result in the indices benchmarks-* ([credentials_elasticsearch] host, basic authentication).
One search collapses them on metadata.PanDAQueue, with each queue's most recent results as
inner hits, and reads profiles.fastBmk.value (unit "est. HS06", per core).

The age rule, explicit and with `now` passed in: a queue's HS06_benchmark is the mean of its
results whose `timestamp` lies in (now - MAX_AGE, now], at most the RESULTS most recent of
them. A queue with no result in that window has no value (the field is left out), so a stale
measurement never stands for today's nodes.

The hourly job (datadisk.py) refreshes the cache data_dir/cric/benchmarks.json; a failing
Elasticsearch keeps the last good copy, with a warning. fetch_queues.py reads the cache.
"""
import datetime as dt
import json
import logging
import math
from pathlib import Path

from ..core import http, tls
from ..core.errors import SourceError
from ..core.files import atomic_write

log = logging.getLogger(__name__)

INDEX = "benchmarks-*"
QUEUE_FIELD = "metadata.PanDAQueue"
VALUE_FIELD = "profiles.fastBmk.value"
TIME_FIELD = "timestamp"
INNER_HITS = "most_recent"
MAX_AGE = dt.timedelta(days=7)
RESULTS = 50
# More than ATLAS has queues; Elasticsearch's default window allows 10000.
MAX_QUEUES = 10000
SECTION = "credentials_elasticsearch"


def settings(config):
    """None when [credentials_elasticsearch] host is empty (no benchmarks), else the URL,
    the basic-auth pair (or None) and the timeout."""
    host = config.get(SECTION, "host", "")
    if not host:
        return None
    if not host.startswith(("http://", "https://")):
        host = "https://" + host
    username = config.get(SECTION, "username", "")
    auth = (username, config.get(SECTION, "password", "")) if username else None
    return {"url": f"{host.rstrip('/')}/{INDEX}/_search", "auth": auth,
            "timeout": config.get_float(SECTION, "timeout", 60)}


def session(config):
    return http.session(tls=tls.settings(config, SECTION))


def _iso(when):
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def search_body(now):
    """The query: recent results with a fastBmk value, collapsed per queue, newest first."""
    return {
        "size": MAX_QUEUES,
        "_source": False,
        "query": {"bool": {"filter": [
            {"range": {TIME_FIELD: {"gt": _iso(now - MAX_AGE), "lte": _iso(now)}}},
            {"exists": {"field": VALUE_FIELD}},
        ]}},
        "collapse": {"field": QUEUE_FIELD, "inner_hits": {
            "name": INNER_HITS, "size": RESULTS, "sort": [{TIME_FIELD: "desc"}],
            "_source": [TIME_FIELD, VALUE_FIELD, QUEUE_FIELD]}},
        "sort": [{TIME_FIELD: "desc"}],
    }


def _parse_time(text):
    try:
        when = dt.datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def _value(source):
    value = source
    for part in VALUE_FIELD.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) and value > 0 else None


def parse_reply(url, payload, now):
    """{PanDA queue: mean HS06 per core} by the age rule; SourceError for a bad reply."""
    if not isinstance(payload, dict) or not isinstance(payload.get("hits"), dict):
        if isinstance(payload, dict) and "error" in payload:
            raise SourceError(url, f"Elasticsearch error: {str(payload['error'])[:200]}")
        raise SourceError(url, "not an Elasticsearch search reply (no \"hits\")")
    if payload.get("timed_out"):
        raise SourceError(url, "Elasticsearch timed out; the benchmarks would be partial")
    hits = payload["hits"].get("hits")
    if not isinstance(hits, list):
        raise SourceError(url, "the reply has no hit list")
    oldest = now - MAX_AGE
    means = {}
    for hit in hits:
        inner = (((hit.get("inner_hits") or {}).get(INNER_HITS) or {}).get("hits") or {}) \
            if isinstance(hit, dict) else {}
        values = []
        queue = None
        for result in (inner.get("hits") or [])[:RESULTS]:
            source = result.get("_source") if isinstance(result, dict) else None
            if not isinstance(source, dict):
                continue
            when = _parse_time(source.get(TIME_FIELD))
            value = _value(source)
            name = (source.get("metadata") or {}).get("PanDAQueue")
            if when is None or value is None or not name or not oldest < when <= now:
                continue
            queue = queue or str(name)
            values.append(value)
        if queue and values:
            means[queue] = sum(values) / len(values)
    return means


def fetch(session, opts, now):
    """{PanDA queue: HS06 per core} from the benchmark Elasticsearch at `now`."""
    url = opts["url"]
    text = http.fetch(session, url, opts["timeout"], method="POST",
                      data=json.dumps(search_body(now)).encode(), auth=opts["auth"],
                      headers={"Content-Type": "application/json",
                               "Accept": "application/json"})
    return parse_reply(url, http.parse_json(url, text), now)


class Cache:
    """The last good benchmark means, beside the CRIC caches."""

    def __init__(self, data_dir):
        self.path = Path(data_dir) / "cric" / "benchmarks.json"

    def read(self):
        """{queue: HS06 per core}; {} when there is no (readable) copy."""
        try:
            with open(self.path, encoding="utf-8") as f:
                data = json.load(f)
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as e:
            log.warning("ignoring unreadable benchmark cache %s: %s", self.path, e)
            return {}
        means = data.get("hs06") if isinstance(data, dict) else None
        return {str(q): float(v) for q, v in (means or {}).items()
                if isinstance(v, (int, float)) and not isinstance(v, bool)}

    def write(self, means, now):
        atomic_write(self.path, json.dumps({"computed_at": _iso(now), "hs06": means}))


def refresh(session, cache, opts, now, dry_run=False):
    """Fetch the benchmarks and cache them; on failure keep the last good copy, with a
    warning. Returns {queue: HS06 per core}."""
    try:
        means = fetch(session, opts, now)
    except SourceError as e:
        cached = cache.read()
        log.warning("benchmark Elasticsearch failed (%s); keeping the last good copy "
                    "(%d queues)", e, len(cached))
        return cached
    if not dry_run:
        cache.write(means, now)
    return means
