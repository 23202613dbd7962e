"""The status page as pure functions: the history of runs, what the state hands the page, and the HTML."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from html.parser import HTMLParser

from easybackup.config.model import DatabaseTarget, S3Settings, Strategy
from easybackup.monitoring.history import (HISTORY_RUNS, HistoryPoint, merge_history, newest_run_keys,
                                           points_from_manifests)
from easybackup.monitoring.page import ChartCache, Column, chart, relative, render_page, rows_of
from easybackup.monitoring.state import MonitorState

NOW = datetime(2025, 6, 17, 12, 0, 0, tzinfo=timezone.utc)
HOSTILE = "<script>alert(1)</script>"


@dataclass(frozen=True)
class FakeManifest:
    run_id: str
    started_at: str
    finished_at: str
    stored_bytes: int


class Elements(HTMLParser):
    """The tags and text of a page, as a browser's tokenizer sees them."""

    def __init__(self, text: str):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def strategy(name: str, schedule: str = "6h") -> Strategy:
    return Strategy(name=name, schedule=schedule, s3=S3Settings(bucket="b"),
                    databases=(DatabaseTarget(name="app", url="postgres://h/app"),))


def point(run: int, size: int = 1000, duration: float | None = 10.0) -> HistoryPoint:
    return HistoryPoint(f"r{run}", NOW - timedelta(hours=100 - run), size, duration)


def result(status: str = "success", size: int = 2048, duration: float = 12.5, error: dict | None = None) -> dict:
    database = {"database": "app", "status": status, "size": size if status == "success" else None}
    if error:
        database["error"] = error
    return {"status": status, "duration_s": duration, "databases": [database], **({"error": error} if error else {})}


# --- history ---------------------------------------------------------------------------------------------------------

def test_manifests_become_one_point_per_run_with_its_bytes_and_its_first_start_to_last_finish():
    manifests = [FakeManifest("b", "2025-06-17T02:00:00Z", "2025-06-17T02:00:30Z", 100),
                 FakeManifest("a", "2025-06-16T02:00:00Z", "2025-06-16T02:01:00Z", 50),
                 FakeManifest("b", "2025-06-17T02:00:00Z", "2025-06-17T02:02:00Z", 300)]
    points = points_from_manifests(manifests)
    assert [(p.run_id, p.size_bytes, p.duration_s) for p in points] == [("a", 50, 60.0), ("b", 400, 120.0)]
    assert points[1].finished_at == datetime(2025, 6, 17, 2, 2, tzinfo=timezone.utc)


def test_merging_keeps_the_newest_runs_and_prefers_what_this_process_saw():
    from_s3 = tuple(point(run, size=1) for run in range(100))
    seen_here = (point(99, size=7),)
    merged = merge_history(seen_here, from_s3)
    assert len(merged) == HISTORY_RUNS
    assert [p.run_id for p in merged] == [f"r{run}" for run in range(100 - HISTORY_RUNS, 100)]
    assert merged[-1].size_bytes == 7


def test_only_the_newest_runs_manifest_keys_are_read():
    keys = [f"s/app/2025-06-{day:02d}T020000Z-run{day}.dump.gz.manifest.json" for day in range(1, 31)]
    keys += [f"s/_globals/2025-06-{day:02d}T020000Z-run{day}.sql.gz.manifest.json" for day in range(1, 31)]
    chosen = newest_run_keys(keys, limit=3)
    assert sorted(chosen) == sorted(k for k in keys if any(f"-run{day}." in k for day in (28, 29, 30)))


# --- state -----------------------------------------------------------------------------------------------------------

def test_a_finished_run_that_stored_something_is_added_to_the_history_and_a_failed_one_that_stored_nothing_not():
    state = MonitorState((strategy("app"),), clock=lambda: NOW.timestamp())
    state.run_started("app", "run-1", NOW - timedelta(minutes=1))
    state.run_finished("app", result(size=2048, duration=12.5), NOW)
    state.run_started("app", "run-2", NOW)
    state.run_finished("app", result("failed", error={"kind": "connection", "message": "refused"}), NOW)
    _status, _document, histories = state.page_snapshot()
    assert histories["app"] == (HistoryPoint("run-1", NOW, 2048, 12.5),)


def test_history_from_s3_is_merged_and_the_snapshot_is_a_copy_the_loop_cannot_change():
    state = MonitorState((strategy("app"),), clock=lambda: NOW.timestamp())
    state.restore_history("app", (point(1), point(2)))
    _status, document, histories = state.page_snapshot()
    state.run_started("app", "run-3", NOW)
    state.run_finished("app", result(), NOW)
    assert [p.run_id for p in histories["app"]] == ["r1", "r2"]  # taken before the run finished
    assert document["strategies"]["last_backup_status"]["app"]["status"] == "pending"
    assert [p.run_id for p in state.page_snapshot()[2]["app"]] == ["r1", "r2", "run-3"]


def test_history_of_an_unconfigured_strategy_is_ignored():
    state = MonitorState((strategy("app"),))
    state.restore_history("gone", (point(1),))
    assert set(state.page_snapshot()[2]) == {"app"}


# --- rendering -------------------------------------------------------------------------------------------------------

def page_of(*names_and_results, histories=None, **render) -> str:
    state = MonitorState(tuple(strategy(name) for name, _ in names_and_results), clock=lambda: NOW.timestamp())
    state.loop_heartbeat()
    for name, outcome in names_and_results:
        if outcome is not None:
            state.run_started(name, f"run-{name}", NOW - timedelta(hours=3))
            state.run_finished(name, outcome, NOW - timedelta(hours=3) + timedelta(seconds=90))
        state.set_next_run(name, NOW + timedelta(hours=3))
    _status, document, kept = state.page_snapshot()
    return render_page(document, histories or kept, now=NOW, **render)


def row(page: str, name: str) -> str:
    return re.search(rf'<tr class="\w+" id="strategy-{re.escape(name)}">(.*?)</tr>', page, re.S).group(1)


def test_a_row_per_strategy_with_status_times_size_and_the_error_of_a_failure():
    page = page_of(("good", result(size=5 * 1024 * 1024, duration=95)),
                   ("bad", result("failed", error={"kind": "connection", "message": "could not connect"})),
                   ("waiting", None))
    good, bad, waiting = row(page, "good"), row(page, "bad"), row(page, "waiting")
    assert 'class="pill success"' in good and "5.0 MiB" in good and "took 1m 35s" in good
    assert "2025-06-17 09:01" in good and "2h 59m ago" in good and "in 3h" in good
    assert 'class="pill failed"' in bad and '<span class="kind">connection</span>' in bad
    assert "app: could not connect" in bad and "never" in bad
    assert 'class="pill pending"' in waiting and "no backups yet" in waiting
    assert page.index('id="strategy-bad"') < page.index('id="strategy-good"'), "failures come first"


def test_every_name_and_error_is_text_never_markup():
    page = page_of((HOSTILE, result("failed", error={"kind": "connection", "message": f"db {HOSTILE} is gone"})),
                   ('"><img src=x onerror=alert(1)>', result()))
    parsed = Elements(page)
    assert [tag for tag, _attrs in parsed.tags if tag in ("script", "img", "iframe")] == []
    assert not any(name.startswith("on") for _tag, attrs in parsed.tags for name in attrs)
    assert any(HOSTILE in text for text in parsed.text), "the hostile name is shown, as text"
    assert "&lt;script&gt;" in page and "<script" not in page


def test_the_page_holds_no_script_and_loads_nothing_from_elsewhere():
    page = page_of(("good", result()), histories={"good": tuple(point(run) for run in range(10))})
    parsed = Elements(page)
    tags = {tag for tag, _attrs in parsed.tags}
    assert "script" not in tags and "link" not in tags and "svg" in tags
    assert not re.search(r"(src|href)=|url\(|@import|https?://", page)


def test_the_refresh_is_optional():
    assert '<meta http-equiv="refresh" content="60">' in page_of(("a", None))
    assert "http-equiv" not in page_of(("a", None), refresh_s=None)


def test_extra_columns_are_the_hook_for_drills():
    drills = Column("Last drill", lambda row, now: f"<b>{row.name} drill</b>")
    page = page_of(("a", result()), extra_columns=[drills])
    assert "<th>Last drill</th>" in page and "<b>a drill</b>" in row(page, "a")
    assert "drill" not in page_of(("a", result())).lower()


def test_relative_times():
    assert relative(NOW - timedelta(hours=3), NOW) == "3h ago"
    assert relative(NOW + timedelta(minutes=5), NOW) == "in 5m"
    assert relative(NOW, NOW) == "now"


def test_the_chart_scales_bars_to_the_largest_size_and_says_the_ranges():
    svg = chart((point(1, size=50, duration=5.0), point(2, size=100, duration=10.0)), width=100, height=42)
    heights = [float(h) for h in re.findall(r'<rect [^>]*height="([\d.]+)"', svg)]
    assert heights == [20.0, 40.0]
    assert "<polyline" in svg and "size 50 B to 100 B, duration 5s to 10s" in svg
    assert chart(()) == '<span class="muted">no backups yet</span>'


def test_a_chart_without_durations_draws_only_the_bars():
    svg = chart((point(1, duration=None), point(2, duration=None)))
    assert "<polyline" not in svg and svg.count("<rect") == 2


def test_rows_put_failed_then_overdue_first():
    document = {"strategies": {"last_backup_status": {
        "a": {"status": "success", "overdue": False}, "b": {"status": "success", "overdue": True},
        "c": {"status": "failed", "overdue": False}}}}
    assert [r.name for r in rows_of(document, {})] == ["c", "b", "a"]


def test_the_chart_cache_draws_a_history_once_and_again_when_the_state_replaces_it(monkeypatch):
    from easybackup.monitoring import page

    drawn = []
    monkeypatch.setattr(page, "chart", lambda history: drawn.append(history) or f"chart of {len(history)}")
    cache = ChartCache()
    first = (point(1), point(2))
    assert cache("a", first) == "chart of 2" and cache("a", first) == "chart of 2"
    assert drawn == [first], "the same tuple is drawn once"
    replaced = merge_history((point(3),), first)
    assert cache("a", replaced) == "chart of 3" and drawn == [first, replaced]
    assert cache("a", tuple(list(replaced))) == "chart of 3" and len(drawn) == 3, "an equal copy is drawn again"
    cache.keep_only(["b"])
    cache("a", replaced)
    assert len(drawn) == 4, "a forgotten strategy is drawn again"
