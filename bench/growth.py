"""The growth-table protocol (issue 15), shared by the bench scripts; bench.py renders it.

A bench run with `--growth` measures its script(s) at SIZES series with a short history that
is the same at every size, and appends one JSON object per (script, what, series) to the file
named by QMONIT_BENCH_GROWTH (JSON Lines).
"""
import json
import os
import subprocess
import time

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


def run(cmd, env=None):
    """Run cmd; (wall seconds, stderr text, peak RSS MiB of that process). Raises RuntimeError
    naming the script on a non-zero exit."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=env)
    err = proc.stderr.read()
    # os.wait4 gives this child's own rusage; RUSAGE_CHILDREN would mix several children.
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        name = next((os.path.basename(c) for c in cmd if str(c).endswith((".py", ".sh"))),
                    cmd[0])
        raise RuntimeError(f"{name} failed (exit {proc.returncode}): {err[-800:]}")
    return wall, err, usage.ru_maxrss / 1024


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
