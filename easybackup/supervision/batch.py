"""Run chosen strategies once through the worker pool and wait for them (`easybackup once`).

Signals only enqueue; the loop dispatches. SIGTERM/SIGINT start nothing new and let the running backups finish
for up to their `timeout.shutdown_grace`; then they are cancelled (each worker aborts its upload) and killed after
a short wait. A second SIGTERM/SIGINT cancels at once. The run ends as terminated only if a backup was cancelled
or never started: one that finished within the grace counts as it ended.
"""

from __future__ import annotations

import signal
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

from easybackup.config.model import Config, Strategy
from easybackup.jobspec import BACKUP, new_job
from easybackup.logs import log
from easybackup.run_observer import RunObserver
from easybackup.supervision.aborts import UploadAborter
from easybackup.supervision.pool import WorkerPool, running_text, silence_limit
from easybackup.supervision.spawn import SpareWorker

POLL_S = 0.5


@dataclass
class BatchOutcome:
    results: dict[str, dict] = field(default_factory=dict)  # strategy -> result event fields
    terminated: bool = False  # a signal cancelled a backup or kept one from starting
    signal: int | None = None  # the signal that stopped the run; it chooses the exit code

    @property
    def succeeded(self) -> bool:
        return bool(self.results) and all(r.get("status") == "success" for r in self.results.values())


class Batch:
    """Given a config, the strategies to run and an observer, run them once; see `run()`."""

    def __init__(self, config: Config, strategies: tuple[Strategy, ...], observer: RunObserver,
                 worker_argv: list[str] | None = None, spare: SpareWorker | None = None, kind: str = BACKUP):
        self.config = config
        self.kind = kind  # every job of the batch: backups (`once`) or restore drills (`drill`)
        self.strategies = strategies
        self.observer = observer
        self.outcome = BatchOutcome()
        self._signals: list[int] = []
        self._aborter = UploadAborter()
        self.pool = WorkerPool(config.max_parallel_strategies, on_event=self._on_event,
                               on_stderr=observer.stderr, on_finished=self._on_finished,
                               worker_argv=worker_argv, abort_upload=self._aborter, spare=spare,
                               heartbeat_timeout=silence_limit())

    def _on_event(self, handle, event: dict) -> None:
        if event["type"] == "started":
            self.observer.run_started(handle)
        self.observer.event(handle, event)

    def _on_finished(self, handle) -> None:
        self.outcome.results[handle.strategy] = handle.result or {}
        self._aborter.record_unreported(handle)
        if handle.stop_reason == "shutdown" and (handle.result or {}).get("status") != "success":
            self.outcome.terminated = True  # cancelled by a signal, not ended by its own failure
        self.observer.run_finished(handle)

    def _enqueue_signal(self, signum, frame) -> None:
        self._signals.append(signum)

    def run(self) -> BatchOutcome:
        """Run every strategy once; return the outcome (results per strategy, terminated or not)."""
        previous = {sig: signal.signal(sig, self._enqueue_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            now = datetime.now(timezone.utc)
            for strategy in self.strategies:
                self.pool.submit(new_job(strategy, self.config.temp_dir, now, kind=self.kind))
            while not self.pool.idle:
                if self._signals:
                    self._shutdown(self._signals.pop(0))
                    break
                self.pool.poll(POLL_S)
            self._aborter.join()
        finally:
            self.pool.close()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return self.outcome

    def _shutdown(self, signum: int) -> None:
        running = self.pool.running()
        grace = max((handle.job.strategy.timeout.shutdown_grace for handle in running), default=0.0)
        log.warning(f"received {signal.Signals(signum).name}: starting nothing new; {running_text(running)} may "
                    f"finish for up to {grace:g} s (timeout.shutdown_grace), then they are cancelled; "
                    "a second SIGTERM or SIGINT cancels them now")
        self.outcome.signal = signum
        started = time.monotonic()
        dropped = self.pool.stop(on_tick=self._cancel_on_second_signal)
        if dropped:
            self.outcome.terminated = True
        for job in dropped:
            self.outcome.results[job.strategy.name] = {"status": "cancelled", "databases": [], "error": {
                "kind": "cancelled", "message": "not started: stopped by a signal"}}
        log.info(f"stopped in {time.monotonic() - started:.1f} s")

    def _cancel_on_second_signal(self) -> None:
        if self._signals:
            signum = self._signals.pop(0)
            log.warning(f"received {signal.Signals(signum).name} again: cancelling "
                        f"{running_text(self.pool.running())} now")
            self.pool.cancel_all()
