#!/usr/bin/env python3
"""Benchmark of downsample.py at ATLAS scale: 25k series of 10m jobs points over 48 hours.

Starts its own influxd in a temporary directory, fills "10m"."jobs" with the simulator's counts
(qmonit.jobs.transform.job_lines + Influx.write_lines, as fetch_queues.py writes them), then times
the rollups and, as a reference, InfluxDB's own SELECT ... INTO on the same data. Prints only
a Markdown section. Usage: .venv/bin/python bench/bench_downsample.py [--series N]

With --growth, instead: the real downsample.py (a process each run) at 25k, 63k and 250k series
over a short history that is the same at every size (3 hours of 10m slots), appending one JSON
line per (what, series) with the wall time and the process's peak RSS to the file named by
$QMONIT_BENCH_GROWTH (stdout when unset).
"""
import argparse
import datetime as dt
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import growth as growth_protocol  # noqa: E402  (bench/growth.py)

from qmonit.core import schema  # noqa: E402
from qmonit.core.config import Config  # noqa: E402
from qmonit.core.errors import SinkError  # noqa: E402
from qmonit.core.influxql import quote_ident, time_literal  # noqa: E402
from qmonit.dev import devservers  # noqa: E402
from qmonit.dev.simulator import Simulator  # noqa: E402
from qmonit.jobs import downsample, rollups, transform  # noqa: E402
from qmonit.sinks.influx import Influx  # noqa: E402
from qmonit.sources import cric  # noqa: E402

HOUR, DAY = 3600, 86400
# Seconds; "hour" and "backfill" are set in the run from the raw-write reference.
TARGETS = {"day": 3.0, "cron_1h": 3.0, "cron_1d": 6.0}
SERVER_TIMEOUT = 240  # the reference INTO queries are slow; never wait longer than this
SCRIPT = Path(__file__).resolve().parent.parent / "downsample.py"
GROWTH_SIZES = (25000, 63000, 250000)
GROWTH_HOURS = 3


def fill(influx, sim, start, slots, data_dir):
    """The 10m points of slots as fetch_queues.py writes them: carried sums declared, points
    written (two writes at once), sums added, slot after slot."""
    queues = cric.queue_metadata(sim.cric_data("pandaqueue"))
    pledges = cric.federation_pledges(sim.cric_data("federation"), start)

    def write(lines):
        for attempt in range(8):
            try:
                influx.write_lines(schema.RP_10M, lines)
                break
            except SinkError:  # influxd's own write timeout on a busy host: write again
                if attempt == 7:
                    raise
                time.sleep(2 + 2 * attempt)
        return len(lines)

    pending, points = [], 0
    with ThreadPoolExecutor(2) as pool:
        for i in range(slots):
            slot = start + i * transform.SLOT
            stats = sim.expected_stats(slot)
            lines = transform.job_lines(stats, queues, pledges, slot, 10)
            carry = downsample.SlotCarry(data_dir, slot.timestamp(), lines)
            carry.declare()
            pending.append(pool.submit(write, lines))
            carry.add(transform.job_points(stats, queues, pledges, slot, 10))
            while len(pending) > 2:
                points += pending.pop(0).result()
        return points + sum(f.result() for f in pending)


def timed(fn):
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def at(epoch):
    return dt.datetime.fromtimestamp(epoch, dt.UTC)


def server_queries(start, stop, into):
    """The reference: InfluxDB computing the rollups itself (exact, but slow at this scale)."""
    q = quote_ident
    where = f"time >= {time_literal(start)} AND time < {time_literal(stop)}"
    means = ", ".join(f"mean({q(f)}) AS {q(f)}" for f in schema.JOBS_MEAN_FIELDS)
    hourly = (f'SELECT sum("jobs") / count("jobs") AS "jobs", sum("jobs") AS "jobs_sum", '
              f'count("jobs") AS "samples", {means} INTO "1h".{q(into)} FROM "10m"."jobs" '
              f"WHERE {where} GROUP BY time(1h), * fill(none)")
    inner = ['"jobs_sum"', '"samples"']
    outer = ['sum("jobs_sum") AS "jobs_sum"', 'sum("samples") AS "samples"',
             'sum("jobs_sum") / sum("samples") AS "jobs"']
    for f in schema.JOBS_MEAN_FIELDS:
        inner += [f'{q(f)} * "samples" AS {q("w_" + f)}',
                  f'{q(f)} * 0 + "samples" AS {q("n_" + f)}']
        outer.append(f'sum({q("w_" + f)}) / sum({q("n_" + f)}) AS {q(f)}')
    daily = (f"SELECT {', '.join(outer)} INTO \"1d\".{q(into)} FROM (SELECT {', '.join(inner)} "
             f'FROM "1h"."jobs" WHERE {where} GROUP BY *) WHERE {where} '
             f"GROUP BY time(1d), * fill(none)")
    return hourly, daily


def forget_rollups(influx, data_dir):
    """Back to the state before the first backfill: the 1h and 1d rollups' shards dropped,
    and what downsample.py keeps of them (books, the days' carried sums, day sums) removed.
    The 1h carried sums of the 10m slots stay."""
    for series in influx.query("SHOW SHARDS")[0]:
        for row in series.get("values") or ():
            shard = dict(zip(series["columns"], row))
            if shard["database"] == "bench" and shard["retention_policy"] in ("1h", "1d"):
                influx.query(f"DROP SHARD {int(shard['id'])}")
    paths = [data_dir / "state" / f"rollups_{name}.json" for name in ("1h", "1d")]
    paths += list((data_dir / "cache" / "rollups").glob("1d-*"))
    for path in paths:
        path.unlink(missing_ok=True)
    subprocess.run(["rm", "-rf", str(data_dir / "cache" / "day_sums")], check=True)


def max_difference(influx, rp, ours, theirs, start, stop):
    """Largest relative difference between two rollups of [start, stop), and rows compared."""
    where = f"time >= {time_literal(start)} AND time < {time_literal(stop)}"

    def read(name):
        out = {}
        for series in influx.query_chunks(f'SELECT * FROM {quote_ident(rp)}.{quote_ident(name)} '
                                          f"WHERE {where} GROUP BY *"):
            for row in series["values"]:
                key = (tuple(sorted((k, v) for k, v in series["tags"].items() if v)), row[0])
                out[key] = dict(zip(series["columns"][1:], row[1:]))
        return out

    a, b = read(ours), read(theirs)
    if set(a) != set(b):
        return float("inf"), len(a)
    worst = 0.0
    for key, fields in a.items():
        for name, value in fields.items():
            other = b[key].get(name)
            if value is None or other is None:
                if value != other:
                    return float("inf"), len(a)
                continue
            worst = max(worst, abs(value - other) / max(abs(value), abs(other), 1e-300))
    return worst, len(a)


def run_script(config_path, *args):
    """Run downsample.py once as operators do; (wall seconds, peak RSS MiB of that process)."""
    wall, _, rss = growth_protocol.run([sys.executable, str(SCRIPT), "--config",
                                        str(config_path), *args])
    return wall, rss


def stamp(epoch):
    return at(epoch).strftime("%Y-%m-%d %H:%M:%S")


def growth(series, tmp):
    """downsample.py at one size over GROWTH_HOURS hours of 10m slots: the 1h rollup of one
    hour (carried sums) and the cron 1h run."""
    wall = int(time.time())
    end = wall - wall % HOUR        # the slots of the last GROWTH_HOURS complete hours
    start = end - GROWTH_HOURS * HOUR
    runs = 3    # each run is short (~15 s at 250k); one run at 250k moved the ratio by 0.4
    workdir = Path(tmp) / f"g{series}"
    server = devservers.start_influxdb(workdir / "influxdb")
    try:
        text = (f"[credentials]\ndatabase = bench\n[influxdb]\nurl = {server.url}\n"
                f"timeout = 900\n[paths]\ndata_dir = {workdir}/data\n"
                # The look-back of the history: the hours the cron run checks all have data,
                # as after the first two days in production.
                f"[downsample]\nlookback_1h = {GROWTH_HOURS}h\n")
        config_path = workdir / "config.cfg"
        config_path.write_text(text)
        config = Config.from_string(text, path=config_path, base_dir=workdir)
        Influx.from_config(config).ensure_database()
        # Filled without a spool: at 250k series on a busy host influxd's 10 s write timeout
        # can strike, and replaying whole slots on every later write only adds to the load.
        influx = Influx(server.url, "bench", timeout=900)
        sim = Simulator(seed=1, series=series)
        filled = time.perf_counter()
        points = fill(influx, sim, at(start), GROWTH_HOURS * 6, config.data_dir())
        filled = time.perf_counter() - filled
        counted = points // (GROWTH_HOURS * 6)
        cron = ("--average", "1h", "--timestamp", stamp(end + 900))
        run_script(config_path, *cron)      # first run: rolls up every hour (not measured)
        hour = end - 2 * HOUR

        def settled(*args):
            # influxd compacts the fill and the last run's points for a while after; at 250k
            # that overlapped the next run and added up to 12 s to it.
            growth_protocol.settle(server.proc.pid, limit=60)
            return run_script(config_path, *args)

        measured = {
            "1h rollup of one hour": [settled("--average", "1h", "--start", stamp(hour),
                                              "--end", stamp(hour + HOUR),
                                              "--timestamp", stamp(end + 900))
                                      for _ in range(runs)],
            "cron 1h run": [settled(*cron) for _ in range(runs)],
        }
    finally:
        server.stop()
    note = (f"{GROWTH_HOURS} h of 10m history ({points:,} points filled in {filled:.0f} s), "
            f"lookback_1h = {GROWTH_HOURS}h; "
            "a process each run, interpreter start-up included, each after influxd settled")
    for what, results in measured.items():
        growth_protocol.record("downsample.py", what, counted,
                               statistics.median(w for w, _ in results),
                               max(r for _, r in results), len(results), note)


def main_growth(sizes):
    with tempfile.TemporaryDirectory(prefix="bench_downsample_growth_") as tmp:
        for series in sizes:
            started = time.perf_counter()
            growth(series, tmp)
            print(f"bench_downsample --growth: {series} series in "
                  f"{time.perf_counter() - started:.0f} s, load average "
                  f"{os.getloadavg()[0]:.1f}", file=sys.stderr, flush=True)
            # Each size's influxd and data go before the next size starts.
            for path in Path(tmp).iterdir():
                subprocess.run(["rm", "-rf", str(path)], check=False)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=25000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--growth", action="store_true",
                        help="measure at 25k, 63k and 250k series instead (JSON lines)")
    parser.add_argument("--sizes", type=int, nargs="+", default=list(GROWTH_SIZES),
                        help="with --growth: the series counts (default: %(default)s)")
    args = parser.parse_args()
    if args.growth:
        main_growth(args.sizes)
        return
    load_before = os.getloadavg()[0]
    wall = int(time.time())
    today = wall - wall % DAY
    start = today - 2 * DAY
    with tempfile.TemporaryDirectory(prefix="bench_downsample_") as tmp:
        server = devservers.start_influxdb(Path(tmp) / "influxdb")
        try:
            config = Config.from_string(
                f"[credentials]\ndatabase = bench\n[influxdb]\nurl = {server.url}\n"
                f"timeout = 900\n[paths]\ndata_dir = {tmp}/data\n",
                path=Path(tmp) / "config.cfg", base_dir=tmp)
            influx = Influx.from_config(config)
            influx.ensure_database()
            sim = Simulator(seed=1, series=args.series)
            started = time.perf_counter()
            points = fill(influx, sim, at(start), 2 * 144, config.data_dir())
            fill_s = time.perf_counter() - started
            series = points // 288

            def hourly(now, **kw):
                return lambda: downsample.run(config, at(now), "1h", influx=influx, **kw)

            def daily(now, **kw):
                return lambda: downsample.run(config, at(now), "1d", influx=influx, **kw)

            # The floor, same run: one slot's 10m lines (series lines, 11 tags) written raw,
            # twice before each backfill and three times after the hour rows.
            queues = cric.queue_metadata(sim.cric_data("pandaqueue"))
            pledges = cric.federation_pledges(sim.cric_data("federation"), at(start))
            ingest = []

            def reference(count):
                for _ in range(count):
                    slot = at(today - DAY + len(ingest) * 600)
                    lines = [line.replace("jobs,", "ingest_ref,", 1) for line in
                             transform.job_lines(sim.expected_stats(slot), queues, pledges,
                                                 slot, 10)]
                    ingest.append(timed(lambda lines=lines: influx.write_lines(schema.RP_10M,
                                                                            lines)))

            rows = []
            # Cron at 00:15 with an empty 1h rollup: all 48 hours are missing. Three times,
            # each from the same state (the rollups and their books dropped in between).
            backfills = []
            for k in range(args.repeat):
                if k:
                    forget_rollups(influx, config.data_dir())
                reference(2)
                backfills.append(timed(hourly(today + 900)))
            rows.append(("backfill: 48 missing hours (one cron run)", backfills, "backfill"))
            hour = today - DAY + 12 * HOUR
            one_hour = [timed(hourly(today + 900, start=at(hour), end=at(hour + HOUR)))
                        for _ in range(args.repeat)]
            rows.append(("1h rollup of one hour (--start/--end)", one_hour, "hour"))
            cron_1h = [timed(hourly(today + 900)) for _ in range(args.repeat)]
            rows.append(("cron 1h run: check 48 h + write the last hour", cron_1h, "cron_1h"))
            one_day = [timed(daily(today + 360, start=at(today - DAY), end=at(today)))
                       for _ in range(args.repeat)]
            rows.append(("1d rollup of one day (--start/--end)", one_day, "day"))
            cron_1d = [timed(daily(today + 360)) for _ in range(args.repeat)]
            rows.append(("cron 1d run: 1h check, 14 d check, write the last day", cron_1d,
                         "cron_1d"))
            # The fallback: an hour whose carried sums are gone is read from the raw points.
            carried = rollups.Carried(config.data_dir(), "1h")
            raw_hour = []
            for k in range(1, args.repeat + 1):
                carried.drop_sums(hour - k * HOUR)
                raw_hour.append(timed(hourly(today + 900, start=at(hour - k * HOUR),
                                             end=at(hour - (k - 1) * HOUR))))
            rows.append(("1h rollup of one hour, raw read (no carried sums)", raw_hour, None))

            reference(args.repeat)
            write_s = statistics.median(ingest)
            goals = {"hour": 2 * write_s, "backfill": 1.5 * 48 * write_s}

            # The reference, in the same run: the same hour and day computed by InfluxDB.
            slow = Influx(server.url, "bench", timeout=SERVER_TIMEOUT)
            into_hour, _ = server_queries(hour, hour + HOUR, "jobs_into")
            server_hour = timed(lambda: slow.query(into_hour))
            difference, compared = max_difference(influx, "1h", "jobs", "jobs_into",
                                                  hour, hour + HOUR)
            _, into_day = server_queries(today - DAY, today, "jobs_into")
            try:
                server_day = timed(lambda: slow.query(into_day))
                day_difference = max_difference(influx, "1d", "jobs", "jobs_into",
                                                 today - DAY, today)[0]
            except SinkError:
                server_day, day_difference = None, None
        finally:
            server.stop()
    load_after = os.getloadavg()[0]

    targets = dict(TARGETS, **goals)

    def verdict(values, target):
        if target is None:
            return "", ""
        goal = targets[target]
        return f"≤ {goal:.2f} s", ("PASS" if statistics.median(values) <= goal else "FAIL")

    print("## downsample.py: 10m → 1h → 1d rollups\n")
    print(f"About {series} series (simulator, seed 1) × 288 ten-minute slots = {points} points in "
          f'"10m"."jobs", written in {fill_s:.0f} s ({points / fill_s:,.0f} points/s) with '
          "transform.job_lines + Influx.write_lines, carrying the hour sums as fetch_queues.py "
          "does (downsample.SlotCarry). One influxd 1.6 (devservers), "
          f"{os.cpu_count()} CPUs, load average {load_before:.1f} before and {load_after:.1f} "
          "after (the host is shared: absolute times move with it, ratios less).\n")
    print(f"Reference (the floor), same run: {series:,} ten-minute lines written raw with one "
          f"Influx.write_lines: {write_s:.2f} s (median of {len(ingest)}: two before each "
          f"backfill, {args.repeat} after the 1d rows; {series / write_s:,.0f} points/s). "
          f"Targets from it: an hour ≤ 2× that, the backfill ≤ 1.5× 48 hours of points at that "
          f"rate ({48 * write_s:.1f} s). Each backfill against the two writes just before it: "
          + ", ".join(f"{b:.1f} s vs {48 * statistics.median(ingest[2 * k:2 * k + 2]):.1f} s "
                      f"({b / (48 * statistics.median(ingest[2 * k:2 * k + 2])):.2f}×)"
                      for k, b in enumerate(backfills)) + ".\n")
    print("| operation | median s | runs | target | result |")
    print("|---|---:|---:|---|---|")
    for name, values, target in rows:
        goal, result = verdict(values, target)
        print(f"| {name} | {statistics.median(values):.2f} | {len(values)} | {goal} | {result} |")
    print()
    print("Reference, same data and run: InfluxDB's own `SELECT … INTO … GROUP BY time(…), *` "
          "(what continuous queries do; 1d through a subquery for the weighted means).\n")
    print("| operation | s | ratio to downsample.py |")
    print("|---|---:|---:|")
    print(f"| server-side INTO, one hour | {server_hour:.2f} | "
          f"{server_hour / statistics.median(one_hour):.1f}× |")
    if server_day is None:
        print(f"| server-side INTO, one day | > {SERVER_TIMEOUT} (gave up) | "
              f"> {SERVER_TIMEOUT / statistics.median(one_day):.0f}× |")
    else:
        print(f"| server-side INTO, one day | {server_day:.2f} | "
              f"{server_day / statistics.median(one_day):.1f}× |")
    print()
    day_text = ("not compared (gave up)" if day_difference is None
                else f"{day_difference:.1e}")
    print(f"Exactness at scale: largest relative difference between downsample.py and the "
          f"server-side rollup over {compared} series of the hour: {difference:.1e}; of the "
          f"day: {day_text} (both built from the carried sums).")


if __name__ == "__main__":
    main()
