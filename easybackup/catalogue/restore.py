"""Restoring a backup into a database: S3 → sha256 → [decompressor] → pg_restore (custom) or psql (plain).

Streamed without a temp file; the sha256 is computed on the way, so a mismatch is known only at the end, when
pg_restore may already have applied data (the error says so). A restore program that fails stops the download
at once: its error comes without waiting for the rest of the archive, and says the checksum was not checked.
With `jobs` (pg_restore -j needs a seekable file) the archive is downloaded, checked and decompressed into a
0600 file in a private directory first — then nothing is applied from a bad archive — and the file is removed
afterwards. That file is the dump as pg_dump wrote it: the manifest's dump_bytes, checked to fit before the
download starts, and never more (an archive that decompresses to more is refused before it fills the disk).

The password never reaches argv or a child's environment: PostgresSource writes the 0600 passfile.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

from easybackup.catalogue.verify import (
    ProgressCallback,
    open_object,
    stream_object,
    stream_through,
    verification_error,
    write_all,
)
from easybackup.config.model import DatabaseTarget, PgDumpSettings
from easybackup.engines.postgres import DEFAULT_CONNECT_TIMEOUT_S, PostgresSource, parse_postgres_url
from easybackup.errors import EasybackupError, UsageError
from easybackup.humanize import format_bytes
from easybackup.pipeline.codecs import decompress_stage
from easybackup.pipeline.stages import LineCallback, Pipeline, StageFailed, StageSpec
from easybackup.private_dirs import make_private_dir
from easybackup.storage.layout import parse_archive_key
from easybackup.storage.manifest import Manifest

MAINTENANCE_DB = "postgres"
QUERY_TIMEOUT_S = 60
STOP_CHECK_S = 0.2
USER_TABLES_SQL = ("SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                   "WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
                   "AND n.nspname NOT LIKE 'pg\\_toast%'")


@dataclass(frozen=True)
class RestoreResult:
    key: str
    size: int
    sha256: str


class Connection:
    """A database to talk to with psql/pg_restore: conninfo without the password, env with a 0600 passfile."""

    def __init__(self, url: str, private_dir: Path, connect_timeout: float = DEFAULT_CONNECT_TIMEOUT_S):
        parsed = parse_postgres_url(url)  # ValueError (masked) for anything that is not a postgres URL
        self.dbname = parsed.dbname or parsed.user or MAINTENANCE_DB
        self._dir = Path(tempfile.mkdtemp(prefix="conn-", dir=private_dir))  # passfile names are fixed per dir
        self._source = PostgresSource(DatabaseTarget(self.dbname, url), PgDumpSettings(), self._dir,
                                      compress_externally=False, connect_timeout=connect_timeout)

    def conninfo(self) -> str:
        return self._source.url.conninfo()

    def env(self) -> dict[str, str]:
        return self._source.child_env()

    def psql(self, sql: str, variables: dict[str, str] | None = None, *, timeout: float = QUERY_TIMEOUT_S,
             stop: threading.Event | None = None) -> str:
        """Given SQL (read from stdin, so :'var' interpolation works), run it; return the unaligned output.
        Raise EasybackupError (kind connection/authentication/not_found) with psql's last line if it fails, kind
        timeout after `timeout` s, kind cancelled once `stop` is set (psql is killed either way)."""
        argv = ["psql", "-X", "-At", "--no-password", "-v", "ON_ERROR_STOP=1"]
        for name, value in (variables or {}).items():
            argv += ["-v", f"{name}={value}"]
        argv += ["--dbname", self.conninfo()]
        with subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=self.env()) as proc:
            stdout, stderr = _communicate(proc, sql, self.dbname, timeout, stop)
        if proc.returncode != 0:
            raise _connection_error(self.dbname, stderr)
        return stdout.strip()

    def cleanup(self) -> None:
        self._source.cleanup()
        shutil.rmtree(self._dir, ignore_errors=True)


def _communicate(proc: subprocess.Popen, sql: str, dbname: str, timeout: float,
                 stop: threading.Event | None) -> tuple[str, str]:
    """Given a started psql, feed it `sql` and return (stdout, stderr); kill it and raise on timeout or stop."""
    deadline, given = time.monotonic() + timeout, sql
    while True:
        try:
            return proc.communicate(given, timeout=min(STOP_CHECK_S, max(0.0, deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            given = None  # the input is taken once; a retry goes on with it
            stopped = stop is not None and stop.is_set()
            if not stopped and time.monotonic() < deadline:
                continue
            proc.kill()
            proc.communicate()
            if stopped:
                raise EasybackupError("cancelled", f"stopped while database {dbname} ran a query",
                                      kind="cancelled") from None
            raise EasybackupError(f"database {dbname} did not answer in {timeout:g}s", kind="connection") from None


def _connection_error(dbname: str, stderr: str) -> EasybackupError:
    last = next((line for line in reversed(stderr.splitlines()) if line.strip()), "psql failed")
    if "no password supplied" in last:
        return EasybackupError(f"cannot use database {dbname}: {last.removeprefix('psql: error: ')}",
                               kind="authentication", hint="give the target's password in $EASYBACKUP_TARGET_PASSWORD "
                               "or --target-password-file, or run restore on a terminal to be asked for it")
    kind = "not_found" if "does not exist" in last else "authentication" if "authentication" in last else "connection"
    return EasybackupError(f"cannot use database {dbname}: {last.removeprefix('psql: error: ')}", kind=kind,
                           hint="check --target-url; add --create to create the database" if kind == "not_found"
                           else "check --target-url (host, port, user) and the password")


def with_dbname(url: str, dbname: str) -> str:
    """Given a postgres URL, return it pointing at `dbname` (same user, password, host and options)."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + dbname))


def with_password(url: str, password: str) -> str:
    """Given a postgres URL without a password, return it with `password` in its user-info (percent-encoded); it
    reaches only the passfile (Connection's conninfo leaves it out)."""
    parts = urlsplit(url)
    userinfo, _at, hostport = parts.netloc.rpartition("@")
    user = userinfo.partition(":")[0]
    return urlunsplit(parts._replace(netloc=f"{user}:{quote(password, safe='')}@{hostport}"))


@contextmanager
def private_directory(temp_dir: str):
    """Yield a new 0700 directory inside `temp_dir` for passfiles and downloads; remove it afterwards."""
    path = make_private_dir(temp_dir, "restore-")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# -- the target ----------------------------------------------------------------------------------------------------


def database_exists(maintenance: Connection, dbname: str) -> bool:
    """Given a connection to the maintenance database, return whether `dbname` exists."""
    return maintenance.psql("SELECT count(*) FROM pg_database WHERE datname = :'name'", {"name": dbname}) == "1"


def create_database(maintenance: Connection, dbname: str) -> None:
    """Given a connection to the maintenance database, create `dbname`."""
    maintenance.psql('CREATE DATABASE :"name"', {"name": dbname})


def user_table_count(target: Connection) -> int:
    """Given the target, return how many user tables it has (0: safe to restore into)."""
    return int(target.psql(USER_TABLES_SQL) or 0)


# -- the restore ---------------------------------------------------------------------------------------------------


def restore_stage(manifest: Manifest, target: Connection, *, clean: bool, jobs: int | None = None,
                  path: Path | None = None, extra_args: tuple[str, ...] = ()) -> StageSpec:
    """Given a backup and the target, return the stage that applies it: pg_restore (custom) or psql (plain).

    Raise UsageError for options the format cannot do (--clean or --jobs with a plain dump).
    """
    if is_globals(manifest):
        # Roles that already exist fail their CREATE ROLE; the ALTER ROLE after it still applies. Keep going.
        argv = ["psql", "-X", "-q", "--no-password", "--dbname", target.conninfo()]
        return StageSpec("psql", argv, env=target.env(), failure_kind="dump_failed")
    if manifest.format == "plain":
        if clean or jobs:
            raise UsageError("--clean and --jobs need a custom-format archive; this backup is plain SQL",
                             hint="restore a plain dump into an empty database (--create with a new name)")
        argv = ["psql", "-X", "-q", "--no-password", "-v", "ON_ERROR_STOP=1", "--single-transaction",
                "--dbname", target.conninfo()]
        return StageSpec("psql", argv, env=target.env(), failure_kind="dump_failed")
    argv = ["pg_restore", "--no-password", "--exit-on-error", *extra_args, "--dbname", target.conninfo()]
    if (jobs or 1) == 1:
        # One transaction: a restore that fails (with --clean: after dropping the target's objects) leaves the
        # database as it was. pg_restore refuses it with parallel jobs; the command line refuses --clean there.
        argv.append("--single-transaction")
    if clean:
        argv += ["--clean", "--if-exists"]
    if jobs:
        argv += [f"--jobs={jobs}"]
    if path is not None:
        argv.append(str(path))
    return StageSpec("pg_restore", argv, env=target.env(), failure_kind="dump_failed")


def is_globals(manifest: Manifest) -> bool:
    """Given a manifest, return whether it is a globals dump (roles and tablespaces, `_globals/`)."""
    parsed = parse_archive_key(manifest.key)
    return parsed is not None and parsed.is_globals


def restore_streaming(client, bucket: str, manifest: Manifest, target: Connection, *, clean: bool,
                      on_line: LineCallback | None = None, on_progress: ProgressCallback | None = None,
                      extra_args: tuple[str, ...] = (), stop_event: threading.Event | None = None) -> RestoreResult:
    """Given a backup and the target, stream it in; return what was read. Raise a verification error on a size or
    sha256 mismatch (saying data may already be applied), an error naming the restore stage that failed, or a
    `cancelled` error once `stop_event` is set. `extra_args` go to pg_restore (a drill's --no-owner).

    A globals dump goes through psql without ON_ERROR_STOP; its errors other than "already exists" fail it."""
    errors = _GlobalsErrors(on_line) if is_globals(manifest) else None
    on_line = errors or on_line
    stages = [s for s in [decompress_stage(manifest.compression)] if s is not None]
    stages.append(restore_stage(manifest, target, clean=clean, extra_args=extra_args))
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
                              "read the psql lines above", kind="dump_failed", last_lines=errors.lines[-25:])
    return RestoreResult(key=manifest.key, size=streamed.size, sha256=streamed.sha256)


class _GlobalsErrors:
    """Passes psql's lines on and keeps its ERROR lines, except for objects that already exist (the usual case
    when restoring roles into a cluster that has some of them)."""

    def __init__(self, on_line: LineCallback | None):
        self._on_line = on_line
        self.lines: list[str] = []

    def __call__(self, stage: str, line: str) -> None:
        if "ERROR:" in line and "already exists" not in line:
            self.lines.append(line)
        if self._on_line is not None:
            self._on_line(stage, line)


def _discard(fd: int) -> None:
    # psql prints a command tag per statement on stdout; an undrained pipe would stall it.
    while os.read(fd, 1 << 16):
        pass


def _restore_failed(failure: StageFailed, target: Connection,
                    unchecked: tuple[int, int, str] | None = None) -> EasybackupError:
    """Given the failed stage and the target, return the restore's error; `unchecked` (bytes read, bytes stored,
    key) says the download stopped with the failure, so the archive's checksum was not checked."""
    hint = ("read the lines above; the database may hold a partial restore — fix the cause and restore again "
            "with --clean")
    if unchecked is not None:
        read, stored, key = unchecked
        hint += (f"; the download stopped with it after {read} of {stored} bytes, so the archive's sha256 was not "
                 f"checked: `easybackup verify --backup {key}` checks it")
    return EasybackupError(f"restore into database {target.dbname} failed: {failure.message}", failure.detail,
                           hint, kind="dump_failed", exit_codes=failure.exit_codes, last_lines=failure.last_lines)


def check_free_space(directory: Path, needed: int) -> None:
    """Given a directory and the bytes a download needs, raise EasybackupError (kind storage) if they do not fit."""
    free = shutil.disk_usage(directory).free
    if free < needed:
        raise EasybackupError(f"not enough free space in {directory} for --jobs",
                              f"needs at least {format_bytes(needed)}, {format_bytes(free)} free",
                              "free space there, point temp_dir at a larger disk, or restore without --jobs "
                              "(streamed, no temp file)", kind="storage")


def restore_parallel(client, bucket: str, manifest: Manifest, target: Connection, private_dir: Path, *, jobs: int,
                     clean: bool, on_line: LineCallback | None = None,
                     on_progress: ProgressCallback | None = None) -> RestoreResult:
    """Given a custom-format backup, download, check and decompress it into a 0600 file in `private_dir`, then
    `pg_restore --jobs`; remove the file afterwards. Raise a verification error before anything is applied if
    the archive does not match its manifest."""
    stage = restore_stage(manifest, target, clean=clean, jobs=jobs)  # refuses plain before any download
    # The stored size is what we know for sure; a compressed dump grows when decompressed.
    check_free_space(private_dir, manifest.dump_bytes or manifest.stored_bytes)
    path = private_dir / "archive.dump"
    try:
        streamed, overflowed = _download_decompressed(client, bucket, manifest, path, on_line, on_progress)
        if (streamed.size, streamed.sha256) != (manifest.stored_bytes, manifest.sha256):
            raise verification_error(f"checksum mismatch: {manifest.key} is not what was backed up",
                                     f"manifest: sha256 {manifest.sha256}; read: sha256 {streamed.sha256}",
                                     f"nothing was restored into {target.dbname}; restore an older backup")
        if overflowed:
            raise verification_error(
                f"{manifest.key} decompresses to more than the {manifest.dump_bytes} bytes its manifest says "
                "pg_dump wrote", f"the download file in {private_dir} was not written past that size",
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


def _download_decompressed(client, bucket, manifest: Manifest, path: Path, on_line, on_progress):
    """Stream the archive through sha256 and the decompressor into `path` (created 0600), writing no more than
    the manifest's dump bytes; return Streamed and whether the dump was longer than that."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    stage = decompress_stage(manifest.compression)
    sink = _BoundedFile(fd, manifest.stored_bytes if stage is None else manifest.dump_bytes)
    try:
        body = open_object(client, bucket, manifest.key)["Body"]
        if stage is None:
            streamed = stream_object(body, sink, bucket=bucket, on_progress=on_progress)
        else:
            streamed = _through_decompressor(body, stage, sink, bucket, on_line, on_progress)
        return streamed, sink.overflowed
    except OSError as exc:
        raise EasybackupError(f"cannot write the download to {path}", str(exc),
                              "free space in temp_dir or restore without --jobs", kind="storage") from exc
    finally:
        os.close(fd)


def _through_decompressor(body, stage: StageSpec, sink: _BoundedFile, bucket: str, on_line, on_progress):
    streamed, failed = stream_through(body, [stage], consume_output=lambda source: _copy(source, sink), bucket=bucket,
                                      on_line=on_line, on_progress=on_progress, name="restore-download")
    if failed is not None:
        raise verification_error(f"cannot decompress {stage.name} archive: {failed.message}",
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
