"""One attempt at backing up one database: dump → compress → multipart upload → manifest.

The upload completes only after every pipeline stage exited 0; on any failure, timeout or cancellation the
children are stopped and the multipart upload is aborted, so no object appears at the final key.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from easybackup import __version__
from easybackup.config.model import DatabaseTarget, Strategy
from easybackup.errors import EasybackupError
from easybackup.storage.layout import archive_key
from easybackup.storage.manifest import Manifest, write_manifest
from easybackup.storage.multipart import StreamingUpload, UploadResult
from easybackup.storage.s3 import classify_s3_error, extra_put_args
from easybackup.worker.compressors import compressor_stage
from easybackup.worker.pipeline import Pipeline, StageFailed
from easybackup.worker.sources.postgres import PostgresSource
from easybackup.worker.watchdog import Watchdog

PROGRESS_INTERVAL_S = 1.0
KILL_GRACE_S = 2.0


@dataclass
class AttemptContext:
    """What every attempt of a run shares: the job, the S3 client, the event callback and the cancel flag."""

    strategy: Strategy
    run_id: str
    run_timestamp: str
    private_dir: Path
    client: object
    emit: Callable[..., None]
    cancel: threading.Event
    parent_pid: int | None = None


@dataclass
class BackupOutcome:
    """What one successful attempt stored."""

    key: str
    size: int
    sha256: str
    dump_bytes: int | None
    duration_s: float
    manifest: Manifest
    versions: dict = field(default_factory=dict)


def utc_now_text() -> str:
    """Return the current UTC time as ISO 8601 with Z."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def backup_once(ctx: AttemptContext, target: DatabaseTarget) -> BackupOutcome:
    """Given the run context and a database, back it up once; return what was stored.

    Raise EasybackupError (classified: kind, transient, last lines) if any stage, the upload or the manifest fails.
    """
    strategy = ctx.strategy
    codec = strategy.s3.compression
    key = archive_key(strategy.s3.base_path, strategy.name, target.name, ctx.run_timestamp,
                      strategy.pg_dump.format, codec)
    started_at, started = utc_now_text(), time.monotonic()
    with PostgresSource(target, strategy.pg_dump, ctx.private_dir, compress_externally=codec != "none") as source:
        stages = [source.dump_stage()]
        compressor = compressor_stage(codec, strategy.s3.compression_level)
        if compressor is not None:
            stages.append(compressor)
        result = _stream(ctx, target, key, stages, source)
        # Asked after the dump: the server is known to answer then, so an unreachable one fails only once.
        versions = source.versions()
    duration = time.monotonic() - started
    manifest = Manifest(
        strategy=strategy.name, database=target.name, run_id=ctx.run_id, key=key, started_at=started_at,
        finished_at=utc_now_text(), stored_bytes=result.size, sha256=result.sha256, compression=codec,
        format=strategy.pg_dump.format, dump_bytes=None, pg_dump_version=versions.get("pg_dump_version"),
        server_version=versions.get("server_version"), easybackup_version=__version__, verified=False,
        duration_s=round(duration, 3))
    _commit(ctx, manifest)
    return BackupOutcome(key=key, size=result.size, sha256=result.sha256, dump_bytes=None,
                         duration_s=duration, manifest=manifest, versions=versions)


def _stream(ctx: AttemptContext, target: DatabaseTarget, key: str, stages, source) -> UploadResult:
    """Run the pipeline into a multipart upload under a watchdog; return the completed upload."""
    strategy = ctx.strategy
    stop_upload = threading.Event()

    def on_line(stage: str, line: str) -> None:
        ctx.emit("log", database=target.name, stream=stage, level="info", line=line)

    with Pipeline(stages, on_line=on_line) as pipeline:
        def stop() -> None:
            stop_upload.set()
            pipeline.kill(KILL_GRACE_S)

        watchdog = Watchdog(cancel=ctx.cancel, backup_timeout=strategy.timeout.backup,
                            upload_timeout=strategy.timeout.upload, stop=stop, parent_pid=ctx.parent_pid)
        progress = _ProgressReporter(ctx, target.name, watchdog, pipeline)
        with watchdog, StreamingUpload(ctx.client, strategy.s3.bucket, key, extra_args=extra_put_args(strategy.s3),
                                       on_started=lambda upload_id: ctx.emit("upload_started", database=target.name,
                                                                             key=key, upload_id=upload_id),
                                       on_progress=progress, progress_interval=0.2) as upload:
            try:
                upload.upload_fd(pipeline.output_fd, stop_event=stop_upload)
                watchdog.dump_ended()
                pipeline.wait()
                result = upload.complete()
            except StageFailed as failure:
                raise watchdog.error() if watchdog.tripped else source.classify_failure(failure) from failure
            except EasybackupError as error:
                if watchdog.tripped:
                    raise watchdog.error() from error
                raise
            if watchdog.tripped:  # fired after the data was in but before we noticed: do not trust it
                raise watchdog.error()
        progress.final(result.size)
        return result


def _commit(ctx: AttemptContext, manifest: Manifest) -> None:
    """Write the manifest (the commit marker); if that fails, remove the archive so nothing half-made is left."""
    s3 = ctx.strategy.s3
    try:
        write_manifest(ctx.client, s3.bucket, manifest, extra_args=extra_put_args(s3, storage_class=False))
    except EasybackupError:
        _delete_quietly(ctx, manifest.key)
        raise


def _delete_quietly(ctx: AttemptContext, key: str) -> None:
    try:
        ctx.client.delete_object(Bucket=ctx.strategy.s3.bucket, Key=key)
    except Exception as exc:  # noqa: BLE001 — reported, and the original error is what the operator needs
        ctx.emit("log", stream="worker", level="warning",
                 line=f"could not delete {key} after a failed manifest write: {classify_s3_error(exc)}")


class _ProgressReporter:
    """Turns the upload's progress callbacks into `progress` events (at most ~1/s) and watchdog ticks."""

    def __init__(self, ctx: AttemptContext, database: str, watchdog: Watchdog, pipeline: Pipeline):
        self._ctx = ctx
        self._database = database
        self._watchdog = watchdog
        self._pipeline = pipeline
        self._last_event = 0.0

    def __call__(self, bytes_read: int, bytes_uploaded: int, parts: int) -> None:
        self._watchdog.uploaded(bytes_uploaded, parts_in_flight=bytes_read > bytes_uploaded)
        if all(code is not None for code in self._pipeline.exit_codes().values()):
            self._watchdog.dump_ended()
        now = time.monotonic()
        if now - self._last_event >= PROGRESS_INTERVAL_S:
            self._last_event = now
            self._ctx.emit("progress", database=self._database, bytes_in=None, bytes_out=bytes_read,
                           bytes_uploaded=bytes_uploaded, parts=parts)

    def final(self, size: int) -> None:
        self._ctx.emit("progress", database=self._database, bytes_in=None, bytes_out=size,
                       bytes_uploaded=size, parts=None)
