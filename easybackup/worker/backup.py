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
from easybackup.engines import DumpSource, engine_for_url
from easybackup.errors import EasybackupError
from easybackup.network.routes import open_route
from easybackup.codec_table import CodecChain
from easybackup.pipeline import age
from easybackup.pipeline.codecs import chain_of_settings, encode_stages
from easybackup.pipeline.stages import Pipeline, StageFailed
from easybackup.pipeline.watchdog import Watchdog
from easybackup.storage.layout import archive_key, manifest_key, run_name
from easybackup.storage.manifest import Manifest, write_manifest
from easybackup.storage.multipart import StreamingUpload, UploadResult
from easybackup.storage.s3 import ObjectExists, classify_s3_error, extra_put_args

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

    @property
    def run_name(self) -> str:
        """The run timestamp and run id that this run's keys carry: no other run's key can equal one of ours."""
        return run_name(self.run_timestamp, self.run_id)


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


@dataclass(frozen=True)
class DumpPlan:
    """What one attempt dumps: the name in events and the manifest, the key, the engine and its format, and how to
    build the source once the route to the server is open (a database's dump, or the server's globals)."""

    database: str
    key: str
    fmt: str  # the engine's: custom | plain for postgres
    engine: str
    make_source: Callable[[DatabaseTarget], DumpSource]


def backup_once(ctx: AttemptContext, target: DatabaseTarget) -> BackupOutcome:
    """Given the run context and a database, back it up once with its engine's dump; return what was stored.

    Raise EasybackupError (classified: kind, transient, last lines) if any stage, the upload or the manifest fails.
    """
    strategy = ctx.strategy
    engine = engine_for_url(target.url)
    fmt = engine.dump_format(strategy)
    key = archive_key(strategy.s3.base_path, strategy.name, target.name, ctx.run_name, fmt, chain_of_settings(strategy))
    return backup_source_once(ctx, target, DumpPlan(
        database=target.name, key=key, fmt=fmt, engine=engine.name,
        make_source=lambda routed: engine.dump_source(routed, strategy, ctx.private_dir)))


def backup_source_once(ctx: AttemptContext, target: DatabaseTarget, plan: DumpPlan) -> BackupOutcome:
    """Given the run context, the target server and a dump plan: open the route, stream the dump through the
    compressor into S3, verify it when asked, then write the manifest; return what was stored.

    Raise EasybackupError (classified) if the route, any stage, the upload, verification or the manifest fails.
    """
    strategy = ctx.strategy
    codecs = chain_of_settings(strategy)
    started_at, started = utc_now_text(), time.monotonic()
    with (open_route(strategy, target, ctx.private_dir, ctx.emit, cancel=ctx.cancel) as routed,
          plan.make_source(routed) as source):
        stages = [source.dump_stage(), *encode_stages(codecs)]
        result, dump_bytes, head = _stream(ctx, plan.database, plan.key, stages, source)
        versions = source.versions_after_dump(head)
    verify_level = _verify_after_backup(ctx, plan, codecs, result) if strategy.verify.after_backup else None
    duration = time.monotonic() - started
    manifest = Manifest(
        strategy=strategy.name, database=plan.database, run_id=ctx.run_id, key=plan.key, started_at=started_at,
        finished_at=utc_now_text(), stored_bytes=result.size, sha256=result.sha256, format=plan.fmt,
        **codecs.manifest_fields(), dump_bytes=dump_bytes, pg_dump_version=versions.get("dump_version"),
        server_version=versions.get("server_version"), easybackup_version=__version__,
        verified=verify_level is not None, verify_level=verify_level, duration_s=round(duration, 3),
        engine=plan.engine)
    _commit(ctx, manifest)
    return BackupOutcome(key=plan.key, size=result.size, sha256=result.sha256, dump_bytes=dump_bytes,
                         duration_s=duration, manifest=manifest, versions=versions)


def _stream(ctx: AttemptContext, database: str, key: str, stages, source) -> tuple[UploadResult, int, bytes]:
    """Run the pipeline into a multipart upload under a watchdog; return the completed upload, the number of bytes
    the dump program wrote and the first of them (a zero-copy relay behind the dump program counts and keeps them)."""
    strategy = ctx.strategy
    stop_upload = threading.Event()
    counting = source.stage_name

    def on_line(stage: str, line: str) -> None:
        ctx.emit("log", database=database, stream=stage, level="info", line=line)

    with Pipeline(stages, on_line=on_line, count_after=counting,
                  keep_tail=source.needs_tail) as pipeline:
        def stop() -> None:
            stop_upload.set()
            pipeline.kill(KILL_GRACE_S)

        watchdog = Watchdog(cancel=ctx.cancel, backup_timeout=strategy.timeout.backup,
                            upload_timeout=strategy.timeout.upload, stop=stop, parent_pid=ctx.parent_pid)
        progress = _ProgressReporter(ctx, database, watchdog, pipeline)
        with watchdog, StreamingUpload(ctx.client, strategy.s3.bucket, key, extra_args=extra_put_args(strategy.s3),
                                       on_started=lambda upload_id: ctx.emit("upload_started", database=database,
                                                                             key=key, upload_id=upload_id),
                                       on_progress=progress, progress_interval=0.2,
                                       start_in_background=True) as upload:
            watchdog.watch(upload)  # exact parts in flight: a slow dump filling its part is no upload stall
            try:
                upload.upload_fd(pipeline.output_fd, stop_event=stop_upload)
                watchdog.dump_ended()
                pipeline.wait()
                if watchdog.tripped:  # a limit fired while the stages exited: never complete a timed-out upload
                    raise watchdog.error()
                # Exit code 0 is no proof of a dump (an extra_args option sending it elsewhere, a cut stream).
                source.check_dump(pipeline.head, pipeline.tail, pipeline.bytes_counted, pipeline.last_lines(counting))
                result = upload.complete()
            except StageFailed as failure:
                raise watchdog.error() if watchdog.check() else source.classify_failure(failure) from failure
            except EasybackupError as error:
                if watchdog.tripped:
                    raise watchdog.error() from error
                raise
            if watchdog.tripped:  # fired between the last check and complete(): report it, and leave nothing
                _delete_quietly(ctx, key)
                raise watchdog.error()
        progress.final(result.size)
        return result, pipeline.bytes_counted, pipeline.head


def _verify_after_backup(ctx: AttemptContext, plan: DumpPlan, codecs: CodecChain, result: UploadResult) -> str:
    """Read the uploaded archive back and check it (catalogue.verify, as `easybackup verify` does) as far as this
    host can: an encrypted one whole only when $EASYBACKUP_AGE_IDENTITY_FILE is set; return the level checked.
    On any failure delete the archive, so no manifest and no unverified archive are left, and raise."""
    from easybackup.catalogue.verify import verify_archive  # only with verify.after_backup

    strategy = ctx.strategy

    def on_line(stage: str, line: str) -> None:
        ctx.emit("log", database=plan.database, stream=f"verify:{stage}", level="info", line=line)

    try:
        identity = age.identity_path(None) if codecs.encrypted else None
        checked = verify_archive(ctx.client, strategy.s3.bucket, plan.key, size=result.size, sha256=result.sha256,
                                 engine=plan.engine, fmt=plan.fmt, codecs=codecs, identity=identity, on_line=on_line,
                                 stop_event=ctx.cancel)
    except EasybackupError:
        _delete_quietly(ctx, plan.key)
        raise
    return checked.level


def _commit(ctx: AttemptContext, manifest: Manifest) -> None:
    """Write the manifest (the commit marker); if that fails, remove the archive so nothing half-made is left —
    and the manifest first, in case the PUT landed although its answer was lost. A manifest that is another's
    (ObjectExists) is not ours to delete, and neither is the archive it names."""
    s3 = ctx.strategy.s3
    try:
        write_manifest(ctx.client, s3.bucket, manifest, extra_args=extra_put_args(s3, storage_class=False))
    except ObjectExists:
        raise
    except EasybackupError:
        _delete_quietly(ctx, manifest_key(manifest.key))
        _delete_quietly(ctx, manifest.key)
        raise


def _delete_quietly(ctx: AttemptContext, key: str) -> None:
    try:
        ctx.client.delete_object(Bucket=ctx.strategy.s3.bucket, Key=key)
    except Exception as exc:  # noqa: BLE001 — reported, and the original error is what the operator needs
        ctx.emit("log", stream="worker", level="warning",
                 line=f"could not delete {key} after a failed backup: {classify_s3_error(exc)}")


class _ProgressReporter:
    """Turns the upload's progress callbacks into `progress` events (at most ~1/s) and watchdog ticks."""

    def __init__(self, ctx: AttemptContext, database: str, watchdog: Watchdog, pipeline: Pipeline):
        self._ctx = ctx
        self._database = database
        self._watchdog = watchdog
        self._pipeline = pipeline
        self._last_event = 0.0

    def __call__(self, bytes_read: int, bytes_uploaded: int, parts: int) -> None:
        if all(code is not None for code in self._pipeline.exit_codes().values()):
            self._watchdog.dump_ended()
        now = time.monotonic()
        if now - self._last_event >= PROGRESS_INTERVAL_S:
            self._last_event = now
            self._ctx.emit("progress", database=self._database, bytes_in=self._bytes_in(),
                           bytes_out=bytes_read, bytes_uploaded=bytes_uploaded, parts=parts)

    def _bytes_in(self) -> int:
        """Bytes out of the dump program, as the relay behind it counted them."""
        return self._pipeline.bytes_counted

    def final(self, size: int) -> None:
        self._ctx.emit("progress", database=self._database, bytes_in=self._bytes_in(), bytes_out=size,
                       bytes_uploaded=size, parts=None)
