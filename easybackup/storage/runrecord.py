"""Run records: how every run of a strategy ended, database by database, failed runs included.

A manifest says that one backup exists; it cannot say that another database of the same run failed. The worker
writes one record per run at its end (`<base>/<strategy>/_runs/<run name>.run.json`, storage.layout), so a
restarted supervisor can tell the truth in health: the last run's status and error, and how many runs failed in a
row. Records are no archives and no manifests: listing, restore and retention of backups never take them for one.
Retention deletes the records older than `retention` and keeps the newest ones (catalogue.retention).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
from dataclasses import dataclass

from easybackup.logs import log
from easybackup.secrets import mask
from easybackup.storage.layout import run_name, run_name_of_record, run_record_key, runs_prefix
from easybackup.storage.s3 import list_keys, put_new_object, read_object_or_none

RECORD_VERSION = 1
MAX_ERROR_CHARS = 500
READ_CONCURRENCY = 8


@dataclass(frozen=True)
class DatabaseRecord:
    """How one database (or `_globals`) of a run ended."""

    database: str
    status: str  # success | failed | timed_out | cancelled
    key: str | None = None  # the archive, when it succeeded
    size: int | None = None
    error_kind: str | None = None
    error: str | None = None  # one line, masked


@dataclass(frozen=True)
class RunRecord:
    strategy: str
    run_id: str
    run_name: str  # what the run's keys carry (`2024-05-01T020000Z-3f2a9c1b7d4e`)
    started_at: str  # UTC, ISO 8601 with Z
    finished_at: str
    status: str  # success | failed
    error_kind: str | None = None
    error: str | None = None  # one line, masked, prefixed by the failed database
    databases: tuple[DatabaseRecord, ...] = ()
    easybackup_version: str | None = None
    format_version: int = RECORD_VERSION

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True, indent=1)

    @classmethod
    def from_json(cls, text: str | bytes) -> RunRecord:
        """Given a record's JSON, return it (unknown fields ignored); raise ValueError if it is not one."""
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"not JSON: {exc}") from exc
        if not isinstance(data, dict) or data.get("format_version") != RECORD_VERSION:
            raise ValueError(f"not a version {RECORD_VERSION} run record")
        try:
            databases = tuple(DatabaseRecord(**_known(DatabaseRecord, item)) for item in data.get("databases") or ())
            record = cls(**{**_known(cls, data), "databases": databases})
        except TypeError as exc:
            raise ValueError(f"run record lacks a field: {exc}") from exc
        for name in ("strategy", "run_id", "run_name", "started_at", "finished_at", "status"):
            if not isinstance(getattr(record, name), str) or not getattr(record, name):
                raise ValueError(f"run record field {name} must be a non-empty string")
        return record


def _known(cls, data: dict) -> dict:
    names = {f.name for f in dataclasses.fields(cls)}
    return {key: value for key, value in data.items() if key in names}


def error_text(error) -> tuple[str | None, str | None]:
    """Given an error dict of the wire (`kind`, `message`, `detail`), return (kind, one masked line)."""
    if not isinstance(error, dict):
        return None, None
    parts = [str(error[key]) for key in ("message", "detail") if error.get(key)]
    text = mask(" ".join(": ".join(parts).split())) or None
    if text and len(text) > MAX_ERROR_CHARS:
        text = text[:MAX_ERROR_CHARS - 1] + "…"
    kind = error.get("kind")
    return (str(kind) if kind else None), text


def record_of(strategy: str, run_id: str, run_name: str, started_at: str, finished_at: str, result: dict,
              version: str | None = None) -> RunRecord:
    """Given a run's identity and times and its `result` fields (worker/main.run_job), return its record."""
    databases = []
    for item in result.get("databases") or ():
        if not isinstance(item, dict) or not item.get("database"):
            continue
        kind, text = error_text(item.get("error"))
        size = item.get("size")
        databases.append(DatabaseRecord(database=str(item["database"]), status=str(item.get("status") or "failed"),
                                        key=item.get("key"), size=size if isinstance(size, int) else None,
                                        error_kind=kind, error=text))
    kind, text = error_text(result.get("error"))
    failed = next((d.database for d in databases if d.status != "success"), None)
    if text and failed and not text.startswith(f"{failed}:"):
        text = f"{failed}: {text}"
    status = "success" if result.get("status") == "success" else "failed"
    return RunRecord(strategy=strategy, run_id=run_id, run_name=run_name, started_at=started_at,
                     finished_at=finished_at, status=status, error_kind=kind if status == "failed" else None,
                     error=text if status == "failed" else None, databases=tuple(databases),
                     easybackup_version=version)


def write_run_record(client, bucket: str, base_path: str | None, record: RunRecord,
                     extra_args: dict | None = None) -> str:
    """Given a record, store it under the strategy's `_runs/` (never over another); return its key. Raise the
    classified S3 error."""
    key = run_record_key(base_path, record.strategy, record.run_name)
    put_new_object(client, bucket, key, record.to_json().encode("utf-8"), ContentType="application/json",
                   **(extra_args or {}))
    return key


def store_run_record(client, strategy, run_id: str, run_timestamp: str, started_at: str, finished_at: str,
                     result: dict) -> str:
    """Given a client, the run's strategy (config.model.Strategy), identity and times and its `result` fields,
    write the run's record (see `write_run_record`); return its key. Raise the classified S3 error."""
    from easybackup import __version__
    from easybackup.storage.s3 import extra_put_args

    record = record_of(strategy.name, run_id, run_name(run_timestamp, run_id), started_at, finished_at, result,
                       __version__)
    return write_run_record(client, strategy.s3.bucket, strategy.s3.base_path, record,
                            extra_put_args(strategy.s3, storage_class=False, lock=False))


def list_run_record_keys(client, bucket: str, base_path: str | None, strategy: str) -> list[str]:
    """Given a strategy, return the keys of its run records, oldest first (by run name)."""
    keys = list_keys(client, bucket, runs_prefix(base_path, strategy), run_name_of_record)
    return sorted(keys, key=lambda key: (run_name_of_record(key), key))


def read_run_records(client, bucket: str, keys: list[str]) -> list[RunRecord]:
    """Given record keys, return the readable records in the same order; one that vanished (retention) or cannot
    be parsed is skipped with a warning. Raise the classified S3 error for anything else."""
    with concurrent.futures.ThreadPoolExecutor(READ_CONCURRENCY, thread_name_prefix="run-record") as pool:
        found = list(pool.map(lambda key: _read_or_skip(client, bucket, key), keys))
    return [record for record in found if record is not None]


def _read_or_skip(client, bucket: str, key: str) -> RunRecord | None:
    body = read_object_or_none(client, bucket, key)
    if body is None:
        return None
    try:
        return RunRecord.from_json(body)
    except ValueError as exc:
        log.warning("run record {} cannot be read and is skipped: {}", key, exc)
        return None


def newest_run_records(client, bucket: str, base_path: str | None, strategy: str, limit: int) -> list[RunRecord]:
    """Given a strategy, return its newest run records, newest first: all of them up to the newest success, and
    never more than `limit` (that many failures in a row say enough)."""
    keys = list(reversed(list_run_record_keys(client, bucket, base_path, strategy)))
    records: list[RunRecord] = []
    for start in range(0, min(len(keys), limit), READ_CONCURRENCY):
        batch = read_run_records(client, bucket, keys[start:min(start + READ_CONCURRENCY, limit)])
        for record in batch:
            records.append(record)
            if record.status == "success":
                return records
    return records
