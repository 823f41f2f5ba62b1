"""Notifications: digests, what each channel remembers, and delivery to real local receivers
(aiosmtpd for email, with and without STARTTLS; a loopback HTTP server for the webhook)."""
import datetime as dt
import json
import logging
import shutil
import ssl
import subprocess
import threading
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from hypothesis import given
from hypothesis import strategies as st

from qmonit.core import config as config_module
from qmonit.core.errors import ConfigError
from qmonit.dev.devservers import free_port
from qmonit.jobs.suspicious import Flag
from qmonit.sinks import notify

UTC = dt.UTC
SLOT = dt.datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
TEN = dt.timedelta(minutes=10)


def flag(site="SITE-A", queue="all", status="running", direction="drop", current=0,
         baseline=500.0, score=4484.0, level=None):
    level = level or ("site" if queue == "all" else "queue")
    label = "all" if queue == "all" else "managed"
    resource = "all" if queue == "all" else "SCORE"
    ratio = current / baseline if baseline else None
    return Flag(level, site, queue, label, resource, status, "DE", direction, current,
                baseline, ratio, score)


COLLAPSE = flag()
SPIKE = flag("SITE-B", "SITE-B_UCORE", "failed", "spike", 900, 30.0, 3000.0)
WOBBLE = flag("SITE-C", "SITE-C_TEST", "running", "drop", 10, 30.0, 30.0)


# --- pure parts ---------------------------------------------------------------------------

def test_digest_lists_new_by_score_and_cleared():
    new, cleared = notify.changes([WOBBLE, COLLAPSE, SPIKE],
                                  {notify.flag_id(WOBBLE): notify.label(WOBBLE),
                                   "site|GONE|all|all|all|failed|spike": "site GONE: failed spike"})
    assert new == [COLLAPSE, SPIKE]
    assert cleared == ["site GONE: failed spike"]
    subject, text = notify.digest(new, cleared, SLOT, 50)
    assert subject == "QMonit suspicious: 2 new, 1 cleared at 2026-11-25 12:00 UTC"
    lines = text.splitlines()
    assert lines[0] == subject
    assert lines.index("New (2), highest score first:") < lines.index("Cleared (1):")
    assert "site SITE-A: running drop, 0 jobs vs baseline 500.0 (x0.00), score 4484" in text
    assert "queue SITE-B_UCORE managed/SCORE (SITE-B): failed spike" in text
    assert text.index("SITE-A") < text.index("SITE-B")


@given(st.integers(0, 30), st.integers(1, 10))
def test_digest_is_capped(n, cap):
    flags = [flag(f"S{i:02d}", score=float(100 - i)) for i in range(n)]
    _, text = notify.digest(flags, [], SLOT, cap)
    listed = [line for line in text.splitlines() if line.startswith("  site ")]
    assert len(listed) == min(n, cap)
    assert (f"  ... and {n - cap} more" in text) == (n > cap)


def test_flag_id_is_stable_and_distinguishes_direction():
    assert notify.flag_id(COLLAPSE) == "site|SITE-A|all|all|all|running|drop"
    assert notify.flag_id(COLLAPSE._replace(current=3)) == notify.flag_id(COLLAPSE)
    assert notify.flag_id(COLLAPSE._replace(direction="spike")) != notify.flag_id(COLLAPSE)


def settings_from(tmp_path, text):
    path = tmp_path / "n.cfg"
    path.write_text(text)
    return notify.Settings.from_config(config_module.load(str(path), str(tmp_path / "s.py")))


def test_settings_from_config(tmp_path):
    s = settings_from(tmp_path, "[notifications]\nsmtp_host = mail.example.org\n"
                                "email_to = a@x.org, b@x.org\nsmtp_starttls = yes\n"
                                "webhook_url = https://hooks.example.org/T/B/secret\n"
                                "levels = site\n")
    email, webhook = s.channels
    assert (email.host, email.port, email.starttls, email.recipients) == \
        ("mail.example.org", 25, True, ["a@x.org", "b@x.org"])
    assert webhook.target == "webhook https://hooks.example.org"
    assert s.levels == ("site",) and s.max_items == 50
    assert settings_from(tmp_path, "[paths]\ndata_dir = d\n").channels == []


@pytest.mark.parametrize("text,key", [
    ("smtp_host = mail\n", "email_to"),
    ("webhook_url = hooks.example.org/x\n", "webhook_url"),
    ("levels = sites\n", "levels"),
    ("smtp_host = mail\nemail_to = a@b\nsmtp_port = x\n", "smtp_port"),
])
def test_bad_settings_name_the_key(tmp_path, text, key):
    with pytest.raises(ConfigError, match=rf"\[notifications\] {key}") as e:
        settings_from(tmp_path, "[notifications]\n" + text)
    assert e.value.exit_code == 2


# --- real receivers -------------------------------------------------------------------------

class Inbox:
    def __init__(self):
        self.messages = []
        self.logins = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos),
                              message_from_bytes(envelope.content)))
        return "250 OK"

    def authenticate(self, server, session, envelope, mechanism, auth_data):
        self.logins.append((auth_data.login, auth_data.password))
        return AuthResult(success=auth_data.password == b"s3cret")


@pytest.fixture
def smtp_server():
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield controller, inbox
    controller.stop()


@pytest.fixture
def tls_files(tmp_path):
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command makes the test certificate")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    return key, cert


class Hook:
    """A loopback webhook receiver; answers `status`."""

    def __init__(self):
        self.bodies = []
        self.status = 200
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                hook.bodies.append((self.path, self.headers.get("Content-Type"),
                                    self.rfile.read(length)))
                self.send_response(hook.status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/T0/B0/secret-token"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hook():
    h = Hook()
    yield h
    h.close()


def test_email_digest_once_then_only_changes(tmp_path, smtp_server):
    controller, inbox = smtp_server
    channel = notify.EmailChannel("127.0.0.1", controller.port, "qmonit@example.org",
                                  ["ops@example.org", "shifter@example.org"], timeout=5)
    settings = notify.Settings([channel])
    assert notify.notify(settings, [COLLAPSE, SPIKE], SLOT, tmp_path) == 0
    assert len(inbox.messages) == 1
    sender, recipients, message = inbox.messages[0]
    assert sender == "qmonit@example.org"
    assert recipients == ["ops@example.org", "shifter@example.org"]
    assert message["Subject"] == "QMonit suspicious: 2 new, 0 cleared at 2026-11-25 12:00 UTC"
    assert "site SITE-A: running drop" in message.get_payload(decode=True).decode()
    # Same flags at the next slot: nobody is told again.
    assert notify.notify(settings, [SPIKE, COLLAPSE], SLOT + TEN, tmp_path) == 0
    assert len(inbox.messages) == 1
    # The collapse clears, a wobble appears.
    assert notify.notify(settings, [SPIKE, WOBBLE], SLOT + 2 * TEN, tmp_path) == 0
    body = inbox.messages[-1][2].get_payload(decode=True).decode().replace("\r\n", "\n")
    assert len(inbox.messages) == 2
    assert "1 new, 1 cleared" in inbox.messages[-1][2]["Subject"]
    assert "Cleared (1):\n  site SITE-A: running drop" in body and "SITE-C_TEST" in body
    # A backfill of an older slot tells nobody and leaves the state alone.
    assert notify.notify(settings, [COLLAPSE], SLOT, tmp_path) == 0
    assert len(inbox.messages) == 2
    assert notify.notify(settings, [SPIKE, WOBBLE], SLOT + 3 * TEN, tmp_path) == 0
    assert len(inbox.messages) == 2


def test_email_over_starttls_with_login(tmp_path, tls_files, monkeypatch):
    key, cert = tls_files
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port(), tls_context=context,
                            require_starttls=True, authenticator=inbox.authenticate)
    controller.start()
    try:
        # The client trusts the test certificate through the default verify paths.
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))
        good = notify.EmailChannel("127.0.0.1", controller.port, "q@example.org",
                                   ["ops@example.org"], starttls=True, username="qmonit",
                                   password="s3cret", timeout=5)
        assert notify.notify(notify.Settings([good]), [COLLAPSE], SLOT, tmp_path / "a") == 0
        assert len(inbox.messages) == 1 and inbox.logins == [(b"qmonit", b"s3cret")]
        # Without STARTTLS the server refuses: logged, counted, retried next run.
        plain = notify.EmailChannel("127.0.0.1", controller.port, "q@example.org",
                                    ["ops@example.org"], timeout=5)
        assert notify.notify(notify.Settings([plain]), [COLLAPSE], SLOT, tmp_path / "b") == 1
        assert len(inbox.messages) == 1
    finally:
        controller.stop()


def test_webhook_posts_slack_json(tmp_path, hook):
    settings = notify.Settings([notify.WebhookChannel(hook.url, timeout=5)])
    assert notify.notify(settings, [COLLAPSE, SPIKE], SLOT, tmp_path) == 0
    (path, content_type, body), = hook.bodies
    assert path == "/hooks/T0/B0/secret-token" and content_type == "application/json"
    payload = json.loads(body)
    assert list(payload) == ["text"]
    assert payload["text"].startswith("QMonit suspicious: 2 new, 0 cleared")
    assert notify.notify(settings, [COLLAPSE, SPIKE], SLOT + TEN, tmp_path) == 0
    assert len(hook.bodies) == 1


def test_failed_delivery_is_logged_counted_and_retried(tmp_path, hook, smtp_server, caplog):
    controller, inbox = smtp_server
    email = notify.EmailChannel("127.0.0.1", controller.port, "q@example.org", ["o@example.org"],
                                timeout=5)
    settings = notify.Settings([email, notify.WebhookChannel(hook.url, timeout=5)])
    hook.status = 500
    with caplog.at_level(logging.WARNING, logger="qmonit.sinks.notify"):
        assert notify.notify(settings, [COLLAPSE], SLOT, tmp_path) == 1
    assert len(inbox.messages) == 1 and len(hook.bodies) == 1
    (record,) = caplog.records
    assert "webhook http://127.0.0.1:" in record.getMessage()
    assert "HTTP 500" in record.getMessage()
    assert "secret-token" not in caplog.text
    # The next run: email has nothing new; the webhook gets the digest it missed.
    hook.status = 200
    assert notify.notify(settings, [COLLAPSE], SLOT + TEN, tmp_path) == 0
    assert len(inbox.messages) == 1 and len(hook.bodies) == 2
    assert "1 new" in json.loads(hook.bodies[-1][2])["text"]


def test_unreachable_smtp_is_one_error(tmp_path, caplog):
    channel = notify.EmailChannel("127.0.0.1", free_port(), "q@example.org", ["o@example.org"],
                                  timeout=2)
    with caplog.at_level(logging.WARNING, logger="qmonit.sinks.notify"):
        assert notify.notify(notify.Settings([channel]), [COLLAPSE], SLOT, tmp_path) == 1
    assert "SMTP 127.0.0.1:" in caplog.text


def test_levels_filter_and_dry_run_prints_without_state(tmp_path, hook, capsys):
    settings = notify.Settings([notify.WebhookChannel(hook.url, timeout=5)], levels=("site",))
    assert notify.notify(settings, [COLLAPSE, SPIKE], SLOT, tmp_path, dry_run=True) == 0
    out = capsys.readouterr().out
    assert out.startswith("# would notify by webhook (webhook http://127.0.0.1:")
    assert "SITE-A" in out and "SITE-B" not in out
    assert hook.bodies == [] and not (tmp_path / "state").exists()
