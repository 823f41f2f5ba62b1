"""InfluxDB 1.x line protocol, escaped correctly for any name.

Measurement names escape commas and spaces; tag keys, tag values and field keys also escape
'='. InfluxDB 1.x keeps other backslashes in names literally and has no escape for a backslash
itself, so a backslash at the end of a name or just before ',', ' ' or '=' cannot be carried:
it is written as U+29F5 (a look-alike). Newlines cannot be carried either and become spaces.
String field values escape '"' and '\\' and carry anything.
"""
import math
import re

_TAG_TABLE = str.maketrans({",": "\\,", " ": "\\ ", "=": "\\=", "\n": "\\ ", "\r": "\\ "})
_MEASUREMENT_TABLE = str.maketrans({",": "\\,", " ": "\\ ", "\n": "\\ ", "\r": "\\ "})
_LONE_BACKSLASH = re.compile(r"\\+(?=[, =\n\r]|$)")
_STRING_TABLE = str.maketrans({"\\": "\\\\", '"': '\\"', "\n": " ", "\r": " "})


def _backslashes(name):
    if "\\" in name:
        return _LONE_BACKSLASH.sub(lambda m: "\u29f5" * len(m.group()), name)
    return name


def escape_measurement(name):
    return _backslashes(name).translate(_MEASUREMENT_TABLE)


def escape_key(name):
    """Escape a tag key, a tag value or a field key."""
    return _backslashes(name).translate(_TAG_TABLE)


def carried_name(name):
    """The name as InfluxDB will store it (what a reader gets back for a tag value)."""
    return _backslashes(name).replace("\n", " ").replace("\r", " ")


def format_value(value):
    # bool before int: bool is an int subclass.
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value}i"
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"line protocol cannot carry {value}")
        return repr(value)
    if isinstance(value, str):
        return '"' + value.translate(_STRING_TABLE) + '"'
    raise TypeError(f"unsupported field value {value!r}")


def tag_string(tags):
    """',k=v,k=v' for a dict of tags, sorted by key (InfluxDB's own order); empty values dropped."""
    return "".join(f",{escape_key(k)}={escape_key(str(v))}"
                   for k, v in sorted(tags.items()) if v is not None and v != "")


def field_string(fields):
    """'k=v,k=v' for a dict of fields; None values are left out."""
    return ",".join(f"{escape_key(k)}={format_value(v)}" for k, v in fields.items()
                    if v is not None)


def line(measurement, tags, fields, timestamp):
    """One line; timestamp is integer seconds since the epoch."""
    fields_part = field_string(fields)
    if not fields_part:
        raise ValueError(f"a point of {measurement} needs at least one field")
    return f"{escape_measurement(measurement)}{tag_string(tags)} {fields_part} {int(timestamp)}"
