#!/usr/bin/env python3
"""Every 10 minutes, after fetch_queues.py: moving averages of every job-count series into
"10m"."averages", suspicious queues and sites into "10m"."suspicious" (each with why it may
be expected, and for how many slots it has held), the avg* columns of the MySQL `jobs` table,
and a digest of new and cleared flags ([notifications]).

Silences (MySQL table `silences`; expired ones stop applying by themselves):
  --silence TARGET --until "YYYY-mm-dd HH:MM:SS" --reason TEXT [--status S]
      TARGET an atlas_site (its flags and those of all its queues) or a panda_queue; prints
      the silence's id
  --list-silences     the active silences
  --unsilence ID      end one now"""
import sys

from qmonit.core import cli
from qmonit.jobs import suspicious


def main(argv=None) -> int:
    parser = cli.parser(__doc__, __file__)
    suspicious.add_silence_arguments(parser)
    with cli.exit_codes(parser.prog) as outcome:
        args = parser.parse_args(argv)
        config = cli.load_config(args, __file__)
        cli.setup_logging(args)
        if suspicious.is_silence_command(args):
            outcome.code = suspicious.silence_command(config, args, cli.now(args))
        else:
            outcome.code = suspicious.run(config, cli.now(args), dry_run=args.dry_run)
    return outcome.code


if __name__ == "__main__":
    sys.exit(main())
