"""The state of one run, reduced from its events: what health, metrics and Slack progress show while it runs.

Pure: `apply(state, event)` returns a new RunState and never touches the one it was given.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

LAST_LINES = 25


@dataclass(frozen=True)
class DatabaseState:
    name: str
    status: str = "pending"  # pending, running, success, failed
    key: str | None = None
    size: int | None = None
    sha256: str | None = None
    duration_s: float | None = None
    verified: bool | None = None
    verify_level: str | None = None  # full, or ciphertext: an encrypted archive checked without its key
    error: dict | None = None


@dataclass(frozen=True)
class RunState:
    run_id: str
    strategy: str
    status: str = "running"  # running until the result: then success or failed
    pid: int | None = None
    databases: tuple[DatabaseState, ...] = ()
    bytes_in: int = 0
    bytes_out: int = 0
    parts: int = 0
    retries: int = 0
    last_retry: dict | None = None
    retention_deleted: int = 0
    retention_kept: int = 0
    last_lines: tuple[str, ...] = ()
    error: dict | None = None
    duration_s: float | None = None
    last_seq: int = 0
    last_ts: str | None = None

    def database(self, name: str) -> DatabaseState | None:
        """Given a database name, return its state, or None if no event named it yet."""
        return next((db for db in self.databases if db.name == name), None)


def new_run(run_id: str, strategy: str, databases=()) -> RunState:
    """Given a run id, its strategy and the database names it will back up, return its initial state."""
    return RunState(run_id=run_id, strategy=strategy, databases=tuple(DatabaseState(name) for name in databases))


def apply(state: RunState, event: dict) -> RunState:
    """Given a run's state and its next event (as `wire.decode` returns it), return the updated state."""
    handler = _HANDLERS.get(event["type"])
    state = replace(state, last_seq=event.get("seq", state.last_seq), last_ts=event.get("ts", state.last_ts))
    return handler(state, event) if handler else state


def reduce_events(run_id: str, strategy: str, events) -> RunState:
    """Given a run's events in order, return the state they add up to."""
    state = new_run(run_id, strategy)
    for event in events:
        state = apply(state, event)
    return state


def _with_database(state: RunState, name: str, **changes) -> RunState:
    found = False
    databases = []
    for db in state.databases:
        if db.name == name:
            db, found = replace(db, **changes), True
        databases.append(db)
    if not found:
        databases.append(replace(DatabaseState(name), **changes))
    return replace(state, databases=tuple(databases))


def _finished_fields(event: dict) -> dict:
    return {"status": "success" if event.get("status") == "success" else "failed", "key": event.get("key"),
            "size": event.get("size"), "sha256": event.get("sha256"), "duration_s": event.get("duration_s"),
            "verified": event.get("verified"), "verify_level": event.get("verify_level"), "error": event.get("error")}


def _started(state, event):
    state = replace(state, pid=event.get("pid"))
    for name in event.get("databases") or ():
        if state.database(name) is None:
            state = _with_database(state, name)
    return state


def _db_started(state, event):
    return _with_database(state, event["database"], status="running")


def _db_finished(state, event):
    return _with_database(state, event["database"], **_finished_fields(event))


def _upload_started(state, event):
    return _with_database(state, event["database"], key=event.get("key")) if event.get("database") else state


def _progress(state, event):
    # A counter the worker cannot know yet (bytes_in behind an external compressor) comes as null: keep ours.
    counters = {key: event[key] for key in ("bytes_in", "bytes_out", "parts") if event.get(key) is not None}
    return replace(state, **counters)


def _retry(state, event):
    return replace(state, retries=state.retries + 1, last_retry={k: event.get(k) for k in
                                                                 ("attempt", "max_attempts", "reason", "delay_s")})


def _log(state, event):
    return replace(state, last_lines=(state.last_lines + (str(event.get("line", "")),))[-LAST_LINES:])


def _retention(state, event):
    return replace(state, retention_deleted=state.retention_deleted + int(event.get("deleted") or 0),
                   retention_kept=int(event.get("kept") or 0))


def _result(state, event):
    for db in event.get("databases") or ():
        name = db.get("database") or db.get("name")  # entries are shaped like db_finished events
        if name:  # a summary may leave out what db_finished already said: keep what is known
            known = {key: value for key, value in _finished_fields(db).items() if value is not None}
            state = _with_database(state, name, **known)
    status = "success" if event.get("status") == "success" else "failed"
    return replace(state, status=status, error=event.get("error"), duration_s=event.get("duration_s"))


_HANDLERS = {
    "started": _started, "db_started": _db_started, "db_finished": _db_finished,
    "upload_started": _upload_started, "progress": _progress, "retry": _retry, "log": _log,
    "retention": _retention, "result": _result,
}
