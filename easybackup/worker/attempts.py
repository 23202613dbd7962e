"""Attempts at one database: retry transient failures with exponential backoff and jitter (tenacity's wait).

Only failures classified as transient are retried: a refused or reset connection, a server starting up or
shutting down, S3 5xx/throttling/timeouts, a stalled upload or an attempt over timeout.backup. Authentication
failures, a missing database or bucket, permission errors and failing programs are not, and their message says
so. Every attempt is fully cleaned up (children stopped, upload aborted) before the next begins: backup_once
leaves nothing running when it returns or raises.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from tenacity import wait_exponential_jitter

from easybackup.catalogue.anomaly import size_drop
from easybackup.config.model import DatabaseTarget, RetrySettings
from easybackup.errors import EasybackupError
from easybackup.jobspec import JobSpec
from easybackup.storage.layout import manifest_key
from easybackup.storage.manifest import list_manifest_keys, read_manifest
from easybackup.worker.backup import AttemptContext, BackupOutcome, backup_once

T = TypeVar("T")

# Why a failure of each kind is final, for the "(not retried: ...)" suffix of its message.
PERMANENT_BECAUSE = {
    "authentication": "authentication failures are permanent",
    "not_found": "a missing database or object stays missing",
    "permission": "permission errors are permanent",
    "storage": "this S3 error is permanent",
    "dump_failed": "the dump program failed for a reason a retry does not change",
    "invalid_dump": "the dump program would write the same again",
    "compressor_failed": "the compressor would fail again",
    "config": "the configuration is wrong",
    "internal": "an internal error is a bug, not a passing fault",
}


@dataclass(frozen=True)
class Decision:
    """Whether to try again, and if not, why (None when the attempts are simply used up or the run stopped)."""

    retry: bool
    final_because: str | None = None


def decide(error: EasybackupError, attempt: int, max_attempts: int, cancelled: bool) -> Decision:
    """Given the error of attempt number `attempt` (1-based), the attempts allowed and whether the run was
    cancelled, return whether to retry it."""
    if cancelled or error.kind == "cancelled":
        return Decision(False)
    if not error.transient:
        return Decision(False, PERMANENT_BECAUSE.get(error.kind, f"{error.kind} errors are permanent"))
    return Decision(attempt < max_attempts)


def retry_delays(initial: float, maximum: float) -> Callable[[int], float]:
    """Given retry.initial_delay and retry.max_delay, return a function attempt_number -> delay in seconds:
    initial x 2^(n-1) plus up to `initial` of jitter, never above `maximum`."""
    wait = wait_exponential_jitter(multiplier=initial, max=maximum, jitter=initial)

    class _State:  # the one attribute tenacity's wait reads from its RetryCallState
        def __init__(self, number: int):
            self.attempt_number = number

    return lambda number: min(maximum, wait(_State(number)))


@dataclass
class Attempted:
    """The end of a series of attempts: the value of the one that worked, or the last error."""

    attempts: int
    value: object = None
    error: EasybackupError | None = None


def with_retries(attempt: Callable[[], T], *, retry: RetrySettings, emit, cancel: threading.Event,
                 database: str | None) -> Attempted:
    """Given a callable that makes one attempt (raising EasybackupError), call it until it works, fails for good
    or runs out of attempts, emitting a `retry` event before each wait; return what happened."""
    max_attempts = max(1, retry.max_attempts)
    delay_for = retry_delays(retry.initial_delay, retry.max_delay)
    number = 0
    while True:
        number += 1
        try:
            return Attempted(attempts=number, value=attempt())
        except EasybackupError as error:
            decision = decide(error, number, max_attempts, cancel.is_set())
            if not decision.retry:
                if decision.final_because and max_attempts > 1:
                    error.message = f"{error.message} (not retried: {decision.final_because})"
                return Attempted(attempts=number, error=error)
            delay = delay_for(number)
            reason = error.message + (f": {error.detail}" if error.detail else "")
            emit("retry", database=database, attempt=number, max_attempts=max_attempts, reason=reason,
                 delay_s=round(delay, 2), kind=error.kind)
            if cancel.wait(delay):
                return Attempted(attempts=number, error=error)


def attempt_context(job: JobSpec, client, private_dir: Path, emit, cancel: threading.Event) -> AttemptContext:
    """Given a job and what its attempts share, return the AttemptContext for backup_once."""
    return AttemptContext(strategy=job.strategy, run_id=job.run_id, run_timestamp=job.run_timestamp,
                          private_dir=private_dir, client=client, emit=emit, cancel=cancel, parent_pid=os.getppid())


def run_database(job: JobSpec, target: DatabaseTarget, client, private_dir: Path, emit, cancel: threading.Event,
                 once: Callable[[AttemptContext, DatabaseTarget], BackupOutcome] = backup_once) -> dict:
    """Given a job and one of its databases, back it up with retries; emit and return its `db_finished` fields.

    `once` makes one attempt (backup_once, or the globals dump)."""
    ctx = attempt_context(job, client, private_dir, emit, cancel)
    emit("db_started", database=target.name)
    started = time.monotonic()
    done = with_retries(lambda: once(ctx, target), retry=job.strategy.retry, emit=emit, cancel=cancel,
                        database=target.name)
    drop = size_drop_of(job, client, done.value, emit) if done.value else None
    return finished(emit, target.name, started, done.attempts, outcome=done.value, error=done.error,
                    suspicious=drop)


def size_drop_of(job: JobSpec, client, outcome: BackupOutcome, emit) -> str | None:
    """Given a new backup, return why it is suspicious (catalogue.anomaly: much smaller than the last backups of its
    database), or None. A side channel: an S3 problem here is a warning and never changes the backup's result."""
    bucket = job.strategy.s3.bucket
    own = manifest_key(outcome.key)
    try:
        # Every other committed backup of the database, the newest by run name: not `key < own`, which a run
        # started in the same second as ours (the run ids then decide the order) would fail.
        keys = sorted(key for key in list_manifest_keys(client, bucket, outcome.key.rpartition("/")[0] + "/")
                      if key != own)[-job.strategy.anomaly.window:]
        earlier = [read_manifest(client, bucket, key).stored_bytes for key in keys]
    except (EasybackupError, ValueError) as error:
        emit("log", stream="worker", level="warning", line=f"size-drop check skipped: {error}")
        return None
    return size_drop(outcome.size, earlier, job.strategy.anomaly)


def status_of(error: EasybackupError) -> str:
    """Given the error a database ended with, return its db status: timed_out, cancelled or failed."""
    if error.kind == "timeout":
        return "timed_out"
    if error.kind == "cancelled":
        return "cancelled"
    return "failed"


def finished(emit, database: str, started: float, attempts: int, *, outcome: BackupOutcome | None = None,
             error: EasybackupError | None = None, suspicious: str | None = None) -> dict:
    """Given how a database ended (and, for a success, why it is suspicious, if it is), emit its `db_finished`
    event and return its fields (with `database`)."""
    fields = {
        "status": "success" if outcome else status_of(error),
        "key": outcome.key if outcome else None,
        "size": outcome.size if outcome else None,
        "dump_bytes": outcome.dump_bytes if outcome else None,
        "sha256": outcome.sha256 if outcome else None,
        "duration_s": round(time.monotonic() - started, 3),
        "verified": outcome.manifest.verified if outcome else False,
        "verify_level": outcome.manifest.verify_level if outcome else None,  # full | ciphertext (encrypted, no key)
        "attempts": attempts,
        "error": error.to_dict() if error else None,
        **({"suspicious": suspicious} if suspicious else {}),
    }
    emit("db_finished", database=database, **fields)
    return {"database": database, **fields}
