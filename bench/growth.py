"""The growth-table protocol (issue 15), shared by the bench scripts; bench.py renders it.

A bench run with `--growth` measures its script(s) at SIZES series with a short history that
is the same at every size, and appends one JSON object per (script, what, series) to the file
named by QMONIT_BENCH_GROWTH (JSON Lines).
"""
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SIZES = (25000, 63000, 250000)
ENV = "QMONIT_BENCH_GROWTH"


def write_config(path, influx_url, mysql_port, database, sim_url, data_dir, extra=""):
    """A config for the private servers and the simulator with the default timeouts (the
    tests' 5 s for PanDA and CRIC is too short for a 29 MB CRIC document at 250k series on a
    busy machine)."""
    from qmonit.dev.configfile import config_text  # here: bench.py has no qmonit on its path
    path.write_text(config_text(influx_url, mysql_port, database, sim_url, data_dir) + extra)
    return path


def wanted(argv):
    return "--growth" in argv


def runs_at(series, small=3, large=2):
    """Fewer repetitions at 250k: one warm-up + 2 runs is enough there."""
    return large if series >= 200000 else small


# A process keeps, as its peak RSS, the memory it had before exec: a child of this (large)
# bench process would report the bench's own memory. A small launcher in between runs the
# script and writes the script's own peak (its RUSAGE_CHILDREN) to the file named first.
LAUNCHER = ("import resource, subprocess, sys; code = subprocess.call(sys.argv[2:]); "
            "open(sys.argv[1], 'w').write(str(resource.getrusage("
            "resource.RUSAGE_CHILDREN).ru_maxrss)); sys.exit(code)")


def run(cmd, env=None):
    """Run cmd; (wall seconds, stderr text, peak RSS MiB of that process alone). Raises
    RuntimeError naming the script on a non-zero exit."""
    with tempfile.NamedTemporaryFile(prefix="bench_rss_") as peak:
        started = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", LAUNCHER, peak.name, *map(str, cmd)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                              env=env)
        wall = time.perf_counter() - started
        kib = int(Path(peak.name).read_text() or 0)
    if proc.returncode != 0:
        name = next((os.path.basename(str(c)) for c in cmd if str(c).endswith((".py", ".sh"))),
                    cmd[0])
        raise RuntimeError(f"{name} failed (exit {proc.returncode}): {proc.stderr[-800:]}")
    return wall, proc.stderr, kib / 1024


def settle(pid, limit=240):
    """Wait until influxd (pid) has finished compacting what was just written: CPU < 5% for
    three 2-second looks in a row, or limit seconds. Every size is measured so, so that a
    large fill's compaction is not counted against the script that runs after it."""
    import psutil
    process = psutil.Process(pid)
    deadline = time.monotonic() + limit
    quiet = 0
    while time.monotonic() < deadline and quiet < 3:
        quiet = quiet + 1 if process.cpu_percent(interval=2) < 5 else 0


def record(script, what, series, wall_s, rss_mib, runs, note=""):
    """Append one measurement to the QMONIT_BENCH_GROWTH file (or print it when unset).
    rss_mib None: not a script of the project (a reference), no RSS limit."""
    line = json.dumps({"script": script, "what": what, "series": int(series),
                       "wall_s": round(wall_s, 3),
                       "rss_mib": None if rss_mib is None else round(rss_mib, 1),
                       "runs": runs, "note": note})
    path = os.environ.get(ENV)
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(line + "\n")
    else:
        print(line)
