"""Attempts at one database: retry transient failures with exponential backoff and jitter (tenacity).

Authentication failures, a missing database or bucket and permission errors are not retried. Every attempt
is fully cleaned up (children stopped, upload aborted) before the next begins.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from tenacity import wait_exponential_jitter

from easybackup.config.model import DatabaseTarget
from easybackup.errors import EasybackupError
from easybackup.jobspec import JobSpec
from easybackup.worker.backup import AttemptContext, backup_once


def retry_delays(initial: float, maximum: float):
    """Given retry.initial_delay and retry.max_delay, return a function attempt_number -> delay in seconds."""
    wait = wait_exponential_jitter(initial=initial, max=maximum, jitter=initial)

    class _State:
        def __init__(self, number: int):
            self.attempt_number = number

    return lambda number: min(maximum, wait(_State(number)))


def run_database(job: JobSpec, target: DatabaseTarget, client, private_dir: Path, emit,
                 cancel: threading.Event) -> dict:
    """Given a job and one of its databases, back it up with retries; return its `db_finished` fields."""
    strategy = job.strategy
    ctx = AttemptContext(strategy=strategy, run_id=job.run_id, run_timestamp=job.run_timestamp,
                         private_dir=private_dir, client=client, emit=emit, cancel=cancel,
                         parent_pid=os.getppid())
    max_attempts = max(1, strategy.retry.max_attempts)
    delay_for = retry_delays(strategy.retry.initial_delay, strategy.retry.max_delay)
    emit("db_started", database=target.name)
    started = time.monotonic()
    attempt = 0
    while True:
        attempt += 1
        try:
            outcome = backup_once(ctx, target)
        except EasybackupError as error:
            if not error.transient or attempt >= max_attempts or cancel.is_set():
                return _finished(emit, target.name, started, attempt, error=error)
            delay = delay_for(attempt)
            emit("retry", database=target.name, attempt=attempt, max_attempts=max_attempts,
                 reason=error.message + (f": {error.detail}" if error.detail else ""), delay_s=round(delay, 2),
                 kind=error.kind)
            if cancel.wait(delay):
                return _finished(emit, target.name, started, attempt, error=error)
            continue
        return _finished(emit, target.name, started, attempt, outcome=outcome)


def _status_of(error: EasybackupError) -> str:
    if error.kind == "timeout":
        return "timed_out"
    if error.kind == "cancelled":
        return "cancelled"
    return "failed"


def _finished(emit, database: str, started: float, attempts: int, *, outcome=None,
              error: EasybackupError | None = None) -> dict:
    fields = {
        "status": "success" if outcome else _status_of(error),
        "key": outcome.key if outcome else None,
        "size": outcome.size if outcome else None,
        "dump_bytes": outcome.dump_bytes if outcome else None,
        "sha256": outcome.sha256 if outcome else None,
        "duration_s": round(time.monotonic() - started, 3),
        "verified": outcome.manifest.verified if outcome else False,
        "attempts": attempts,
        "error": error.to_dict() if error else None,
    }
    emit("db_finished", database=database, **fields)
    return {"database": database, **fields}
