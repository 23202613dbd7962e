"""The status page: the health document and each strategy's recent backups rendered as one HTML page.

Pure functions (snapshot in, text out), so the HTTP thread renders without any lock and tests need no server.
Everything the page shows passes through `html.escape` — names, errors and databases come from the config and
from other processes — and the page holds no script, no external font or stylesheet: it renders on an air-gapped
host, with JavaScript off, under a Content-Security-Policy that forbids scripts (server.py sends it).
"""

from __future__ import annotations

import html
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

from easybackup.humanize import format_bytes
from easybackup.monitoring.history import HistoryPoint
from easybackup.scheduling import format_duration

CHART_WIDTH, CHART_HEIGHT = 160, 40
STATUS_LABELS = {"success": "succeeded", "failed": "failed", "running": "running", "pending": "pending"}


@dataclass(frozen=True)
class StrategyRow:
    """What one row shows: the strategy's health view (state.MonitorState's), its recent backups and their chart."""

    name: str
    view: dict
    history: tuple[HistoryPoint, ...]
    chart: str = ""


@dataclass(frozen=True)
class Column:
    """One column of the table: its heading and a function from a row (and now) to its cell's HTML (escaped)."""

    heading: str
    cell: Callable[[StrategyRow, datetime], str]


def _e(value) -> str:
    return html.escape(str(value), quote=True)


def _parse(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None


def relative(moment: datetime, now: datetime) -> str:
    """Given a moment and now, return `3h 12m ago`, `in 5m` or `now`."""
    seconds = (moment - now).total_seconds()
    if abs(seconds) < 1:
        return "now"
    text = format_duration(abs(seconds))
    return f"in {text}" if seconds > 0 else f"{text} ago"


def _when(text: str | None, now: datetime, empty: str) -> str:
    moment = _parse(text)
    if moment is None:
        return f'<span class="muted">{_e(empty)}</span>'
    return f'<span class="abs">{_e(moment.strftime("%Y-%m-%d %H:%M"))}</span>' \
           f'<span class="rel">{_e(relative(moment, now))}</span>'


def _strategy_cell(row: StrategyRow, now: datetime) -> str:
    databases = ", ".join(row.view.get("databases") or ()) or "no backup yet"
    return f'<span class="name">{_e(row.name)}</span><span class="sub">{_e(databases)}</span>' \
           f'<span class="sub">via {_e(row.view.get("connects") or "direct")}</span>'


def _status_cell(row: StrategyRow, now: datetime) -> str:
    status = str(row.view.get("status") or "pending")
    label = STATUS_LABELS.get(status, status)
    cell = f'<span class="pill {_e(status if status in STATUS_LABELS else "pending")}">{_e(label)}</span>'
    if row.view.get("overdue"):
        cell += '<span class="pill overdue">overdue</span>'
    failures = row.view.get("consecutive_failures") or 0
    if failures > 1:
        cell += f'<span class="sub">{_e(failures)} failures in a row</span>'
    return cell


def _last_success_cell(row: StrategyRow, now: datetime) -> str:
    return _when(row.view.get("last_success"), now, "never")


def _next_run_cell(row: StrategyRow, now: datetime) -> str:
    return _when(row.view.get("next_run"), now, "not scheduled")


def _size_cell(row: StrategyRow, now: datetime) -> str:
    size = row.view.get("size_bytes")
    duration = row.view.get("duration_seconds")
    cell = f'<span>{_e(format_bytes(size))}</span>'
    if isinstance(duration, (int, float)):
        cell += f'<span class="sub">took {_e(format_duration(duration))}</span>'
    return cell


def _error_cell(row: StrategyRow, now: datetime) -> str:
    if row.view.get("status") != "failed":
        return ""
    kind = row.view.get("error_kind") or "error"
    # `error` is masked already (state.error_line); the page only escapes it.
    return f'<span class="kind">{_e(kind)}</span><span class="err">{_e(row.view.get("error") or "")}</span>'


def _chart_cell(row: StrategyRow, now: datetime) -> str:
    return row.chart


COLUMNS: tuple[Column, ...] = (
    Column("Strategy", _strategy_cell), Column("Status", _status_cell),
    Column("Last success (UTC)", _last_success_cell), Column("Next run (UTC)", _next_run_cell),
    Column("Last backup", _size_cell), Column("Error", _error_cell), Column("Recent backups", _chart_cell),
)
# Hook for drills (issue 18): drill status is one more Column, passed to render_page(extra_columns=...) by the
# server once the supervisor knows drill results; nothing shows a drill column before then.


def _scaled(values: Sequence[float], height: float) -> list[float]:
    top = max(values) or 1.0
    return [height - (value / top) * (height - 2) for value in values]


def chart(history: Sequence[HistoryPoint], width: int = CHART_WIDTH, height: int = CHART_HEIGHT) -> str:
    """Given a strategy's recent backups (oldest first), return an inline SVG: size as bars, duration as a line,
    each scaled to its own maximum; the <title> says the ranges (a tooltip, without JavaScript)."""
    if not history:
        return '<span class="muted">no backups yet</span>'
    count = len(history)
    step = width / count
    sizes = _scaled([p.size_bytes for p in history], height)
    bars = "".join(f'<rect x="{i * step + step * 0.15:.1f}" y="{y:.1f}" width="{step * 0.7:.1f}" '
                   f'height="{height - y:.1f}"/>' for i, y in enumerate(sizes))
    durations = [p.duration_s for p in history if p.duration_s is not None]
    line = ""
    if durations:
        ys = _scaled([p.duration_s or 0.0 for p in history], height)
        points = " ".join(f"{i * step + step / 2:.1f},{y:.1f}" for i, y in enumerate(ys))
        line = f'<polyline class="dur" points="{points}"/>'
    smallest, largest = min(p.size_bytes for p in history), max(p.size_bytes for p in history)
    title = f"last {count} backups: size {format_bytes(smallest)} to {format_bytes(largest)}"
    if durations:
        title += f", duration {format_duration(min(durations))} to {format_duration(max(durations))}"
    return (f'<svg class="chart" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
            f'aria-label="{_e(title)}"><title>{_e(title)}</title><g class="size">{bars}</g>{line}</svg>'
            f'<span class="sub">{_e(format_bytes(largest))} max · {count} backups</span>')


STYLE = """
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;margin:0;
color:#1f2328;background:#f6f8fa}
header{display:flex;flex-wrap:wrap;align-items:baseline;gap:6px 18px;padding:14px 24px;background:#fff;
border-bottom:1px solid #d0d7de}
h1{font-size:18px;margin:0}
main{padding:16px 24px}
table{border-collapse:collapse;width:100%;background:#fff;border:1px solid #d0d7de}
th{text-align:left;font-weight:600;font-size:12px;text-transform:uppercase;letter-spacing:.04em;color:#57606a;
padding:8px 10px;border-bottom:1px solid #d0d7de;background:#f6f8fa}
td{padding:10px;border-bottom:1px solid #eaeef2;vertical-align:top}
tr.failed td:first-child{box-shadow:inset 4px 0 #cf222e}
tr.success td:first-child{box-shadow:inset 4px 0 #1a7f37}
tr.running td:first-child{box-shadow:inset 4px 0 #0969da}
tr.pending td:first-child{box-shadow:inset 4px 0 #8c959f}
.name{font-weight:600;display:block}
.sub,.rel,.abs{display:block}
.abs,th,.pill{white-space:nowrap}
.sub,.rel{color:#57606a;font-size:12px}
.muted{color:#8c959f}
.pill{display:inline-block;border-radius:10px;padding:1px 9px;font-size:12px;font-weight:600;margin-right:4px;
color:#fff}
.pill.success{background:#1a7f37}.pill.failed{background:#cf222e}.pill.running{background:#0969da}
.pill.pending{background:#8c959f}.pill.overdue{background:#bf8700}
.overall.healthy{color:#1a7f37}.overall.degraded{color:#bf8700}.overall.unhealthy{color:#cf222e}
.kind{display:inline-block;font:12px ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;background:#ffebe9;
color:#82071e;border-radius:4px;padding:0 5px;margin-bottom:2px}
.err{display:block;min-width:240px;max-width:440px;overflow-wrap:anywhere;font-size:13px}
.chart .size rect{fill:#54aeff}
.chart .dur{fill:none;stroke:#bc4c00;stroke-width:1.5}
.legend{color:#57606a;font-size:12px}
.legend i{display:inline-block;width:10px;height:10px;margin:0 4px 0 10px;vertical-align:-1px}
.legend .lsize{background:#54aeff}.legend .ldur{background:#bc4c00;height:2px;vertical-align:3px}
footer{padding:0 24px 16px;color:#57606a;font-size:12px}
"""


def _header(document: dict, now: datetime) -> str:
    status = str(document.get("status") or "unknown")
    total = (document.get("strategies") or {}).get("total", 0)
    return (f'<header><h1>easybackup</h1><span class="overall {_e(status)}"><b>{_e(status)}</b></span>'
            f'<span>{_e(total)} strategies</span>'
            f'<span>S3: {_e(document.get("s3_connectivity") or "unknown")}</span>'
            f'<span>Slack: {_e(document.get("slack_connectivity") or "unknown")}</span>'
            f'<span class="legend">charts:<i class="lsize"></i>size<i class="ldur"></i>duration</span></header>')


class ChartCache:
    """Charts drawn once per history: a strategy's history is an immutable tuple that the state replaces when a
    run finishes, so the same tuple (identity, kept alive here) always draws the same chart. Drawing 50 charts
    is most of a page's cost; most requests come between two runs."""

    def __init__(self):
        self._charts: dict[str, tuple[tuple[HistoryPoint, ...], str]] = {}
        self._lock = threading.Lock()  # the server answers on several threads

    def __call__(self, name: str, history: tuple[HistoryPoint, ...]) -> str:
        with self._lock:
            known = self._charts.get(name)
        if known is not None and known[0] is history:
            return known[1]
        drawn = chart(history)
        with self._lock:
            self._charts[name] = (history, drawn)
        return drawn

    def keep_only(self, names) -> None:
        """Forget the charts of strategies no longer shown (a reload removed them)."""
        with self._lock:
            for name in set(self._charts) - set(names):
                del self._charts[name]


def rows_of(document: dict, histories: dict[str, tuple[HistoryPoint, ...]],
            chart_of: Callable[[str, tuple[HistoryPoint, ...]], str] | None = None) -> list[StrategyRow]:
    """Given a health document, each strategy's history and how to draw a chart (default: `chart`), return the
    rows: failed first, then overdue, then by name."""
    views = (document.get("strategies") or {}).get("last_backup_status") or {}
    draw = chart_of or (lambda _name, history: chart(history))
    rows = [StrategyRow(name, view, histories.get(name, ()), draw(name, histories.get(name, ())))
            for name, view in views.items()]
    return sorted(rows, key=lambda row: (row.view.get("status") != "failed", not row.view.get("overdue"), row.name))


def render_page(document: dict, histories: dict[str, tuple[HistoryPoint, ...]], *, now: datetime | None = None,
                refresh_s: int | None = 60, extra_columns: Sequence[Column] = (),
                chart_of: Callable[[str, tuple[HistoryPoint, ...]], str] | None = None) -> str:
    """Given a health document (MonitorState.snapshot's), each strategy's history and now, return the page.

    `refresh_s` adds a `<meta http-equiv=refresh>` (None: none); `extra_columns` are appended (drills, later);
    `chart_of(name, history)` draws a chart (a ChartCache; default: `chart` each time).
    """
    now = now or datetime.now(timezone.utc)
    columns = (*COLUMNS, *extra_columns)
    head = "".join(f"<th>{_e(column.heading)}</th>" for column in columns)
    body = "".join(
        f'<tr class="{_e(row.view.get("status") or "pending")}" id="strategy-{_e(row.name)}">'
        + "".join(f"<td>{column.cell(row, now)}</td>" for column in columns) + "</tr>"
        for row in rows_of(document, histories, chart_of))
    refresh = f'<meta http-equiv="refresh" content="{int(refresh_s)}">' if refresh_s else ""
    empty = "" if body else f'<tr><td colspan="{len(columns)}" class="muted">no strategies configured</td></tr>'
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">{refresh}'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<title>easybackup: {_e(document.get("status") or "unknown")}</title><style>{STYLE}</style></head>'
            f'<body>{_header(document, now)}<main><table><thead><tr>{head}</tr></thead><tbody>{body}{empty}'
            f'</tbody></table></main><footer>easybackup {_e(document.get("version") or "")} · as of '
            f'{_e(document.get("timestamp") or "")} · machine-readable: the health endpoint</footer></body></html>\n')
