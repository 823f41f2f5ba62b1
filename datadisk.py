#!/usr/bin/env python3
"""Hourly: refresh the slow CRIC data (site, ddmendpoint, federation), read the DAOD volume per
DATADISK from MONIT's Rucio accounting, attribute the running analysis jobs of the latest
complete 10-minute slot to the DATADISKs their queues read from, and write "1h"."datadisks"
and the datadisk columns of the MySQL `jobs` table."""
import sys

from qmonit.core import cli
from qmonit.jobs import datadisk


def main(argv=None) -> int:
    parser = cli.parser(__doc__, __file__)
    with cli.exit_codes(parser.prog) as outcome:
        args = parser.parse_args(argv)
        config = cli.load_config(args, __file__)
        cli.setup_logging(args)
        outcome.code = datadisk.run(config, cli.now(args), dry_run=args.dry_run)
    return outcome.code


if __name__ == "__main__":
    sys.exit(main())
