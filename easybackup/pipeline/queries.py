"""Running one query through a database's command-line client (psql, mariadb) within a deadline, stoppable: the
drill's counts and the restore's checks can take as long as the database is large, and a SIGTERM or a drill's
timeout must end them within a fraction of a second."""

from __future__ import annotations

import subprocess
import threading
import time

from easybackup.errors import EasybackupError

STOP_CHECK_S = 0.2  # how often a running query looks at its stop flag


def communicate(proc: subprocess.Popen, given: str, timeout: float, stop: threading.Event | None,
                what: str) -> tuple[str, str]:
    """Given a started client, its input, the seconds it may take, the stop flag and what runs the query (for
    messages: `database shop`, `mariadb at db:3306`), feed it and return (stdout, stderr). Kill it and raise
    EasybackupError kind `cancelled` once `stop` is set, or kind `connection` (transient) past the timeout."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return proc.communicate(given, timeout=min(STOP_CHECK_S, max(0.0, deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            given = None  # the input is taken once; a retry goes on with it
            stopped = stop is not None and stop.is_set()
            if not stopped and time.monotonic() < deadline:
                continue
            proc.kill()
            proc.communicate()
            if stopped:
                raise EasybackupError("cancelled", f"stopped while {what} ran a query", kind="cancelled") from None
            raise EasybackupError(f"{what} did not answer within {timeout:g}s", kind="connection",
                                  hint="check that the server is up and not overloaded", transient=True) from None
