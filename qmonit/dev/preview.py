"""A picture of the dashboards for whoever has no Grafana at hand: the main panel of each
dashboard (jobs by status, the suspicious flags with one queue's moving averages, the DAOD
shares), the MySQL snapshot and QMonit's own health, drawn with matplotlib into one PNG.

Every panel runs the very query of its dashboard (dashboards/definitions.py), expanded as
Grafana expands it for the `hours` before `now` with the variables at their defaults.
"""
import datetime as dt
import logging
import sys
from pathlib import Path

from matplotlib import dates as mdates
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..core.errors import QMonitError

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:          # dashboards/ sits beside the package
    sys.path.insert(0, str(ROOT))

from dashboards import definitions as defs  # noqa: E402

log = logging.getLogger(__name__)

STATUSES_SHOWN = 6
FLAGS_SHOWN = 12
SNAPSHOT_SHOWN = 10


def _time(ms):
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC)


def _influx(influx, dashboard, panel, context):
    """Every InfluxQL target of the panel, expanded and run; their series together (the
    gated rollup targets that do not apply return none, as in Grafana)."""
    series = []
    for target in panel.targets:
        query = defs.expand(target.query, dashboard, context, target.datasource,
                            panel.min_interval)
        [result] = influx.query(query, epoch="ms")
        series.extend(result)
    return series


def _rows(series):
    """Table rows (dicts of tags and columns) from InfluxDB series."""
    return [{**s.get("tags", {}), **dict(zip(s["columns"], values))}
            for s in series for values in s["values"]]


def _short(text, width=26):
    text = str(text)
    return text if len(text) <= width else text[:width - 1] + "…"


def _number(value):
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 100 else f"{value:,.0f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _note(ax, text):
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, wrap=True,
            color="#666666")


def _table(ax, header, rows):
    ax.axis("off")
    if not rows:
        _note(ax, "no rows")
        return
    table = ax.table(cellText=rows, colLabels=header, loc="upper center", cellLoc="left",
                     colLoc="left")
    table.auto_set_font_size(False)
    table.set_fontsize(7.5)
    table.auto_set_column_width(list(range(len(header))))
    for (row, _col), cell in table.get_celld().items():
        cell.set_height(0.06)
        if row == 0:
            cell.set_facecolor("#e8e8e8")
            cell.set_text_props(weight="bold")


def _time_axis(ax):
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M", tz=dt.UTC))
    ax.set_xlabel("UTC")
    ax.grid(alpha=0.3)


def draw_jobs(ax, influx, context):
    dashboard = defs.JOBS_DASHBOARD
    panel = dashboard.panel(defs.MAIN_PANELS[dashboard.uid])
    series = _influx(influx, dashboard, panel, context)
    lines = {}
    for s in series:
        points = [(t, v) for t, v in s["values"] if v is not None]
        if points:
            lines[s["tags"]["job_status"]] = points
    ranked = sorted(lines, key=lambda k: -max(v for _, v in lines[k]))[:STATUSES_SHOWN]
    for status in ranked:
        ax.plot([_time(t) for t, _ in lines[status]], [v for _, v in lines[status]],
                label=status, linewidth=1.5)
    rollup = defs.active_rollup(context)
    ax.set_title(f"Jobs Monitoring: {panel.title} (rollup {rollup}, top {STATUSES_SHOWN})",
                 loc="left")
    if ranked:
        ax.legend(loc="upper left", ncols=min(6, len(ranked)), fontsize=8)
    else:
        _note(ax, "no jobs in this time range")
    _time_axis(ax)


def draw_flags(ax, influx, context):
    """The flags table; returns the top queue-level flag (or None) for the averages panel."""
    dashboard = defs.SUSPICIOUS_DASHBOARD
    panel = dashboard.panel(defs.MAIN_PANELS[dashboard.uid])
    rows = _rows(_influx(influx, dashboard, panel, context))
    rows.sort(key=lambda r: -(r.get(panel.sort_by) or 0))
    names = ("level", "atlas_site", "panda_queue", "label/resource", "job_status", "direction")
    numbers = ("current", "baseline", "ratio", "score")
    table = []
    for r in rows[:FLAGS_SHOWN]:
        r = {**r, "label/resource": f"{r.get('prod_source')}/{r.get('resource')}"}
        table.append([_short(r.get(c), 22) for c in names] + [_number(r.get(c)) for c in numbers])
    _table(ax, ["level", "site", "queue", "label/resource", "status", "dir."] + list(numbers),
           table)
    ax.set_title(f"Suspicious sites: {panel.title} ({len(rows)} flags, top {FLAGS_SHOWN})",
                 loc="left")
    return next((r for r in rows if r.get("level") == "queue"), None)


def draw_averages(ax, influx, context, flag):
    dashboard = defs.SUSPICIOUS_DASHBOARD
    panel = dashboard.panel("averages")
    queue = flag["panda_queue"] if flag else defs.ALL
    status = flag["job_status"] if flag else "running"
    view = defs.Context(context.start, context.end, {"panda_queue": queue,
                                                     "job_status": status})
    rows = _rows(_influx(influx, dashboard, panel, view))
    times = [_time(r["time"]) for r in rows]
    for name, style in (("current", "-"), ("avg1h", "--"), ("avg6h", "--"), ("avg24h", ":"),
                        ("avg7d", ":")):
        values = [r.get(name) for r in rows]
        if any(v is not None for v in values):
            ax.plot(times, [float("nan") if v is None else v for v in values], style,
                    label=name, linewidth=2 if name == "current" else 1.2)
    label = "all queues" if queue == defs.ALL else _short(queue, 40)
    ax.set_title(f"Suspicious sites: current vs moving averages, {label}, {status}", loc="left")
    if rows:
        ax.legend(loc="lower left", fontsize=8)
    else:
        _note(ax, "no averages (has suspicious.py run?)")
    _time_axis(ax)


def draw_daod(ax, influx, context):
    dashboard = defs.DAOD_DASHBOARD
    panel = dashboard.panel(defs.MAIN_PANELS[dashboard.uid])
    rows = _rows(_influx(influx, dashboard, panel, context))
    rows = [r for r in rows if r.get("jobs_share") is not None or r.get("data_share")]
    # What the panel's transformations do: sort by gap, keep the first `limit`.
    rows.sort(key=lambda r: -(r.get(panel.sort_by) or 0))
    rows = rows[:panel.limit][::-1]
    positions = range(len(rows))
    ax.barh([p + 0.2 for p in positions], [100 * (r.get("jobs_share") or 0) for r in rows],
            height=0.4, label="jobs share")
    ax.barh([p - 0.2 for p in positions], [100 * (r.get("data_share") or 0) for r in rows],
            height=0.4, label="data share")
    ax.set_yticks(list(positions), [_short(r["datadisk"], 30) for r in rows], fontsize=7)
    ax.set_xlabel("% of all running analysis jobs / of all DAOD bytes")
    ax.set_title(f"DAOD distribution: {panel.title}", loc="left", fontsize=10)
    if rows:
        ax.legend(loc="lower right", fontsize=8)
    else:
        _note(ax, "no datadisk data (has datadisk.py run?)")
    ax.grid(axis="x", alpha=0.3)


def draw_snapshot(ax, mysql_store, context):
    dashboard = defs.JOBS_DASHBOARD
    panel = dashboard.panel("snapshot")
    [target] = panel.targets
    rows = mysql_store.select(defs.expand(target.query, dashboard, context, target.datasource))
    names = defs.SNAPSHOT_NAMES
    shown = ("panda_queue", "prod_source", "resource", "running_jobs", "running_cores",
             "activated_jobs", "avg24h_running_jobs")
    at = [names.index(c) for c in shown]
    _table(ax, ["queue", "label", "resource", "running", "cores", "activated", "avg24h run."],
           [[_short(row[i], 24) if n < 3 else _number(row[i]) for n, i in enumerate(at)]
            for row in rows[:SNAPSHOT_SHOWN]])
    ax.set_title(f"Jobs Monitoring: {panel.title} (MySQL, top {SNAPSHOT_SHOWN})", loc="left")


def health_line(influx, context):
    dashboard = defs.JOBS_DASHBOARD
    rows = _rows(_influx(influx, dashboard, dashboard.panel("last_runs"), context))
    latest = {}
    for r in rows:
        if r["script"] not in latest or r["time"] > latest[r["script"]]["time"]:
            latest[r["script"]] = r
    parts = [f"{name} {r['status']} at {_time(r['time']):%H:%M} ({r['duration_s']:.1f} s)"
             for name, r in sorted(latest.items())]
    return "QMonit runs: " + ("; ".join(parts) if parts else "none recorded")


def _guarded(ax, draw, *args):
    """Draw one panel; a failing query leaves a note in its place instead of no picture."""
    try:
        return draw(ax, *args)
    except QMonitError as e:
        log.warning("preview: %s failed: %s", draw.__name__, e)
        ax.axis("off")
        _note(ax, f"query failed: {e}")
        return None


def render(influx, mysql_store, path, now, hours=6):
    """Draw the preview of the `hours` before `now` into the PNG at path; returns the path.

    influx is a qmonit.influx.Influx, mysql_store a qmonit.mysqlstore.MySQLStore (or None to
    leave the MySQL table out)."""
    context = defs.Context(now - dt.timedelta(hours=hours), now)
    figure = Figure(figsize=(17, 14), dpi=90, layout="constrained")
    FigureCanvasAgg(figure)
    grid = figure.add_gridspec(3, 2, height_ratios=(1, 1.1, 1.2))
    _guarded(figure.add_subplot(grid[0, :]), draw_jobs, influx, context)
    flag = _guarded(figure.add_subplot(grid[1, 0]), draw_flags, influx, context)
    _guarded(figure.add_subplot(grid[1, 1]), draw_averages, influx, context, flag)
    _guarded(figure.add_subplot(grid[2, 0]), draw_daod, influx, context)
    snapshot = figure.add_subplot(grid[2, 1])
    if mysql_store is not None:
        _guarded(snapshot, draw_snapshot, mysql_store, context)
    else:
        snapshot.axis("off")
    try:
        health = health_line(influx, context)
    except QMonitError as e:
        health = f"QMonit runs: query failed: {e}"
    figure.suptitle(f"QMonit dashboards preview, {context.start:%Y-%m-%d %H:%M} – "
                    f"{context.end:%H:%M} UTC\n{health}", fontsize=12)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    return path
