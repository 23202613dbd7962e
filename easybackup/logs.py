"""Logging setup: loguru to stderr, text or JSON lines, secrets masked, strategy and run id on every line."""

from __future__ import annotations

import sys

from loguru import logger

from easybackup.secrets import mask

LEVELS = ("trace", "debug", "info", "warning", "error", "critical")

_TEXT_FORMAT = (
    "{time:YYYY-MM-DDTHH:mm:ss.SSSZ} | {level: <7} | "
    "{extra[strategy]}{extra[run_sep]}{extra[run_id]} | {message}"
)


def _patch(record) -> None:
    record["message"] = mask(record["message"])
    extra = record["extra"]
    extra.setdefault("strategy", "-")
    extra.setdefault("run_id", "")
    extra["run_sep"] = "/" if extra["run_id"] else ""


def setup_logging(level: str = "info", fmt: str = "text") -> None:
    """Given a level name and `text` or `json`, send every log line to stderr in that form."""
    logger.remove()
    if fmt == "json":
        logger.add(sys.stderr, level=level.upper(), serialize=True, format="{message}")
    else:
        logger.add(sys.stderr, level=level.upper(), format=_TEXT_FORMAT, colorize=False)


# Every module logs through this: a patched view of loguru's one global core, so handlers set up later apply.
log = logger.patch(_patch)
