"""SlackObserver: turns a worker run's events into one Slack thread (DESIGN.md, "Slack").

Parent at `started`; replies for each database started/finished and each retry (always), and for progress (at
most one per `slack.progress_interval` per run); at the end the final report reply, the parent edited to its
final state, and a summary in `slack.channels.success`/`.failure` when that is another channel — a restore drill's
too (passed or superseded: success; failed: failure). Everything goes through the Notifier's queue, so this never
waits for Slack.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone

from easybackup.config.model import Config, SlackSettings
from easybackup.jobspec import BACKUP, DRILL
from easybackup.logs import log
from easybackup.notifications import messages
from easybackup.notifications.notifier import Notifier, ThreadRef
from easybackup.notifications.slack_api import DEFAULT_DEADLINE_S
from easybackup.run_observer import RunObserver
from easybackup.scheduling.durations import parse_duration
from easybackup.storage.drillrecord import no_failure
from easybackup.storage.layout import strategy_prefix

DEADLINE_ENV = "EASYBACKUP_SLACK_DEADLINE"  # e.g. `30s`: how long one message is retried (default 10m)
OUTPUT_LINES = 25  # pg_dump/ssh/compressor lines kept per database, for a failure without last_lines


@dataclass
class _Run:
    slack: SlackSettings
    info: messages.RunInfo
    ref: ThreadRef
    last_progress: float
    db_started: dict[str, float] = field(default_factory=dict)
    output: dict[str, deque] = field(default_factory=dict)
    drill: bool = False  # a restore drill's thread (its own messages), not a backup's


class SlackObserver(RunObserver):
    """Given a Notifier (and a clock for tests), report every run of a strategy with Slack enabled in one
    thread."""

    name = "slack"

    def __init__(self, notifier: Notifier, clock: Callable[[], float] = time.monotonic):
        self.notifier = notifier
        self.clock = clock
        self._runs: dict[str, _Run] = {}

    def run_started(self, handle) -> None:
        self._run(handle)

    def event(self, handle, event: dict) -> None:
        run = self._runs.get(handle.run_id)
        if run is None:
            return
        kind, database = event.get("type"), event.get("database") or "-"
        if run.drill:
            self._drill_event(run, kind, database, event)
        elif kind == "db_started":
            run.db_started[database] = self.clock()
            self._reply(run, messages.db_started(database))
        elif kind == "progress":
            self._progress(run, database, event)
        elif kind == "retry":
            self._reply(run, messages.retry(database, event.get("attempt"), event.get("max_attempts"),
                                            event.get("reason"), event.get("delay_s")))
        elif kind == "db_finished":
            self._reply(run, messages.db_finished(event))
        elif kind == "log" and event.get("stream") not in (None, "worker"):
            run.output.setdefault(database, deque(maxlen=OUTPUT_LINES)).append(str(event.get("line", "")))

    def run_finished(self, handle) -> None:
        run = self._run(handle)  # a worker that crashed before `started` still gets its thread
        self._runs.pop(handle.run_id, None)
        if run is None:
            return
        result = handle.result or {"status": "failed", "databases": [], "error": None}
        if run.drill:
            self._reply(run, messages.drill_report(run.info, result))
            self.notifier.update(run.slack, run.ref, messages.drill_finished_parent(run.info, result))
            # a superseded drill failed nothing: its summary goes with the passed ones
            self._summary(run, no_failure(result.get("status")), result,
                          messages.drill_summary)
            return
        output = {db: list(lines) for db, lines in run.output.items()}
        self._reply(run, messages.report(run.info, result, output))
        self.notifier.update(run.slack, run.ref, messages.finished_parent(run.info, result, output))
        self._summary(run, result.get("status") == "success", result, messages.summary)

    def _summary(self, run: _Run, ok: bool, result: dict, render) -> None:
        """Post the run's (or drill's) outcome summary in slack.channels.success/.failure when that is another
        channel than the thread's, linking to the thread."""
        channel = run.slack.success_channel if ok else run.slack.failure_channel
        if channel and channel != run.slack.channel_id:
            info = run.info
            self.notifier.post_summary(run.slack, channel, run.ref, lambda ref: render(
                info, result, messages.thread_link(ref.channel, ref.ts) if ref and ref.ts else None))

    def _run(self, handle) -> _Run | None:
        """Given a run's handle, return its Slack state, posting the parent on first sight; None when the
        strategy has Slack off."""
        run = self._runs.get(handle.run_id)
        if run is not None:
            return run
        kind = getattr(handle.job, "kind", BACKUP)
        strategy = handle.job.strategy
        if not strategy.slack.enabled or kind not in (BACKUP, DRILL):
            return None
        info = run_info(handle.job)
        started = messages.drill_started(info) if kind == DRILL else messages.started(info)
        ref = self.notifier.post_parent(strategy.slack, strategy.name, started)
        run = _Run(strategy.slack, info, ref, last_progress=self.clock(), drill=kind == DRILL)
        self._runs[handle.run_id] = run
        return run

    def _drill_event(self, run: _Run, kind: str, database: str, event: dict) -> None:
        if kind == "db_started":
            self._reply(run, messages.drill_db_started(database))
        elif kind == "db_finished":
            self._reply(run, messages.drill_reply(event))

    def _progress(self, run: _Run, database: str, event: dict) -> None:
        now = self.clock()
        if now - run.last_progress < run.slack.progress_interval:
            return
        run.last_progress = now
        elapsed = now - run.db_started.get(database, now)
        self._reply(run, messages.progress(database, int(event.get("bytes_out") or 0), elapsed,
                                           event.get("parts")), progress=True)

    def _reply(self, run: _Run, body: dict, progress: bool = False) -> None:
        self.notifier.reply(run.slack, run.ref, body, progress=progress)


def run_info(job) -> messages.RunInfo:
    """Given a JobSpec, return what the messages need to know about its run."""
    strategy = job.strategy
    started = datetime.fromisoformat(job.started_at.replace("Z", "+00:00")).astimezone(timezone.utc)
    destination = f"s3://{strategy.s3.bucket}/{strategy_prefix(strategy.s3.base_path, strategy.name)}"
    return messages.RunInfo(strategy=strategy.name, run_id=job.run_id,
                            databases=tuple(db.name for db in strategy.databases), destination=destination,
                            timezone=strategy.timezone, started_at=started, every_database=strategy.all_databases)


def slack_deadline(environ=None) -> float:
    """Return how long one message is retried: $EASYBACKUP_SLACK_DEADLINE (a duration like `30s`) or 10 min;
    an unreadable value is a warning and the default."""
    text = (os.environ if environ is None else environ).get(DEADLINE_ENV)
    if not text:
        return DEFAULT_DEADLINE_S
    try:
        return parse_duration(text)
    except ValueError as exc:
        log.warning(f"{DEADLINE_ENV}: {exc}; using {DEFAULT_DEADLINE_S:g} s")
        return DEFAULT_DEADLINE_S


def build_slack(config: Config, on_error: Callable[[str], None] | None = None,
                environ=None, always: bool = False) -> tuple[SlackObserver | None, Notifier | None]:
    """Given a config, return (observer, notifier) for the strategies with Slack on, or (None, None) when no
    strategy has a bot token and channel — unless `always` (the daemon: a reload may turn Slack on, and the
    observer reports only the runs of strategies that have it). The notifier is not started: call
    `notifier.start()`."""
    settings = [s.slack for s in config.strategies if s.slack.enabled]
    if not settings and not always:
        return None, None
    notifier = Notifier(settings, deadline=slack_deadline(environ), on_error=on_error)
    return SlackObserver(notifier), notifier
