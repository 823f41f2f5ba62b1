"""Operators' silences, in the MySQL table `silences` (created when missing) so that Grafana
shows them. A silence covers an atlas_site (the site's flags and those of all its queues) or a
panda_queue, optionally one job status, from its creation until its end; ending one early
(--unsilence) moves its end to now. Expired silences stop applying by themselves."""
import datetime as dt
import logging
from dataclasses import dataclass

from ..core import schema
from ..core.errors import SinkError, UsageError
from ..core.files import State
from .mysqlstore import quote_ident

log = logging.getLogger(__name__)

# The silences of the last successful read, for a run that cannot reach MySQL.
STATE_NAME = "silences"


@dataclass(frozen=True)
class Silence:
    id: int
    target: str
    job_status: str | None
    starts_at: dt.datetime      # aware, UTC
    ends_at: dt.datetime
    reason: str
    created_by: str = ""

    def active(self, when):
        return self.starts_at <= when < self.ends_at

    def covers(self, flag, when):
        """Whether this silence covers a flag (anything with level, atlas_site, panda_queue,
        job_status) at when."""
        if not self.active(when):
            return False
        if self.job_status and self.job_status != flag.job_status:
            return False
        return self.target == flag.atlas_site or (flag.panda_queue != schema.ALL and
                                                  self.target == flag.panda_queue)


def _naive(when):
    return when.astimezone(dt.UTC).replace(tzinfo=None)


def _aware(when):
    return when.replace(tzinfo=dt.UTC)


def ensure_table(mysql):
    table = quote_ident(schema.MYSQL_SILENCES_TABLE)
    columns = ",\n".join(f"{quote_ident(name)} {sqltype}"
                         for name, sqltype in schema.MYSQL_SILENCES_COLUMNS.items())

    def work(cur):
        cur.execute(f"CREATE TABLE IF NOT EXISTS {table} ({columns},\nPRIMARY KEY (`id`), "
                    f"KEY `ends_at` (`ends_at`)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 "
                    f"COLLATE={mysql.collation}")

    mysql.transaction(work)


# The `reason` column's VARCHAR length (schema.MYSQL_SILENCES).
MAX_REASON = 1000


def add(mysql, target, until, reason, now, job_status=None, created_by=""):
    """Store a silence from now until `until`; returns its id."""
    if not target.strip():
        raise UsageError("--silence needs a site or queue name")
    if until <= now:
        raise UsageError(f"--until {until:%Y-%m-%d %H:%M:%S} is not after now "
                         f"({now:%Y-%m-%d %H:%M:%S} UTC)")
    if not reason.strip():
        raise UsageError("--silence needs --reason TEXT (why it is expected)")
    if len(reason.strip()) > MAX_REASON:
        raise UsageError(f"--reason is {len(reason.strip())} characters; at most {MAX_REASON}")
    if job_status is not None and job_status not in schema.STATUSES:
        raise UsageError(f"unknown job status {job_status!r}; use one of "
                         f"{', '.join(schema.STATUSES)}")
    ensure_table(mysql)
    table = quote_ident(schema.MYSQL_SILENCES_TABLE)

    def work(cur):
        cur.execute(f"INSERT INTO {table} (`target`, `job_status`, `starts_at`, `ends_at`, "
                    f"`reason`, `created_by`, `created_at`) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                    (target.strip(), job_status, _naive(now), _naive(until), reason.strip(),
                     created_by, _naive(now)))
        return cur.lastrowid

    return int(mysql.transaction(work))


def active(mysql, when, create=True):
    """The silences active at when, oldest first. create=False (a dry run): a missing table
    is no silences, and nothing is created."""
    if create:
        ensure_table(mysql)
    elif not _exists(mysql):
        return []
    table = quote_ident(schema.MYSQL_SILENCES_TABLE)
    rows = mysql.select(
        f"SELECT `id`, `target`, `job_status`, `starts_at`, `ends_at`, `reason`, `created_by` "
        f"FROM {table} WHERE `starts_at` <= %s AND `ends_at` > %s ORDER BY `id`",
        (_naive(when), _naive(when)))
    return [Silence(int(i), t, s or None, _aware(a), _aware(b), r, c or "")
            for i, t, s, a, b, r, c in rows]


def _exists(mysql):
    rows = mysql.select("SELECT 1 FROM information_schema.tables WHERE table_schema = %s AND "
                        "table_name = %s", (mysql.database, schema.MYSQL_SILENCES_TABLE))
    return bool(rows)


def end(mysql, silence_id, now):
    """End a silence now; False when there is no active silence with that id."""
    ensure_table(mysql)
    table = quote_ident(schema.MYSQL_SILENCES_TABLE)

    def work(cur):
        cur.execute(f"UPDATE {table} SET `ends_at` = %s WHERE `id` = %s AND `ends_at` > %s",
                    (_naive(now), int(silence_id), _naive(now)))
        return cur.rowcount

    return mysql.transaction(work) > 0


def for_run(mysql, when, data_dir, save=True):
    """The silences active at when for a suspicious.py run, and whether reading them failed.
    MySQL down: the copy of the last successful read (those still active at when), with a
    warning, so that a silenced flag does not wake anyone because MySQL is away."""
    state = State(data_dir, STATE_NAME)
    try:
        silences = active(mysql, when, create=save)
    except SinkError as e:
        saved = state.load().get("silences") or []
        # Info, not warning: MySQL down fails the run anyway, with its own line.
        log.info("could not read silences (%s); using the %d saved at the last run",
                 e, len(saved))
        silences = []
        for s in saved:
            try:
                silence = Silence(int(s["id"]), s["target"], s.get("job_status"),
                                  dt.datetime.fromtimestamp(s["starts_at"], dt.UTC),
                                  dt.datetime.fromtimestamp(s["ends_at"], dt.UTC),
                                  s.get("reason", ""), s.get("created_by", ""))
            except (KeyError, TypeError, ValueError):
                continue
            if silence.active(when):
                silences.append(silence)
        return silences, True
    if not save:
        return silences, False
    try:
        state.save({"silences": [
            {"id": s.id, "target": s.target, "job_status": s.job_status,
             "starts_at": s.starts_at.timestamp(), "ends_at": s.ends_at.timestamp(),
             "reason": s.reason, "created_by": s.created_by} for s in silences]})
    except SinkError as e:
        log.debug("could not save the silences: %s", e)
    return silences, False


def format_table(silences):
    """Lines for --list-silences."""
    lines = ["id\ttarget\tstatus\tfrom (UTC)\tuntil (UTC)\tby\treason"]
    for s in silences:
        lines.append(f"{s.id}\t{s.target}\t{s.job_status or 'all'}\t"
                     f"{s.starts_at:%Y-%m-%d %H:%M:%S}\t{s.ends_at:%Y-%m-%d %H:%M:%S}\t"
                     f"{s.created_by or '-'}\t{s.reason}")
    return lines
