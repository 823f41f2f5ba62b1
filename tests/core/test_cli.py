import datetime as dt
import logging

import pytest

from qmonit.core import cli
from qmonit.core.errors import ConfigError, SourceError


def test_timestamp_is_utc():
    assert cli.parse_timestamp("2026-11-25 10:07:00") == dt.datetime(
        2026, 11, 25, 10, 7, tzinfo=dt.UTC)


def test_bad_usage_is_exit_2(capsys):
    p = cli.parser("doc", "x.py")
    with cli.exit_codes("x.py") as outcome:
        p.parse_args(["--timestamp", "yesterday"])
    assert outcome.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "yesterday" in err


def test_help_is_exit_0(capsys):
    with cli.exit_codes("x.py") as outcome:
        cli.parser("the doc", "x.py").parse_args(["--help"])
    assert outcome.code == 0
    assert "--dry-run" in capsys.readouterr().out


@pytest.mark.parametrize("error,code", [
    (ConfigError("/etc/q.cfg", "missing", "panda", "url"), 2),
    (SourceError("http://panda/x", "HTTP 500"), 1),
    (RuntimeError("boom"), 1),
])
def test_exceptions_become_one_line_and_a_code(capsys, error, code):
    with cli.exit_codes("x.py") as outcome:
        raise error
    assert outcome.code == code
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("x.py: error: ")


def test_logging_levels():
    p = cli.parser("doc", "x.py")
    cli.setup_logging(p.parse_args([]))
    assert logging.getLogger().level == logging.WARNING
    cli.setup_logging(p.parse_args(["--debug"]))
    assert logging.getLogger().level == logging.DEBUG
    cli.setup_logging(p.parse_args(["--quiet"]))
    assert logging.getLogger().level == logging.ERROR
    handlers = [h for h in logging.getLogger().handlers if getattr(h, "_qmonit", False)]
    assert len(handlers) == 1
