#!/usr/bin/env python3
"""Benchmark of the 10-minute fetch cycle at 25k and 63k series (issue 2).

For each size: private InfluxDB and MariaDB, the simulator, one warm-up cycle (it creates
the series), then 5 cycles of the real fetch_queues.py, each a new slot. Reported: median wall
time of a cycle, the writer's points/s (from its --debug line) against the raw line-protocol
ingest rate of the same InfluxDB on the same lines (POSTs of the writer's batch size, 20,000
lines, one after the other; median of 5, measured in between the cycles), and the peak RSS of
the fetch_queues.py process.

With --growth: the same cycle at 25k, 63k and 250k series (one warm-up cycle, then 3 cycles,
2 at 250k), and beside it the raw POSTs of the same lines (the server's own growth), appended
to the growth table (bench/growth.py).
"""
import datetime as dt
import re
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import growth  # noqa: E402
import requests  # noqa: E402

from qmonit.dev import devservers  # noqa: E402
from qmonit.dev.simulator import Simulator  # noqa: E402
from qmonit.jobs import transform  # noqa: E402
from qmonit.sinks.influx import BATCH_LINES  # noqa: E402
from qmonit.sources import cric  # noqa: E402

RUNS = 5
# The raw reference in POSTs of as many lines as the writer's batches: one POST of 63k lines
# can outlast influxd's write timeout on a busy machine, one of 250k its body limit.
RAW_BATCH = BATCH_LINES
# Yesterday's midnight: the slots fall inside the 10m policy whatever day the bench runs.
T0 = (dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
      - dt.timedelta(days=1))
WRITE_LINE = re.compile(r"InfluxDB: (\d+) points in ([\d.]+) s")
# Where a cycle's time goes, from its --debug lines (the growth table's notes).
STEPS = (("PanDA", re.compile(r"PanDA: .* in ([\d.]+) s")),
         ("CRIC", re.compile(r"CRIC: .* in ([\d.]+) s")),
         ("transform", re.compile(r"transform ([\d.]+) s")),
         ("carried sums", re.compile(r"carried the rollup sums .* in ([\d.]+) s")),
         ("InfluxDB write (carry included)", WRITE_LINE),
         ("MySQL", re.compile(r"MySQL: .* in ([\d.]+) s")))


def cycle(config, slot):
    """One fetch_queues.py run; (wall seconds, points, write seconds, peak RSS MiB)."""
    cmd = [sys.executable, str(ROOT / "fetch_queues.py"), "--config", str(config), "--debug",
           "--timestamp", slot.strftime("%Y-%m-%d %H:%M:%S")]
    wall, err, rss = growth.run(cmd)
    points, seconds = WRITE_LINE.search(err).groups()
    steps = {}
    for name, pattern in STEPS:
        match = pattern.search(err)
        steps[name] = float(match.groups()[-1]) if match else float("nan")
    return wall, int(points), float(seconds), rss, steps


def raw_ingest(influx_url, lines, batch=None):
    """Points/s of lines POSTed raw: one POST, or POSTs of batch lines one after the other."""
    batch = batch or len(lines)
    bodies = [("\n".join(lines[i:i + batch]) + "\n").encode()
              for i in range(0, len(lines), batch)]
    started = time.perf_counter()
    for body in bodies:
        r = requests.post(f"{influx_url}/write", params={"db": "monit_jobs", "rp": "10m",
                                                        "precision": "s"}, data=body,
                          timeout=600)
        if r.status_code != 204:
            raise RuntimeError(f"raw POST of {len(lines)} lines: {r.status_code} {r.text}")
    elapsed = time.perf_counter() - started
    return len(lines) / elapsed


def measure(series, workdir, runs=RUNS, batch=RAW_BATCH):
    influx = devservers.start_influxdb(workdir / f"influx{series}")
    maria = devservers.start_mariadb(workdir / f"maria{series}")
    sim = Simulator(seed=11, series=series)
    sim.start()
    try:
        config = growth.write_config(workdir / f"c{series}.cfg", influx.url, maria.port,
                                     "monit_jobs", sim.url, workdir / f"data{series}")
        sim.set_time(T0)
        cycle(config, T0)  # warm-up: database, policies, series, table
        stats = sim.expected_stats(T0, 10)
        queues = cric.queue_metadata(sim.cric_data("pandaqueue"))
        walls, rates, raws, rss, steps = [], [], [], [], []
        n = 0
        for i in range(1, runs + 1):
            slot = T0 + dt.timedelta(minutes=10 * i)
            sim.set_time(slot)
            wall, n, write_s, peak, step = cycle(config, slot)
            walls.append(wall)
            steps.append(step)
            rates.append(n / write_s)
            rss.append(peak)
            # The same lines as a cycle writes, into a slot of their own, as one raw POST.
            raw_slot = slot + dt.timedelta(minutes=5)
            lines = transform.job_lines(stats, queues, {}, raw_slot, 10)
            raws.append(raw_ingest(influx.url, lines, batch))
        return {"series": n, "wall": statistics.median(walls), "rate": statistics.median(rates),
                "raw": statistics.median(raws), "rss": max(rss), "runs": runs,
                "steps": {name: statistics.median(s[name] for s in steps) for name, _ in STEPS}}
    finally:
        sim.stop()
        influx.stop()
        maria.stop()


def main_growth():
    with tempfile.TemporaryDirectory() as tmp:
        for series in growth.SIZES:
            r = measure(series, Path(tmp), runs=growth.runs_at(series))
            split = ", ".join(f"{name} {sec:.2f} s" for name, sec in r["steps"].items())
            growth.record("fetch_queues.py", "one 10-minute cycle", r["series"], r["wall"],
                          r["rss"], r["runs"], "1 warm-up cycle, then one cycle a new slot; "
                          f"at {r['series'] // 1000}k: {split}")
            growth.record("InfluxDB (reference)", "raw POST of a cycle's lines", r["series"],
                          r["series"] / r["raw"], None, r["runs"],
                          f"POSTs of {RAW_BATCH:,} lines after each fetch cycle, into a "
                          "slot of its own")
            print(f"fetch_queues.py at {r['series']:,} series: {r['wall']:.2f} s, "
                  f"{r['rss']:.0f} MiB", file=sys.stderr)


def main():
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for series in (25000, 63000):
            results.append(measure(series, Path(tmp)))
    print("## fetch_queues.py: one 10-minute cycle\n")
    print(__doc__.strip().split("\n\n")[1].replace("\n", " ") + "\n")
    print("| series | cycle wall (median) | writer points/s | raw ingest points/s "
          "| writer / raw | peak RSS |")
    print("|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r['series']:,} | {r['wall']:.2f} s | {r['rate']:,.0f} | {r['raw']:,.0f} | "
              f"{r['rate'] / r['raw']:.0%} | {r['rss']:.0f} MiB |")
    small, large = results
    checks = [
        ("cycle at 25k series ≤ 3 s", small["wall"] <= 3.0),
        ("writer ≥ 70% of raw ingest (25k)", small["rate"] >= 0.7 * small["raw"]),
        ("peak RSS ≤ 300 MB at 63k series", large["rss"] * 1.048576 <= 300),
    ]
    print("\nTargets: " + "; ".join(f"{name}: {'PASS' if ok else 'FAIL'}" for name, ok in checks))


if __name__ == "__main__":
    # Stopped from outside (bench.py's time limit): still stop the servers.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    if growth.wanted(sys.argv[1:]):
        main_growth()
    else:
        main()
