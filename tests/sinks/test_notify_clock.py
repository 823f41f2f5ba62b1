"""Notification state from a run with the clock far ahead does not silence later runs."""
import datetime as dt

from conftest import CLOCK

from qmonit.jobs.suspicious import Flag
from qmonit.sinks import notify


class Recorder:
    name, target = "recorder", "recorder"

    def __init__(self):
        self.sent = []

    def send(self, subject, text):
        self.sent.append(subject)


def flag(site):
    # By name: other fields (added later) keep None.
    values = dict.fromkeys(Flag._fields)
    values.update(level="site", atlas_site=site, panda_queue="all", prod_source="all",
                  resource="all", job_status="running", cloud="DE", direction="drop",
                  current=1.0, baseline=100.0, ratio=0.01, score=9.0)
    return Flag(**values)


def test_state_ahead_of_the_clock_is_not_trusted(tmp_path, caplog):
    channel = Recorder()
    settings = notify.Settings([channel])
    now = CLOCK.replace(minute=0, second=0, microsecond=0)
    assert notify.notify(settings, [flag("A")], now + dt.timedelta(days=400), tmp_path) == 0
    assert notify.notify(settings, [flag("B")], now, tmp_path) == 0
    assert len(channel.sent) == 2 and "not trusted" in caplog.text
