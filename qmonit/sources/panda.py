"""The PanDA job-statistics source: {queue: {label: {resource: {status: count}}}}."""
import logging

from ..core import http, schema
from ..core.errors import SourceError
from ..core.validate import count_problem, name_problem

log = logging.getLogger(__name__)

V1_PATH = "/api/v1/statistics/job_stats_by_site_share_and_resource_type"
LEGACY_PATH = "/server/panda/get_job_statistics_per_site_label_resource"
APIS = ("v1", "legacy")
MAX_TIME_WINDOW = 60


def stats_url(base_url, api, time_window):
    path = V1_PATH if api == "v1" else LEGACY_PATH
    return f"{base_url.rstrip('/')}{path}?time_window={int(time_window)}"


def fetch_job_stats(session, base_url, api, time_window, timeout, problems=None,
                    max_bytes=http.DEFAULT_MAX_BYTES):
    """Ask PanDA for the job counts; SourceError names the URL when anything is wrong.

    Bad records are left out, each with one warning, and listed in problems."""
    url = stats_url(base_url, api, time_window)
    text = http.fetch(session, url, timeout, headers={"Accept": "application/json"},
                      max_bytes=max_bytes)
    payload = http.parse_json(url, text, allow_python_literal=True)
    if api == "v1":
        if not isinstance(payload, dict) or "data" not in payload:
            raise SourceError(url, "reply has no 'data'")
        if payload.get("success") is not True:
            message = " ".join(str(payload.get("message") or "no message").split())[:200]
            raise SourceError(url, f"success is false: {message}")
        payload = payload["data"]
    return validate(url, payload, problems)


# Warnings for bad records beyond this many are summed up in one line.
MAX_WARNINGS = 20


def validate(url, stats, problems=None):
    """The four-level counts with every bad record left out: names both stores keep the same
    way (core.validate), non-negative int64 counts; a null label or resource type counts
    under 'unknown'. Only a reply that is not an object of queues raises SourceError."""
    if not isinstance(stats, dict):
        raise SourceError(url, f"expected an object of queues, got {type(stats).__name__}")
    problems = [] if problems is None else problems
    first = len(problems)
    clean = {}
    for queue, labels in stats.items():
        why = name_problem(queue) or (None if isinstance(labels, dict)
                                      else "expected an object of labels")
        if why:
            problems.append(f"queue {_show(queue)}: {why}")
            continue
        for label, resources in labels.items():
            label = schema.UNKNOWN if label is None else label
            why = name_problem(label) or (None if isinstance(resources, dict)
                                          else "expected an object of resource types")
            if why:
                problems.append(f"{_show(queue)}/{_show(label)}: {why}")
                continue
            for resource, statuses in resources.items():
                resource = schema.UNKNOWN if resource is None else resource
                where = f"{_show(queue)}/{_show(label)}/{_show(resource)}"
                why = name_problem(resource) or (None if isinstance(statuses, dict)
                                                 else "expected an object")
                if why:
                    problems.append(f"{where}: {why}")
                    continue
                for status, count in statuses.items():
                    why = name_problem(status) or count_problem(count)
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


def _show(name):
    text = name if isinstance(name, str) and name.isprintable() else repr(name)
    return text if len(text) <= 60 else f"{text[:60]}... ({len(text)} characters)"


def time_window(configured, last_slot, slot):
    """Minutes since the last successful slot, at least the configured value, at most 60.

    So a missed cron run loses no finished or failed jobs (configured is 1..60)."""
    window = configured
    if last_slot is not None and slot > last_slot:
        window = max(configured, int((slot - last_slot).total_seconds() // 60))
    return min(window, MAX_TIME_WINDOW)
