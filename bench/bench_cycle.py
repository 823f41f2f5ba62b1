#!/usr/bin/env python3
"""Benchmark of the whole 10-minute cycle, `run.sh` (fetch_queues.py then suspicious.py), at
63k series (issue 15).

Private InfluxDB and MariaDB and the simulator. The history is short and built by the cycle
itself: 6 cycles of the real run.sh, one a slot (1 h of 10m slots; the first suspicious.py run
seeds its window sums, the next ones step them), then 3 measured cycles. Reported: the median
wall time of a cycle and its split between fetch_queues.py and suspicious.py (the moment the
second script starts, seen by polling run.sh's children every 20 ms), with the peak RSS of each
as sampled by that polling. With a day of history a steady suspicious.py run also reads the
slots leaving its 6 h, 12 h and 24 h windows from its local store; here those slots are older
than the data, so the figure leaves that small read out.
"""
import datetime as dt
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import growth  # noqa: E402
import psutil  # noqa: E402

from qmonit.dev import devservers  # noqa: E402
from qmonit.dev.simulator import Simulator  # noqa: E402
from qmonit.jobs import transform  # noqa: E402

SERIES = 63000
WARMUP = 6
RUNS = 3
TARGET_S = 15.0
SLOT = dt.timedelta(minutes=10)
POLL_S = 0.02


def cycle(config, slot):
    """One run.sh; (wall, fetch seconds, suspicious seconds, fetch MiB, suspicious MiB)."""
    cmd = [str(ROOT / "run.sh"), "--config", str(config),
           "--timestamp", f"{slot:%Y-%m-%d %H:%M:%S}"]
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    shell = psutil.Process(proc.pid)
    second_at, rss = None, {"fetch_queues.py": 0, "suspicious.py": 0}
    while proc.poll() is None:
        try:
            children = shell.children()
        except psutil.NoSuchProcess:
            break
        for child in children:
            try:
                line = " ".join(child.cmdline())
                peak = child.memory_info().rss
            except psutil.Error:
                continue
            for script in rss:
                if script in line:
                    rss[script] = max(rss[script], peak)
                    if script == "suspicious.py" and second_at is None:
                        second_at = time.perf_counter()
        time.sleep(POLL_S)
    err = proc.stderr.read()
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"run.sh failed (exit {proc.returncode}): {err[-800:]}")
    if second_at is None:
        raise RuntimeError("run.sh did not start suspicious.py")
    fetch = second_at - started
    return (wall, fetch, wall - fetch, rss["fetch_queues.py"] / 2**20,
            rss["suspicious.py"] / 2**20)


def main(series=SERIES):
    if not (ROOT / ".venv" / "bin" / "python").exists():
        print(f"bench_cycle: run.sh needs {ROOT / '.venv'} (make install)", file=sys.stderr)
        return 1
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        influx = devservers.start_influxdb(tmp / "influx")
        maria = devservers.start_mariadb(tmp / "maria")
        sim = Simulator(seed=11, series=series)
        sim.start()
        try:
            config = growth.write_config(tmp / "c.cfg", influx.url, maria.port, "monit_jobs",
                                         sim.url, tmp / "data")
            # The last measured slot is the latest one: inside every retention policy.
            first = transform.slot_of(dt.datetime.now(dt.UTC)) - (WARMUP + RUNS) * SLOT
            warm, measured = [], []
            for k in range(WARMUP + RUNS):
                slot = first + k * SLOT
                sim.set_time(slot)
                (warm if k < WARMUP else measured).append(cycle(config, slot))
            counted = sim.series_count(first, 10)
        finally:
            sim.stop()
            influx.stop()
            maria.stop()
    load_after = os.getloadavg()

    def med(i):
        return statistics.median(c[i] for c in measured)

    print(f"## run.sh: the whole 10-minute cycle at {series // 1000}k series\n")
    print(__doc__.strip().split("\n\n", 1)[1].replace("\n", " ") + "\n")
    print(f"Data: {counted:,} series a slot.\n")
    print("| cycle | wall | fetch_queues.py | suspicious.py | peak RSS fetch | "
          "peak RSS suspicious |")
    print("|---|---:|---:|---:|---:|---:|")
    rows = [("first (suspicious.py seeds)", warm[0]),
            (f"warm-up 2–{WARMUP} (median)",
             tuple(statistics.median(c[i] for c in warm[1:]) for i in range(5))),
            (f"measured (median of {RUNS})", tuple(med(i) for i in range(5)))]
    for label, c in rows:
        print(f"| {label} | {c[0]:.2f} s | {c[1]:.2f} s | {c[2]:.2f} s | {c[3]:.0f} MiB | "
              f"{c[4]:.0f} MiB |")
    ok = med(0) <= TARGET_S
    print(f"\nTarget: the cycle at {series // 1000}k series ≤ {TARGET_S:g} s: "
          f"{'PASS' if ok else 'FAIL'} "
          f"({med(0):.2f} s: fetch {med(1):.2f} s, suspicious {med(2):.2f} s). Load average "
          f"before: {', '.join(f'{x:.2f}' for x in load_before)}; after: "
          f"{', '.join(f'{x:.2f}' for x in load_after)} on {os.cpu_count()} cores.")
    return 0


if __name__ == "__main__":
    # Stopped from outside (bench.py's time limit): still stop the servers.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    # --series N: another size while trying things out; `make bench` measures 63k.
    args = sys.argv[1:]
    sys.exit(main(int(args[1]) if args[:1] == ["--series"] else SERIES))
