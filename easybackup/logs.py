"""Logging setup: loguru to stderr, text or JSON lines, secrets masked, strategy and run id on every line.

stderr is shared by the log and, on a terminal, one live status line (the progress of `once`, `restore`,
`verify`): `console()` is that stderr. A log line first clears the status line, then redraws it below itself,
so the two never run into each other.
"""

from __future__ import annotations

import json
import sys
import threading
from datetime import timezone

from loguru import logger

from easybackup.secrets import mask

LEVELS = ("trace", "debug", "info", "warning", "error", "critical")

_TEXT_FORMAT = (
    "{time:YYYY-MM-DDTHH:mm:ss.SSSZ} | {level: <7} | "
    "{extra[strategy]}{extra[run_sep]}{extra[run_id]} | {message}"
)
CLEAR_LINE = "\r\033[K"  # back to the line's start, erase to its end


class Console:
    """Given a stream (stderr), write log lines and at most one status line to it; the status line is shown only
    on a terminal, cleared before each log line and drawn again after it."""

    def __init__(self, stream):
        self.stream = stream
        self.is_terminal = _isatty(stream)
        self._status = ""
        self._lock = threading.RLock()

    def write(self, text: str) -> None:
        """Write log text (whole lines) above the status line."""
        with self._lock:
            self.stream.write(f"{CLEAR_LINE}{text}{self._status}" if self._status else text)

    def flush(self) -> None:
        with self._lock:
            self.stream.flush()

    def show(self, status: str) -> None:
        """Given one line of status (no newline), show it in place of the previous one (terminal only)."""
        if not self.is_terminal:
            return
        with self._lock:
            self._status = status
            self.stream.write(f"{CLEAR_LINE}{status}")
            self.stream.flush()

    def clear(self) -> None:
        """Remove the status line, if one is shown."""
        with self._lock:
            if self._status:
                self._status = ""
                self.stream.write(CLEAR_LINE)
                self.stream.flush()


_console: Console | None = None


def console() -> Console:
    """Return the Console on the current stderr (one per stream, shared by the log and the status line)."""
    global _console
    if _console is None or _console.stream is not sys.stderr:
        _console = Console(sys.stderr)
    return _console


def setup_logging(level: str = "info", fmt: str = "text") -> None:
    """Given a level name and `text` or `json`, send every log line to stderr in that form."""
    logger.remove()
    if fmt == "json":
        logger.add(console(), level=level.upper(), format=_json_format, colorize=False)
    else:
        logger.add(console(), level=level.upper(), format=_TEXT_FORMAT, colorize=False)


def json_line(record) -> str:
    """Given a loguru record, return one flat JSON object (README, "Logging"): time (RFC 3339, UTC, ms), level,
    message, strategy, database, run_id, event, and `error: {kind}` when the line is about an error."""
    extra = record["extra"]
    moment = record["time"].astimezone(timezone.utc)
    line = {
        "time": f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond // 1000:03d}Z",
        "level": record["level"].name.lower(),
        "message": record["message"],
        "strategy": _text_or_none(extra.get("strategy")),
        "database": _text_or_none(extra.get("database")),
        "run_id": extra.get("run_id") or None,
        "event": extra.get("event"),
    }
    if extra.get("error_kind"):
        line["error"] = {"kind": extra["error_kind"]}
    if record["exception"] is not None:
        line["exception"] = mask(_traceback(record["exception"]))
    return json.dumps(line, ensure_ascii=False, default=str)


def _json_format(record) -> str:
    record["extra"]["json_line"] = json_line(record)
    return "{extra[json_line]}\n"  # loguru formats the template: the JSON itself must not be read as one


def _traceback(exception) -> str:
    import traceback

    return "".join(traceback.format_exception(exception.type, exception.value, exception.traceback)).rstrip()


def _text_or_none(value):
    return mask(str(value)) if value not in (None, "", "-") else None


def _isatty(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def _patch(record) -> None:
    record["message"] = mask(record["message"])
    extra = record["extra"]
    extra.setdefault("strategy", "-")
    extra.setdefault("run_id", "")
    extra["run_sep"] = "/" if extra["run_id"] else ""


# Every module logs through this: a patched view of loguru's one global core, so handlers set up later apply.
log = logger.patch(_patch)
