"""The ATLAS benchmark Elasticsearch (benchmarks-*): fastBmk results per PanDA queue.

Each PanDA queue with jobs gets 0-6 results a day on random nodes, at times fixed by (seed,
queue, day), so a search is a pure function of the simulated time. A result's value is the
queue's CRIC corepower times a per-site factor (0.6-1.1: some sites' real cores are slower
than declared) with +-15% noise. A few queues have no results at all.

POST /benchmarks-*/_search (any index path starting with "benchmarks") evaluates what the
client sends: a bool filter of range (gt/gte/lt/lte on "timestamp", ISO 8601) and exists,
"collapse" on metadata.PanDAQueue with one named inner_hits (size, sort on timestamp desc),
and the top-level size. Anything else in the query is ignored.
"""
import datetime as dt
import random

DAYS = 10
FIELD = "metadata.PanDAQueue"


def _iso(epoch):
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _site_factor(seed, site):
    return random.Random(f"qmonit-sim/bench-site/{seed}/{site.name}").uniform(0.6, 1.1)


def documents(universe, seed, now_epoch):
    """Every result up to now_epoch in the last DAYS days, newest first per queue."""
    today = now_epoch // 86400 * 86400
    docs = []
    for q in universe.panda:
        if random.Random(f"qmonit-sim/bench-q/{seed}/{q.key}").random() < 0.08:
            continue    # never benchmarked
        factor = _site_factor(seed, q.site)
        for day in range(today - (DAYS - 1) * 86400, today + 86400, 86400):
            rnd = random.Random(f"qmonit-sim/bench/{seed}/{q.key}/{day}")
            for i in range(rnd.randint(0, 6)):
                at = day + rnd.randrange(86400)
                value = round(q.corepower * factor * rnd.uniform(0.85, 1.15), 6)
                if at > now_epoch:
                    continue
                docs.append({"timestamp": _iso(at), "@timestamp": _iso(at + 60),
                             "type": "BenchmarkData",
                             "profiles": {"fastBmk": {"unit": "est. HS06", "value": value}},
                             "metadata": {"PanDAQueue": q.key, "ATLASSite": q.site.name,
                                          "node": f"wn{rnd.randint(1, 999):03d}.{i}",
                                          "benchmark_target": "core", "VO": "ATLAS"}})
    docs.sort(key=lambda d: (d["metadata"]["PanDAQueue"], d["timestamp"]), reverse=True)
    return docs


def _time_ok(stamp, spec):
    for op, test in (("gt", lambda a, b: a > b), ("gte", lambda a, b: a >= b),
                     ("lt", lambda a, b: a < b), ("lte", lambda a, b: a <= b)):
        if op in spec and not test(_epoch(stamp), _epoch(spec[op])):
            return False
    return True


def _epoch(text):
    return dt.datetime.fromisoformat(str(text).replace("Z", "+00:00")).timestamp()


def _get(doc, path):
    for part in path.split("."):
        doc = doc.get(part) if isinstance(doc, dict) else None
    return doc


def search(docs, body):
    """The reply to a _search body over docs; ValueError for what it cannot parse."""
    filters = (((body.get("query") or {}).get("bool") or {}).get("filter")) or []
    if isinstance(filters, dict):
        filters = [filters]
    matched = docs
    for f in filters:
        if "range" in f:
            (field, spec), = f["range"].items()
            matched = [d for d in matched if _get(d, field) is not None
                       and _time_ok(_get(d, field), spec)]
        elif "exists" in f:
            matched = [d for d in matched if _get(d, f["exists"]["field"]) is not None]
    collapse = body.get("collapse")
    size = int(body.get("size", 10))
    if not collapse:
        hits = [{"_index": "benchmarks-sim", "_id": str(i), "_score": None, "_source": d}
                for i, d in enumerate(matched[:size])]
        return {"took": 1, "timed_out": False, "hits": {"total": len(matched), "hits": hits}}
    inner = collapse.get("inner_hits") or {}
    name, inner_size = inner.get("name") or "inner", int(inner.get("size", 3))
    groups = {}
    for d in matched:          # newest first within a queue already
        groups.setdefault(_get(d, collapse["field"]), []).append(d)
    hits = []
    for queue in sorted(groups, key=lambda k: groups[k][0]["timestamp"], reverse=True)[:size]:
        results = groups[queue]
        hits.append({
            "_index": "benchmarks-sim", "_id": f"{queue}-top", "_score": None,
            "fields": {collapse["field"]: [queue]},
            "inner_hits": {name: {"hits": {"total": len(results), "hits": [
                {"_index": "benchmarks-sim", "_id": f"{queue}-{i}", "_score": None,
                 "_source": d, "sort": [int(_epoch(d["timestamp"]) * 1000)]}
                for i, d in enumerate(results[:inner_size])]}}}})
    return {"took": 1, "timed_out": False,
            "_shards": {"total": 1, "successful": 1, "skipped": 0, "failed": 0},
            "hits": {"total": len(matched), "max_score": None, "hits": hits}}
