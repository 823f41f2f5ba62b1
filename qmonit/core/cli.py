"""What every script shares: its flags, logging set-up, and turning exceptions into exit codes."""
import argparse
import contextlib
import datetime as dt
import logging
import sys
from pathlib import Path

from . import config as config_module
from .errors import QMonitError, UsageError
from .redact import RedactingFilter, redact

log = logging.getLogger(__name__)
TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S"


class _Parser(argparse.ArgumentParser):
    # Bad usage becomes a UsageError so that main() returns 2 instead of exiting.
    def error(self, message):
        raise UsageError(f"{message} (see --help)")


def parser(doc, script_file):
    p = _Parser(prog=Path(script_file).name, description=doc,
                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", metavar="PATH",
                   help="config file (default: $QMONIT_CONFIG, else config.cfg beside the script)")
    p.add_argument("--timestamp", metavar='"YYYY-mm-dd HH:MM:SS"', type=parse_timestamp,
                   help="act as if now were this UTC time (backfill, tests)")
    p.add_argument("--dry-run", action="store_true",
                   help="compute everything, print what would be written, write nothing")
    verbosity = p.add_mutually_exclusive_group()
    verbosity.add_argument("--debug", action="store_true", help="log counts and durations")
    verbosity.add_argument("--quiet", action="store_true", help="log errors only")
    return p


def parse_timestamp(text):
    try:
        return dt.datetime.strptime(text, TIMESTAMP_FORMAT).replace(tzinfo=dt.UTC)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid timestamp {text!r}: expected \"YYYY-mm-dd HH:MM:SS\" (UTC)") from None


def now(args):
    return args.timestamp or dt.datetime.now(dt.UTC)


def load_config(args, script_file):
    return config_module.load(args.config, script_file)


def setup_logging(args):
    """Quiet under cron: warnings and errors only, unless --debug (or --quiet: errors only)."""
    level = logging.DEBUG if args.debug else logging.ERROR if args.quiet else logging.WARNING
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_qmonit", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler._qmonit = True
    handler.addFilter(RedactingFilter())
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(level)
    # Client libraries are chatty at DEBUG; their details are rarely what an operator wants.
    for noisy in ("urllib3", "mysql.connector"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))


class Outcome:
    code = 0


@contextlib.contextmanager
def exit_codes(prog):
    """Run a script body; afterwards outcome.code is its exit status.

    A QMonitError prints one line on stderr and gives its exit code; anything unexpected
    gives 1 (with the traceback under --debug).
    """
    outcome = Outcome()
    try:
        yield outcome
    except QMonitError as e:
        print(f"{prog}: error: {redact(e)}", file=sys.stderr)
        outcome.code = e.exit_code
    except SystemExit as e:  # --help and --version
        outcome.code = e.code if isinstance(e.code, int) else 0
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        outcome.code = 130
    except Exception as e:  # noqa: BLE001 - the last line of defence
        log.debug("unexpected failure", exc_info=True)
        print(f"{prog}: error: unexpected {type(e).__name__}: "
              f"{redact(' '.join(str(e).split()))}", file=sys.stderr)
        outcome.code = 1


def progress(iterable, **kwargs):
    """A progress bar on a terminal only; under cron or in a pipe it is the bare iterable."""
    if not sys.stderr.isatty():
        return iterable
    from tqdm import tqdm
    return tqdm(iterable, **kwargs)
