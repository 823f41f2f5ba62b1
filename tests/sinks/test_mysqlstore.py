"""The MySQL sink on a real MariaDB: creation, migration, guarded upserts, stale rows."""
import datetime as dt

import pytest

from qmonit.core import schema
from qmonit.core.errors import SinkError
from qmonit.jobs import transform
from qmonit.sinks.mysqlstore import MySQLStore, quote_ident, update_jobs

T = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)


def rows_for(stats, slot):
    return transform.mysql_rows(stats, {}, slot)


def test_quote_ident():
    assert quote_ident("a`b") == "`a``b`"


def test_create_upsert_and_read_back(mysql):
    mysql.ensure_jobs_table()
    mysql.ensure_jobs_table()  # idempotent
    stats = {"Q; DROP TABLE jobs; --": {"user": {"SCORE": {"running": 5, "failed": 1}}}}
    assert mysql.upsert(transform.MYSQL_ROW_COLUMNS, rows_for(stats, T), guard="last_seen") == 1
    [(queue, running, failed, pending)] = mysql.select(
        "SELECT panda_queue, running_jobs, failed_jobs, pending_jobs FROM jobs")
    assert (queue, running, failed, pending) == ("Q; DROP TABLE jobs; --", 5, 1, 0)


def test_guard_keeps_the_newest_row(mysql):
    mysql.ensure_jobs_table()
    newer = {"Q": {"user": {"SCORE": {"running": 50}}}}
    older = {"Q": {"user": {"SCORE": {"running": 7}}}}
    mysql.upsert(transform.MYSQL_ROW_COLUMNS, rows_for(newer, T), guard="last_seen")
    mysql.upsert(transform.MYSQL_ROW_COLUMNS, rows_for(older, T - dt.timedelta(hours=1)),
                 guard="last_seen")
    assert mysql.select("SELECT running_jobs, last_seen FROM jobs") == \
        [(50, T.replace(tzinfo=None))]
    later = {"Q": {"user": {"SCORE": {"running": 9}}}}
    mysql.upsert(transform.MYSQL_ROW_COLUMNS, rows_for(later, T + dt.timedelta(minutes=10)),
                 guard="last_seen")
    assert mysql.select("SELECT running_jobs FROM jobs") == [(9,)]


def test_names_that_differ_only_by_case_or_accent_are_distinct_rows(mysql):
    mysql.ensure_jobs_table()
    stats = {name: {"user": {"SCORE": {"running": i}}}
             for i, name in enumerate(["site_a", "SITE_A", "sité_a", "site_a "])}
    mysql.upsert(transform.MYSQL_ROW_COLUMNS, rows_for(stats, T))
    got = dict(mysql.select("SELECT panda_queue, running_jobs FROM jobs"))
    assert got == {name: i for i, name in enumerate(stats)}


def test_delete_stale(mysql):
    mysql.ensure_jobs_table()
    mysql.upsert(transform.MYSQL_ROW_COLUMNS,
                 rows_for({"OLD": {"user": {"SCORE": {"running": 1}}}}, T - dt.timedelta(hours=25)))
    mysql.upsert(transform.MYSQL_ROW_COLUMNS,
                 rows_for({"NEW": {"user": {"SCORE": {"running": 1}}}}, T - dt.timedelta(hours=23)))
    assert mysql.delete_stale(T, dt.timedelta(hours=24)) == 1
    assert mysql.select("SELECT panda_queue FROM jobs") == [("NEW",)]


def test_failed_transaction_rolls_back(mysql):
    mysql.ensure_jobs_table()

    def half(cur):
        cur.execute("INSERT INTO jobs (panda_queue, prod_source, resource, last_seen, updated_at)"
                    " VALUES (%s, %s, %s, NOW(), NOW())", ("Q", "user", "SCORE"))
        cur.execute("INSERT INTO no_such_table VALUES (1)")

    with pytest.raises(SinkError, match="no_such_table"):
        mysql.transaction(half)
    assert mysql.select("SELECT COUNT(*) FROM jobs") == [(0,)]


def test_unreachable_server_names_it(database_name):
    from conftest import free_port
    port = free_port()
    store = MySQLStore("127.0.0.1", port, "qmonit", "qmonit", database_name, timeout=2)
    with pytest.raises(SinkError) as e:
        store.ensure_jobs_table()
    assert f"MySQL 127.0.0.1:{port}/{database_name}" in str(e.value)


def test_every_contract_column_exists(mysql):
    mysql.ensure_jobs_table()
    columns = {r[0] for r in mysql.select(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = %s "
        "AND table_name = 'jobs'", (mysql.database,))}
    contract = {"atlas_site", "type", "country", "cloud", "federation", "site_state", "tier",
                "resource_factor", "resource_type", "datadisk_name", "datadisk_occupied_gb",
                "datadisk_files"}
    contract |= {f"{s}_jobs" for s in schema.STATUSES}
    contract |= {f"{w}_{s}_jobs" for w in ("avg1h", "avg6h", "avg12h", "avg24h", "avg7d", "avg30d")
                 for s in ("assigned", "activated", "failed", "running")}
    assert contract <= columns


def test_update_jobs_through_a_temporary_table(mysql):
    mysql.ensure_jobs_table()
    stats = {q: {"user": {"SCORE": {"running": 1}}} for q in ("A", "B", "C ")}
    mysql.upsert(transform.MYSQL_ROW_COLUMNS, rows_for(stats, T), guard="last_seen")
    key = ("panda_queue",)
    columns = key + ("datadisk_files",)
    changed = mysql.transaction(lambda cur: update_jobs(
        cur, "t_rows", columns, key, columns[1:],
        [("A", 5), ("C", 7), ("B", 9)] + [(f"X{i}", i) for i in range(2500)],   # > 1 batch
        where="j.`panda_queue` <> %s", params=("B",)))
    # "C" is not "C " (names compare byte for byte); where spares "B".
    assert changed == 1
    assert dict(mysql.select("SELECT panda_queue, datadisk_files FROM jobs")) == \
        {"A": 5, "B": None, "C ": None}
    # outer: the rows without a match get NULLs.
    mysql.transaction(lambda cur: update_jobs(cur, "t_rows", columns, key, columns[1:],
                                              [("B", 6), ("C ", 4)], outer=True))
    assert dict(mysql.select("SELECT panda_queue, datadisk_files FROM jobs")) == \
        {"A": None, "B": 6, "C ": 4}
