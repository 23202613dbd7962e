"""Restoring a backup into a database: S3 → sha256 → [decoders] → the engine's restore program (for PostgreSQL
pg_restore for the custom format, psql for plain SQL). The decoders are the codec chain's (pipeline/codecs.py).

Streamed without a temp file; the sha256 is computed on the way, so a mismatch is known only at the end, when
the restore program may already have applied data (the error says so). A restore program that fails stops the
download at once: its error comes without waiting for the rest of the archive, and says the checksum was not
checked. With `jobs` (a parallel restore needs a seekable file) the archive is downloaded, checked and
decompressed into a 0600 file in a private directory first — then nothing is applied from a bad archive — and the
file is removed afterwards. That file is the dump as the dump program wrote it: the manifest's dump_bytes, checked
to fit before the download starts, and never more (an archive that decompresses to more is refused before it
fills the disk).

An age-encrypted backup is read twice: first decrypted and checked whole with the identity (verify_archive),
so a wrong identity or a cut or altered ciphertext fails before anything reaches the target — age authenticates
chunk by chunk, and a streamed restore would already have applied the chunks before a bad one — then restored.

The password never reaches argv or a child's environment: the engine's RestoreTarget writes a 0600 passfile.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from easybackup.catalogue.verify import (
    ProgressCallback,
    open_object,
    stream_object,
    stream_through,
    verification_error,
    verify_archive,
    write_all,
)
from easybackup.engines import RestoreTarget
from easybackup.errors import EasybackupError
from easybackup.humanize import format_bytes
from easybackup.codec_table import chain_of_manifest
from easybackup.pipeline import age
from easybackup.pipeline.codecs import decode_stages
from easybackup.pipeline.stages import LineCallback, Pipeline, StageFailed, StageSpec
from easybackup.private_dirs import make_private_dir
from easybackup.storage.layout import parse_archive_key
from easybackup.storage.manifest import Manifest


@dataclass(frozen=True)
class RestoreResult:
    key: str
    size: int
    sha256: str


@contextmanager
def private_directory(temp_dir: str):
    """Yield a new 0700 directory inside `temp_dir` for passfiles and downloads; remove it afterwards."""
    path = make_private_dir(temp_dir, "restore-")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# -- the restore ---------------------------------------------------------------------------------------------------


def restore_stage(manifest: Manifest, target: RestoreTarget, *, clean: bool, jobs: int | None = None,
                  path: Path | None = None, without_owners: bool = False) -> StageSpec:
    """Given a backup and the target, return the stage that applies it (the engine's, for the backup's format);
    raise UsageError for options the format cannot do (--clean or --jobs with a plain dump). `without_owners`: a
    drill's, into a scratch server that lacks production's roles."""
    return target.restore_stage(manifest.format, globals_dump=is_globals(manifest), clean=clean, jobs=jobs, path=path,
                                without_owners=without_owners)


def is_globals(manifest: Manifest) -> bool:
    """Given a manifest, return whether it is a globals dump (roles and tablespaces, `_globals/`)."""
    parsed = parse_archive_key(manifest.key)
    return parsed is not None and parsed.is_globals


def prove_decryptable(client, bucket: str, manifest: Manifest, identity: Path | None, *,
                      on_line: LineCallback | None = None, on_progress: ProgressCallback | None = None,
                      stop_event: threading.Event | None = None) -> None:
    """Given an encrypted backup and the identity, read it back whole (decrypt, decompress, read the dump) before
    anything is restored; nothing for a backup that is not encrypted. Raise UsageError without an identity, or the
    verification error (wrong identity, damaged ciphertext)."""
    codecs = chain_of_manifest(manifest)
    if not codecs.encrypted:
        return
    if identity is None:
        raise age.need_identity(manifest.key)
    verify_archive(client, bucket, manifest.key, size=manifest.stored_bytes, sha256=manifest.sha256,
                   engine=manifest.engine, fmt=manifest.format, codecs=codecs, identity=identity, on_line=on_line,
                   on_progress=on_progress, stop_event=stop_event)


def restore_streaming(client, bucket: str, manifest: Manifest, target: RestoreTarget, *, clean: bool,
                      identity: Path | None = None, on_line: LineCallback | None = None,
                      on_progress: ProgressCallback | None = None, without_owners: bool = False,
                      stop_event: threading.Event | None = None) -> RestoreResult:
    """Given a backup and the target, stream it in; return what was read. Raise a verification error on a size or
    sha256 mismatch (saying data may already be applied), an error naming the restore stage that failed, or a
    `cancelled` error once `stop_event` is set. `without_owners`: see restore_stage (a drill's).

    A globals dump is applied past its errors; those the engine counts (not "already exists") fail it."""
    errors = _GlobalsErrors(on_line, target.restore_error) if is_globals(manifest) else None
    on_line = errors or on_line
    stages = [*decode_stages(chain_of_manifest(manifest), identity),
              restore_stage(manifest, target, clean=clean, without_owners=without_owners)]
    body = open_object(client, bucket, manifest.key)["Body"]
    streamed, failure = stream_through(body, stages, consume_output=_discard, bucket=bucket, on_line=on_line,
                                       on_progress=on_progress, name="restore-out", stop_when_a_stage_fails=True,
                                       stop_event=stop_event)
    if failure is not None and not streamed.complete:
        # Reading the rest of a large archive only to hash it would keep the operator waiting for this error.
        raise _restore_failed(failure, target, unchecked=(streamed.size, manifest.stored_bytes, manifest.key))
    if (streamed.size, streamed.sha256) != (manifest.stored_bytes, manifest.sha256):
        raise verification_error(
            f"checksum mismatch: {manifest.key} is not what was backed up",
            f"manifest: {manifest.stored_bytes} bytes, sha256 {manifest.sha256}; read: {streamed.size} bytes, "
            f"sha256 {streamed.sha256}",
            f"{stages[-1].name} may already have applied part of it to database {target.dbname}: do not trust that "
            "database; restore an older backup with --clean (or into a new database)",
            last_lines=failure.last_lines if failure else ())
    if failure is not None:
        raise _restore_failed(failure, target)
    if errors is not None and errors.lines:
        raise EasybackupError(f"restoring the globals reported {len(errors.lines)} error(s)", errors.lines[0],
                              f"read the {stages[-1].name} lines above", kind="dump_failed",
                              last_lines=errors.lines[-25:])
    return RestoreResult(key=manifest.key, size=streamed.size, sha256=streamed.sha256)


class _GlobalsErrors:
    """Passes the restore program's lines on and keeps those the engine calls errors — not objects that already
    exist (the usual case when restoring roles into a cluster that has some of them)."""

    def __init__(self, on_line: LineCallback | None, is_error: Callable[[str], bool]):
        self._on_line = on_line
        self._is_error = is_error
        self.lines: list[str] = []

    def __call__(self, stage: str, line: str) -> None:
        if self._is_error(line):
            self.lines.append(line)
        if self._on_line is not None:
            self._on_line(stage, line)


def _discard(fd: int) -> None:
    # A restore program may print a line per statement on stdout (psql's command tags); an undrained pipe would
    # stall it.
    while os.read(fd, 1 << 16):
        pass


def _restore_failed(failure: StageFailed, target: RestoreTarget,
                    unchecked: tuple[int, int, str] | None = None) -> EasybackupError:
    """Given the failed stage and the target, return the restore's error; `unchecked` (bytes read, bytes stored,
    key) says the download stopped with the failure, so the archive's checksum was not checked."""
    known = target.failure_hint(failure.last_lines)
    kind, cause = known if known is not None else ("dump_failed", "read the lines above")
    hint = f"{cause}; the database may hold a partial restore — fix the cause and restore again with --clean"
    if unchecked is not None:
        read, stored, key = unchecked
        hint += (f"; the download stopped with it after {read} of {stored} bytes, so the archive's sha256 was not "
                 f"checked: `easybackup verify --backup {key}` checks it")
    return EasybackupError(f"restore into database {target.dbname} failed: {failure.message}", failure.detail,
                           hint, kind=kind, exit_codes=failure.exit_codes, last_lines=failure.last_lines)


def check_free_space(directory: Path, needed: int) -> None:
    """Given a directory and the bytes a download needs, raise EasybackupError (kind storage) if they do not fit."""
    free = shutil.disk_usage(directory).free
    if free < needed:
        raise EasybackupError(f"not enough free space in {directory} for --jobs",
                              f"needs at least {format_bytes(needed)}, {format_bytes(free)} free",
                              "free space there, point temp_dir at a larger disk, or restore without --jobs "
                              "(streamed, no temp file)", kind="storage")


def restore_parallel(client, bucket: str, manifest: Manifest, target: RestoreTarget, private_dir: Path, *, jobs: int,
                     clean: bool, identity: Path | None = None, on_line: LineCallback | None = None,
                     on_progress: ProgressCallback | None = None) -> RestoreResult:
    """Given a custom-format backup, download, check and decompress it into a 0600 file in `private_dir`, then
    restore it with `jobs` parallel jobs; remove the file afterwards. Raise a verification error before anything
    is applied if the archive does not match its manifest."""
    stage = restore_stage(manifest, target, clean=clean, jobs=jobs)  # refuses plain before any download
    # The stored size is what we know for sure; a compressed dump grows when decompressed.
    check_free_space(private_dir, manifest.dump_bytes or manifest.stored_bytes)
    path = private_dir / "archive.dump"
    try:
        streamed, overflowed = _download_decoded(client, bucket, manifest, identity, path, on_line, on_progress)
        if (streamed.size, streamed.sha256) != (manifest.stored_bytes, manifest.sha256):
            raise verification_error(f"checksum mismatch: {manifest.key} is not what was backed up",
                                     f"manifest: sha256 {manifest.sha256}; read: sha256 {streamed.sha256}",
                                     f"nothing was restored into {target.dbname}; restore an older backup")
        if overflowed:
            raise verification_error(
                f"{manifest.key} decompresses to more than the {manifest.dump_bytes} bytes its manifest says "
                "the dump program wrote", f"the download file in {private_dir} was not written past that size",
                f"nothing was restored into {target.dbname}; restore without --jobs (no file), or an older backup")
        stage = restore_stage(manifest, target, clean=clean, jobs=jobs, path=path)
        with Pipeline([stage], on_line=on_line) as pipeline:
            _discard(pipeline.output_fd)
            try:
                pipeline.wait()
            except StageFailed as failed:
                raise _restore_failed(failed, target) from failed
    finally:
        path.unlink(missing_ok=True)
    return RestoreResult(key=manifest.key, size=streamed.size, sha256=streamed.sha256)


def _download_decoded(client, bucket, manifest: Manifest, identity: Path | None, path: Path, on_line, on_progress):
    """Stream the archive through sha256 and the decoders into `path` (created 0600), writing no more than
    the manifest's dump bytes; return Streamed and whether the dump was longer than that."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    stages = decode_stages(chain_of_manifest(manifest), identity)
    sink = _BoundedFile(fd, manifest.dump_bytes if stages else manifest.stored_bytes)
    try:
        body = open_object(client, bucket, manifest.key)["Body"]
        if not stages:
            streamed = stream_object(body, sink, bucket=bucket, on_progress=on_progress)
        else:
            streamed = _through_decoders(body, stages, sink, bucket, on_line, on_progress, (manifest.key, identity))
        return streamed, sink.overflowed
    except OSError as exc:
        raise EasybackupError(f"cannot write the download to {path}", str(exc),
                              "free space in temp_dir or restore without --jobs", kind="storage") from exc
    finally:
        os.close(fd)


def _through_decoders(body, stages: list[StageSpec], sink: _BoundedFile, bucket: str, on_line, on_progress,
                      what: tuple[str, Path | None]):
    streamed, failed = stream_through(body, stages, consume_output=lambda source: _copy(source, sink), bucket=bucket,
                                      on_line=on_line, on_progress=on_progress, name="restore-download")
    if failed is not None and failed.stage == age.PROGRAM:
        raise age.explain(failed, *what) from failed
    if failed is not None:
        raise verification_error(f"cannot decode the {failed.stage} archive: {failed.message}",
                                 failed.detail, last_lines=failed.last_lines) from failed
    return streamed


def _copy(source: int, target: _BoundedFile) -> None:
    """Given the decompressor's output and the download file, copy the one into the other; raise the first OSError
    (ENOSPC) once the output is drained."""
    error: OSError | None = None
    while chunk := os.read(source, 1 << 20):
        if error is not None:
            continue  # keep draining so the decompressor is not stalled; the error is reported
        try:
            target(chunk)
        except OSError as exc:
            error = exc
    if error is not None:
        raise error


class _BoundedFile:
    """A sink that writes to `fd` at most `limit` bytes (None: no limit known, an older manifest) and drops the
    rest, noting it: the download goes on to its end for the checksum without filling the disk."""

    def __init__(self, fd: int, limit: int | None):
        self.fd = fd
        self.limit = limit
        self.written = 0
        self.overflowed = False

    def __call__(self, chunk: bytes) -> bool:
        if self.limit is not None and self.written + len(chunk) > self.limit:
            self.overflowed = True
            chunk = chunk[:max(self.limit - self.written, 0)]
        write_all(self.fd, chunk)
        self.written += len(chunk)
        return True
