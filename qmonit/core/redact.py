"""Secrets kept out of every log line and error: the config's passwords and tokens, webhook
URL paths, user:password in URLs, bearer tokens. setup_logging and exit_codes (core.cli) pass
all text through redact()."""
import logging
import re
from urllib.parse import urlsplit

MASK = "***"
# Keys whose values are secrets; webhook URLs carry theirs in the path.
SECRET_KEYS = {("credentials", "password"), ("credentials_elasticsearch", "password"),
               ("credentials_monit_grafana", "token"), ("notifications", "smtp_password")}
URL_KEYS = {("notifications", "webhook_url")}

_secrets = set()
_USERINFO = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^/\s@]+@")
_BEARER = re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=-]+")


def add_secret(value):
    # Very short values would mask ordinary words.
    if value and len(value) >= 4:
        _secrets.add(value)


def add_url(url):
    """A URL whose path and query are secret (a webhook)."""
    parts = urlsplit(url)
    secret = parts.path + (f"?{parts.query}" if parts.query else "")
    if len(secret) > 1:
        add_secret(secret)
    add_secret(parts.password)


def register_config(parser):
    """Remember the secrets of a parsed config (a configparser) for redact()."""
    public = [value for section in parser.sections() for key, value in parser.items(section)
              if (section, key) not in SECRET_KEYS]
    for section in parser.sections():
        for key, value in parser.items(section):
            value = value.strip()
            if (section, key) in SECRET_KEYS:
                # A "secret" that is part of a name printed anyway (a password equal to the
                # user or database name, as in the tests) would only mask that name.
                if not any(value in other for other in public):
                    add_secret(value)
            elif (section, key) in URL_KEYS or (section == "routes" and "://" in value):
                for item in value.replace("\n", ",").split(","):
                    if "://" in item:
                        add_url(item.strip())
            elif "://" in value:
                add_secret(urlsplit(value).password)


def redact(text):
    text = str(text)
    for secret in sorted(_secrets, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, MASK)
    text = _USERINFO.sub(lambda m: f"{m.group('scheme')}{MASK}@", text)
    return _BEARER.sub(lambda m: f"{m.group(1)}{MASK}", text)


class RedactingFilter(logging.Filter):
    """A handler filter that redacts the formatted message (and any traceback)."""

    def filter(self, record):
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True
