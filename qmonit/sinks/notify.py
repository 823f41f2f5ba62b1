"""Notifications of suspicious flags: one digest per run of what is new and what cleared,
by email (SMTP) and/or a webhook (JSON {"text": ...}, as Slack and Mattermost accept).

Each channel remembers under data_dir what it last delivered, so nobody is told the same
thing every 10 minutes, and a digest that could not be sent is retried by the next run. A
failed delivery is logged and counted; it never fails the run.
"""
import datetime as dt
import json
import logging
import smtplib
import ssl
import sys
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from urllib.parse import urlsplit

from ..core import http
from ..core.errors import ConfigError, QMonitError, SinkError
from ..core.files import State, ahead_of_clock

log = logging.getLogger(__name__)

SECTION = "notifications"
LEVELS = ("site", "queue")
STATE_NAME = "suspicious_notifications"


class EmailChannel:
    name = "email"

    def __init__(self, host, port, sender, recipients, starttls=False, username="",
                 password="", timeout=20, smtps=False, allow_plain=False, name="email"):
        self.name = name    # where the channel's delivered state is kept
        self.host, self.port = host, port
        self.sender, self.recipients = sender, list(recipients)
        self.starttls = starttls
        # The password goes over TLS only (STARTTLS or SMTPS) unless plain text is allowed.
        self.smtps, self.allow_plain = smtps, allow_plain
        self.username, self.password = username, password
        self.timeout = timeout

    @property
    def target(self):
        return f"SMTP {self.host}:{self.port}"

    def send(self, subject, text):
        message = EmailMessage()
        message["Subject"] = subject
        message["From"] = self.sender
        message["To"] = ", ".join(self.recipients)
        message["Date"] = formatdate(usegmt=True)
        message["Message-ID"] = make_msgid(domain=self.sender.rpartition("@")[2] or None)
        message.set_content(text)
        if self.username and not (self.starttls or self.smtps or self.allow_plain):
            raise SinkError(self.target, "not sending the SMTP password in plain text (set "
                            "smtp_starttls or smtp_ssl, or smtp_allow_plain = yes)")
        try:
            if self.smtps:
                connection = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout,
                                              context=ssl.create_default_context())
            else:
                connection = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
            with connection as smtp:
                if self.starttls and not self.smtps:
                    smtp.starttls(context=ssl.create_default_context())
                if self.username:
                    smtp.login(self.username, self.password)
                smtp.send_message(message)
        except (smtplib.SMTPException, OSError) as e:
            raise SinkError(self.target, _reason(e)) from None


class WebhookChannel:
    name = "webhook"

    def __init__(self, url, timeout=20, session=None, name="webhook"):
        self.name = name
        self.url = url
        self.timeout = timeout
        self.session = session or http.session()

    @property
    def target(self):
        # Webhook URLs carry their secret in the path: name the server only.
        parts = urlsplit(self.url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
        return f"webhook {parts.scheme}://{host}{port}"

    def send(self, subject, text):
        try:
            http.fetch(self.session, self.url, self.timeout, method="POST",
                       data=json.dumps({"text": text}).encode(),
                       headers={"Content-Type": "application/json"})
        except QMonitError as e:
            reason = str(getattr(e, "reason", e))
            parts = urlsplit(self.url)
            secret = parts.path + (f"?{parts.query}" if parts.query else "")
            if len(secret) > 1:
                reason = reason.replace(secret, "/...")
            raise SinkError(self.target, reason) from None


def _reason(error):
    if isinstance(error, smtplib.SMTPResponseException):
        text = error.smtp_error
        if isinstance(text, bytes):
            text = text.decode("utf-8", "replace")
        return f"{error.smtp_code} {' '.join(text.split())}"
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        return "recipients refused: " + ", ".join(sorted(error.recipients))
    text = " ".join(str(error).split())
    return text or type(error).__name__


class Settings:
    """The [notifications] section: channels, which levels, and how long a digest may be;
    [routes]: extra channels for the flags of some clouds or sites."""

    def __init__(self, channels=(), levels=LEVELS, max_items=50, routes=()):
        self.channels = list(channels)
        self.levels = tuple(levels)
        self.max_items = max_items
        self.routes = list(routes)      # (cloud or site, channel)

    def targets(self):
        """(channel, does this flag go to it) for the default channels and the routes."""
        out = [(channel, lambda f: True) for channel in self.channels]
        for key, channel in self.routes:
            key = key.lower()
            out.append((channel, lambda f, key=key: key in (str(f.cloud).lower(),
                                                            str(f.atlas_site).lower())))
        return out

    @classmethod
    def from_config(cls, config):
        channels = []
        host = config.get(SECTION, "smtp_host", "")
        if host:
            recipients = config.get_list(SECTION, "email_to", "")
            if not recipients:
                raise ConfigError(config.path, "needed when smtp_host is set", SECTION,
                                  "email_to")
            channels.append(EmailChannel(
                host, config.get_int(SECTION, "smtp_port", 25, minimum=1),
                config.get(SECTION, "email_from", "qmonit@localhost"), recipients,
                starttls=config.get_bool(SECTION, "smtp_starttls", False),
                username=config.get(SECTION, "smtp_username", ""),
                password=config.get(SECTION, "smtp_password", ""),
                timeout=config.get_float(SECTION, "timeout", 20),
                smtps=config.get_bool(SECTION, "smtp_ssl", False),
                allow_plain=config.get_bool(SECTION, "smtp_allow_plain", False)))
            email = channels[-1]
            if email.username and not (email.starttls or email.smtps or email.allow_plain):
                raise ConfigError(config.path, "smtp_username is set: the password needs TLS "
                                  "(smtp_starttls = yes or smtp_ssl = yes), or "
                                  "smtp_allow_plain = yes", SECTION, "smtp_starttls")
        url = config.get(SECTION, "webhook_url", "")
        if url:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise ConfigError(config.path, "not an http(s) URL", SECTION, "webhook_url")
            channels.append(WebhookChannel(url, config.get_float(SECTION, "timeout", 20)))
        levels = config.get_list(SECTION, "levels", list(LEVELS))
        bad = [level for level in levels if level not in LEVELS]
        if bad or not levels:
            raise ConfigError(config.path, f"levels are {' and '.join(LEVELS)}, "
                              f"got {', '.join(bad or levels) or 'none'}", SECTION, "levels")
        timeout = config.get_float(SECTION, "timeout", 20)
        return cls(channels, levels, config.get_int(SECTION, "max_items", 50, minimum=1),
                   _routes(config, host, timeout))


ROUTES = "routes"


def _routes(config, smtp_host, timeout):
    """[routes]: cloud or atlas_site = comma-separated email addresses and webhook URLs.
    Keys compare without case (INI keys have none)."""
    routes = []
    for key in config.keys(ROUTES):
        emails, hooks = [], []
        for item in config.get_list(ROUTES, key, ""):
            if item.startswith(("http://", "https://")) and urlsplit(item).netloc:
                hooks.append(item)
            elif "@" in item and " " not in item:
                emails.append(item)
            else:
                raise ConfigError(config.path, f"not an email address or http(s) URL: "
                                  f"{item.split('?')[0][:60]!r}", ROUTES, key)
        if emails:
            if not smtp_host:
                raise ConfigError(config.path, "email recipients need [notifications] "
                                  "smtp_host", ROUTES, key)
            routes.append((key, EmailChannel(
                smtp_host, config.get_int(SECTION, "smtp_port", 25, minimum=1),
                config.get(SECTION, "email_from", "qmonit@localhost"), emails,
                starttls=config.get_bool(SECTION, "smtp_starttls", False),
                username=config.get(SECTION, "smtp_username", ""),
                password=config.get(SECTION, "smtp_password", ""), timeout=timeout,
                smtps=config.get_bool(SECTION, "smtp_ssl", False),
                allow_plain=config.get_bool(SECTION, "smtp_allow_plain", False),
                name=f"route {key} email")))
        for i, url in enumerate(hooks):
            routes.append((key, WebhookChannel(url, timeout, name=f"route {key} webhook {i}")))
    return routes


def flag_id(flag):
    """A flag's identity across runs: where, which status, which way."""
    return "|".join((flag.level, flag.atlas_site, flag.panda_queue, flag.prod_source,
                     flag.resource, flag.job_status, flag.direction))


def label(flag):
    if flag.level == "site":
        return f"site {flag.atlas_site}: {flag.job_status} {flag.direction}"
    return (f"queue {flag.panda_queue} {flag.prod_source}/{flag.resource} "
            f"({flag.atlas_site}): {flag.job_status} {flag.direction}")


def describe(flag):
    ratio = "new" if flag.ratio is None else f"x{flag.ratio:.2f}"
    held = getattr(flag, "slots", None) or 1
    return (f"{label(flag)}, {flag.current} jobs vs baseline {flag.baseline:.1f} ({ratio}), "
            f"score {flag.score:.0f}" + (f", {held} slots" if held > 1 else ""))


def digest(new, cleared, slot, max_items, links=None):
    """(subject, text) of one digest; pure. new: flags, highest score first; cleared: labels;
    links: {flag_id: [URL]} listed under each new flag."""
    links = links or {}
    when = slot.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M")
    subject = f"QMonit suspicious: {len(new)} new, {len(cleared)} cleared at {when} UTC"
    lines = [subject]
    if new:
        lines += ["", f"New ({len(new)}), highest score first:"]
        for f in new[:max_items]:
            lines.append(f"  {describe(f)}")
            lines += [f"    {url}" for url in links.get(flag_id(f), ())]
        if len(new) > max_items:
            lines.append(f"  ... and {len(new) - max_items} more")
    if cleared:
        lines += ["", f"Cleared ({len(cleared)}):"]
        lines += [f"  {text}" for text in cleared[:max_items]]
        if len(cleared) > max_items:
            lines.append(f"  ... and {len(cleared) - max_items} more")
    return subject, "\n".join(lines) + "\n"


def due(flag, notify_after=1, quiet=()):
    """Whether a flag is to be told about: not suppressed, held notify_after slots, and not
    of a quiet (job_status, direction)."""
    # A flag without context (None) is unsuppressed and new.
    return ((getattr(flag, "suppressed", None) or "no") == "no"
            and (getattr(flag, "slots", None) or 1) >= notify_after
            and (flag.job_status, flag.direction) not in quiet)


def changes(flags, delivered, notify_after=1, quiet=()):
    """(new flags by descending score, labels of cleared flags) against a delivered
    {flag_id: label}; pure. New: due and not told yet; cleared: told and no longer flagged
    (a told flag that turns suppressed is not cleared: it has not ended)."""
    current = {flag_id(f): f for f in flags}
    new = sorted((f for i, f in current.items()
                  if i not in delivered and due(f, notify_after, quiet)),
                 key=lambda f: (-f.score, flag_id(f)))
    cleared = sorted(text for i, text in delivered.items() if i not in current)
    return new, cleared


def notify(settings, flags, slot, data_dir, dry_run=False, out=None, notify_after=1,
           links=None, quiet=()):
    """Send each channel (and each route) its digest of changes since what it last delivered;
    returns the number of channels that failed. A backfill (a slot older than the last one
    delivered) notifies nobody."""
    if not settings.channels and not settings.routes:
        return 0
    flags = [f for f in flags if f.level in settings.levels]
    state = State(data_dir, STATE_NAME)
    delivered = state.load().get("channels") or {}
    epoch = int(slot.timestamp())
    errors = 0
    everything = flags
    for channel, wanted in settings.targets():
        flags = [f for f in everything if wanted(f)]
        before = delivered.get(channel.name) or {}
        if int(before.get("slot", 0)) > epoch and not ahead_of_clock(
                int(before["slot"]), f"{state.path} ({channel.name})"):
            log.debug("%s: slot %s is older than the last delivered; not notifying",
                      channel.name, slot)
            continue
        told = before.get("flags") or {}
        new, cleared = changes(flags, told, notify_after, quiet)
        if new or cleared:
            subject, text = digest(new, cleared, slot, settings.max_items, links)
            if not _deliver(channel, subject, text, dry_run, out):
                errors += 1
                continue
            if dry_run:
                continue
            log.debug("%s: notified %d new, %d cleared", channel.name, len(new), len(cleared))
        current = {flag_id(f) for f in flags}
        told = {i: text for i, text in told.items() if i in current}
        told.update((flag_id(f), label(f)) for f in new)
        delivered[channel.name] = {"slot": epoch, "flags": told}
    if not dry_run:
        state.save({"channels": delivered})
    return errors


def send_notice(settings, subject, text, dry_run=False, out=None):
    """Send one notice (not a digest) to the default channels; returns the channels that
    failed (logged)."""
    return sum(not _deliver(channel, subject, text, dry_run, out, "notice")
               for channel in settings.channels)


def _deliver(channel, subject, text, dry_run=False, out=None, what="notification"):
    """Send one message by one channel (with dry_run: print it); False when it failed
    (logged)."""
    if dry_run:
        print(f"# would notify by {channel.name} ({channel.target}): {subject}",
              file=out or sys.stdout)
        print(text, end="", file=out or sys.stdout)
        return True
    try:
        channel.send(subject, text)
    except SinkError as e:
        log.warning("%s by %s failed: %s", what, channel.name, e)
        return False
    return True
