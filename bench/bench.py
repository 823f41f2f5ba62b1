#!/usr/bin/env python3
"""`make bench`: run every bench/bench_*.py and write their sections into BENCHMARKS.md.

Each benchmark starts its own private servers and simulator and prints one Markdown section.
Run it on a quiet machine: the figures are wall-clock medians.
"""
import datetime as dt
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# Order: the fetch cycle first, then the jobs built on its data.
ORDER = ["bench_fetch", "bench_downsample", "bench_suspicious", "bench_datadisk"]
LIMIT_S = 30 * 60


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
    for name in names:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        started = time.monotonic()
        try:
            result = subprocess.run([sys.executable, str(HERE / f"{name}.py")], cwd=ROOT,
                                    capture_output=True, text=True, timeout=LIMIT_S)
            ok = result.returncode == 0
            text = result.stdout.strip() if ok else \
                (f"## {name}\n\nFailed (exit {result.returncode}):\n\n"
                 f"```\n{result.stderr[-2000:]}\n```")
        except subprocess.TimeoutExpired:
            ok, text = False, f"## {name}\n\nStopped after {LIMIT_S} s."
        if not ok:
            failed.append(name)
        print(f"  {name}: {'ok' if ok else 'FAILED'} in {time.monotonic() - started:.0f} s",
              file=sys.stderr)
        sections.append(text)
    header = f"""# Benchmarks

Written by `make bench` on {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC.
Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()},
InfluxDB and MariaDB from Debian (private instances on loopback), the project's simulator as
PanDA/CRIC/MONIT. Figures are medians of repeated runs; each ratio compares against a reference
measured in the same run, on the same servers and data.
"""
    # `make soak` and `make backtest` write their own sections; keep them.
    kept = [text for heading in ("## Soak", "## Backtest")
            for text in _section(ROOT / "BENCHMARKS.md", heading)]
    (ROOT / "BENCHMARKS.md").write_text(header + "\n" + "\n\n".join(sections + kept) + "\n")
    print("\n\n".join(sections))
    return 1 if failed else 0


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
