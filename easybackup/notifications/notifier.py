"""The Slack notifier: a bounded queue and ONE thread that sends messages strictly in order.

The caller (the supervisor loop, `once`) only enqueues: O(1), never blocked by a slow or dead Slack. One thread
means a reply is never sent before its parent: when a reply or an update comes up, its parent has either been
posted (its `ts` is known) or has failed for good. Policy for a run whose parent could not be posted:
progress replies are dropped (noise without their thread), the final report is posted top-level naming the
strategy, and the parent's final state (the chat.update) is posted as a new top-level message.

When the queue is full, the oldest progress reply is dropped to make room; if there is none, the new message
is dropped. Every message is retried (429 Retry-After, 5xx/network backoff) until `deadline` seconds after it was
enqueued; `drain(timeout)` waits for the queue to empty, then gives up on the rest.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from easybackup.config.model import SlackSettings
from easybackup.logs import log
from easybackup.notifications import messages
from easybackup.notifications.slack_api import (
    DEFAULT_DEADLINE_S,
    DEFAULT_TIMEOUT_S,
    FailureLog,
    SlackApi,
    SlackError,
    SlackUnavailable,
)

DEFAULT_MAX_QUEUE = 500

PARENT, REPLY, PROGRESS, UPDATE, SUMMARY = "parent", "reply", "progress", "update", "summary"


@dataclass(eq=False)
class ThreadRef:
    """A run's parent message: its channel, and its `ts` once posted; `failed` when it never will be."""

    channel: str
    strategy: str
    ts: str | None = None
    failed: bool = False


@dataclass(eq=False)
class Outgoing:
    """One message to send. `body` is the message, or a function of the thread (for a summary that links to
    it). `thread` is the parent for replies and updates, the thread to link to for a summary."""

    api: SlackApi
    kind: str
    channel: str
    body: dict | Callable[[ThreadRef | None], dict]
    thread: ThreadRef | None = None
    enqueued_at: float = 0.0


@dataclass
class NotifierStats:
    sent: int = 0
    failed: int = 0  # Slack said no, or the deadline passed
    dropped: int = 0  # never attempted: queue full, orphaned progress, or given up at drain/stop


@dataclass
class _Queue:
    items: deque = field(default_factory=deque)
    busy: bool = False  # the thread is sending one message right now


class Notifier:
    """Given the Slack settings in use, a per-message deadline (seconds), a queue bound and an `on_error(kind)`
    callback, send Slack messages on one thread, in order. See the module docstring for the policies.
    `api_factory(settings) -> SlackApi-like` replaces the HTTP client in tests."""

    def __init__(self, settings: list[SlackSettings] | tuple[SlackSettings, ...] = (),
                 deadline: float = DEFAULT_DEADLINE_S, max_queue: int = DEFAULT_MAX_QUEUE,
                 on_error: Callable[[str], None] | None = None, timeout: float = DEFAULT_TIMEOUT_S,
                 clock: Callable[[], float] = time.monotonic,
                 api_factory: Callable[[SlackSettings], SlackApi] | None = None):
        self.settings = tuple(settings)
        self.deadline = deadline
        self.max_queue = max_queue
        self.on_error = on_error
        self.timeout = timeout
        self.clock = clock
        self.stats = NotifierStats()
        self._queue = _Queue()
        self._cond = threading.Condition()
        self._abort = threading.Event()  # set: stop retrying, stop sending
        self._apis: dict[tuple[str, str], SlackApi] = {}
        self._thread: threading.Thread | None = None
        self._check_at_start = False
        self._api_factory = api_factory or self._new_api
        self.failures = FailureLog()  # shared by every client: a failure repeated by each message is logged once

    # -- what callers use ------------------------------------------------------------------------------------

    def api_for(self, slack: SlackSettings) -> SlackApi:
        """Given a strategy's Slack settings, return the client for its token and URL (one per pair)."""
        key = (slack.bot_token or "", slack.api_url)
        with self._cond:
            if key not in self._apis:
                self._apis[key] = self._api_factory(slack)
            return self._apis[key]

    def _new_api(self, slack: SlackSettings) -> SlackApi:
        return SlackApi(slack.bot_token or "", slack.api_url, timeout=self.timeout, deadline=self.deadline,
                        on_error=self.on_error, clock=self.clock, wait=self._abort.wait, failures=self.failures)

    def post_parent(self, slack: SlackSettings, strategy: str, body: dict) -> ThreadRef:
        """Given a strategy's settings and the parent message, queue it; return the ref its replies name."""
        ref = ThreadRef(channel=slack.channel_id or "", strategy=strategy)
        self._put(Outgoing(self.api_for(slack), PARENT, ref.channel, body, thread=ref))
        return ref

    def reply(self, slack: SlackSettings, ref: ThreadRef, body: dict, progress: bool = False) -> None:
        """Queue a reply in `ref`'s thread; a `progress` one may be dropped when the queue is full."""
        self._put(Outgoing(self.api_for(slack), PROGRESS if progress else REPLY, ref.channel, body, thread=ref))

    def update(self, slack: SlackSettings, ref: ThreadRef, body: dict) -> None:
        """Queue an edit of `ref`'s parent message to `body`."""
        self._put(Outgoing(self.api_for(slack), UPDATE, ref.channel, body, thread=ref))

    def post_summary(self, slack: SlackSettings, channel: str, ref: ThreadRef | None,
                     render: Callable[[ThreadRef | None], dict]) -> None:
        """Queue a top-level message in `channel`, rendered when sent: `render(ref)` (the ref then has its ts,
        or is failed)."""
        self._put(Outgoing(self.api_for(slack), SUMMARY, channel, render, thread=ref))

    def start(self, check: bool = True) -> Notifier:
        """Start the sending thread; with `check`, it first checks the token and channels and warns clearly
        when they are wrong (a warning, never a crash)."""
        self._check_at_start = check
        self._abort.clear()
        self._thread = threading.Thread(target=self._loop, name="slack-notifier", daemon=True)
        self._thread.start()
        return self

    def drain(self, timeout: float) -> int:
        """Wait up to `timeout` seconds for every queued message to be sent (or fail), then stop the thread;
        return how many were still undelivered and given up on."""
        end = time.monotonic() + timeout
        with self._cond:
            while self._queue.items or self._queue.busy:
                left = end - time.monotonic()
                if left <= 0 or self._thread is None or not self._thread.is_alive():
                    break
                self._cond.wait(min(left, 0.2))
        return self.stop()

    def stop(self, join_timeout: float = 2.0) -> int:
        """Stop now: give up on queued messages and cut a retry short; return how many were given up on."""
        self._abort.set()
        with self._cond:
            given_up = len(self._queue.items) + (1 if self._queue.busy else 0)
            self.stats.dropped += len(self._queue.items)
            self._queue.items.clear()
            self._cond.notify_all()
        if self._thread is not None:
            # An HTTP call in flight ends within its timeout; the thread is a daemon, so it cannot keep us alive.
            self._thread.join(join_timeout)
            self._thread = None
        if given_up:
            log.warning(f"Slack: gave up on {given_up} undelivered message(s)")
        return given_up

    def replace_settings(self, settings: list[SlackSettings] | tuple[SlackSettings, ...]) -> None:
        """Given the Slack settings of a reloaded config, check those from now on (runs carry their own)."""
        self.settings = tuple(settings)

    def pending(self) -> int:
        """Return how many messages are queued or in flight."""
        with self._cond:
            return len(self._queue.items) + (1 if self._queue.busy else 0)

    def check(self) -> str:
        """Check every configured token (auth.test) and channel (conversations.info) once; return `ok`, `error`
        (one of them failed; logged) or `disabled` (no Slack configured). Makes live calls: cache the answer."""
        settings = [s for s in self.settings if s.enabled]
        if not settings:
            return "disabled"
        problems = self._problems(settings)
        for problem in problems:  # asked every connectivity interval: the same problem is one warning
            self.failures.warning(f"check: {problem}", f"Slack check: {problem}")
        return "error" if problems else "ok"

    # -- the thread ------------------------------------------------------------------------------------------

    def _put(self, item: Outgoing) -> None:
        item.enqueued_at = self.clock()
        with self._cond:
            queue = self._queue.items
            if len(queue) >= self.max_queue:
                victim = next((old for old in queue if old.kind == PROGRESS), None)
                if victim is None:
                    self._drop(item, "the queue is full")
                    return
                queue.remove(victim)
                self._drop(victim, "the queue is full")
            queue.append(item)
            self._cond.notify_all()

    def _drop(self, item: Outgoing, why: str) -> None:
        with self._cond:  # an RLock: _put already holds it
            self.stats.dropped += 1
        if item.kind == PARENT and item.thread is not None:
            item.thread.failed = True
        level = "DEBUG" if item.kind == PROGRESS else "WARNING"
        log.log(level, f"Slack: dropped a {item.kind} message for {item.thread.strategy if item.thread else '-'}: "
                       f"{why}")

    def _loop(self) -> None:
        if self._check_at_start:
            for problem in self._problems([s for s in self.settings if s.enabled]):
                log.warning(f"Slack is misconfigured or unreachable: {problem}; backups run anyway")
        while True:
            with self._cond:
                while not self._queue.items and not self._abort.is_set():
                    self._cond.wait()
                if self._abort.is_set():
                    return
                item = self._queue.items.popleft()
                self._queue.busy = True
            try:
                self._deliver(item)
            finally:
                with self._cond:
                    self._queue.busy = False
                    self._cond.notify_all()

    def _deliver(self, item: Outgoing) -> None:
        """Send one message, resolving its dependency on the parent; count what happened."""
        call = self._resolve(item)
        if call is None:
            return
        method, body = call
        try:
            answer = item.api.call_with_retry(method, body, deadline=item.enqueued_at + self.deadline)
        except (SlackError, SlackUnavailable):
            with self._cond:
                self.stats.failed += 1  # already logged with its code and counted by the api's on_error
            if item.kind == PARENT and item.thread is not None:
                item.thread.failed = True
            return
        with self._cond:
            self.stats.sent += 1
        self.failures.reset()  # Slack is back: its next failure is news again
        if item.kind == PARENT and item.thread is not None:
            item.thread.ts = str(answer.get("ts") or "") or None
            item.thread.failed = item.thread.ts is None

    def _resolve(self, item: Outgoing) -> tuple[str, dict] | None:
        """Given a message, return (method, body) to send, or None when it is dropped (an orphaned progress
        reply). Replies to a parent that failed go top-level naming the strategy; its update becomes a post."""
        ref = item.thread
        body = item.body(ref) if callable(item.body) else item.body
        if item.kind in (PARENT, SUMMARY) or ref is None:
            return "chat.postMessage", {"channel": item.channel, **body}
        if ref.ts is None:  # the parent failed (strict order: it was handled before this message)
            if item.kind == PROGRESS:
                self._drop(item, "its thread could not be posted")
                return None
            if item.kind == REPLY:
                body = messages.standalone(body, ref.strategy)
            return "chat.postMessage", {"channel": item.channel, **body}
        if item.kind == UPDATE:
            return "chat.update", {"channel": item.channel, "ts": ref.ts, **body}
        return "chat.postMessage", {"channel": item.channel, "thread_ts": ref.ts, **body}

    def _problems(self, settings: list[SlackSettings]) -> list[str]:
        """Given Slack settings, call auth.test per token and conversations.info per channel once each; return
        one line per failure."""
        problems, seen = [], set()
        for slack in settings:
            api = self.api_for(slack)
            calls = [("auth.test", {})] + [("conversations.info", {"channel": c}) for c in
                                           (slack.channel_id, slack.success_channel, slack.failure_channel) if c]
            for method, body in calls:
                key = (id(api), method, body.get("channel"))
                if key in seen:
                    continue
                seen.add(key)
                try:
                    api.call(method, **body)
                except (SlackError, SlackUnavailable) as error:
                    where = f" (channel {body['channel']})" if body else ""
                    hint = f"; hint: {error.hint}" if error.hint else ""
                    problems.append(f"{error.message}{where}{hint}")
        return problems
