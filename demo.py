#!/usr/bin/env python3
"""The demo behind `make demo` (and `make stop`): local servers under var/, the PanDA/CRIC
simulator, a 6-hour backfill through the real scripts, and a summary."""
import argparse
import sys

from qmonit.dev import demo


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--stop", action="store_true", help="stop what the demo started")
    parser.add_argument("--series", type=int, default=25000, help="simulator size")
    parser.add_argument("--hours", type=int, default=demo.HOURS, help="hours to backfill")
    args = parser.parse_args(argv)
    if args.stop:
        stopped = demo.stop()
        print(f"stopped: {', '.join(stopped) or 'nothing was running'}")
        return 0
    try:
        return demo.run(series=args.series, hours=args.hours)
    except (RuntimeError, OSError) as e:
        print(f"demo: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
