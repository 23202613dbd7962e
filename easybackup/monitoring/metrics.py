"""The Prometheus metrics (DESIGN.md, "Monitoring"): one registry the supervisor owns, fed by worker events.

Names carry the `easybackup_` prefix and base units (seconds, bytes). `render()` is the text exposition the
HTTP endpoint serves; `write_textfile()` writes it atomically for node_exporter's textfile collector (`once`).
"""

from __future__ import annotations

import os
import platform
import tempfile
import threading
import time
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, push_to_gateway
from prometheus_client.metrics_core import Metric
from prometheus_client.metrics import disable_created_metrics

from easybackup import __version__
from easybackup.monitoring.state import drill_status_of

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4  # what generate_latest() writes
# Dumps take from seconds to many hours: buckets up to 8 h.
DURATION_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, 28800, float("inf"))
RUN_STATUSES = ("success", "failed", "skipped")
VERIFY_STATUSES = ("success", "failed")
# A drill that timed out or was cancelled did not prove the backup: failed. Superseded: its backup was deleted by
# retention under it, after a newer one (monitoring/state.drill_status_of).
DRILL_STATUSES = ("success", "failed", "superseded")
PUSH_TIMEOUT_S = 10.0  # a Pushgateway that does not answer must not hold a finished backup's pod for long


def _strategy_name(item) -> str:
    return item if isinstance(item, str) else item.name


def _database_names(item) -> tuple[str, ...]:
    return () if isinstance(item, str) else tuple(target.name for target in item.databases)


class Metrics:
    """Given a registry (a new one by default), own every easybackup metric in it."""

    def __init__(self, registry: CollectorRegistry | None = None, *, clock=time.time):
        # `_created` series would double the series count and mean nothing to an alert; off for this process.
        disable_created_metrics()
        self.registry = registry if registry is not None else CollectorRegistry()
        self._clock = clock
        self._lock = threading.Lock()
        self._declared: set[str] = set()
        self._databases: set[tuple[str, str]] = set()
        r = self.registry
        self.runs = Counter("easybackup_backup_runs_total", "Strategy runs by outcome (success, failed, skipped).",
                            ["strategy", "status"], registry=r)
        self.duration = Histogram("easybackup_backup_duration_seconds",
                                  "Wall time of one database's backup, all attempts, success or not.",
                                  ["strategy", "database"], buckets=DURATION_BUCKETS, registry=r)
        self.size = Gauge("easybackup_backup_size_bytes", "Stored (compressed) size of the newest good backup.",
                          ["strategy", "database"], registry=r)
        self.last_success = Gauge("easybackup_last_success_timestamp_seconds",
                                  "When the strategy last finished a run in which every database succeeded.",
                                  ["strategy"], registry=r)
        self.next_run = Gauge("easybackup_next_run_timestamp_seconds", "When the strategy is scheduled to run next.",
                              ["strategy"], registry=r)
        self.in_progress = Gauge("easybackup_backup_in_progress", "1 while a run of the strategy is in progress.",
                                 ["strategy"], registry=r)
        self.uploaded_bytes = Counter("easybackup_uploaded_bytes_total", "Bytes uploaded to S3, retries included.",
                                ["strategy", "database"], registry=r)
        self.retention_deleted = Counter("easybackup_retention_deleted_total",
                                         "Backups deleted by retention.", ["strategy"], registry=r)
        self.orphans = Counter("easybackup_orphaned_archives_deleted_total",
                               "Archives without a manifest, older than the longest run the strategy allows, "
                               "deleted by the supervisor at start.", ["strategy"], registry=r)
        self.suspicious = Counter("easybackup_suspicious_backups_total", "Backups much smaller than the last ones of "
                                  "their database (anomaly.min_ratio of the median).", ["strategy", "database"],
                                  registry=r)
        self.verify_runs = Counter("easybackup_verify_runs_total", "Archive verifications by outcome.",
                                   ["strategy", "status"], registry=r)
        self.drill_runs = Counter("easybackup_restore_drill_runs_total", "Restore drills by outcome (success, "
                                  "failed: also timed out or cancelled, superseded: the backup drilled was deleted "
                                  "by retention under the drill, after a newer one).", ["strategy", "status"],
                                  registry=r)
        self.drill_duration = Gauge("easybackup_restore_drill_duration_seconds", "Wall time of the strategy's last "
                                    "restore drill (every database: download, restore, checks).", ["strategy"],
                                    registry=r)
        self.drill_last_success = Gauge("easybackup_restore_drill_last_success_timestamp_seconds",
                                        "When the strategy's last restore drill in which every database passed "
                                        "finished.", ["strategy"], registry=r)
        self.notification_errors = Counter("easybackup_notification_errors_total",
                                           "Notifications that could not be delivered, by kind of error.",
                                           ["kind"], registry=r)
        self.build_info = Gauge("easybackup_build_info", "Always 1; the labels say which build runs.",
                                ["version", "python"], registry=r)
        self.build_info.labels(version=__version__, python=platform.python_version()).set(1)

    def declare_strategies(self, strategies: Iterable) -> None:
        """Given the configured strategies (names or Strategy objects), make their series exist at zero now.

        Series of strategies declared before and absent now (removed by a reload) are dropped.
        """
        items = list(strategies)
        names = {_strategy_name(item) for item in items}
        with self._lock:
            for gone in self._declared - names:
                self._forget(gone)
            self._declared = names
        for item in items:
            name = _strategy_name(item)
            for status in RUN_STATUSES:
                self.runs.labels(strategy=name, status=status)
            for status in VERIFY_STATUSES:
                self.verify_runs.labels(strategy=name, status=status)
            self.retention_deleted.labels(strategy=name)
            if getattr(item, "restore_drill", None) is not None:
                for status in DRILL_STATUSES:
                    self.drill_runs.labels(strategy=name, status=status)
            self.orphans.labels(strategy=name)
            self.in_progress.labels(strategy=name)  # 0 when new; a running strategy keeps its 1
            for database in _database_names(item):
                self._database(name, database)

    def _database(self, strategy: str, database: str) -> None:
        with self._lock:
            self._databases.add((strategy, database))
        self.uploaded_bytes.labels(strategy=strategy, database=database)
        self.suspicious.labels(strategy=strategy, database=database)

    def _forget(self, strategy: str) -> None:
        """Drop every series of a strategy that is no longer configured (caller holds the lock)."""
        for metric, labels in ((self.runs, [(strategy, s) for s in RUN_STATUSES]),
                               (self.verify_runs, [(strategy, s) for s in VERIFY_STATUSES]),
                               (self.drill_runs, [(strategy, s) for s in DRILL_STATUSES]),
                               (self.drill_duration, [(strategy,)]), (self.drill_last_success, [(strategy,)]),
                               (self.retention_deleted, [(strategy,)]), (self.in_progress, [(strategy,)]),
                               (self.orphans, [(strategy,)]),
                               (self.last_success, [(strategy,)]), (self.next_run, [(strategy,)])):
            for values in labels:
                _remove(metric, values)
        for pair in [pair for pair in self._databases if pair[0] == strategy]:
            for metric in (self.duration, self.size, self.uploaded_bytes, self.suspicious):
                _remove(metric, pair)
            self._databases.discard(pair)

    def run_started(self, strategy: str) -> None:
        """Given a strategy whose run started, mark it in progress."""
        self.in_progress.labels(strategy=strategy).set(1)

    def run_finished(self, strategy: str, result: dict) -> None:
        """Given a strategy and its run's `result` fields, count the run; on success stamp its last success."""
        self.in_progress.labels(strategy=strategy).set(0)
        succeeded = isinstance(result, dict) and result.get("status") == "success"
        self.runs.labels(strategy=strategy, status="success" if succeeded else "failed").inc()
        if succeeded:
            self.last_success.labels(strategy=strategy).set(self._clock())

    def run_skipped(self, strategy: str) -> None:
        """Given a strategy whose due run was skipped (the previous one still running), count it."""
        self.runs.labels(strategy=strategy, status="skipped").inc()

    def db_finished(self, strategy: str, event: dict) -> None:
        """Given a strategy and a `db_finished` event, observe its duration and, on success, its stored size."""
        database = event.get("database")
        if not isinstance(database, str) or not database:
            return
        self._database(strategy, database)
        duration = event.get("duration_s")
        if _is_number(duration) and duration >= 0:
            self.duration.labels(strategy=strategy, database=database).observe(duration)
        size = event.get("size")
        if event.get("status") == "success" and _is_number(size):
            self.size.labels(strategy=strategy, database=database).set(size)
        if event.get("status") == "success" and event.get("suspicious"):
            self.suspicious.labels(strategy=strategy, database=database).inc()

    def uploaded(self, strategy: str, database: str, delta_bytes: int) -> None:
        """Given a strategy, a database and bytes uploaded since the last call, add them (negative is ignored)."""
        if _is_number(delta_bytes) and delta_bytes > 0:
            self._database(strategy, database)
            self.uploaded_bytes.labels(strategy=strategy, database=database).inc(delta_bytes)

    def set_next_run(self, strategy: str, when: datetime | None) -> None:
        """Given a strategy and its next run (aware datetime), publish it; None removes the series."""
        if when is None:
            _remove(self.next_run, (strategy,))
        else:
            self.next_run.labels(strategy=strategy).set(when.timestamp())

    def set_last_success(self, strategy: str, when: datetime) -> None:
        """Given a strategy and when it last succeeded (e.g. from its newest manifest), publish it."""
        self.last_success.labels(strategy=strategy).set(when.timestamp())

    def retention(self, strategy: str, deleted: int) -> None:
        """Given a strategy and how many backups retention deleted, count them."""
        self.retention_deleted.labels(strategy=strategy)
        if _is_number(deleted) and deleted > 0:
            self.retention_deleted.labels(strategy=strategy).inc(deleted)

    def orphans_deleted(self, strategy: str, count: int) -> None:
        """Given a strategy and how many archives without a manifest were deleted as garbage, count them."""
        if _is_number(count) and count > 0:
            self.orphans.labels(strategy=strategy).inc(count)

    def verify(self, strategy: str, status: str) -> None:
        """Given a strategy and a verification's outcome (success or failed), count it."""
        self.verify_runs.labels(strategy=strategy, status="success" if status == "success" else "failed").inc()

    def drill_finished(self, strategy: str, result: dict) -> None:
        """Given a strategy and its restore drill's `result` fields, count it, keep its duration and, when every
        database passed, stamp its last success."""
        status = drill_status_of(result)
        succeeded = status == "success"
        self.drill_runs.labels(strategy=strategy, status=status).inc()
        duration = result.get("duration_s") if isinstance(result, dict) else None
        if _is_number(duration):
            self.drill_duration.labels(strategy=strategy).set(duration)
        if succeeded:
            self.drill_last_success.labels(strategy=strategy).set(self._clock())

    def notification_error(self, kind: str) -> None:
        """Given the kind of a notification failure (rate_limited, http, api, network…), count it."""
        self.notification_errors.labels(kind=kind or "unknown").inc()

    def render(self) -> bytes:
        """Return the registry in Prometheus text exposition format (version 0.0.4)."""
        return generate_latest(self.registry)

    def write_textfile(self, path: str | os.PathLike) -> None:
        """Given a path, write `render()` there atomically (temp file in the same dir, fsync, rename)."""
        target = Path(path)
        fd, temp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(self.render())
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(temp, 0o644)  # node_exporter usually runs as another user
            os.replace(temp, target)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise

    def push(self, gateway: str, strategy: str, timeout: float = PUSH_TIMEOUT_S) -> None:
        """Given a Prometheus Pushgateway URL and a strategy, replace the group `job=<strategy>` there with the
        strategy's series and those of no strategy (build info); raise what the HTTP request raised."""
        push_to_gateway(gateway, job=strategy, registry=_OneStrategy(self.registry, strategy), timeout=timeout)


class _OneStrategy:
    """A collector of one strategy's samples of a registry: a run of several strategies pushes each to its own
    group, so one strategy's next run replaces its series and leaves the others' alone."""

    def __init__(self, registry: CollectorRegistry, strategy: str):
        self.registry, self.strategy = registry, strategy

    def collect(self):
        for family in self.registry.collect():
            kept = Metric(family.name, family.documentation, family.type, family.unit)
            kept.samples = [sample for sample in family.samples
                            if sample.labels.get("strategy", self.strategy) == self.strategy]
            yield kept


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _remove(metric, values: tuple) -> None:
    try:
        metric.remove(*values)
    except KeyError:  # the series never existed: nothing to drop
        pass
