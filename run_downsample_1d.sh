#!/usr/bin/env bash
# Daily at 00:06 from cron: downsample.py --average 1d, the 1h -> 1d rollup of the last
# complete day (catching up the 1h rollup first) plus any day of the look-back that is
# missing or whose 1h data changed.
# Works from any directory, uses the repository's .venv, never overlaps with itself, and exits
# with downsample.py's status. Extra arguments (e.g. --config PATH, --start/--end) go to it.
set -u
cd "$(dirname "$(readlink -f "$0")")" || exit 1
mkdir -p data
exec 9>data/.lock-downsample-1d
flock -n 9 || { echo "run_downsample_1d.sh: the previous run still holds data/.lock-downsample-1d; not starting another" >&2; exit 1; }
.venv/bin/python downsample.py --average 1d "$@"
