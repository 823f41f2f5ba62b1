#!/usr/bin/env python3
"""Every 10 minutes, after fetch_queues.py: moving averages of every job-count series into
"10m"."averages", suspicious queues and sites into "10m"."suspicious", the avg* columns of the
MySQL `jobs` table, and a digest of new and cleared flags ([notifications])."""
import sys

from qmonit.core import cli
from qmonit.jobs import suspicious


def main(argv=None) -> int:
    parser = cli.parser(__doc__, __file__)
    with cli.exit_codes(parser.prog) as outcome:
        args = parser.parse_args(argv)
        config = cli.load_config(args, __file__)
        cli.setup_logging(args)
        outcome.code = suspicious.run(config, cli.now(args), dry_run=args.dry_run)
    return outcome.code


if __name__ == "__main__":
    sys.exit(main())
