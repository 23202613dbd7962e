"""The Prometheus metrics: exact names, series from the start, and the observer fed with real event shapes."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
from dataclasses import replace
from datetime import datetime, timezone

import pytest
from prometheus_client.parser import text_string_to_metric_families

from easybackup import __version__, wire
from easybackup.config.model import DatabaseTarget, S3Settings, Strategy
from easybackup.jobspec import new_job
from easybackup.monitoring.metrics import Metrics
from easybackup.monitoring.observer import MonitoringObserver
from easybackup.monitoring.state import MonitorState
from easybackup.monitoring.metrics import DURATION_BUCKETS
from easybackup.supervision.pool import RunHandle

NOW = datetime(2025, 6, 17, 6, 0, tzinfo=timezone.utc)
EXPECTED = {  # family name (as the parser reports it) -> (type, label names of its main samples)
    "easybackup_backup_runs": ("counter", {"strategy", "status"}),
    "easybackup_backup_duration_seconds": ("histogram", {"strategy", "database", "le"}),
    "easybackup_backup_size_bytes": ("gauge", {"strategy", "database"}),
    "easybackup_last_success_timestamp_seconds": ("gauge", {"strategy"}),
    "easybackup_next_run_timestamp_seconds": ("gauge", {"strategy"}),
    "easybackup_backup_in_progress": ("gauge", {"strategy"}),
    "easybackup_uploaded_bytes": ("counter", {"strategy", "database"}),
    "easybackup_retention_deleted": ("counter", {"strategy"}),
    "easybackup_orphaned_archives_deleted": ("counter", {"strategy"}),
    "easybackup_suspicious_backups": ("counter", {"strategy", "database"}),
    "easybackup_verify_runs": ("counter", {"strategy", "status"}),
    "easybackup_restore_drill_runs": ("counter", {"strategy", "status"}),
    "easybackup_restore_drill_duration_seconds": ("gauge", {"strategy"}),
    "easybackup_restore_drill_last_success_timestamp_seconds": ("gauge", {"strategy"}),
    "easybackup_notification_errors": ("counter", {"kind"}),
    "easybackup_build_info": ("gauge", {"version", "python"}),
}


def strategy(name: str = "production-db", databases=("app", "billing")) -> Strategy:
    return Strategy(name=name, s3=S3Settings(bucket="b"), schedule="6h",
                    databases=tuple(DatabaseTarget(name=db, url=f"postgres://h/{db}") for db in databases))


def samples(metrics: Metrics) -> dict[tuple, float]:
    """Return {(sample name, sorted labels): value} of everything the registry renders."""
    found = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(metrics: Metrics, name: str, **labels) -> float | None:
    return samples(metrics).get((name, tuple(sorted(labels.items()))))


def test_every_metric_has_its_design_name_type_and_labels():
    metrics = Metrics()
    metrics.declare_strategies([strategy()])
    metrics.run_finished("production-db", {"status": "success"})
    metrics.db_finished("production-db", {"database": "app", "status": "success", "size": 1, "duration_s": 1.0})
    metrics.set_next_run("production-db", NOW)
    metrics.drill_finished("production-db", {"status": "success", "duration_s": 3.5})
    metrics.notification_error("rate_limited")
    families = {f.name: f for f in text_string_to_metric_families(metrics.render().decode())}
    assert set(families) == set(EXPECTED)
    for name, (kind, labels) in EXPECTED.items():
        family = families[name]
        assert family.type == kind, name
        main = [s for s in family.samples if not s.name.endswith(("_sum", "_count"))]
        assert main and all(set(s.labels) == labels for s in main), name
    assert "_created" not in metrics.render().decode()


def test_the_duration_histogram_has_buckets_up_to_hours():
    metrics = Metrics()
    metrics.db_finished("s", {"database": "app", "status": "success", "size": 1, "duration_s": 5400.0})
    buckets = [float(labels[1][1]) for (name, labels) in samples(metrics)
               if name == "easybackup_backup_duration_seconds_bucket"]
    assert sorted(buckets) == [float(b) for b in DURATION_BUCKETS]
    assert value(metrics, "easybackup_backup_duration_seconds_bucket", strategy="s", database="app", le="3600.0") == 0
    assert value(metrics, "easybackup_backup_duration_seconds_bucket", strategy="s", database="app", le="7200.0") == 1


def test_declared_strategies_have_series_from_the_start():
    metrics = Metrics()
    metrics.declare_strategies([strategy(), "staging-db"])
    for name in ("production-db", "staging-db"):
        for status in ("success", "failed", "skipped"):
            assert value(metrics, "easybackup_backup_runs_total", strategy=name, status=status) == 0
        assert value(metrics, "easybackup_backup_in_progress", strategy=name) == 0
        assert value(metrics, "easybackup_retention_deleted_total", strategy=name) == 0
        assert value(metrics, "easybackup_verify_runs_total", strategy=name, status="failed") == 0
    assert value(metrics, "easybackup_uploaded_bytes_total", strategy="production-db", database="billing") == 0
    assert value(metrics, "easybackup_build_info", version=__version__,
                 python=".".join(map(str, os.sys.version_info[:3]))) == 1


def test_a_reload_drops_the_series_of_a_removed_strategy():
    metrics = Metrics()
    metrics.declare_strategies([strategy(), strategy("old-db")])
    metrics.set_next_run("old-db", NOW)
    metrics.db_finished("old-db", {"database": "app", "status": "success", "size": 5, "duration_s": 1.0})
    metrics.declare_strategies([strategy()])
    assert not [key for key in samples(metrics) if ("strategy", "old-db") in key[1]]
    assert value(metrics, "easybackup_backup_runs_total", strategy="production-db", status="success") == 0


def test_runs_are_counted_by_outcome_and_success_stamps_the_time():
    metrics = Metrics(clock=lambda: 1750140000.0)
    metrics.run_started("s")
    assert value(metrics, "easybackup_backup_in_progress", strategy="s") == 1
    metrics.run_finished("s", {"status": "success"})
    metrics.run_finished("s", {"status": "crashed"})
    metrics.run_skipped("s")
    assert value(metrics, "easybackup_backup_in_progress", strategy="s") == 0
    assert value(metrics, "easybackup_backup_runs_total", strategy="s", status="success") == 1
    assert value(metrics, "easybackup_backup_runs_total", strategy="s", status="failed") == 1
    assert value(metrics, "easybackup_backup_runs_total", strategy="s", status="skipped") == 1
    assert value(metrics, "easybackup_last_success_timestamp_seconds", strategy="s") == 1750140000.0
    metrics.set_last_success("s", NOW)
    assert value(metrics, "easybackup_last_success_timestamp_seconds", strategy="s") == NOW.timestamp()


def test_write_textfile_replaces_the_file_atomically(tmp_path):
    metrics = Metrics()
    metrics.run_finished("s", {"status": "success"})
    target = tmp_path / "easybackup.prom"
    target.write_text("old\n")
    metrics.write_textfile(target)
    assert target.read_bytes() == metrics.render()
    assert [p.name for p in tmp_path.iterdir()] == ["easybackup.prom"]  # no temp file left
    assert oct(target.stat().st_mode & 0o777) == "0o644"


def test_promtool_accepts_the_exposition(tmp_path):
    promtool = shutil.which("promtool")
    assert promtool, "promtool (Debian package prometheus) is a required test tool"
    metrics = Metrics()
    metrics.declare_strategies([strategy()])
    metrics.db_finished("production-db", {"database": "app", "status": "success", "size": 10, "duration_s": 2.0})
    checked = subprocess.run([promtool, "check", "metrics"], input=metrics.render(), capture_output=True,
                             timeout=30)
    assert checked.returncode == 0, checked.stdout + checked.stderr


# --- the observer, fed with events shaped exactly as the worker sends them ---------------------------------------

def worker_events(run_id: str, name: str) -> list[dict]:
    """A run of two databases as worker/main.py, attempts.py and backup.py emit it: `app` succeeds after a retry
    that restarted its upload; `billing` fails verification; retention deletes two old backups."""
    stream = io.BytesIO()
    writer = wire.EventWriter(stream, run_id, name)
    emit = writer.emit
    emit("started", pid=4242, databases=["app", "billing"])
    emit("db_started", database="app")
    emit("upload_started", database="app", key="backups/p/app/x.dump.gz", upload_id="u1")
    emit("progress", database="app", bytes_in=None, bytes_out=9000, bytes_uploaded=8000, parts=1)
    emit("retry", database="app", attempt=1, max_attempts=3, reason="S3 is unavailable", delay_s=1.0,
         kind="storage")
    emit("progress", database="app", bytes_in=None, bytes_out=6000, bytes_uploaded=5000, parts=1)
    emit("progress", database="app", bytes_in=None, bytes_out=12000, bytes_uploaded=12000, parts=2)
    emit("progress", database="app", bytes_in=None, bytes_out=12000, bytes_uploaded=12000, parts=None)
    app = {"status": "success", "key": "backups/p/app/x.dump.gz", "size": 12000, "dump_bytes": None,
           "sha256": "ab" * 32, "duration_s": 42.0, "verified": True, "attempts": 2, "error": None}
    emit("db_finished", database="app", **app)
    emit("db_started", database="billing")
    emit("progress", database="billing", bytes_in=None, bytes_out=700, bytes_uploaded=700, parts=1)
    error = {"kind": "verification", "transient": False, "message": "archive failed verification",
             "detail": "pg_restore: error: could not read input file: end of file", "hint": None,
             "exit_codes": {"pg_restore": 1}, "last_lines": []}
    billing = {"status": "failed", "key": None, "size": None, "dump_bytes": None, "sha256": None,
               "duration_s": 7.5, "verified": False, "attempts": 1, "error": error}
    emit("db_finished", database="billing", **billing)
    emit("log", database=None, stream="worker", level="info", line="retention: 2 old backups")
    emit("retention", deleted=2, kept=5)
    emit("result", status="failed", duration_s=50.0, error=error,
         databases=[{"database": "app", **app}, {"database": "billing", **billing}])
    return [wire.decode(line) for line in stream.getvalue().splitlines()]


def feed(observer: MonitoringObserver, handle: RunHandle, events: list[dict]) -> None:
    """Drive the observer as supervision/batch.py does."""
    for event in events:
        if event["type"] == "started":
            observer.run_started(handle)
        observer.event(handle, event)
        if event["type"] == "result":
            handle.result = event
    observer.run_finished(handle)


def handle_for(s: Strategy) -> RunHandle:
    return RunHandle(job=new_job(s, "/tmp", NOW), process=None, pid=4242, started_at=0.0, last_event_at=0.0)


@pytest.fixture
def fed():
    s = strategy()
    state, metrics = MonitorState((s,), clock=lambda: NOW.timestamp() + 60), Metrics()
    metrics.declare_strategies([s])
    observer = MonitoringObserver(state, metrics, clock=lambda: NOW.timestamp() + 60)
    handle = handle_for(s)
    events = worker_events(handle.run_id, s.name)
    return observer, handle, events, state, metrics


def test_the_observer_turns_a_run_into_the_right_series(fed):
    observer, handle, events, state, metrics = fed
    feed(observer, handle, events)
    s, app, billing = "production-db", {"strategy": "production-db", "database": "app"}, \
        {"strategy": "production-db", "database": "billing"}
    # 8000 before the retry, then the restarted upload's 12000: bytes that really went to S3
    assert value(metrics, "easybackup_uploaded_bytes_total", **app) == 20000
    assert value(metrics, "easybackup_uploaded_bytes_total", **billing) == 700
    assert value(metrics, "easybackup_backup_size_bytes", **app) == 12000
    assert value(metrics, "easybackup_backup_size_bytes", **billing) is None  # never stored a good one
    assert value(metrics, "easybackup_backup_duration_seconds_count", **app) == 1
    assert value(metrics, "easybackup_backup_duration_seconds_sum", **app) == 42.0
    assert value(metrics, "easybackup_backup_duration_seconds_sum", **billing) == 7.5
    assert value(metrics, "easybackup_verify_runs_total", strategy=s, status="success") == 1
    assert value(metrics, "easybackup_verify_runs_total", strategy=s, status="failed") == 1
    assert value(metrics, "easybackup_retention_deleted_total", strategy=s) == 2
    assert value(metrics, "easybackup_backup_runs_total", strategy=s, status="failed") == 1
    assert value(metrics, "easybackup_backup_runs_total", strategy=s, status="success") == 0
    assert value(metrics, "easybackup_backup_in_progress", strategy=s) == 0
    assert value(metrics, "easybackup_last_success_timestamp_seconds", strategy=s) is None
    view = state.snapshot()[1]["strategies"]["last_backup_status"][s]
    assert view["status"] == "failed" and view["error_kind"] == "verification"
    assert view["error"].startswith("billing: archive failed verification")
    assert view["last_run"] == "2025-06-17T06:00:00Z" and view["size_bytes"] == 12000


def test_a_job_of_another_kind_beside_the_backup_leaves_the_backups_health_and_series_alone(fed):
    observer, handle, events, state, metrics = fed
    drill = RunHandle(job=replace(handle.job, kind="drill", run_id="d" * 12), process=None, pid=4343,
                      started_at=0.0, last_event_at=0.0)
    observer.run_started(handle)
    feed(observer, drill, worker_events(drill.run_id, drill.strategy))
    s = "production-db"
    assert value(metrics, "easybackup_backup_in_progress", strategy=s) == 1, "the backup still runs"
    assert value(metrics, "easybackup_backup_runs_total", strategy=s, status="failed") == 0
    assert value(metrics, "easybackup_uploaded_bytes_total", strategy=s, database="app") == 0
    view = state.snapshot()[1]["strategies"]["last_backup_status"][s]
    assert view["status"] == "running"


def test_the_observer_shows_a_run_in_progress(fed):
    observer, handle, events, state, metrics = fed
    observer.run_started(handle)
    for event in events[:4]:
        observer.event(handle, event)
    assert value(metrics, "easybackup_backup_in_progress", strategy="production-db") == 1
    assert state.snapshot()[1]["strategies"]["last_backup_status"]["production-db"]["status"] == "running"


def test_a_successful_run_stamps_last_success_in_both(fed):
    observer, handle, events, state, metrics = fed
    result = {**events[-1], "status": "success", "error": None}
    feed(observer, handle, [*events[:-1], result])
    assert value(metrics, "easybackup_backup_runs_total", strategy="production-db", status="success") == 1
    assert value(metrics, "easybackup_last_success_timestamp_seconds", strategy="production-db") is not None
    view = state.snapshot()[1]["strategies"]["last_backup_status"]["production-db"]
    assert view["status"] == "success" and view["last_success"] == "2025-06-17T06:01:00Z"


@pytest.mark.parametrize("event", [
    {},
    {"type": "progress"},
    {"type": "progress", "database": None, "bytes_uploaded": 5},
    {"type": "progress", "database": "app", "bytes_uploaded": "lots"},
    {"type": "progress", "database": ["app"], "bytes_uploaded": 5},
    {"type": "db_finished", "database": 3, "duration_s": "slow"},
    {"type": "db_finished", "database": "app", "duration_s": -1, "size": True, "status": "success"},
    {"type": "db_finished", "database": "app", "error": "boom"},
    {"type": "retention", "deleted": "two"},
    {"type": "retention", "deleted": -4},
    {"type": "somethingnew", "payload": {"a": 1}},
])
def test_an_event_of_unknown_shape_never_raises(fed, event):
    observer, handle, _events, _state, metrics = fed
    observer.run_started(handle)
    observer.event(handle, event)
    assert value(metrics, "easybackup_retention_deleted_total", strategy="production-db") == 0


def test_a_result_that_is_not_a_dict_counts_as_a_failed_run(fed):
    observer, handle, _events, state, metrics = fed
    observer.run_started(handle)
    handle.result = None
    observer.run_finished(handle)
    assert value(metrics, "easybackup_backup_runs_total", strategy="production-db", status="failed") == 1
    assert state.snapshot()[1]["strategies"]["last_backup_status"]["production-db"]["status"] == "failed"


def test_a_suspicious_backup_is_counted_per_database():
    metrics = Metrics()
    metrics.declare_strategies([strategy()])
    event = {"database": "app", "status": "success", "size": 10, "duration_s": 1.0}
    metrics.db_finished("production-db", event)
    metrics.db_finished("production-db", {**event, "suspicious": "stored size 10 B is 1% of the median"})
    text = metrics.render().decode()
    assert 'easybackup_suspicious_backups_total{database="app",strategy="production-db"} 1.0' in text
