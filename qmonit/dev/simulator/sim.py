"""The Simulator: one seeded world, its clock, anomalies and faults, and the reply of every
endpoint (PanDA job statistics are generated here; CRIC records come from cric.py, the MONIT
Elasticsearch from monit.py, the HTTP server from server.py)."""
import fnmatch
import json
import logging
import math
import random
import threading
import time
from datetime import UTC, datetime

from . import benchmarks
from .cric import _ddm_record, _pandaqueue_record, _site_record
from .monit import (
    _FILE_SIZE,
    RUCIO_LAG_HOURS,
    RUCIO_RETENTION_DAYS,
    _aggregate,
    _compile,
    _datatype_group,
    _excludes_time,
    _index_patterns,
    _QueryError,
    _rucio_index,
    _rucio_profile,
)
from .server import _make_server
from .world import (
    ANOMALY_KINDS,
    FAULT_KINDS,
    MONIT_PROXY_PREFIX,
    V1_PATH,
    _fmt,
    _slot_epoch,
    _Universe,
    _utc,
)

log = logging.getLogger(__name__)


class Simulator:
    """PanDA + CRIC stand-in. See the module docstring for the endpoints."""

    def __init__(self, seed=1, series=25000, time=None, hang_seconds=30.0, odd_names=False,
                 monit_token=None, agis_lists=False, tls=None, panda_token=None,
                 legacy_removed=False):
        self.seed = seed
        # HTTPS: {"cert": PEM with the server certificate (and chain), "key": its key file,
        # "client_ca": CA file whose client certificates are required (None: none asked)}.
        self.tls = tls
        # Set: PanDA answers only with "Authorization: Bearer <panda_token>" and "Origin:
        # atlas", else HTTP 200 {"success": false, "message": "SSL secure connection is
        # required"} as before November 2025.
        self.panda_token = panda_token
        # True: the legacy statistics call answers 403, as since May 2026.
        self.legacy_removed = legacy_removed
        # The benchmark Elasticsearch's basic auth (user, password); None: any or none.
        self.es_auth = None
        # True: site and ddmendpoint dumps as lists, as AGIS served them before 2020.
        self.agis_lists = agis_lists
        # None: the MONIT proxy takes any non-empty bearer token; else exactly this one.
        self.monit_token = monit_token
        self.series_target = series
        self.odd_names = odd_names  # a few names that need escaping (tests)
        self.hang_seconds = hang_seconds
        self.url = None
        self._lock = threading.Lock()       # settings: time, anomalies, faults
        self._gen_lock = threading.Lock()   # one generation at a time, caches
        self._universe_lock = threading.Lock()
        self._universe = None
        self._time = None if time is None else _utc(time)
        self._anomalies = []
        self._faults = []
        self._reply_cache = {}
        self._cric_cache = {}
        self._rucio_cache = {}
        self._rucio_profiles = None
        self._server = None
        self._thread = None
        self._stopping = threading.Event()

    # --- universe -------------------------------------------------------------------------

    @property
    def universe(self):
        if self._universe is None:
            with self._universe_lock:
                if self._universe is None:
                    started = time.perf_counter()
                    self._universe = _Universe(self.seed, self.series_target, self.odd_names)
                    log.debug("universe for seed %s built in %.3f s", self.seed,
                              time.perf_counter() - started)
        return self._universe

    def panda_queues(self):
        """PanDA queue keys that appear in the job statistics."""
        return [q.key for q in self.universe.panda]

    def cric_queue_names(self):
        """Keys of CRIC's pandaqueue dict (queue names)."""
        return [q.name for q in self.universe.cric]

    def panda_resource(self, name):
        """CRIC queue name -> PanDA queue key."""
        return self.universe.by_name[name].key

    # --- time -----------------------------------------------------------------------------

    def set_time(self, when):
        """Fix the simulated time (datetime, naive = UTC, or string); None = wall clock."""
        with self._lock:
            self._time = None if when is None else _utc(when)

    def now(self):
        fixed = self._time
        return fixed if fixed is not None else datetime.now(UTC)

    # --- anomalies and faults -----------------------------------------------------------

    def add_anomaly(self, queue, kind, start=None, end=None):
        """Make a queue misbehave from start (default: now) until end (default: forever).

        queue is a PanDA queue key or a CRIC queue name. kind "collapse": running jobs
        drop to ~0; "spike": failed jobs become ~10x finished, at least 200 per series.
        """
        if kind not in ANOMALY_KINDS:
            raise ValueError(f"unknown anomaly kind {kind!r}; use one of {ANOMALY_KINDS}")
        universe = self.universe
        if queue not in universe.by_key:
            if queue in universe.by_name and universe.by_name[queue].in_panda:
                queue = universe.by_name[queue].key
            else:
                raise ValueError(f"unknown PanDA queue {queue!r}")
        start = _utc(start) if start is not None else self.now()
        end = _utc(end) if end is not None else None
        with self._lock:
            self._anomalies.append({"queue": queue, "kind": kind, "start": start, "end": end})

    def clear_anomalies(self):
        with self._lock:
            self._anomalies = []

    def set_fault(self, target, kind, count=None):
        """Break requests to "panda", "cric", "monit" or paths starting with target ("/...").

        kind: "500", "success_false" (v1 only), "truncated" (body cut in half), "hang"
        (no answer for hang_seconds or until stop()) or "no_aggregations" (MONIT only: a
        200 reply whose responses lack "aggregations"). count=None: until cleared;
        count=n: the next n matching requests.
        """
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; use one of {FAULT_KINDS}")
        if target not in ("panda", "cric", "monit") and not str(target).startswith("/"):
            raise ValueError(f"fault target must be 'panda', 'cric', 'monit' or a path, "
                             f"not {target!r}")
        if count is not None and int(count) < 1:
            raise ValueError("count must be at least 1 or None")
        with self._lock:
            self._faults.append({"target": target, "kind": kind,
                                 "count": None if count is None else int(count)})

    def clear_faults(self):
        with self._lock:
            self._faults = []

    def _take_fault(self, path):
        """The fault to apply to this request, if any; counts it down."""
        is_v1 = path == V1_PATH
        with self._lock:
            for fault in self._faults:
                target = fault["target"]
                if target == "panda":
                    hit = path.startswith(("/api/v1/", "/server/panda/"))
                elif target == "cric":
                    hit = path.startswith(("/api/atlas/", "/api/core/"))
                elif target == "monit":
                    hit = path.startswith(MONIT_PROXY_PREFIX)
                else:  # path has no trailing slash; a target may have one
                    hit = (path + "/").startswith(target)
                if not hit or (fault["kind"] == "success_false" and not is_v1):
                    continue
                if fault["kind"] == "no_aggregations" and not path.startswith(
                        MONIT_PROXY_PREFIX):
                    continue
                if fault["count"] is not None:
                    fault["count"] -= 1
                    if fault["count"] <= 0:
                        self._faults.remove(fault)
                return fault["kind"]
        return None

    def _active_anomalies(self, slot):
        with self._lock:
            anomalies = list(self._anomalies)
        active = []
        for a in anomalies:
            if _slot_epoch(a["start"]) <= slot and (a["end"] is None
                                                    or slot < _slot_epoch(a["end"])):
                active.append((a["queue"], a["kind"]))
        return tuple(sorted(set(active)))

    # --- PanDA statistics -----------------------------------------------------------------

    def expected_stats(self, slot_time=None, time_window=10, envelope=False):
        """The "data" dict the v1 endpoint serves at slot_time (default: now).

        That is also exactly the legacy endpoint's body; envelope=True gives the whole v1
        reply {"success": True, "message": "", "data": ...}. Anomalies are applied.
        """
        slot = _slot_epoch(self.now() if slot_time is None else slot_time)
        data = self._generate(slot, int(time_window), self._active_anomalies(slot))
        return {"success": True, "message": "", "data": data} if envelope else data

    def series_count(self, slot_time=None, time_window=10):
        data = self.expected_stats(slot_time, time_window)
        return sum(len(statuses) for labels in data.values()
                   for resources in labels.values() for statuses in resources.values())

    def _generate(self, slot, time_window, anomalies):
        universe = self.universe
        # Seeding with a string hashes it with SHA-512: stable across runs and processes.
        rnd = random.Random(f"qmonit-sim/{self.seed}/{slot}")
        r = rnd.random
        sin = math.sin
        two_pi = 2 * math.pi
        day = (slot % 86400) / 86400
        data = {}
        for q in universe.panda:
            site = q.site
            a = site.amp * sin(two_pi * (day - site.phase))
            live = 1.0 + a
            factors = (live, 1.0 - 0.5 * a, live * time_window)
            queue_data = {}
            for label, resources in q.labels:
                label_data = {}
                for resource, rows in resources:
                    counts = {}
                    for status, level, mode, zero_filled in rows:
                        # +-5% noise, then random rounding so small levels stay lively
                        n = int(level * factors[mode] * (0.95 + 0.1 * r()) + r())
                        if n or zero_filled:
                            counts[status] = n
                    label_data[resource] = counts
                queue_data[label] = label_data
            data[q.key] = queue_data
        for key, kind in anomalies:
            for label_data in data[key].values():
                for counts in label_data.values():
                    if kind == "collapse":
                        counts["running"] = counts["running"] % 3  # ~0, not a flat zero
                    else:
                        finished = counts["finished"]
                        counts["failed"] = max(10 * finished, 200 + finished % 37)
        return data

    def _stats_body(self, path, time_window, as_json):
        slot = _slot_epoch(self.now())
        anomalies = self._active_anomalies(slot)
        v1 = path == V1_PATH
        key = (slot, time_window, anomalies, v1, as_json)
        with self._gen_lock:
            body = self._reply_cache.get(key)
            if body is None:
                started = time.perf_counter()
                data = self._generate(slot, time_window, anomalies)
                payload = {"success": True, "message": "", "data": data} if v1 else data
                body = (json.dumps(payload) if as_json else str(payload)).encode()
                if len(self._reply_cache) >= 8:
                    self._reply_cache.pop(next(iter(self._reply_cache)))
                self._reply_cache[key] = body
                log.debug("statistics for slot %s generated in %.3f s", slot,
                          time.perf_counter() - started)
        return body

    # --- CRIC -----------------------------------------------------------------------------

    def cric_data(self, kind):
        """The object a CRIC endpoint serves: kind is pandaqueue, site, ddmendpoint or
        federation."""
        return json.loads(self._cric_body(kind))

    def _cric_body(self, kind):
        year = self.now().year if kind == "federation" else None
        with self._gen_lock:
            body = self._cric_cache.get((kind, year))
            if body is None:
                builder = {"pandaqueue": self._pandaqueue_payload, "site": self._site_payload,
                           "ddmendpoint": self._ddm_payload,
                           "federation": self._federation_payload}[kind]
                body = json.dumps(builder(year) if year else builder()).encode()
                self._cric_cache[(kind, year)] = body
        return body

    def _pandaqueue_payload(self):
        return {q.name: _pandaqueue_record(q, self.seed) for q in self.universe.cric}

    def _site_payload(self):
        return self._keyed([_site_record(site, self.seed) for site in self.universe.sites])

    def _ddm_payload(self):
        return self._keyed([_ddm_record(site, endpoint, self.seed)
                            for site in self.universe.sites for endpoint in site.ddmendpoints])

    def _keyed(self, records):
        """CRIC's shape, an object keyed by name (AGIS's list with agis_lists)."""
        return records if self.agis_lists else {r["name"]: r for r in records}

    # --- benchmark Elasticsearch -----------------------------------------------------------

    def benchmark_documents(self, when=None):
        """The fastBmk results indexed by `when` (default: now), newest first per queue."""
        epoch = int(_utc(when).timestamp()) if when is not None else int(self.now().timestamp())
        return benchmarks.documents(self.universe, self.seed, epoch)

    def benchmark_search(self, body):
        return benchmarks.search(self.benchmark_documents(), body)

    def expected_benchmarks(self, when, max_age_days=7, results=50):
        """{PanDA queue: mean fastBmk value of its at most `results` newest results in
        (when - max_age_days, when]}: what QMonit's age rule should give."""
        end = _utc(when).timestamp()
        start = end - max_age_days * 86400
        values = {}
        for d in self.benchmark_documents(when):
            at = datetime.fromisoformat(d["timestamp"].replace("Z", "+00:00")).timestamp()
            queue = d["metadata"]["PanDAQueue"]
            if start < at <= end and len(values.setdefault(queue, [])) < results:
                values[queue].append(d["profiles"]["fastBmk"]["value"])
        return {q: sum(v) / len(v) for q, v in values.items() if v}

    def expected_pledges(self, when):
        """{federation: ATLAS CPU pledge} for the WLCG pledge quarter that holds `when`
        (pledge years start on 1 April), from the federation dump served at `when`."""
        when = _utc(when)
        pledge_year = when.year if when.month >= 4 else when.year - 1
        # The dump holds the pledge years when.year - 1 (as planned) and when.year (grown).
        return {name: int(round(fed["cpu"] * (1.0 if pledge_year < when.year
                                              else fed["growth"]), -2))
                for name, fed in self.universe.federations.items()}

    def _federation_payload(self, year):
        out = {}
        for name, fed in self.universe.federations.items():
            site = fed["site"]
            pledges = {}
            for y, factor in ((year - 1, 1.0), (year, fed["growth"])):
                pledges[str(y)] = {
                    q: {"atlas": {"CPU": int(round(fed["cpu"] * factor, -2)),
                                  "Disk": int(round(fed["disk"] * factor, -1))}}
                    for q in ("Q1", "Q2", "Q3", "Q4")}
            out[name] = {
                "accounting_name": f"{name} ATLAS federation",
                "country": site.country,
                "country_code": site.cc,
                "id": fed["id"],
                "infrastructure": "OSG" if site.cloud == "US" else "EGI",
                "monit_tag": site.country,
                "name": name,
                "pledges": pledges,
                "rcsites": list(fed["rcsites"]),
                "tier_level": site.tier_level,
                "type": "official",
                "vos": ["atlas"],
            }
        return out

    # --- MONIT: Rucio accounting ------------------------------------------------------------

    def rucio_days(self):
        """Day starts (epoch seconds) whose accounting is indexed by now, newest first."""
        newest = (int(self.now().timestamp()) - RUCIO_LAG_HOURS * 3600) // 86400 * 86400
        return [newest - i * 86400 for i in range(RUCIO_RETENTION_DAYS)]

    def rucio_documents(self, day):
        """The accounting documents of the day that holds `day` (datetime, string or epoch
        seconds), whether or not they are indexed yet."""
        day = int(_utc(day).timestamp()) // 86400 * 86400
        with self._gen_lock:
            docs = self._rucio_cache.get(day)
            if docs is None:
                docs = self._make_rucio_documents(day)
                if len(self._rucio_cache) >= 16:
                    self._rucio_cache.pop(next(iter(self._rucio_cache)))
                self._rucio_cache[day] = docs
        return docs

    def expected_daod_volumes(self, day):
        """{DATADISK: (files, bytes)} of DAOD datatypes on the day that holds `day`."""
        out = {}
        for doc in self.rucio_documents(day):
            data = doc["data"]
            # as the DDM dashboards count: no UNKNOWN tombstone, no RSE named like "none"
            if data["tombstone"] == "UNKNOWN" or "none" in data["rse"].lower():
                continue
            if data["token"] == "ATLASDATADISK" and data["datatype_grouped"] == "DAOD":
                files, nbytes = out.get(data["rse"], (0, 0))
                out[data["rse"]] = (files + data["files"], nbytes + data["bytes"])
        return out

    def _make_rucio_documents(self, day):
        if self._rucio_profiles is None:
            self._rucio_profiles = [
                (site, name, kind, *_rucio_profile(site, name, kind, self.seed))
                for site in self.universe.sites for name, kind, _ in site.ddmendpoints]
        millis = day * 1000
        docs = []
        for site, name, kind, types, primary, phase in self._rucio_profiles:
            rnd = random.Random(f"qmonit-sim/rucio/{self.seed}/{name}/{day}")
            # a slow drift of a few % over weeks, and a little daily noise
            drift = 1 + 0.03 * math.sin(2 * math.pi * day / 86400 / 37 + phase)
            common = {"rse": name, "token": "ATLAS" + kind,
                      "rse_type": "TAPE" if kind.endswith("TAPE") else "DISK",
                      "experiment_site": site.name, "cloud": site.cloud,
                      "tier": site.tier_level}
            for datatype, typical in types:
                group = _datatype_group(datatype)
                total = typical * drift * rnd.uniform(0.995, 1.005)
                # Some DATADISKs also account a little under tombstone UNKNOWN.
                unknown = 0.03 if kind == "DATADISK" and phase < 1.5 else 0.0
                for tombstone, share in (("primary", primary), ("secondary", 1 - primary),
                                         ("UNKNOWN", unknown)):
                    nbytes = int(total * share)
                    if nbytes <= 0:
                        continue
                    files = max(1, round(nbytes / (_FILE_SIZE.get(group, 1e9)
                                                   * rnd.uniform(0.8, 1.2))))
                    docs.append({"metadata": {"timestamp": millis},
                                 "data": {**common, "datatype": datatype,
                                          "datatype_grouped": group, "tombstone": tombstone,
                                          "files": files, "bytes": nbytes}})
        # Rows Rucio could not attribute to an RSE.
        rnd = random.Random(f"qmonit-sim/rucio/{self.seed}/none/{day}")
        docs.append({"metadata": {"timestamp": millis},
                     "data": {"rse": "none", "token": "ATLASDATADISK", "rse_type": "DISK",
                              "experiment_site": "none", "cloud": "none", "tier": 2,
                              "datatype": "DAOD_PHYS", "datatype_grouped": "DAOD",
                              "tombstone": "primary", "files": rnd.randint(10, 1000),
                              "bytes": rnd.randint(10**12, 10**13)}})
        return docs

    def msearch(self, raw, no_aggregations=False):
        """(HTTP status, reply object) for an _msearch body (bytes or str)."""
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
        if not text.endswith("\n"):
            return 400, _QueryError("illegal_argument_exception", "The msearch request must "
                                    "be terminated by a newline [\\n]").body()
        lines = [line for line in text.split("\n") if line.strip()]
        if not lines or len(lines) % 2:
            return 400, _QueryError("illegal_argument_exception", "an msearch body is pairs "
                                    "of a header line and a query line").body()
        pairs = []
        for i in range(0, len(lines), 2):
            try:
                header, query = json.loads(lines[i]), json.loads(lines[i + 1])
            except ValueError as exc:
                return 400, _QueryError("json_parse_exception", str(exc)).body()
            if not isinstance(header, dict) or not isinstance(query, dict):
                return 400, _QueryError("parsing_exception",
                                        "header and query lines must be objects").body()
            pairs.append((header, query))
        return 200, {"responses": [self._search(h, q, no_aggregations) for h, q in pairs]}

    def _search(self, header, query, no_aggregations):
        started = time.perf_counter()
        try:
            unknown = set(query) - {"size", "from", "query", "aggs", "aggregations",
                                    "track_total_hits", "timeout"}
            if unknown:
                raise _QueryError("parsing_exception",
                                  f"unknown key [{sorted(unknown)[0]}] in the search body")
            days = self.rucio_days()
            selected = []
            for pattern in _index_patterns(header):
                hit = [d for d in days if fnmatch.fnmatchcase(_rucio_index(d), pattern)]
                if not hit and "*" not in pattern and not header.get("ignore_unavailable"):
                    raise _QueryError("index_not_found_exception", f"no such index [{pattern}]",
                                      404)
                selected += [d for d in hit if d not in selected]
            condition = query.get("query", {"match_all": {}})
            predicate = _compile(condition)
            matched, skipped = [], 0
            for day in sorted(selected):
                if _excludes_time(condition, day * 1000):
                    skipped += 1
                    continue
                matched += [d for d in self.rucio_documents(day) if predicate(d)]
            size = int(query.get("size", 10))
            reply = {"took": 0, "timed_out": False,
                     "_shards": {"total": len(selected), "successful": len(selected),
                                 "skipped": skipped, "failed": 0},
                     "hits": {"total": len(matched), "max_score": 0.0,
                              "hits": [{"_index": _rucio_index(d["metadata"]["timestamp"] // 1000),
                                        "_id": f"{d['data']['rse']}-{d['data']['datatype']}-"
                                               f"{d['data']['tombstone']}",
                                        "_score": 0.0, "_source": d}
                                       for d in matched[:max(size, 0)]]}}
            aggs = query.get("aggs", query.get("aggregations"))
            if aggs is not None and not no_aggregations:
                reply["aggregations"] = _aggregate(matched, aggs)
            reply["took"] = int((time.perf_counter() - started) * 1000)
            reply["status"] = 200
            return reply
        except _QueryError as exc:
            return exc.body()
        except (TypeError, ValueError) as exc:
            return _QueryError("parsing_exception", str(exc)).body()

    # --- state and control ---------------------------------------------------------------

    def state(self):
        with self._lock:
            fixed = self._time
            anomalies = [{"queue": a["queue"], "kind": a["kind"], "start": _fmt(a["start"]),
                          "end": _fmt(a["end"])} for a in self._anomalies]
            faults = [dict(f) for f in self._faults]
        now = self.now()
        return {
            "seed": self.seed,
            "series_target": self.series_target,
            "time": _fmt(fixed),
            "now": _fmt(now),
            "slot": _fmt(datetime.fromtimestamp(_slot_epoch(now), UTC)),
            "anomalies": anomalies,
            "faults": faults,
            "queues": self.panda_queues(),
            "series": self.series_count(now, 10),
        }

    def control(self, settings):
        """Apply a /_sim/control request body (a dict). Raises ValueError on bad input."""
        if not isinstance(settings, dict):
            raise ValueError("control body must be a JSON object")
        if settings.get("clear"):
            self.clear_anomalies()
            self.clear_faults()
        if "time" in settings:
            self.set_time(settings["time"])
        for a in settings.get("anomalies") or []:
            self.add_anomaly(a["queue"], a["kind"], a.get("start"), a.get("end"))
        for f in settings.get("faults") or []:
            self.set_fault(f["target"], f["kind"], f.get("count"))

    # --- lifecycle ------------------------------------------------------------------------

    def start(self, host="127.0.0.1", port=0):
        """Serve in a background thread; returns the base URL."""
        if self._server is not None:
            raise RuntimeError("simulator already started")
        _ = self.universe  # build now so the first request is not slow
        self._stopping = threading.Event()
        server = _make_server(self, host, port)
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever,
                                        kwargs={"poll_interval": 0.05},
                                        name="qmonit-simulator", daemon=True)
        self._thread.start()
        scheme = "https" if self.tls else "http"
        self.url = f"{scheme}://{host}:{server.server_address[1]}"
        log.info("simulator (seed %s, %d PanDA queues) at %s", self.seed,
                 len(self.universe.panda), self.url)
        return self.url

    def stop(self):
        """Stop serving; wakes hanging requests and closes open connections."""
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.close_connections()
        server.server_close()
        self._thread.join(timeout=5)
        self._thread = None
        self.url = None

    def __enter__(self):
        if self._server is None:
            self.start()
        return self

    def __exit__(self, *exc):
        self.stop()
