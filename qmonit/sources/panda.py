"""The PanDA job-statistics source: {queue: {label: {resource: {status: count}}}}."""
import logging

from ..core import http, redact, schema, tls
from ..core.errors import ConfigError, SourceError
from ..core.validate import count_problem, name_problem

log = logging.getLogger(__name__)

V1_PATH = "/api/v1/statistics/job_stats_by_site_share_and_resource_type"
LEGACY_PATH = "/server/panda/get_job_statistics_per_site_label_resource"
APIS = ("v1", "legacy")
MAX_TIME_WINDOW = 60
# How PanDA writes a key it has no value for: null in JSON (which json.dumps makes "null"),
# None in the text reply; and an empty string.
NULL_KEYS = (None, "", "None", "null")


def session(config):
    """A session for [panda]: its CA and client certificate (X509_CERT_DIR, X509_USER_PROXY
    when empty) and, with token_file, the OIDC token as a bearer with Origin = vo."""
    s = http.session(tls=tls.settings(config, "panda", grid=True))
    token_file = config.get("panda", "token_file", "")
    if token_file:
        try:
            with open(token_file, encoding="utf-8") as f:
                token = f.read().strip()
        except OSError as e:
            raise ConfigError(config.path, f"{token_file}: {e.strerror}", "panda",
                              "token_file") from None
        if not token:
            raise ConfigError(config.path, f"{token_file} is empty", "panda", "token_file")
        redact.add_secret(token)
        s.headers["Authorization"] = f"Bearer {token}"
        s.headers["Origin"] = config.get("panda", "vo", "atlas") or "atlas"
    return s


def stats_url(base_url, api, time_window):
    path = V1_PATH if api == "v1" else LEGACY_PATH
    return f"{base_url.rstrip('/')}{path}?time_window={int(time_window)}"


def fetch_job_stats(session, base_url, api, time_window, timeout, problems=None,
                    max_bytes=http.DEFAULT_MAX_BYTES):
    """Ask PanDA for the job counts; SourceError names the URL when anything is wrong.

    Bad records are left out, each with one warning, and listed in problems."""
    url = stats_url(base_url, api, time_window)
    try:
        text = http.fetch(session, url, timeout, headers={"Accept": "application/json"},
                          max_bytes=max_bytes)
    except SourceError as e:
        if api == "legacy" and "HTTP 403" in e.reason:
            raise SourceError(url, f"{e.reason} -- this PanDA server no longer offers the legacy "
                                   "statistics call (removed in May 2026): set [panda] api = v1"
                              ) from None
        raise
    payload = http.parse_json(url, text, allow_python_literal=True)
    if api == "v1":
        if not isinstance(payload, dict) or "data" not in payload:
            raise SourceError(url, "reply has no 'data'")
        if payload.get("success") is not True:
            message = " ".join(str(payload.get("message") or "no message").split())[:200]
            if "secure connection" in message.lower():
                # What PanDA said to a caller without a proxy or token before November 2025.
                message += (" -- set [panda] cert (an X509 proxy; or X509_USER_PROXY) or "
                            "[panda] token_file")
            raise SourceError(url, f"success is false: {message}")
        payload = payload["data"]
    return null_keys_to_unknown(url, validate(url, payload, problems))


# Warnings for bad records beyond this many are summed up in one line.
MAX_WARNINGS = 20


def validate(url, stats, problems=None):
    """The four-level counts with every bad record left out: names both stores keep the same
    way (core.validate), non-negative int64 counts. Null keys are kept for
    null_keys_to_unknown. Only a reply that is not an object of queues raises SourceError."""
    if not isinstance(stats, dict):
        raise SourceError(url, f"expected an object of queues, got {type(stats).__name__}")
    problems = [] if problems is None else problems
    first = len(problems)
    clean = {}
    for queue, labels in stats.items():
        why = _name_problem(queue) or (None if isinstance(labels, dict)
                                       else "expected an object of labels")
        if why:
            problems.append(f"queue {_show(queue)}: {why}")
            continue
        for label, resources in labels.items():
            why = _name_problem(label) or (None if isinstance(resources, dict)
                                           else "expected an object of resource types")
            if why:
                problems.append(f"{_show(queue)}/{_show(label)}: {why}")
                continue
            for resource, statuses in resources.items():
                where = f"{_show(queue)}/{_show(label)}/{_show(resource)}"
                why = _name_problem(resource) or (None if isinstance(statuses, dict)
                                                  else "expected an object")
                if why:
                    problems.append(f"{where}: {why}")
                    continue
                for status, count in statuses.items():
                    why = _name_problem(status) or count_problem(count)
                    if why:
                        problems.append(f"{where}/{_show(status)}: {why}")
                        continue
                    counts = clean.setdefault(queue, {}).setdefault(label, {}).setdefault(
                        resource, {})
                    counts[status] = counts.get(status, 0) + count
    new = problems[first:]
    for problem in new[:MAX_WARNINGS]:
        log.warning("%s: left out %s", url, problem)
    if len(new) > MAX_WARNINGS:
        log.warning("%s: left out %d more bad records", url, len(new) - MAX_WARNINGS)
    return clean


def _name_problem(key):
    # Null and empty keys are PanDA's "unknown" (null_keys_to_unknown), not bad records.
    return None if _is_null(key) else name_problem(key)


def _show(name):
    text = name if isinstance(name, str) and name.isprintable() else repr(name)
    return text if len(text) <= 60 else f"{text[:60]}... ({len(text)} characters)"


def null_keys_to_unknown(url, stats):
    """Count null or empty queue, label, resource and status keys under "unknown" (added to
    what is there already), with one warning; the other keys are left as they are."""
    if not any(_is_null(k) for k in _all_keys(stats)):
        return stats
    out, series = {}, 0
    for queue, labels in stats.items():
        for label, resources in labels.items():
            for resource, statuses in resources.items():
                for status, count in statuses.items():
                    keys = (queue, label, resource, status)
                    series += any(_is_null(k) for k in keys)
                    q, lab, res, st = (schema.UNKNOWN if _is_null(k) else str(k) for k in keys)
                    counts = out.setdefault(q, {}).setdefault(lab, {}).setdefault(res, {})
                    counts[st] = counts.get(st, 0) + count
    log.warning("%s: %d series with a null or empty key, counted under %r", url, series,
                schema.UNKNOWN)
    return out


def _is_null(key):
    return key in NULL_KEYS or not isinstance(key, str) or not key.strip()


def _all_keys(stats):
    """The distinct keys at every level (a few thousand for 25k series)."""
    keys = set(stats)
    for labels in stats.values():
        keys.update(labels)
        for resources in labels.values():
            keys.update(resources)
            for statuses in resources.values():
                keys.update(statuses)
    return keys


def time_window(configured, last_slot, slot):
    """Minutes since the last successful slot, at least the configured value, at most 60.

    So a missed cron run loses no finished or failed jobs (configured is 1..60)."""
    window = configured
    if last_slot is not None and slot > last_slot:
        window = max(configured, int((slot - last_slot).total_seconds() // 60))
    return min(window, MAX_TIME_WINDOW)
