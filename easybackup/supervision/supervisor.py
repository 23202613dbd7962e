"""The supervisor of `easybackup run`: one process, one loop (DESIGN.md, "Process model").

Modelled on gunicorn's arbiter: signal handlers only append the signal to a list; the loop dispatches them by
name (`handle_term`, `handle_int`, `handle_hup`). Each tick (about a second, never blocking on anything but the
pool's bounded select) it dispatches signals, applies what the start-up S3 reader found, submits the due
strategies to the pool (the same `WorkerPool` that `once` drives), polls the pool, beats the health heartbeat and
publishes the next runs. SIGTERM/SIGINT stop scheduling; the running backups may then finish for up to their
`timeout.shutdown_grace` (the loop keeps reading their events and beating health meanwhile); only then does the
pool cancel them (the worker aborts its upload) and kill what is left after a short wait. A second SIGTERM/SIGINT
cancels at once. The uploads of killed workers are aborted.
"""

from __future__ import annotations

import dataclasses
import signal
import time
from collections.abc import Callable, Iterable
from datetime import datetime, timezone

from easybackup import exitcodes
from easybackup.config.model import Config, Strategy
from easybackup.errors import ConfigError, EasybackupError
from easybackup.jobspec import BACKUP, DRILL, new_job
from easybackup.logs import log
from easybackup.monitoring.metrics import Metrics
from easybackup.monitoring.observer import MonitoringObserver
from easybackup.monitoring.state import MonitorState
from easybackup.run_observer import Observers, RunObserver
from easybackup.supervision.aborts import UploadAborter
from easybackup.supervision.observers import LogObserver
from easybackup.supervision.pool import WorkerPool, running_text, silence_limit
from easybackup.supervision.scheduler import Due, Scheduler, drill_schedules
from easybackup.supervision.startup import Restored, StartupReader, restored_details

TICK_S = 1.0
HANDLED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


class Supervisor:
    """Given a config, the health state and the metrics, schedule and run backups until SIGTERM/SIGINT.

    `reload_config` (no arguments, returns a new Config or raises ConfigError) serves SIGHUP; `on_reload`
    callbacks get each accepted Config (logging, connectivity checks). `observers` are extra RunObservers
    (Slack). `clock` is the wall clock in epoch seconds; the pool keeps its own monotonic clock. `heartbeat` is how
    long a worker may send nothing before it is killed (workers beat every second while alive); None: the pool's
    `silence_limit()`.
    """

    def __init__(self, config: Config, state: MonitorState, metrics: Metrics, *,
                 reload_config: Callable[[], Config] | None = None,
                 on_reload: Iterable[Callable[[Config], None]] = (), observers: Iterable[RunObserver] = (),
                 worker_argv: list[str] | None = None, clock: Callable[[], float] = time.time,
                 tick: float = TICK_S, heartbeat: float | None = None, read_s3_at_start: bool = True):
        self.config = config
        self.state = state
        self.metrics = metrics
        self.reload_config = reload_config
        self.on_reload = list(on_reload)
        self.tick = tick
        self._clock = clock
        self._signals: list[int] = []
        self._previous_handlers: dict | None = None
        self._stopping = False
        self.exit_code = exitcodes.OK  # SIGTERM (systemd, docker stop) ends cleanly with 0; SIGINT with 130
        self._published: dict[str, datetime] = {}
        self._readers: list[StartupReader] = []
        self._succeeded_here: set[str] = set()
        self._read_s3_at_start = read_s3_at_start
        self.started_at = self._now()
        self.observer = Observers([LogObserver(), MonitoringObserver(state, metrics, clock=clock), *observers])
        self.scheduler = Scheduler(config.strategies, self.started_at, run_on_start=config.run_on_start)
        self.drill_scheduler = Scheduler(drill_schedules(config.strategies), self.started_at)
        self.aborter = UploadAborter()
        self.pool = WorkerPool(config.max_parallel_strategies, on_event=self._on_event,
                               on_stderr=self.observer.stderr, on_finished=self._on_finished,
                               worker_argv=worker_argv, abort_upload=self.aborter,
                               heartbeat_timeout=heartbeat or silence_limit())
        metrics.declare_strategies(config.strategies)

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), timezone.utc)

    # -- pool callbacks ----------------------------------------------------------------------------------

    def _on_finished(self, handle) -> None:
        if handle.kind == BACKUP and (handle.result or {}).get("status") == "success":
            self._succeeded_here.add(handle.strategy)
        self.aborter.record_unreported(handle)
        self.observer.run_finished(handle)

    def _on_event(self, handle, event: dict) -> None:
        if event["type"] == "started":
            self.observer.run_started(handle)
        self.observer.event(handle, event)

    # -- signals: the handler only enqueues --------------------------------------------------------------

    def _enqueue_signal(self, signum, frame) -> None:
        self._signals.append(signum)

    def _dispatch_signals(self) -> None:
        while self._signals:
            signum = self._signals.pop(0)
            name = signal.Signals(signum).name
            getattr(self, f"handle_{name[3:].lower()}")()

    def handle_term(self) -> None:
        self._stop_or_cancel("SIGTERM")

    def handle_int(self) -> None:
        if not self._stopping:
            self.exit_code = exitcodes.INTERRUPTED
        self._stop_or_cancel("SIGINT")

    def _stop_or_cancel(self, name: str) -> None:
        """The first SIGTERM/SIGINT stops scheduling (running backups get their grace); a second cancels them."""
        if not self._stopping:
            log.warning(f"received {name}: stopping")
            self._stopping = True
            return
        running = self.pool.running()
        log.warning(f"received {name} again: cancelling {running_text(running)} now")
        self.pool.cancel_all()

    def handle_hup(self) -> None:
        if self._stopping:
            log.info("received SIGHUP while stopping: ignored")
            return
        log.info("received SIGHUP: reloading the configuration")
        self.reload()

    # -- the loop ----------------------------------------------------------------------------------------

    def install_signal_handlers(self) -> None:
        """Make SIGTERM, SIGINT and SIGHUP only enqueue from now on (before anything can signal us: a SIGHUP
        that came before this would end the process). `run()` calls it too; it is idempotent."""
        if self._previous_handlers is None:
            self._previous_handlers = {sig: signal.signal(sig, self._enqueue_signal) for sig in HANDLED_SIGNALS}

    def _restore_signal_handlers(self) -> None:
        for sig, handler in (self._previous_handlers or {}).items():
            signal.signal(sig, handler)
        self._previous_handlers = None

    def run(self) -> int:
        """Run until SIGTERM or SIGINT, then stop cleanly; return the exit code (0, or 130 after SIGINT)."""
        self.install_signal_handlers()
        try:
            log.info(f"supervisor started: {len(self.config.strategies)} strategies, "
                     f"at most {self.config.max_parallel_strategies} at once")
            if self._read_s3_at_start:
                self._read_s3(self.config.strategies, clean_uploads=True)
            self._publish_next_runs()
            while not self._stopping:
                self.step()
        finally:
            # Also when the loop itself failed: workers must not outlive their supervisor's bookkeeping.
            self._shutdown()
            self.pool.close()
            self._restore_signal_handlers()
        return self.exit_code

    def step(self) -> None:
        """Run one tick of the loop: signals, S3 answers, due runs, the pool, heartbeat, next runs."""
        self._dispatch_signals()
        if self._stopping:  # a SIGTERM: no new runs; _shutdown() lets the running ones finish
            return
        self._apply_restored()
        now = self._now()
        for due in self.scheduler.due(now):
            self._submit(due, now)
        for due in self.drill_scheduler.due(now):
            self._submit(dataclasses.replace(due, strategy=self.config.strategy(due.strategy.name)), now, DRILL)
        self._publish_next_runs()
        later = self._now()
        self.pool.poll(min(self.tick, self.scheduler.seconds_until_due(later),
                           self.drill_scheduler.seconds_until_due(later)))
        self.state.loop_heartbeat()

    def _submit(self, due: Due, now: datetime, kind: str = BACKUP) -> None:
        job = new_job(due.strategy, self.config.temp_dir, now, kind=kind)
        logger = log.bind(strategy=due.strategy.name, run_id=job.run_id)
        what = "run" if kind == BACKUP else f"{kind} run"
        if self.pool.submit(job):
            logger.info(f"{what} queued ({due.reason.replace('_', ' ')})")
            return
        logger.bind(run_id="").warning(f"due {what} ({due.reason.replace('_', ' ')}) skipped: "
                                       f"the previous {what} is still going")
        if job.kind == BACKUP:  # runs_total{status="skipped"} counts backups
            self.metrics.run_skipped(due.strategy.name)

    def _publish_next_runs(self) -> None:
        for name, when in self.scheduler.next_runs().items():
            if self._published.get(name) != when:
                self._published[name] = when
                self.state.set_next_run(name, when)
                self.metrics.set_next_run(name, when)

    # -- state from S3 -----------------------------------------------------------------------------------

    def _read_s3(self, strategies: tuple[Strategy, ...], clean_uploads: bool) -> None:
        if strategies:
            self._readers.append(StartupReader(strategies, self.started_at, clean_uploads=clean_uploads).start())

    def _apply_restored(self) -> None:
        for reader in list(self._readers):
            finished = reader.done  # read before take(): an answer put after take() is taken next tick
            for restored in reader.take():
                self._restore(restored)
            if finished:
                self._readers.remove(reader)

    def _restore(self, restored: Restored) -> None:
        name = restored.strategy
        if name not in self._published:  # removed by a reload meanwhile
            return
        self.state.restore_last(name, restored.last_run, restored.last_success, restored.status or "pending",
                                restored.size_bytes, **restored_details(restored))
        self.state.restore_history(name, restored.history)
        if restored.last_drill is not None:
            self.state.restore_drill(name, restored.last_drill)
        self.metrics.orphans_deleted(name, restored.orphans_deleted)
        if restored.last_success and not self._has_succeeded_here(name):
            self.metrics.set_last_success(name, restored.last_success)
        if self.scheduler.catch_up(name, restored.last_run):
            log.bind(strategy=name).info("the last scheduled run was missed: catching up now")

    def _has_succeeded_here(self, name: str) -> bool:
        """A success in this process is newer than anything S3 said at start."""
        return name in self._succeeded_here

    # -- reload ------------------------------------------------------------------------------------------

    def reload(self) -> bool:
        """Load the config again; apply it if valid and return True, else log every problem and keep the old."""
        if self.reload_config is None:
            log.warning("reload requested, but this supervisor has no config file to reload")
            return False
        try:
            config = self.reload_config()
        except ConfigError as exc:
            log.error(f"reload failed: {len(exc.problems)} configuration problem(s); keeping the running config")
            for problem in exc.problems:
                log.error(f"config: {problem}")
            return False
        except EasybackupError as exc:
            log.error(f"reload failed: {exc}; keeping the running config")
            return False
        self._apply(config)
        return True

    def _apply(self, config: Config) -> None:
        old_names = {s.name for s in self.config.strategies}
        old_schedules = {s.name: (s.schedule, s.timezone) for s in self.config.strategies}
        for what in ("metrics", "health_check"):
            if getattr(config, what) != getattr(self.config, what):
                log.warning(f"monitoring.{what} changed; the HTTP endpoint keeps its address until a restart")
        self.config = config
        self.scheduler.replace_strategies(config.strategies, self._now())
        self.drill_scheduler.replace_strategies(drill_schedules(config.strategies), self._now())
        self.state.replace_strategies(config.strategies)
        self.metrics.declare_strategies(config.strategies)
        self.pool.max_parallel = config.max_parallel_strategies
        self._published = {name: when for name, when in self._published.items()
                           if name in {s.name for s in config.strategies}}
        self._publish_next_runs()
        added = tuple(s for s in config.strategies if s.name not in old_names)
        if self._read_s3_at_start:
            self._read_s3(added, clean_uploads=True)
        for callback in self.on_reload:
            callback(config)
        removed = sorted(old_names - {s.name for s in config.strategies})
        log.info(f"configuration reloaded: {len(config.strategies)} strategies"
                 + (f"; added {', '.join(s.name for s in added)}" if added else "")
                 + (f"; removed {', '.join(removed)}" if removed else "")
                 + rescheduled_text(old_schedules, config.strategies))

    # -- shutdown ----------------------------------------------------------------------------------------

    def _shutdown(self) -> None:
        self._stopping = True  # also when the loop failed: a SIGTERM from now on cancels the running backups
        running = self.pool.running()
        started = time.monotonic()
        if running:
            grace = max(handle.job.strategy.timeout.shutdown_grace for handle in running)
            log.warning(f"stopping: {running_text(running)} may finish for up to {grace:g} s "
                        "(timeout.shutdown_grace), then they are cancelled; a second SIGTERM or SIGINT cancels "
                        "them now")

        def tick() -> None:
            # Beating while we wait: a long grace period (or a slow S3 for the aborts) is no stall for health.
            self.state.loop_heartbeat()
            self._dispatch_signals()  # a second SIGTERM/SIGINT cancels the running backups

        for job in self.pool.stop(on_tick=tick):
            log.bind(strategy=job.strategy.name, run_id=job.run_id).info("queued run dropped at shutdown")
        self.aborter.join(on_tick=self.state.loop_heartbeat)
        log.info(f"supervisor stopped in {time.monotonic() - started:.1f} s")


def rescheduled_text(old: dict[str, tuple[str, str]], strategies) -> str:
    """Given {name: (schedule, timezone)} before a reload and the strategies after it, return "; rescheduled
    NAME (1d -> 6h), ..." for those kept whose schedule or timezone changed, or ""."""
    changed = [f"{s.name} ({' '.join(old[s.name])} -> {s.schedule} {s.timezone})" if old[s.name][1] != s.timezone
               else f"{s.name} ({old[s.name][0]} -> {s.schedule})"
               for s in strategies if s.name in old and old[s.name] != (s.schedule, s.timezone)]
    return f"; rescheduled {', '.join(changed)}" if changed else ""
