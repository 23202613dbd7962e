"""Reading an archive back from S3 and checking it: size, sha256, and a full read of the dump.

One function, `verify_archive`, serves both `easybackup verify` and the worker's `verify.after_backup` step.
The object is streamed, never stored: S3 → sha256 → [decoders] → reader, where the decoders are the codec chain's
(pipeline/codecs.py: decompressor, and age before it for an encrypted archive) and the engine gives the reader:
stages that read the whole dump and fail on a damaged one (for PostgreSQL's custom format a restore into
/dev/null), or none, and then its check of the dump's last bytes (plain SQL's completion comment).

`stream_object` is the shared S3 → sha256 → sink loop, and `stream_through` the shared S3 → pipe → Pipeline
mechanism around it; restore uses both too.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from botocore.exceptions import BotoCoreError, ClientError, FlexibleChecksumError

from easybackup.engines import Engine, engine_named
from easybackup.engines.dump_header import TAIL_BYTES
from easybackup.errors import EasybackupError
from easybackup.codec_table import CodecChain
from easybackup.pipeline import age
from easybackup.pipeline.codecs import decode_stages
from easybackup.pipeline.stages import Pipeline, StageFailed, StageSpec
from easybackup.storage.s3 import classify_s3_error, error_code

CHUNK = 1024 * 1024

LineCallback = Callable[[str, str], None]
ProgressCallback = Callable[[int], None]


@dataclass(frozen=True)
class Streamed:
    """What was read from S3: byte count and sha256, and whether the sink stopped taking data early."""

    size: int
    sha256: str
    sink_closed_early: bool = False
    complete: bool = True  # False: reading stopped before the end (a restore that failed), sha256 of a prefix


@dataclass(frozen=True)
class VerifyResult:
    key: str
    size: int
    sha256: str
    dump_bytes: int | None  # bytes of the decompressed dump when it passed through us (plain format)
    level: str = "full"  # full: read back whole; ciphertext: encrypted and no identity, sha256 + the age header


def verification_error(message: str, detail: str | None = None, hint: str | None = None,
                       last_lines=()) -> EasybackupError:
    """Given what is wrong with an archive, return the `verification` error that says so."""
    return EasybackupError(message, detail, hint, kind="verification", transient=False, last_lines=list(last_lines))


class ArchiveMissing(EasybackupError):
    """A `verification` error: the archive a manifest names is not in S3 (deleted after its manifest was read — by
    retention, under a restore drill — or outside easybackup). A drill tells it apart from every other failure."""

    kind = "verification"


def open_object(client, bucket: str, key: str):
    """Given a key, return the GetObject response (its Body streams); raise a verification error if the object is
    missing, or the classified S3 error."""
    try:
        return client.get_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if error_code(exc) in ("NoSuchKey", "404", "NotFound"):
            raise ArchiveMissing(f"the archive {key} is missing from S3", "GetObject: NoSuchKey",
                                 "it was deleted outside easybackup; this backup cannot be restored") from exc
        raise classify_s3_error(exc, bucket) from exc
    except BotoCoreError as exc:
        raise classify_s3_error(exc, bucket) from exc


def stream_object(body, sink: Callable[[bytes], bool], *, bucket: str, on_progress: ProgressCallback | None = None,
                  stop_event: threading.Event | None = None,
                  give_up: Callable[[], bool] | None = None) -> Streamed:
    """Given a GetObject body and a sink (returns False once it takes no more data), stream every byte through
    sha256 into the sink; keep reading (and hashing) after the sink closes, so the checksum is still known —
    unless `give_up()` then says the rest is of no use (a restore whose program failed): reading stops and the
    result is marked incomplete.

    Raise the classified S3 error if the download fails, a verification error if botocore's own checksum check
    fails, or a `cancelled` error once `stop_event` is set.
    """
    digest, size, open_sink = hashlib.sha256(), 0, True
    try:
        while chunk := body.read(CHUNK):
            if stop_event is not None and stop_event.is_set():
                raise EasybackupError("cancelled", "stopped while reading the archive back", kind="cancelled")
            digest.update(chunk)
            size += len(chunk)
            if open_sink:
                open_sink = sink(chunk)
            if on_progress is not None:
                on_progress(size)
            if not open_sink and give_up is not None:
                if give_up():  # asked once, when the sink has just closed
                    return Streamed(size=size, sha256=digest.hexdigest(), sink_closed_early=True, complete=False)
                give_up = None
    except FlexibleChecksumError as exc:
        raise verification_error("S3 reported a checksum mismatch while reading the archive", str(exc)) from exc
    except (ClientError, BotoCoreError) as exc:
        raise classify_s3_error(exc, bucket) from exc
    finally:
        body.close()
    return Streamed(size=size, sha256=digest.hexdigest(), sink_closed_early=not open_sink)


def write_all(fd: int, data: bytes) -> None:
    """Given an fd and bytes, write them all (os.write may take only part); raise OSError (ENOSPC, EPIPE)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


class FdSink:
    """A sink that writes to a pipe and closes it; a reader that went away (it failed) makes it return False."""

    def __init__(self, fd: int):
        self.fd = fd

    def __call__(self, chunk: bytes) -> bool:
        try:
            write_all(self.fd, chunk)
        except BrokenPipeError:
            self.close()
            return False
        return True

    def close(self) -> None:
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            os.close(fd)


class _Consumer(threading.Thread):
    """Runs `consume(fd)` on the pipeline's output; keeps what it raised for the thread that streams."""

    def __init__(self, consume: Callable[[int], None], fd: int, name: str):
        super().__init__(name=name, daemon=True)
        self._consume, self._fd = consume, fd
        self.error: Exception | None = None

    def run(self) -> None:
        try:
            self._consume(self._fd)
        except Exception as exc:  # handed to the streaming thread, which raises it
            self.error = exc


def stream_through(body, stages: Sequence[StageSpec], *, consume_output: Callable[[int], None], bucket: str,
                   on_line: LineCallback | None = None, on_progress: ProgressCallback | None = None,
                   stop_event: threading.Event | None = None, name: str = "stream-output",
                   stop_when_a_stage_fails: bool = False) -> tuple[Streamed, StageFailed | None]:
    """Given a GetObject body and stages, stream the body (sha256, size) into the first stage through a pipe while
    a thread named `name` gives the last stage's output fd to `consume_output` (which reads it to EOF); return what
    was streamed and the StageFailed the stages ended with (None when every stage exited 0).

    With `stop_when_a_stage_fails`, reading stops once the stages stopped taking data and one of them has failed
    (the result is then incomplete); otherwise the rest is read for its checksum.

    Raise what `stream_object` raises, StageStartError if a stage cannot start, or what `consume_output` raised
    (once the streaming is over, before the stages are waited for).
    """
    read_end, write_end = os.pipe()
    sink = FdSink(write_end)
    try:
        with Pipeline(stages, on_line=on_line, stdin=read_end) as pipeline:
            # The first stage holds its own copy; ours would keep it from ever seeing EOF.
            os.close(read_end)
            read_end = -1
            consumer = _Consumer(consume_output, pipeline.output_fd, name)
            consumer.start()
            try:
                give_up = (lambda: _has_failed(pipeline)) if stop_when_a_stage_fails else None
                streamed = stream_object(body, sink, bucket=bucket, on_progress=on_progress, stop_event=stop_event,
                                         give_up=give_up)
            finally:
                # EOF for the stages, also when S3 failed: they finish, and the consumer with them.
                sink.close()
                consumer.join()
            if consumer.error is not None:
                raise consumer.error
            try:
                pipeline.wait()
            except StageFailed as failed:
                return streamed, failed
            return streamed, None
    finally:
        sink.close()
        if read_end >= 0:
            os.close(read_end)


def _has_failed(pipeline: Pipeline, wait_s: float = 2.0) -> bool:
    """Given a pipeline whose first stage stopped reading, return whether a stage failed; a stage that stopped
    reading is given `wait_s` seconds to exit first."""
    deadline = time.monotonic() + wait_s
    while True:
        codes = pipeline.exit_codes()
        if any(code not in (None, 0) for code in codes.values()):
            return True
        if time.monotonic() >= deadline or all(code is not None for code in codes.values()):
            return False
        time.sleep(0.02)


class TailKeeper:
    """Keeps the last bytes that passed through, and counts them; `callable(chunk)` is a sink that never closes."""

    def __init__(self):
        self.head = b""  # the first bytes too: an encrypted archive's age header, checked without the key
        self.tail = b""
        self.count = 0

    def __call__(self, chunk: bytes) -> bool:
        if len(self.head) < age.HEADER_LIMIT:
            self.head += chunk[:age.HEADER_LIMIT - len(self.head)]
        self.count += len(chunk)
        self.tail = (self.tail + chunk)[-TAIL_BYTES:]
        return True

    def drain(self, fd: int) -> None:
        """Given an fd, read it to EOF through this keeper (run on a thread)."""
        while chunk := os.read(fd, CHUNK):
            self(chunk)


def reader_stages(engine: Engine, fmt: str, codecs: CodecChain, identity: Path | None = None) -> list[StageSpec]:
    """Given the archive's engine, format, codec chain and identity (encrypted archives), return the stages that
    read it whole: the chain's decoders + the engine's readers; where the engine has none, the dump comes out of
    the last stage (none: no stage)."""
    return decode_stages(codecs, identity) + engine.reader_stages(fmt)


def verify_archive(client, bucket: str, key: str, *, size: int, sha256: str, engine: str, fmt: str,
                   codecs: CodecChain, identity: Path | None = None, on_line: LineCallback | None = None,
                   on_progress: ProgressCallback | None = None,
                   stop_event: threading.Event | None = None) -> VerifyResult:
    """Given an archive and what its manifest says (size, sha256, engine, format, codec chain), read it back whole
    and check it; return what was read. An encrypted archive without an identity is checked as far as that goes:
    sha256 and a whole age header naming the manifest's recipient count (level `ciphertext`). Raise a
    `verification` error naming the first reason it is not good (missing, size, sha256, header, undecryptable,
    unreadable dump, incomplete plain dump), the classified S3 error if S3 fails, or a `config` error for an engine
    this version does not know."""
    found = _engine(key, engine)
    ciphertext_only = codecs.encrypted and identity is None
    response = open_object(client, bucket, key)
    stored = response.get("ContentLength")
    if stored is not None and stored != size:
        response["Body"].close()
        raise verification_error(f"size mismatch for {key}", f"the manifest says {size} bytes, S3 has {stored}",
                                 "the object was replaced or cut after the backup; restore an older backup")
    stages = [] if ciphertext_only else reader_stages(found, fmt, codecs, identity)
    engine_reads = bool(found.reader_stages(fmt))  # else the dump itself comes out, into the tail
    tail = TailKeeper()
    if not stages:
        streamed = stream_object(response["Body"], tail, bucket=bucket, on_progress=on_progress,
                                 stop_event=stop_event)
        failure = None
    else:
        streamed, failure = stream_through(response["Body"], stages, consume_output=tail.drain, bucket=bucket,
                                           on_line=on_line, on_progress=on_progress, stop_event=stop_event,
                                           name="verify-tail")
    if ciphertext_only:
        _judge_ciphertext(key, size, sha256, streamed, tail.head, len(codecs.recipients))
        return VerifyResult(key=key, size=streamed.size, sha256=streamed.sha256, dump_bytes=None, level="ciphertext")
    if failure is not None and failure.stage == age.PROGRAM and streamed.sha256 == sha256:
        raise age.explain(failure, key, identity) from failure
    _judge(key, size, sha256, streamed, failure)
    end_problem = None if engine_reads else found.dump_end_problem(fmt, tail.tail)
    if end_problem is not None:
        raise verification_error(f"the {fmt} dump {key} is incomplete", *end_problem)
    return VerifyResult(key=key, size=streamed.size, sha256=streamed.sha256,
                        dump_bytes=None if engine_reads else tail.count)


def _engine(key: str, name: str) -> Engine:
    """Given an archive and its manifest's engine, return the engine; raise EasybackupError (config) if this
    version has none of that name (a backup written by a newer one)."""
    try:
        return engine_named(name)
    except ValueError as exc:
        raise EasybackupError(f"cannot read {key} back: {exc}", hint="use the easybackup version that wrote it",
                              kind="config") from None


def _judge_stored(key: str, size: int, sha256: str, streamed: Streamed) -> None:
    """Raise the verification error if the bytes read are not the ones stored: size, then sha256."""
    if streamed.size != size:
        raise verification_error(f"size mismatch for {key}", f"the manifest says {size} bytes, read {streamed.size}")
    if streamed.sha256 != sha256:
        raise verification_error(f"sha256 mismatch for {key}",
                                 f"the manifest says {sha256}, the stored object has {streamed.sha256}",
                                 "the archive was altered or damaged after the backup; restore an older backup")


def _judge_ciphertext(key: str, size: int, sha256: str, streamed: Streamed, head: bytes, recipients: int) -> None:
    """Raise the verification error for an encrypted archive checked without its key: size, sha256, age header."""
    _judge_stored(key, size, sha256, streamed)
    problem = age.header_problem(head, recipients)
    if problem:
        raise verification_error(f"the encrypted archive {key} is not a whole age file: {problem}",
                                 hint="restore an older backup; with --identity FILE verify decrypts it whole")


def _judge(key: str, size: int, sha256: str, streamed: Streamed, failure: StageFailed | None) -> None:
    """Raise the verification error for the most precise reason found, in order: size, sha256, the reader."""
    _judge_stored(key, size, sha256, streamed)
    if failure is not None:
        raise verification_error(f"the archive {key} does not read back whole: {failure.message}",
                                 failure.detail, "the dump itself is damaged (truncated or corrupt) although its "
                                 "checksum matches what was uploaded; restore an older backup",
                                 last_lines=failure.last_lines)
