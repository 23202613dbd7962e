"""The pure parts of a restore drill (catalogue/drill.py does the I/O): the drill database's name, which databases
a drill may drop, the judgement of a restored database, and whether a failed drill of a backup was superseded.

A drill creates and drops only databases whose name starts with the configured prefix. Leftovers of a killed
drill are recognised by the whole name a drill of the same database would give them — `<prefix><database>_<run
id>` — so a drill never drops another strategy's drill database that happens to share the prefix while it runs
(the pool never runs two drills of one strategy at once).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence

from easybackup.catalogue.listing import run_timestamp_of
from easybackup.storage.drillrecord import FAILED, PASSED, SUPERSEDED, no_failure
from easybackup.storage.manifest import Manifest

MAX_IDENTIFIER_BYTES = 63  # PostgreSQL's NAMEDATALEN - 1: a longer CREATE DATABASE name is silently cut
RUN_ID = r"[0-9a-z]{1,32}"
MAX_TABLES_RECORDED = 1000  # per database in the drill record; the counts and the checks cover every table


def drill_database_name(prefix: str, database: str, run_id: str) -> str:
    """Given the prefix, the backed-up database's name and the run id, return the drill database's name:
    `<prefix><database>_<run id>`, the database part shortened (whole characters) to fit 63 bytes."""
    room = MAX_IDENTIFIER_BYTES - len(prefix.encode()) - 1 - len(run_id.encode())
    middle = database
    while len(middle.encode()) > room:
        middle = middle[:-1]
    return f"{prefix}{middle}_{run_id}"


def is_leftover(name: str, prefix: str, databases: list[str], own_run_id: str) -> bool:
    """Given a database on the target, the prefix, the strategy's databases and this drill's run id, return
    whether it is a drill database another (killed) drill of one of these databases left behind."""
    if not name.startswith(prefix):
        return False
    for database in databases:
        stem = drill_database_name(prefix, database, "")[:-1]  # without `_<run id>`
        found = re.fullmatch(rf"{re.escape(stem)}_({RUN_ID})", name)
        if found and found[1] != own_run_id:
            return True
    return False


def table_label(schema: str, name: str) -> str:
    """Given a table's (schema, name), return how a drill names it: `schema.table`, or `table` where the engine
    has no schema inside a database (MySQL's are keyed ("", table))."""
    return f"{schema}.{name}" if schema else name


def missing_tables(expected: list[tuple[str, str]], restored: dict[tuple[str, str], int | None]) -> list[str]:
    """Given the archive's tables and the restored database's (table -> rows), return the label (table_label) of
    every table the archive holds that the database does not."""
    return [table_label(schema, name) for schema, name in expected if (schema, name) not in restored]


def summary(restored: dict[tuple[str, str], int | None]) -> dict:
    """Given the restored tables and their rows (None for a partitioned parent, whose rows its partitions hold),
    return the record's counts: tables, rows, and the per-table rows (the first MAX_TABLES_RECORDED by name)."""
    counted = {table_label(schema, name): rows for (schema, name), rows in sorted(restored.items())}
    return {"tables": len(counted), "rows": sum(rows for rows in counted.values() if rows is not None),
            "table_rows": dict(list(counted.items())[:MAX_TABLES_RECORDED])}


# -- superseded: the drilled backup deleted under the drill by retention, after a newer backup ------------------



def superseded_by(drilled: Manifest, backups: Sequence[Manifest], missing: Collection[str]) -> Manifest | None:
    """Given the backup (Manifest) a failed drill of one database read, that database's complete backups listed
    after the failure and the keys of those whose archive is missing, return the newest whole backup newer than
    the drilled one when the drilled one is gone (its manifest or its archive) — retention deleted it under the
    drill; None when it is still whole or nothing newer exists: then the failure stands."""
    missing = set(missing)
    whole = [backup for backup in backups if backup.key not in missing]
    if any(backup.key == drilled.key for backup in whole):
        return None
    newer = [backup for backup in whole if _order(backup) > _order(drilled)]
    return max(newer, key=_order) if newer else None


def _order(backup: Manifest) -> tuple:
    return run_timestamp_of(backup), backup.started_at, backup.key


def drill_status(statuses: list[str], error: bool) -> str:
    """Given each drilled database's status and whether the drill itself failed (nothing listed, no target),
    return the drill's: `failed` when anything failed or nothing was drilled, `superseded` when every database
    passed but one or more were superseded (their backup not checked, a newer one exists), else `success`."""
    if error or not statuses or not all(no_failure(status) for status in statuses):
        return FAILED
    return SUPERSEDED if SUPERSEDED in statuses else PASSED
