"""Local stand-in for the PanDA server and CRIC, for tests, the demo and the benchmark.

One ThreadingHTTPServer answers, in the formats the real services use:

PanDA job statistics, QUEUE -> LABEL -> RESOURCE_TYPE -> STATUS -> COUNT
  GET /api/v1/statistics/job_stats_by_site_share_and_resource_type?time_window=N
      With "Accept: application/json": JSON {"success": true, "message": "", "data": {...}};
      without it: Python str() of that same dict. Content-Type is text/plain either way,
      as on the real server.
  GET /server/panda/get_job_statistics_per_site_label_resource?time_window=N
      Legacy API: the bare {QUEUE: ...} dict, JSON or str() as above, text/plain.
  assigned, activated, running, finished and failed are always present (zero-filled) for
  every (queue, label, resource) reported; other statuses only when non-zero. Final
  statuses (finished, failed, cancelled, closed) count the last N minutes, so they scale
  with time_window; the others do not depend on it. time_window defaults to 720.

CRIC (JSON, application/json; query strings such as "?json" are ignored)
  GET /api/atlas/pandaqueue/query/    dict keyed by queue name; "panda_resource" is the
                                      PanDA queue key, which differs from the name for ~5%
  GET /api/atlas/site/query/          list of ATLAS sites
  GET /api/atlas/ddmendpoint/query/   list of DDM endpoints
  GET /api/core/federation/query/     dict keyed by federation, CPU/Disk pledges per
                                      quarter for the simulated year and the one before

MONIT Grafana datasource proxy to the Rucio accounting Elasticsearch (see MONIT below)
  POST /api/datasources/proxy/<id>/_msearch   NDJSON body (header line, query line, ...,
                                      final newline) with "Authorization: Bearer <token>"
                                      (any non-empty token, or Simulator(monit_token=...));
                                      401 without one. Reply {"responses": [...]}, one per
                                      query, shaped like the real one.

Simulator control (never affected by faults)
  POST /_sim/control  JSON {"time": "YYYY-mm-dd HH:MM:SS" or null, "anomalies": [{"queue",
                      "kind", "start", "end"}], "faults": [{"target", "kind", "count"}],
                      "clear": bool}. "clear" drops anomalies and faults before the rest is
                      applied; a missing "time" key leaves the time alone, null means wall clock.
  GET  /_sim/state    current settings, "queues" (PanDA queue keys) and "series" (count in
                      the v1 reply for the current slot at time_window=10)
Anything else is 404.

The universe of sites and queues is a pure function of the seed and the series target.
Counts are a pure function of (seed, 10-minute slot of the simulated time, time_window,
active anomalies): the same inputs give byte-identical replies. Running jobs follow a
daily sinusoid (peak in the site's local afternoon, about +-30%) plus a few % of noise.

Usage:
    with Simulator(seed=1) as sim:          # or sim.start() / sim.stop()
        urls = config_urls(sim.url)
    python -m qmonit.dev.simulator --port 8080 --seed 1 --series 25000 [--time "..."]
"""
import fnmatch
import json
import logging
import math
import random
import threading
import time
from datetime import UTC, datetime

log = logging.getLogger(__name__)

SLOT_SECONDS = 600
DEFAULT_TIME_WINDOW = 720  # what PanDA uses when the parameter is missing (12 h)

STATUSES = ("pending", "defined", "waiting", "assigned", "throttled", "activated", "sent",
            "starting", "running", "holding", "transferring", "merging",
            "finished", "failed", "cancelled", "closed")
ZERO_FILLED = ("assigned", "activated", "running", "finished", "failed")
FINAL_STATUSES = ("finished", "failed", "cancelled", "closed")

V1_PATH = "/api/v1/statistics/job_stats_by_site_share_and_resource_type"
LEGACY_PATH = "/server/panda/get_job_statistics_per_site_label_resource"
PANDAQUEUE_PATH = "/api/atlas/pandaqueue/query"
SITE_PATH = "/api/atlas/site/query"
DDM_PATH = "/api/atlas/ddmendpoint/query"
FEDERATION_PATH = "/api/core/federation/query"

ANOMALY_KINDS = ("collapse", "spike")
MONIT_PROXY_PREFIX = "/api/datasources/proxy/"
MONIT_DATASOURCE_ID = 7811
MONIT_PATH = f"{MONIT_PROXY_PREFIX}{MONIT_DATASOURCE_ID}/_msearch"

FAULT_KINDS = ("500", "success_false", "truncated", "hang", "no_aggregations")

# How a status level is turned into a count: live statuses follow the day curve, queued
# ones move against it (work piles up when fewer slots are free), final ones are a rate
# per minute multiplied by time_window.
_LIVE, _QUEUED, _FINAL = 0, 1, 2
_STATUS_MODE = {
    "pending": _QUEUED, "defined": _QUEUED, "waiting": _QUEUED, "assigned": _QUEUED,
    "throttled": _QUEUED, "activated": _QUEUED, "sent": _LIVE, "starting": _LIVE,
    "running": _LIVE, "holding": _LIVE, "transferring": _LIVE, "merging": _LIVE,
    "finished": _FINAL, "failed": _FINAL, "cancelled": _FINAL, "closed": _FINAL,
}
_STATUS_ORDER = {s: i for i, s in enumerate(STATUSES)}

# (cloud, country, country code, site name prefix, UTC offset in hours, weight)
_COUNTRIES = (
    ("US", "USA", "US", "", -6, 14),
    ("CA", "Canada", "CA", "CA-", -5, 4),
    ("UK", "United Kingdom", "UK", "UKI-", 0, 11),
    ("FR", "France", "FR", "IN2P3-", 1, 8),
    ("FR", "Japan", "JP", "TOKYO-", 9, 1),
    ("FR", "Romania", "RO", "RO-", 2, 2),
    ("DE", "Germany", "DE", "", 1, 8),
    ("DE", "Poland", "PL", "PL-", 1, 2),
    ("DE", "Czech Republic", "CZ", "CZ-", 1, 2),
    ("IT", "Italy", "IT", "INFN-", 1, 7),
    ("ES", "Spain", "ES", "ES-", 1, 4),
    ("ES", "Portugal", "PT", "PT-", 0, 1),
    ("NL", "Netherlands", "NL", "NL-", 1, 2),
    ("NL", "Israel", "IL", "IL-", 2, 2),
    ("ND", "Norway", "NO", "NDGF-", 1, 2),
    ("ND", "Sweden", "SE", "SE-", 1, 2),
    ("RU", "Russian Federation", "RU", "RU-", 3, 5),
    ("TW", "Taiwan", "TW", "TW-", 8, 2),
    ("TW", "China", "CN", "BEIJING-", 8, 1),
    ("CERN", "Switzerland", "CH", "CERN-", 1, 1),
)
_SYLLABLES = ("AL", "BE", "CA", "DO", "EL", "FI", "GA", "HE", "IR", "JU", "KA", "LO", "MA",
              "NE", "OR", "PA", "QU", "RI", "SA", "TO", "UL", "VE", "WA", "XE", "YO", "ZA",
              "BRA", "CHE", "DRU", "GLO", "KRI", "PRE", "STA", "TRO", "VLA", "NOR", "MIR")
_SITE_SUFFIXES = ("", "", "", "-LCG2", "-T2", "_HEP", "-GRID", "2")
_BATCH_SUFFIXES = ("-condor", "-lsf", "-slurm", "-pbs", "-arc")

# Queue flavours: (name pattern, CRIC type, capability, median running, combos), where a
# combo is (label, resource, share of the queue's running jobs, probability to exist).
_FLAVOURS = {
    "prod": ("{s}", "production", "mcore", 150, (
        ("managed", "MCORE", 0.5, 1.0), ("managed", "SCORE", 0.35, 1.0),
        ("managed", "SCORE_HIMEM", 0.08, 0.7), ("managed", "MCORE_HIMEM", 0.05, 0.5),
        ("test", "SCORE", 0.005, 0.5), ("test", "MCORE", 0.005, 0.4),
        ("ptest", "SCORE", 0.003, 0.2))),
    "ucore": ("{s}_UCORE", "unified", "ucore", 250, (
        ("managed", "MCORE", 0.45, 1.0), ("managed", "SCORE", 0.25, 1.0),
        ("managed", "SCORE_HIMEM", 0.05, 0.6), ("managed", "MCORE_HIMEM", 0.04, 0.4),
        ("user", "SCORE", 0.2, 1.0), ("user", "SCORE_HIMEM", 0.03, 0.5),
        ("user", "MCORE", 0.02, 0.3), ("rc_alrb", "SCORE", 0.002, 0.3),
        ("test", "SCORE", 0.005, 0.5))),
    "mcore": ("{s}_MCORE", "production", "mcore", 120, (
        ("managed", "MCORE", 0.85, 1.0), ("managed", "MCORE_HIMEM", 0.1, 0.7),
        ("managed", "MCORE_LOMEM", 0.03, 0.1), ("test", "MCORE", 0.005, 0.6),
        ("ptest", "MCORE", 0.003, 0.3))),
    "himem": ("{s}_HIMEM", "production", "himem", 40, (
        ("managed", "SCORE_HIMEM", 0.6, 1.0), ("managed", "MCORE_HIMEM", 0.4, 0.8),
        ("test", "SCORE_HIMEM", 0.01, 0.3))),
    "es": ("{s}_ES", "production", "mcore", 60, (
        ("managed", "MCORE", 0.9, 1.0), ("managed", "MCORE_HIMEM", 0.1, 0.5),
        ("test", "MCORE", 0.01, 0.5))),
    "test": ("{s}_TEST", "production", "score", 4, (
        ("test", "SCORE", 0.5, 1.0), ("ptest", "SCORE", 0.3, 0.8),
        ("rc_test2", "SCORE", 0.2, 0.6), ("test", "MCORE", 0.3, 0.5),
        ("ptest", "MCORE", 0.2, 0.3))),
    "analy": ("ANALY_{s}", "analysis", "score", 100, (
        ("user", "SCORE", 0.75, 1.0), ("user", "SCORE_HIMEM", 0.1, 0.8),
        ("user", "MCORE", 0.1, 0.5), ("user", "SCORE_VHIMEM", 0.02, 0.05),
        ("test", "SCORE", 0.005, 0.6), ("rc_alrb", "SCORE", 0.003, 0.4),
        ("panda", "SCORE", 0.002, 0.1))),
}
# Flavours a site gets, in order, by how many queues it has.
_FLAVOUR_ORDER = ("prod", "analy", "ucore", "mcore", "test", "himem", "es")

# Mean job wall time in minutes by label (SCORE / MCORE): sets the finished rate.
_WALLTIME = {"managed": (240, 600), "user": (60, 90), "unknown": (60, 60)}
_CORES = {"SCORE": 1, "MCORE": 8, "SCORE_HIMEM": 1, "MCORE_HIMEM": 8, "MCORE_LOMEM": 8,
          "SCORE_VHIMEM": 1}


def _utc(value):
    """datetime, "YYYY-mm-dd HH:MM:SS" or epoch seconds -> aware UTC datetime."""
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(value, UTC)
    if isinstance(value, str):
        value = datetime.fromisoformat(value.strip())
    if not isinstance(value, datetime):
        raise TypeError(f"not a time: {value!r}")
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _slot_epoch(value):
    epoch = int(_utc(value).timestamp())
    return epoch - epoch % SLOT_SECONDS


def _fmt(dt):
    return None if dt is None else dt.strftime("%Y-%m-%d %H:%M:%S")


def config_urls(base_url):
    """QMonit configuration values that point at a simulator running at base_url."""
    base = base_url.rstrip("/")
    return {
        "panda_url": base,
        "pandaqueue_url": base + PANDAQUEUE_PATH + "/?json",
        "site_url": base + SITE_PATH + "/?json",
        "ddmendpoint_url": base + DDM_PATH + "/?json",
        "federation_url": base + FEDERATION_PATH + "/?json",
        "monit_url": base + MONIT_PATH,
    }


class _Site:
    def __init__(self, **kw):
        self.__dict__.update(kw)
        self.queues = []


class _Queue:
    def __init__(self, **kw):
        self.__dict__.update(kw)


class _Universe:
    """Sites, queues and per-series base levels, built once from (seed, series target)."""

    def __init__(self, seed, series_target, odd_names=False):
        self.seed = seed
        self.series_target = series_target
        rnd = random.Random(f"qmonit-sim/universe/{seed}")
        self.sites = []
        self.queues = []  # every queue, CRIC-known or not
        self._names = set()        # sites, DDM prefixes, federations
        self._queue_names = set()  # queues have their own namespace
        self._build(rnd)
        if odd_names:
            self._oddify()
        self.panda = [q for q in self.queues if q.in_panda]
        self.cric = [q for q in self.queues if q.in_cric]
        self.by_key = {q.key: q for q in self.panda}
        self.by_name = {q.name: q for q in self.cric}

    # --- construction -------------------------------------------------------------------

    def _unique(self, make, names=None):
        names = self._names if names is None else names
        for _ in range(1000):
            name = make()
            if name not in names:
                names.add(name)
                return name
        raise RuntimeError("ran out of names")

    def _word(self, rnd):
        return "".join(rnd.choice(_SYLLABLES) for _ in range(rnd.choice((2, 2, 3))))

    def _build(self, rnd):
        weights = [c[5] for c in _COUNTRIES]
        federations = {}  # country code -> list of open T2 federations
        expected = 0.0
        while expected < self.series_target or not self.sites:
            site = self._make_site(rnd, rnd.choices(_COUNTRIES, weights)[0], federations)
            self.sites.append(site)
            expected += self._make_queues(rnd, site)
            # Now and then an HPC or cloud resource hangs off a grid site: its own ATLAS
            # site name, the parent's RC site, no storage of its own.
            if site.tier_level < 3 and rnd.random() < 0.05 and expected < self.series_target:
                extra = self._make_satellite(rnd, site)
                self.sites.append(extra)
                expected += self._make_queues(rnd, extra)
        # A handful of queues PanDA reports but CRIC does not know (renamed, test setups).
        for _ in range(max(3, len(self.queues) // 150)):
            site = self.sites[rnd.randrange(len(self.sites))]
            key = self._unique(lambda site=site: f"{site.name}_{rnd.choice(('OLD', 'TMP', 'NEW'))}"
                                       f"{rnd.randint(1, 9)}", self._queue_names)
            q = self._queue(rnd, site, key, key, "prod", 1.0)
            q.in_cric, q.in_panda = False, True
            self.queues.append(q)
        self._pledges(rnd)

    def _oddify(self):
        """Give a few queues, labels, resources and a site names that need escaping everywhere:
        spaces, commas, '=', both quotes, backslashes and non-ASCII."""
        panda = [q for q in self.queues if q.in_panda and q.in_cric and q.labels]
        first, second, third = panda[0], panda[1], panda[2]
        first.name = first.key = 'ANALY_ODD "quoted", a=b \u00fc\u65e5'
        label, resources = second.labels[0]
        resource, rows = resources[0]
        resources[0] = ("MCORE, HI=MEM 'x'", rows)
        second.labels[0] = ("user group=\u00e9, \"q\"", resources)
        third.site.name = "Site with spaces, commas=and 'quotes' \u00e5\\x"

    def _make_site(self, rnd, country, federations):

        cloud, country_name, cc, prefix, offset, _ = country
        name = self._unique(lambda: prefix + self._word(rnd) + rnd.choice(_SITE_SUFFIXES))
        r = rnd.random()
        tier_level = 1 if r < 0.07 else (3 if r < 0.25 else 2)
        if tier_level == 1:
            tier = "T1"
        elif tier_level == 3:
            tier = "T3"
        else:
            tier = "T2D" if rnd.random() < 0.45 else "T2"
        # Federations: each T1 its own; T2s of a country share one until it has 1-3
        # members; T3s sit in a national Tier3 federation that has no pledge.
        if tier_level == 1:
            federation = self._unique(lambda: f"{cc}-T1-{self._word(rnd)}")
        elif tier_level == 3:
            federation = f"{cc}-Tier3s"
        else:
            open_feds = federations.setdefault(cc, [])
            if open_feds and open_feds[-1][1] > 0:
                open_feds[-1][1] -= 1
                federation = open_feds[-1][0]
            else:
                federation = self._unique(lambda: f"{cc}-{self._word(rnd).title()}")
                open_feds.append([federation, rnd.choice((0, 0, 1, 2))])
        has_storage = tier_level < 3 or rnd.random() < 0.3
        # The DDM name prefix is usually the site name, sometimes an older storage name.
        ddm_prefix = name if rnd.random() < 0.85 else self._unique(
            lambda: self._word(rnd) + rnd.choice(("XRD", "DISK", "SE", "")))
        site = _Site(
            name=name, rc_site=name, panda_site=name if rnd.random() < 0.7 else name + "_PS",
            cloud=cloud, country=country_name, cc=cc, offset=offset, tier_level=tier_level,
            tier=tier, federation=federation, corepower=round(rnd.uniform(8, 20), 2),
            state="ACTIVE" if rnd.random() < 0.97 else "DISABLED", kind="GRID",
            has_storage=has_storage, ddm_prefix=ddm_prefix, parent=None,
            # peak at about 15:00 local time, with a site-specific shift
            phase=(9 - offset) / 24 + rnd.uniform(-0.08, 0.08),
            amp=rnd.uniform(0.25, 0.35),
            latitude=round(rnd.uniform(-40, 65), 4), longitude=round(rnd.uniform(-125, 140), 4),
        )
        site.ddmendpoints = self._endpoints(rnd, site) if has_storage else []
        return site

    def _make_satellite(self, rnd, parent):
        kind = rnd.choice(("hpc", "cloud"))
        site = _Site(**{k: v for k, v in parent.__dict__.items() if k != "queues"})
        site.queues = []
        site.name = self._unique(lambda: f"{parent.name}_{kind.upper()}{rnd.choice(('', '2'))}")
        site.panda_site = site.name
        site.kind = kind
        site.parent = parent
        site.has_storage = False
        site.ddmendpoints = []
        site.ddm_prefix = site.name
        site.state = "ACTIVE"
        return site

    def _endpoints(self, rnd, site):
        types = ["DATADISK", "SCRATCHDISK"]
        if rnd.random() < 0.8:
            types.append("LOCALGROUPDISK")
        if site.tier_level == 1:
            types += ["MCTAPE", "DATATAPE"]
        if rnd.random() < 0.2:
            types.append("CALIBDISK")
        if rnd.random() < 0.3:
            types.append("HOTDISK")  # long retired, kept as DISABLED like in real CRIC
        return [(f"{site.ddm_prefix}_{t}", t, "DISABLED" if t == "HOTDISK" else "ACTIVE")
                for t in types]

    def _make_queues(self, rnd, site):
        if site.kind != "GRID":
            flavours = ["prod"] + (["analy"] if rnd.random() < 0.3 else [])
        else:
            if site.tier_level == 1:
                n = rnd.randint(8, 12)
            elif site.tier_level == 2:
                n = rnd.choice((3, 4, 5, 5, 6, 6, 7))
            else:
                n = rnd.choice((1, 2, 2))
            flavours = list(_FLAVOUR_ORDER[:min(n, len(_FLAVOUR_ORDER))])
            if site.tier_level == 3 and n == 1:
                flavours = [rnd.choice(("prod", "analy", "ucore"))]
            for _ in range(n - len(flavours)):
                flavours.append(rnd.choice(("prod", "ucore", "mcore", "analy")))
        size = {1: 3.0, 2: 1.0, 3: 0.3}[site.tier_level]
        if site.tier == "T2D":
            size *= 1.5
        if site.kind == "hpc":
            size *= 4
        expected = 0.0
        for flavour in flavours:
            pattern = _FLAVOURS[flavour][0]
            plain = pattern.format(s=site.name)
            base = plain
            for i in range(2, 1000):
                if base not in self._queue_names:
                    break
                base = f"{plain}_{i}"
            self._queue_names.add(base)
            # ~5% of CRIC queue names carry a batch-system suffix PanDA does not use
            name = base
            if rnd.random() < 0.05:
                name = self._unique(lambda base=base: base + rnd.choice(_BATCH_SUFFIXES),
                                    self._queue_names)
            q = self._queue(rnd, site, name, base, flavour, size)
            site.queues.append(q)
            self.queues.append(q)
            if q.in_panda:
                expected += q.expected_series
        return expected

    def _queue(self, rnd, site, name, key, flavour, size):
        _, qtype, capability, median, combo_specs = _FLAVOURS[flavour]
        r = rnd.random()
        status = ("online" if r < 0.85 else "test" if r < 0.90
                  else "brokeroff" if r < 0.93 else "offline")
        if flavour == "test":
            status = "test"
        total = min(8000.0, median * size * math.exp(rnd.gauss(0, 1.0)))
        fail_frac = min(0.5, max(0.005, math.exp(rnd.gauss(math.log(0.06), 0.7))))
        combos = []
        for label, resource, share, prob in combo_specs:
            if rnd.random() < prob:
                combos.append((label, resource, self._rows(rnd, label, resource,
                                                           total * share, fail_frac)))
        if rnd.random() < 0.02:  # jobs whose share PanDA could not resolve
            combos.append(("unknown", "SCORE", self._rows(rnd, "unknown", "SCORE",
                                                          rnd.uniform(1, 20), fail_frac)))
        by_label = {}
        for label, resource, rows in combos:
            by_label.setdefault(label, []).append((resource, rows))
        expected = 0.0
        for _, _, rows in combos:
            for _, level, mode, zero_filled in rows:
                if zero_filled:
                    expected += 1
                else:
                    # level at time_window=10; optional rows below 1 show up sometimes
                    expected += min(1.0, level * (10 if mode == _FINAL else 1))
        read_lan, write_lan = self._storages(rnd, site)
        return _Queue(
            name=name, key=key, site=site, flavour=flavour, type=qtype,
            capability=capability, status=status,
            state="ACTIVE" if status != "offline" or rnd.random() < 0.5 else "INACTIVE",
            in_cric=True, in_panda=status != "offline",  # offline queues have no jobs
            corecount=1 if capability == "score" and rnd.random() < 0.7 else
            (rnd.choice((16, 32, 64)) if site.kind == "hpc" else 8),
            corepower=site.corepower if rnd.random() < 0.9 else round(rnd.uniform(8, 20), 2),
            read_lan=read_lan, write_lan=write_lan, labels=list(by_label.items()),
            running=total, expected_series=expected, id=rnd.randint(1000, 99999),
        )

    def _rows(self, rnd, label, resource, running, fail_frac):
        """Base levels of one (queue, label, resource): (status, level, mode, zero_filled)."""
        running = max(running, rnd.uniform(0.3, 3.0))
        lo, hi = _WALLTIME.get(label, (30, 45))
        walltime = (hi if resource.startswith("MCORE") else lo) * rnd.uniform(0.6, 1.6)
        finished = running / walltime  # per minute
        levels = {
            "running": running,
            "activated": running * rnd.uniform(0.05, 0.8),
            "assigned": running * rnd.uniform(0.0, 0.08),
            "finished": finished,
            "failed": finished * fail_frac * rnd.uniform(0.5, 1.5),
        }
        # Optional statuses: bigger series are more likely to have them; when present
        # they are large enough to stay non-zero through the day.
        weight = min(1.0, 0.5 + math.log10(running + 1) / 3)
        optional = (
            ("starting", 0.9, running * rnd.uniform(0.005, 0.04), 2.0),
            ("sent", 0.4, running * 0.005, 2.0),
            ("defined", 0.7, running * rnd.uniform(0.01, 0.1), 2.0),
            ("waiting", 0.4, running * rnd.uniform(0.005, 0.05), 2.0),
            ("holding", 0.8, running * rnd.uniform(0.01, 0.08), 2.0),
            ("transferring", 0.8 if label == "managed" else 0.3,
             running * rnd.uniform(0.01, 0.15), 2.0),
            ("merging", 0.6 if label == "managed" else 0.0,
             running * rnd.uniform(0.005, 0.03), 2.0),
            ("cancelled", 0.6, finished * rnd.uniform(0.005, 0.05), 0.2),
            ("closed", 0.35, finished * rnd.uniform(0.002, 0.02), 0.2),
        )
        for status, prob, level, floor in optional:
            if rnd.random() < prob * weight:
                levels[status] = max(level, floor)
        # sporadic ones: often absent, sometimes a few
        for status in ("pending", "throttled"):
            if rnd.random() < 0.1 * weight:
                levels[status] = rnd.uniform(0.2, 0.9)
        return tuple((s, levels[s], _STATUS_MODE[s], s in ZERO_FILLED)
                     for s in STATUSES if s in levels)

    def _storages(self, rnd, site):
        home = site if site.has_storage else site.parent
        if home is None:  # diskless T3: read from some site that has storage
            with_disk = [s for s in self.sites if s.has_storage]
            home = rnd.choice(with_disk) if with_disk else None
        if home is None or rnd.random() < 0.02:
            # a few queues have no DATADISK at all
            return [], [f"{site.ddm_prefix}_SCRATCHDISK"] if site.has_storage else []
        datadisk = f"{home.ddm_prefix}_DATADISK"
        read_lan = [datadisk]
        if rnd.random() < 0.15:  # some read from 2-3 datadisks, incl. other sites'
            others = [s for s in self.sites[-40:] if s.has_storage and s is not home]
            for other in rnd.sample(others, min(len(others), rnd.randint(1, 2))):
                read_lan.append(f"{other.ddm_prefix}_DATADISK")
        write_lan = [datadisk, f"{home.ddm_prefix}_SCRATCHDISK"]
        if rnd.random() < 0.5:
            read_lan.append(f"{home.ddm_prefix}_SCRATCHDISK")
        return read_lan, write_lan

    def _pledges(self, rnd):
        """CPU pledge (HS06) per federation, near what its queues actually deliver."""
        capacity = {}
        for q in self.queues:
            delivered = 0.0
            for _, resources in q.labels:
                for resource, rows in resources:
                    delivered += rows[_running_index(rows)][1] * _CORES.get(resource, 1)
            fed = q.site.federation
            capacity[fed] = capacity.get(fed, 0.0) + delivered * q.corepower
        self.federations = {}
        for site in self.sites:
            if site.federation.endswith("-Tier3s"):
                continue  # Tier3s have no pledge, as in real REBUS
            fed = self.federations.get(site.federation)
            if fed is None:
                cpu = max(1000, round(capacity.get(site.federation, 0) * rnd.uniform(0.7, 1.3),
                                      -2))
                fed = self.federations[site.federation] = {
                    "site": site, "rcsites": [], "cpu": cpu,
                    "growth": rnd.uniform(1.0, 1.2), "disk": max(100, round(cpu / 12, -1)),
                    "id": rnd.randint(10, 999),
                }
            if site.rc_site not in fed["rcsites"]:
                fed["rcsites"].append(site.rc_site)


def _running_index(rows):
    for i, row in enumerate(rows):
        if row[0] == "running":
            return i
    raise ValueError("no running row")


class Simulator:
    """PanDA + CRIC stand-in. See the module docstring for the endpoints."""

    def __init__(self, seed=1, series=25000, time=None, hang_seconds=30.0, odd_names=False,
                 monit_token=None):
        self.seed = seed
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
        return [_site_record(site, self.seed) for site in self.universe.sites]

    def _ddm_payload(self):
        return [_ddm_record(site, endpoint, self.seed)
                for site in self.universe.sites for endpoint in site.ddmendpoints]

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
                for tombstone, share in (("primary", primary), ("secondary", 1 - primary)):
                    nbytes = int(total * share)
                    if nbytes <= 0:
                        continue
                    files = max(1, round(nbytes / (_FILE_SIZE.get(group, 1e9)
                                                   * rnd.uniform(0.8, 1.2))))
                    docs.append({"metadata": {"timestamp": millis},
                                 "data": {**common, "datatype": datatype,
                                          "datatype_grouped": group, "tombstone": tombstone,
                                          "files": files, "bytes": nbytes}})
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
        self.url = f"http://{host}:{server.server_address[1]}"
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


# --- CRIC records ------------------------------------------------------------------------
# Shapes follow the recorded CRIC payloads; filler fields make the size realistic.

def _pandaqueue_record(q, seed):
    rnd = random.Random(f"qmonit-sim/pq/{seed}/{q.name}")
    site = q.site
    stamp = f"20{rnd.randint(19, 24)}-{rnd.randint(1, 12):02d}-{rnd.randint(1, 28):02d}" \
            f"T{rnd.randint(0, 23):02d}:{rnd.randint(0, 59):02d}:{rnd.randint(0, 59):02d}.000000"
    host = f"ce{rnd.randint(1, 9):02d}.{site.name.lower().replace('_', '-')}.example.org"
    astorages = {"read_lan": list(q.read_lan), "write_lan": list(q.write_lan),
                 "pr": list(q.read_lan), "pw": list(q.write_lan)}
    if q.write_lan:
        astorages["pls"] = [q.write_lan[0]]
    astorages0 = {}
    for activity, endpoints in astorages.items():
        grouped = {}
        for endpoint in endpoints:
            grouped.setdefault(endpoint.rsplit("_", 1)[0], []).append(endpoint)
        astorages0[activity] = grouped
    memory = rnd.choice((2000, 4000, 16000, 32000, 64000))
    is_analysis = q.type in ("analysis", "unified")
    is_production = q.type in ("production", "unified")
    uconfig = {}
    params = {}
    if is_analysis:
        uconfig["analysis"] = {"prodsourcelabel": {"user": ["score", "himem"]}}
        params["analysis.prodsourcelabel.user"] = ["score", "himem"]
    if is_production:
        uconfig["production"] = {"prodsourcelabel": {"managed": ["score", "mcore", "himem"]}}
        params["production.prodsourcelabel.managed"] = ["score", "mcore", "himem"]
    return {
        "accesscontrol": "",
        "acopytools": {"pr": ["rucio", "xrdcp"], "pw": ["rucio", "gfalcopy"], "pl": ["rucio"]},
        "allowdirectaccess": rnd.random() < 0.5,
        "allowedgroups": None,
        "allowfax": False,
        "appdir": "",
        "aprotocols": {},
        "astorages": astorages,
        "astorages0": astorages0,
        "atlas_site": site.name,
        "capability": q.capability,
        "catchall": rnd.choice(("", "es_to_zip", "useJobGroup")),
        "cloud": site.cloud,
        "cloudrshares": {"analysis": {"capabilities": {"score": 100}, "value": 20},
                         "production": {"capabilities": {"himem": 10, "mcore": 20,
                                                         "score": 70}, "value": 80}},
        "comment": "no active blacklisting rules defined",
        "container_options": "",
        "container_type": "singularity:pilot",
        "copytools": {"rucio": {"setup": ""}, "gfalcopy": {"setup": ""},
                      "xrdcp": {"setup": "$VO_ATLAS_SW_DIR/local/xrootdsetup.sh"}},
        "corecount": q.corecount,
        "corepower": q.corepower,
        "corepower_data": {"corepower": q.corepower, "corepower_on": q.corepower != site.corepower,
                           "parent_corepower": 0.0, "parent_corepower_on": False,
                           "parent_rc_site_corepower": site.corepower,
                           "parent_site_corepower": site.corepower,
                           "parent_site_corepower_on": False},
        "country": site.country,
        "countrygroup": "",
        "ddm": q.write_lan[0] if q.write_lan else "",
        "ddmendpoints": [],
        "description": f"{q.flavour} queue at {site.name}",
        "direct_access_lan": rnd.random() < 0.6,
        "direct_access_wan": rnd.random() < 0.3,
        "email": "",
        "environ": "",
        "envsetup": "",
        "fairsharepolicy": "",
        "gocname": site.rc_site,
        "harvester": rnd.choice(("CERN_central_A", "CERN_central_B", "CERN_central_K8S")),
        "harvester_template": "",
        "hc_param": rnd.choice(("AutoExclusion", "AutoExclusion", "OnlyTest")),
        "hc_suite": [rnd.choice(("PFT", "PFT_MCORE", "AFT"))],
        "id": q.id,
        "is_analysis": is_analysis,
        "is_cvmfs": True,
        "is_default": q.flavour in ("prod", "analy"),
        "is_production": is_production,
        "is_virtual": False,
        "jobseed": "es" if q.flavour == "es" else "std",
        "last_modified": stamp,
        "maxinputsize": rnd.choice((14336, 30000, 122880)),
        "maxmemory": memory,
        "maxrss": memory // 2,
        "maxtime": rnd.choice((86400, 172800, 258000)),
        "maxwdir": rnd.choice((14336, 40000, 120000)),
        "memory": memory,
        "minmemory": 0,
        "minrss": 0,
        "mintime": 0,
        "name": "default",  # as in real CRIC; the queue name is the key and "nickname"
        "nickname": q.name,
        "nodes": rnd.randint(1, 500),
        "objectstores": [],
        "panda_resource": q.key,
        "panda_site": site.panda_site,
        "params": params,
        "parent": f"{site.panda_site}_VIRTUAL",
        "pilot_manager": "Harvester",
        "pilot_version": "3",
        "pledgedcpu": None,
        "probe": None,
        "queues": [{
            "ce_endpoint": f"{host}:9619",
            "ce_flavour": rnd.choice(("HTCONDOR-CE", "ARC-CE")),
            "ce_id": rnd.randint(1000, 30000),
            "ce_jobmanager": rnd.choice(("condor", "slurm", "lsf", "pbs")),
            "ce_name": f"{site.rc_site}-CE-{host}",
            "ce_queue_id": rnd.randint(1000, 30000),
            "ce_queue_maxcputime": 0,
            "ce_queue_maxwctime": rnd.choice((2880, 4320)),
            "ce_queue_name": rnd.choice(("atlas", "prod", "grid")),
            "ce_queue_status": "Production",
            "ce_state": "ACTIVE",
            "ce_status": "production",
            "ce_version": f"{rnd.randint(3, 6)}.{rnd.randint(0, 9)}.{rnd.randint(0, 9)}",
        }],
        "rc": site.federation,
        "rc_country": site.country,
        "rc_site": site.rc_site,
        "rc_site_state": site.state,
        "region": site.cloud,
        "resource_type": site.kind,
        "site": site.panda_site,
        "site_state": site.state,
        "siteid": q.name,
        "space": rnd.randint(1000, 500000),
        "stageinretry": 2,
        "stageoutretry": 2,
        "state": q.state,
        "state_comment": "",
        "state_update": stamp,
        "status": q.status,
        "system": "osg" if site.cloud == "US" else "egi",
        "tags": "",
        "tier": site.tier,
        "tier_level": site.tier_level,
        "timefloor": rnd.choice((0, 60, 180)),
        "tmpdir": "/tmp",
        "transferringlimit": None,
        "type": q.type,
        "uconfig": uconfig,
        "use_pcache": False,
        "vo_name": "atlas",
        "wnconnectivity": rnd.choice(("full", "http", "full#IPv4")),
        "wntmpdir": "/tmp",
        "workflow": rnd.choice(("pull", "pull_ups", "push")),
        "zip_time_gap": 900,
    }


def _site_record(site, seed):
    rnd = random.Random(f"qmonit-sim/site/{seed}/{site.name}")
    presources = {}
    for q in site.queues:
        presources[q.name] = {
            "capability": q.capability, "hc_param": "AutoExclusion", "is_cvmfs": True,
            "is_default": q.flavour in ("prod", "analy"), "is_virtual": False, "name": q.name,
            "pandaqueues": [{"name": q.name, "type": q.type}],
            "resource_type": site.kind, "state": q.state, "type": q.type,
        }
    return {
        "cloud": site.cloud,
        "corepower": site.corepower,
        "corepower_on": False,
        "country": site.country,
        "datapolicies": ["Nucleus", "AnalysisData"] if site.tier_level < 2 else ["AnalysisData"],
        "ddmendpoints": {name: {"se_impl": "", "state": state}
                         for name, _, state in site.ddmendpoints},
        "emailContact": f"admins@{site.name.lower()}.example.org",
        "grid_flavour": "OSG" if site.cloud == "US" else "EGI",
        "infoURL": "",
        "is_atlas": True,
        "is_pledged": site.tier_level < 3,
        "last_modified": f"20{rnd.randint(15, 24)}-0{rnd.randint(1, 9)}-1{rnd.randint(0, 9)}"
                         f"T12:00:00.000000",
        "latitude": site.latitude,
        "longitude": site.longitude,
        "name": site.name,
        "presources": {site.panda_site: presources} if presources else {},
        "rc": site.federation,
        "rc_country": site.country,
        "rc_site": site.rc_site,
        "rc_site_state": site.state,
        "rc_tier_level": site.tier_level,
        "state": site.state,
        "tier_level": site.tier_level,
        "timezone": f"UTC{site.offset:+d}",
        "vo_name": "atlas",
    }


def _ddm_record(site, endpoint, seed):
    name, kind, state = endpoint
    rnd = random.Random(f"qmonit-sim/ddm/{seed}/{name}")
    host = f"se{rnd.randint(1, 9)}.{site.name.lower().replace('_', '-')}.example.org"
    path = f"/atlas/atlas{kind.lower()}/"
    return {
        "cloud": site.cloud,
        "country": site.country,
        "datapolicies": ["AnalysisData"] if kind == "DATADISK" else [],
        "ddmgroups": [site.cloud, "ALL"],
        "endpoint": path,
        "id": rnd.randint(1000, 99999),
        "is_deterministic": True,
        "is_pledged": kind in ("DATADISK", "MCTAPE", "DATATAPE"),
        "is_tape": kind.endswith("TAPE"),
        "name": name,
        "rc": site.federation,
        "rc_site": site.rc_site,
        "rc_site_state": site.state,
        "se": f"davs://{host}:443",
        "se_flavour": "WEBDAV",
        "site": site.name,
        "site_state": site.state,
        "state": state,
        "tier_level": site.tier_level,
        "token": "ATLAS" + kind,
        "type": kind,
    }


# --- MONIT: Rucio accounting behind the Grafana Elasticsearch proxy ----------------------
# One index a day (monit_prod_rucioacc_enr_site_YYYY-MM-DD). A day's documents describe the
# replicas held at the end of that day, one per (endpoint, datatype, tombstone), with
# metadata.timestamp at the day's start; they are indexed RUCIO_LAG_HOURS after that, so at
# 02:00 yesterday's accounting is not there yet. Fields follow MONIT's enriched documents:
# data.rse, data.token (CRIC's, e.g. ATLASDATADISK), data.rse_type, data.datatype (DAOD_PHYS,
# AOD, ...), data.datatype_grouped (DAOD, AOD, ...), data.tombstone (primary/secondary),
# data.files, data.bytes, data.experiment_site, data.cloud, data.tier.
#
# _msearch evaluates what a client sends, so filters that are missing show up in the numbers:
# queries bool (filter/must/must_not/should), term, terms, prefix, range, exists, match_all;
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
    if kind not in ("term", "terms", "prefix", "range"):
        raise _QueryError("parsing_exception", f"unknown query [{kind}] (the simulator supports "
                          "bool, term, terms, prefix, range, exists and match_all)")
    name, value = _single(kind, spec)
    if kind in ("term", "prefix") and isinstance(value, dict):
        value = value.get("value")
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


# --- HTTP ----------------------------------------------------------------------------------

def _make_server(sim, host, port):
    # http.server pulls in email/html/ssl; import it only when serving.
    import socket
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from urllib.parse import parse_qs, urlsplit

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        allow_reuse_address = True

        def __init__(self, *args):
            self.connections = set()
            self.connections_lock = threading.Lock()
            super().__init__(*args)

        def close_connections(self):
            # Keep-alive handler threads would otherwise keep answering after stop().
            with self.connections_lock:
                connections = list(self.connections)
            for conn in connections:
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "QMonitSimulator/1.0"
        timeout = 120  # idle keep-alive connections

        def setup(self):
            super().setup()
            with self.server.connections_lock:
                self.server.connections.add(self.connection)

        def finish(self):
            try:
                super().finish()
            finally:
                with self.server.connections_lock:
                    self.server.connections.discard(self.connection)

        def log_message(self, fmt, *args):
            log.debug("%s %s", self.address_string(), fmt % args)

        def send(self, code, body, content_type="text/plain"):
            if isinstance(body, str):
                body = body.encode()
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            parts = urlsplit(self.path)
            path = parts.path.rstrip("/") or "/"
            if path == "/_sim/state":
                return self.send(200, json.dumps(sim.state()), "application/json")
            if path not in (V1_PATH, LEGACY_PATH, PANDAQUEUE_PATH, SITE_PATH, DDM_PATH,
                            FEDERATION_PATH):
                return self.send(404, f"not found: {parts.path}\n")
            fault = sim._take_fault(path)
            if fault == "500":
                return self.send(500, "Internal Server Error (simulated)\n")
            if fault == "hang":
                # Hold the request without answering; stop() ends the wait.
                sim._stopping.wait(sim.hang_seconds)
                self.close_connection = True
                return
            as_json = "application/json" in self.headers.get("Accept", "")
            if fault == "success_false":
                body = {"success": False, "message": "simulated failure: database unavailable",
                        "data": {}}
                return self.send(200, json.dumps(body) if as_json else str(body))
            if path in (V1_PATH, LEGACY_PATH):
                query = parse_qs(parts.query, keep_blank_values=True)
                raw = query.get("time_window", [str(DEFAULT_TIME_WINDOW)])[0]
                try:
                    time_window = int(raw)
                    if time_window < 1:
                        raise ValueError
                except ValueError:
                    return self.send(400, f"bad time_window: {raw!r}\n")
                body = sim._stats_body(path, time_window, as_json)
                content_type = "text/plain"
            else:
                kind = {PANDAQUEUE_PATH: "pandaqueue", SITE_PATH: "site",
                        DDM_PATH: "ddmendpoint", FEDERATION_PATH: "federation"}[path]
                body = sim._cric_body(kind)
                content_type = "application/json"
            if fault == "truncated":
                body = body[:len(body) // 2]
            self.send(200, body, content_type)

        def do_POST(self):
            path = urlsplit(self.path).path.rstrip("/")
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            if path.startswith(MONIT_PROXY_PREFIX):
                return self.monit(path, raw)
            if path != "/_sim/control":
                return self.send(404, f"not found: {self.path}\n")
            try:
                sim.control(json.loads(raw or b"{}"))
            except (ValueError, KeyError, TypeError) as exc:
                return self.send(400, json.dumps({"error": str(exc)}), "application/json")
            self.send(200, json.dumps(sim.state()), "application/json")

        def monit(self, path, raw):
            """Grafana's datasource proxy in front of the Rucio accounting Elasticsearch."""
            datasource, _, rest = path[len(MONIT_PROXY_PREFIX):].partition("/")
            if not datasource.isdigit() or rest != "_msearch":
                return self.send(404, json.dumps({"message": "Not found"}), "application/json")
            scheme, _, token = self.headers.get("Authorization", "").partition(" ")
            token = token.strip()
            if scheme.lower() != "bearer" or not token or (
                    sim.monit_token is not None and token != sim.monit_token):
                return self.send(401, json.dumps({"message": "Unauthorized"}),
                                 "application/json")
            fault = sim._take_fault(path)
            if fault == "500":
                return self.send(500, json.dumps({"message": "Internal Server Error "
                                                             "(simulated)"}), "application/json")
            if fault == "hang":
                sim._stopping.wait(sim.hang_seconds)
                self.close_connection = True
                return
            content_type = self.headers.get("Content-Type", "")
            if "json" not in content_type:
                return self.send(406, json.dumps({
                    "error": f"Content-Type header [{content_type}] is not supported",
                    "status": 406}), "application/json")
            status, reply = sim.msearch(raw, no_aggregations=fault == "no_aggregations")
            body = json.dumps(reply).encode()
            if fault == "truncated":
                body = body[:len(body) // 2]
            self.send(status, body, "application/json")

    server = Server((host, port), Handler)
    return server


def main(argv=None):
    import argparse
    import signal
    import sys

    parser = argparse.ArgumentParser(
        prog="python -m qmonit.dev.simulator",
        description="Serve simulated PanDA job statistics and CRIC data over HTTP.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--series", type=int, default=25000,
                        help="approximate number of series in the PanDA reply")
    parser.add_argument("--time", help='fixed simulated UTC time "YYYY-mm-dd HH:MM:SS"')
    parser.add_argument("--hang-seconds", type=float, default=30.0)
    parser.add_argument("--debug", action="store_true")
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.DEBUG if args.debug else logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s",
                        stream=sys.stderr)
    try:
        when = _utc(args.time) if args.time else None
    except ValueError as exc:
        parser.error(f"--time: {exc}")
    sim = Simulator(seed=args.seed, series=args.series, time=when,
                    hang_seconds=args.hang_seconds)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    try:
        url = sim.start(args.host, args.port)
    except OSError as exc:
        print(f"simulator: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    print(url, flush=True)
    while not done.wait(0.5):
        pass
    sim.stop()
    log.info("simulator stopped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
