"""The watchdog of one backup attempt: cancellation, `timeout.backup`, `timeout.upload`, and a vanished parent.

It runs beside the attempt on its own thread and, when a limit fires, records why and calls `stop()` — which
kills the pipeline and stops the upload. The attempt then turns `tripped` into the error it reports.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

from easybackup.errors import EasybackupError
from easybackup.scheduling.durations import format_duration

CHECK_INTERVAL_S = 0.2

# Why an attempt was stopped.
CANCELLED = "cancelled"
BACKUP_TIMEOUT = "backup"
UPLOAD_TIMEOUT = "upload"
ORPHANED = "orphaned"


class Watchdog:
    """Given the limits of one attempt and a `stop` callback, watch the attempt until `close()`.

    The attempt reports progress with `uploaded(bytes)` and the end of the dump with `dump_ended()`.
    """

    def __init__(self, *, cancel: threading.Event, backup_timeout: float, upload_timeout: float,
                 stop: Callable[[], None], parent_pid: int | None = None, clock=time.monotonic):
        self._cancel = cancel
        self._backup_timeout = backup_timeout
        self._upload_timeout = upload_timeout
        self._stop = stop
        self._parent_pid = parent_pid
        self._clock = clock
        self._started = clock()
        self._last_upload_progress = self._started
        self._uploaded = 0
        self._in_flight = False
        self._dump_ended_at: float | None = None
        self.tripped: str | None = None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="watchdog", daemon=True)

    def __enter__(self) -> Watchdog:
        self._thread.start()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close()

    def close(self) -> None:
        self._done.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join()

    def uploaded(self, bytes_uploaded: int, parts_in_flight: bool) -> None:
        """Given the bytes uploaded so far and whether parts are waiting on S3, note upload progress."""
        if bytes_uploaded > self._uploaded or not self._in_flight:
            self._last_upload_progress = self._clock()
        self._uploaded = bytes_uploaded
        self._in_flight = parts_in_flight

    def dump_ended(self) -> None:
        """Note that every stage of the dump exited: the upload now has `timeout.upload` to finish."""
        if self._dump_ended_at is None:
            self._dump_ended_at = self._clock()

    def reason(self) -> str | None:
        """Return why the attempt must stop now, or None."""
        now = self._clock()
        if self._cancel.is_set():
            return CANCELLED
        if self._parent_pid is not None and os.getppid() != self._parent_pid:
            return ORPHANED
        if now - self._started > self._backup_timeout:
            return BACKUP_TIMEOUT
        if self._in_flight and now - self._last_upload_progress > self._upload_timeout:
            return UPLOAD_TIMEOUT
        if self._dump_ended_at is not None and now - self._dump_ended_at > self._upload_timeout:
            return UPLOAD_TIMEOUT
        return None

    def _watch(self) -> None:
        while not self._done.wait(CHECK_INTERVAL_S):
            reason = self.reason()
            if reason is not None:
                self.tripped = reason
                self._stop()
                return

    def error(self) -> EasybackupError:
        """Return the error that says why the watchdog stopped the attempt."""
        if self.tripped == BACKUP_TIMEOUT:
            return EasybackupError(
                "timed out (backup)", f"the attempt ran longer than timeout.backup "
                f"({format_duration(self._backup_timeout)}); dump and upload were stopped",
                "raise timeout.backup, or check why the dump is slow (locks, network, a throttled link)",
                kind="timeout", transient=True)
        if self.tripped == UPLOAD_TIMEOUT:
            return EasybackupError(
                "timed out (upload)", f"the upload made no progress for timeout.upload "
                f"({format_duration(self._upload_timeout)}); the upload was aborted",
                "check that S3 is reachable and not throttling; raise timeout.upload for slow links",
                kind="timeout", transient=True)
        if self.tripped == ORPHANED:
            return EasybackupError("the supervisor went away", "the worker's parent process changed",
                                   kind="cancelled")
        return EasybackupError("cancelled", "the backup was stopped by a signal before it finished",
                               kind="cancelled")
