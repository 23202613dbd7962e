"""Which failures are retried, how long between attempts, and what the events and messages say."""

from __future__ import annotations

import threading

import pytest

from easybackup.config.model import RetrySettings
from easybackup.errors import EasybackupError
from easybackup.worker.attempts import decide, retry_delays, status_of, with_retries

QUICK = RetrySettings(max_attempts=3, initial_delay=0.01, max_delay=0.02)


def error(kind: str, transient: bool) -> EasybackupError:
    return EasybackupError(f"{kind} went wrong", "evidence", "do this", kind=kind, transient=transient)


@pytest.mark.parametrize("kind", ["connection", "storage", "timeout"])
def test_transient_failures_are_retried_while_attempts_remain(kind):
    assert decide(error(kind, True), attempt=1, max_attempts=3, cancelled=False).retry
    assert decide(error(kind, True), attempt=2, max_attempts=3, cancelled=False).retry
    last = decide(error(kind, True), attempt=3, max_attempts=3, cancelled=False)
    assert not last.retry and last.final_because is None


@pytest.mark.parametrize("kind,because", [
    ("authentication", "authentication failures are permanent"),
    ("not_found", "a missing database or object stays missing"),
    ("permission", "permission errors are permanent"),
    ("storage", "this S3 error is permanent"),
    ("dump_failed", "the dump program failed for a reason a retry does not change"),
])
def test_permanent_failures_are_never_retried_and_say_why(kind, because):
    decision = decide(error(kind, False), attempt=1, max_attempts=5, cancelled=False)
    assert not decision.retry and decision.final_because == because


def test_nothing_is_retried_once_the_run_is_cancelled():
    assert not decide(error("connection", True), attempt=1, max_attempts=3, cancelled=True).retry
    assert not decide(error("cancelled", False), attempt=1, max_attempts=3, cancelled=False).retry


def test_delays_grow_exponentially_with_jitter_up_to_the_maximum():
    delay = retry_delays(initial=1.0, maximum=10.0)
    for _ in range(50):
        assert 1.0 <= delay(1) <= 2.0
        assert 2.0 <= delay(2) <= 3.0
        assert 4.0 <= delay(3) <= 5.0
        assert delay(8) == 10.0


def test_a_transient_failure_then_success_takes_two_attempts_and_emits_one_retry():
    events = []
    outcomes = iter([error("connection", True), "stored"])

    def attempt():
        outcome = next(outcomes)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    done = with_retries(attempt, retry=QUICK, emit=lambda type, **f: events.append((type, f)),
                        cancel=threading.Event(), database="app")
    assert (done.attempts, done.value, done.error) == (2, "stored", None)
    [(kind, fields)] = events
    assert kind == "retry"
    assert fields["database"] == "app" and fields["attempt"] == 1 and fields["max_attempts"] == 3
    assert fields["reason"] == "connection went wrong: evidence" and fields["kind"] == "connection"
    assert 0.01 <= fields["delay_s"] <= 0.02


def test_a_permanent_failure_ends_after_one_attempt_saying_it_was_not_retried():
    events, calls = [], []

    def attempt():
        calls.append(1)
        raise error("authentication", False)

    done = with_retries(attempt, retry=QUICK, emit=lambda type, **f: events.append(type),
                        cancel=threading.Event(), database="app")
    assert done.attempts == 1 and calls == [1] and events == []
    assert done.error.message == "authentication went wrong (not retried: authentication failures are permanent)"


def test_without_retries_configured_the_message_stays_as_it_was():
    def attempt():
        raise error("authentication", False)

    done = with_retries(attempt, retry=RetrySettings(max_attempts=1, initial_delay=0.01, max_delay=0.01),
                        emit=lambda type, **f: None, cancel=threading.Event(), database="app")
    assert done.error.message == "authentication went wrong"


def test_transient_failures_stop_after_max_attempts_with_the_last_error():
    events = []
    failures = iter([error("storage", True) for _ in range(3)])

    def attempt():
        raise next(failures)

    done = with_retries(attempt, retry=QUICK, emit=lambda type, **f: events.append(f["attempt"]),
                        cancel=threading.Event(), database="app")
    assert done.attempts == 3 and events == [1, 2]
    assert done.error.message == "storage went wrong" and status_of(done.error) == "failed"


def test_a_cancel_during_the_wait_ends_the_retries():
    cancel = threading.Event()

    def attempt():
        cancel.set()  # as if SIGTERM arrived while this attempt failed
        raise error("connection", True)

    done = with_retries(attempt, retry=RetrySettings(max_attempts=5, initial_delay=30, max_delay=60),
                        emit=lambda type, **f: None, cancel=cancel, database="app")
    assert done.attempts == 1 and done.error.kind == "connection"


def test_timeouts_and_cancellations_have_their_own_status():
    assert status_of(error("timeout", True)) == "timed_out"
    assert status_of(error("cancelled", False)) == "cancelled"
    assert status_of(error("permission", False)) == "failed"

