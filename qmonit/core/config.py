"""The one configuration loader: --config, else $QMONIT_CONFIG, else config.cfg beside the script.

Typed getters take a default; a missing key without a default, or a value of the wrong type,
raises ConfigError naming the file, the section and the key.
"""
import configparser
import os
from pathlib import Path

from . import redact
from .errors import ConfigError

_REQUIRED = object()
_TRUE = {"1", "yes", "true", "on"}
_FALSE = {"0", "no", "false", "off"}


class Config:
    def __init__(self, path, parser, base_dir):
        self.path = Path(path)
        self._parser = parser
        # Relative paths in the config (data_dir) are relative to the repository.
        self.base_dir = Path(base_dir)

    @classmethod
    def from_string(cls, text, path="<string>", base_dir="."):
        parser = _parser()
        try:
            parser.read_string(text, source=str(path))
        except configparser.Error as e:
            raise ConfigError(path, f"cannot parse: {_one_line(e)}") from None
        redact.register_config(parser)
        return cls(path, parser, base_dir)

    def has_section(self, section):
        return self._parser.has_section(section)

    def keys(self, section):
        """The keys of a section whose keys are names (such as [routes]), lowercased by INI."""
        if not self._parser.has_section(section):
            return []
        defaults = self._parser.defaults()
        return [key for key in self._parser[section] if key not in defaults]

    def get(self, section, key, default=_REQUIRED):
        if self._parser.has_option(section, key):
            return self._parser.get(section, key).strip()
        if default is _REQUIRED:
            raise ConfigError(self.path, "missing", section, key)
        return default

    def get_int(self, section, key, default=_REQUIRED, minimum=None):
        value = self.get(section, key, default)
        try:
            value = int(value)
        except (TypeError, ValueError):
            raise ConfigError(self.path, f"not an integer: {value!r}", section, key) from None
        if minimum is not None and value < minimum:
            raise ConfigError(self.path, f"must be at least {minimum}, got {value}", section, key)
        return value

    def get_float(self, section, key, default=_REQUIRED):
        value = self.get(section, key, default)
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(self.path, f"not a number: {value!r}", section, key) from None

    def get_bool(self, section, key, default=_REQUIRED):
        value = self.get(section, key, default)
        if isinstance(value, bool):
            return value
        if str(value).lower() in _TRUE:
            return True
        if str(value).lower() in _FALSE:
            return False
        raise ConfigError(self.path, f"not a boolean: {value!r}", section, key)

    def get_list(self, section, key, default=_REQUIRED):
        value = self.get(section, key, default)
        if isinstance(value, (list, tuple)):
            return list(value)
        return [item.strip() for item in str(value).replace("\n", ",").split(",") if item.strip()]

    def get_choice(self, section, key, choices, default=_REQUIRED):
        value = self.get(section, key, default)
        if value not in choices:
            raise ConfigError(self.path, f"must be one of {', '.join(choices)}, got {value!r}",
                              section, key)
        return value

    def get_path(self, section, key, default=_REQUIRED):
        value = self.get(section, key, default)
        if not value:
            raise ConfigError(self.path, "empty path", section, key)
        path = Path(value).expanduser()
        return path if path.is_absolute() else self.base_dir / path

    def data_dir(self):
        return self.get_path("paths", "data_dir", "data")


def _parser():
    # Inline comments after ';' are used throughout config.cfg.example.
    return configparser.ConfigParser(inline_comment_prefixes=(";", "#"), interpolation=None)


def _one_line(error):
    return " ".join(str(error).split())


def resolve_path(cli_path, script_file):
    if cli_path:
        return Path(cli_path)
    if os.environ.get("QMONIT_CONFIG"):
        return Path(os.environ["QMONIT_CONFIG"])
    return Path(script_file).resolve().parent / "config.cfg"


def load(cli_path, script_file):
    """Load the config for a script; its base directory is the script's (the repository)."""
    path = resolve_path(cli_path, script_file)
    base_dir = Path(script_file).resolve().parent
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(path, "no such file (copy config.cfg.example, or pass --config)") \
            from None
    except OSError as e:
        raise ConfigError(path, f"cannot read: {e.strerror}") from None
    return Config.from_string(text, path, base_dir)
