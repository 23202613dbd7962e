"""Starting worker processes: when the pool needs one, or — for `easybackup once` — a spare, before it is needed.

A worker reads its whole job from stdin before doing anything else, so a worker started early spends its imports
(Python and the worker's modules; boto3 comes after the job, on the S3 client's thread) while the supervisor is
still importing, reading and validating the config, instead of after: pg_dump starts that much sooner. The pool
takes the spare for its first job; a spare never taken is killed — it has started nothing and holds nothing.
"""

from __future__ import annotations

import subprocess
import sys


def default_worker_argv() -> list[str]:
    """Return the argv of a worker: this Python, `-m easybackup.worker` (no command-line code to import)."""
    return [sys.executable, "-m", "easybackup.worker"]


def spawn_worker(argv: list[str]) -> subprocess.Popen:
    """Given a worker's argv, start it with pipes on stdin, stdout and stderr; raise OSError if it cannot start.

    fork+exec in a new session: the supervisor has threads, and the worker's group must be killable as one.
    """
    return subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True, close_fds=True)


class SpareWorker:
    """One worker started now and handed to the pool later (`take`), or killed (`dismiss`)."""

    def __init__(self, argv: list[str] | None = None):
        self.argv = list(argv) if argv else default_worker_argv()
        try:
            self._process: subprocess.Popen | None = spawn_worker(self.argv)
        except OSError:
            self._process = None  # the pool starts its own worker, and reports why that cannot start

    @property
    def pid(self) -> int | None:
        """Return the spare's PID while it waits to be taken, else None."""
        return None if self._process is None else self._process.pid

    def take(self, argv: list[str]) -> subprocess.Popen | None:
        """Given the argv the pool would start, return the spare if it runs that argv and is still alive (the
        caller owns it from now on); else None, and a spare that died is reaped."""
        process = self._process
        if process is None or list(argv) != self.argv:
            return None
        self._process = None
        if process.poll() is not None:
            _close_pipes(process)
            return None
        return process

    def dismiss(self) -> None:
        """Kill and reap the spare if nobody took it (idempotent)."""
        process, self._process = self._process, None
        if process is None:
            return
        process.kill()
        process.wait()
        _close_pipes(process)


def _close_pipes(process: subprocess.Popen) -> None:
    for pipe in (process.stdin, process.stdout, process.stderr):
        if pipe is not None:
            pipe.close()
