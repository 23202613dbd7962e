"""The worker's `drill` job (issue 18): restore the newest complete backup of each database of the strategy into a
throwaway database on `restore_drill.target_url`, check it and drop it (catalogue/drill.py), within
`restore_drill.timeout`; report it as the run's `result` and store a drill record beside the backups.

Stopping: SIGTERM sets `cancel`, the timeout sets the same stop flag; the running download, restore or count then
ends within a fraction of a second and the drill database is dropped before the worker exits (the pool waits
`cancel_wait`, 10 s, before SIGKILL). A SIGKILLed drill leaves its database behind: the next drill of the same
databases drops it first, with a warning.

Superseded: a drill runs beside its strategy's backup (supervision/pool.py), whose retention may delete the very
backup the drill is reading. A database whose drill failed while its backup disappeared (manifest or archive) and
a newer complete backup of it exists is `superseded`, not failed; the drill is then `superseded` too unless
another database failed (catalogue/drill_plan.py).
"""

from __future__ import annotations

import os
import shutil
import threading
import time

from easybackup.catalogue.drill import drill_one, drill_target, drop_leftovers
from easybackup.catalogue.drill_plan import drill_status, superseded_by
from easybackup.catalogue.listing import read_backups, read_catalogue, select_backup
from easybackup.catalogue.verify import ArchiveMissing
from easybackup.errors import EasybackupError
from easybackup.jobspec import JobSpec
from easybackup.private_dirs import make_private_dir
from easybackup.scheduling import format_duration
from easybackup.storage.drillrecord import SUPERSEDED, no_failure, store_drill_record
from easybackup.storage.layout import GLOBALS
from easybackup.storage.s3 import classify_s3_error, make_client


class _Deadline:
    """Sets `stop` when `cancel` is set (SIGTERM) or `timeout` s have passed; `why` says which."""

    def __init__(self, cancel: threading.Event, timeout: float):
        self.stop = threading.Event()
        self.why: str | None = None
        self.deadline = time.monotonic() + timeout
        self._cancel, self._done = cancel, threading.Event()
        self._thread = threading.Thread(target=self._watch, name="drill-deadline", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._done.is_set():
            if self._cancel.wait(0.1):
                self.why = "cancelled"
            elif time.monotonic() >= self.deadline:
                self.why = "timed_out"
            else:
                continue
            self.stop.set()
            return

    def close(self) -> None:
        self._done.set()
        self._thread.join()


def run_drill(job: JobSpec, emit, cancel: threading.Event) -> dict:
    """Given a drill job, an event callback and the cancel flag, drill every database; return the `result` fields.
    One database failing fails the drill; the others are still drilled."""
    strategy, started = job.strategy, time.monotonic()
    settings = strategy.restore_drill
    if settings is None:
        raise EasybackupError(f"strategy {strategy.name} has no restore_drill", kind="config",
                              hint="set restore_drill (schedule, target_url) under global or the strategy")
    watch = _Deadline(cancel, settings.timeout)
    private_dir = make_private_dir(job.temp_dir, f"drill-{job.run_id}-")
    client = make_client(strategy.s3)
    outcomes, error = [], None
    try:
        outcomes = _drill_all(job, client, private_dir, watch, emit)
    except EasybackupError as exc:
        error = exc
    finally:
        watch.close()
        shutil.rmtree(private_dir, ignore_errors=True)
    result = {"status": drill_status([o["status"] for o in outcomes], error is not None),
              "duration_s": round(time.monotonic() - started, 3), "databases": outcomes,
              "error": _run_error(error, outcomes)}
    _store_record(client, job, result, emit)
    return result


def _run_error(error: EasybackupError | None, outcomes: list[dict]) -> dict | None:
    """The drill's error: its own, else the first failed database's, else the first superseded one's (why)."""
    if error is not None:
        return error.to_dict()
    failures = [o for o in outcomes if not no_failure(o["status"])]
    failures += [o for o in outcomes if o["status"] == SUPERSEDED]
    if failures:
        return failures[0]["error"]
    if not outcomes:
        return EasybackupError("nothing to drill", "the strategy has no complete backup yet", kind="not_found",
                               hint="run a backup first (easybackup once)").to_dict()
    return None


def _drill_all(job: JobSpec, client, private_dir, watch: _Deadline, emit) -> list[dict]:
    strategy, settings = job.strategy, job.strategy.restore_drill
    newest = _newest_backups(client, strategy)
    emit("started", pid=os.getpid(), databases=list(newest))
    maintenance = drill_target(settings.target_url, private_dir, strategy.timeout.connect)
    try:
        for name in drop_leftovers(maintenance, settings, list(newest), job.run_id):
            emit("log", stream="worker", level="warning",
                 line=f"dropped drill database {name}, left behind by a drill that did not finish")
        return [_drill_database(job, client, database, manifest, maintenance, private_dir, watch, emit)
                for database, manifest in newest.items()]
    finally:
        maintenance.cleanup()


def _newest_backups(client, strategy) -> dict:
    """{database: its newest complete backup (None: it has none)} — the configured databases, or with
    all_databases those with backups in S3; never the globals dump (roles belong to the target's operator)."""
    try:
        backups = [m for m in read_backups(client, strategy) if m.database != GLOBALS]
    except Exception as exc:  # noqa: BLE001 — boto3 raises several kinds; they are classified
        raise classify_s3_error(exc, strategy.s3.bucket) from exc
    names = sorted({m.database for m in backups}) if strategy.all_databases else [t.name for t in strategy.databases]
    return {name: _newest([m for m in backups if m.database == name]) for name in names}


def _newest(backups: list):
    return select_backup(backups, None) if backups else None


def _drill_database(job, client, database, manifest, maintenance, private_dir, watch: _Deadline, emit) -> dict:
    settings, started = job.strategy.restore_drill, time.monotonic()
    outcome = {"database": database, "key": manifest.key if manifest else None, "size": None, "error": None}
    try:
        if watch.stop.is_set():
            raise EasybackupError("not started", f"the drill was {_stopped(watch)} before this database",
                                  kind="cancelled")
        if manifest is None:
            raise EasybackupError(f"no complete backup of {database} to drill", kind="not_found",
                                  hint="run a backup of it first")
        emit("db_started", database=database)
        emit("log", stream="worker", level="info", database=database,
             line=f"restore drill of {manifest.key} ({manifest.format}, {manifest.stored_bytes} bytes)")
        found = drill_one(client, job.strategy.s3.bucket, manifest, database, settings, maintenance, private_dir,
                          job.run_id, watch.stop, watch.deadline, on_line=_relay(emit, database),
                          connect_timeout=job.strategy.timeout.connect)
        outcome.update(found, status="success", size=found["restored_bytes"])
        emit("log", stream="worker", level="info", database=database,
             line=f"restore drill passed: {found['tables']} table(s), {found['rows']} row(s), restored in "
                  f"{format_duration(found['restore_s'])} ({found['restored_bytes']} bytes)")
    except EasybackupError as exc:
        status, exc = _failure(exc, watch, settings.timeout)
        # Only a failure to find the archive can be retention's doing; any other failure stands, deleted or not.
        vanished = status == "failed" and isinstance(exc, ArchiveMissing)
        newer = _superseded_by(job.strategy, client, database, manifest) if vanished else None
        if newer is not None:
            emit("log", stream="worker", level="info", database=database, line=f"the drill's own error: {exc}")
            status, exc = SUPERSEDED, EasybackupError(f"{manifest.key} was deleted while it was drilled",
                                                      f"a newer backup superseded it: {newer.key}", kind=SUPERSEDED)
        outcome.update(status=status, error=exc.to_dict())
        emit("log", stream="worker", level="warning" if newer else "error", database=database,
             line=f"restore drill {status}: {exc}")
    outcome["duration_s"] = round(time.monotonic() - started, 3)
    emit("db_finished", database=database, **{key: value for key, value in outcome.items() if key != "database"})
    return outcome


def _superseded_by(strategy, client, database: str, manifest):
    """After a failed drill of `manifest`: the newer backup that superseded it, when retention deleted it under
    the drill (catalogue/drill_plan.superseded_by); None when it is still whole, nothing is newer, or S3 cannot
    say (then the failure stands)."""
    if manifest is None:
        return None
    try:
        catalogue = read_catalogue(client, strategy, database)
    except EasybackupError:
        return None
    return superseded_by(manifest, catalogue.backups, catalogue.missing_archives)


def _stopped(watch: _Deadline) -> str:
    return "timed out" if watch.why == "timed_out" else "cancelled"


def _failure(exc: EasybackupError, watch: _Deadline, timeout: float) -> tuple[str, EasybackupError]:
    """A failure caused by the stop flag is the drill's timeout or its cancellation, whatever stage noticed it."""
    if watch.why == "timed_out":
        return "timed_out", EasybackupError(f"the restore drill took longer than restore_drill.timeout "
                                            f"({format_duration(timeout)})", str(exc), kind="timeout")
    if watch.why == "cancelled":
        return "cancelled", EasybackupError("cancelled", str(exc), kind="cancelled")
    return "failed", exc


def _relay(emit, database: str):
    def on_line(stage: str, line: str) -> None:
        emit("log", stream=stage, level="info", database=database, line=line)
    return on_line


def _store_record(client, job: JobSpec, result: dict, emit) -> None:
    """Store the drill record beside the backups (what a restarted supervisor reads); a failure is a warning."""
    try:
        store_drill_record(client, job.strategy, job.run_id, job.run_timestamp, job.started_at, result)
    except Exception as exc:  # noqa: BLE001 — the drill's result stands whatever became of its record
        emit("log", stream="worker", level="warning",
             line=f"the drill record could not be written: {classify_s3_error(exc, job.strategy.s3.bucket)}")
