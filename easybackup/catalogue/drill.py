"""A restore drill of one database: the newest complete backup restored into a new throwaway database on the drill
target, checked, measured and dropped (issue 18; the pure parts are in drill_plan.py).

Everything said to the drill target goes through its engine's DrillTarget (engines/__init__.py). The restore is
restore.py's streaming one (sha256 checked as it streams; for PostgreSQL pg_restore --exit-on-error in one
transaction, for MySQL the client, which stops at the first error) without owners and grants where the engine can
leave them out: a scratch server has none of production's roles. Then: no error line from the restore program,
every table of the archive's table of contents present in the restored database (read off the archive's head by
the engine's TOC stage, an independent reading of what the backup holds; a format without one, plain SQL, is
checked by counts only), and an exact row count per table. The drill database is dropped on every path (ending
the sessions still in it: a killed restore's may); only a name with the configured prefix is created or dropped.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from easybackup.catalogue.drill_plan import drill_database_name, is_leftover, missing_tables, summary
from easybackup.catalogue.restore import restore_streaming
from easybackup.catalogue.verify import CHUNK, FdSink, open_object, verification_error
from easybackup.config.model import RestoreDrillSettings, TimeoutSettings
from easybackup.engines import DrillTarget, engine_for_url
from easybackup.errors import EasybackupError
from easybackup.codec_table import chain_of_manifest
from easybackup.pipeline import age
from easybackup.pipeline.codecs import decode_stages
from easybackup.pipeline.stages import LineCallback, Pipeline, StageFailed, StageSpec
from easybackup.storage.manifest import Manifest


def drill_target(url: str, private_dir: Path, connect_timeout: float) -> DrillTarget:
    """Given a drill target URL, return it as its engine's DrillTarget; raise EasybackupError (kind config) for an
    engine that cannot be drilled (the config check refuses it first)."""
    try:
        engine = engine_for_url(url)
    except ValueError as exc:
        raise EasybackupError("cannot drill into restore_drill.target_url", str(exc), kind="config") from None
    target = engine.restore_target(url, private_dir, connect_timeout)
    if not isinstance(target, DrillTarget):
        target.cleanup()
        raise EasybackupError(f"restore drills do not support {engine.name} yet", kind="config",
                              hint="give the strategy restore_drill: null")
    return target


def drop_database(maintenance: DrillTarget, name: str, prefix: str) -> None:
    """Given the maintenance connection, a drill database's name and the prefix, drop it (gone already: fine).
    Raise ValueError for a name without the prefix: a drill never drops anything else."""
    if not name.startswith(prefix) or name == prefix:
        raise ValueError(f"refusing to drop {name!r}: not a drill database (prefix {prefix!r})")
    maintenance.drop_database(name)


def drop_leftovers(maintenance: DrillTarget, settings: RestoreDrillSettings, databases: list[str],
                   run_id: str) -> list[str]:
    """Given the target, the settings, the databases this drill covers and its run id, drop the drill databases
    of these databases that a killed drill left behind; return their names."""
    names = maintenance.databases_starting_with(settings.database_prefix)
    found = [name for name in names if is_leftover(name, settings.database_prefix, databases, run_id)]
    for name in found:
        drop_database(maintenance, name, settings.database_prefix)
    return found


def drill_identity(manifest: Manifest) -> Path | None:
    """Given the backup to drill, return the age identity that decrypts it ($EASYBACKUP_AGE_IDENTITY_FILE, as for
    verify.after_backup: a drill runs unattended), None for a backup that is not encrypted. Raise EasybackupError
    (config) for an encrypted one on a host without an identity, or UsageError for an unusable identity file."""
    if not chain_of_manifest(manifest).encrypted:
        return None
    identity = age.identity_path(None)
    if identity is None:
        raise EasybackupError(f"cannot drill {manifest.key}: it is encrypted with age and this host has no identity",
                              f"${age.IDENTITY_ENV} is not set", kind="config",
                              hint=f"set ${age.IDENTITY_ENV} to a 0600 file holding the identity of one of its "
                                   "recipients, or give the strategy `restore_drill: null`")
    return identity


def archive_toc(client, bucket: str, manifest: Manifest, toc: StageSpec, stop: threading.Event,
                identity: Path | None = None) -> str:
    """Given a backup, its engine's TOC stage (and the identity of an encrypted one), return what the stage printed:
    the archive's table of contents. Only the head is downloaded: the stage reads the TOC and exits. Raise a
    verification error if it cannot."""
    stages = [*decode_stages(chain_of_manifest(manifest), identity), toc]
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
            _check_listed(pipeline, toc.name, manifest.key)
    finally:
        sink.close()
        if read_end >= 0:
            os.close(read_end)
    if stop.is_set():
        raise EasybackupError("cancelled", "stopped while reading the archive's table of contents", kind="cancelled")
    return listing[0].decode(errors="replace") if listing else ""


def _check_listed(pipeline: Pipeline, toc_name: str, key: str) -> None:
    """The TOC stage exits 0 once it has read the TOC; the decoders before it then die of the closed pipe, which is
    no failure of the archive."""
    try:
        pipeline.wait()
    except StageFailed as failed:
        if failed.exit_codes.get(toc_name) != 0:
            raise verification_error(f"cannot read the table of contents of {key}: {failed.message}",
                                     failed.detail, last_lines=failed.last_lines) from failed


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 1 << 16):
        chunks.append(chunk)
    return b"".join(chunks)


class ErrorLines:
    """Passes the restore program's lines on and keeps those that report an error (its exit 0 is not enough): any
    `error:`, and those the engine's target calls errors (MySQL's client: `ERROR 1064 (42000) at line 5: …`)."""

    def __init__(self, on_line: LineCallback | None, is_error: Callable[[str], bool] | None = None):
        self._on_line = on_line
        self._is_error = is_error
        self.lines: list[str] = []

    def __call__(self, stage: str, line: str) -> None:
        if "error:" in line.lower() or (self._is_error is not None and self._is_error(line)):
            self.lines.append(line)
        if self._on_line is not None:
            self._on_line(stage, line)


def drill_one(client, bucket: str, manifest: Manifest, database: str, settings: RestoreDrillSettings,
              maintenance: DrillTarget, private_dir: Path, run_id: str, stop: threading.Event, deadline: float,
              on_line: LineCallback | None = None, connect_timeout: float = TimeoutSettings.connect) -> dict:
    """Given the newest backup of `database` and the drill target, restore it into a new drill database, check it,
    drop it; return the outcome's fields (tables, rows, restored_bytes, restore_s). Raise EasybackupError saying
    precisely what failed; the drill database is dropped on every path."""
    name = drill_database_name(settings.database_prefix, database, run_id)
    if maintenance.database_exists(name):  # never restore into a database that exists
        raise EasybackupError(f"drill database {name} exists already", "a drill never restores into an existing "
                              "database", "drop it by hand if no drill is running", kind="internal")
    identity = drill_identity(manifest)
    toc = maintenance.toc_stage(manifest.format)
    expected = None if toc is None else maintenance.toc_tables(archive_toc(client, bucket, manifest, toc, stop,
                                                                           identity))
    maintenance.create_database(name)
    dropper = _DropOnStop(maintenance, name, settings.database_prefix, stop)
    try:
        found = _restore_and_count(client, bucket, manifest, settings, name, (private_dir, connect_timeout), stop,
                                   deadline, on_line, identity)
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
    """Drops the drill database as soon as `stop` is set (a SIGTERM, the timeout): the drop ends the restore's or
    the count's session at once, wherever the restore is — still downloading, or applying the last of a
    download long finished — so the drill ends within the pool's cancel_wait, before a SIGKILL could leave it."""

    def __init__(self, maintenance: DrillTarget, name: str, prefix: str, stop: threading.Event):
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
                       connect: tuple[Path, float], stop: threading.Event, deadline: float,
                       on_line: LineCallback | None, identity: Path | None = None) -> tuple[dict, int, float]:
    """Restore into the new database `name`; return (tables with rows, its size, the download+restore seconds)."""
    url = engine_for_url(settings.target_url).with_database(settings.target_url, name)
    target = drill_target(url, *connect)
    errors = ErrorLines(on_line, target.restore_error)
    started = time.monotonic()
    try:
        restore_streaming(client, bucket, manifest, target, clean=False, identity=identity, on_line=errors,
                          without_owners=True, stop_event=stop)
        restore_s = round(time.monotonic() - started, 3)  # the strategy's real recovery time: download + restore
        if errors.lines:
            raise EasybackupError(f"the restore reported {len(errors.lines)} error line(s) though it exited 0",
                                  errors.lines[0], kind="dump_failed", last_lines=errors.lines[-25:])
        remaining = max(1.0, deadline - time.monotonic())
        restored = target.table_rows(timeout=remaining, stop=stop)
        size = target.database_size(stop=stop)
    finally:
        target.cleanup()
    return restored, size, restore_s
