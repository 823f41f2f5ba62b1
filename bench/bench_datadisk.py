#!/usr/bin/env python3
"""Benchmark of the hourly datadisk.py run at 25k and 63k series (issue 5).

For each size: private InfluxDB and MariaDB, the simulator (PanDA, CRIC and the MONIT proxy),
one fetch_queues.py cycle to fill "10m"."jobs" and the MySQL table, one warm-up run, then 5
runs of the real datadisk.py for the same hour (each replaces the last). Reported: the median
wall time of a run and where it goes (from its --debug lines), against two references measured
in the same run: the bare start-up of the script (`datadisk.py --help`: interpreter and
imports) and a fetch_queues.py cycle.

With --growth: the same run at 25k, 63k and 250k series (one fetch cycle, one warm-up run,
then 3 runs, 2 at 250k; no start-up reference), appended to the growth table
(bench/growth.py).
"""
import datetime as dt
import re
import signal
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import growth  # noqa: E402

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
    wall, err, _ = growth.run(cmd)
    return wall, err


def measure(series, workdir, runs=RUNS, startup=True):
    influx = devservers.start_influxdb(workdir / f"influx{series}")
    maria = devservers.start_mariadb(workdir / f"maria{series}")
    sim = Simulator(seed=11, series=series)
    sim.start()
    try:
        extra = (f"\n[credentials_monit_grafana]\nurl = {config_urls(sim.url)['monit_url']}\n"
                 "token = bench-token\n")
        config = growth.write_config(workdir / f"c{series}.cfg", influx.url, maria.port,
                                     "monit_jobs", sim.url, workdir / f"data{series}", extra)
        sim.set_time(T0)
        fetch_wall, _ = timed([sys.executable, str(ROOT / "fetch_queues.py"), "--config",
                               str(config), "--timestamp", f"{T0:%Y-%m-%d %H:%M:%S}"])
        stamp = f"{T0 + dt.timedelta(minutes=5):%Y-%m-%d %H:%M:%S}"
        sim.set_time(stamp)
        cmd = [sys.executable, str(ROOT / "datadisk.py"), "--config", str(config),
               "--timestamp", stamp, "--debug"]
        timed(cmd)  # warm-up: the simulator's accounting documents, the 1h policy
        walls, steps, points, rss = [], {name: [] for name, _ in STEPS}, 0, []
        for _ in range(runs):
            wall, err, peak = growth.run(cmd)
            walls.append(wall)
            rss.append(peak)
            for name, pattern in STEPS:
                match = pattern.search(err)
                steps[name].append(float(match.group(1)) if match else float("nan"))
            points = int(re.search(r"InfluxDB: (\d+) points", err).group(1))
        startup = statistics.median(
            timed([sys.executable, str(ROOT / "datadisk.py"), "--help"])[0]
            for _ in range(RUNS)) if startup else None
        return {"series": sim.series_count(T0, 10), "datadisks": points, "runs": runs,
                "wall": statistics.median(walls), "startup": startup, "fetch": fetch_wall,
                "rss": max(rss),
                "steps": {name: statistics.median(v) for name, v in steps.items()}}
    finally:
        sim.stop()
        influx.stop()
        maria.stop()


def main_growth():
    with tempfile.TemporaryDirectory() as tmp:
        for series in growth.SIZES:
            r = measure(series, Path(tmp), runs=growth.runs_at(series), startup=False)
            growth.record("datadisk.py", "one hourly run", r["series"], r["wall"], r["rss"],
                          r["runs"], f"1 fetch cycle, 1 warm-up run; at {r['series'] // 1000}k: "
                          f"{r['datadisks']} datadisks")
            print(f"datadisk.py at {r['series']:,} series: {r['wall']:.2f} s, "
                  f"{r['rss']:.0f} MiB", file=sys.stderr)


def main():
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for series in (25000, 63000):
            results.append(measure(series, Path(tmp)))
    print("## datadisk.py: one hourly run\n")
    print(__doc__.strip().split("\n\n")[1].replace("\n", " ") + "\n")
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
    # Stopped from outside (bench.py's time limit): still stop the servers.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    if growth.wanted(sys.argv[1:]):
        main_growth()
    else:
        main()
