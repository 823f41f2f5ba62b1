#!/usr/bin/env bash
# Hourly at :05 from cron: datadisk.py (CRIC refresh, DAOD volume vs running analysis jobs per
# datadisk). Works from any directory, uses the repository's .venv, never overlaps with itself,
# and exits with datadisk.py's status. Extra arguments (e.g. --config PATH) go to datadisk.py.
set -u
cd "$(dirname "$(readlink -f "$0")")" || exit 1
mkdir -p data
exec 9>data/.lock-1h
flock -n 9 || { echo "run_1h.sh: the previous run still holds data/.lock-1h; not starting another" >&2; exit 1; }
.venv/bin/python datadisk.py "$@"
