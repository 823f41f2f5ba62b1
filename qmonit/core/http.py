"""HTTP fetching for the sources: one requests session, and failures as one-line SourceErrors."""
import json
import logging
import re
import threading
import time

import requests
import urllib3

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


# Replies larger than this are refused (PanDA's at ATLAS scale is ~10 MB, CRIC's ~30 MB).
DEFAULT_MAX_BYTES = 200 * 10**6
READ_CHUNK = 1 << 20


def fetch(session, url, timeout, method="GET", max_bytes=DEFAULT_MAX_BYTES, **kwargs):
    """The response body as text; SourceError(url, reason) for anything but HTTP 2xx.

    timeout is a deadline for the whole request, reading the reply included: a server that
    drips its answer cannot hold a run past it. A reply over max_bytes is refused."""
    started = time.monotonic()
    deadline = started + timeout
    try:
        response = _before(deadline, lambda: session.request(
            method, url, timeout=timeout, stream=True, **kwargs))
    except (requests.Timeout, TimeoutError):
        raise SourceError(url, f"timed out after {timeout:g} s") from None
    except requests.RequestException as e:
        raise SourceError(url, describe(e)) from None
    try:
        _read(response, url, deadline, timeout, max_bytes)
    finally:
        response.close()
    if not 200 <= response.status_code < 300:
        body = " ".join(response.text[:2000].split())[:120]
        raise SourceError(url, f"HTTP {response.status_code} {response.reason}"
                          + (f": {body}" if body else ""))
    text = response.text
    log.debug("%s %s: %d bytes in %.2f s", method, url, len(text), time.monotonic() - started)
    return text


def _before(deadline, call):
    """call() in a helper thread, given up (TimeoutError) at the deadline: the socket time-out
    bounds each wait for data, not a server that drips its status line and headers."""
    outcome = {}

    def work():
        try:
            outcome["value"] = call()
        except BaseException as e:  # noqa: BLE001 - handed to the caller below
            outcome["error"] = e

    # A daemon: a thread still waiting on a dripping server never holds the process.
    worker = threading.Thread(target=work, name="qmonit-http", daemon=True)
    worker.start()
    worker.join(max(deadline - time.monotonic(), 0))
    if worker.is_alive():
        raise TimeoutError
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def _read(response, url, deadline, timeout, max_bytes):
    """Read the body into response (so .text works as usual) within deadline and max_bytes."""
    length = response.headers.get("Content-Length", "")
    if length.isdigit() and int(length) > max_bytes:
        raise SourceError(url, f"reply of {int(length)} bytes is over the limit of {max_bytes}")
    sock = getattr(getattr(response.raw, "_connection", None), "sock", None)
    parts, size = [], 0
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise SourceError(url, f"timed out after {timeout:g} s (reading the reply)")
            if sock is not None:
                # Each wait for data ends at the deadline, not a whole timeout later.
                sock.settimeout(max(left, 0.01))
            chunk = response.raw.read1(READ_CHUNK, decode_content=True)
            if not chunk:
                break
            size += len(chunk)
            if size > max_bytes:
                raise SourceError(url, f"reply over the limit of {max_bytes} bytes")
            parts.append(chunk)
    except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as e:
        if isinstance(e, (TimeoutError, urllib3.exceptions.TimeoutError)) or \
                time.monotonic() >= deadline:
            raise SourceError(url, f"timed out after {timeout:g} s (reading the reply)") \
                from None
        raise SourceError(url, f"reading the reply failed ({describe(e)})") from None
    response._content = b"".join(parts)


def parse_json(url, text, allow_python_literal=False):
    """Parse a JSON body; PanDA without the JSON Accept header sends str(dict) instead, read
    by a small bounded parser of Python literals (never eval)."""
    try:
        return json.loads(text)
    except RecursionError:
        raise SourceError(url, "invalid JSON (nested too deeply)") from None
    except ValueError as e:
        if allow_python_literal and text.lstrip().startswith("{"):
            try:
                return parse_python_literal(text)
            except ValueError as literal_error:
                raise SourceError(url, f"invalid JSON ({e.msg} at char {e.pos} of {len(text)}),"
                                  f" nor a Python literal ({literal_error})") from None
        raise SourceError(url, f"invalid JSON ({e.msg} at char {e.pos} of {len(text)})") from None


_TOKEN = re.compile(r"""\s*(?:([{}\[\]():,])|('(?:[^'\\\n]|\\.)*'|"(?:[^"\\\n]|\\.)*")"""
                    r"|(-?\d+(?:\.\d*)?(?:[eE][+-]?\d+)?)|(None|True|False)\b)", re.S)
_ESCAPE = re.compile(r"\\(x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|.)", re.S)
_SIMPLE = {"n": "\n", "t": "\t", "r": "\r", "0": "\0", "\\": "\\", "'": "'", '"': '"',
           "a": "\a", "b": "\b", "f": "\f", "v": "\v"}
_WORDS = {"None": None, "True": True, "False": False}
MAX_DEPTH = 64


def parse_python_literal(text, max_depth=MAX_DEPTH):
    """A Python literal of dicts, lists, tuples, strings, numbers, None, True and False, as
    str() writes it; ValueError for anything else or nesting deeper than max_depth."""
    parser = _Literal(text, max_depth)
    value = parser.value(0)
    if text[parser.pos:].strip():
        raise ValueError(f"trailing text at char {parser.pos}")
    return value


class _Literal:
    def __init__(self, text, max_depth):
        self.text, self.pos, self.max_depth = text, 0, max_depth

    def token(self):
        match = _TOKEN.match(self.text, self.pos)
        if not match:
            raise ValueError(f"not a literal at char {self.pos}")
        self.pos = match.end()
        return match

    def value(self, depth, match=None):
        punct, string, number, word = (match or self.token()).groups()
        if string is not None:
            return _ESCAPE.sub(_unescape, string[1:-1])
        if number is not None:
            return float(number) if any(c in number for c in ".eE") else int(number)
        if word is not None:
            return _WORDS[word]
        if punct in ("{", "[", "("):
            if depth >= self.max_depth:
                raise ValueError(f"nested deeper than {self.max_depth}")
            return self.container(depth + 1, punct)
        raise ValueError(f"misplaced {punct!r} at char {self.pos - 1}")

    def container(self, depth, opening):
        closing = {"{": "}", "[": "]", "(": ")"}[opening]
        items = {} if opening == "{" else []
        while True:
            match = self.token()
            if match.group(1) == closing:
                break
            item = self.value(depth, match)
            if opening == "{":
                if self.token().group(1) != ":":
                    raise ValueError(f"expected ':' at char {self.pos - 1}")
                try:
                    items[item] = self.value(depth)
                except TypeError:
                    raise ValueError(f"unhashable key at char {self.pos}") from None
            else:
                items.append(item)
            separator = self.token().group(1)
            if separator == closing:
                break
            if separator != ",":
                raise ValueError(f"expected ',' or {closing!r} at char {self.pos - 1}")
        return tuple(items) if opening == "(" else items


def _unescape(match):
    code = match.group(1)
    if code[0] in "xuU" and len(code) > 1:
        return chr(int(code[1:], 16))
    return _SIMPLE.get(code, "\\" + code)


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
