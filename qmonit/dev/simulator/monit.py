"""MONIT: the Rucio accounting Elasticsearch behind the Grafana proxy, and its _msearch."""
import fnmatch
import math
import random
from datetime import UTC, datetime

from .world import _utc

# --- MONIT: Rucio accounting behind the Grafana Elasticsearch proxy ----------------------
# One index a day (monit_prod_rucioacc_enr_site_YYYY-MM-DD). A day's documents describe the
# replicas held at the end of that day, one per (endpoint, datatype, tombstone), with
# metadata.timestamp at the day's start; they are indexed RUCIO_LAG_HOURS after that, so at
# 02:00 yesterday's accounting is not there yet. Fields follow MONIT's enriched documents:
# data.rse, data.token (CRIC's, e.g. ATLASDATADISK), data.rse_type, data.datatype (DAOD_PHYS,
# AOD, ...), data.datatype_grouped (DAOD, AOD, ...), data.tombstone (primary/secondary, and
# UNKNOWN on some DATADISKs; an RSE "none" holds rows not attributed to an RSE),
# data.files, data.bytes, data.experiment_site, data.cloud, data.tier.
#
# _msearch evaluates what a client sends, so filters that are missing show up in the numbers:
# queries bool (filter/must/must_not/should), term, terms, prefix, wildcard, range, exists,
# match_all;
# aggregations terms (field, size (default 10), order, min_doc_count) and sum/min/max/avg/
# value_count. Anything else is a per-query error, as Elasticsearch reports it.

RUCIO_INDEX_PREFIX = "monit_prod_rucioacc_enr_site_"
RUCIO_LAG_HOURS = 27
RUCIO_RETENTION_DAYS = 14
_TB = 1e12
_PB = 1e15
_DAOD_TYPES = (("DAOD_PHYS", 0.35), ("DAOD_PHYSLITE", 0.15), ("DAOD_TOPQ1", 0.08),
               ("DAOD_SUSY1", 0.07), ("DAOD_FTAG1", 0.06), ("DAOD_JETM1", 0.06),
               ("DAOD_EXOT2", 0.06), ("DAOD_HIGG1D1", 0.05), ("DAOD_EGAM1", 0.05),
               ("DAOD_MUON1", 0.04), ("DAOD_TRUTH3", 0.03))
# Mean file size in bytes by datatype group.
_FILE_SIZE = {"DAOD": 1.5e9, "AOD": 3.0e9, "HITS": 1.0e9, "EVNT": 2.0e8, "RDO": 2.5e9,
              "RAW": 2.0e9, "NTUP": 5.0e8, "log": 3.0e7}


def _datatype_group(datatype):
    return datatype.split("_", 1)[0]


def _rucio_profile(site, name, kind, seed):
    """(typical bytes by datatype, share of primary replicas, drift phase) of one endpoint."""
    rnd = random.Random(f"qmonit-sim/rucio/{seed}/{name}")
    out = []
    if kind == "DATADISK":
        if site.tier_level == 1:
            daod = rnd.uniform(2, 6) * _PB
        elif site.tier == "T2D":
            daod = rnd.uniform(0.5, 2.5) * _PB
        elif site.tier_level == 2:
            daod = rnd.uniform(0.1, 1.0) * _PB
        else:
            daod = rnd.uniform(5, 100) * _TB
        if site.tier_level > 1 and rnd.random() < 0.08:
            daod = 0.0  # no DAODs placed here, though analysis may run
        if daod:
            chosen = [(t, w * rnd.uniform(0.5, 1.5)) for t, w in _DAOD_TYPES
                      if t == "DAOD_PHYS" or rnd.random() < 0.7]
            weights = sum(w for _, w in chosen)
            out += [(t, daod * w / weights) for t, w in chosen]
        base = max(daod, rnd.uniform(0.1, 0.5) * _PB)
        out += [("AOD", base * rnd.uniform(0.6, 1.8)), ("HITS", base * rnd.uniform(0.1, 0.4)),
                ("EVNT", base * rnd.uniform(0.01, 0.05)), ("log", base * 0.01)]
        if site.tier_level == 1:
            out += [("RAW", base * rnd.uniform(0.3, 1.0)), ("RDO", base * rnd.uniform(0.05, 0.2))]
    elif kind == "SCRATCHDISK":
        out = [("DAOD_PHYS", rnd.uniform(20, 150) * _TB),
               ("DAOD_PHYSLITE", rnd.uniform(5, 50) * _TB),
               ("NTUP_PILEUP", rnd.uniform(1, 20) * _TB), ("log", rnd.uniform(1, 10) * _TB)]
    elif kind == "LOCALGROUPDISK":
        out = [("DAOD_PHYS", rnd.uniform(50, 400) * _TB),
               ("NTUP_PILEUP", rnd.uniform(10, 100) * _TB)]
    elif kind == "CALIBDISK":
        out = [("RAW", rnd.uniform(10, 100) * _TB)]
    elif kind == "DATATAPE":
        out = [("RAW", rnd.uniform(5, 20) * _PB), ("AOD", rnd.uniform(1, 5) * _PB),
               ("DAOD_PHYS", rnd.uniform(0.5, 2) * _PB)]
    elif kind == "MCTAPE":
        out = [("HITS", rnd.uniform(2, 10) * _PB), ("EVNT", rnd.uniform(0.1, 1) * _PB),
               ("AOD", rnd.uniform(1, 5) * _PB)]
    return out, rnd.uniform(0.6, 0.9), rnd.uniform(0, 2 * math.pi)


def _rucio_index(day):
    return RUCIO_INDEX_PREFIX + datetime.fromtimestamp(day, UTC).strftime("%Y-%m-%d")


class _QueryError(Exception):
    """A query the simulated Elasticsearch rejects: (error type, reason, HTTP status)."""

    def __init__(self, kind, reason, status=400):
        super().__init__(reason)
        self.kind, self.reason, self.status = kind, reason, status

    def body(self):
        error = {"type": self.kind, "reason": self.reason}
        return {"error": {"root_cause": [error], **error}, "status": self.status}


def _field(doc, path):
    value = doc
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def _clauses(value):
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _single(kind, spec):
    """The (field, value) of a leaf query such as {"term": {"data.rse": "X"}}."""
    if not isinstance(spec, dict):
        raise _QueryError("parsing_exception", f"[{kind}] query malformed, no field")
    fields = [k for k in spec if k != "boost"]
    if len(fields) != 1:
        raise _QueryError("parsing_exception",
                          f"[{kind}] query doesn't support multiple fields, found {fields}")
    return fields[0], spec[fields[0]]


def _millis(value):
    if isinstance(value, bool):
        raise _QueryError("parse_exception", f"failed to parse date field [{value}]")
    if isinstance(value, (int, float)):
        return float(value)
    try:
        return float(value)
    except (TypeError, ValueError):
        pass
    try:
        return _utc(str(value)).timestamp() * 1000
    except (TypeError, ValueError):
        raise _QueryError("parse_exception",
                          f"failed to parse date field [{value}] (the simulator takes epoch "
                          "milliseconds or ISO dates)") from None


def _same(a, b):
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return float(a) == float(b)
    return str(a) == str(b)


def _compile(query):
    """A predicate doc -> bool for a query; malformed or unsupported queries raise here,
    before any document is looked at, as Elasticsearch does."""
    if not isinstance(query, dict) or len(query) != 1:
        raise _QueryError("parsing_exception", "a query is an object with exactly one key")
    (kind, spec), = query.items()
    if kind == "match_all":
        return lambda doc: True
    if kind == "bool":
        if not isinstance(spec, dict):
            raise _QueryError("parsing_exception", "[bool] query malformed")
        unknown = set(spec) - {"filter", "must", "must_not", "should", "minimum_should_match",
                               "boost"}
        if unknown:
            raise _QueryError("parsing_exception", f"[bool] query does not support "
                                                   f"[{sorted(unknown)[0]}]")
        required = [_compile(q) for q in _clauses(spec.get("filter")) + _clauses(spec.get("must"))]
        excluded = [_compile(q) for q in _clauses(spec.get("must_not"))]
        should = [_compile(q) for q in _clauses(spec.get("should"))]
        minimum = int(spec.get("minimum_should_match", 0 if required else 1 if should else 0))

        def match_bool(doc):
            return (all(p(doc) for p in required) and not any(p(doc) for p in excluded)
                    and (minimum == 0 or sum(1 for p in should if p(doc)) >= minimum))
        return match_bool
    if kind == "exists":
        name = (spec or {}).get("field", "") if isinstance(spec, dict) else ""
        return lambda doc: _field(doc, name) is not None
    if kind not in ("term", "terms", "prefix", "range", "wildcard"):
        raise _QueryError("parsing_exception", f"unknown query [{kind}] (the simulator supports "
                          "bool, term, terms, prefix, wildcard, range, exists and match_all)")
    name, value = _single(kind, spec)
    if kind in ("term", "prefix", "wildcard") and isinstance(value, dict):
        value = value.get("value")
    if kind == "wildcard":
        pattern = str(value)      # * and ?, case-sensitive as on a keyword field
        return lambda doc: isinstance(have := _field(doc, name), str) and \
            fnmatch.fnmatchcase(have, pattern)
    if kind == "term":
        return lambda doc: (have := _field(doc, name)) is not None and _same(have, value)
    if kind == "terms":
        if not isinstance(value, list):
            raise _QueryError("parsing_exception", "[terms] query requires an array")
        return lambda doc: (have := _field(doc, name)) is not None and any(
            _same(have, v) for v in value)
    if kind == "prefix":
        text = str(value)
        return lambda doc: isinstance(have := _field(doc, name), str) and have.startswith(text)
    if not isinstance(value, dict):
        raise _QueryError("parsing_exception", "[range] query malformed")
    is_time = name.endswith("timestamp")
    bounds = []
    for op, bound in value.items():
        if op in ("format", "time_zone", "boost"):
            continue
        if op not in ("gte", "gt", "lte", "lt"):
            raise _QueryError("parsing_exception", f"[range] query does not support [{op}]")
        bounds.append((op, _millis(bound) if is_time else bound))

    def match_range(doc):
        have = _field(doc, name)
        if have is None:
            return False
        have = _millis(have) if is_time else have
        return all((op == "gte" and have >= b) or (op == "gt" and have > b)
                   or (op == "lte" and have <= b) or (op == "lt" and have < b)
                   for op, b in bounds)
    return match_range


def _matches(doc, query):
    return _compile(query)(doc)


def _excludes_time(query, millis):
    """True if the query's required (AND-ed) ranges on metadata.timestamp exclude millis, so
    a day's index can be skipped before its documents are looked at."""
    if not isinstance(query, dict) or len(query) != 1:
        return False
    (kind, spec), = query.items()
    if kind == "bool" and isinstance(spec, dict):
        return any(_excludes_time(q, millis)
                   for q in _clauses(spec.get("filter")) + _clauses(spec.get("must")))
    if kind == "range" and isinstance(spec, dict) and "metadata.timestamp" in spec:
        return not _matches({"metadata": {"timestamp": millis}}, query)
    return False


_METRICS = ("sum", "min", "max", "avg", "value_count")


def _aggregate(docs, aggs):
    if not isinstance(aggs, dict):
        raise _QueryError("parsing_exception", "aggregations must be an object")
    out = {}
    for name, spec in aggs.items():
        if not isinstance(spec, dict):
            raise _QueryError("parsing_exception", f"aggregation [{name}] malformed")
        sub = spec.get("aggs") or spec.get("aggregations") or {}
        kinds = [k for k in spec if k not in ("aggs", "aggregations", "meta")]
        if len(kinds) != 1:
            raise _QueryError("parsing_exception", f"aggregation [{name}] needs one type")
        kind, body = kinds[0], spec[kinds[0]]
        field = (body or {}).get("field")
        if kind in _METRICS:
            values = [v for v in (_field(d, field) for d in docs)
                      if isinstance(v, (int, float)) and not isinstance(v, bool)]
            if kind == "sum":
                value = float(sum(values))
            elif kind == "value_count":
                value = len(values)
            elif not values:
                value = None
            else:
                value = float({"min": min, "max": max}.get(kind, lambda v: sum(v) / len(v))(values))
            out[name] = {"value": value}
        elif kind == "terms":
            out[name] = _terms(docs, name, body, sub)
        else:
            raise _QueryError("parsing_exception", f"unknown aggregation type [{kind}] (the "
                              f"simulator supports terms, {', '.join(_METRICS)})")
    return out


def _terms(docs, name, body, sub):
    field = body.get("field")
    if not field:
        raise _QueryError("parsing_exception", f"terms aggregation [{name}] needs a field")
    size = int(body.get("size", 10))
    min_doc_count = int(body.get("min_doc_count", 1))
    order = body.get("order", {"_count": "desc"})
    orders = order if isinstance(order, list) else [order]
    groups = {}
    for d in docs:
        value = _field(d, field)
        if value is not None:
            groups.setdefault(value, []).append(d)
    buckets = [{"key": key, "doc_count": len(group), **_aggregate(group, sub)}
               for key, group in groups.items() if len(group) >= min_doc_count]
    # Stable sorts, least significant first; ties by key ascending as in Elasticsearch.
    buckets.sort(key=lambda b: b["key"])
    for item in reversed(orders):
        if not isinstance(item, dict) or len(item) != 1:
            raise _QueryError("parsing_exception", f"terms aggregation [{name}]: bad order")
        (by, direction), = item.items()
        if by in ("_key", "_term"):
            key = lambda b: b["key"]  # noqa: E731
        elif by == "_count":
            key = lambda b: b["doc_count"]  # noqa: E731
        elif by in sub:
            key = lambda b, by=by: (b[by]["value"] is not None, b[by]["value"] or 0)  # noqa: E731
        else:
            raise _QueryError("aggregation_execution_exception",
                              f"Invalid aggregation order path [{by}]")
        buckets.sort(key=key, reverse=str(direction).lower() == "desc")
    kept = buckets[:size]
    return {"doc_count_error_upper_bound": 0,
            "sum_other_doc_count": sum(b["doc_count"] for b in buckets[size:]),
            "buckets": kept}


def _index_patterns(header):
    index = header.get("index", "*")
    if isinstance(index, str):
        index = index.split(",")
    if not isinstance(index, list) or not all(isinstance(i, str) for i in index):
        raise _QueryError("illegal_argument_exception", "index must be a string or an array")
    return [i.strip() for i in index if i.strip()] or ["*"]
