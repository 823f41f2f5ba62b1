"""The MySQL/MariaDB sink: the `jobs` current-state table, created or migrated when missing.

All SQL is parameterised; identifiers come from qmonit.schema only and are backquoted. Names
compare byte for byte (utf8mb4_nopad_bin): queues that differ by case, accent or a trailing
space are different rows.
"""
import logging
import os

import mysql.connector

from ..core import schema
from ..core.errors import ConfigError, SinkError

log = logging.getLogger(__name__)


def quote_ident(name):
    return "`" + name.replace("`", "``") + "`"


class MySQLStore:
    def __init__(self, host, port, user, password, database, timeout=30, unix_socket=None,
                 ssl_ca="", ssl_cert="", ssl_key=""):
        self.host, self.port = host, port
        self.params = dict(host=host, port=port, user=user or None, password=password or "",
                           connection_timeout=int(timeout), charset="utf8mb4",
                           collation="utf8mb4_bin", autocommit=False)
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
                   *_ssl_files(config))

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
            except mysql.connector.Error as e:
                raise self.fail(e) from None
            self._conn = conn
        return self._conn

    def close(self):
        if self._conn is not None:
            try:
                self._conn.close()
            except mysql.connector.Error:
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
        except mysql.connector.Error as e:
            try:
                conn.rollback()
            except mysql.connector.Error:
                pass
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

    def upsert(self, columns, rows, guard=None):
        """INSERT … ON DUPLICATE KEY UPDATE rows (tuples in `columns` order) into jobs.

        With guard (a column such as last_seen), an existing row is only overwritten by a row
        whose guard value is not older, so a backfill of past slots keeps the newest state."""
        if not rows:
            return 0
        table = quote_ident(schema.MYSQL_JOBS_TABLE)
        updates = []
        for column in columns:
            if column in schema.MYSQL_KEY or column == guard:
                continue
            c = quote_ident(column)
            if guard:
                g = quote_ident(guard)
                updates.append(f"{c} = IF(VALUES({g}) >= {g}, VALUES({c}), {c})")
            else:
                updates.append(f"{c} = VALUES({c})")
        if guard:
            # Last: the assignments above compare against the old value.
            g = quote_ident(guard)
            updates.append(f"{g} = GREATEST({g}, VALUES({g}))")
        sql = (f"INSERT INTO {table} ({', '.join(quote_ident(c) for c in columns)}) "
               f"VALUES ({', '.join(['%s'] * len(columns))}) ON DUPLICATE KEY UPDATE "
               + ", ".join(updates))

        def work(cur):
            cur.executemany(sql, rows)
            return len(rows)

        return self.transaction(work)

    def delete_stale(self, now, max_age):
        """Remove rows whose combination PanDA has not reported for longer than max_age."""
        cutoff = (now - max_age).replace(tzinfo=None)
        table = quote_ident(schema.MYSQL_JOBS_TABLE)

        def work(cur):
            cur.execute(f"DELETE FROM {table} WHERE last_seen < %s", (cutoff,))
            return cur.rowcount

        return self.transaction(work)

    def select(self, sql, params=()):
        def work(cur):
            cur.execute(sql, params)
            return cur.fetchall()
        return self.transaction(work)


# Rows a single executemany sends.
INSERT_BATCH = 2000


def _ssl_files(config):
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
