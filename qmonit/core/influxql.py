"""InfluxQL text from values: identifiers and string literals quoted, times as exact literals.

Pure helpers shared by the schema, the sinks, the jobs and the dashboards.
"""


def quote_ident(name):
    """An InfluxQL identifier: "name" with backslashes and double quotes escaped."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def quote_string(value):
    """An InfluxQL string literal: 'value' with backslashes and single quotes escaped."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def time_literal(when):
    """An InfluxQL time literal for a datetime or epoch seconds (exact, as integer ns)."""
    seconds = when if isinstance(when, (int, float)) else when.timestamp()
    return f"{int(round(seconds * 1e9))}"
