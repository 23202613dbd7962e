"""`python -m easybackup.worker` (or `easybackup worker`): run one strategy's job and report it as NDJSON
events on stdout.

The job spec arrives as JSON on stdin. Exactly one `result` event is sent, and it is the last. The worker
owns its children (pg_dump, compressors): on every path they are stopped and the upload is aborted.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import NoReturn

from botocore.exceptions import BotoCoreError
from loguru import logger

from easybackup import exitcodes
from easybackup.errors import EasybackupError
from easybackup.jobspec import BACKUP, DRILL, JobSpec
from easybackup.network.databases import all_database_targets, connection_url
from easybackup.private_dirs import make_private_dir
from easybackup.secrets import register_secret
from easybackup.storage.s3 import BackgroundClient, classify_s3_error, make_prune_client, prune_settings
from easybackup.wire import EventWriter, take_over_stdout
from easybackup.worker.attempts import run_database, with_retries
from easybackup.worker.backup import backup_once
from easybackup.worker.globals_backup import backup_globals_once, globals_target

# The supervisor kills a worker that sends nothing for its silence limit (60 s by default): a pg_dump waiting on a
# lock, a long verification, the manifest and retention send nothing themselves, so a thread beats for them all.
HEARTBEAT_S = 1.0
STALE_UPLOADS_WAIT_S = 20.0


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


class Heartbeat:
    """Given the event callback, send a `heartbeat` event every `interval` s on a thread until `stop()`.

    It proves the process alive and running (not stopped, frozen or gone), in every phase; a phase that hangs
    inside a live worker is bounded by the attempt's own watchdog (timeout.backup, timeout.upload)."""

    def __init__(self, emit, interval: float = HEARTBEAT_S):
        self._emit = emit
        self._interval = interval
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="heartbeat", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop beating and wait for the thread: the `result` event must be the last one."""
        self._done.set()
        self._thread.join()

    def _beat(self) -> None:
        while not self._done.wait(self._interval):
            self._emit("heartbeat")


def _read_job() -> JobSpec | None:
    """Return the job on stdin; None when stdin closed empty (a spare worker let go before it was needed)."""
    text = sys.stdin.read()
    return JobSpec.from_json(text) if text.strip() else None


def _route_logs_to_events(emit) -> None:
    """Send the worker's own log lines as `log` events, so the supervisor logs them with context."""
    def sink(message) -> None:
        record = message.record
        line = str(message).rstrip("\n") if record["exception"] else record["message"]  # with its traceback
        emit("log", stream="worker", level=record["level"].name.lower(), line=line)

    logger.remove()
    logger.add(sink, level="DEBUG", format="{message}")


def _register_secrets(job: JobSpec) -> None:
    s3 = job.strategy.s3
    for value in (s3.secret_key, s3.access_key, s3.session_token, s3.prune_access_key, s3.prune_secret_key,
                  job.strategy.slack.bot_token):
        register_secret(value)


def run_job(job: JobSpec, emit, cancel: threading.Event) -> dict:
    """Given a job, an event callback and a cancel flag, back up every database (and the globals); return the
    `result` fields. One database failing fails the run; the others still run and their archives stay."""
    strategy = job.strategy
    started = time.monotonic()
    private_dir = make_private_dir(job.temp_dir, f"run-{job.run_id}-")
    outcomes = []
    try:
        client = BackgroundClient(strategy.s3)  # ready by the time pg_dump's first bytes are
        cleanup = _abort_stale_uploads_meanwhile(client, job)
        planned = _plan(job, private_dir, emit, cancel)
        emit("started", pid=os.getpid(), databases=[target.name for target, _ in planned.work])
        for target, once in planned.work:
            if cancel.is_set():
                outcomes.append(_not_started(target.name))
                continue
            outcomes.append(run_database(job, target, client, private_dir, emit, cancel, once=once))
        if outcomes and planned.error is None and all(o["status"] == "success" for o in outcomes):
            _apply_retention(client, job, emit)
    finally:
        shutil.rmtree(private_dir, ignore_errors=True)
    failures = [o for o in outcomes if o["status"] != "success"]
    error = planned.error.to_dict() if planned.error else (failures[0]["error"] if failures else None)
    result = {
        "status": "failed" if failures or planned.error else "success",
        "duration_s": round(time.monotonic() - started, 3),
        "databases": outcomes,
        "error": error,
    }
    cleanup.join(0 if cancel.is_set() else STALE_UPLOADS_WAIT_S)
    _write_run_record(client, job, result, emit)
    return result


def _abort_stale_uploads_meanwhile(client, job: JobSpec) -> threading.Thread:
    """Abort the strategy's multipart uploads left by dead workers (begun before this run, older than
    timeout.backup), on a thread beside the dump: what the supervisor does at its start, for every run — `once`
    under cron included — at the cost of one listing on a client the run builds anyway."""
    def work() -> None:
        from easybackup.storage.multipart import abort_stale_uploads

        started = datetime.fromisoformat(job.started_at.replace("Z", "+00:00"))
        try:
            abort_stale_uploads(job.strategy, client, started, datetime.now(timezone.utc), who="this run",
                                own_run_id=job.run_id)
        except Exception as exc:  # noqa: BLE001 — a chore beside the backup; it never changes the run's result
            logger.warning(f"could not look for stale multipart uploads: {exc}")

    thread = threading.Thread(target=work, name="stale-uploads", daemon=True)
    thread.start()
    return thread


def _write_run_record(client, job: JobSpec, result: dict, emit) -> None:
    """Store how this run ended, database by database, failed runs included (storage/runrecord.py): what a
    restarted supervisor shows in health. A failure here is a warning; it never changes the run's result."""
    from easybackup.storage.runrecord import store_run_record
    from easybackup.worker.backup import utc_now_text

    try:
        store_run_record(client, job.strategy, job.run_id, job.run_timestamp, job.started_at, utc_now_text(), result)
    except Exception as exc:  # noqa: BLE001 — the backups stand whatever became of their record
        emit("log", stream="worker", level="warning",
             line=f"the run record could not be written: {classify_s3_error(exc, job.strategy.s3.bucket)}")


def _apply_retention(client, job: JobSpec, emit) -> None:
    """After a run in which every database succeeded (never after a failed one), delete the backups retention
    no longer keeps, with the prune key when one is set (the backup key then cannot delete). A problem here is a
    warning: it never turns a good backup into a failed run."""
    try:
        from easybackup.catalogue.retention import apply_retention  # only after a good run (docs/architecture.md)

        if prune_settings(job.strategy.s3) is not job.strategy.s3:
            client = make_prune_client(job.strategy.s3)
        result = apply_retention(client, job.strategy, datetime.now(timezone.utc), emit)
    except BotoCoreError as exc:  # building the prune key's client
        emit("log", stream="worker", level="warning",
             line=f"retention skipped: {classify_s3_error(exc, job.strategy.s3.bucket)}")
        return
    except (EasybackupError, ImportError) as error:
        emit("log", stream="worker", level="warning", line=f"retention skipped: {error}")
        return
    for problem in result.errors:
        emit("log", stream="worker", level="warning", line=f"retention could not delete {problem}")


@dataclass
class _Plan:
    """What a run will back up: (target, one-attempt function) pairs, or the error that kept it from knowing."""

    work: list = field(default_factory=list)
    error: EasybackupError | None = None


def _plan(job: JobSpec, private_dir: Path, emit, cancel: threading.Event) -> _Plan:
    """Given a job, return its work: the globals first (roles before the databases that need them), then each
    database — the configured ones, or with all_databases every one listed on the server (with retries)."""
    strategy = job.strategy
    work = []
    try:
        if strategy.include_globals:
            work.append((globals_target(connection_url(strategy)), backup_globals_once))
        if strategy.all_databases:
            listed = with_retries(lambda: all_database_targets(strategy, private_dir, emit, cancel),
                                  retry=strategy.retry,
                                  emit=emit, cancel=cancel, database=None)
            if listed.error is not None:
                return _Plan(work=[], error=listed.error)
            targets = listed.value
        else:
            targets = list(strategy.databases)
    except EasybackupError as error:
        return _Plan(work=[], error=error)
    return _Plan(work=work + [(target, backup_once) for target in targets])


def run_drill_job(job: JobSpec, emit, cancel: threading.Event) -> dict:
    """A restore drill (worker/drill.py); imported here so that a backup never pays for the restore's imports."""
    from easybackup.worker.drill import run_drill

    return run_drill(job, emit, cancel)


# What the worker runs for each kind of job: (job, emit, cancel) -> the `result` fields. A verify job adds one
# function here; the pool already knows what may run beside what.
KIND_RUNNERS = {BACKUP: run_job, DRILL: run_drill_job}


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
    if job is None:
        return exitcodes.WORKER_OK
    runner = KIND_RUNNERS.get(job.kind)
    if runner is None:
        print(f"easybackup worker: cannot run a job of kind {job.kind!r}: this worker runs "
              f"{', '.join(KIND_RUNNERS)}", file=sys.stderr)
        return exitcodes.WORKER_BAD_SPEC
    _register_secrets(job)
    emit = OrphanGuard(EventWriter(events, job.run_id, job.strategy.name), cancel)
    _route_logs_to_events(emit)
    try:
        with Heartbeat(emit):
            result = runner(job, emit, cancel)
    except EasybackupError as error:  # before any database: an unsafe temp_dir, say
        emit("result", status="failed", duration_s=None, databases=[], error=error.to_dict())
        return exitcodes.WORKER_FAILED
    except Exception as exc:  # noqa: BLE001 — the one place that turns a bug into a reported result
        logger.opt(exception=exc).debug("internal error in the worker")  # the traceback, for the bug report
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


def run_and_exit() -> NoReturn:
    """Run the worker and end the process with its exit code."""
    code = main()
    # Everything that matters is done: the result event is written (unbuffered), every child reaped, every
    # non-daemon thread joined. Skipping the interpreter's teardown of boto3 & co. saves ~0.1 s per run.
    sys.stderr.flush()
    os._exit(code)
