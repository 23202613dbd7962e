"""Drill records: how each restore drill of a strategy ended (issue 18), stored beside the backups as
`<base>/<strategy>/_drills/<run name>.drill.json` so the state of drills survives a restart, as backups' does.

A record is JSON: the run's identity and times, its status and error (one masked line), and per database the
backup drilled, its status, tables, rows (exact count(*) per table), restored bytes and download+restore seconds.
It is no archive, no manifest and no run record: listing, restore and retention of backups never take it for one.
Retention deletes old drill records by its own rule (catalogue.retention.old_drill_records). A record is never
written locked under `s3.object_lock` (as run records and pins): it must stay deletable.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone

from easybackup.secrets import mask
from easybackup.storage.layout import run_name, strategy_prefix
from easybackup.storage.runrecord import error_text
from easybackup.storage.s3 import extra_put_args, list_keys, put_new_object, read_object_or_none

# A drill's status, and each drilled database's: passed; superseded (its backup deleted under it by retention,
# after a newer one: no failure, though nothing was proved); failed (timed out and cancelled too).
PASSED, SUPERSEDED, FAILED = "success", "superseded", "failed"
DRILLS = "_drills"
DRILL_RECORD_SUFFIX = ".drill.json"
RECORD_VERSION = 1
_DRILL_RECORD_NAME = re.compile(r"^(?P<name>\d{4}-\d{2}-\d{2}T\d{6}Z-[0-9a-z]{1,32})" + re.escape(DRILL_RECORD_SUFFIX)
                                + "$")
_DATABASE_FIELDS = ("database", "status", "key", "tables", "rows", "restored_bytes", "restore_s", "toc_tables",
                    "duration_s", "table_rows")


def no_failure(status: str | None) -> bool:
    """Given a drill's (or a drilled database's) status, return whether it failed nothing: passed or superseded."""
    return status in (PASSED, SUPERSEDED)


def drills_prefix(base_path: str | None, strategy: str) -> str:
    """Given the base path and strategy name, return the prefix of the strategy's drill records."""
    return strategy_prefix(base_path, strategy) + DRILLS + "/"


def is_drill_record(key: str) -> bool:
    """Given any key, return whether it is a drill record's (`…/_drills/<run name>.drill.json`)."""
    return drill_run_name(key) is not None


def drill_run_name(key: str) -> str | None:
    """Given any key, return the run name of the drill record it is (`2024-05-01T020000Z-3f2a9c1b7d4e`), else None."""
    directory, _, name = key.rpartition("/")
    match = _DRILL_RECORD_NAME.match(name)
    return match["name"] if match and directory.rpartition("/")[2] == DRILLS else None


def drill_record(strategy: str, run_id: str, run: str, started_at: str, finished_at: str, result: dict) -> dict:
    """Given a drill's identity and times and its `result` fields (worker/drill.py), return its record."""
    databases = []
    for item in result.get("databases") or ():
        kind, text = error_text(item.get("error"))
        databases.append({**{key: item.get(key) for key in _DATABASE_FIELDS}, "error_kind": kind, "error": text})
    kind, text = error_text(result.get("error"))
    return {"format_version": RECORD_VERSION, "strategy": strategy, "run_id": run_id, "run_name": run,
            "started_at": started_at, "finished_at": finished_at, "status": result.get("status"),
            "duration_s": result.get("duration_s"), "error_kind": kind, "error": text, "databases": databases}


def store_drill_record(client, strategy, run_id: str, run_timestamp: str, started_at: str, result: dict) -> str:
    """Given a client, the strategy (config.model.Strategy), the drill's identity and start and its `result`,
    write its record (never over another); return its key. Raise the classified S3 error."""
    run = run_name(run_timestamp, run_id)
    finished = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    record = drill_record(strategy.name, run_id, run, started_at, finished, result)
    key = f"{drills_prefix(strategy.s3.base_path, strategy.name)}{run}{DRILL_RECORD_SUFFIX}"
    body = mask(json.dumps(record, sort_keys=True, indent=1)).encode("utf-8")
    put_new_object(client, strategy.s3.bucket, key, body, ContentType="application/json",
                   **extra_put_args(strategy.s3, storage_class=False, lock=False))
    return key


def list_drill_record_keys(client, bucket: str, base_path: str | None, strategy: str) -> list[str]:
    """Given a strategy, return the keys of its drill records, oldest first (by run name); raise the classified S3
    error."""
    return sorted(list_keys(client, bucket, drills_prefix(base_path, strategy), is_drill_record),
                  key=lambda key: (drill_run_name(key), key))


def drill_record_status(client, bucket: str, key: str) -> str | None:
    """Given a drill record's key, return its status (success, failed, superseded…), None when it is gone or not
    a readable record; raise the classified S3 error."""
    body = read_object_or_none(client, bucket, key)
    try:
        status = json.loads(body).get("status") if body is not None else None
    except (ValueError, AttributeError):
        return None
    return status if isinstance(status, str) else None


def newest_drill_record(client, bucket: str, base_path: str | None, strategy: str) -> dict | None:
    """Given a strategy, return its newest drill record (None: no drill yet); raise the classified S3 error."""
    keys = list_keys(client, bucket, drills_prefix(base_path, strategy), is_drill_record)
    body = read_object_or_none(client, bucket, max(keys)) if keys else None
    return json.loads(body) if body is not None else None
