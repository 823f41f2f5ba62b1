"""The dead-man switch: QMonit's own silence must not look like a quiet grid.

suspicious.py and datadisk.py each look for the last `ok` fetch_queues.py run in
"10m"."qmonit_runs". When there has been none for [notifications] stale_after (default 30 min),
one "QMonit data is stale since ..." notice goes to the notification channels, and one more
when the data is fresh again. The state under data_dir is shared by both scripts, so each
change is told once.
"""
import datetime as dt
import logging

from ..core import schema
from ..core.errors import ConfigError, QMonitError
from ..core.files import State, ahead_of_clock
from ..core.influxql import quote_ident, quote_string, time_literal
from ..sinks import notify
from ..sinks.influx import duration_seconds

log = logging.getLogger(__name__)

STATE_NAME = "stale_notice"
WATCHED_SCRIPT = "fetch_queues"
DEFAULT_STALE_AFTER = "30m"


def stale_after(config):
    """[notifications] stale_after in seconds (bad or zero values exit 2)."""
    value = config.get(notify.SECTION, "stale_after", DEFAULT_STALE_AFTER)
    try:
        seconds = duration_seconds(value)
    except ValueError as e:
        raise ConfigError(config.path, str(e), notify.SECTION, "stale_after") from None
    if seconds <= 0:
        raise ConfigError(config.path, "must be a finite duration above 0", notify.SECTION,
                          "stale_after")
    return seconds


def last_ok(influx, now):
    """The slot of the last ok fetch_queues.py run at or before now (aware), or None."""
    runs = schema.RUNS
    reply = influx.query(
        f'SELECT last("duration_s") FROM {runs.qualified} WHERE '
        f"{quote_ident(schema.SCRIPT)} = {quote_string(WATCHED_SCRIPT)} AND "
        f"{quote_ident(schema.STATUS)} = {quote_string('ok')} AND time <= {time_literal(now)}",
        epoch="s")
    for series in reply or ():
        for s in series or ():
            for row in s.get("values") or ():
                return dt.datetime.fromtimestamp(int(row[0]), dt.UTC)
    return None


def check(settings, seconds, influx, now, data_dir, dry_run=False, out=None):
    """Tell the channels when the data turns stale or fresh again; returns the channels that
    failed. Never raises for InfluxDB: a run that cannot read it fails on its own."""
    if not settings.channels:
        return 0
    state = State(data_dir, STATE_NAME)
    saved = state.load()
    epoch = int(now.timestamp())
    checked = int(saved.get("checked", 0))
    if epoch < checked and not ahead_of_clock(checked, str(state.path)):
        return 0  # a backfill: tells nobody
    try:
        last = last_ok(influx, now)
    except QMonitError as e:
        log.warning("could not check the last fetch_queues.py run: %s", e)
        return 0
    if last is None:
        log.debug("no ok fetch_queues.py run recorded; nothing to call stale")
        return 0
    stale = (now - last).total_seconds() > seconds
    log.debug("last ok fetch_queues.py slot %s: %s", last, "stale" if stale else "fresh")
    errors = 0
    if stale != bool(saved.get("stale", False)):
        when = f"{last:%Y-%m-%d %H:%M} UTC"
        if stale:
            subject = f"QMonit data is stale since {when}"
            text = (f"{subject}\n\nfetch_queues.py has had no ok run for "
                    f"{(now - last).total_seconds() / 60:.0f} minutes (stale_after "
                    f"{seconds / 60:g} min): the dashboards and the suspicious flags show old "
                    "data, and a quiet digest means nothing. See its cron mail and "
                    "\"10m\".\"qmonit_runs\".\n")
        else:
            subject = f"QMonit data is fresh again (last ok slot {when})"
            text = f"{subject}\n\nfetch_queues.py runs again; flags and digests resume.\n"
        errors = notify.send_notice(settings, subject, text, dry_run=dry_run, out=out)
        if errors:
            return errors  # told next run
    if not dry_run:
        state.save({"stale": stale, "checked": epoch,
                    "last_ok": int(last.timestamp())})
    return errors
