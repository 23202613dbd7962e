"""Background connectivity checks for health: S3 (HeadBucket per distinct bucket) and Slack, cached.

DESIGN.md, "Monitoring": the health endpoint never makes a live call; this thread checks every `interval`
seconds and writes ok/error/disabled into the state, which starts as unknown. A change is logged once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from easybackup.config.model import S3Settings, Strategy
from easybackup.logs import log
from easybackup.monitoring.state import MonitorState
from easybackup.storage.s3 import CHECK_TIMEOUT_S, check_bucket, classify_s3_error, make_client

DEFAULT_INTERVAL_S = 60.0


def _store_key(s3: S3Settings) -> tuple:
    """Two strategies writing to the same bucket through the same endpoint and keys need one check."""
    return (s3.bucket, s3.endpoint_url, s3.region, s3.access_key, s3.secret_key, s3.session_token)


class ConnectivityChecker:
    """Given the strategies, the state, an interval and a Slack check (callable -> ok/error/disabled, or None
    when Slack is off), check connectivity on a daemon thread; see `start()`, `check_now()`."""

    def __init__(self, strategies: tuple[Strategy, ...], state: MonitorState, interval: float = DEFAULT_INTERVAL_S,
                 slack_check: Callable[[], str] | None = None):
        self.state = state
        self.interval = interval
        self.slack_check = slack_check
        self._stores: dict[tuple, S3Settings] = {}
        self._clients: dict[tuple, object] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()  # a reload: check again now, not at the end of the interval
        self._thread: threading.Thread | None = None
        self._last: dict[str, str] = {}  # what was logged last, per store and for slack
        self.replace_strategies(strategies)

    def replace_strategies(self, strategies: tuple[Strategy, ...]) -> None:
        """Given the strategies of a reloaded config, check their stores (and Slack) again at once."""
        with self._lock:
            self._stores = {_store_key(s.s3): s.s3 for s in strategies}
            self._clients = {key: client for key, client in self._clients.items() if key in self._stores}
        self._wake.set()

    def start(self) -> ConnectivityChecker:
        """Start the checks on a daemon thread: one at once, then one every `interval` seconds."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="connectivity", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Ask the thread to stop and wait up to `timeout` seconds (a check in flight finishes first)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            self.check_now()
            self._wake.wait(self.interval)

    def check_now(self) -> tuple[str, str]:
        """Check S3 and Slack now; record and return (s3, slack) connectivity."""
        s3, slack = self._check_s3(), self._check_slack()
        self.state.set_connectivity(s3=s3, slack=slack)
        return s3, slack

    def _check_s3(self) -> str:
        with self._lock:
            stores = list(self._stores.items())
        if not stores:
            return "unknown"
        results = [self._check_store(key, s3) for key, s3 in stores]
        return "ok" if all(results) else "error"

    def _check_store(self, key: tuple, s3: S3Settings) -> bool:
        where = f"s3://{s3.bucket}" + (f" at {s3.endpoint_url}" if s3.endpoint_url else "")
        try:
            with self._lock:
                client = self._clients.get(key)
            if client is None:
                client = make_client(s3, read_timeout=CHECK_TIMEOUT_S, connect_timeout=CHECK_TIMEOUT_S)
                with self._lock:
                    self._clients[key] = client
            check_bucket(s3, client)
        except Exception as exc:  # noqa: BLE001 — a bad endpoint or a botocore surprise must not end the thread
            error = classify_s3_error(exc, s3.bucket)
            self._changed(f"s3:{where}", "error", f"S3 connectivity check of {where} failed: {error}")
            return False
        self._changed(f"s3:{where}", "ok", f"S3 connectivity of {where} is ok")
        return True

    def _check_slack(self) -> str:
        if self.slack_check is None:
            return "disabled"
        try:
            status = self.slack_check()
        except Exception as exc:  # noqa: BLE001 — any failure of the check means Slack is not reachable
            self._changed("slack", "error", f"Slack connectivity check failed: {type(exc).__name__}: {exc}")
            return "error"
        if status not in ("ok", "error", "disabled"):
            log.warning(f"Slack connectivity check returned {status!r}; counted as error")
            status = "error"
        self._changed("slack", status, f"Slack connectivity is {status}")
        return status

    def _changed(self, what: str, status: str, message: str) -> None:
        """Log `message` only when `what` changes status: an outage is one warning, not one per minute."""
        previous = self._last.get(what)
        self._last[what] = status
        if previous == status:
            return
        if status == "error":
            log.warning(message)
        elif previous is not None:  # a recovery is news; the first ok is not
            log.info(message)
