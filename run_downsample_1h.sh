#!/usr/bin/env bash
# Hourly at :15 from cron: downsample.py --average 1h, the 10m -> 1h rollup of the last
# complete hour plus any hour of the look-back that is missing or whose 10m data changed.
# Works from any directory, uses the repository's .venv, never overlaps with itself, and exits
# with downsample.py's status. Extra arguments (e.g. --config PATH, --start/--end) go to it.
set -u
cd "$(dirname "$(readlink -f "$0")")" || exit 1
mkdir -p data
exec 9>data/.lock-downsample-1h
flock -n 9 || { echo "run_downsample_1h.sh: the previous run still holds data/.lock-downsample-1h; not starting another" >&2; exit 1; }
.venv/bin/python downsample.py --average 1h "$@"
