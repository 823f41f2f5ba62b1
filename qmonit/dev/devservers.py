"""Private InfluxDB and MariaDB servers on loopback, for tests, the demo and the benchmark.

Each server lives in its own directory, listens on 127.0.0.1 only, and is stopped by stop().
"""
import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import requests

log = logging.getLogger(__name__)

DB_USER = "qmonit"
DB_PASSWORD = "qmonit"


def free_port():
    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(check, what, timeout, proc, logfile):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}; see {logfile}")
        if check():
            return
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not start within {timeout} s; see {logfile}")


class Server:
    def __init__(self, name, proc, directory, port, logfile):
        self.name = name
        self.proc = proc
        self.directory = Path(directory)
        self.port = port
        self.logfile = logfile

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class InfluxServer(Server):
    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"


class MariaServer(Server):
    host = "127.0.0.1"
    user = DB_USER
    password = DB_PASSWORD

    @property
    def socket(self):
        return str(self.directory / "mysqld.sock")


def start_influxdb(directory, port=None, timeout=60):
    """Start influxd with its own config under directory; returns an InfluxServer."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    rpc_port = free_port()
    conf = directory / "influxdb.conf"
    conf.write_text(f"""reporting-disabled = true
bind-address = "127.0.0.1:{rpc_port}"
[meta]
  dir = "{directory}/meta"
[data]
  dir = "{directory}/data"
  wal-dir = "{directory}/wal"
  query-log-enabled = false
  max-values-per-tag = 0
[http]
  bind-address = "127.0.0.1:{port}"
  log-enabled = false
  max-body-size = 0
[monitor]
  store-enabled = false
[continuous_queries]
  enabled = false
""")
    logfile = directory / "influxd.log"
    with open(logfile, "ab") as out:
        influxd = shutil.which("influxd") or "/usr/bin/influxd"
        proc = subprocess.Popen([influxd, "-config", str(conf)],
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    server = InfluxServer("influxdb", proc, directory, port, logfile)

    def ping():
        try:
            return requests.get(f"{server.url}/ping", timeout=1).status_code == 204
        except requests.RequestException:
            return False

    try:
        _wait(ping, "influxd", timeout, proc, logfile)
    except Exception:
        server.stop()
        raise
    log.debug("influxd up on port %d", port)
    return server


def start_mariadb(directory, port=None, timeout=60, extra_args=()):
    """Initialise (once) and start mariadbd under directory, with user qmonit/qmonit over TCP.

    extra_args: more mariadbd options (the TLS tests pass --ssl-cert and friends)."""
    import mysql.connector

    directory = Path(directory)
    datadir = directory / "data"
    port = port or free_port()
    logfile = directory / "mariadbd.log"
    fresh = not (datadir / "mysql").is_dir()
    if fresh:
        datadir.mkdir(parents=True, exist_ok=True)
        command = ["mariadb-install-db", "--no-defaults", f"--datadir={datadir}",
                   "--auth-root-authentication-method=normal", "--skip-test-db",
                   "--user=" + _user()]
        # Seen once here with two installs at the same moment: it failed, and worked again.
        for _attempt in (1, 2):
            with open(logfile, "ab") as err:
                done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=err)
            if done.returncode == 0:
                break
            shutil.rmtree(datadir, ignore_errors=True)
            datadir.mkdir(parents=True)
        else:
            raise RuntimeError(f"mariadb-install-db failed twice; see {logfile}")
    with open(logfile, "ab") as out:
        proc = subprocess.Popen(
            [_mariadbd(), "--no-defaults", f"--datadir={datadir}",
             f"--socket={directory / 'mysqld.sock'}", f"--port={port}",
             "--bind-address=127.0.0.1", f"--pid-file={directory / 'mysqld.pid'}",
             "--skip-name-resolve", "--innodb-buffer-pool-size=256M",
             "--innodb-flush-log-at-trx-commit=2", "--user=" + _user(), *extra_args],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    server = MariaServer("mariadb", proc, directory, port, logfile)

    def connectable():
        try:
            mysql.connector.connect(unix_socket=server.socket, user="root", password="").close()
            return True
        except mysql.connector.Error:
            return False

    try:
        _wait(connectable, "mariadbd", timeout, proc, logfile)
        if fresh:
            conn = mysql.connector.connect(unix_socket=server.socket, user="root", password="")
            cur = conn.cursor()
            cur.execute(f"CREATE USER IF NOT EXISTS '{DB_USER}'@'%' IDENTIFIED BY '{DB_PASSWORD}'")
            cur.execute(f"GRANT ALL PRIVILEGES ON *.* TO '{DB_USER}'@'%'")
            conn.close()
    except Exception:
        server.stop()
        raise
    log.debug("mariadbd up on port %d", port)
    return server


def _user():
    import pwd
    return pwd.getpwuid(os.getuid()).pw_name


def _mariadbd():
    for name in ("mariadbd", "mysqld"):
        sbin = f"/usr/sbin/{name}"
        found = shutil.which(name) or (sbin if os.path.exists(sbin) else None)
        if found:
            return found
    raise RuntimeError("mariadbd not found: install mariadb-server")
