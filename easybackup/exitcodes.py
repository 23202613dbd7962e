"""Named exit codes shared by the CLI, the supervisor and the workers."""

from __future__ import annotations

import signal

# Commands (easybackup once / validate / list / restore / verify / prune).
OK = 0
FAILED = 1  # a backup, restore or verification failed
CONFIG_ERROR = 2  # bad config, bad usage or unknown strategy
INTERRUPTED = 130  # stopped by SIGINT (Ctrl-C) after aborting cleanly (128 + 2), as shells report it
TERMINATED = 143  # stopped by SIGTERM after aborting cleanly (128 + 15)
OUTPUT_CLOSED = 141  # stdout's reader went away (`| head -1`): 128 + SIGPIPE, what `ls | head` reports


def stopped_by(signum: int | None) -> int:
    """Given the signal that stopped a command (`once`), return its exit code: 130 for SIGINT, else 143."""
    return INTERRUPTED if signum == signal.SIGINT else TERMINATED


# Worker processes (`python -m easybackup.worker`). A worker always tries to send its `result` first.
WORKER_OK = 0  # result sent, every database succeeded
WORKER_FAILED = 1  # result sent, at least one database failed
WORKER_BAD_SPEC = 3  # the job spec on stdin could not be read
WORKER_ORPHANED = 4  # the supervisor went away (broken pipe / parent changed); upload aborted
WORKER_CANCELLED = 5  # stopped by SIGTERM; children stopped, upload aborted, result sent
WORKER_INTERNAL = 70  # unexpected exception (EX_SOFTWARE); result sent when possible

WORKER_EXIT_NAMES = {
    WORKER_OK: "ok",
    WORKER_FAILED: "failed",
    WORKER_BAD_SPEC: "bad job spec",
    WORKER_ORPHANED: "orphaned",
    WORKER_CANCELLED: "cancelled",
    WORKER_INTERNAL: "internal error",
}
