#!/usr/bin/env python3
"""Benchmark of the hourly datadisk.py run at 25k and 63k series (issue 5).

For each size: private InfluxDB and MariaDB, the simulator (PanDA, CRIC and the MONIT proxy),
one fetch_queues.py cycle to fill "10m"."jobs" and the MySQL table, one warm-up run, then 5
runs of the real datadisk.py for the same hour (each replaces the last). Reported: the median
wall time of a run and where it goes (from its --debug lines), against two references measured
in the same run: the bare start-up of the script (`datadisk.py --help`: interpreter and
imports) and a fetch_queues.py cycle.
"""
import datetime as dt
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from conftest import write_config  # noqa: E402

from qmonit.dev import devservers  # noqa: E402
from qmonit.dev.simulator import Simulator, config_urls  # noqa: E402

RUNS = 5
# An hour near now: inside every retention policy whatever day the bench runs.
T0 = (dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0)
      - dt.timedelta(hours=3))
TARGET_S = 5.0
STEPS = (("CRIC", re.compile(r"CRIC: .* in ([\d.]+) s")),
         ("jobs read", re.compile(r"InfluxDB: slot .* in ([\d.]+) s")),
         ("MONIT", re.compile(r"MONIT: .* in ([\d.]+) s")),
         ("transform", re.compile(r"MySQL queue rows; ([\d.]+) s")),
         ("points write", re.compile(r"InfluxDB: \d+ points in ([\d.]+) s")),
         ("MySQL", re.compile(r"MySQL: \d+ rows changed in ([\d.]+) s")))


def timed(cmd):
    started = time.perf_counter()
    result = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[1:3])} failed: {result.stderr[-500:]}")
    return wall, result.stderr


def measure(series, workdir):
    influx = devservers.start_influxdb(workdir / f"influx{series}")
    maria = devservers.start_mariadb(workdir / f"maria{series}")
    sim = Simulator(seed=11, series=series)
    sim.start()
    try:
        extra = (f"\n[credentials_monit_grafana]\nurl = {config_urls(sim.url)['monit_url']}\n"
                 "token = bench-token\n")
        config = write_config(workdir / f"c{series}.cfg", influx.url, maria.port, "monit_jobs",
                              sim.url, workdir / f"data{series}", extra)
        sim.set_time(T0)
        fetch_wall, _ = timed([sys.executable, str(ROOT / "fetch_queues.py"), "--config",
                               str(config), "--timestamp", f"{T0:%Y-%m-%d %H:%M:%S}"])
        stamp = f"{T0 + dt.timedelta(minutes=5):%Y-%m-%d %H:%M:%S}"
        sim.set_time(stamp)
        cmd = [sys.executable, str(ROOT / "datadisk.py"), "--config", str(config),
               "--timestamp", stamp, "--debug"]
        timed(cmd)  # warm-up: the simulator's accounting documents, the 1h policy
        walls, steps, points = [], {name: [] for name, _ in STEPS}, 0
        for _ in range(RUNS):
            wall, err = timed(cmd)
            walls.append(wall)
            for name, pattern in STEPS:
                match = pattern.search(err)
                steps[name].append(float(match.group(1)) if match else float("nan"))
            points = int(re.search(r"InfluxDB: (\d+) points", err).group(1))
        startup = statistics.median(
            timed([sys.executable, str(ROOT / "datadisk.py"), "--help"])[0] for _ in range(RUNS))
        return {"series": sim.series_count(T0, 10), "datadisks": points,
                "wall": statistics.median(walls), "startup": startup, "fetch": fetch_wall,
                "steps": {name: statistics.median(v) for name, v in steps.items()}}
    finally:
        sim.stop()
        influx.stop()
        maria.stop()


def main():
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for series in (25000, 63000):
            results.append(measure(series, Path(tmp)))
    print("## datadisk.py: one hourly run\n")
    print(__doc__.strip().split("\n\n", 1)[1].replace("\n", " ") + "\n")
    print("| series | datadisks | run wall (median of 5) | start-up alone | run / start-up | "
          "fetch_queues.py cycle | run / fetch cycle |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r['series']:,} | {r['datadisks']} | {r['wall']:.2f} s | {r['startup']:.2f} s "
              f"| {r['wall'] / r['startup']:.1f}× | {r['fetch']:.2f} s | "
              f"{r['wall'] / r['fetch']:.2f}× |")
    print("\nWhere a run's time goes (medians, seconds; the rest is start-up):\n")
    print("| series | " + " | ".join(name for name, _ in STEPS) + " |")
    print("|---:|" + "---:|" * len(STEPS))
    for r in results:
        print(f"| {r['series']:,} | " + " | ".join(f"{r['steps'][name]:.2f}"
                                                  for name, _ in STEPS) + " |")
    small = results[0]
    verdict = "PASS" if small["wall"] <= TARGET_S else "FAIL"
    print(f"\nTarget: a run at 25k series ≤ {TARGET_S:g} s: {verdict} "
          f"({small['wall']:.2f} s).")


if __name__ == "__main__":
    main()
