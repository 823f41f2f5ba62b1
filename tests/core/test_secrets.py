"""Secrets stay out of logs and errors; SMTP logins only over TLS (issue 12)."""
import logging
from types import SimpleNamespace

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from conftest import free_port_url, recent_hour, stamp, write_config

import fetch_queues
from qmonit.core import cli, redact
from qmonit.core import config as config_module
from qmonit.core.errors import ConfigError, SinkError
from qmonit.dev.devservers import free_port
from qmonit.sinks import notify


def test_influxdb_url_with_userinfo_never_printed(tmp_path, mariadb_server, sim, database_name,
                                                  capsys):
    down = free_port_url().replace("http://", "http://qmonit:Pa55word-x@")
    path = write_config(tmp_path / "c.cfg", down, mariadb_server.port, database_name, sim.url,
                        tmp_path / "data")
    assert fetch_queues.main(["--config", str(path), "--timestamp", stamp(recent_hour())]) == 1
    err = capsys.readouterr().err
    assert "InfluxDB" in err and "Pa55word-x" not in err and "qmonit:" not in err


def test_log_lines_and_errors_are_redacted(tmp_path, capsys):
    path = tmp_path / "c.cfg"
    path.write_text("[credentials]\npassword = db-pass-1\n[notifications]\n"
                    "webhook_url = https://hooks.example.org/services/T0/B0/XsecretX\n"
                    "[credentials_monit_grafana]\ntoken = tok-abcdef\n")
    config_module.load(str(path), str(tmp_path / "s.py"))
    cli.setup_logging(SimpleNamespace(debug=True, quiet=False))
    log = logging.getLogger("qmonit.test")
    log.debug("POST %s: 200", "https://hooks.example.org/services/T0/B0/XsecretX")
    log.warning("login with db-pass-1 and Authorization: Bearer eyJhbGciOi.x-y")
    with cli.exit_codes("prog"):
        raise SinkError("https://u:tok-abcdef@x.org/a", "refused tok-abcdef")
    err = capsys.readouterr().err
    for secret in ("XsecretX", "db-pass-1", "eyJhbGciOi", "tok-abcdef", "u:"):
        assert secret not in err
    assert "https://hooks.example.org***: 200" in err and "Bearer ***" in err
    cli.setup_logging(SimpleNamespace(debug=False, quiet=False))


def test_redact_leaves_ordinary_text_alone():
    text = "queue CERN-PROD ops@example.org http://host:8086/query?db=x"
    assert redact.redact(text) == text


def settings_from(tmp_path, text):
    path = tmp_path / "n.cfg"
    path.write_text(text)
    return notify.Settings.from_config(config_module.load(str(path), str(tmp_path / "s.py")))


def test_smtp_login_without_tls_is_a_config_error(tmp_path):
    base = ("[notifications]\nsmtp_host = mail\nemail_to = a@b.org\nsmtp_username = q\n"
            "smtp_password = pw-123\n")
    with pytest.raises(ConfigError, match=r"\[notifications\] smtp_starttls") as e:
        settings_from(tmp_path, base)
    assert e.value.exit_code == 2 and "pw-123" not in str(e.value)
    for extra in ("smtp_starttls = yes\n", "smtp_ssl = yes\n", "smtp_allow_plain = yes\n"):
        assert settings_from(tmp_path, base + extra).channels


class Inbox:
    def __init__(self):
        self.logins = []

    async def handle_DATA(self, server, session, envelope):
        return "250 OK"

    def authenticate(self, server, session, envelope, mechanism, auth_data):
        self.logins.append((auth_data.login, auth_data.password))
        return AuthResult(success=True)


def test_smtp_password_never_sent_in_plain_text_unless_allowed():
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port(),
                            authenticator=inbox.authenticate, auth_require_tls=False)
    controller.start()
    try:
        plain = notify.EmailChannel("127.0.0.1", controller.port, "q@x.org", ["o@x.org"],
                                    username="q", password="pw-123", timeout=5)
        with pytest.raises(SinkError, match="plain text"):
            plain.send("s", "t")
        assert inbox.logins == []
        allowed = notify.EmailChannel("127.0.0.1", controller.port, "q@x.org", ["o@x.org"],
                                      username="q", password="pw-123", timeout=5,
                                      allow_plain=True)
        allowed.send("s", "t")
        assert inbox.logins == [(b"q", b"pw-123")]
    finally:
        controller.stop()
