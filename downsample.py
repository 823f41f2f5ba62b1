#!/usr/bin/env python3
"""Rollups of the jobs counts for long Grafana ranges: "10m"."jobs" -> "1h"."jobs" (hourly at
:15) and "1h"."jobs" -> "1d"."jobs" (daily at 00:06), computed exactly inside InfluxDB.

Each run writes the last complete bucket and rewrites, within [downsample] lookback_1h /
lookback_1d, every bucket that is missing or whose source data changed (late data, a missed
cron run). --start/--end recompute an explicit range. Reruns are idempotent."""
import datetime as dt
import sys

from qmonit.core import cli
from qmonit.jobs import downsample


def parse_time(text):
    """A UTC time as for --timestamp, or a bare date (its midnight)."""
    try:
        return dt.datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=dt.UTC)
    except ValueError:
        return cli.parse_timestamp(text)


def main(argv=None) -> int:
    parser = cli.parser(__doc__, __file__)
    parser.add_argument("--average", required=True, choices=list(downsample.LEVELS),
                        help="1h: 10m -> 1h rollup; 1d: 1h -> 1d rollup (first catching up 1h)")
    parser.add_argument("--start", type=parse_time, metavar='"YYYY-mm-dd HH:MM:SS"',
                        help="recompute every complete bucket from this UTC time (or date) on")
    parser.add_argument("--end", type=parse_time, metavar='"YYYY-mm-dd HH:MM:SS"',
                        help="with --start: stop before this UTC time or date (default: "
                             "after the last complete bucket)")
    with cli.exit_codes(parser.prog) as outcome:
        args = parser.parse_args(argv)
        if args.end is not None and args.start is None:
            parser.error("--end needs --start")
        if args.end is not None and args.end <= args.start:
            parser.error("--end must be after --start")
        config = cli.load_config(args, __file__)
        cli.setup_logging(args)
        outcome.code = downsample.run(config, cli.now(args), args.average, args.start, args.end,
                                      dry_run=args.dry_run)
    return outcome.code


if __name__ == "__main__":
    sys.exit(main())
