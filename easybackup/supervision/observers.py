"""The supervisor's own observers of worker runs: the log and the terminal's progress line."""

from __future__ import annotations

import time

from easybackup.humanize import format_bytes, format_rate
from easybackup.jobspec import BACKUP, DRILL
from easybackup.logs import Console, console, log
from easybackup.run_observer import RunObserver

_LOG_LEVELS = {"trace": "TRACE", "debug": "DEBUG", "info": "INFO", "warning": "WARNING", "error": "ERROR",
               "critical": "CRITICAL"}


class LogObserver(RunObserver):
    """Logs every event and every line a child printed, with the strategy and run id on each line."""

    name = "log"

    def event(self, handle, event: dict) -> None:
        kind, db = event["type"], event.get("database")
        if kind in ("db_started", "db_finished") and getattr(getattr(handle, "job", None), "kind", BACKUP) != BACKUP:
            return  # a drill's worker logs its own lines for these; "backup started" would mislead
        logger = log.bind(strategy=handle.strategy, run_id=handle.run_id, database=db, event=kind,
                          error_kind=event.get("kind") if kind == "retry" else None)
        where = f"{db}: " if db else ""
        if kind == "log":
            level = _LOG_LEVELS.get(str(event.get("level", "info")).lower(), "INFO")
            stream = event.get("stream", "worker")
            prefix = "" if stream == "worker" else f"{stream}: "
            logger.log(level, f"{where}{prefix}{event.get('line', '')}")
        elif kind == "started":
            logger.info(f"worker pid {event.get('pid')} started: {', '.join(event.get('databases') or [])}")
        elif kind == "db_started":
            logger.info(f"{where}backup started")
        elif kind == "upload_started":
            logger.debug(f"{where}multipart upload {event.get('upload_id')} of {event.get('key')} started")
        elif kind == "retry":
            logger.warning(f"{where}attempt {event.get('attempt')}/{event.get('max_attempts')} failed: "
                           f"{event.get('reason')}; retrying in {event.get('delay_s')} s")
        elif kind == "db_finished":
            self._db_finished(logger, where, event)
        elif kind == "retention":
            not_deleted = f", {event['not_deleted']} object(s) not deleted" if event.get("not_deleted") else ""
            logger.info(f"retention: deleted {event.get('deleted')} backup(s), kept {event.get('kept')}{not_deleted}")

    @staticmethod
    def _db_finished(logger, where: str, event: dict) -> None:
        if event.get("status") == "success":
            logger.info(f"{where}backup succeeded: {format_bytes(event.get('size'))} in "
                        f"{event.get('duration_s')} s → {event.get('key')}")
            if event.get("suspicious"):
                logger.warning(f"{where}suspicious backup: {event['suspicious']}")
            return
        error = event.get("error") or {}
        logger.bind(error_kind=error.get("kind")).error(f"{where}backup {event.get('status')}: {_described(error)}")

    def stderr(self, handle, line: str) -> None:
        log.bind(strategy=handle.strategy, run_id=handle.run_id, event="stderr").warning(f"worker stderr: {line}")

    def run_finished(self, handle) -> None:
        result = handle.result or {}
        logger = log.bind(strategy=handle.strategy, run_id=handle.run_id, event="result")
        drill = getattr(getattr(handle, "job", None), "kind", BACKUP) == DRILL
        if drill:
            self._drill_finished(logger, result)
        elif result.get("status") == "success":
            logger.info(f"run succeeded in {result.get('duration_s')} s")
        else:
            error = result.get("error") or {}
            failed = logger.bind(error_kind=error.get("kind"))
            failed.error(f"run failed: {_described(error)}")


    @staticmethod
    def _drill_finished(logger, result: dict) -> None:
        """A restore drill's end, said as one (not as a backup run): passed, superseded (why) or failed (why)."""
        status, error = result.get("status"), result.get("error") or {}
        if status == "success":
            logger.info(f"restore drill passed in {result.get('duration_s')} s")
        elif status == "superseded":
            logger.warning(f"restore drill superseded in {result.get('duration_s')} s: {_described(error)}")
        else:
            logger.bind(error_kind=error.get("kind")).error(f"restore drill failed: {_described(error)}")


def _described(error: dict) -> str:
    """`[kind] message: detail (hint: …)` — the whole error on one line, so a log alone says what went wrong."""
    detail = f": {error['detail']}" if error.get("detail") else ""
    hint = f" (hint: {error['hint']})" if error.get("hint") else ""
    return f"[{error.get('kind')}] {error.get('message')}{detail}{hint}"


class TerminalProgress(RunObserver):
    """On a TTY, one live line: the running database's bytes stored and rate, kept below the log lines (the
    console clears and redraws it around each). Silent under cron."""

    name = "terminal"

    def __init__(self, out: Console | None = None):
        self.console = out or console()
        self.enabled = self.console.is_terminal
        self._started: dict[tuple[str, str], float] = {}  # (run id, database): a strategy may run two jobs

    def event(self, handle, event: dict) -> None:
        if not self.enabled or event["type"] not in ("db_started", "progress"):
            return
        database = event.get("database") or ""
        key = (handle.run_id, database)
        if event["type"] == "db_started":
            self._started[key] = time.monotonic()
            return
        elapsed = max(0.001, time.monotonic() - self._started.get(key, time.monotonic()))
        stored = event.get("bytes_out") or 0
        self.console.show(f"{handle.strategy}/{database}: {format_bytes(stored)} stored, "
                          f"{format_rate(stored / elapsed)}")

    def run_finished(self, handle) -> None:
        for key in [key for key in self._started if key[0] == handle.run_id]:
            del self._started[key]
        if self.enabled:
            self.console.clear()
