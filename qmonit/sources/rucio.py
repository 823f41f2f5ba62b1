"""DAOD volume per DATADISK from MONIT's Rucio accounting, through the Grafana datasource proxy.

One `_msearch` POST (NDJSON: a header line, a query line, a final newline) with a bearer token
asks the Rucio accounting index (monit_prod_rucioacc_enr_site*) for one UTC day, keeping only
documents with

    data.datatype_grouped = "DAOD"                          (DAOD_PHYS, DAOD_PHYSLITE, ...)
    data.token in ("ATLASDATADISK", "T2ATLASDATADISK")      (DATADISK endpoints)
    metadata.timestamp in [day, day + 1 d)                  (epoch milliseconds)

and without documents that the DDM dashboards leave out of Rucio accounting too:

    data.tombstone = "UNKNOWN"          replicas whose lifetime state Rucio could not tell
    data.rse like *none* / *NONE*       accounting rows not attributed to a real RSE

(keyword fields, as data.rse must be for the terms aggregation; the original QMonit's
run_scrapers.py sent the same time range, DAOD and DATADISK selection, and no exclusions.)

and sums data.files and data.bytes per data.rse. The aggregations are named as Grafana names
them ("4": terms per RSE; "1": sum of files; "3": sum of bytes), so a reply recorded from a
Grafana panel parses the same way.
"""
import datetime as dt
import json
import logging
import math
from collections import namedtuple

from ..core import http, tls
from ..core.errors import SourceError

log = logging.getLogger(__name__)

INDEX = "monit_prod_rucioacc_enr_site*"
TIME_FIELD = "metadata.timestamp"
RSE_FIELD = "data.rse"
FILES_FIELD = "data.files"
BYTES_FIELD = "data.bytes"
DATATYPE_GROUP_FIELD = "data.datatype_grouped"
DAOD = "DAOD"
TOKEN_FIELD = "data.token"  # noqa: S105 (a field name, not a secret)
DATADISK_TOKENS = ("ATLASDATADISK", "T2ATLASDATADISK")
TOMBSTONE_FIELD = "data.tombstone"
UNKNOWN_TOMBSTONE = "UNKNOWN"
# RSE names containing "none" are no RSE (wildcards are case-sensitive on keyword fields).
NO_RSE_PATTERNS = ("*none*", "*NONE*")
# More buckets than ATLAS has RSEs; a reply that still leaves some out is refused.
MAX_RSES = 10000
BY_RSE, FILES, BYTES = "4", "1", "3"
DAY = dt.timedelta(days=1)

Volume = namedtuple("Volume", "files bytes")


def session(config):
    """A session for [credentials_monit_grafana]: its ca_path, cert and key."""
    return http.session(tls=tls.settings(config, "credentials_monit_grafana"))


def day_start(when):
    return dt.datetime(when.year, when.month, when.day, tzinfo=dt.UTC)


def _millis(when):
    return int(when.timestamp()) * 1000


def msearch_body(day, index=INDEX):
    """The NDJSON body that asks for DAOD files and bytes per DATADISK on one UTC day."""
    header = {"search_type": "query_then_fetch", "ignore_unavailable": True, "index": [index]}
    query = {
        "size": 0,
        "query": {"bool": {"filter": [
            {"range": {TIME_FIELD: {"gte": _millis(day), "lt": _millis(day + DAY),
                                    "format": "epoch_millis"}}},
            {"term": {DATATYPE_GROUP_FIELD: DAOD}},
            {"terms": {TOKEN_FIELD: list(DATADISK_TOKENS)}},
        ], "must_not": [
            {"term": {TOMBSTONE_FIELD: UNKNOWN_TOMBSTONE}},
            *({"wildcard": {RSE_FIELD: pattern}} for pattern in NO_RSE_PATTERNS),
        ]}},
        "aggs": {BY_RSE: {
            "terms": {"field": RSE_FIELD, "size": MAX_RSES, "order": {"_key": "asc"},
                      "min_doc_count": 1},
            "aggs": {FILES: {"sum": {"field": FILES_FIELD}},
                     BYTES: {"sum": {"field": BYTES_FIELD}}}}},
    }
    return json.dumps(header) + "\n" + json.dumps(query) + "\n"


def _number(url, bucket, name):
    entry = bucket.get(name)
    if not isinstance(entry, dict):
        raise SourceError(url, f"bucket {bucket.get('key')!r} lacks aggregation {name!r}")
    value = entry.get("value")
    if value is None:
        return 0.0  # a sum over documents without the field
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value < 0:
        raise SourceError(url, f"bucket {bucket.get('key')!r}: aggregation {name!r} is "
                               f"{value!r}, not a non-negative number")
    return float(value)


def parse_reply(url, payload):
    """{RSE: Volume(files, bytes)} from an _msearch reply; SourceError for anything else."""
    responses = payload.get("responses") if isinstance(payload, dict) else None
    if not isinstance(responses, list) or not responses:
        if isinstance(payload, dict) and "error" in payload:
            raise SourceError(url, f"Elasticsearch error: {_reason(payload['error'])}")
        raise SourceError(url, "not an _msearch reply (no \"responses\")")
    reply = responses[0]
    if not isinstance(reply, dict):
        raise SourceError(url, "not an _msearch reply (a response is not an object)")
    if "error" in reply:
        raise SourceError(url, f"Elasticsearch error (status {reply.get('status', '?')}): "
                               f"{_reason(reply['error'])}")
    if reply.get("timed_out"):
        raise SourceError(url, "Elasticsearch timed out; the sums would be partial")
    shards = reply.get("_shards") or {}
    if isinstance(shards, dict) and shards.get("failed"):
        log.warning("%s: %s of %s shards failed; DAOD volumes may be low", url,
                    shards.get("failed"), shards.get("total", "?"))
    aggregations = reply.get("aggregations")
    if not isinstance(aggregations, dict) or not isinstance(aggregations.get(BY_RSE), dict):
        raise SourceError(url, f"the reply has no aggregations (expected \"{BY_RSE}\", terms "
                               "per RSE)")
    by_rse = aggregations[BY_RSE]
    buckets = by_rse.get("buckets")
    if not isinstance(buckets, list):
        raise SourceError(url, f"aggregation \"{BY_RSE}\" has no bucket list")
    if by_rse.get("sum_other_doc_count"):
        raise SourceError(url, f"{by_rse['sum_other_doc_count']} documents fell outside the "
                               f"{len(buckets)} RSE buckets; the sums would be partial")
    volumes = {}
    for bucket in buckets:
        if not isinstance(bucket, dict) or not isinstance(bucket.get("key"), str):
            raise SourceError(url, f"a bucket without an RSE name: {str(bucket)[:100]}")
        files, nbytes = _number(url, bucket, FILES), _number(url, bucket, BYTES)
        have = volumes.get(bucket["key"], Volume(0, 0))
        volumes[bucket["key"]] = Volume(have.files + int(round(files)),
                                        have.bytes + int(round(nbytes)))
    return volumes


def _reason(error):
    if isinstance(error, dict):
        text = f"{error.get('type', 'error')}: {error.get('reason', '')}"
    else:
        text = str(error)
    return " ".join(text.split())[:200]


def fetch_volumes(session, url, token, day, timeout, index=INDEX):
    """DAOD {RSE: Volume} on DATADISKs for the UTC day that starts at `day`."""
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/x-ndjson",
               "Accept": "application/json"}
    text = http.fetch(session, url, timeout, method="POST",
                      data=msearch_body(day, index).encode(), headers=headers)
    return parse_reply(url, http.parse_json(url, text))


def latest_volumes(session, url, token, now, timeout, index=INDEX):
    """(day, volumes) for the last complete UTC day before `now`, or the day before it when
    that day's accounting is not in MONIT yet (it arrives some hours after midnight)."""
    yesterday = day_start(now) - DAY
    for day in (yesterday, yesterday - DAY):
        volumes = fetch_volumes(session, url, token, day, timeout, index)
        if volumes:
            return day, volumes
        log.debug("no DAOD accounting for %s yet", f"{day:%Y-%m-%d}")
    raise SourceError(url, f"no DAOD data on any DATADISK for {yesterday:%Y-%m-%d} nor the "
                           "day before (is the Rucio accounting in MONIT?)")
