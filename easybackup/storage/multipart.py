"""Multipart upload of a stream of unknown length, with parts that grow as the stream does.

boto3's transfer manager never enlarges the parts of a stream of unknown length, so 8 MiB parts stop at
~78 GiB (10,000 parts). Here part n is 16 MiB x (1 + (n - 1) // 500): 16 MiB for the first 500 parts
(7.8 GiB), 32 MiB for the next 500, ... 1 TiB is passed at part ~8,000 and 10,000 parts hold 1.6 TiB;
the largest part is 320 MiB, far inside S3's 5 MiB .. 5 GiB limits.

Memory bound: at most `concurrency` parts in flight plus the one being filled, each one preallocated
bytearray of the current part size, so the upload holds at most (concurrency + 1) x part_size(n) bytes:
64 MiB with the default concurrency of 3 for streams below 7.8 GiB, ~320 MiB at 100 GiB, ~1 GiB near 1 TiB.
"""

from __future__ import annotations

import collections
import concurrent.futures
import hashlib
import os
import select
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone

from botocore.exceptions import BotoCoreError, ClientError
from tenacity import Retrying, retry_if_exception, stop_after_delay, wait_exponential

from easybackup.errors import EasybackupError
from easybackup.logs import log
from easybackup.storage.s3 import classify_s3_error, error_code

MiB = 1024 * 1024
FIRST_PART_SIZE = 16 * MiB
PARTS_PER_STEP = 500
MAX_PARTS = 10_000  # S3's limit
PIPE_SIZE = 1 * MiB  # fewer, larger reads from the pipe; the unprivileged maximum by default
POLL_INTERVAL_S = 0.25
ABORT_WAIT_S = 30.0

ProgressCallback = Callable[[int, int, int], None]


def part_size(part_number: int) -> int:
    """Given a part number (1..10,000), return the size of that part in bytes; raise ValueError outside it."""
    if not 1 <= part_number <= MAX_PARTS:
        raise ValueError(f"part number {part_number} is outside 1..{MAX_PARTS}")
    return FIRST_PART_SIZE * (1 + (part_number - 1) // PARTS_PER_STEP)


@dataclass(frozen=True)
class UploadResult:
    key: str
    size: int  # bytes stored (= bytes read from the stream)
    sha256: str  # hex digest of the stored bytes
    parts: int  # 0 for an empty stream, which is stored with one PutObject
    etag: str


@dataclass(frozen=True)
class OpenUpload:
    key: str
    upload_id: str
    initiated: datetime


# The life of an upload. `_state` changes only in `_move()`, under `_lock`; a move this table does not list raises
# (`cancelled` when an abort from another thread came first, else `internal`: a bug).
#   new      -> starting   start(): CreateMultipartUpload sent, on the caller's thread or as the part threads'
#                          first task (start_in_background)
#   new      -> aborted    abort() before any start: nothing in S3
#   starting -> open       S3 created it and on_started took its id: parts may go
#   starting -> failed     S3 did not create it: nothing in S3, the error is raised (by the reader, if on a thread)
#   starting -> aborted    abort() while S3 was creating it (the start aborts what it made), or on_started raised
#   open     -> read       upload_fd() read to EOF and S3 acknowledged every part
#   open     -> aborted    abort(): a failed part, a stopped stream, an exception, a timeout on another thread
#   read     -> completed  complete() stored the object
#   read     -> aborted    complete() failed, or the caller left without it
NEW, STARTING, OPEN, READ, COMPLETED, ABORTED, FAILED = "new", "starting", "open", "read", "completed", "aborted", \
    "failed"
TRANSITIONS = {
    NEW: {STARTING, ABORTED},
    STARTING: {OPEN, FAILED, ABORTED},
    OPEN: {READ, ABORTED},
    READ: {COMPLETED, ABORTED},
    COMPLETED: set(),
    ABORTED: set(),
    FAILED: set(),
}


class StreamingUpload:
    """One multipart upload fed from a file descriptor. Use as a context manager: leaving it with an
    exception (or without `complete()`) aborts the upload, so no half-written object is left behind.

        with StreamingUpload(client, bucket, key, on_started=announce) as upload:
            upload.upload_fd(pipeline.output)
            pipeline.wait()          # complete only when every stage exited 0
            result = upload.complete()

    Two kinds of threads: the caller's (the reader) and the part threads. With `start_in_background`, creating
    the upload is the part threads' first task: reading goes on (within the same memory bound) while S3 creates
    it, or while a client is still being built (s3.BackgroundClient); the part tasks wait for that first one.
    """

    def __init__(self, client, bucket: str, key: str, *, extra_args: dict | None = None, concurrency: int = 3,
                 on_started: Callable[[str], None] | None = None, on_progress: ProgressCallback | None = None,
                 progress_interval: float = 0.5, start_in_background: bool = False):
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.client = client
        self.bucket = bucket
        self.key = key
        self.extra_args = dict(extra_args or {})
        self.concurrency = concurrency
        self.upload_id: str | None = None
        self._on_started = on_started
        self._on_progress = on_progress
        self._progress_interval = progress_interval
        self._start_in_background = start_in_background
        self._lock = threading.RLock()  # _state, and what part threads record: _parts, counters, _error
        self._state = NEW
        self._start_task: concurrent.futures.Future | None = None  # the creation, when it runs on a part thread
        self._slots = threading.BoundedSemaphore(concurrency)
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._futures: list[concurrent.futures.Future] = []
        self._spare: collections.deque[bytearray] = collections.deque()
        self._parts: dict[int, dict] = {}  # part number -> its ETag and checksum, as CompleteMultipartUpload lists it
        self._error: EasybackupError | None = None
        self._sha256 = hashlib.sha256()
        self._bytes_read = 0
        self._bytes_uploaded = 0
        self._parts_done = 0
        self._last_report = 0.0

    @property
    def state(self) -> str:
        return self._state

    @property
    def parts_in_flight(self) -> int:
        """The number of parts handed to S3 and not answered yet (the part still filling is not one): what a
        watchdog reads to tell an upload stall from a slow dump."""
        return sum(1 for future in list(self._futures) if not future.done())

    @property
    def bytes_read(self) -> int:
        """The bytes read from the stream so far."""
        return self._bytes_read

    @property
    def bytes_uploaded(self) -> int:
        """The bytes of the parts S3 has acknowledged so far."""
        return self._bytes_uploaded

    def _move(self, to: str) -> None:
        """Given the next state, enter it; raise if TRANSITIONS has no such move from the present one."""
        with self._lock:
            if to not in TRANSITIONS[self._state]:
                if self._state == ABORTED:
                    raise self._cancelled()
                raise EasybackupError(f"upload of {self.key}: no move from {self._state} to {to}", kind="internal")
            self._state = to

    # -- lifecycle ---------------------------------------------------------------------------------------

    def __enter__(self) -> StreamingUpload:
        if self._start_in_background:
            self._move(STARTING)
            self._executor = _part_executor(self.concurrency)
            self._start_task = self._executor.submit(self._create)  # first in: part tasks never hold it up
        else:
            self.start()
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        self._wait_for_start()  # an upload being created must be aborted too; its error, if any, is not ours
        if self._state in (OPEN, READ):
            if exc is None:
                log.warning("upload of {} left without complete(); aborting it", self.key)
            self.abort()
        self._shutdown_executor(wait=False)  # a failed start leaves its part threads idle
        return False

    def start(self) -> str:
        """Create the multipart upload, announce its id through `on_started`, and return the id. Raise the
        classified S3 error if it cannot be created, and `cancelled` if abort() came first or meanwhile."""
        self._move(STARTING)
        return self._create()

    def _create(self) -> str:
        try:
            response = self.client.create_multipart_upload(Bucket=self.bucket, Key=self.key, **self.extra_args)
        except BaseException as exc:
            with self._lock:
                if self._state == STARTING:  # else aborted meanwhile: then there is nothing to do either
                    self._move(FAILED)
            if isinstance(exc, (ClientError, BotoCoreError)):
                raise classify_s3_error(exc, self.bucket) from exc
            raise
        with self._lock:
            self.upload_id = response["UploadId"]
            aborted_meanwhile = self._state == ABORTED  # by another thread, while S3 was creating it
            if not aborted_meanwhile:
                self._move(OPEN)
        if aborted_meanwhile:
            self._abort_quietly()
            raise self._cancelled()
        self._executor = self._executor or _part_executor(self.concurrency)
        log.debug("multipart upload of {} started: {}", self.key, self.upload_id)
        if self._on_started:
            try:
                self._on_started(self.upload_id)
            except BaseException:
                # No part has gone yet (part tasks wait for this one): abort without waiting for any.
                self._move(ABORTED)
                self._shutdown_executor(wait=False)
                self._abort_quietly()
                raise
        return self.upload_id

    def _wait_for_start(self, stop_event: threading.Event | None = None) -> None:
        """Wait for a start running on a part thread, if any; raise `cancelled` once `stop_event` is set."""
        if self._start_task is not None:
            _wait_done([self._start_task], stop_event=stop_event)

    def upload_fd(self, fd: int, stop_event: threading.Event | None = None) -> int:
        """Given a readable fd (a pipe), upload everything up to EOF and wait for the parts; return the byte
        count. Raise the classified S3 error if a part fails, or a `cancelled` error once `stop_event` is set."""
        if self._state != OPEN and not (self._state == STARTING and self._start_task is not None):
            self._raise_if_failed()
            raise EasybackupError(f"cannot read into an upload that is {self._state}", kind="internal")
        _widen_pipe(fd)
        poller = _poller(fd) if stop_event is not None else None
        part_number = 1
        while True:
            if part_number > MAX_PARTS:
                raise EasybackupError("the stream is larger than one S3 object can be",
                                      f"more than {MAX_PARTS} parts ({self._bytes_read} bytes)", kind="storage")
            buffer = self._take_buffer(part_size(part_number))
            filled = self._fill(fd, buffer, stop_event, poller)
            if filled == 0:
                break
            at_eof = filled < len(buffer)
            if at_eof:
                del buffer[filled:]  # shrinks in place; the last part may be short
            self._submit(part_number, buffer, stop_event)
            part_number += 1
            if at_eof:
                break
        self._wait_for_start(stop_event)
        self._drain(stop_event)
        self._report(force=True)
        self._move(READ)
        return self._bytes_read

    def complete(self) -> UploadResult:
        """Complete the upload (upload_fd() has read it all); return what was stored. Raise the classified error
        if the completion failed (the caller's context manager then aborts)."""
        if self._state != READ:
            self._raise_if_failed()
            raise EasybackupError(f"cannot complete an upload that is {self._state}", kind="internal")
        if not self._parts:
            etag = self._store_empty_object()
        else:
            etag = self._complete_multipart()
        self._move(COMPLETED)
        self._shutdown_executor()
        self._report(force=True)
        log.debug("upload of {} completed: {} bytes in {} parts", self.key, self._bytes_read, len(self._parts))
        return UploadResult(key=self.key, size=self._bytes_read, sha256=self._sha256.hexdigest(),
                            parts=len(self._parts), etag=etag)

    def abort(self) -> None:
        """Abort the upload. Idempotent; never raises — problems are logged (the supervisor cleans up later)."""
        with self._lock:
            if not TRANSITIONS[self._state]:  # completed, aborted or failed: nothing left to abort
                return
            before = self._state
            self._move(ABORTED)
        if before in (NEW, STARTING):  # nothing in S3 yet; a start under way sees ABORTED and aborts what it made
            self._shutdown_executor(wait=False)
            return
        in_flight = [f for f in self._futures if not f.done()]
        self._shutdown_executor(wait=False)
        self._abort_quietly()
        if in_flight:
            # A part that was in flight may still land after the abort; S3 then needs a second abort to free it.
            _wait_done(in_flight, timeout=ABORT_WAIT_S)
            self._abort_quietly()

    # -- reading -----------------------------------------------------------------------------------------

    def _fill(self, fd: int, buffer: bytearray, stop_event, poller) -> int:
        """Read from fd into buffer until it is full or EOF; hash and count as we go; return bytes read."""
        filled = 0
        with memoryview(buffer) as view:
            while filled < len(buffer):
                self._raise_if_failed()
                if poller is not None:
                    _wait_readable(poller, stop_event)
                count = os.readv(fd, [view[filled:]])
                if count == 0:
                    break
                self._sha256.update(view[filled:filled + count])
                filled += count
                self._bytes_read += count
                self._report()
        return filled

    def _take_buffer(self, size: int) -> bytearray:
        # Reuse a finished part's buffer of the same size: a new one costs a page fault per 4 KiB.
        while self._spare:
            buffer = self._spare.popleft()
            if len(buffer) == size:
                return buffer
        return bytearray(size)

    # -- uploading ---------------------------------------------------------------------------------------

    def _submit(self, part_number: int, buffer: bytearray, stop_event) -> None:
        # The slot bounds memory: at most `concurrency` parts in flight while the next one fills.
        while not self._slots.acquire(timeout=POLL_INTERVAL_S):
            self._raise_if_failed()
            _raise_if_stopped(stop_event)
            self._report()
        try:
            self._futures.append(self._executor.submit(self._upload_part, part_number, buffer))
        except BaseException:
            self._slots.release()
            raise

    def _upload_part(self, part_number: int, buffer: bytearray) -> None:
        try:
            if self._start_task is not None:
                _wait_done([self._start_task])  # the reader raises its error, if any
            with self._lock:
                if self._state != OPEN or self._error is not None:
                    return
            response = self.client.upload_part(Bucket=self.bucket, Key=self.key, UploadId=self.upload_id,
                                               PartNumber=part_number, Body=buffer)
            with self._lock:
                self._parts[part_number] = completed_part(response)
                self._bytes_uploaded += len(buffer)
                self._parts_done += 1
            self._spare.append(buffer)
        except Exception as exc:  # recorded here, raised by the reading thread
            self._record_error(exc, part_number)
        finally:
            self._slots.release()

    def _record_error(self, exc: Exception, part_number: int) -> None:
        error = classify_s3_error(exc, self.bucket)
        with self._lock:
            if self._error is None:
                error.detail = f"part {part_number} of {self.key}: {error.detail or ''}".rstrip(": ")
                self._error = error

    def _raise_if_failed(self) -> None:
        start = self._start_task
        if start is not None and start.done() and not start.cancelled() and start.exception() is not None:
            raise start.exception()  # a start on a part thread failed: the parts waiting for it were dropped
        if self._error is not None:
            raise self._error
        if self._state == ABORTED:  # abort() from another thread (a timeout) stops the reader too
            raise self._cancelled()

    def _cancelled(self) -> EasybackupError:
        return EasybackupError("upload aborted", f"the upload of {self.key} was aborted", kind="cancelled")

    def _drain(self, stop_event: threading.Event | None = None) -> None:
        # Watch `stop_event` while waiting: a part stuck in a stalled S3 must not hold the reader past its timeout.
        _wait_done(self._futures, stop_event=stop_event)
        self._raise_if_failed()

    def _complete_multipart(self) -> str:
        parts = [{"PartNumber": number, **fields} for number, fields in sorted(self._parts.items())]
        try:
            response = self.client.complete_multipart_upload(Bucket=self.bucket, Key=self.key,
                                                             UploadId=self.upload_id,
                                                             MultipartUpload={"Parts": parts})
        except (ClientError, BotoCoreError) as exc:
            raise classify_s3_error(exc, self.bucket) from exc
        return response.get("ETag", "")

    def _store_empty_object(self) -> str:
        # S3 needs at least one part, and not every S3-compatible store accepts a lone empty part:
        # store an empty stream with one PutObject and drop the multipart upload.
        try:
            response = self.client.put_object(Bucket=self.bucket, Key=self.key, Body=b"", **self.extra_args)
        except (ClientError, BotoCoreError) as exc:
            raise classify_s3_error(exc, self.bucket) from exc
        self._abort_quietly()
        return response.get("ETag", "")

    def _abort_quietly(self) -> None:
        try:
            abort_upload(self.client, self.bucket, self.key, self.upload_id)
        except EasybackupError as error:
            log.warning("could not abort upload {} of {}: {}", self.upload_id, self.key, error)

    def _shutdown_executor(self, wait: bool = True) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=wait, cancel_futures=True)

    def _report(self, force: bool = False) -> None:
        if self._on_progress is None:
            return
        now = time.monotonic()
        if force or now - self._last_report >= self._progress_interval:
            self._last_report = now
            self._on_progress(self._bytes_read, self._bytes_uploaded, self._parts_done)


PART_CHECKSUMS = ("ChecksumCRC32", "ChecksumCRC32C", "ChecksumCRC64NVME", "ChecksumSHA1", "ChecksumSHA256")


def completed_part(response: dict) -> dict:
    """Given an UploadPart response, return the part's entry for CompleteMultipartUpload: its ETag and the checksum
    the store computed, if any. With the checksums listed, the store checks each part against them instead of
    reading the whole object again to compute its own (as the AWS SDKs' transfer managers do)."""
    return {"ETag": response["ETag"], **{name: response[name] for name in PART_CHECKSUMS if response.get(name)}}


def _part_executor(concurrency: int) -> concurrent.futures.ThreadPoolExecutor:
    """Given the upload concurrency, return the pool of threads that upload the parts."""
    return concurrent.futures.ThreadPoolExecutor(concurrency, thread_name_prefix="upload-part")


def _wait_done(futures, timeout: float | None = None, stop_event: threading.Event | None = None) -> None:
    """Given futures, wait until each is done or `timeout` s have passed; raise `cancelled` once `stop_event` is set.

    Polls `done()` rather than waiting in concurrent.futures.wait alone: a future cancelled by the executor's
    shutdown(cancel_futures=True) stays CANCELLED, which done() counts and wait() does not — it would wait forever."""
    deadline = None if timeout is None else time.monotonic() + timeout
    pending = [future for future in futures if not future.done()]
    while pending and (deadline is None or time.monotonic() < deadline):
        concurrent.futures.wait(pending, timeout=POLL_INTERVAL_S)
        pending = [future for future in pending if not future.done()]
        _raise_if_stopped(stop_event)


def _widen_pipe(fd: int) -> None:
    """Given an fd, make its pipe buffer larger if it is a pipe; a file or a refusal is fine as it is."""
    try:
        import fcntl

        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
    except (OSError, AttributeError, ImportError) as exc:
        log.debug("pipe buffer of fd {} left as it is: {}", fd, exc)


def _poller(fd: int) -> select.poll:
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
    return poller


def _wait_readable(poller: select.poll, stop_event: threading.Event) -> None:
    """Wait until the fd has data or EOF, checking `stop_event` so a stalled stream can still be stopped."""
    while True:
        _raise_if_stopped(stop_event)
        if poller.poll(int(POLL_INTERVAL_S * 1000)):
            return


def _raise_if_stopped(stop_event: threading.Event | None) -> None:
    if stop_event is not None and stop_event.is_set():
        raise EasybackupError("upload cancelled", "the stream was stopped before it ended", kind="cancelled")


# An abort is what keeps a failed backup from leaving parts behind (and paying for them): when S3 is briefly
# unreachable — the very failure that often got us here — try again for a while before giving up.
ABORT_RETRY = Retrying(stop=stop_after_delay(20), wait=wait_exponential(multiplier=1, max=8),
                       retry=retry_if_exception(lambda exc: isinstance(exc, EasybackupError) and exc.transient),
                       reraise=True)


def abort_upload(client, bucket: str, key: str, upload_id: str) -> bool:
    """Given an upload, abort it (retrying transient failures for up to 20 s); return True if it was aborted
    now, False if it was already gone. Raise the classified error on any other failure."""
    return ABORT_RETRY(_abort_once, client, bucket, key, upload_id)


def _abort_once(client, bucket: str, key: str, upload_id: str) -> bool:
    try:
        client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
    except ClientError as exc:
        if error_code(exc) in ("NoSuchUpload", "404"):
            return False
        raise classify_s3_error(exc, bucket) from exc
    except BotoCoreError as exc:
        raise classify_s3_error(exc, bucket) from exc
    return True


def list_open_uploads(client, bucket: str, prefix: str = "") -> list[OpenUpload]:
    """Given a bucket and a key prefix, return every multipart upload still open under it (all pages)."""
    uploads = []
    try:
        for page in client.get_paginator("list_multipart_uploads").paginate(Bucket=bucket, Prefix=prefix):
            uploads.extend(OpenUpload(key=item["Key"], upload_id=item["UploadId"], initiated=item["Initiated"])
                           for item in page.get("Uploads", []))
    except (ClientError, BotoCoreError) as exc:
        raise classify_s3_error(exc, bucket) from exc
    return uploads


def stale_uploads(uploads: list[OpenUpload], started_at: datetime, max_age_s: float, now: datetime,
                  own_run_id: str | None = None) -> list[OpenUpload]:
    """Given open uploads, when the caller started (a supervisor, a run), `timeout.backup`, now and the caller's
    own run id, return those no worker can own: begun before that start and older than `max_age_s` — by the
    store's `Initiated` and, for a key of ours, by the run timestamp in the key too (a store may report a bogus
    `Initiated`: moto's is a fixed date in 2010) — and not of the caller's own run."""
    from easybackup.storage.layout import parse_archive_key

    stale = []
    for upload in uploads:
        parsed = parse_archive_key(upload.key)
        if parsed is not None and own_run_id is not None and parsed.run_id == own_run_id:
            continue
        if upload.initiated >= started_at or (now - upload.initiated).total_seconds() <= max_age_s:
            continue
        if parsed is not None:
            run_started = datetime.strptime(parsed.run_timestamp, "%Y-%m-%dT%H%M%SZ").replace(tzinfo=timezone.utc)
            if (now - run_started).total_seconds() <= max_age_s:
                continue
        stale.append(upload)
    return stale


def abort_stale_uploads(strategy, client, started_at: datetime, now: datetime, who: str = "this supervisor",
                        own_run_id: str | None = None) -> list[OpenUpload]:
    """Given a strategy (config.model.Strategy), a client, when `who` started, now and `who`'s run id (if a run),
    abort the stale uploads under the strategy's prefix (see `stale_uploads`), warning for each with its key and
    age; return them. Raise EasybackupError on S3 errors."""
    from easybackup.scheduling.durations import format_duration
    from easybackup.storage.layout import strategy_prefix

    prefix = strategy_prefix(strategy.s3.base_path, strategy.name)
    found = list_open_uploads(client, strategy.s3.bucket, prefix)
    stale = stale_uploads(found, started_at, strategy.timeout.backup, now, own_run_id)
    logger = log.bind(strategy=strategy.name)
    for upload in stale:
        age = format_duration((now - upload.initiated).total_seconds())
        logger.warning(f"aborting a stale multipart upload of {upload.key} begun {age} ago "
                       f"(older than timeout.backup, before {who} started)")
        abort_upload(client, strategy.s3.bucket, upload.key, upload.upload_id)
    return stale
