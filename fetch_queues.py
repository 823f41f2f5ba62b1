#!/usr/bin/env python3
"""Every 10 minutes: PanDA job counts per queue, label, resource type and status, with CRIC
metadata, into InfluxDB "10m"."jobs" and the MySQL `jobs` snapshot."""
import sys

from qmonit.core import cli
from qmonit.jobs import fetch


def main(argv=None) -> int:
    parser = cli.parser(__doc__, __file__)
    with cli.exit_codes(parser.prog) as outcome:
        args = parser.parse_args(argv)
        config = cli.load_config(args, __file__)
        cli.setup_logging(args)
        outcome.code = fetch.run(config, cli.now(args), dry_run=args.dry_run)
    return outcome.code


if __name__ == "__main__":
    sys.exit(main())
