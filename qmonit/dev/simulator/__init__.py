"""Local stand-in for the PanDA server, CRIC and MONIT, for tests, the demo and the benchmark.

Modules: world (the seeded sites, queues, storage and pledges), sim (the Simulator: clock,
faults, anomalies, PanDA job statistics), cric (CRIC records), monit (the Rucio accounting
Elasticsearch), server (HTTP); `python -m qmonit.dev.simulator` runs __main__.

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
  GET /api/atlas/site/query/          dict of ATLAS sites keyed by name (a list, as AGIS
                                      served it, with Simulator(agis_lists=True))
  GET /api/atlas/ddmendpoint/query/   dict of DDM endpoints keyed by name (idem)
  GET /api/core/federation/query/     dict keyed by federation, CPU/Disk pledges per
                                      quarter for the pledge years (from 1 April) named by
                                      the simulated year and the one before
  Today's CRIC: some analysis queues carry astorages.read_lan_analysis (another DATADISK
  than read_lan's), some corecount (multi-core, 8) and corepower (the site's) are null.

MONIT Grafana datasource proxy to the Rucio accounting Elasticsearch (see MONIT below)
  POST /api/datasources/proxy/<id>/_msearch   NDJSON body (header line, query line, ...,
                                      final newline) with "Authorization: Bearer <token>"
                                      (any non-empty token, or Simulator(monit_token=...));
                                      401 without one. Reply {"responses": [...]}, one per
                                      query, shaped like the real one.

The ATLAS benchmark Elasticsearch (see benchmarks.py)
  POST /benchmarks-*/_search          fastBmk results per PanDA queue, collapsed on
                                      metadata.PanDAQueue with inner hits; basic auth
                                      when sim.es_auth = (user, password)

HTTPS: Simulator(tls={"cert": ..., "key": ..., "client_ca": ...}) serves every endpoint over TLS
with that certificate and, with client_ca, requires a client certificate issued by that CA.
Simulator(panda_token=T) answers PanDA only with "Authorization: Bearer T" and "Origin: atlas"
(else 200 {"success": false, "message": "SSL secure connection is required"}, as PanDA did
before November 2025); Simulator(legacy_removed=True) answers the legacy call with 403, as
PanDA does since May 2026.

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

from .monit import RUCIO_INDEX_PREFIX, RUCIO_LAG_HOURS, RUCIO_RETENTION_DAYS
from .sim import Simulator
from .world import (
    ANOMALY_KINDS,
    DDM_PATH,
    DEFAULT_TIME_WINDOW,
    FAULT_KINDS,
    FEDERATION_PATH,
    FINAL_STATUSES,
    LEGACY_PATH,
    MONIT_DATASOURCE_ID,
    MONIT_PATH,
    MONIT_PROXY_PREFIX,
    PANDAQUEUE_PATH,
    SITE_PATH,
    SLOT_SECONDS,
    STATUSES,
    V1_PATH,
    ZERO_FILLED,
    config_urls,
)

__all__ = [
    "ANOMALY_KINDS", "DDM_PATH", "DEFAULT_TIME_WINDOW", "FAULT_KINDS", "FEDERATION_PATH",
    "FINAL_STATUSES", "LEGACY_PATH", "MONIT_DATASOURCE_ID", "MONIT_PATH", "MONIT_PROXY_PREFIX",
    "PANDAQUEUE_PATH", "RUCIO_INDEX_PREFIX", "RUCIO_LAG_HOURS", "RUCIO_RETENTION_DAYS",
    "SITE_PATH", "SLOT_SECONDS", "STATUSES", "V1_PATH", "ZERO_FILLED", "Simulator", "config_urls",
]
