"""qmonit/dev/preview.py: the dashboards' main panels drawn from real data into one PNG, with the
dashboards' own queries."""
import datetime as dt

import pytest
from conftest import free_port_url
from matplotlib.figure import Figure
from matplotlib.image import imread
from test_dashboards import SLOT, build, need

from dashboards import definitions as defs
from qmonit.dev import preview
from qmonit.sinks.influx import Influx

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def data(influx_server, mariadb_server, tmp_path_factory):
    built = build(influx_server, mariadb_server, tmp_path_factory.mktemp("preview"),
                  "qmonit_preview", before_midnight=1, suspicious_slots=2, rollups=False)
    yield built
    built.sim.stop()
    built.mysql.close()


class Recording:
    """Passes every call on to the real store and remembers the query text."""

    def __init__(self, store, method):
        self.store, self.method, self.seen = store, method, []

    def __getattr__(self, name):
        call = getattr(self.store, name)
        if name != self.method:
            return call

        def recorded(query, *args, **kwargs):
            self.seen.append(query)
            return call(query, *args, **kwargs)
        return recorded


def test_renders_a_png_from_real_data(data, tmp_path):
    need(data, ["fetch_queues.py"])
    path = preview.render(data.influx, data.mysql, tmp_path / "var" / "preview.png", data.end,
                          hours=2)
    assert path == tmp_path / "var" / "preview.png"
    assert path.read_bytes()[:8] == PNG
    image = imread(path)
    height, width = image.shape[:2]
    assert width >= 1200 and height >= 1000
    assert image[..., :3].std() > 0.05          # drawn on, not a blank canvas


def test_draws_from_the_dashboards_own_queries(data, tmp_path):
    need(data, ["fetch_queues.py"])
    influx = Recording(data.influx, "query")
    mysql = Recording(data.mysql, "select")
    preview.render(influx, mysql, tmp_path / "p.png", data.end, hours=2)
    context = defs.Context(data.end - dt.timedelta(hours=2), data.end)
    for dashboard in defs.DASHBOARDS:
        panel = dashboard.panel(defs.MAIN_PANELS[dashboard.uid])
        for target in panel.targets:
            assert defs.expand(target.query, dashboard, context, target.datasource,
                               panel.min_interval) in influx.seen, panel.title
    [snapshot] = defs.JOBS_DASHBOARD.panel("snapshot").targets
    assert mysql.seen == [defs.expand(snapshot.query, defs.JOBS_DASHBOARD, context, defs.MYSQL)]


def test_jobs_panel_plots_every_status_series(data):
    need(data, ["fetch_queues.py"])
    figure = Figure()
    ax = figure.add_subplot()
    preview.draw_jobs(ax, data.influx, defs.Context(data.start, data.end))
    labels = [line.get_label() for line in ax.get_lines()]
    assert "running" in labels and len(labels) == preview.STATUSES_SHOWN
    [running] = [line for line in ax.get_lines() if line.get_label() == "running"]
    assert len(running.get_xdata()) == (data.end - data.start) // SLOT


def test_averages_follow_the_top_flagged_queue(data):
    need(data, ["suspicious.py"])
    figure = Figure()
    flag = preview.draw_flags(figure.add_subplot(), data.influx,
                              defs.Context(data.start, data.end))
    assert flag["panda_queue"] == data.queue and flag["direction"] == "drop"
    ax = figure.add_subplot()
    preview.draw_averages(ax, data.influx, defs.Context(data.start, data.end), flag)
    assert data.queue in ax.get_title(loc="left")
    assert {"current", "avg1h"} <= {line.get_label() for line in ax.get_lines()}


def test_an_unreachable_influxdb_still_gives_a_picture(tmp_path, caplog):
    influx = Influx(free_port_url(), "nowhere", timeout=2)
    path = preview.render(influx, None, tmp_path / "p.png",
                          dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    assert path.read_bytes()[:8] == PNG
    assert "preview: draw_jobs failed" in caplog.text
