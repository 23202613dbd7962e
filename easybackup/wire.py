"""The wire format from a worker to its supervisor: one compact JSON event per line (NDJSON, UTF-8).

DESIGN.md, "Wire format". The worker writes with `EventWriter` on the stream `take_over_stdout()` returns;
the supervisor cuts the bytes into lines with `LineReader` and checks each one with `decode()`.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from datetime import datetime, timezone
from typing import BinaryIO

from easybackup.errors import EasybackupError
from easybackup.secrets import mask

VERSION = 1
MAX_LINE = 64 * 1024  # bytes of one event line, newline included
MAX_LOG_LINE = 2 * 1024  # bytes of the `line` field of a `log` event
EVENT_TYPES = frozenset({
    "started", "db_started", "db_finished", "upload_started", "progress", "retry", "log", "retention", "result",
    "heartbeat",  # no fields: the worker is alive (sent every second by a thread, whatever the run is doing)
})
ENVELOPE_KEYS = ("v", "type", "run_id", "strategy", "database", "seq", "ts")

class WireError(EasybackupError):
    """A line from a worker that is not a valid event."""

    kind = "internal"


def iso_timestamp(seconds: float) -> str:
    """Given seconds since the epoch, return ISO 8601 UTC with milliseconds and Z (`2024-05-01T02:30:00.123Z`)."""
    moment = datetime.fromtimestamp(seconds, timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def take_over_stdout() -> BinaryIO:
    """Return an unbuffered binary stream on the process's original stdout, for events only.

    fd 1 is then pointed at stderr, so a stray `print` or a child's output lands in stderr instead of
    corrupting the event stream. The new fd is not inheritable: children (pg_dump, ssh, the compressor)
    never hold the event stream, so the supervisor sees EOF exactly when this process is gone.
    """
    if sys.stdout is not None:
        sys.stdout.flush()
    event_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return os.fdopen(event_fd, "wb", buffering=0)


class EventWriter:
    """Writes events with their envelope, one line each, masked and size-capped; safe to share between threads."""

    def __init__(self, stream: BinaryIO, run_id: str, strategy: str, clock=time.time):
        self._stream = stream
        self._run_id = run_id
        self._strategy = strategy
        self._clock = clock
        self._seq = 0
        self._lock = threading.Lock()

    def emit(self, type: str, database: str | None = None, **fields) -> dict:
        """Given an event type, its database and fields, write the event and return it as sent.

        Raise ValueError for an unknown type or a field that would overwrite the envelope; let
        BrokenPipeError propagate when the supervisor has gone away.
        """
        if type not in EVENT_TYPES:
            raise ValueError(f"unknown event type {type!r}")
        clash = set(fields) & set(ENVELOPE_KEYS)
        if clash:
            raise ValueError(f"fields {sorted(clash)} are part of the envelope")
        line = fields.get("line") if type == "log" else None
        if isinstance(line, str):
            # Cut before masking (bounds its cost) but with room, so a secret across the final cut is masked whole.
            fields["line"] = _cut_utf8(line, 2 * MAX_LOG_LINE)[0]
        body = _masked(fields)
        if isinstance(line, str):
            body["line"], cut = _cut_utf8(body["line"], MAX_LOG_LINE)
            if cut:
                body["truncated"] = True
        with self._lock:
            self._seq += 1
            event = {"v": VERSION, "type": type, "run_id": self._run_id, "strategy": self._strategy,
                     "database": mask(database) if database else database, "seq": self._seq,
                     "ts": iso_timestamp(self._clock()), **body}
            event, data = _fit(event)
            _write_all(self._stream, data)
            self._stream.flush()
        return event


def _masked(value):
    """Given JSON-like data, return a copy with every string value passed through `secrets.mask`.

    A string is first cut to MAX_LINE bytes: no more of it can reach the line, and masking stays bounded.
    """
    if isinstance(value, str):
        return mask(_cut_utf8(value, MAX_LINE)[0])
    if isinstance(value, dict):
        return {str(key): _masked(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_masked(item) for item in value]
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return mask(str(value))  # Paths, datetimes, exceptions: their text, masked like any other


def _encode(event: dict) -> bytes:
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode("utf-8") + b"\n"


def _cut_utf8(text: str, limit: int) -> tuple[str, bool]:
    """Given text and a byte limit, return (text cut to at most `limit` UTF-8 bytes, whether it was cut)."""
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text, False
    return data[:limit].decode("utf-8", "ignore"), True


def _fit(event: dict) -> tuple[dict, bytes]:
    """Given an event, return it and its encoded line, no longer than MAX_LINE.

    An event too large has every string field cut to the longest common length that fits (each keeps its
    beginning, none is starved by another) and gets `truncated: true`; if even empty strings do not fit,
    only the envelope is kept, with the names of the dropped fields.
    """
    data = _encode(event)
    if len(data) <= MAX_LINE:
        return event, data
    best = None
    low, high = 0, len(data)
    while low <= high:  # binary search on the cap: the encoded size only grows with it
        cap = (low + high) // 2
        candidate = {**_capped(event, cap, skip=ENVELOPE_KEYS), "truncated": True}
        encoded = _encode(candidate)
        if len(encoded) <= MAX_LINE:
            best, low = (candidate, encoded), cap + 1
        else:
            high = cap - 1
    if best is not None:
        return best
    dropped = sorted(key for key in event if key not in ENVELOPE_KEYS)
    event = {**{key: event[key] for key in ENVELOPE_KEYS}, "truncated": True, "dropped": dropped}
    return event, _encode(event)


def _capped(value, cap: int, skip=()):
    """Given JSON-like data and a byte cap, return a copy with every string cut to at most `cap` UTF-8 bytes."""
    if isinstance(value, str):
        return _cut_utf8(value, cap)[0]
    if isinstance(value, dict):
        return {key: item if key in skip else _capped(item, cap) for key, item in value.items()}
    if isinstance(value, list):
        return [_capped(item, cap) for item in value]
    return value


def _write_all(stream: BinaryIO, data: bytes) -> None:
    """Given a binary stream and bytes, write all of them (an unbuffered pipe may take fewer per call)."""
    view = memoryview(data)
    while view:
        written = stream.write(view)
        view = view[written if written is not None else 0:]


class OversizedLine(bytes):
    """The first `max_line` bytes of a line that was longer; the rest up to its newline was discarded."""


class LineReader:
    """Cuts a byte stream into lines: keeps partial lines across reads and caps each line's length."""

    def __init__(self, max_line: int = MAX_LINE):
        self.max_line = max_line
        self.oversized = 0  # lines cut so far
        self._buffer = bytearray()
        self._discarding = False  # inside the rest of an oversized line

    def feed(self, data: bytes) -> list[bytes]:
        """Given the next bytes, return the lines they complete (without newline); an over-long line comes
        back once, cut to `max_line`, as an `OversizedLine`."""
        lines: list[bytes] = []
        start = 0
        while (newline := data.find(b"\n", start)) >= 0:
            self._take(data[start:newline], lines, complete=True)
            start = newline + 1
        self._take(data[start:], lines, complete=False)
        return lines

    def flush(self) -> bytes | None:
        """At EOF, return the last line if it had no newline (for events: a truncated one), else None."""
        leftover = bytes(self._buffer) if self._buffer else None
        self._buffer.clear()
        self._discarding = False
        return leftover

    def _take(self, piece: bytes, lines: list[bytes], complete: bool) -> None:
        if self._discarding:
            self._discarding = not complete
            return
        self._buffer += piece
        if len(self._buffer) > self.max_line:
            lines.append(OversizedLine(self._buffer[:self.max_line]))
            self.oversized += 1
            self._buffer.clear()
            self._discarding = not complete
        elif complete:
            lines.append(bytes(self._buffer))
            self._buffer.clear()


def decode(line: bytes) -> dict:
    """Given one line from a worker, return the event; raise WireError if it is not a valid version 1 event."""
    try:
        event = json.loads(line.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise _invalid("event line is not UTF-8", line) from exc
    except ValueError as exc:
        raise _invalid(f"event line is not JSON ({exc.args[0] if exc.args else exc})", line) from exc
    if not isinstance(event, dict):
        raise _invalid("event line is not a JSON object", line)
    if event.get("v") != VERSION:
        raise _invalid(f"unknown wire version {event.get('v')!r}", line)
    missing = [key for key in ENVELOPE_KEYS if key not in event]
    if missing:
        raise _invalid(f"event lacks {', '.join(missing)}", line)
    if event["type"] not in EVENT_TYPES:
        raise _invalid(f"unknown event type {event['type']!r}", line)
    if not isinstance(event["seq"], int) or isinstance(event["seq"], bool):
        raise _invalid("event seq is not an integer", line)
    for key in ("run_id", "strategy", "ts"):
        if not isinstance(event[key], str):
            raise _invalid(f"event {key} is not a string", line)
    if event["database"] is not None and not isinstance(event["database"], str):
        raise _invalid("event database is neither a string nor null", line)
    if event["type"] in ("db_finished", "result"):
        problem = _outcome_problem(event) if event["type"] == "db_finished" else _result_problem(event)
        if problem:
            raise _invalid(f"{event['type']} event {problem}", line)
    return event


_NONE = type(None)
# Fields of an outcome (db_finished, result.databases[], result) that the supervisor reads, and their JSON types;
# a field may be absent. A mistyped one would crash whoever reads it (the summary, Slack, metrics) much later.
_OUTCOME_TYPES = {"status": (str,), "key": (str, _NONE), "size": (int, _NONE), "dump_bytes": (int, _NONE),
                  "sha256": (str, _NONE), "duration_s": (int, float, _NONE), "attempts": (int, _NONE),
                  "verified": (bool, _NONE), "verify_level": (str, _NONE), "error": (dict, _NONE),
                  "database": (str, _NONE)}
_ERROR_TYPES = {"kind": (str,), "message": (str,), "transient": (bool,), "detail": (str, _NONE),
                "hint": (str, _NONE), "exit_codes": (dict,), "last_lines": (list,)}


def _mistyped(fields: dict, types: dict) -> str | None:
    return next((key for key, allowed in types.items() if key in fields and not isinstance(fields[key], allowed)),
                None)


def _outcome_problem(fields: dict) -> str | None:
    """Given an outcome's fields, return what is wrong with their types, or None."""
    key = _mistyped(fields, _OUTCOME_TYPES)
    if key:
        return f"has a {key} of the wrong type"
    error = fields.get("error")
    if error is not None and (_mistyped(error, _ERROR_TYPES) or not all(isinstance(x, str) for x in
                                                                        error.get("last_lines", []))):
        return "has an error of the wrong shape"
    return None


def _result_problem(event: dict) -> str | None:
    databases = event.get("databases", [])
    if not isinstance(databases, list) or not all(isinstance(db, dict) for db in databases):
        return "has databases that are not a list of mappings"
    return _outcome_problem(event) or next(
        (f"databases[{index}] {problem}" for index, db in enumerate(databases) if (problem := _outcome_problem(db))),
        None)


def _invalid(message: str, line: bytes) -> WireError:
    shown = mask(line[:200].decode("utf-8", "backslashreplace"))
    more = f" … ({len(line)} bytes)" if len(line) > 200 else ""
    return WireError(message, detail=f"line: {shown}{more}",
                     hint="the worker and the supervisor may be different easybackup versions")
