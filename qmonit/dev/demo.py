"""`make demo`: private servers under var/, the simulator, a 6-hour backfill through the real
scripts, and a short summary. `make stop` stops what it started."""
import datetime as dt
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

from ..core import schema
from ..core.cli import progress
from ..core.influxql import quote_string
from ..sinks.influx import Influx
from . import devservers

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
VAR = ROOT / "var"
HOURS = 6
# Slots at the end of the backfill that suspicious.py runs for.
SUSPICIOUS_SLOTS = 6
SEED = 2026


def _pidfile(name):
    return VAR / f"{name}.pid"


def _write_pid(name, pid):
    _pidfile(name).write_text(str(pid))


def stop():
    """Stop every process the demo started (pid files under var/)."""
    stopped = []
    for path in sorted(VAR.glob("*.pid")) if VAR.is_dir() else []:
        try:
            pid = int(path.read_text())
            os.killpg(pid, signal.SIGTERM)
            for _ in range(100):
                os.killpg(pid, 0)
                time.sleep(0.1)
        except (ValueError, ProcessLookupError, PermissionError):
            pass
        stopped.append(path.stem)
        path.unlink(missing_ok=True)
    return stopped


def start_simulator(series):
    port = devservers.free_port()
    log_file = open(VAR / "simulator.log", "ab")
    proc = subprocess.Popen([sys.executable, "-m", "qmonit.dev.simulator", "--port", str(port),
                             "--seed", str(SEED), "--series", str(series)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=log_file,
                            start_new_session=True)
    url = proc.stdout.readline().decode().strip()
    if not url.startswith("http"):
        raise RuntimeError(f"the simulator did not start; see {VAR / 'simulator.log'}")
    _write_pid("simulator", proc.pid)
    return url


def sim_control(url, **settings):
    requests.post(f"{url}/_sim/control", json=settings, timeout=30).raise_for_status()


def write_config(path, influx_url, mysql_port, sim_url):
    from .configfile import config_text
    from .simulator import config_urls
    text = config_text(
        influx_url, mysql_port, "monit_jobs", sim_url, VAR / "data",
        credentials_monit_grafana={"token": "demo-token",
                                   "url": config_urls(sim_url)["monit_url"]},
        # The simulator's benchmark index: HS06_benchmark once datadisk.py has run.
        credentials_elasticsearch={"host": sim_url})
    path.write_text("; Written by `make demo`: the demo's private servers and the simulator.\n"
                    + text)
    return path


def script(name, config, *args):
    """Run one of the real top-level scripts; a failure stops the demo with its message."""
    cmd = [sys.executable, str(ROOT / name), "--config", str(config), *args]
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{name} {' '.join(args)} exited {result.returncode}: "
                           f"{result.stderr.strip()}")
    return result.stdout


def run(series=25000, hours=HOURS, now=None):
    stop()
    shutil.rmtree(VAR, ignore_errors=True)
    VAR.mkdir(parents=True)
    started = time.monotonic()
    influx_server = devservers.start_influxdb(VAR / "influxdb")
    _write_pid("influxdb", influx_server.proc.pid)
    maria = devservers.start_mariadb(VAR / "mariadb")
    _write_pid("mariadb", maria.proc.pid)
    sim_url = start_simulator(series)
    config = write_config(VAR / "config.cfg", influx_server.url, maria.port, sim_url)
    print(f"servers up in {time.monotonic() - started:.1f} s: InfluxDB {influx_server.url}, "
          f"MariaDB 127.0.0.1:{maria.port}, simulator {sim_url}")

    now = now or dt.datetime.now(dt.UTC)
    last = now.replace(minute=now.minute - now.minute % 10, second=0, microsecond=0)
    slots = [last - dt.timedelta(minutes=10 * i) for i in range(hours * 6 - 1, -1, -1)]
    collapse, spike, offline = inject_anomalies(sim_url, last)
    started = time.monotonic()
    for slot in progress(slots, desc="backfill", unit="slot"):
        stamp = slot.strftime("%Y-%m-%d %H:%M:%S")
        sim_control(sim_url, time=stamp)
        script("fetch_queues.py", config, "--timestamp", stamp)
        if slot.minute == 0:
            # As cron would: the hourly job at :05 reads the slot just written.
            script("datadisk.py", config, "--timestamp",
                   f"{slot + dt.timedelta(minutes=5):%Y-%m-%d %H:%M:%S}")
    print(f"backfilled {len(slots)} slots ({hours} h) through fetch_queues.py in "
          f"{time.monotonic() - started:.0f} s; injected a collapse of {collapse} and a "
          f"spike of failed jobs at {spike} in the last slot, and set {offline} offline in "
          f"CRIC an hour before it (an expected drop: its flags are suppressed)")

    stamp = last.strftime("%Y-%m-%d %H:%M:%S")
    for name, args in (("downsample.py", ("--average", "1h")),
                       ("downsample.py", ("--average", "1d"))):
        started = time.monotonic()
        script(name, config, *args, "--timestamp", stamp)
        print(f"ran {name} {' '.join(args)} in {time.monotonic() - started:.1f} s")
    # suspicious.py for the last hour's slots, as cron would have run it: the first run seeds
    # the window sums, the others carry them; the preview then draws averages over time.
    for slot in slots[-SUSPICIOUS_SLOTS:]:
        started = time.monotonic()
        script("suspicious.py", config, "--timestamp", slot.strftime("%Y-%m-%d %H:%M:%S"))
        print(f"ran suspicious.py for {slot:%H:%M} in {time.monotonic() - started:.1f} s")
    influx = Influx(influx_server.url, "monit_jobs")
    preview_path = render_preview(config, influx, last)
    summary(influx, maria, last, sim_url)
    flags(influx, last)
    print(f"\nDashboard preview: {preview_path}")
    print("\nThe servers keep running for you to explore; `make stop` stops them.")
    return 0


def inject_anomalies(sim_url, last):
    """A collapse of running jobs and a spike of failed jobs, from the last slot on, at two of
    the biggest queues, so that suspicious.py has something to flag; and a third big queue
    set offline an hour before the last slot, whose drain is flagged but suppressed."""
    state = requests.get(f"{sim_url}/_sim/state", timeout=30).json()
    sim_control(sim_url, time=last.strftime("%Y-%m-%d %H:%M:%S"))
    stats = requests.get(f"{sim_url}/api/v1/statistics/job_stats_by_site_share_and_resource_"
                         "type?time_window=10", headers={"Accept": "application/json"},
                         timeout=60).json()["data"]
    running = sorted(((sum(c.get("running", 0) for r in labels.values() for c in r.values()), q)
                      for q, labels in stats.items() if q in state["queues"]), reverse=True)
    collapse, spike, offline = running[0][1], running[1][1], running[2][1]
    start = last.strftime("%Y-%m-%d %H:%M:%S")
    sim_control(sim_url, anomalies=[{"queue": collapse, "kind": "collapse", "start": start},
                                    {"queue": spike, "kind": "spike", "start": start}],
                events=[{"kind": "offline", "queue": offline,
                         "start": int((last - dt.timedelta(hours=1)).timestamp()),
                         "end": int((last + dt.timedelta(days=1)).timestamp())}])
    return collapse, spike, offline


def render_preview(config, influx, slot):
    from ..core import config as config_module
    from ..sinks.mysqlstore import MySQLStore
    from . import preview
    cfg = config_module.load(str(config), str(ROOT / "fetch_queues.py"))
    path = VAR / "preview.png"
    with MySQLStore.from_config(cfg) as store:
        preview.render(influx, store, path, slot)
    return path


def flags(influx, slot):
    [series] = influx.query(
        f'SELECT "current", "baseline", "ratio", "score", "slots" FROM '
        f'{schema.SUSPICIOUS.qualified} WHERE time = {int(slot.timestamp())}s GROUP BY *')
    rows = []
    for s in series:
        values = dict(zip(s["columns"], s["values"][0]))
        rows.append((values["score"], s["tags"], values))
    rows.sort(key=lambda r: r[0], reverse=True)
    told = [r for r in rows if r[1].get(schema.SUPPRESSED, "no") == "no"]
    expected = [r for r in rows if r[1].get(schema.SUPPRESSED, "no") != "no"]
    print(f"\nSuspicious now: {len(rows)} flags, {len(told)} to tell an operator; the top ones:")
    for score, tags, v in told[:8]:
        _print_flag(score, tags, v)
    print(f"Expected ({len(expected)} flags suppressed, shown only on request), the top ones:")
    for score, tags, v in expected[:3]:
        _print_flag(score, tags, v)


def _print_flag(score, tags, v):
    where = tags[schema.ATLAS_SITE] if tags[schema.LEVEL] == "site" else tags[schema.PANDA_QUEUE]
    print(f"  {tags[schema.LEVEL]:<5} {where:<30} {tags[schema.JOB_STATUS]:<10} "
          f"{tags[schema.DIRECTION]:<5} {v['current']:>8.0f} vs {v['baseline']:>8.1f}  "
          f"score {score:>7.1f}  slots {v.get('slots') or 1}  "
          f"suppressed {tags.get(schema.SUPPRESSED, 'no')}")


def summary(influx, maria, slot, sim_url):
    at = f"time = {int(slot.timestamp())}s"
    jobs = schema.JOBS.qualified
    [series] = influx.query(f'SELECT count("jobs") FROM {jobs} WHERE {at}')
    points_now = series[0]["values"][0][1] if series else 0
    [total] = influx.query(f'SELECT count("jobs") FROM {jobs}')
    [queues] = influx.query(f'SHOW TAG VALUES FROM {jobs} WITH KEY = "{schema.PANDA_QUEUE}"')
    [top] = influx.query(
        f'SELECT sum("jobs") AS running FROM {jobs} WHERE {at} AND '
        f'"{schema.JOB_STATUS}" = {quote_string("running")} GROUP BY "{schema.ATLAS_SITE}"')
    ranked = sorted(((s["values"][0][1], s["tags"][schema.ATLAS_SITE]) for s in top),
                    reverse=True)[:5]
    print(f"\nQMonit demo, slot {slot:%Y-%m-%d %H:%M} UTC")
    print(f"  queues:  {len(queues[0]['values']) if queues else 0}")
    print(f"  series:  {points_now} (points in the last slot)")
    print(f"  points:  {total[0]['values'][0][1] if total else 0} in \"10m\".\"jobs\"")
    print("  top sites by running jobs:")
    for running, site in ranked:
        print(f"    {site:<28} {running:>8}")
    port = influx.url.rsplit(":", 1)[1]
    print("\nQuery them:")
    print(f"  influx -port {port} -database monit_jobs -execute "
          f"'SELECT sum(jobs) FROM \"10m\".\"jobs\" WHERE job_status = '\"'\"'running'\"'\"' "
          f"AND time > now() - 1h GROUP BY atlas_site'")
    print(f"  mariadb -h 127.0.0.1 -P {maria.port} -u {devservers.DB_USER} "
          f"-p{devservers.DB_PASSWORD} monit_jobs -e 'SELECT panda_queue, prod_source, "
          f"resource, running_jobs FROM jobs ORDER BY running_jobs DESC LIMIT 5'")
