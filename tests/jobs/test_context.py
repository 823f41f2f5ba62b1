"""Suspicious flags in context: why a flag is expected (queue status, downtime, silence), for
how many slots it has held, who is told (notify_after, routes, links) and the dead-man switch.
Pure parts first, then suspicious.py on the real InfluxDB and MariaDB with the simulator."""
import datetime as dt
import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from conftest import recent_slot, stamp, write_config

import suspicious as script
from qmonit.core import config as config_module
from qmonit.core import schema
from qmonit.jobs import context, deadman, fetch, suspicious, transform
from qmonit.sinks import notify, silences
from qmonit.sinks.influx import Influx
from qmonit.sources import cric, downtime

UTC = dt.UTC
SLOT = dt.timedelta(minutes=10)
T0 = dt.datetime(2026, 11, 25, 12, 0, tzinfo=UTC)   # pure tests only
HOUR = 3600


def flag(queue="Q1", site="S1", status="running", direction="drop", level="queue", **kw):
    return suspicious.Flag(level, site, queue, "managed" if level == "queue" else "all",
                           "SCORE" if level == "queue" else "all", status, "DE", direction,
                           0, 100.0, 0.0, 600.0, **kw)


# --- pure ---------------------------------------------------------------------------------

def test_flag_carries_every_tag_and_field_of_the_measurement():
    assert set(suspicious.Flag._fields) == set(schema.SUSPICIOUS.tags + schema.SUSPICIOUS.fields)
    point = suspicious.flag_points([flag(suppressed="downtime", slots=3)], T0)[0]
    assert point.tags[schema.SUPPRESSED] == "downtime" and point.fields["slots"] == 3


def test_status_history_stamps_changes_and_ignores_backfills():
    epoch = int(T0.timestamp())
    h = context.update_history({}, {"Q1": "online", "Q2": "offline"}, epoch)
    assert context.status_at(h, "Q1", epoch) == ("online", 0)   # first sighting: forever
    h = context.update_history(h, {"Q1": "brokeroff", "Q2": "offline"}, epoch + 600)
    assert context.status_at(h, "Q1", epoch + 600) == ("brokeroff", epoch + 600)
    assert context.status_at(h, "Q1", epoch) == ("online", 0)
    assert context.update_history(h, {"Q1": "test"}, epoch) == h   # an older slot
    assert context.status_at(h, "NOPE", epoch) == (None, None)


def test_queue_statuses_key_on_panda_resource():
    dump = {"Q1-condor": {"panda_resource": "Q1", "status": "Offline"},
            "Q2": {"status": None}, "junk": "x"}
    assert context.queue_statuses(dump) == {"Q1": "offline", "Q2": schema.UNKNOWN}


def test_queue_reasons_in_order():
    epoch = int(T0.timestamp())
    history = context.update_history({}, {"ON": "online", "OFF": "offline", "NEW": "brokeroff"},
                                     epoch - 5 * HOUR)
    history = context.update_history(history, {"NEW": "online"}, epoch - HOUR)
    outages = {"DOWN": [(epoch - 3 * HOUR, epoch - HOUR)]}
    silence = silences.Silence(1, "QUIET", None, T0 - SLOT, T0 + SLOT, "why")
    c = context.Context(epoch, 2 * HOUR, T0, history, outages, [silence])
    assert c.queue_reason(flag("OFF")) == "queue_status"
    assert c.queue_reason(flag("NEW")) == "queue_status"        # online for 1 h < grace
    assert c.queue_reason(flag("ON")) == "no"
    assert c.queue_reason(flag("ON", "DOWN")) == "downtime"      # ended 1 h ago < grace
    assert c.queue_reason(flag("ON", "QUIET")) == "silenced"
    assert c.queue_reason(flag("UNKNOWN_TO_CRIC")) == "no"
    later = context.Context(epoch + 2 * HOUR, 2 * HOUR, T0, history, outages, [silence])
    assert later.queue_reason(flag("NEW")) == "no" and later.queue_reason(flag("ON", "DOWN")) \
        == "no"
    # A silence has ended by the run's time: it no longer applies.
    assert context.Context(epoch, 0, T0 + SLOT, history, {}, [silence]).queue_reason(
        flag("ON", "QUIET")) == "no"


def test_site_flags_take_the_reason_of_most_of_the_change():
    epoch = int(T0.timestamp())
    history = context.update_history({}, {"A": "offline", "B": "online", "C": "online"}, 0)
    c = context.Context(epoch, 0, T0, history, {}, [])
    site = flag("all", "S1", level="site")
    assert c.site_reason(site, {"A": -600, "B": -400}) == "queue_status"
    assert c.site_reason(site, {"A": -400, "B": -600}) == "no"
    assert c.site_reason(site, {"A": -600, "B": -600, "C": 600}) == "queue_status"
    queue_silence = silences.Silence(2, "B", "running", T0 - SLOT, T0 + SLOT, "x")
    c = context.Context(epoch, 0, T0, history, {"S1": [(epoch - 60, epoch + 60)]},
                        [queue_silence])
    assert c.site_reason(site, {"B": -600, "C": -100}) == "downtime"
    c = context.Context(epoch, 0, T0, history, {}, [queue_silence])
    assert c.site_reason(site, {"B": -600, "C": -100}) == "silenced"
    assert c.site_reason(site._replace(job_status="failed"), {"B": -600, "C": -100}) == "no"


def test_downtime_feed_entries():
    feed = {
        "SITE-A": [{"severity": "OUTAGE", "start_time": "2026-12-01T08:00:00",
                    "end_time": "2026-12-01T12:00:00", "site": "SITE-A", "rc_site": "RC-A"},
                   {"severity": "WARNING", "start_time": "2026-12-01T08:00:00",
                    "end_time": "2026-12-01T12:00:00"},
                   {"severity": "OUTAGE", "start_time": "bad", "end_time": None}],
        "RC-B": {"7": {"severity": "OUTAGE", "start_time": "2026-12-02T00:00:00",
                       "end_time": "2026-12-02T01:00:00", "site": "SITE-B"}},
    }
    out = downtime.outages(feed)
    start = dt.datetime(2026, 12, 1, 8, tzinfo=UTC).timestamp()
    assert out["SITE-A"] == [(start, start + 4 * HOUR)] == out["RC-A"]
    assert set(out) == {"SITE-A", "RC-A", "RC-B", "SITE-B"}
    assert downtime.outages([]) == {}


def test_notify_after_suppressed_quiet_and_cleared():
    new_flag = flag("Q1", slots=1)
    held = flag("Q2", slots=2)
    hidden = flag("Q3", slots=5, suppressed="downtime")
    good_news = flag("Q4", status="failed", slots=3)
    new, cleared = notify.changes([new_flag, held, hidden, good_news], {}, notify_after=2,
                                  quiet=(("failed", "drop"),))
    assert new == [held] and cleared == []
    # A told flag that turns suppressed has not ended; one that is gone has.
    told = {notify.flag_id(held): notify.label(held), notify.flag_id(new_flag): "Q1 text"}
    new, cleared = notify.changes([held._replace(suppressed="silenced")], told, 2)
    assert new == [] and cleared == ["Q1 text"]


def test_links_point_at_bigpanda():
    rules = suspicious.Rules(bigpanda_url="https://bigpanda.example.org/")
    series = [_avg("Q A/1", "S1"), _avg("Q2", "S1"), _avg("Q3", "S2")]
    links = suspicious.flag_links([flag("Q A/1", "S1", "failed", "spike"),
                                   flag("all", "S1", level="site")], series, rules)
    assert links[notify.flag_id(flag("Q A/1", "S1", "failed", "spike"))] == [
        "https://bigpanda.example.org/jobs/?computingsite=Q%20A%2F1&jobstatus=failed&hours=24"]
    assert links[notify.flag_id(flag("all", "S1", level="site"))] == [
        "https://bigpanda.example.org/site/Q%20A%2F1/", "https://bigpanda.example.org/site/Q2/"]
    _, text = notify.digest([flag("Q2", "S1", slots=3)], [], T0, 10,
                            {notify.flag_id(flag("Q2", "S1")): ["https://x/jobs/?q=Q2"]})
    assert "3 slots\n    https://x/jobs/?q=Q2\n" in text


def _avg(queue, site):
    from qmonit.jobs import averages
    return averages.Average(queue, "managed", "SCORE", "running", site, "DE", "T2", current=1,
                            coverage=1.0, **{w: 1.0 for w in schema.AVERAGE_WINDOWS})


def test_routes_from_config(tmp_path):
    text = ("[notifications]\nsmtp_host = mail.example.org\nemail_to = ops@example.org\n"
            "[routes]\nDE = de@example.org, https://hooks.example.org/de\n"
            "CERN-PROD = https://hooks.example.org/cern\n")
    config = config_module.Config.from_string(text, tmp_path / "c.cfg")
    settings = notify.Settings.from_config(config)
    targets = settings.targets()
    assert [c.name for c, _ in targets] == ["email", "route de email", "route de webhook 0",
                                            "route cern-prod webhook 0"]
    de, cern = flag("Q1", "S1"), flag("Q2", "CERN-PROD")._replace(cloud="CH")
    assert [wanted(de) for _, wanted in targets] == [True, True, True, False]
    assert [wanted(cern) for _, wanted in targets] == [True, False, False, True]
    bad = config_module.Config.from_string("[routes]\nDE = someone@example.org\n",
                                           tmp_path / "c.cfg")
    with pytest.raises(Exception, match=r"\[routes\] de: email recipients need"):
        notify.Settings.from_config(bad)
    bad = config_module.Config.from_string("[routes]\nDE = ftp://x\n", tmp_path / "c.cfg")
    with pytest.raises(Exception, match=r"\[routes\] de: not an email"):
        notify.Settings.from_config(bad)


# --- on the real servers -----------------------------------------------------------------

class Hook:
    """A loopback webhook receiver; keeps the texts it was sent."""

    def __init__(self):
        self.texts = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                hook.texts.append(json.loads(self.rfile.read(length))["text"])
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/secret"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hooks():
    made = [Hook(), Hook()]
    yield made
    for h in made:
        h.close()


@pytest.fixture
def events_sim(sim):
    sim.clear_events()
    yield sim
    sim.clear_events()


def write_history(sim, influx, slot, offsets):
    influx.ensure_database()
    queues = cric.queue_metadata(sim.cric_data("pandaqueue"))
    lines = []
    for k in offsets:
        at = slot - k * SLOT
        lines += transform.encode(schema.JOBS, transform.job_points(
            sim.expected_stats(at), queues, {}, at, 10))
    influx.write_lines(schema.RP_10M, lines)


def dominant_queues(sim, slot, count):
    """count big queues, each at its own site and holding most of its site's running jobs,
    online in CRIC: [(queue, site, cloud)]."""
    info = cric.queue_metadata(sim.cric_data("pandaqueue"))
    status = context.queue_statuses(sim.cric_data("pandaqueue"))
    stats = sim.expected_stats(slot)
    running, by_site = {}, {}
    for queue, labels in stats.items():
        if queue not in info:
            continue
        running[queue] = sum(s.get("running", 0) for rs in labels.values() for s in rs.values())
        by_site.setdefault(info[queue].atlas_site, []).append(queue)
    picks = []
    for site, queues in sorted(by_site.items()):
        total = sum(running[q] for q in queues)
        for q in queues:
            if running[q] >= 100 and running[q] >= 0.75 * total and status.get(q) == "online" \
                    and site != schema.UNKNOWN:
                picks.append((running[q], q, site, info[q].cloud))
    picks.sort(reverse=True)
    return [(q, site, cloud) for _, q, site, cloud in picks[:count]]


def select(influx, measurement, slot):
    [series] = influx.query(f"SELECT * FROM {measurement.qualified} "
                            f"WHERE time = {int(slot.timestamp())}s")
    if not series:
        return []
    columns = series[0]["columns"]
    return [dict(zip(columns, row)) for row in series[0]["values"]]


def run(path, *args):
    return script.main(["--config", str(path), *args])


def cycle(config, path, sim, slot):
    sim.set_time(slot + dt.timedelta(minutes=1))
    assert fetch.run(config, slot + dt.timedelta(minutes=1)) == 0
    assert run(path, "--timestamp", stamp(slot + dt.timedelta(minutes=3))) == 0


@pytest.fixture
def scene(tmp_path, influx_server, mariadb_server, events_sim, database_name, hooks):
    """Config with a downtime feed, a webhook and a route; a day of history."""
    def make(extra="", routes=""):
        sim = events_sim
        text = (f"\n[notifications]\nwebhook_url = {hooks[0].url}\ntimeout = 5\n"
                f"[suspicious]\nbigpanda_url = https://bigpanda.example.org\n{extra}\n")
        if routes:
            text += f"[routes]\n{routes}\n"
        path = write_config(tmp_path / "c.cfg", influx_server.url, mariadb_server.port,
                            database_name, sim.url, tmp_path / "data", text)
        # The feed lives in [cric]: add it there.
        from qmonit.dev.simulator import config_urls
        body = path.read_text().replace(
            "[cric]\n", f"[cric]\ndowntime_url = {config_urls(sim.url)['downtime_url']}\n", 1)
        path.write_text(body)
        config = config_module.load(str(path), str(script.__file__))
        influx = Influx.from_config(config)
        slot = recent_slot(4)
        write_history(sim, influx, slot, list(range(1, 7)) + list(range(12, 144, 12)))
        return path, config, influx, slot
    return make


def flag_key(flag):
    return tuple(flag.get(t) for t in schema.SUSPICIOUS.tags)


def test_each_reason_slots_expiry_links_and_cleared(scene, events_sim, hooks):
    sim = events_sim
    path, config, influx, slot = scene()
    (offline, s_off, _), (down, s_down, _), (quiet, s_quiet, _), (plain, s_plain, _) = \
        dominant_queues(sim, slot, 4)
    end = slot + 6 * SLOT
    for queue in (offline, down, quiet, plain):
        sim.add_anomaly(queue, "collapse", start=slot, end=end)
    sim.add_events(sim_events().from_dicts([
        {"kind": "offline", "queue": offline, "start": int(slot.timestamp()) - 600,
         "end": int(end.timestamp())},
        {"kind": "downtime", "site": s_down, "start": int(slot.timestamp()),
         "end": int(end.timestamp())}], sim.universe))
    # A silence of the whole site that ends between the first and the second run.
    assert run(path, "--timestamp", stamp(slot), "--silence", s_quiet, "--until",
               stamp(slot + SLOT + dt.timedelta(minutes=1)), "--reason", "CE upgrade") == 0

    cycle(config, path, sim, slot)
    flags = select(influx, schema.SUSPICIOUS, slot)
    first = {flag_key(f) for f in flags}

    def reason(queue, site, level="queue"):
        found = {f["suppressed"] for f in flags if f["level"] == level and
                 f["atlas_site"] == site and f["job_status"] == "running" and
                 f["direction"] == "drop" and (level == "site" or f["panda_queue"] == queue)}
        assert len(found) == 1, (queue, site, level, found)
        return found.pop()

    assert reason(offline, s_off) == reason(offline, s_off, "site") == "queue_status"
    assert reason(down, s_down) == reason(down, s_down, "site") == "downtime"
    assert reason(quiet, s_quiet) == reason(quiet, s_quiet, "site") == "silenced"
    assert reason(plain, s_plain) == reason(plain, s_plain, "site") == "no"
    assert {f["slots"] for f in flags} == {1}
    [digest] = hooks[0].texts
    assert f"queue {plain} " in digest and f"site {s_plain}: running drop" in digest
    assert offline not in digest and s_down not in digest and s_quiet not in digest
    assert (f"https://bigpanda.example.org/jobs/?computingsite={plain}&jobstatus=running"
            f"&hours=24") in digest
    assert f"https://bigpanda.example.org/site/{plain}/" in digest

    # The silence has expired: the next slot tells of that site; the others are not repeated.
    cycle(config, path, sim, slot + SLOT)
    flags = select(influx, schema.SUSPICIOUS, slot + SLOT)
    assert reason(quiet, s_quiet) == "no" and {f["slots"] for f in flags} >= {2}
    # Each flag of the first slot goes on with 2 slots (a small series of theirs that flags
    # only now, the simulator's noise at some times of day, starts at 1).
    again = [f for f in flags if f["panda_queue"] in (plain, quiet) and flag_key(f) in first]
    assert again and all(f["slots"] == 2 for f in again)
    assert len(hooks[0].texts) == 2
    # Told flags are not told again (one of plain's small series may clear, or flag only
    # now: the simulator's noise at some times of day).
    told_again = hooks[0].texts[1].split("\n\nCleared")[0]
    assert f"site {s_quiet}: running drop" in told_again
    told = [line.split(",")[0].strip() for line in digest.splitlines()
            if line.startswith(("  queue ", "  site "))]
    assert told and not [t for t in told if t in told_again]

    # The collapses end: the told flags are cleared (the suppressed ones were never told);
    # the queue back online and the site out of its downtime are in their grace.
    cycle(config, path, sim, end)
    cleared = hooks[0].texts[-1].split("Cleared")[1]
    assert f"site {s_plain}: running drop" in cleared and f"queue {plain} " in cleared
    assert f"site {s_quiet}: running drop" in cleared
    assert s_down not in cleared and offline not in cleared
    assert not [f for f in select(influx, schema.SUSPICIOUS, end) if f["suppressed"] == "no"
                and f["atlas_site"] in (s_off, s_down)]


def sim_events():
    from qmonit.dev.simulator import events
    return events


def test_notify_after_and_routes(scene, events_sim, hooks):
    sim = events_sim
    picks = dominant_queues(sim, recent_slot(4), 30)
    first = picks[0]
    other = next(p for p in picks if p[2] != first[2])
    path, config, influx, slot = scene(
        "notify_after = 2", f"{first[2]} = {hooks[1].url}")
    for queue, _, _ in (first, other):
        sim.add_anomaly(queue, "collapse", start=slot, end=slot + 6 * SLOT)
    cycle(config, path, sim, slot)
    assert hooks[0].texts == [] and hooks[1].texts == []      # held 1 slot of 2
    cycle(config, path, sim, slot + SLOT)
    [everything] = hooks[0].texts
    [routed] = hooks[1].texts
    assert f"queue {first[0]} " in everything and f"queue {other[0]} " in everything
    assert f"queue {first[0]} " in routed and other[0] not in routed   # only its cloud
    assert ", 2 slots" in routed


def test_silence_commands(tmp_path, influx_server, mariadb_server, sim, database_name, mysql,
                          capsys):
    path = write_config(tmp_path / "c.cfg", influx_server.url, mariadb_server.port,
                        database_name, sim.url, tmp_path / "data")
    now = recent_slot(1)
    assert run(path, "--timestamp", stamp(now), "--list-silences") == 0
    assert capsys.readouterr().out.count("\n") == 1            # the header only
    assert run(path, "--timestamp", stamp(now), "--silence", "SITE-X", "--until",
               stamp(now + dt.timedelta(hours=2)), "--reason", "downtime 123", "--status",
               "running") == 0
    first = int(capsys.readouterr().out)
    assert run(path, "--timestamp", stamp(now), "--silence", "QUEUE_Y", "--until",
               stamp(now + SLOT), "--reason", "draining") == 0
    second = int(capsys.readouterr().out)
    assert run(path, "--timestamp", stamp(now), "--list-silences") == 0
    out = capsys.readouterr().out
    assert f"{first}\tSITE-X\trunning\t" in out and f"{second}\tQUEUE_Y\tall\t" in out
    assert "downtime 123" in out
    # The second expires by itself; the first is ended by hand.
    later = now + 2 * SLOT
    assert run(path, "--timestamp", stamp(later), "--list-silences") == 0
    out = capsys.readouterr().out
    assert "SITE-X" in out and "QUEUE_Y" not in out
    assert run(path, "--timestamp", stamp(later), "--unsilence", str(first)) == 0
    assert run(path, "--timestamp", stamp(later), "--list-silences") == 0
    assert "SITE-X" not in capsys.readouterr().out
    # Grafana reads the table: the rows stay, with their end.
    rows = mysql.select("SELECT id, target, job_status, ends_at FROM silences ORDER BY id")
    assert [r[:3] for r in rows] == [(first, "SITE-X", "running"), (second, "QUEUE_Y", None)]
    assert rows[0][3] == later.replace(tzinfo=None)
    # Mistakes are usage errors, one line each.
    for args in (["--unsilence", str(first)],
                 ["--silence", "S", "--until", stamp(now), "--reason", "r"],
                 ["--silence", "S", "--until", stamp(later + SLOT)],
                 ["--silence", "S", "--until", stamp(later + SLOT), "--reason", "r",
                  "--status", "sleeping"],
                 ["--list-silences", "--unsilence", "1"]):
        assert run(path, "--timestamp", stamp(later), *args) == 2, args
        assert capsys.readouterr().err.count("\n") == 1


def test_downtime_feed_falls_back_to_its_cache(tmp_path, events_sim, caplog):
    sim = events_sim
    from qmonit.core import http
    from qmonit.dev.simulator import config_urls
    url = config_urls(sim.url)["downtime_url"]
    site = sim.universe.sites[0].name
    start = int(recent_slot(1).timestamp())
    sim.add_events(sim_events().from_dicts(
        [{"kind": "downtime", "site": site, "start": start, "end": start + HOUR}],
        sim.universe))
    session = http.session()
    fresh = downtime.load(session, tmp_path, url, 5)
    assert site in downtime.outages(fresh)
    sim.set_fault("/api/core/downtime", "500")
    with caplog.at_level(logging.WARNING):
        assert downtime.load(session, tmp_path, url, 5) == fresh
        assert "using the cached copy" in caplog.text
        assert downtime.load(session, tmp_path / "empty", url, 5) == {}
        assert "no cached copy" in caplog.text


def test_dead_man_switch(tmp_path, influx_server, mariadb_server, sim, database_name, hooks):
    extra = f"\n[notifications]\nwebhook_url = {hooks[0].url}\nstale_after = 30m\n"
    path = write_config(tmp_path / "c.cfg", influx_server.url, mariadb_server.port,
                        database_name, sim.url, tmp_path / "data", extra)
    config = config_module.load(str(path), str(script.__file__))
    influx = Influx.from_config(config)
    influx.ensure_database()
    last_ok = recent_slot(9)

    def record(slot, status):
        influx.write_lines(schema.RP_10M, transform.encode(schema.RUNS, [transform.Point(
            {schema.SCRIPT: "fetch_queues", schema.STATUS: status},
            {"duration_s": 1.0, "points": 1, "errors": 0}, int(slot.timestamp()))]))

    record(last_ok, "ok")
    for k in (8, 7, 6, 5, 4):
        record(recent_slot(k), "error")
    # suspicious.py fails for want of data, but first tells that the data is stale, once.
    now = recent_slot(4) + dt.timedelta(minutes=3)
    assert run(path, "--timestamp", stamp(now)) == 1
    [notice] = hooks[0].texts
    assert notice.startswith(f"QMonit data is stale since {last_ok:%Y-%m-%d %H:%M} UTC")
    assert run(path, "--timestamp", stamp(now + SLOT)) == 1
    assert len(hooks[0].texts) == 1
    # fetch_queues.py recovers: one notice that the data is fresh again (the check
    # datadisk.py makes too).
    record(recent_slot(2), "ok")
    settings = notify.Settings.from_config(config)
    assert deadman.check(settings, deadman.stale_after(config), influx,
                         recent_slot(2) + dt.timedelta(minutes=5), config.data_dir()) == 0
    assert len(hooks[0].texts) == 2 and hooks[0].texts[1].startswith(
        "QMonit data is fresh again")
    assert deadman.check(settings, 1800, influx, recent_slot(2) + dt.timedelta(minutes=6),
                         config.data_dir()) == 0
    assert len(hooks[0].texts) == 2


@pytest.mark.parametrize("args, message", [
    (["--until", "2030-01-01 00:00:00"], "go with --silence"),
    (["--reason", "why"], "go with --silence"),
    (["--silence", " ", "--until", "2030-01-01 00:00:00", "--reason", "x"], "needs an atlas_site"),
])
def test_stray_silence_options_exit_2_and_never_run(tmp_path, args, message, capsys):
    """A silence option without a target is a usage error, not a normal run."""
    path = write_config(tmp_path / "c.cfg", "http://127.0.0.1:9", 9, "x", "http://127.0.0.1:9",
                        tmp_path / "data")
    assert script.main(["--config", str(path), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "data").exists()


def test_a_reason_longer_than_its_column_is_a_usage_error():
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    with pytest.raises(Exception, match="at most 1000") as e:
        silences.add(None, "SITE", now + dt.timedelta(hours=1), "x" * 1001, now)
    assert e.value.exit_code == 2


def test_webhook_target_never_shows_userinfo():
    channel = notify.WebhookChannel("https://user:secret@hooks.example:8443/T0/B0/token")
    assert channel.target == "webhook https://hooks.example:8443"
