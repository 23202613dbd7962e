"""A restore drill of one database: the newest complete backup restored into a new throwaway database on the drill
target, checked, measured and dropped (issue 18; the pure parts are in drill_plan.py).

The restore is restore.py's streaming one (sha256 checked as it streams, pg_restore --exit-on-error in one
transaction) with --no-owner --no-privileges: a scratch server has none of production's roles. Then: no error line
from pg_restore, every TABLE of the archive's table of contents present in the restored database (the list is
read off the archive's head with `pg_restore --list`, an independent reading of what the backup holds), and an exact
count(*) per table. The drill database is dropped on every path (WITH (FORCE): a killed pg_restore's backend may
still hold it); only a name with the configured prefix is ever created or dropped.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

from easybackup.catalogue.drill_plan import drill_database_name, is_leftover, missing_tables, summary, toc_tables
from easybackup.catalogue.restore import (
    Connection,
    create_database,
    database_exists,
    restore_streaming,
    with_dbname,
)
from easybackup.catalogue.verify import CHUNK, FdSink, open_object, verification_error
from easybackup.config.model import RestoreDrillSettings
from easybackup.engines.postgres_toc import TOC_STAGE, toc_stage
from easybackup.errors import EasybackupError
from easybackup.pipeline.codecs import decompress_stage
from easybackup.pipeline.stages import LineCallback, Pipeline, StageFailed
from easybackup.storage.manifest import Manifest

DRILL_RESTORE_ARGS = ("--no-owner", "--no-privileges")
# Every user table with its exact row count (a partitioned parent: null, its partitions hold the rows), as JSON.
TABLES_SQL = r"""SELECT coalesce(json_agg(json_build_array(n.nspname, c.relname, CASE WHEN c.relkind = 'r' THEN
  (xpath('/row/c/text()', query_to_xml(format('SELECT count(*) AS c FROM %I.%I', n.nspname, c.relname),
   false, true, '')))[1]::text::bigint END)), '[]')
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\_toast%' AND n.nspname NOT LIKE 'pg\_temp%'"""
PREFIXED_SQL = "SELECT datname FROM pg_database WHERE starts_with(datname, :'prefix') ORDER BY 1"


def drop_database(maintenance: Connection, name: str, prefix: str) -> None:
    """Given the maintenance connection, a drill database's name and the prefix, drop it (gone already: fine).
    Raise ValueError for a name without the prefix: a drill never drops anything else."""
    if not name.startswith(prefix) or name == prefix:
        raise ValueError(f"refusing to drop {name!r}: not a drill database (prefix {prefix!r})")
    maintenance.psql('DROP DATABASE IF EXISTS :"name" WITH (FORCE)', {"name": name})


def drop_leftovers(maintenance: Connection, settings: RestoreDrillSettings, databases: list[str],
                   run_id: str) -> list[str]:
    """Given the target, the settings, the databases this drill covers and its run id, drop the drill databases
    of these databases that a killed drill left behind; return their names."""
    names = maintenance.psql(PREFIXED_SQL, {"prefix": settings.database_prefix}).splitlines()
    found = [name for name in names if is_leftover(name, settings.database_prefix, databases, run_id)]
    for name in found:
        drop_database(maintenance, name, settings.database_prefix)
    return found


def archive_tables(client, bucket: str, manifest: Manifest, stop: threading.Event) -> list[tuple[str, str]]:
    """Given a custom-format backup, return (schema, table) of every TABLE in its table of contents. Only the head
    is downloaded: `pg_restore --list` reads the TOC and exits. Raise a verification error if it cannot."""
    stages = [s for s in [decompress_stage(manifest.compression)] if s is not None]
    stages.append(toc_stage())
    body = open_object(client, bucket, manifest.key)["Body"]
    read_end, write_end = os.pipe()
    sink, listing = FdSink(write_end), []
    try:
        with Pipeline(stages, stdin=read_end) as pipeline:
            os.close(read_end)
            read_end = -1
            reader = threading.Thread(target=lambda: listing.append(_read_all(pipeline.output_fd)), daemon=True)
            reader.start()
            try:
                while not stop.is_set() and (chunk := body.read(CHUNK)) and sink(chunk):
                    pass
            finally:
                sink.close()
                body.close()
                reader.join()
            _check_listed(pipeline, manifest.key)
    finally:
        sink.close()
        if read_end >= 0:
            os.close(read_end)
    if stop.is_set():
        raise EasybackupError("cancelled", "stopped while reading the archive's table of contents", kind="cancelled")
    return toc_tables(listing[0].decode(errors="replace") if listing else "")


def _check_listed(pipeline: Pipeline, key: str) -> None:
    """pg_restore --list exits 0 once it has read the TOC; the decompressor before it then dies of the closed pipe,
    which is no failure of the archive."""
    try:
        pipeline.wait()
    except StageFailed as failed:
        if failed.exit_codes.get(TOC_STAGE) != 0:
            raise verification_error(f"cannot read the table of contents of {key}: {failed.message}",
                                     failed.detail, last_lines=failed.last_lines) from failed


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 1 << 16):
        chunks.append(chunk)
    return b"".join(chunks)


def restored_tables(target: Connection, stop: threading.Event, timeout: float) -> dict[tuple[str, str], int | None]:
    """Given the restored database, return {(schema, table): exact rows} (None for a partitioned parent)."""
    rows = json.loads(target.psql(TABLES_SQL, timeout=timeout, stop=stop) or "[]")
    return {(schema, name): count for schema, name, count in rows}


class ErrorLines:
    """Passes pg_restore's lines on and keeps those that report an error (pg_restore exiting 0 is not enough)."""

    def __init__(self, on_line: LineCallback | None):
        self._on_line = on_line
        self.lines: list[str] = []

    def __call__(self, stage: str, line: str) -> None:
        if "error:" in line.lower():
            self.lines.append(line)
        if self._on_line is not None:
            self._on_line(stage, line)


def drill_one(client, bucket: str, manifest: Manifest, database: str, settings: RestoreDrillSettings,
              maintenance: Connection, private_dir: Path, run_id: str, stop: threading.Event, deadline: float,
              on_line: LineCallback | None = None) -> dict:
    """Given the newest backup of `database` and the drill target, restore it into a new drill database, check it,
    drop it; return the outcome's fields (tables, rows, restored_bytes, restore_s). Raise EasybackupError saying
    precisely what failed; the drill database is dropped on every path."""
    name = drill_database_name(settings.database_prefix, database, run_id)
    if database_exists(maintenance, name):  # never restore into a database that exists
        raise EasybackupError(f"drill database {name} exists already", "a drill never restores into an existing "
                              "database", "drop it by hand if no drill is running", kind="internal")
    expected = archive_tables(client, bucket, manifest, stop) if manifest.format == "custom" else None
    create_database(maintenance, name)
    dropper = _DropOnStop(maintenance, name, settings.database_prefix, stop)
    try:
        found = _restore_and_count(client, bucket, manifest, settings, name, private_dir, stop, deadline, on_line)
    finally:
        dropper.close()
        drop_database(maintenance, name, settings.database_prefix)
    restored, size, restore_s = found
    missing = missing_tables(expected or [], restored)
    if missing:
        raise verification_error(f"{len(missing)} table(s) of the archive missing from the restored database",
                                 ", ".join(missing[:20]), "the backup does not restore whole: investigate the dump")
    return {**summary(restored), "restored_bytes": size, "restore_s": restore_s,
            "toc_tables": None if expected is None else len(expected)}


class _DropOnStop:
    """Drops the drill database as soon as `stop` is set (a SIGTERM, the timeout): WITH (FORCE) ends pg_restore's
    or the count's session at once, wherever the restore is — still downloading, or applying the last of a
    download long finished — so the drill ends within the pool's cancel_wait, before a SIGKILL could leave it."""

    def __init__(self, maintenance: Connection, name: str, prefix: str, stop: threading.Event):
        self._args, self._stop, self._done = (maintenance, name, prefix), stop, threading.Event()
        self._thread = threading.Thread(target=self._watch, name="drill-drop-on-stop", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._done.is_set():
            if self._stop.wait(0.1):
                try:
                    drop_database(*self._args)
                except EasybackupError:
                    pass  # the drop after the restore tries again and reports it
                return

    def close(self) -> None:
        self._done.set()
        self._thread.join()


def _restore_and_count(client, bucket: str, manifest: Manifest, settings: RestoreDrillSettings, name: str,
                       private_dir: Path, stop: threading.Event, deadline: float, on_line: LineCallback | None
                       ) -> tuple[dict, int, float]:
    """Restore into the new database `name`; return (tables with rows, its size, the download+restore seconds)."""
    target = Connection(with_dbname(settings.target_url, name), private_dir)
    errors = ErrorLines(on_line)
    started = time.monotonic()
    try:
        restore_streaming(client, bucket, manifest, target, clean=False, on_line=errors,
                          extra_args=DRILL_RESTORE_ARGS if manifest.format == "custom" else (), stop_event=stop)
        restore_s = round(time.monotonic() - started, 3)  # the strategy's real recovery time: download + restore
        if errors.lines:
            raise EasybackupError(f"the restore reported {len(errors.lines)} error line(s) though it exited 0",
                                  errors.lines[0], kind="dump_failed", last_lines=errors.lines[-25:])
        remaining = max(1.0, deadline - time.monotonic())
        restored = restored_tables(target, stop, remaining)
        size = int(target.psql("SELECT pg_database_size(current_database())", stop=stop))
    finally:
        target.cleanup()
    return restored, size, restore_s
