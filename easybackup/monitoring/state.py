"""What the health endpoint reports: per-strategy run state, the scheduler's heartbeat and connectivity.

DESIGN.md, "Monitoring". Pure logic on an injected clock, safe to share between the supervisor loop (writer)
and the HTTP threads (readers): every method takes one lock, and `snapshot()` only reads memory — it never
calls S3 or Slack, so a request costs microseconds however slow the outside world is.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from easybackup import __version__
from easybackup.config.model import Strategy
from easybackup.logs import log
from easybackup.monitoring.history import HistoryPoint, merge_history
from easybackup.network.routes import describe_route
from easybackup.scheduling import interval
from easybackup.secrets import mask
from easybackup.storage.drillrecord import FAILED, no_failure

STALL_AFTER_S = 30.0  # the loop beats about once a second; this much silence means it is stuck
OVERDUE_INTERVALS = 2  # no success within this many schedule intervals -> overdue
CONNECTIVITY = frozenset({"ok", "error", "unknown", "disabled"})
MAX_ERROR_CHARS = 500
HTTP_OK, HTTP_UNAVAILABLE = 200, 503


def utc_text(moment: datetime | None) -> str | None:
    """Given an aware (or naive UTC) datetime or None, return `2025-06-17T10:30:00Z` or None."""
    if moment is None:
        return None
    return _aware(moment).astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)


def error_line(result: dict) -> str | None:
    """Given a run's `result` fields, return its error as one masked line (prefixed by the failed database)."""
    error = result.get("error")
    if not isinstance(error, dict):
        return None
    # The same line as ErrorInfo.one_line(), built defensively: the fields come from another process.
    parts = [str(error[key]) for key in ("message", "detail") if error.get(key)]
    text = " ".join(": ".join(parts).split()) or str(error.get("kind") or "failed")
    failed = [db.get("database") for db in _databases(result) if db.get("status") != "success" and db.get("database")]
    if failed and not text.startswith(f"{failed[0]}:"):
        text = f"{failed[0]}: {text}"
    text = mask(text)
    return text if len(text) <= MAX_ERROR_CHARS else text[:MAX_ERROR_CHARS - 1] + "…"


def suspicious_line(result: dict) -> str | None:
    """Given a run's result, return `db: why` for each database whose backup is suspicious (a size drop), or None."""
    found = [f"{db.get('database')}: suspicious backup, {db['suspicious']}" for db in _databases(result)
             if db.get("status") == "success" and isinstance(db.get("suspicious"), str)]
    return "; ".join(found) or None


def stored_bytes(result: dict) -> int | None:
    """Given a run's `result` fields, return the bytes its successful databases stored, or None if none did."""
    sizes = [db.get("size") for db in _databases(result)
             if db.get("status") == "success" and isinstance(db.get("size"), int)]
    return sum(sizes) if sizes else None


def _databases(result: dict) -> list[dict]:
    databases = result.get("databases")
    return [db for db in databases if isinstance(db, dict)] if isinstance(databases, list) else []


def _record_databases(entry: StrategyHealth, result: dict, finished_at: datetime) -> None:
    """Given a finished run's `result`, update the strategy's per-database view: status and error of this run,
    and the last success of each database that succeeded."""
    for item in _databases(result):
        name = item.get("database")
        if not isinstance(name, str) or not name:
            continue
        known = entry.databases.get(name, {})
        succeeded = item.get("status") == "success"
        error = item.get("error")
        line = error_line({"error": error}) if not succeeded and isinstance(error, dict) else None
        entry.databases[name] = {"status": str(item.get("status") or "failed"),
                                 "last_success": utc_text(finished_at) if succeeded else known.get("last_success"),
                                 "error": line}
        if succeeded and isinstance(item.get("verify_level"), str):  # which check verify.after_backup could make
            entry.databases[name]["verified"] = item["verify_level"]


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def drill_status_of(result: dict) -> str:
    """Given a restore drill's `result` (or record), return its status for health and metrics: success, superseded
    (its backup deleted by retention under it after a newer one: no failure, though nothing was proved) or failed
    (timed out and cancelled too: they did not prove the backup either)."""
    status = result.get("status") if isinstance(result, dict) else None
    return status if no_failure(status) else FAILED


def _drill_degraded(view: dict) -> bool:
    """A strategy whose last restore drill failed, or that has had no passing drill for two drill intervals (a
    superseded drill is no failure, and no pass either)."""
    drill = view.get("last_restore_drill")
    return drill is not None and (drill["status"] == "failed" or drill["overdue"])


@dataclass
class StrategyHealth:
    """What health shows for one strategy."""

    interval: timedelta | None
    route: str = "direct"  # how it reaches its databases, without secrets (routes.describe_route)
    status: str = "pending"  # pending, running, success, degraded (succeeded, a backup suspicious), failed
    run_id: str | None = None
    run_started: datetime | None = None
    last_run: datetime | None = None
    last_success: datetime | None = None
    next_run: datetime | None = None
    error: str | None = None
    error_kind: str | None = None
    consecutive_failures: int = 0
    size_bytes: int | None = None
    duration_seconds: float | None = None
    databases: dict[str, dict] = field(default_factory=dict)  # name -> {status, last_success, error}
    history: tuple[HistoryPoint, ...] = ()  # recent runs that stored something, oldest first (immutable: shared)
    warning: str | None = None  # why a successful run is `degraded` (catalogue.anomaly)
    drill_interval: timedelta | None = None  # restore_drill.schedule's; None: the strategy has no drills
    drill: dict | None = None  # the last restore drill: {status, last_run, duration_seconds, error (or why superseded)}
    drill_success: datetime | None = None


def _interval_of(strategy: Strategy) -> timedelta | None:
    try:
        return interval(strategy.schedule)
    except ValueError as exc:  # validated configs never get here; health then just cannot say "overdue"
        log.warning(f"strategy {strategy.name}: no interval for schedule {strategy.schedule!r}: {exc}")
        return None


def _drill_interval_of(strategy: Strategy) -> timedelta | None:
    if strategy.restore_drill is None:
        return None
    try:
        return interval(strategy.restore_drill.schedule)
    except ValueError:  # validated configs never get here
        return None


class MonitorState:
    """Given the configured strategies and a clock (epoch seconds), keep what health reports; see `snapshot()`."""

    def __init__(self, strategies: tuple[Strategy, ...], *, clock=time.time, started_at: datetime | None = None,
                 stall_after: float = STALL_AFTER_S):
        self._clock = clock
        self._lock = threading.Lock()
        self.started_at = _aware(started_at) if started_at else self._now()
        self.stall_after = stall_after
        self._heartbeat = self.started_at  # the loop has until stall_after past start to beat for the first time
        self._s3 = "unknown"
        self._slack = "unknown"
        self._strategies: dict[str, StrategyHealth] = {
            s.name: StrategyHealth(_interval_of(s), describe_route(s), drill_interval=_drill_interval_of(s))
            for s in strategies}

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), timezone.utc)

    def _entry(self, name: str) -> StrategyHealth | None:
        entry = self._strategies.get(name)
        if entry is None:  # a run of a strategy a reload removed: nothing to show any more
            log.debug(f"health: ignoring an update for unconfigured strategy {name!r}")
        return entry

    def set_next_run(self, name: str, when: datetime | None) -> None:
        """Given a strategy and its next scheduled run (or None), record it."""
        with self._lock:
            if entry := self._entry(name):
                entry.next_run = _aware(when) if when else None

    def run_started(self, name: str, run_id: str, started_at: datetime) -> None:
        """Given a strategy, the run id and when its run started, show it as running."""
        with self._lock:
            if entry := self._entry(name):
                entry.status, entry.run_id, entry.run_started = "running", run_id, _aware(started_at)

    def run_finished(self, name: str, result: dict, finished_at: datetime) -> None:
        """Given a strategy, its run's `result` fields and when it ended, record the outcome."""
        finished_at = _aware(finished_at)
        result = result if isinstance(result, dict) else {}
        with self._lock:
            entry = self._entry(name)
            if entry is None:
                return
            entry.last_run = entry.run_started or finished_at
            run_id = entry.run_id
            entry.run_id, entry.run_started = None, None
            # Size and duration describe the last finished run; a failed run keeps the archives that succeeded.
            duration = result.get("duration_s")
            entry.duration_seconds = float(duration) if _is_number(duration) else None
            entry.size_bytes = stored_bytes(result)
            if entry.size_bytes is not None:
                point = HistoryPoint(run_id or f"finished-{utc_text(finished_at)}", finished_at, entry.size_bytes,
                                     entry.duration_seconds)
                entry.history = merge_history((point,), entry.history)
            _record_databases(entry, result, finished_at)
            entry.warning = suspicious_line(result)
            if result.get("status") == "success":
                entry.status, entry.error, entry.error_kind = "degraded" if entry.warning else "success", None, None
                entry.last_success = finished_at
                entry.consecutive_failures = 0
            else:
                entry.status = "failed"
                entry.error = error_line(result) or f"run ended with status {result.get('status') or 'unknown'}"
                error = result.get("error")
                entry.error_kind = str(error.get("kind")) if isinstance(error, dict) and error.get("kind") else None
                entry.consecutive_failures += 1

    def drill_finished(self, name: str, result: dict, finished_at: datetime, started_at: datetime | None = None
                       ) -> None:
        """Given a strategy, its restore drill's `result` fields (or a drill record's) and when it ended, record it
        as the strategy's last restore drill."""
        finished_at = _aware(finished_at)
        with self._lock:
            entry = self._entry(name)
            if entry is None:
                return
            duration = result.get("duration_s")
            status = drill_status_of(result)
            entry.drill = {"status": status, "last_run": utc_text(started_at or finished_at),
                           "duration_seconds": float(duration) if _is_number(duration) else None,
                           "error": None if status == "success" else (error_line(result) or "the drill failed")}
            if status == "success":
                entry.drill_success = finished_at

    def restore_drill(self, name: str, record: dict) -> None:
        """Given a strategy and its newest drill record from S3, show it unless this process saw a drill itself."""
        with self._lock:
            entry = self._entry(name)
            seen = entry is None or entry.drill is not None
        if seen or not isinstance(record, dict):
            return
        try:
            started, finished = (datetime.fromisoformat(str(record[key]).replace("Z", "+00:00"))
                                 for key in ("started_at", "finished_at"))
        except (KeyError, ValueError):
            return
        self.drill_finished(name, {"status": record.get("status"), "duration_s": record.get("duration_s"),
                                   "error": {"message": record.get("error")} if record.get("error") else None},
                            finished, started_at=started)

    def restore_last(self, name: str, last_run: datetime | None, last_success: datetime | None, status: str,
                     size_bytes: int | None = None, *, error: str | None = None, error_kind: str | None = None,
                     consecutive_failures: int = 0, databases: dict[str, dict] | None = None) -> None:
        """Given what S3 says about a strategy (its last run record and its newest manifests: status, the last
        run's error, failures in a row, and per database {status, last_success, error}), fill what this process
        has not seen itself."""
        with self._lock:
            entry = self._entry(name)
            if entry is None:
                return
            if entry.status == "pending" and status in ("success", "failed"):
                entry.status = status
                entry.size_bytes = size_bytes if entry.size_bytes is None else entry.size_bytes
                if status == "failed":
                    entry.error = mask(error) if error else "the last run failed (no error recorded)"
                    entry.error_kind = error_kind
                entry.consecutive_failures = max(entry.consecutive_failures, consecutive_failures)
            for database, view in (databases or {}).items():
                entry.databases.setdefault(database, {**view, "error": mask(view["error"]) if view.get("error")
                                                      else None})
            if last_run and (entry.last_run is None or _aware(last_run) > entry.last_run):
                entry.last_run = _aware(last_run)
            if last_success and (entry.last_success is None or _aware(last_success) > entry.last_success):
                entry.last_success = _aware(last_success)

    def restore_history(self, name: str, points: tuple[HistoryPoint, ...]) -> None:
        """Given a strategy's recent runs read from its manifests, add them to what this process saw itself."""
        with self._lock:
            if entry := self._entry(name):
                entry.history = merge_history(entry.history, points)

    def loop_heartbeat(self, when: datetime | float | None = None) -> None:
        """Record that the scheduler loop is alive (now, or at `when`: a datetime or epoch seconds)."""
        if when is None:
            moment = self._now()
        elif isinstance(when, datetime):
            moment = _aware(when)
        else:
            moment = datetime.fromtimestamp(float(when), timezone.utc)
        with self._lock:  # the latest beat wins, so a wall clock set back cannot hide a stall behind a future beat
            self._heartbeat = moment

    def set_connectivity(self, s3: str | None = None, slack: str | None = None) -> None:
        """Given new S3 and/or Slack connectivity (ok, error, unknown, disabled; None keeps it), record them.

        Raise ValueError for any other value.
        """
        for value in (s3, slack):
            if value is not None and value not in CONNECTIVITY:
                raise ValueError(f"connectivity must be one of {sorted(CONNECTIVITY)}, not {value!r}")
        with self._lock:
            self._s3 = s3 or self._s3
            self._slack = slack or self._slack

    def replace_strategies(self, strategies: tuple[Strategy, ...]) -> None:
        """Given the strategies of a reloaded config, keep the state of those that remain; new ones are pending."""
        with self._lock:
            kept = {}
            for strategy in strategies:
                entry = self._strategies.get(strategy.name) or StrategyHealth(None)
                entry.interval = _interval_of(strategy)  # the schedule may have changed
                entry.drill_interval = _drill_interval_of(strategy)
                entry.route = describe_route(strategy)
                kept[strategy.name] = entry
            self._strategies = kept

    def snapshot(self) -> tuple[int, dict]:
        """Return (HTTP status, health document): 503 when the loop stalled, else 200."""
        with self._lock:
            return self._document()

    def page_snapshot(self) -> tuple[int, dict, dict[str, tuple[HistoryPoint, ...]]]:
        """Return (HTTP status, health document, each strategy's history) as of one instant: copies and immutable
        tuples, so the status page renders them after the lock is released."""
        with self._lock:
            status, document = self._document()
            return status, document, {name: entry.history for name, entry in self._strategies.items()}

    def _document(self) -> tuple[int, dict]:
        """The health document; the caller holds the lock. It only copies memory: microseconds."""
        now = self._now()
        strategies = {name: self._strategy_view(entry, now) for name, entry in self._strategies.items()}
        stalled = (now - self._heartbeat).total_seconds() > self.stall_after
        s3, slack = self._s3, self._slack
        if stalled:
            status = "unhealthy"
        elif s3 == "error" or any(view["overdue"] or view["status"] == "degraded" or _drill_degraded(view)
                                  for view in strategies.values()):
            status = "degraded"
        else:
            status = "healthy"
        document = {
            "status": status,
            "timestamp": utc_text(now),
            "version": __version__,
            "strategies": {"total": len(strategies), "last_backup_status": strategies},
            "s3_connectivity": s3,
            "slack_connectivity": slack,
        }
        return (HTTP_UNAVAILABLE if stalled else HTTP_OK), document

    def _strategy_view(self, entry: StrategyHealth, now: datetime) -> dict:
        view = {"status": entry.status, "last_run": utc_text(entry.last_run), "next_run": utc_text(entry.next_run)}
        if entry.status == "failed":  # as in the seed: `error` only on a failed strategy
            view["error"] = entry.error
        if entry.status == "degraded":
            view["warning"] = entry.warning
        view.update(
            last_success=utc_text(entry.last_success),
            consecutive_failures=entry.consecutive_failures,
            size_bytes=entry.size_bytes,
            duration_seconds=entry.duration_seconds,
            error_kind=entry.error_kind if entry.status == "failed" else None,
            overdue=self._overdue(entry, now),
            connects=entry.route,
            databases={name: dict(item) for name, item in sorted(entry.databases.items())},
        )
        if entry.drill_interval is not None:  # only strategies with restore_drill show it
            view["last_restore_drill"] = {**(entry.drill or {"status": "pending", "last_run": None,
                                                             "duration_seconds": None, "error": None}),
                                          "overdue": self._drill_overdue(entry, now)}
        return view

    def _drill_overdue(self, entry: StrategyHealth, now: datetime) -> bool:
        since = max(self.started_at, entry.drill_success) if entry.drill_success else self.started_at
        return now - since > OVERDUE_INTERVALS * entry.drill_interval

    def _overdue(self, entry: StrategyHealth, now: datetime) -> bool:
        if entry.interval is None:
            return False
        since = max(self.started_at, entry.last_success) if entry.last_success else self.started_at
        return now - since > OVERDUE_INTERVALS * entry.interval
