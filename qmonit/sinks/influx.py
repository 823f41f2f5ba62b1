"""The InfluxDB 1.x sink: database and retention policies, fast line-protocol writes, a spool
on disk for points that could not be written, and InfluxQL quoting for readers."""
import json
import logging
import re
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import requests
from influxdb import InfluxDBClient
from influxdb.exceptions import InfluxDBClientError, InfluxDBServerError

from ..core import schema, tls
from ..core.errors import ConfigError, SinkError
from ..core.http import describe
from ..core.influxql import quote_ident
from .spool import CorruptFile, Spool, SpoolFull, line_hours

log = logging.getLogger(__name__)

# Large batches are faster; 25 MB is influxd's default body limit, ~250 bytes a line.
BATCH_LINES = 20000
# 10m holds a week: the 48 h downsample look-back and the 24 h averages, with margin.
# What InfluxDB 1.x says of points older than their policy's duration (HTTP 400 partial write).
BEYOND_RETENTION = "points beyond retention policy dropped"
DEFAULT_DURATIONS = {schema.RP_10M: "7d", schema.RP_1H: "180d", schema.RP_1D: "INF"}
# How many lines a 400 partial write dropped.
_DROPPED = re.compile(r"dropped=(\d+)")


class Influx:
    """One InfluxDB database. Writes go as line protocol through influxdb-python."""

    def __init__(self, url, database, username="", password="", verify_ssl=True, timeout=30,
                 spool_dir=None, durations=None, tls=None, spool_max_bytes=None,
                 replay_seconds=120, retry_base=600):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        self.url = url.rstrip("/")
        self.database = database
        https = parts.scheme == "https"
        # verify_ssl = false is the only way to switch verification off; ca_path (tls) names
        # the CA to verify against.
        verify = (tls.verify if tls else True) if verify_ssl else False
        self.client = InfluxDBClient(
            host=parts.hostname, port=parts.port or (443 if https else 8086),
            username=username or None, password=password or None, database=database,
            ssl=https, verify_ssl=verify, timeout=timeout, retries=2,
            path=parts.path.strip("/"), cert=tls.client_cert if tls and https else None)
        if tls is not None and https:
            self.client._session.mount("https://", tls.adapter())
        self.spool = Spool(spool_dir, spool_max_bytes, retry_base) if spool_dir else None
        self.durations = durations
        self._ensured = False
        # Replay time left in this run; lines InfluxDB refused for good (qmonit_runs.errors).
        self.replay_budget = replay_seconds
        self.dead_letters = 0

    @classmethod
    def from_config(cls, config):
        url = config.get("influxdb", "url", "http://localhost:8086")
        try:
            return cls(url, config.get("credentials", "database", "monit_jobs"),
                       config.get("credentials", "username", ""),
                       config.get("credentials", "password", ""),
                       config.get_bool("influxdb", "verify_ssl", True),
                       config.get_float("influxdb", "timeout", 30),
                       spool_dir=config.data_dir() / "spool",
                       durations=retention_durations(config),
                       tls=tls.settings(config, "influxdb"),
                       spool_max_bytes=spool_max_bytes(config),
                       replay_seconds=config.get_float("influxdb", "replay_seconds", 120))
        except ValueError as e:
            raise ConfigError(config.path, str(e), "influxdb", "url") from None

    def _fail(self, error):
        if isinstance(error, requests.RequestException):
            reason = describe(error)
        else:
            reason = getattr(error, "content", None) or str(error)
            if isinstance(reason, bytes):
                reason = reason.decode("utf-8", "replace")
        return SinkError(f"InfluxDB {self.url}", " ".join(str(reason).split())[:300])

    def query(self, q, epoch="s"):
        """Run InfluxQL; returns one list of series dicts per statement. Raises SinkError."""
        try:
            response = self.client.request(
                "query", method="POST",
                params={"q": q, "db": self.database, "epoch": epoch},
                # The client asks for msgpack by default; JSON is what we parse.
                headers={"Accept": "application/json"})
        except (requests.RequestException, InfluxDBClientError, InfluxDBServerError) as e:
            raise self._fail(e) from None
        try:
            results = response.json().get("results", [])
        except ValueError as e:
            # A proxy's HTML page or a cut answer: name the server, never "unexpected".
            raise SinkError(f"InfluxDB {self.url}", f"bad answer: {e}") from None
        out = []
        for result in results:
            if "error" in result:
                raise SinkError(f"InfluxDB {self.url}", f"{result['error']} in: {q[:200]}")
            out.append(result.get("series", []))
        return out

    def query_chunks(self, q, chunk_size=10000, epoch="s"):
        """Run one InfluxQL SELECT with a chunked answer; yields its series dicts as they come.

        Chunked answers are not cut by the server's max-row-limit, and a large answer is
        never held in memory whole. Raises SinkError.
        """
        try:
            response = self.client.request(
                "query", method="POST", stream=True,
                params={"q": q, "db": self.database, "epoch": epoch, "chunked": "true",
                        "chunk_size": chunk_size},
                headers={"Accept": "application/json"})
            # Big reads: the default 512-byte pieces make joining a long line quadratic.
            for line in response.iter_lines(chunk_size=1 << 20):
                if not line:
                    continue
                for result in json.loads(line).get("results", []):
                    if "error" in result:
                        raise SinkError(f"InfluxDB {self.url}", f"{result['error']} in: {q[:200]}")
                    yield from result.get("series", [])
        except (requests.RequestException, InfluxDBClientError, InfluxDBServerError) as e:
            raise self._fail(e) from None
        except ValueError as e:
            raise SinkError(f"InfluxDB {self.url}", f"bad answer: {e}") from None

    def ensure_database(self, durations=None):
        """Create the database and the 10m/1h/1d policies if missing; apply changed durations.

        Writes call it once per instance, so a writer never needs to."""
        durations = {**DEFAULT_DURATIONS, **(self.durations or {}), **(durations or {})}
        self.query(f"CREATE DATABASE {quote_ident(self.database)}")
        existing = {row[0]: (row[1], row[2]) for series in self.query(
            f"SHOW RETENTION POLICIES ON {quote_ident(self.database)}")[0]
            for row in series.get("values", [])}
        for rp in schema.RETENTION_POLICIES:
            duration = durations[rp]
            shard = shard_for(rp, _normal_duration(duration))
            target = (f"ON {quote_ident(self.database)} DURATION {duration} REPLICATION 1 "
                      f"SHARD DURATION {shard}")
            if rp not in existing:
                self.query(f"CREATE RETENTION POLICY {quote_ident(rp)} {target}")
            elif (_normal(existing[rp][0]) != _normal_duration(duration)
                  or _normal(existing[rp][1]) != _normal_duration(shard)):
                # The shard group duration goes with the duration: influxd refuses a policy
                # shorter than its shard groups (180d has 7d groups, so 180d -> 5d would
                # fail). A new shard group duration applies to new shard groups.
                log.info("retention policy %s: duration %s -> %s, shard groups %s -> %s", rp,
                         existing[rp][0], duration, existing[rp][1], shard)
                self.query(f"ALTER RETENTION POLICY {quote_ident(rp)} {target}")
        # Done: this instance's writes need not check again (two queries each run).
        self._ensured = True

    def check_retained(self, rp, moment, wall=None):
        """Refuse, before anything is written, a time the policy no longer holds: InfluxDB
        would drop its points as beyond retention, on this run and on every replay."""
        duration = {**DEFAULT_DURATIONS, **(self.durations or {})}[rp]
        seconds = _normal_duration(duration)
        wall = time.time() if wall is None else wall
        if seconds and moment.timestamp() < wall - seconds:
            raise SinkError(f"InfluxDB {self.url}",
                            f"slot {moment:%Y-%m-%d %H:%M:%S} UTC is older than the {rp} "
                            f"retention policy ({duration}); nothing written")

    def write_lines(self, rp, lines):
        """Write line-protocol lines (second precision) to a retention policy.

        The lines go to the spool first, then earlier runs' spooled lines are replayed
        (oldest first, in bounded time), then these lines are posted and their file removed.
        SinkError when they could not be written; its `safe` is True when they are kept in
        the spool for the next run, or written after all (a full spool is an error too).
        """
        if not lines:
            return 0
        held, not_kept = None, None
        if self.spool is not None:
            try:
                held = self.spool.put(self.database, rp, lines, hold=True)
            except SinkError as e:
                # A full or read-only spool must not keep points from a healthy server.
                not_kept = e
                if not isinstance(e, SpoolFull):
                    log.warning("cannot spool %d points before writing them: %s", len(lines), e)
        try:
            if not self._ensured:
                self.ensure_database()
                self._ensured = True
            self.replay()
            dead, beyond = self._write(self.database, rp, lines)
        except SinkError as e:
            if held is not None:
                held.release()
                error = SinkError(e.target, f"{e.reason}; {len(lines)} points kept in "
                                  f"{held.path} for the next run")
                error.safe = True
                raise error from None
            if not_kept is not None:
                raise SinkError(e.target, f"{e.reason}; {len(lines)} points NOT kept: "
                                f"{not_kept}") from None
            raise
        if held is not None:
            held.remove()
        self._dead_letter(self.database, rp, dead)
        if beyond:
            # Refused now, refused on every replay: not kept.
            raise SinkError(f"InfluxDB {self.url}", f"{beyond}; those points are past the {rp} "
                            "retention policy and are not kept")
        if isinstance(not_kept, SpoolFull) and \
                self.spool.size() + not_kept.needed > self.spool.max_bytes:
            # Still full after the replay: loud on every run until it drains.
            error = SinkError(not_kept.target, f"{not_kept.reason}; {len(lines)} points written "
                              "to InfluxDB, but the spool could not keep them")
            error.safe = True
            raise error
        return len(lines)

    def write_lines_split(self, rp, lines, parts=2, at_least=10000):
        """write_lines of `parts` pieces at once (each spooled on its own) when there are at
        least `at_least` lines: influxd takes a write in on one core, so two at once take
        25k lines in on both. The first error, once every piece is done."""
        if len(lines) < at_least or parts < 2:
            return self.write_lines(rp, lines)
        size = -(-len(lines) // parts)
        with ThreadPoolExecutor(max_workers=parts) as pool:
            futures = [pool.submit(self.write_lines, rp, lines[i:i + size])
                       for i in range(0, len(lines), size)]
        return sum(future.result() for future in futures)

    def _send(self, database, rp, lines):
        """One POST; SinkError with `refused` True when InfluxDB answered with an error
        status, `status` its code; False when it could not be reached."""
        try:
            self.client.write_points(lines, time_precision="s", database=database,
                                     retention_policy=rp, protocol="line")
        except (InfluxDBClientError, InfluxDBServerError) as e:
            error = self._fail(e)
            error.refused = True
            error.status = getattr(e, "code", None)
            raise error from None
        except requests.RequestException as e:
            error = self._fail(e)
            error.refused = False
            error.status = None
            raise error from None

    def _write(self, database, rp, lines):
        """Post lines in batches; a batch refused with HTTP 400 is halved until the bad lines
        are alone. Returns ([(line, reason)] refused for good, the beyond-retention reason or
        ""); raises SinkError for any other failure."""
        refused, beyond = [], ""
        pending = [lines[i:i + BATCH_LINES] for i in range(0, len(lines), BATCH_LINES)]
        pending.reverse()
        while pending:
            batch = pending.pop()
            try:
                self._send(database, rp, batch)
            except SinkError as e:
                if e.status != 400:
                    raise
                if BEYOND_RETENTION in e.reason:
                    # A partial write: InfluxDB took the others and will never take these.
                    beyond = e.reason
                    continue
                dropped = _DROPPED.search(e.reason)
                if len(batch) == 1 or (dropped and int(dropped.group(1)) >= len(batch)):
                    # Every line of the batch refused (e.g. a field type conflict on all).
                    refused.extend((line, e.reason) for line in batch)
                    continue
                # 400 partial writes keep the good lines; writing them again is harmless.
                half = len(batch) // 2
                pending.append(batch[half:])
                pending.append(batch[:half])
        return refused, beyond

    def _dead_letter(self, database, rp, refused):
        if not refused:
            return
        self.dead_letters += len(refused)
        where = "not kept"
        if self.spool is not None:
            try:
                where = f"kept in {self.spool.dead_letter(database, rp, refused)}"
            except SinkError as e:
                where = f"not kept ({e})"
        log.warning("InfluxDB %s refused %d line(s) for %s.%s (%s), %s; first: %.200s",
                    self.url, len(refused), database, rp, refused[0][1][:200], where,
                    refused[0][0])

    def flush_spool(self):
        """Replay the spool now (as a write does first); returns the lines written."""
        return self.replay()

    def replay(self):
        """Write what earlier runs spooled, oldest first, within this run's replay time.

        Only one process replays at a time; files whose writer is still at work are left to
        it. Raises SinkError when InfluxDB cannot be reached."""
        if self.spool is None or self.replay_budget <= 0:
            return 0
        with self.spool.replay_lock() as mine:
            if not mine:
                log.debug("another process is replaying the spool; leaving it to that one")
                return 0
            return self._replay()

    def _replay(self):
        spool = self.spool
        started = time.monotonic()
        now = time.time()
        spool.remove_stale_tmp(now)
        files = spool.files()
        if not files:
            return 0
        retries = spool.load_retries()
        written, done = 0, 0
        try:
            for path in files:
                if time.monotonic() - started > self.replay_budget:
                    break
                if not spool.due(retries, path, now):
                    continue
                held = spool.claim(path)
                if held is None:
                    continue
                try:
                    try:
                        database, rp, lines = spool.read(held, self.database)
                    except CorruptFile as e:
                        spool.set_aside(path, ".corrupt", f"unreadable ({e})")
                        continue
                    try:
                        dead, beyond = self._write(database, rp, lines)
                    except SinkError as e:
                        if not e.refused:
                            raise
                        spool.refused(retries, path, now, e.reason)
                        continue
                    if beyond:
                        log.warning("spool file %s: %s (past the %s retention policy)",
                                    path.name, beyond, rp)
                    self._dead_letter(database, rp, dead)
                    if rp == schema.RP_10M:
                        spool.add_late_hours(line_hours(lines))
                    held.remove()
                    written += len(lines)
                    done += 1
                    log.debug("wrote %d spooled points from %s", len(lines), path.name)
                finally:
                    held.release()
        finally:
            spool.save_retries(retries)
            elapsed = time.monotonic() - started
            self.replay_budget -= elapsed
            left = spool.files()
            log.debug("spool: replayed %d files (%d points) in %.2f s; %d files (%.1f MB) left",
                      done, written, elapsed, len(left), spool.size() / 1e6)
        if left and self.replay_budget <= 0:
            log.warning("spool %s: %d files (%.1f MB) still to replay; the next runs go on",
                        spool.directory, len(left), spool.size() / 1e6)
        return written


_UNITS = {"w": 7 * 86400, "d": 86400, "h": 3600, "m": 60, "s": 1}


def _normal_duration(text):
    """Seconds for an InfluxQL duration ('30d', '1h30m', 'INF' -> 0)."""
    text = text.strip().lower()
    if text in ("inf", "0", "0s"):
        return 0
    total, number = 0, ""
    for ch in text:
        if ch.isdigit():
            number += ch
        elif ch in _UNITS and number:
            total += int(number) * _UNITS[ch]
            number = ""
        else:
            raise ValueError(f"bad duration {text!r}")
    if number:
        raise ValueError(f"bad duration {text!r}")
    return total


def duration_seconds(text):
    """Seconds in an InfluxQL duration such as '48h', '14d' or '1h30m' (INF is 0).

    Raises ValueError for anything else."""
    return _normal_duration(text)


def shard_duration(seconds):
    """influxd's own default shard group duration for a policy of this many seconds (0: INF)."""
    if seconds == 0 or seconds >= 180 * 86400:
        return "7d"
    return "1d" if seconds >= 2 * 86400 else "1h"


def shard_for(rp, seconds):
    """The shard group duration QMonit gives a policy of this many seconds: influxd's default,
    but 7 days for the 10m points when the policy is that long. A grouped read costs per series
    and shard, and suspicious.py groups the last 24 h, which 1-day groups always split in two
    (measured at 25k series: a seed 15-24 % faster). Points then stay up to a week longer."""
    if rp == schema.RP_10M and (seconds == 0 or seconds >= 7 * 86400):
        return "7d"
    return shard_duration(seconds)


def _normal(shown):
    # SHOW RETENTION POLICIES prints '720h0m0s', or '0s' for infinite.
    return _normal_duration(shown)


# A week at ATLAS scale (25k series: jobs and averages every 10 minutes), with margin.
DEFAULT_SPOOL_MAX_MB = 4096


def spool_max_bytes(config):
    """[paths] spool_max_mb in bytes."""
    mb = config.get_float("paths", "spool_max_mb", DEFAULT_SPOOL_MAX_MB)
    if not mb > 0:
        raise ConfigError(config.path, "must be above 0", "paths", "spool_max_mb")
    return int(mb * 1e6)


def retention_durations(config):
    """The configured durations of the three policies ([influxdb] rp_10m, rp_1h, rp_1d)."""
    durations = {}
    for rp in schema.RETENTION_POLICIES:
        key = f"rp_{rp}"
        value = config.get("influxdb", key, DEFAULT_DURATIONS[rp])
        try:
            seconds = _normal_duration(value)
        except ValueError as e:
            raise ConfigError(config.path, str(e), "influxdb", key) from None
        if rp == schema.RP_10M and seconds and seconds < 25 * 3600:
            raise ConfigError(config.path, "the 10m policy must hold at least 25h",
                              "influxdb", key)
        durations[rp] = value
    return durations
