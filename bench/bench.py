#!/usr/bin/env python3
"""`make bench`: run every bench/bench_*.py and write their sections into BENCHMARKS.md.

Each benchmark starts its own private servers and simulator and prints one Markdown section.
Then each runs again with --growth and appends its figures at 25k, 63k and 250k series to a
JSON Lines file (bench/growth.py); from them comes the section "How the cost grows".
Run it on a quiet machine: the figures are wall-clock medians.
"""
import datetime as dt
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import growth  # noqa: E402

# Order: the fetch cycle first, then the jobs built on its data.
ORDER = ["bench_fetch", "bench_downsample", "bench_suspicious", "bench_datadisk", "bench_cycle"]
# The whole `make bench` stays under an hour: each bench gets at most its own limit and never
# more than what is left of TOTAL_S.
TOTAL_S = 57 * 60
LIMIT_S = {"bench_downsample": 20 * 60, "bench_suspicious": 20 * 60}
DEFAULT_LIMIT_S = 10 * 60
GROWTH_LIMIT_S = 10 * 60
# suspicious.py at 250k fills 3 h of 10m points and 3 days of 1d first (~5 min);
# downsample.py waits for influxd to settle before each of its 18 runs.
GROWTH_LIMIT_EXTRA_S = {"bench_suspicious": 20 * 60, "bench_downsample": 17 * 60}
# Issue 15: time per 1k series may grow at most 1.3x from 25k to 250k; RSS <= 1 GB at 250k.
MAX_GROWTH = 1.3
MAX_RSS_BYTES = 1e9
# A script whose largest size measured is below this has no verdict (250k missing).
LARGEST_MIN = 200000
# Benches left out of the growth table on purpose, and why.
NO_GROWTH = {"bench_cycle": "run.sh's two scripts are in the table from bench_fetch and "
                            "bench_suspicious"}


def main(argv=None):
    names = [p.stem for p in sorted(HERE.glob("bench_*.py"))]
    names.sort(key=lambda n: ORDER.index(n) if n in ORDER else len(ORDER))
    if argv or sys.argv[1:]:
        wanted = set(argv or sys.argv[1:])
        unknown = wanted - set(names) - {n.removeprefix("bench_") for n in names}
        if unknown:
            # An unknown name must not rewrite BENCHMARKS.md with no section at all.
            print(f"usage: bench.py [NAME ...]; unknown: {', '.join(sorted(unknown))}; "
                  f"names: {', '.join(n.removeprefix('bench_') for n in names)}",
                  file=sys.stderr)
            return 2
        names = [n for n in names if n in wanted or n.removeprefix("bench_") in wanted]
    sections, failed = [], []
    started_all = time.monotonic()
    load_before = os.getloadavg()

    def left():
        return TOTAL_S - (time.monotonic() - started_all)

    for name in names:
        limit = min(LIMIT_S.get(name, DEFAULT_LIMIT_S), left())
        if limit < 60:
            failed.append(name)
            sections.append(f"## {name}\n\nNot run: the hour of `make bench` was used up.")
            continue
        print(f"running {name} ...", file=sys.stderr, flush=True)
        started = time.monotonic()
        code, out, err = _run([sys.executable, str(HERE / f"{name}.py")], limit)
        ok = code == 0
        if code is None:
            text = f"## {name}\n\nStopped after {limit:.0f} s."
        elif ok:
            text = out.strip()
        else:
            text = f"## {name}\n\nFailed (exit {code}):\n\n```\n{err[-2000:]}\n```"
        if not ok:
            failed.append(name)
        print(f"  {name}: {'ok' if ok else 'FAILED'} in {time.monotonic() - started:.0f} s",
              file=sys.stderr)
        sections.append(text)
    rows, missing = [], {}
    for name in names:
        if name in NO_GROWTH:
            continue
        source = (HERE / f"{name}.py").read_text(encoding="utf-8")
        if "--growth" not in source:
            missing[name] = "not measured (the bench has no --growth mode)"
            continue
        limit = min(GROWTH_LIMIT_EXTRA_S.get(name, GROWTH_LIMIT_S), left())
        if limit < 60:
            missing[name] = "not measured (the hour of `make bench` was used up)"
            continue
        print(f"running {name} --growth ...", file=sys.stderr, flush=True)
        started = time.monotonic()
        with tempfile.TemporaryDirectory() as tmp:
            lines = Path(tmp) / "growth.jsonl"
            lines.touch()
            code, _, err = _run([sys.executable, str(HERE / f"{name}.py"), "--growth"], limit,
                                env={**os.environ, growth.ENV: str(lines)})
            # What a bench wrote before it failed or was stopped still counts.
            found = [json.loads(line) for line in lines.read_text().splitlines() if line]
        rows += found
        if code != 0:
            why = f"stopped after {limit:.0f} s" if code is None else \
                f"failed (exit {code}): {_last_line(err)}"
            missing[name] = ("partly measured, " if found else "not measured, ") + why
        elif not found:
            missing[name] = "not measured (no figures written)"
        print(f"  {name} --growth: {'ok' if code == 0 else 'FAILED'} in "
              f"{time.monotonic() - started:.0f} s", file=sys.stderr)
    sections.append(growth_section(rows, missing))
    load_after = os.getloadavg()
    total = time.monotonic() - started_all
    header = f"""# Benchmarks

Written by `make bench` on {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, in {total / 60:.1f} min.
Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()},
InfluxDB and MariaDB from Debian (private instances on loopback), the project's simulator as
PanDA/CRIC/MONIT. Figures are medians of repeated runs; each ratio compares against a reference
measured in the same run, on the same servers and data. Load average (1, 5, 15 min) before the
first bench: {_load(load_before)}; after the last: {_load(load_after)}.
"""
    # `make soak` and `make backtest` write their own sections; keep them.
    kept = [text for heading in ("## Soak", "## Backtest")
            for text in _section(ROOT / "BENCHMARKS.md", heading)]
    (ROOT / "BENCHMARKS.md").write_text(header + "\n" + "\n\n".join(sections + kept) + "\n")
    print("\n\n".join(sections))
    print(f"make bench: {total / 60:.1f} min; load average {_load(load_before)} before, "
          f"{_load(load_after)} after", file=sys.stderr)
    return 1 if failed else 0


def _run(cmd, limit, env=None):
    """(exit code or None when stopped at limit seconds, stdout, stderr). A bench stopped at
    its limit gets SIGTERM first so that it stops its private servers."""
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    try:
        out, err = proc.communicate(timeout=limit)
        return proc.returncode, out, err
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)
        try:
            out, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        return None, out, err


def _load(load):
    return ", ".join(f"{x:.2f}" for x in load)


def _last_line(text):
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else "no message"


def growth_section(rows, missing):
    """The Markdown section "How the cost grows" from the growth JSON lines."""
    out = ["## How the cost grows: 25k, 63k and 250k series", "",
           "Every bench again with --growth: its script(s) at about 25k, 63k and 250k series "
           "(250k is ten times ATLAS today), with a short history that is the same at every "
           "size and fewer runs at 250k (medians; peak RSS is the largest of the measured "
           "process over its runs). Per 1k series = wall time / thousands of series. Limits "
           f"(issue 15): time per 1k series grows at most {MAX_GROWTH:g}× from 25k to 250k; "
           "peak RSS ≤ 1 GB at 250k. The verdict is on each script's largest size.", "",
           "| script | what | series | wall | per 1k series | peak RSS | runs "
           f"| per 1k: largest / smallest (≤ {MAX_GROWTH:g}×) | RSS ≤ 1 GB | result |",
           "|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    groups = {}
    for row in rows:
        groups.setdefault((row["script"], row["what"]), []).append(row)
    notes = []
    for (script, what), group in groups.items():
        group.sort(key=lambda r: r["series"])
        per_k = [r["wall_s"] * 1000 / (r["series"] / 1000) for r in group]
        for i, r in enumerate(group):
            cells = ["", "", ""]
            if i == len(group) - 1 and r["series"] < LARGEST_MIN:
                cells = ["", "", "not measured at 250k"]
            elif i == len(group) - 1 and len(group) == 1:
                cells = ["", "", "one size only"]
            elif i == len(group) - 1:
                ratio = per_k[-1] / per_k[0]
                rss_ok = r["rss_mib"] is None or r["rss_mib"] * 1048576 <= MAX_RSS_BYTES
                ok = ratio <= MAX_GROWTH and rss_ok
                if r["rss_mib"] is None:  # a reference (the server), not held to the limits
                    cells = [f"{ratio:.2f}×", "", "reference"]
                else:
                    cells = [f"{ratio:.2f}×", "yes" if rss_ok else "no",
                             "PASS" if ok else "FAIL"]
            rss = "" if r["rss_mib"] is None else f"{r['rss_mib']:.0f} MiB"
            out.append(f"| {script} | {what} | {r['series']:,} | {r['wall_s']:.2f} s | "
                       f"{per_k[i]:.1f} ms | {rss} | {r.get('runs', '')} | "
                       + " | ".join(cells) + " |")
        # The parts of the notes (split at "; "), each once, in the order of the sizes.
        note = "; ".join(dict.fromkeys(part for r in group if r.get("note")
                                       for part in r["note"].split("; ")))
        if note:
            notes.append(f"- {script}, {what}: {note}.")
    for name, why in missing.items():
        out.append(f"| {name} | | | | | | | | | {why} |")
    notes += [f"- {name} is not in the table: {why}." for name, why in NO_GROWTH.items()]
    out += ["", "History and runs:", ""] + notes
    return "\n".join(out)


def _section(path, heading):
    """[the text of the section under heading] in a Markdown file, or []."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    start = text.find("\n" + heading + "\n")
    if start < 0:
        return []
    end = text.find("\n## ", start + 1)
    return [text[start + 1:end if end >= 0 else len(text)].strip()]


if __name__ == "__main__":
    sys.exit(main())
