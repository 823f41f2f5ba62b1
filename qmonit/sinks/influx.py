"""The InfluxDB 1.x sink: database and retention policies, fast line-protocol writes, a spool
on disk for points that could not be written, and InfluxQL quoting for readers."""
import json
import logging
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import requests
from influxdb import InfluxDBClient
from influxdb.exceptions import InfluxDBClientError, InfluxDBServerError

from ..core import schema, tls
from ..core.errors import ConfigError, SinkError
from ..core.files import atomic_write
from ..core.http import describe
from ..core.influxql import quote_ident

log = logging.getLogger(__name__)

# Large batches are faster; 25 MB is influxd's default body limit, ~250 bytes a line.
BATCH_LINES = 20000
# 10m holds a week: the 48 h downsample look-back and the 24 h averages, with margin.
# What InfluxDB 1.x says of points older than their policy's duration (HTTP 400 partial write).
BEYOND_RETENTION = "points beyond retention policy dropped"
DEFAULT_DURATIONS = {schema.RP_10M: "7d", schema.RP_1H: "180d", schema.RP_1D: "INF"}


class Spool:
    """Line-protocol files under data_dir/spool, one file a failed write, oldest first."""

    def __init__(self, directory):
        self.directory = Path(directory)

    def put(self, rp, lines):
        name = f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.{rp}.lp"
        return atomic_write(self.directory / name, "\n".join(lines) + "\n")

    def files(self):
        if not self.directory.is_dir():
            return []
        return sorted(p for p in self.directory.glob("*.lp") if not p.name.startswith("."))

    @staticmethod
    def read(path):
        rp = path.name.rsplit(".", 2)[-2]
        lines = [line for line in path.read_text(encoding="utf-8").split("\n") if line]
        return rp, lines


class Influx:
    """One InfluxDB database. Writes go as line protocol through influxdb-python."""

    def __init__(self, url, database, username="", password="", verify_ssl=True, timeout=30,
                 spool_dir=None, durations=None, tls=None):
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
        self.spool = Spool(spool_dir) if spool_dir else None
        self.durations = durations
        self._ensured = False

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
                       tls=tls.settings(config, "influxdb"))
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
        results = response.json().get("results", [])
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
        existing = {row[0]: row[1] for series in self.query(
            f"SHOW RETENTION POLICIES ON {quote_ident(self.database)}")[0]
            for row in series.get("values", [])}
        for rp in schema.RETENTION_POLICIES:
            duration = durations[rp]
            target = f"ON {quote_ident(self.database)} DURATION {duration} REPLICATION 1"
            if rp not in existing:
                self.query(f"CREATE RETENTION POLICY {quote_ident(rp)} {target}")
            elif _normal(existing[rp]) != _normal_duration(duration):
                log.info("retention policy %s: duration %s -> %s", rp, existing[rp], duration)
                # The shard group duration goes with it: influxd refuses a policy shorter
                # than its shard groups (180d has 7d groups, so 180d -> 5d would fail).
                shard = shard_duration(_normal_duration(duration))
                self.query(f"ALTER RETENTION POLICY {quote_ident(rp)} {target} "
                           f"SHARD DURATION {shard}")

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

        Spooled lines from earlier runs go first. Lines that cannot be written are spooled
        and SinkError is raised (saying where they are kept), so the next run writes them.
        """
        try:
            if not self._ensured:
                self.ensure_database()
            self.flush_spool()
            self._post(rp, lines)
        except SinkError as e:
            if self.spool is None or not lines:
                raise
            if BEYOND_RETENTION in e.reason:
                # Refused now, refused on every replay: kept, they would block nothing but
                # would never be written either.
                raise SinkError(e.target, f"{e.reason}; those points are past the {rp} "
                                "retention policy and are not kept") from None
            path = self.spool.put(rp, lines)
            raise SinkError(e.target, f"{e.reason}; {len(lines)} points kept in {path} "
                            "for the next run") from None
        return len(lines)

    def _post(self, rp, lines):
        for start in range(0, len(lines), BATCH_LINES):
            try:
                self.client.write_points(lines[start:start + BATCH_LINES], time_precision="s",
                                         retention_policy=rp, protocol="line")
            except InfluxDBClientError as e:
                error = self._fail(e)
                # 400: InfluxDB will never take these lines; retrying them would block the spool.
                error.rejected = e.code == 400
                raise error from None
            except (requests.RequestException, InfluxDBServerError) as e:
                raise self._fail(e) from None

    def flush_spool(self):
        """Write what earlier runs spooled, oldest first; stop at the first failure."""
        if self.spool is None:
            return 0
        written = 0
        for path in self.spool.files():
            rp, lines = self.spool.read(path)
            try:
                self._post(rp, lines)
            except SinkError as e:
                if not getattr(e, "rejected", False):
                    raise
                path.rename(path.with_suffix(".rejected"))
                log.warning("InfluxDB rejected spooled %s (%s); renamed to .rejected",
                            path.name, e.reason)
                continue
            path.unlink()
            written += len(lines)
            log.info("wrote %d spooled points from %s", len(lines), path.name)
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


def _normal(shown):
    # SHOW RETENTION POLICIES prints '720h0m0s', or '0s' for infinite.
    return _normal_duration(shown)


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
