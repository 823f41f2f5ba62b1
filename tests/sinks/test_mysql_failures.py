"""The MySQL sink when the server drops or stops answering: errors name the server (issue 12)."""
import os
import signal

import pytest

from qmonit.core.errors import SinkError
from qmonit.dev import devservers
from qmonit.sinks.mysqlstore import MySQLStore


def store(server, database, **kw):
    return MySQLStore("127.0.0.1", server.port, devservers.DB_USER, devservers.DB_PASSWORD,
                      database, **kw)


def test_a_lost_connection_names_the_server_and_the_next_call_reconnects(mariadb_server,
                                                                         database_name):
    a, b = store(mariadb_server, database_name), store(mariadb_server, database_name)
    try:
        a.ensure_jobs_table()
        ((connection_id,),) = a.select("SELECT CONNECTION_ID()")
        b.select(f"KILL {int(connection_id)}")
        with pytest.raises(SinkError, match="Lost connection|not available|gone away") as failure:
            a.select("SELECT 1")
        assert str(failure.value).startswith(f"MySQL 127.0.0.1:{mariadb_server.port}/")
        assert a.select("SELECT 1") == [(1,)]
    finally:
        a.close()
        b.close()


def test_a_paused_server_fails_the_query_instead_of_holding_the_run(mariadb_server,
                                                                    database_name):
    a = store(mariadb_server, database_name, query_timeout=2)
    try:
        a.ensure_jobs_table()
        os.kill(mariadb_server.proc.pid, signal.SIGSTOP)
        try:
            with pytest.raises(SinkError) as failure:
                a.select("SELECT COUNT(*) FROM jobs")
        finally:
            os.kill(mariadb_server.proc.pid, signal.SIGCONT)
        assert str(failure.value).startswith(f"MySQL 127.0.0.1:{mariadb_server.port}/")
    finally:
        a.close()
