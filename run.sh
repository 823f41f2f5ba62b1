#!/usr/bin/env bash
# Every 10 minutes from cron: fetch_queues.py, then suspicious.py on the slot just written.
# Works from any directory, uses the repository's .venv, never overlaps with itself, and exits
# with the first failing script's status. Extra arguments (e.g. --config PATH) go to both.
set -u
cd "$(dirname "$(readlink -f "$0")")" || exit 1
mkdir -p data
exec 9>data/.lock-run
if ! flock -n 9; then
    echo "run.sh: the previous run still holds data/.lock-run; not starting another" >&2
    exit 1
fi
.venv/bin/python fetch_queues.py "$@" || exit $?
# Averages over a slot that was not written would flag every series as a drop.
if [ -f suspicious.py ]; then
    .venv/bin/python suspicious.py "$@" || exit $?
fi
