"""Feeds the health state and the metrics from the pool's hooks and the workers' events.

Events come from another process: a field may be missing or of the wrong type, and that must never raise —
an odd event is skipped, the backup goes on.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone

from easybackup.jobspec import BACKUP, DRILL
from easybackup.monitoring.metrics import Metrics
from easybackup.monitoring.state import MonitorState
from easybackup.run_observer import RunObserver


def _parse_utc(text) -> datetime | None:
    """Given `2025-06-17T10:30:00Z` (or any ISO 8601 text), return an aware datetime, or None if it is not one."""
    if not isinstance(text, str):
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _count(value) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0 else None


class MonitoringObserver(RunObserver):
    """Given the health state and the metrics, keep both current as backups start, progress and finish.

    Health and these metrics hold one backup per strategy (`running`, `in_progress`, `runs_total`): a job of
    another kind (a verify, a restore drill) may run beside its strategy's backup and is not one of them, so it is
    left out here; such a kind reports through its own fields (issue 18), never through a backup's."""

    name = "monitoring"

    def __init__(self, state: MonitorState, metrics: Metrics, clock=time.time):
        self.state = state
        self.metrics = metrics
        self._clock = clock
        self._uploaded: dict[tuple[str, str], int] = {}  # (run_id, database) -> cumulative bytes seen

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), timezone.utc)

    def run_started(self, handle) -> None:
        if not _is_backup(handle):
            return
        started_at = _parse_utc(getattr(handle.job, "started_at", None)) or self._now()
        self.state.run_started(handle.strategy, handle.run_id, started_at)
        self.metrics.run_started(handle.strategy)

    def event(self, handle, event: dict) -> None:
        if not isinstance(event, dict) or not _is_backup(handle):
            return
        kind = event.get("type")
        if kind == "progress":
            self._progress(handle, event)
        elif kind == "db_finished":
            self._db_finished(handle, event)
        elif kind == "retention":
            deleted = _count(event.get("deleted"))
            if deleted is not None:
                self.metrics.retention(handle.strategy, deleted)

    def _progress(self, handle, event: dict) -> None:
        """`bytes_uploaded` is cumulative per database and attempt: add what is new since the last event."""
        database = event.get("database")
        total = _count(event.get("bytes_uploaded"))
        if total is None:
            total = _count(event.get("bytes_out"))
        if not isinstance(database, str) or not database or total is None:
            return
        key = (handle.run_id, database)
        previous = self._uploaded.get(key, 0)
        # Lower than before: a retry started the upload over, and every byte of it is uploaded again.
        delta = total - previous if total >= previous else total
        self._uploaded[key] = total
        self.metrics.uploaded(handle.strategy, database, delta)

    def _db_finished(self, handle, event: dict) -> None:
        self.metrics.db_finished(handle.strategy, event)
        error = event.get("error")
        if event.get("verified") is True:
            self.metrics.verify(handle.strategy, "success")
        elif isinstance(error, dict) and error.get("kind") == "verification":
            self.metrics.verify(handle.strategy, "failed")

    def run_finished(self, handle) -> None:
        result = handle.result if isinstance(handle.result, dict) else {}
        if getattr(handle.job, "kind", BACKUP) == DRILL:
            self.metrics.drill_finished(handle.strategy, result)
            self.state.drill_finished(handle.strategy, result, self._now())
            return
        if not _is_backup(handle):
            return
        self.metrics.run_finished(handle.strategy, result)
        self.state.run_finished(handle.strategy, result, self._now())
        for key in [key for key in self._uploaded if key[0] == handle.run_id]:
            del self._uploaded[key]


def _is_backup(handle) -> bool:
    return getattr(handle.job, "kind", BACKUP) == BACKUP
