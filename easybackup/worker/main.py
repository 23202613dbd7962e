"""`python -m easybackup worker`: run one strategy's job and report it as NDJSON events on stdout.

The job spec arrives as JSON on stdin. Exactly one `result` event is sent, and it is the last. The worker
owns its children (pg_dump, compressors): on every path they are stopped and the upload is aborted.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

from loguru import logger

from easybackup import exitcodes
from easybackup.errors import EasybackupError
from easybackup.jobspec import JobSpec
from easybackup.secrets import register_secret
from easybackup.storage.s3 import make_client
from easybackup.wire import EventWriter, take_over_stdout
from easybackup.worker.attempts import run_database


class OrphanGuard:
    """Wraps the event writer: a broken pipe means the supervisor is gone — cancel everything, keep quiet."""

    def __init__(self, writer: EventWriter, cancel: threading.Event):
        self._writer = writer
        self._cancel = cancel
        self.orphaned = False

    def __call__(self, type: str, database: str | None = None, **fields) -> None:
        if self.orphaned:
            return
        try:
            self._writer.emit(type, database=database, **fields)
        except (BrokenPipeError, ValueError, OSError):
            self.orphaned = True
            self._cancel.set()


def _read_job() -> JobSpec:
    text = sys.stdin.read()
    return JobSpec.from_json(text)


def _route_logs_to_events(emit) -> None:
    """Send the worker's own log lines as `log` events, so the supervisor logs them with context."""
    def sink(message) -> None:
        record = message.record
        emit("log", stream="worker", level=record["level"].name.lower(), line=record["message"])

    logger.remove()
    logger.add(sink, level="DEBUG", format="{message}")


def _private_dir(temp_dir: str, run_id: str) -> Path:
    """Given the configured temp dir, return a new 0700 directory inside it for this run's passfiles."""
    base = Path(temp_dir)
    base.mkdir(parents=True, exist_ok=True, mode=0o700)
    return Path(tempfile.mkdtemp(prefix=f"run-{run_id}-", dir=base))


def _register_secrets(job: JobSpec) -> None:
    s3 = job.strategy.s3
    for value in (s3.secret_key, s3.access_key, s3.session_token, job.strategy.slack.bot_token):
        register_secret(value)


def run_job(job: JobSpec, emit, cancel: threading.Event) -> dict:
    """Given a job, an event callback and a cancel flag, back up every database; return the `result` fields."""
    strategy = job.strategy
    started = time.monotonic()
    emit("started", pid=os.getpid(), databases=[target.name for target in strategy.databases])
    private_dir = _private_dir(job.temp_dir, job.run_id)
    outcomes = []
    try:
        client = make_client(strategy.s3)
        for target in strategy.databases:
            if cancel.is_set():
                outcomes.append(_not_started(target.name))
                continue
            outcomes.append(run_database(job, target, client, private_dir, emit, cancel))
    finally:
        shutil.rmtree(private_dir, ignore_errors=True)
    failures = [o for o in outcomes if o["status"] != "success"]
    return {
        "status": "failed" if failures else "success",
        "duration_s": round(time.monotonic() - started, 3),
        "databases": outcomes,
        "error": failures[0]["error"] if failures else None,
    }


def _not_started(database: str) -> dict:
    error = EasybackupError("cancelled", "the run was stopped before this database started", kind="cancelled")
    return {"database": database, "status": "cancelled", "key": None, "size": None, "sha256": None,
            "duration_s": 0.0, "verified": False, "attempts": 0, "error": error.to_dict()}


def main() -> int:
    """Run the worker; return its exit code (easybackup.exitcodes)."""
    events = take_over_stdout()
    cancel = threading.Event()
    # Signal handlers only set a flag; the watchdog of the running attempt does the stopping.
    signal.signal(signal.SIGTERM, lambda signum, frame: cancel.set())
    signal.signal(signal.SIGINT, lambda signum, frame: cancel.set())
    try:
        job = _read_job()
    except (ValueError, KeyError, TypeError) as exc:
        print(f"easybackup worker: cannot read the job spec on stdin: {exc}", file=sys.stderr)
        return exitcodes.WORKER_BAD_SPEC
    _register_secrets(job)
    emit = OrphanGuard(EventWriter(events, job.run_id, job.strategy.name), cancel)
    _route_logs_to_events(emit)
    try:
        result = run_job(job, emit, cancel)
    except Exception as exc:  # noqa: BLE001 — the one place that turns a bug into a reported result
        error = EasybackupError("internal error in the worker", f"{type(exc).__name__}: {exc}",
                                "this is a bug in easybackup; please report it with the log", kind="internal")
        emit("result", status="failed", duration_s=None, databases=[], error=error.to_dict())
        return exitcodes.WORKER_INTERNAL
    emit("result", **result)
    if emit.orphaned:
        return exitcodes.WORKER_ORPHANED
    if cancel.is_set():
        return exitcodes.WORKER_CANCELLED
    return exitcodes.WORKER_OK if result["status"] == "success" else exitcodes.WORKER_FAILED
