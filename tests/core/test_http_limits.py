"""core/http.py limits (issue 12): a total deadline per request, a reply size limit, no eval of
untrusted text. Real sockets on loopback."""
import socket
import threading
import time

import pytest

from qmonit.core import http
from qmonit.core.errors import SourceError


class Drip:
    """A server that sends its headers, then one byte of body every `every` seconds."""

    def __init__(self, every=0.2, length=1000, in_headers=False):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(5)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/x"
        self.every, self.length, self.stop = every, length, threading.Event()
        self.in_headers = in_headers
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.drip, args=(conn,), daemon=True).start()

    def drip(self, conn):
        try:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n")
            if self.in_headers:
                conn.sendall(b"X-Slow: ")
            else:
                conn.sendall(b"Content-Length: %d\r\n\r\n" % self.length)
            for _ in range(self.length):
                if self.stop.wait(self.every):
                    break
                conn.sendall(b"x" if self.in_headers else b" ")
        except OSError:
            pass
        finally:
            conn.close()

    def close(self):
        self.stop.set()
        self.sock.close()


@pytest.fixture(params=[False, True], ids=["body", "headers"])
def drip(request):
    server = Drip(in_headers=request.param)
    yield server
    server.close()


def test_a_dripping_server_cannot_hold_a_request_past_its_timeout(drip):
    started = time.monotonic()
    with pytest.raises(SourceError, match=r"timed out after 1 s") as e:
        http.fetch(http.session(), drip.url, 1)
    # Each byte comes well within the timeout; only a total deadline stops it.
    assert time.monotonic() - started < 3
    assert str(e.value).startswith(drip.url)


def test_a_reply_over_the_size_limit_is_refused(sim):
    url = sim.url + "/api/atlas/site/query/?json"
    text = http.fetch(http.session(), url, 5)
    with pytest.raises(SourceError, match="over the limit") as e:
        http.fetch(http.session(), url, 5, max_bytes=len(text) // 2)
    assert str(e.value).startswith(url)


def test_python_literal_replies_are_parsed_without_eval():
    reply = {"Q X": {None: {"SCORE": {"running": 3, "it's": 2}}}, "é\n": [1, 2.5, (3,), True]}
    assert http.parse_json("u", str(reply), allow_python_literal=True) == reply
    for bad in ("{1: __import__('os').getcwd()}", "{'a': 1} + {}", "{'a': " * 200 + "1"
                + "}" * 200, "{'a': lambda: 1}"):
        with pytest.raises(SourceError, match=r"^u: invalid JSON.*nor a Python literal"):
            http.parse_json("u", bad, allow_python_literal=True)


def test_deep_json_names_the_url():
    with pytest.raises(SourceError, match=r"^u: invalid JSON \(nested too deeply\)"):
        http.parse_json("u", "[" * 200000 + "]" * 200000)
