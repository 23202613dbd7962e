"""A run's state is the reduction of its events."""

from __future__ import annotations

import io

from easybackup.supervision.runstate import RunState, apply, new_run, reduce_events
from easybackup.wire import EventWriter, LineReader, decode


def _events() -> list[dict]:
    """A realistic run, written and read back through the real wire format."""
    stream = io.BytesIO()
    w = EventWriter(stream, "r1", "nightly")
    w.emit("started", pid=4242, databases=["app", "crm"])
    w.emit("db_started", "app")
    w.emit("upload_started", "app", key="p/nightly/app/t.dump.gz", upload_id="U1")
    w.emit("progress", "app", bytes_in=1000, bytes_out=400, parts=1)
    w.emit("retry", "app", attempt=1, max_attempts=3, reason="connection reset", delay_s=10)
    w.emit("progress", "app", bytes_in=5000, bytes_out=2000, parts=2)
    w.emit("db_finished", "app", status="success", key="p/nightly/app/t.dump.gz", size=2000, sha256="ab" * 32,
           duration_s=3.5, verified=True, error=None)
    w.emit("db_started", "crm")
    w.emit("log", "crm", stream="pg_dump", level="error", line='pg_dump: error: database "crm" does not exist')
    crm_error = {"kind": "not_found", "message": "database crm does not exist"}
    w.emit("db_finished", "crm", status="failed", error=crm_error)
    w.emit("retention", deleted=2, kept=5)
    w.emit("result", status="failed", duration_s=9.0, error=crm_error,
           databases=[{"database": "app", "status": "success", "key": "p/nightly/app/t.dump.gz", "size": 2000},
                      {"database": "crm", "status": "failed", "error": crm_error}])
    return [decode(line) for line in LineReader().feed(stream.getvalue())]


def test_a_run_reduces_to_per_database_outcomes_and_totals():
    state = reduce_events("r1", "nightly", _events())
    assert state.status == "failed" and state.pid == 4242 and state.duration_s == 9.0
    app, crm = state.databases
    assert (app.name, app.status, app.size, app.sha256, app.duration_s, app.verified) == \
        ("app", "success", 2000, "ab" * 32, 3.5, True)
    assert (crm.name, crm.status, crm.error["kind"]) == ("crm", "failed", "not_found")
    assert (state.bytes_in, state.bytes_out, state.parts, state.retries) == (5000, 2000, 2, 1)
    assert state.last_retry["reason"] == "connection reset"
    assert (state.retention_deleted, state.retention_kept) == (2, 5)
    assert state.last_lines == ('pg_dump: error: database "crm" does not exist',)
    assert state.last_seq == 12


def test_databases_are_pending_until_started_and_running_until_finished():
    events = _events()
    state = reduce_events("r1", "nightly", events[:1])
    assert [(db.name, db.status) for db in state.databases] == [("app", "pending"), ("crm", "pending")]
    state = reduce_events("r1", "nightly", events[:3])
    assert state.database("app").status == "running" and state.database("app").key == "p/nightly/app/t.dump.gz"
    assert state.status == "running"


def test_apply_leaves_the_given_state_untouched():
    before = new_run("r1", "nightly", ["app"])
    after = apply(before, _events()[1])
    assert before == RunState("r1", "nightly", databases=before.databases) and before.databases[0].status == "pending"
    assert after.database("app").status == "running"


def test_a_progress_counter_sent_as_null_keeps_its_last_value():
    progress = {"v": 1, "type": "progress", "run_id": "r", "strategy": "s", "database": "app", "seq": 1, "ts": "t"}
    state = reduce_events("r", "s", [{**progress, "bytes_in": 10, "bytes_out": 5, "parts": 1},
                                     {**progress, "bytes_in": None, "bytes_out": 9, "parts": 2}])
    assert (state.bytes_in, state.bytes_out, state.parts) == (10, 9, 2)


def test_only_the_last_25_log_lines_are_kept():
    log = {"v": 1, "type": "log", "run_id": "r", "strategy": "s", "database": None, "seq": 1, "ts": "t"}
    state = reduce_events("r", "s", [{**log, "line": f"line {n}", "seq": n} for n in range(40)])
    assert len(state.last_lines) == 25 and state.last_lines[-1] == "line 39" and state.last_lines[0] == "line 15"


def test_a_result_from_a_crashed_worker_fails_the_run_and_keeps_good_databases():
    events = _events()[:7]
    synthetic = {"v": 1, "type": "result", "run_id": "r1", "strategy": "nightly", "database": None, "seq": 8,
                 "ts": "t", "status": "failed", "databases": [events[-1]],
                 "error": {"kind": "crashed", "message": "worker killed by signal 9"}, "synthetic": True}
    state = reduce_events("r1", "nightly", [*events, synthetic])
    assert state.status == "failed" and state.error["kind"] == "crashed"
    assert state.database("app").status == "success" and state.database("crm").status == "pending"
