#!/usr/bin/env python3
"""`make soak`: a few hundred 10-minute slots of fetch_queues.py against the simulator, with
random faults, then every slot checked against Simulator.expected_stats.

Faults: PanDA 500 / success:false / truncated / hang, CRIC 500, InfluxDB stopped (SIGTERM)
or killed (SIGKILL) for a few slots and restarted, MariaDB paused (SIGSTOP) for a run, runs
SIGKILLed at a random moment, and the hourly jobs (datadisk.py, downsample.py) started beside
the 10-minute one. Each run is a real process with its own data_dir/spool, as under cron.

The check, after a last clean run has replayed the spool:
- lost: a slot a run reported written or kept (exit 0, or "kept in") that is not in InfluxDB
  exactly, or a slot whose time_window does not reach back to the previous slot in InfluxDB
  (its final-state counts would be missing), or a slot written in part;
- duplicated: more points at a slot than the simulator served for it;
- every slot found: its points equal expected_stats(slot, its time_window), count for count.
Exit 0 when lost and duplicated are both 0.

    python bench/soak.py [--slots 300] [--series 1000] [--seed 12] [--markdown]
"""
import argparse
import datetime as dt
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from qmonit.core import schema  # noqa: E402
from qmonit.dev import devservers  # noqa: E402
from qmonit.dev.simulator import Simulator, config_urls  # noqa: E402
from qmonit.sinks.influx import Influx  # noqa: E402

SLOT = dt.timedelta(minutes=10)
PANDA_FAULTS = ("500", "success_false", "truncated", "hang")
# Per slot, independently.
P_PANDA, P_CRIC, P_INFLUX_DOWN, P_MARIADB, P_KILL = 0.08, 0.08, 0.04, 0.04, 0.06
# Every kind at least once, even in a short soak.
FORCED = {3: "panda", 5: "cric", 8: "influx_stop", 15: "influx_kill", 21: "mariadb",
          25: "kill_run", 27: "kill_run"}


def config_text(influx_url, mysql_port, sim_url, data_dir):
    urls = config_urls(sim_url)
    return f"""[credentials]
username = {devservers.DB_USER}
password = {devservers.DB_PASSWORD}
database = soak
[credentials_monit_grafana]
url = {urls['monit_url']}
token = soak-token
[influxdb]
url = {influx_url}
timeout = 5
[mysql]
host = 127.0.0.1
port = {mysql_port}
timeout = 3
query_timeout = 3
[panda]
url = {urls['panda_url']}
timeout = 2
[cric]
pandaqueue_url = {urls['pandaqueue_url']}
site_url = {urls['site_url']}
ddmendpoint_url = {urls['ddmendpoint_url']}
federation_url = {urls['federation_url']}
timeout = 2
[datadisk]
timeout = 2
[paths]
data_dir = {data_dir}
"""


def stamp(moment):
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def start(script, config, moment, *extra):
    return subprocess.Popen(
        [sys.executable, str(ROOT / script), "--config", str(config), "--timestamp",
         stamp(moment), *extra], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


class Soak:
    def __init__(self, args, workdir):
        self.args = args
        self.rnd = random.Random(args.seed)
        self.workdir = Path(workdir)
        self.influx_dir = self.workdir / "influxdb"
        self.influx = devservers.start_influxdb(self.influx_dir)
        self.influx_port = self.influx.port
        self.mariadb = devservers.start_mariadb(self.workdir / "mariadb")
        self.sim = Simulator(seed=args.seed, series=args.series, hang_seconds=4)
        self.sim.start()
        self.config = self.workdir / "soak.cfg"
        self.config.write_text(config_text(self.influx.url, self.mariadb.port, self.sim.url,
                                           self.workdir / "data"))
        self.influx_down_until = -1
        self.faults = {k: 0 for k in ("panda", "cric", "influx_stop", "influx_kill", "mariadb",
                                      "kill_run", "hourly")}
        self.outcome = {}           # slot -> "kept", "failed" or "killed"
        self.spool_peak = 0
        self.unexpected = []        # errors no run should ever print

    def close(self):
        self.sim.stop()
        for server in (self.influx, self.mariadb):
            try:
                os.kill(server.proc.pid, signal.SIGCONT)
            except OSError:
                pass
            server.stop()

    # --- faults -------------------------------------------------------------------------

    def influx_stop(self, kill):
        if kill:
            self.influx.proc.kill()
            self.influx.proc.wait()
        else:
            self.influx.stop()

    def influx_start(self):
        if self.influx.proc.poll() is not None:
            self.influx = devservers.start_influxdb(self.influx_dir, port=self.influx_port)

    # --- one slot -----------------------------------------------------------------------

    def slot(self, i, moment):
        rnd, sim = self.rnd, self.sim
        force = FORCED.get(i)
        sim.clear_faults()
        sim.set_time(moment)
        if i == self.influx_down_until:
            self.influx_start()
        if self.influx.proc.poll() is None and (rnd.random() < P_INFLUX_DOWN
                                                or force in ("influx_stop", "influx_kill")):
            kill = force == "influx_kill" or (force is None and rnd.random() < 0.5)
            self.faults["influx_kill" if kill else "influx_stop"] += 1
            self.influx_stop(kill)
            self.influx_down_until = i + rnd.randint(1, 4)
        panda_fault = rnd.random() < P_PANDA or force == "panda"
        if panda_fault:
            self.faults["panda"] += 1
            sim.set_fault("panda", rnd.choice(PANDA_FAULTS), 1)
        if rnd.random() < P_CRIC or force == "cric":
            self.faults["cric"] += 1
            sim.set_fault("cric", "500")
        paused = rnd.random() < P_MARIADB or force == "mariadb"
        if paused:
            self.faults["mariadb"] += 1
            os.kill(self.mariadb.proc.pid, signal.SIGSTOP)
        hourly = []
        when = moment + dt.timedelta(minutes=rnd.randint(0, 9), seconds=rnd.randint(0, 59))
        if moment.minute == 0:
            # run_1h.sh at :05 and run_downsample_1h.sh at :15 start beside run.sh.
            self.faults["hourly"] += 1
            hourly = [start("datadisk.py", self.config, when),
                      start("downsample.py", self.config, when, "--average", "1h")]
        run = start("fetch_queues.py", self.config, when)
        killed = False
        if rnd.random() < P_KILL or force == "kill_run":
            self.faults["kill_run"] += 1
            time.sleep(rnd.uniform(0.2, 2.5))
            if run.poll() is None:
                run.kill()
                killed = True
        try:
            _, err = run.communicate(timeout=120)
        finally:
            if paused:
                os.kill(self.mariadb.proc.pid, signal.SIGCONT)
        for proc in hourly:
            _, hourly_err = proc.communicate(timeout=300)
            if "error: unexpected" in hourly_err or "Traceback" in hourly_err:
                self.unexpected.append(f"{moment} (hourly): {hourly_err.strip()[:300]}")
        if killed:
            self.outcome[moment] = "killed"
        elif run.returncode == 0 or "kept in" in err:
            self.outcome[moment] = "kept"
        else:
            self.outcome[moment] = "failed"
            if not panda_fault and self.args.verbose:
                print(f"{moment}: {err.strip()}", file=sys.stderr)
        if "error: unexpected" in err or "Traceback" in err:
            self.unexpected.append(f"{moment}: {err.strip()[:300]}")
        spool = self.workdir / "data" / "spool"
        size = sum(p.stat().st_size for p in spool.glob("*")) if spool.is_dir() else 0
        self.spool_peak = max(self.spool_peak, size)

    def run(self):
        slots = self.args.slots
        epoch = int(time.time())
        first = dt.datetime.fromtimestamp(epoch - epoch % 600, dt.UTC) - (slots + 1) * SLOT
        started = time.monotonic()
        for i in range(slots):
            self.slot(i, first + i * SLOT)
            if self.args.verbose and i % 25 == 0:
                print(f"slot {i}/{slots}, {time.monotonic() - started:.0f} s", file=sys.stderr)
        # Faults over; one more slot on healthy servers replays what is left.
        self.sim.clear_faults()
        self.influx_start()
        last = first + slots * SLOT
        self.sim.set_time(last)
        for _ in range(10):
            run = start("fetch_queues.py", self.config, last + dt.timedelta(minutes=1))
            _, err = run.communicate(timeout=600)
            if run.returncode == 0:
                break
        self.outcome[last] = "kept" if run.returncode == 0 else "failed"
        self.elapsed = time.monotonic() - started
        return self.check(first, last)

    # --- the check ----------------------------------------------------------------------

    def check(self, first, last):
        client = Influx(self.influx.url, "soak")
        found = {}
        q = (f'SELECT "jobs", "time_window" FROM {schema.JOBS.qualified} '
             f'WHERE time >= {int(first.timestamp())}s AND time <= {int(last.timestamp())}s '
             'GROUP BY "panda_queue", "prod_source", "resource", "job_status"')
        for series in client.query_chunks(q):
            key = tuple(series["tags"][k] for k in schema.SERIES_KEY)
            for t, jobs, window in series["values"]:
                found.setdefault(t, {})[key] = (jobs, window)
        lost, duplicated, expected_points, found_points, present = [], [], 0, 0, []
        previous = None
        for moment in sorted(self.outcome):
            epoch = int(moment.timestamp())
            points = found.get(epoch)
            if not points:
                if self.outcome[moment] == "kept":
                    lost.append(f"{moment}: reported kept, not in InfluxDB")
                continue
            windows = {w for _, w in points.values()}
            if len(windows) != 1:
                lost.append(f"{moment}: mixed time_window {sorted(windows)}")
                continue
            window = windows.pop()
            expected = {(q, lb, r, s): n
                        for q, ls in self.sim.expected_stats(moment, window).items()
                        for lb, rs in ls.items() for r, ss in rs.items() for s, n in ss.items()}
            got = {k: v[0] for k, v in points.items()}
            expected_points += len(expected)
            found_points += sum(1 for k in got if got[k] == expected.get(k))
            if len(got) > len(expected) or set(got) - set(expected):
                duplicated.append(f"{moment}: {len(got)} points for {len(expected)} series")
            if got != expected:
                lost.append(f"{moment}: {sum(1 for k in expected if got.get(k) != expected[k])}"
                            f" of {len(expected)} points missing or different")
            if previous is not None:
                gap = int((moment - previous).total_seconds() // 60)
                if window < min(gap, 60):
                    lost.append(f"{moment}: time_window {window} min does not reach back to "
                                f"the previous slot {gap} min before")
            previous = moment
            present.append(moment)
        return {"slots": len(self.outcome), "present": len(present),
                "failed": sum(1 for v in self.outcome.values() if v == "failed"),
                "killed": sum(1 for v in self.outcome.values() if v == "killed"),
                "expected_points": expected_points, "found_points": found_points,
                "lost": lost, "duplicated": duplicated, "unexpected": self.unexpected}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--slots", type=int, default=300)
    parser.add_argument("--series", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--markdown", action="store_true", help="print a BENCHMARKS.md section")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="qmonit-soak-") as workdir:
        soak = Soak(args, workdir)
        try:
            result = soak.run()
        finally:
            soak.close()
    faults = ", ".join(f"{k} {v}" for k, v in soak.faults.items())
    print(f"soak: {result['slots']} slots ({args.series} series target, seed {args.seed}) in "
          f"{soak.elapsed:.0f} s; faults: {faults}")
    print(f"slots in InfluxDB {result['present']}, failed at the source {result['failed']}, "
          f"runs SIGKILLed {result['killed']}; points expected {result['expected_points']}, "
          f"found {result['found_points']}; lost {len(result['lost'])}, duplicated "
          f"{len(result['duplicated'])}; unexpected errors {len(result['unexpected'])}; "
          f"spool peak {soak.spool_peak / 1e6:.2f} MB")
    for problem in (result["lost"] + result["duplicated"] + result["unexpected"])[:20]:
        print("  " + problem)
    if args.markdown:
        print(f"\n| slots | in InfluxDB | failed (source) | SIGKILLed | points expected | "
              f"points found | lost | duplicated |\n|---|---|---|---|---|---|---|---|\n"
              f"| {result['slots']} | {result['present']} | {result['failed']} | "
              f"{result['killed']} | {result['expected_points']} | {result['found_points']} | "
              f"{len(result['lost'])} | {len(result['duplicated'])} |\n\nFaults: {faults}.")
    return 0 if not (result["lost"] or result["duplicated"] or result["unexpected"]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
