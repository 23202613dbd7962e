"""The supervisor's log says what went wrong without the health endpoint: a failed run's line carries the error's
detail and hint, and a worker's internal error reaches the log with its traceback."""

from __future__ import annotations

from types import SimpleNamespace

from loguru import logger

from easybackup.logs import log
from easybackup.supervision.observers import LogObserver
from easybackup.worker.main import _route_logs_to_events


def captured_lines(action) -> list[str]:
    lines: list[str] = []
    sink = log.add(lambda message: lines.append(message.record["message"]), level="DEBUG", format="{message}")
    try:
        action()
    finally:
        log.remove(sink)
    return lines


def test_a_failed_runs_log_line_names_the_kind_message_detail_and_hint():
    error = {"kind": "internal", "message": "internal error in the worker", "detail": "KeyError: 'size'",
             "hint": "this is a bug in easybackup; please report it with the log"}
    handle = SimpleNamespace(strategy="ledger", run_id="81ddc9a71694", result={"status": "failed", "error": error})
    lines = captured_lines(lambda: LogObserver().run_finished(handle))
    assert lines == ["run failed: [internal] internal error in the worker: KeyError: 'size' "
                     "(hint: this is a bug in easybackup; please report it with the log)"]


def test_a_failed_run_without_detail_still_says_its_kind_and_message():
    handle = SimpleNamespace(strategy="s", run_id="r", result={"status": "failed",
                                                                "error": {"kind": "cancelled", "message": "stopped"}})
    assert captured_lines(lambda: LogObserver().run_finished(handle)) == ["run failed: [cancelled] stopped"]


def test_a_worker_log_line_with_an_exception_carries_its_traceback_to_the_supervisor():
    events: list[dict] = []
    _route_logs_to_events(lambda type, **fields: events.append({"type": type, **fields}))
    try:
        try:
            {}["size"]
        except KeyError as exc:
            logger.opt(exception=exc).debug("internal error in the worker")
        logger.info("plain line")
    finally:
        logger.remove()
    (with_traceback, plain) = events
    assert with_traceback["level"] == "debug"
    assert with_traceback["line"].startswith("internal error in the worker\nTraceback")
    assert "KeyError: 'size'" in with_traceback["line"] and "test_log_observer.py" in with_traceback["line"]
    assert plain["line"] == "plain line"
