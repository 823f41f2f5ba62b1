"""Every InfluxDB measurement and the MySQL table, with their tags, fields and columns.

Writers and readers name things through this module only (see ../shared/CONTRACT.md).
"""
from dataclasses import dataclass

# Retention policies, by name.
RP_10M = "10m"
RP_1H = "1h"
RP_1D = "1d"
RETENTION_POLICIES = (RP_10M, RP_1H, RP_1D)

STATUSES = ("pending", "defined", "waiting", "assigned", "throttled", "activated", "sent",
            "starting", "running", "holding", "transferring", "merging", "finished", "failed",
            "cancelled", "closed")
FINAL_STATUSES = ("finished", "failed", "cancelled", "closed")
LIVE_STATUSES = tuple(s for s in STATUSES if s not in FINAL_STATUSES)
# PanDA always reports these, zero when empty.
ZERO_FILLED_STATUSES = ("assigned", "activated", "running", "finished", "failed")
RESOURCE_TYPES = ("SCORE", "MCORE", "SCORE_HIMEM", "MCORE_HIMEM")
ANALYSIS_LABEL = "user"
UNKNOWN = "unknown"
ALL = "all"

# Tag names.
PANDA_QUEUE = "panda_queue"
PROD_SOURCE = "prod_source"
RESOURCE = "resource"
JOB_STATUS = "job_status"
ATLAS_SITE = "atlas_site"
CLOUD = "cloud"
COUNTRY = "country"
TIER = "tier"
TYPE = "type"
SITE_STATE = "site_state"
FEDERATION = "federation"
LEVEL = "level"
DIRECTION = "direction"
DATADISK = "datadisk"
SCRIPT = "script"
STATUS = "status"

# The key of one job-count series.
SERIES_KEY = (PANDA_QUEUE, PROD_SOURCE, RESOURCE, JOB_STATUS)
# CRIC metadata that tags every jobs point.
QUEUE_METADATA = (ATLAS_SITE, CLOUD, COUNTRY, TIER, TYPE, SITE_STATE, FEDERATION)


@dataclass(frozen=True)
class Measurement:
    name: str
    rp: str
    tags: tuple
    fields: tuple

    @property
    def qualified(self):
        """The quoted "rp"."name" for InfluxQL FROM/INTO clauses."""
        from .influxql import quote_ident
        return f"{quote_ident(self.rp)}.{quote_ident(self.name)}"


JOBS = Measurement(
    "jobs", RP_10M,
    tags=SERIES_KEY + QUEUE_METADATA,
    # federation_HS06_pledge: the WLCG pledge quarter's CPU pledge, in HS06 (HEPScore23 since
    # 2024, numerically comparable); HS06_benchmark: the measured HS06 per core
    # (qmonit.sources.benchmarks), left out when unknown.
    fields=("jobs", "time_window", "resource_factor", "corepower", "federation_HS06_pledge",
            "HS06_benchmark"))
# Fields whose value is an integer in the 10m data.
JOBS_INTEGER_FIELDS = ("jobs", "time_window")
# Fields averaged by the rollups (jobs itself is handled through jobs_sum and samples).
JOBS_MEAN_FIELDS = ("resource_factor", "corepower", "federation_HS06_pledge")

JOBS_1H = Measurement(
    "jobs", RP_1H, tags=JOBS.tags,
    fields=("jobs", "jobs_sum", "samples") + JOBS_MEAN_FIELDS)
JOBS_1D = Measurement("jobs", RP_1D, tags=JOBS.tags, fields=JOBS_1H.fields)

AVERAGE_WINDOWS = ("avg1h", "avg6h", "avg12h", "avg24h", "avg7d", "avg30d")
AVERAGES = Measurement(
    "averages", RP_10M,
    tags=SERIES_KEY + (ATLAS_SITE, CLOUD, TIER),
    fields=("current",) + AVERAGE_WINDOWS + ("coverage",))

SUSPICIOUS = Measurement(
    "suspicious", RP_10M,
    tags=(LEVEL, ATLAS_SITE, PANDA_QUEUE, PROD_SOURCE, RESOURCE, JOB_STATUS, CLOUD, DIRECTION),
    fields=("current", "baseline", "ratio", "score"))

DATADISKS = Measurement(
    "datadisks", RP_1H,
    tags=(DATADISK, ATLAS_SITE, CLOUD, TIER),
    fields=("daod_bytes", "daod_files", "running_analysis_jobs", "running_analysis_cores",
            "jobs_share", "data_share", "imbalance"))

RUNS = Measurement(
    "qmonit_runs", RP_10M,
    tags=(SCRIPT, STATUS),
    fields=("duration_s", "points", "errors"))

MEASUREMENTS = (JOBS, JOBS_1H, JOBS_1D, AVERAGES, SUSPICIOUS, DATADISKS, RUNS)

# MySQL: one row per (panda_queue, prod_source, resource).
MYSQL_JOBS_TABLE = "jobs"
MYSQL_KEY = (PANDA_QUEUE, PROD_SOURCE, RESOURCE)
MYSQL_METADATA = (ATLAS_SITE, TYPE, COUNTRY, CLOUD, FEDERATION, SITE_STATE, TIER)
MYSQL_AVG_STATUSES = ("assigned", "activated", "failed", "running")


def status_column(status):
    return f"{status}_jobs"


def avg_column(window, status):
    return f"{window}_{status}_jobs"


# Column name -> SQL type. The order is the table's.
MYSQL_JOBS_COLUMNS = {
    PANDA_QUEUE: "VARCHAR(191) NOT NULL",
    PROD_SOURCE: "VARCHAR(191) NOT NULL",
    RESOURCE: "VARCHAR(191) NOT NULL",
    **{name: "VARCHAR(191) NULL" for name in MYSQL_METADATA},
    "resource_factor": "DOUBLE NULL",
    "resource_type": "VARCHAR(64) NULL",
    "datadisk_name": "VARCHAR(191) NULL",
    "datadisk_occupied_gb": "DOUBLE NULL",
    "datadisk_files": "BIGINT NULL",
    **{status_column(s): "BIGINT NOT NULL DEFAULT 0" for s in STATUSES},
    **{avg_column(w, s): "DOUBLE NULL" for w in AVERAGE_WINDOWS for s in MYSQL_AVG_STATUSES},
    # When PanDA last reported the combination, and when the row last changed (UTC).
    "last_seen": "DATETIME NOT NULL",
    "updated_at": "DATETIME NOT NULL",
}
