"""The watchdog of one backup attempt: cancellation, `timeout.backup`, `timeout.upload`, and a vanished parent.

It runs beside the attempt on its own thread and, when a limit fires, records why and calls `stop()` — which
kills the pipeline and stops the upload. The attempt then turns `tripped` into the error it reports.

The limits mean what DESIGN.md says:
- `timeout.backup`: wall clock for the whole attempt (dump and upload together);
- `timeout.upload`: the longest time parts may sit at S3 with none of them answered (a stall), and the time the
  upload may take to finish once the dump has ended. A dump that is merely slow (its current part still filling,
  nothing waiting on S3) is never an upload stall: only parts in flight count.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Protocol

from easybackup.errors import EasybackupError
from easybackup.logs import log
from easybackup.scheduling.durations import format_duration

CHECK_INTERVAL_S = 0.2

# Why an attempt was stopped.
CANCELLED = "cancelled"
BACKUP_TIMEOUT = "backup"
UPLOAD_TIMEOUT = "upload"
ORPHANED = "orphaned"


class WatchedUpload(Protocol):
    """What the watchdog reads from an upload (storage.multipart.StreamingUpload has both)."""

    @property
    def parts_in_flight(self) -> int: ...

    @property
    def bytes_uploaded(self) -> int: ...


class Watchdog:
    """Given the limits of one attempt and a `stop` callback, watch the attempt until `close()`.

    Tell it about the upload with `watch(upload)` (it then reads the parts in flight itself on every check),
    or push progress with `uploaded(bytes, parts_in_flight)`; report the end of the dump with `dump_ended()`.
    `clock` is injectable so the limits can be tested without waiting.
    """

    def __init__(self, *, cancel: threading.Event, backup_timeout: float, upload_timeout: float,
                 stop: Callable[[], None], parent_pid: int | None = None, clock: Callable[[], float] = time.monotonic,
                 check_interval: float = CHECK_INTERVAL_S):
        self._cancel = cancel
        self._backup_timeout = backup_timeout
        self._upload_timeout = upload_timeout
        self._stop = stop
        self._parent_pid = parent_pid
        self._clock = clock
        self._check_interval = check_interval
        self._started = clock()
        self._upload: WatchedUpload | None = None
        self._uploaded = 0
        self._in_flight = 0
        self._progress_at = self._started  # the last moment S3 answered a part, or had nothing to answer
        self._dump_ended_at: float | None = None
        self._why_upload: str | None = None
        self._lock = threading.Lock()
        self.tripped: str | None = None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="watchdog", daemon=True)

    def __enter__(self) -> Watchdog:
        self._thread.start()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close()

    def close(self) -> None:
        """Stop watching (idempotent); wait for the watchdog thread unless called from it."""
        self._done.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join()

    # -- what the attempt tells us -----------------------------------------------------------------------------

    def watch(self, upload: WatchedUpload) -> None:
        """Given the attempt's upload, read its parts in flight and acknowledged bytes on every check from now on."""
        self._upload = upload
        self._observe(upload.bytes_uploaded, upload.parts_in_flight)

    def uploaded(self, bytes_uploaded: int, parts_in_flight: int | bool) -> None:
        """Given the bytes S3 acknowledged so far and the parts waiting on it, note upload progress (ignored once
        an upload is watched: its own counts are exact)."""
        if self._upload is None:
            self._observe(bytes_uploaded, int(parts_in_flight))

    def dump_ended(self) -> None:
        """Note that every stage of the dump exited: the upload now has `timeout.upload` to finish."""
        with self._lock:
            if self._dump_ended_at is None:
                self._dump_ended_at = self._clock()

    def _observe(self, bytes_uploaded: int, in_flight: int) -> None:
        with self._lock:
            if in_flight == 0 or bytes_uploaded > self._uploaded:
                self._progress_at = self._clock()
            self._uploaded = max(self._uploaded, bytes_uploaded)
            self._in_flight = in_flight

    # -- deciding ----------------------------------------------------------------------------------------------

    def reason(self) -> str | None:
        """Return why the attempt must stop now (CANCELLED, ORPHANED, BACKUP_TIMEOUT, UPLOAD_TIMEOUT), or None."""
        if self._upload is not None:
            self._observe(self._upload.bytes_uploaded, self._upload.parts_in_flight)
        now = self._clock()
        if self._cancel.is_set():
            return CANCELLED
        if self._parent_pid is not None and os.getppid() != self._parent_pid:
            return ORPHANED
        if now - self._started > self._backup_timeout:
            return BACKUP_TIMEOUT
        with self._lock:
            if self._in_flight and now - self._progress_at > self._upload_timeout:
                self._why_upload = f"{self._in_flight} part(s) waited on S3 with no answer for longer than"
                return UPLOAD_TIMEOUT
            if self._dump_ended_at is not None and now - self._dump_ended_at > self._upload_timeout:
                self._why_upload = "the upload did not finish after the dump ended within"
                return UPLOAD_TIMEOUT
        return None

    def check(self) -> str | None:
        """Check the limits once; when one fired, record it, call `stop()` (once) and return why."""
        if self.tripped is not None:
            return self.tripped
        reason = self.reason()
        if reason is not None:
            self.tripped = reason
            if reason in (BACKUP_TIMEOUT, UPLOAD_TIMEOUT):
                log.warning("timeout.{} fired: stopping the dump and aborting the upload", reason)
            self._stop()
        return reason

    def _watch(self) -> None:
        while not self._done.wait(self._check_interval):
            if self.check() is not None:
                return

    def error(self) -> EasybackupError:
        """Return the error that says why the watchdog stopped the attempt."""
        if self.tripped == BACKUP_TIMEOUT:
            return EasybackupError(
                "timed out (backup)", f"the attempt ran longer than timeout.backup "
                f"({format_duration(self._backup_timeout)}); dump and upload were stopped, the upload aborted",
                "raise timeout.backup, or check why the dump is slow (locks, network, a throttled link)",
                kind="timeout", transient=True)
        if self.tripped == UPLOAD_TIMEOUT:
            why = self._why_upload or "the upload made no progress for longer than"
            return EasybackupError(
                "timed out (upload)", f"{why} timeout.upload ({format_duration(self._upload_timeout)}); "
                "dump stopped, upload aborted",
                "check that S3 is reachable and not throttling; raise timeout.upload for slow links",
                kind="timeout", transient=True)
        if self.tripped == ORPHANED:
            return EasybackupError("the supervisor went away", "the worker's parent process changed",
                                   kind="cancelled")
        return EasybackupError("cancelled", "the backup was stopped by a signal before it finished",
                               kind="cancelled")
