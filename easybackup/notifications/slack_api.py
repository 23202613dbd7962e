"""A Slack Web API client over raw HTTP (requests, no SDK): Bearer token, JSON bodies, a timeout on every call.

`call()` is one attempt (for `validate --check-connectivity` and health checks). `call_with_retry()` is what the
notifier uses: HTTP 429 waits `Retry-After`; 5xx answers and network errors are retried with backoff until a
deadline; an `ok: false` answer is final (`SlackError` with Slack's code) except for Slack's own transient codes.
The token is only ever put in the Authorization header, never in a message, an error or a log line.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import requests

from easybackup.errors import EasybackupError
from easybackup.logs import log
from easybackup.secrets import mask

DEFAULT_TIMEOUT_S = 10.0
DEFAULT_DEADLINE_S = 600.0  # DESIGN.md, "Slack": 5xx and network errors are retried for 10 minutes
BACKOFF_FIRST_S = 1.0
BACKOFF_MAX_S = 30.0
DEFAULT_RETRY_AFTER_S = 1.0

# Slack error codes that mean the token is wrong, not the request.
AUTH_ERRORS = frozenset({"not_authed", "invalid_auth", "account_inactive", "token_revoked", "token_expired",
                         "no_permission", "missing_scope", "not_allowed_token_type"})
# ok:false codes that Slack documents as "try again later".
TRANSIENT_ERRORS = frozenset({"ratelimited", "internal_error", "fatal_error", "service_unavailable",
                              "request_timeout"})
HINTS = {
    "channel_not_found": "check slack.channel_id / slack.channels: use the channel ID (C0…), not its name",
    "not_in_channel": "invite the bot to the channel (/invite @your-bot)",
    "is_archived": "the channel is archived: unarchive it or choose another",
    "missing_scope": "give the bot the chat:write and channels:read scopes, then reinstall the app",
}


class SlackError(EasybackupError):
    """Slack answered `ok: false`; `code` is Slack's error code (channel_not_found, invalid_auth, …)."""

    def __init__(self, method: str, code: str):
        auth = code in AUTH_ERRORS
        super().__init__(f"Slack {method} failed: {code}", detail=code,
                         hint="check the bot token and its scopes" if auth else HINTS.get(code),
                         kind="authentication" if auth else "connection", transient=code in TRANSIENT_ERRORS)
        self.code = code


class SlackUnavailable(EasybackupError):
    """Slack could not be reached or answered 429/5xx; `retry_after` is Slack's Retry-After in seconds, if any."""

    kind = "connection"
    transient = True

    def __init__(self, message: str, detail: str, code: str, retry_after: float | None = None):
        super().__init__(message, detail=detail, hint="Slack or the network is down; messages are retried")
        self.code = code
        self.retry_after = retry_after


class FailureLog:
    """Logs each distinct Slack failure as a warning once; the same failure again (every message of a run fails
    alike when the channel is wrong) goes to debug, until `reset()` — a message got through, Slack is back."""

    def __init__(self):
        self._logged: set[str] = set()
        self._lock = threading.Lock()

    def warning(self, key: str, text: str, kind: str | None = None) -> None:
        """Given what identifies a failure (without counts that vary), its full line and its error kind, log the
        line once."""
        with self._lock:
            first = key not in self._logged
            self._logged.add(key)
        bound = log.bind(event="slack", error_kind=kind)
        if first:
            bound.warning(text)
        else:
            bound.debug(f"{text} (again; logged once until a message gets through)")

    def reset(self) -> None:
        with self._lock:
            self._logged.clear()


class SlackApi:
    """Given a bot token, the API base URL, a per-call timeout, a retry deadline and an `on_error(kind)` callback
    (called once per call that finally failed, with `error_kind()`), call Slack Web API methods. `clock` and
    `wait(seconds) -> bool` (True: stop waiting, give up) are injectable for tests; `failures` (a FailureLog,
    shared by a notifier's clients) logs a repeated failure once."""

    def __init__(self, token: str, base_url: str = "https://slack.com/api", timeout: float = DEFAULT_TIMEOUT_S,
                 deadline: float = DEFAULT_DEADLINE_S, on_error: Callable[[str], None] | None = None,
                 clock: Callable[[], float] = time.monotonic, wait: Callable[[float], bool] | None = None,
                 failures: FailureLog | None = None):
        self._token = token
        self.failures = failures or FailureLog()
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.deadline = deadline
        self.on_error = on_error
        self.clock = clock
        self.wait = wait or threading.Event().wait

    def __repr__(self) -> str:  # never show the token, even in a traceback
        return f"SlackApi({self.base_url!r})"

    def call(self, method: str, **payload) -> dict:
        """Given a method name and its arguments, make one attempt; return Slack's JSON answer; raise SlackError
        for ok:false, SlackUnavailable for a network error, 429 or 5xx."""
        url = f"{self.base_url}/{method}"
        headers = {"Authorization": f"Bearer {self._token}", "Content-Type": "application/json; charset=utf-8"}
        try:
            response = requests.post(url, json=payload, headers=headers, timeout=self.timeout)
        except requests.RequestException as exc:
            raise SlackUnavailable(f"Slack {method} failed: cannot reach {self.base_url}",
                                   detail=mask(f"{type(exc).__name__}: {exc}"), code="network") from exc
        return _answer(method, response)

    def call_with_retry(self, method: str, payload: dict, deadline: float | None = None) -> dict:
        """Given a method, its arguments and an absolute deadline on `clock` (default: now + self.deadline), call
        until Slack answers: 429 waits Retry-After, 5xx/network errors back off exponentially; return the answer;
        raise SlackError at once for ok:false, SlackUnavailable when the deadline passes or `wait` says stop.
        Either way the failure is logged with Slack's code and `on_error` is called."""
        deadline = self.clock() + self.deadline if deadline is None else deadline
        backoff = BACKOFF_FIRST_S
        attempt = 0
        while True:
            attempt += 1
            try:
                return self.call(method, **payload)
            except (SlackError, SlackUnavailable) as error:
                if not error.transient:
                    self._failed(error)
                    raise
                delay = getattr(error, "retry_after", None)
                if delay is None:  # 429 says how long to wait; anything else backs off exponentially
                    delay, backoff = backoff, min(BACKOFF_MAX_S, backoff * 2)
                if self.clock() + delay > deadline:
                    self._failed(error, f"gave up after {attempt} attempts (deadline)")
                    raise
                log.debug(f"Slack {method}: {error.detail or error.message}; retry {attempt} in {delay:g} s")
                if self.wait(delay):
                    self._failed(error, f"gave up after {attempt} attempts (stopped)")
                    raise

    def _failed(self, error: SlackError | SlackUnavailable, why: str = "") -> None:
        suffix = f" — {why}" if why else ""
        hint = f" (hint: {error.hint})" if error.hint else ""
        self.failures.warning(f"{error.message}{hint}", f"{error.message}{suffix}{hint}", error.kind)
        if self.on_error is not None:
            self.on_error(error_kind(error))


def error_kind(error: SlackError | SlackUnavailable) -> str:
    """Given a final Slack failure, return its metric label: `api` (ok:false), `rate_limited`, `http`, `network`."""
    if isinstance(error, SlackError):
        return "api"
    return {"ratelimited": "rate_limited", "network": "network"}.get(error.code, "http")


def _answer(method: str, response: requests.Response) -> dict:
    """Given Slack's HTTP response, return its JSON answer; raise SlackUnavailable (429, 5xx, no JSON) or
    SlackError (ok:false)."""
    status = response.status_code
    if status == 429:
        raise SlackUnavailable(f"Slack {method} rate limited", detail="HTTP 429", code="ratelimited",
                               retry_after=_retry_after(response.headers.get("Retry-After")))
    if status >= 500:
        raise SlackUnavailable(f"Slack {method} answered HTTP {status}", detail=f"HTTP {status}",
                               code=f"http_{status}")
    try:
        answer = response.json()
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        raise SlackError(method, "not_authed" if status == 401 else f"http_{status}_not_json")
    if not answer.get("ok"):
        raise SlackError(method, str(answer.get("error") or f"http_{status}"))
    return answer


def _retry_after(value: str | None) -> float:
    """Given a Retry-After header (seconds), return the wait in seconds; 1 s when missing or unreadable."""
    try:
        return max(0.0, float(value)) if value is not None else DEFAULT_RETRY_AFTER_S
    except ValueError:
        return DEFAULT_RETRY_AFTER_S
