"""The simulated world: sites, queues, storage and pledges as a pure function of the seed,
and the constants of the PanDA, CRIC and MONIT formats the simulator speaks."""
import math
import random
from datetime import UTC, datetime

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
        # Today's CRIC on top, from its own random stream so the world above stays the same.
        self._todays_cric(random.Random(f"qmonit-sim/today/{seed}"))
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

    def _todays_cric(self, rnd):
        """What CRIC has grown since the 2019 recordings: read_lan_analysis on some analysis
        queues (another DATADISK than read_lan's), and null corecount or corepower where
        QMonit's fallback gives the same value (8 cores for multi-core, the site's power)."""
        disks = [f"{s.ddm_prefix}_DATADISK" for s in self.sites if s.has_storage]
        for q in self.queues:
            q.read_lan_analysis = []
            q.null_corecount = q.corecount == 8 and q.capability != "score" and rnd.random() < 0.15
            q.null_corepower = q.corepower == q.site.corepower and rnd.random() < 0.1
            if q.type in ("analysis", "unified") and q.read_lan and rnd.random() < 0.3:
                others = [d for d in disks if d not in q.read_lan]
                if others:
                    q.read_lan_analysis = [rnd.choice(others)]

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
