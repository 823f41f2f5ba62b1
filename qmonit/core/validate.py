"""Checks of upstream values before anything is cached or written: names both stores keep the
same way, counts that fit a BIGINT and an InfluxDB integer, finite numbers."""
import math

from . import lineprotocol

# The MySQL key columns are VARCHAR(191) (schema.MYSQL_JOBS_COLUMNS); InfluxDB takes 64 KiB.
MAX_NAME = 191
MAX_COUNT = 2**63 - 1


def name_problem(name):
    """Why a queue, label, resource, status or site name cannot be stored, or None.

    Refused: not a string, empty, longer than MAX_NAME, not UTF-8 (lone surrogates), control
    characters, or characters InfluxDB would rewrite ("Q\\nX" would become "Q X" there and
    stay "Q\\nX" in MySQL: two names in one store, one in the other)."""
    if not isinstance(name, str):
        return f"not a string ({type(name).__name__})"
    if not name.strip():
        return "empty"
    if len(name) > MAX_NAME:
        return f"longer than {MAX_NAME} characters"
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return "not valid UTF-8"
    if any(ch < " " or "\x7f" <= ch <= "\x9f" for ch in name):
        return "holds a control character"
    if lineprotocol.carried_name(name) != name:
        return "holds a backslash InfluxDB cannot carry"
    return None


def count_problem(count):
    """Why a job count is not a non-negative int64, or None."""
    if type(count) is not int:
        return f"bad count {count!r}"
    if count < 0 or count > MAX_COUNT:
        return f"bad count {count} (not 0..2^63-1)"
    return None


def finite_number(value):
    """value as a finite float; ValueError otherwise (strings such as "inf" included)."""
    if isinstance(value, bool):
        raise ValueError(f"not a number: {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"not a number: {str(value)[:40]!r}") from None
    if not math.isfinite(number):
        raise ValueError(f"not a finite number: {str(value)[:40]!r}")
    return number
