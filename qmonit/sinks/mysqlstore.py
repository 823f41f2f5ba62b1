"""The MySQL/MariaDB sink: the `jobs` current-state table, created or migrated when missing.

All SQL is parameterised; identifiers come from qmonit.schema only and are backquoted. Names
compare byte for byte (utf8mb4_nopad_bin): queues that differ by case, accent or a trailing
space are different rows.
"""
import datetime as dt
import logging
import os

import mysql.connector

try:
    # The C extension raises its own errors (e.g. "Lost connection") past mysql.connector.Error.
    from _mysql_connector import MySQLError as _CError
    DB_ERRORS = (mysql.connector.Error, _CError)
except ImportError:  # pragma: no cover - pure-Python connector only
    DB_ERRORS = (mysql.connector.Error,)

from ..core import schema
from ..core.errors import ConfigError, SinkError

log = logging.getLogger(__name__)


def quote_ident(name):
    return "`" + name.replace("`", "``") + "`"


class MySQLStore:
    def __init__(self, host, port, user, password, database, timeout=30, unix_socket=None,
                 ssl_ca="", ssl_cert="", ssl_key="", query_timeout=300):
        self.host, self.port = host, port
        # query_timeout: a paused or wedged server fails the run instead of holding it.
        self.params = dict(host=host, port=port, user=user or None, password=password or "",
                           connection_timeout=int(timeout), charset="utf8mb4",
                           collation="utf8mb4_bin", autocommit=False,
                           read_timeout=int(query_timeout), write_timeout=int(query_timeout))
        if unix_socket:
            self.params["unix_socket"] = unix_socket
        if ssl_ca:
            # TLS with the server's certificate verified against this CA, host name included.
            self.params.update(ssl_ca=ssl_ca, ssl_verify_cert=True, ssl_verify_identity=True)
        if ssl_cert:
            self.params.update(ssl_cert=ssl_cert, ssl_key=ssl_key or ssl_cert)
        self.database = database
        self.collation = "utf8mb4_bin"
        self._conn = None

    @classmethod
    def from_config(cls, config):
        return cls(config.get("mysql", "host", "localhost"),
                   config.get_int("mysql", "port", 3306),
                   config.get("credentials", "username", ""),
                   config.get("credentials", "password", ""),
                   config.get("credentials", "database", "monit_jobs"),
                   config.get_float("mysql", "timeout", 30),
                   config.get("mysql", "unix_socket", "") or None,
                   *ssl_files(config),
                   query_timeout=config.get_int("mysql", "query_timeout", 300, minimum=1))

    @property
    def name(self):
        return f"MySQL {self.host}:{self.port}/{self.database}"

    def fail(self, error):
        reason = " ".join(str(error).split())[:300]
        if any(word in reason.lower() for word in ("ssl", "tls", "certificate")):
            reason += "; check [mysql] ssl_ca (the server's CA), ssl_cert and ssl_key"
        return SinkError(self.name, reason)

    def connection(self):
        if self._conn is None:
            try:
                conn = mysql.connector.connect(**self.params)
                cur = conn.cursor()
                self.collation = _binary_collation(cur)
                cur.execute(f"CREATE DATABASE IF NOT EXISTS {quote_ident(self.database)} "
                            f"CHARACTER SET utf8mb4 COLLATE {self.collation}")
                conn.database = self.database
                cur.close()
            except DB_ERRORS as e:
                raise self.fail(e) from None
            self._conn = conn
        return self._conn

    def close(self):
        if self._conn is not None:
            try:
                self._conn.close()
            except DB_ERRORS:
                pass
            self._conn = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def transaction(self, work):
        """Run work(cursor) in one transaction; roll back and raise SinkError on failure."""
        conn = self.connection()
        try:
            cur = conn.cursor()
            result = work(cur)
            conn.commit()
            cur.close()
            return result
        except DB_ERRORS as e:
            # The connection may be gone ("Lost connection"): the next use reconnects.
            try:
                conn.rollback()
            except DB_ERRORS:
                pass
            self.close()
            raise self.fail(e) from None

    def ensure_jobs_table(self):
        """Create the jobs table, or add the columns an older version lacks."""
        table = quote_ident(schema.MYSQL_JOBS_TABLE)

        def work(cur):
            columns = ",\n".join(f"{quote_ident(name)} {sqltype}"
                                 for name, sqltype in schema.MYSQL_JOBS_COLUMNS.items())
            key = ", ".join(quote_ident(k) for k in schema.MYSQL_KEY)
            cur.execute(f"CREATE TABLE IF NOT EXISTS {table} ({columns},\nPRIMARY KEY ({key}))"
                        f" ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE={self.collation}")
            cur.execute("SELECT column_name FROM information_schema.columns "
                        "WHERE table_schema = %s AND table_name = %s",
                        (self.database, schema.MYSQL_JOBS_TABLE))
            have = {row[0] for row in cur.fetchall()}
            for name, sqltype in schema.MYSQL_JOBS_COLUMNS.items():
                if name not in have:
                    log.info("adding column %s to %s", name, schema.MYSQL_JOBS_TABLE)
                    # last_seen/updated_at are NOT NULL: give old rows a value.
                    sqltype = sqltype.replace("DATETIME NOT NULL",
                                              "DATETIME NOT NULL DEFAULT '1970-01-01 00:00:00'")
                    cur.execute(f"ALTER TABLE {table} ADD COLUMN {quote_ident(name)} {sqltype}")

        self.transaction(work)

    def upsert(self, columns, rows, guard=None, trusted_until=None):
        """INSERT … ON DUPLICATE KEY UPDATE rows (tuples in `columns` order) into jobs.

        With guard (a column such as last_seen), an existing row is only overwritten by a row
        whose guard value is not older, so a backfill of past slots keeps the newest state.
        A stored guard value after trusted_until (an aware datetime: a run with the clock far
        ahead wrote it) is not trusted: such rows are overwritten, with one warning."""
        if not rows:
            return 0
        table = quote_ident(schema.MYSQL_JOBS_TABLE)
        updates = []
        newer = None
        if guard:
            g = quote_ident(guard)
            newer = f"(VALUES({g}) >= {g} OR {g} > @qmonit_trusted_until)"
        for column in columns:
            if column in schema.MYSQL_KEY or column == guard:
                continue
            c = quote_ident(column)
            if guard:
                updates.append(f"{c} = IF({newer}, VALUES({c}), {c})")
            else:
                updates.append(f"{c} = VALUES({c})")
        if guard:
            # Last: the assignments above compare against the old value.
            updates.append(f"{g} = IF({g} > @qmonit_trusted_until, VALUES({g}), "
                           f"GREATEST({g}, VALUES({g})))")
        sql = (f"INSERT INTO {table} ({', '.join(quote_ident(c) for c in columns)}) "
               f"VALUES ({', '.join(['%s'] * len(columns))}) ON DUPLICATE KEY UPDATE "
               + ", ".join(updates))
        limit = _naive(trusted_until) if trusted_until else FAR_FUTURE

        def work(cur):
            cur.execute("SET @qmonit_trusted_until = %s", (limit,))
            if guard and trusted_until:
                cur.execute(f"SELECT COUNT(*), MAX({quote_ident(guard)}) FROM {table} "
                            f"WHERE {quote_ident(guard)} > %s", (limit,))
                ahead, latest = cur.fetchone()
                if ahead:
                    log.warning("%s: %d rows of %s have %s up to %s, after the clock; not "
                                "trusted (a run with the clock ahead?)", self.name, ahead,
                                schema.MYSQL_JOBS_TABLE, guard, latest)
            cur.executemany(sql, rows)
            return len(rows)

        return self.transaction(work)

    def delete_stale(self, now, max_age, trusted_until=None):
        """Remove rows whose combination PanDA has not reported for longer than max_age, and
        (with trusted_until) rows dated after it that this run did not renew."""
        cutoff = (now - max_age).replace(tzinfo=None)
        table = quote_ident(schema.MYSQL_JOBS_TABLE)
        limit = _naive(trusted_until) if trusted_until else FAR_FUTURE

        def work(cur):
            cur.execute(f"DELETE FROM {table} WHERE last_seen < %s OR last_seen > %s",
                        (cutoff, limit))
            return cur.rowcount

        return self.transaction(work)

    def select(self, sql, params=()):
        def work(cur):
            cur.execute(sql, params)
            return cur.fetchall()
        return self.transaction(work)


FAR_FUTURE = dt.datetime(9999, 12, 31)


def _naive(moment):
    return moment.astimezone(dt.UTC).replace(tzinfo=None)


# Rows a single executemany sends.
INSERT_BATCH = 2000


def ssl_files(config):
    """[mysql] ssl_ca, ssl_cert, ssl_key: files that must exist when set (else exit 2)."""
    files = []
    for key in ("ssl_ca", "ssl_cert", "ssl_key"):
        value = config.get("mysql", key, "")
        if value and not os.access(value, os.R_OK):
            raise ConfigError(config.path, f"{value}: no such file or not readable", "mysql",
                              key)
        files.append(value)
    if files[2] and not files[1]:
        raise ConfigError(config.path, "a key without a cert", "mysql", "ssl_key")
    return files


def update_jobs(cur, temp, columns, key, assign, rows, outer=False, where="", params=()):
    """Set the `assign` columns of jobs rows from rows (values for `columns`, which start with
    the `key` columns), matched on key; returns the rows changed. Through a temporary table
    and one UPDATE ... JOIN: far faster than one UPDATE a row. outer: rows of jobs without a
    match get NULLs. where (with params) limits the rows updated; `j` is jobs there."""
    table = quote_ident(schema.MYSQL_JOBS_TABLE)
    temp = quote_ident(temp)
    names = ", ".join(quote_ident(c) for c in columns)
    insert = f"INSERT INTO {temp} ({names}) VALUES ({', '.join(['%s'] * len(columns))})"
    join = " AND ".join(f"j.{quote_ident(c)} = t.{quote_ident(c)}" for c in key)
    assignments = ", ".join(f"j.{quote_ident(c)} = t.{quote_ident(c)}" for c in assign)
    cur.execute(f"DROP TEMPORARY TABLE IF EXISTS {temp}")
    # Copied from jobs itself: the same types and collations, so the join compares names
    # exactly as the table does.
    cur.execute(f"CREATE TEMPORARY TABLE {temp} "
                f"(PRIMARY KEY ({', '.join(quote_ident(c) for c in key)})) ENGINE=InnoDB "
                f"SELECT {names} FROM {table} LIMIT 0")
    for start in range(0, len(rows), INSERT_BATCH):
        cur.executemany(insert, rows[start:start + INSERT_BATCH])
    cur.execute(f"UPDATE {table} j {'LEFT ' if outer else ''}JOIN {temp} t ON {join} "
                f"SET {assignments}{' WHERE ' + where if where else ''}", params)
    changed = cur.rowcount
    cur.execute(f"DROP TEMPORARY TABLE {temp}")
    return changed


def _binary_collation(cur):
    """A byte-wise utf8mb4 collation that also keeps trailing spaces significant where the
    server has one (MariaDB: utf8mb4_nopad_bin, MySQL 8: utf8mb4_0900_bin)."""
    for name in ("utf8mb4_nopad_bin", "utf8mb4_0900_bin"):
        cur.execute("SHOW COLLATION LIKE %s", (name,))
        if cur.fetchall():
            return name
    return "utf8mb4_bin"
