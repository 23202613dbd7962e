"""A restore drill's result in health (`last_restore_drill`, degraded when failed or overdue) and in metrics."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

from easybackup.config.model import RestoreDrillSettings
from easybackup.jobspec import DRILL
from easybackup.monitoring.metrics import Metrics
from easybackup.monitoring.observer import MonitoringObserver
from easybackup.monitoring.state import MonitorState
from tests.unit.test_health_state import Clock, entry, failure, strategy, success

# Backups weekly, drills daily: a drill is overdue days before a backup would be.
DRILLED = dataclasses.replace(strategy("production-db", "1w"),
                              restore_drill=RestoreDrillSettings(schedule="1d", target_url="postgres://h/postgres"))


def observed(clock):
    state, metrics = MonitorState((DRILLED, strategy("staging-db", "1w")), clock=clock), Metrics(clock=clock)
    metrics.declare_strategies((DRILLED,))
    state.loop_heartbeat()
    return state, metrics, MonitoringObserver(state, metrics, clock=clock)


def drill_finished(observer, result: dict) -> None:
    job = SimpleNamespace(kind=DRILL, started_at=None)
    observer.run_finished(SimpleNamespace(job=job, strategy="production-db", run_id="r1", result=result))


def sample(metrics, name: str, **labels) -> float | None:
    return metrics.registry.get_sample_value(name, {"strategy": "production-db", **labels})


def test_a_passed_drill_shows_in_health_and_metrics_and_not_as_a_backup():
    clock = Clock()
    state, metrics, observer = observed(clock)
    drill_finished(observer, success(duration=42.0))
    status, document = state.snapshot()
    view = document["strategies"]["last_backup_status"]["production-db"]
    assert view["last_restore_drill"] == {"status": "success", "last_run": "2025-06-17T00:00:05Z",
                                          "duration_seconds": 42.0, "error": None, "overdue": False}
    assert view["status"] == "pending" and document["status"] == "healthy"
    assert "last_restore_drill" not in document["strategies"]["last_backup_status"]["staging-db"]
    assert sample(metrics, "easybackup_restore_drill_runs_total", status="success") == 1
    assert sample(metrics, "easybackup_restore_drill_duration_seconds") == 42.0
    assert sample(metrics, "easybackup_restore_drill_last_success_timestamp_seconds") == clock.now
    assert sample(metrics, "easybackup_backup_runs_total", status="success") == 0


def test_a_failed_drill_degrades_health_with_its_error():
    clock = Clock()
    state, metrics, observer = observed(clock)
    drill_finished(observer, failure("checksum mismatch", kind="verification"))
    drill = entry(state, "production-db")["last_restore_drill"]
    assert drill["status"] == "failed" and drill["error"] == "app: checksum mismatch"
    assert state.snapshot()[1]["status"] == "degraded"
    assert sample(metrics, "easybackup_restore_drill_runs_total", status="failed") == 1
    assert sample(metrics, "easybackup_restore_drill_last_success_timestamp_seconds") is None


def test_no_passing_drill_for_two_drill_intervals_is_overdue_and_degrades_health():
    clock = Clock()
    state, _metrics, _observer = observed(clock)
    clock.advance(days=1, hours=23)
    state.loop_heartbeat()
    assert entry(state, "production-db")["last_restore_drill"]["overdue"] is False
    clock.advance(hours=2)
    state.loop_heartbeat()
    assert entry(state, "production-db")["last_restore_drill"]["overdue"] is True
    assert state.snapshot()[1]["status"] == "degraded"
