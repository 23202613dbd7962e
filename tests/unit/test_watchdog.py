"""The watchdog of one attempt, on an injected clock: which limit fires when, and what it reports."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass

from easybackup.pipeline.watchdog import BACKUP_TIMEOUT, CANCELLED, ORPHANED, UPLOAD_TIMEOUT, Watchdog


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class FakeUpload:
    parts_in_flight: int = 0
    bytes_uploaded: int = 0


def make(clock: Clock, *, backup: float = 100.0, upload: float = 10.0, parent_pid: int | None = None):
    stops: list[int] = []
    cancel = threading.Event()
    dog = Watchdog(cancel=cancel, backup_timeout=backup, upload_timeout=upload, stop=lambda: stops.append(1),
                   parent_pid=parent_pid, clock=clock)
    return dog, stops, cancel


def test_nothing_fires_within_the_limits():
    clock = Clock()
    dog, stops, _ = make(clock)
    dog.watch(FakeUpload())
    clock.advance(99)
    assert dog.check() is None and stops == [] and dog.tripped is None


def test_the_backup_limit_fires_after_timeout_backup_and_stops_once():
    clock = Clock()
    dog, stops, _ = make(clock, backup=30)
    clock.advance(30.5)
    assert dog.check() == BACKUP_TIMEOUT
    assert dog.check() == BACKUP_TIMEOUT
    assert stops == [1]
    error = dog.error()
    assert (error.message, error.kind, error.transient) == ("timed out (backup)", "timeout", True)
    assert "timeout.backup (30s)" in error.detail


def test_a_slow_dump_filling_its_part_is_never_an_upload_stall():
    clock = Clock()
    dog, stops, _ = make(clock, backup=1000, upload=10)
    dog.watch(FakeUpload(parts_in_flight=0, bytes_uploaded=0))
    for _ in range(60):
        clock.advance(5)
        assert dog.check() is None
    assert stops == []


def test_parts_in_flight_without_an_answer_for_timeout_upload_are_a_stall():
    clock = Clock()
    dog, stops, _ = make(clock, upload=10)
    upload = FakeUpload()
    dog.watch(upload)
    clock.advance(50)  # a slow dump before the first part: no stall
    assert dog.check() is None
    upload.parts_in_flight = 1
    clock.advance(5)
    assert dog.check() is None
    clock.advance(6)
    assert dog.check() == UPLOAD_TIMEOUT and stops == [1]
    error = dog.error()
    assert error.message == "timed out (upload)" and error.kind == "timeout"
    assert "1 part(s) waited on S3" in error.detail and "timeout.upload (10s)" in error.detail


def test_parts_answered_in_time_keep_the_upload_alive():
    clock = Clock()
    dog, _, _ = make(clock, backup=1000, upload=10)
    upload = FakeUpload(parts_in_flight=2)
    dog.watch(upload)
    for _ in range(20):
        clock.advance(8)
        upload.bytes_uploaded += 16 << 20
        assert dog.check() is None


def test_the_upload_must_finish_within_timeout_upload_after_the_dump_ended():
    clock = Clock()
    dog, _, _ = make(clock, upload=10)
    upload = FakeUpload(parts_in_flight=1)
    dog.watch(upload)
    dog.dump_ended()
    for _ in range(4):  # progress keeps coming, but too slowly to finish in time
        clock.advance(3)
        upload.bytes_uploaded += 1
        dog.check()
    assert dog.tripped == UPLOAD_TIMEOUT
    assert "did not finish after the dump ended" in dog.error().detail


def test_pushed_progress_works_without_a_watched_upload():
    clock = Clock()
    dog, _, _ = make(clock, upload=10)
    dog.uploaded(0, parts_in_flight=1)
    clock.advance(11)
    assert dog.check() == UPLOAD_TIMEOUT


def test_cancel_stops_the_attempt_as_cancelled():
    clock = Clock()
    dog, stops, cancel = make(clock)
    cancel.set()
    assert dog.check() == CANCELLED and stops == [1]
    assert dog.error().kind == "cancelled"


def test_a_changed_parent_stops_the_attempt_as_orphaned():
    clock = Clock()
    dog, stops, _ = make(clock, parent_pid=os.getppid() + 1)
    assert dog.check() == ORPHANED and stops == [1]
    assert dog.error().message == "the supervisor went away"


def test_the_thread_calls_stop_when_a_limit_fires():
    stopped = threading.Event()
    dog = Watchdog(cancel=threading.Event(), backup_timeout=0.1, upload_timeout=10, stop=stopped.set,
                   check_interval=0.02)
    started = time.monotonic()
    with dog:
        assert stopped.wait(5)
    assert dog.tripped == BACKUP_TIMEOUT and time.monotonic() - started < 2
