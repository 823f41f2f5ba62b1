"""HTTP fetching for the sources: one requests session, and failures as one-line SourceErrors."""
import ast
import json
import logging
import time

import requests

from .errors import SourceError
from .tls import TLSFailure

log = logging.getLogger(__name__)


def session(user_agent="qmonit", tls=None):
    """A requests session; tls (a tls.TLS) sets the CA to trust and the client certificate."""
    s = requests.Session()
    s.headers["User-Agent"] = user_agent
    if tls is not None:
        tls.configure(s)
    return s


def fetch(session, url, timeout, method="GET", **kwargs):
    """The response body as text; SourceError(url, reason) for anything but HTTP 2xx."""
    started = time.monotonic()
    try:
        response = session.request(method, url, timeout=timeout, **kwargs)
    except requests.Timeout:
        raise SourceError(url, f"timed out after {timeout:g} s") from None
    except requests.RequestException as e:
        raise SourceError(url, describe(e)) from None
    if not 200 <= response.status_code < 300:
        body = " ".join(response.text.split())[:120]
        raise SourceError(url, f"HTTP {response.status_code} {response.reason}"
                          + (f": {body}" if body else ""))
    try:
        text = response.text
    except requests.RequestException as e:
        raise SourceError(url, f"reading the reply failed ({describe(e)})") from None
    log.debug("%s %s: %d bytes in %.2f s", method, url, len(text), time.monotonic() - started)
    return text


def parse_json(url, text, allow_python_literal=False):
    """Parse a JSON body; PanDA without the JSON Accept header sends str(dict) instead."""
    try:
        return json.loads(text)
    except ValueError as e:
        if allow_python_literal and text.lstrip().startswith("{"):
            try:
                return ast.literal_eval(text)
            except (ValueError, SyntaxError, MemoryError, RecursionError):
                pass
        raise SourceError(url, f"invalid JSON ({e.msg} at char {e.pos} of {len(text)})") from None


def describe(error):
    """A short reason for a requests exception, without urllib3's nested reprs."""
    if isinstance(error, requests.Timeout):
        return "timed out"
    if isinstance(error, TLSFailure):
        return str(error)
    text = " ".join(str(error).split())
    if isinstance(error, requests.ConnectionError):
        for known in ("Connection refused", "Name or service not known", "No route to host",
                      "Connection reset by peer", "certificate verify failed"):
            if known in text:
                return f"cannot connect ({known.lower()})"
        return "cannot connect"
    return text[:200] or type(error).__name__
