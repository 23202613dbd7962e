"""The worker pool: start workers, read their events and stderr without blocking, reap them, stop them.

Modelled on gunicorn's arbiter: exit statuses decoded by cause, only our own children reaped (by PID, never
`waitpid(-1)`), and a graceful stop on the monotonic clock: running workers are left alone for their strategy's
`timeout.shutdown_grace` (a deploy must not throw away the backups in progress), then cancelled (SIGTERM to the
worker alone: it stops its own children and aborts its upload), and their process groups SIGKILLed after a short
wait. The pool never blocks on a worker; callers drive it with `poll()`.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import subprocess
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from easybackup import exitcodes, wire
from easybackup.errors import EasybackupError
from easybackup.jobspec import BACKUP, DRILL, KINDS, VERIFY, JobSpec
from easybackup.logs import log
from easybackup.scheduling.durations import parse_duration
from easybackup.secrets import mask
from easybackup.supervision.spawn import SpareWorker, default_worker_argv, spawn_worker

STDERR_TAIL = 25  # last stderr lines kept per worker, attached to a crash
_READ_SIZE = 64 * 1024
_KILL_WAIT = 5.0  # seconds to wait for SIGKILLed workers before blocking on them
# A cancelled worker stops pg_dump and the compressor (2 s at most, worker/backup.py) and aborts its upload (one
# S3 call, boto3 retrying it briefly): this is its time for that before its whole group is SIGKILLed.
CANCEL_WAIT_S = 10.0
# A worker beats a `heartbeat` event every second in every phase (worker/main.py): a minute of silence is a
# worker that is stopped, frozen or gone without exiting, never one that is merely waiting.
DEFAULT_SILENCE_LIMIT_S = 60.0
SILENCE_LIMIT_ENV = "EASYBACKUP_WORKER_SILENCE_LIMIT"
MALFORMED_LOGGED = 10  # malformed lines logged per worker; a flood of them is counted, not logged line by line

# Which kinds of job of ONE strategy may run at the same time (jobs of different strategies always may, within
# max_parallel). Never two of one kind: two dumps of the same databases, two retentions deleting at once, two drill
# databases on one target. A verify or a restore drill runs beside its strategy's backup, so that a check never
# delays or skips a due backup (a backup waiting out a 2 h drill would miss its schedule). What that costs the
# check: the backup beside it may finish and its retention delete the archive the check is reading (only with a
# retention that keeps a single backup); a drill or verify must report that archive's NoSuchKey as superseded by
# a newer backup, not as a failed check. A verify beside a drill: both only read.
SAME_STRATEGY_BESIDE = {
    (BACKUP, BACKUP): False,
    (BACKUP, VERIFY): True,
    (BACKUP, DRILL): True,
    (VERIFY, VERIFY): False,
    (VERIFY, DRILL): True,
    (DRILL, DRILL): False,
}


def may_run_beside(job: tuple[str, str], other: tuple[str, str]) -> bool:
    """Given two (strategy, kind) keys, return whether jobs with them may run at the same time: always for two
    strategies; for one, as SAME_STRATEGY_BESIDE says (a kind it does not name: never)."""
    (strategy, kind), (other_strategy, other_kind) = job, other
    if strategy != other_strategy:
        return True
    if kind not in KINDS or other_kind not in KINDS:
        return False
    pair = tuple(sorted((kind, other_kind), key=KINDS.index))
    return SAME_STRATEGY_BESIDE[pair]


@dataclass(eq=False)
class RunHandle:
    """One worker running one job."""

    job: JobSpec
    process: subprocess.Popen | None
    pid: int
    started_at: float  # pool clock (monotonic)
    last_event_at: float
    announced_upload: tuple[str, str] | None = None  # (key, upload_id) of the multipart upload in flight
    result: dict | None = None
    exit_code: int | None = None
    exit_description: str | None = None
    stderr_tail: deque = field(default_factory=lambda: deque(maxlen=STDERR_TAIL))
    events_seen: int = 0
    finished_databases: list = field(default_factory=list)  # db_finished events, for a synthetic result
    stop_reason: str | None = None  # "shutdown" or "heartbeat" once the pool has signalled the worker
    cancel_at: float | None = None  # pool clock: when a stopping pool cancels it (the end of its grace)
    kill_at: float | None = None  # pool clock: when a cancelled worker's group is SIGKILLed
    killed_at: float | None = None  # pool clock: when its group was SIGKILLed
    malformed_lines: int = 0  # lines on stdout that were not a valid event of this run
    first_malformed: str | None = None  # what was wrong with the first of them, for a crash's error
    streams: dict = field(default_factory=dict, repr=False)  # "stdout"/"stderr" -> _Stream while open
    exit_fd: int | None = None  # a pidfd, readable once the worker has exited (None where there is none)

    @property
    def strategy(self) -> str:
        return self.job.strategy.name

    @property
    def kind(self) -> str:
        return self.job.kind

    @property
    def run_id(self) -> str:
        return self.job.run_id


@dataclass(eq=False)
class _Stream:
    handle: RunHandle
    name: str  # "stdout" (events) or "stderr" (raw lines)
    fd: int
    reader: wire.LineReader


_NOUNS = {"backup": "backup(s)", "verify": "verify run(s)", "drill": "restore drill(s)"}


def running_text(handles) -> str:
    """Given running handles, say what runs for a log line: `2 running backup(s)`, or with several kinds
    `3 running jobs (2 backup(s), 1 restore drill(s))`."""
    counts: dict[str, int] = {}
    for handle in handles:
        counts[handle.job.kind] = counts.get(handle.job.kind, 0) + 1
    if len(counts) <= 1:
        kind, count = next(iter(counts.items()), ("backup", 0))
        return f"{count} running {_NOUNS.get(kind, kind)}"
    parts = ", ".join(f"{count} {_NOUNS.get(kind, kind)}" for kind, count in sorted(counts.items()))
    return f"{sum(counts.values())} running jobs ({parts})"


def silence_limit(environ=None) -> float:
    """Return how long a worker may send nothing before the pool kills it: $EASYBACKUP_WORKER_SILENCE_LIMIT (a
    duration like `5s`, meant for tests) or 60 s; an unreadable or non-positive value is a warning and the default."""
    text = (os.environ if environ is None else environ).get(SILENCE_LIMIT_ENV)
    if not text:
        return DEFAULT_SILENCE_LIMIT_S
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        log.warning(f"{SILENCE_LIMIT_ENV}: {exc}; using {DEFAULT_SILENCE_LIMIT_S:g} s")
        return DEFAULT_SILENCE_LIMIT_S
    if seconds <= 0:
        log.warning(f"{SILENCE_LIMIT_ENV}: must be above 0; using {DEFAULT_SILENCE_LIMIT_S:g} s")
        return DEFAULT_SILENCE_LIMIT_S
    return seconds


def describe_exit(returncode: int) -> str:
    """Given a Popen returncode, return its cause: `exited with code 70 (internal error)`,
    `killed by signal 9 (SIGKILL — perhaps out of memory?)`."""
    if returncode >= 0:
        name = exitcodes.WORKER_EXIT_NAMES.get(returncode)
        return f"exited with code {returncode}" + (f" ({name})" if name else "")
    number = -returncode
    try:
        name = signal.Signals(number).name
    except ValueError:
        return f"killed by signal {number}"
    if number == signal.SIGKILL:
        return f"killed by signal {number} ({name} — perhaps out of memory?)"
    return f"killed by signal {number} ({name})"


class WorkerPool:
    """At most `max_parallel` workers at once, a FIFO queue beyond that; each (strategy, kind) is queued or
    running at most once, and a job starts only beside jobs it may run beside (`may_run_beside`)."""

    def __init__(self, max_parallel: int, *, on_event: Callable, on_stderr: Callable, on_finished: Callable,
                 worker_argv: list[str] | None = None, abort_upload: Callable | None = None,
                 heartbeat_timeout: float | None = None, clock: Callable[[], float] = time.monotonic,
                 spare: SpareWorker | None = None, cancel_wait: float = CANCEL_WAIT_S):
        self.max_parallel = max_parallel
        self.on_event = on_event  # (handle, event)
        self.on_stderr = on_stderr  # (handle, line: str)
        self.on_finished = on_finished  # (handle), once, with handle.result set
        self.abort_upload = abort_upload  # (handle, key, upload_id); the caller runs S3 calls on a thread
        self.worker_argv = list(worker_argv) if worker_argv else default_worker_argv()
        self.spare = spare  # started before the pool (`once`): taken for the first job, dismissed by close()
        self.heartbeat_timeout = heartbeat_timeout  # the silence limit; None: never kill a quiet worker
        self.cancel_wait = cancel_wait
        self.clock = clock
        self._queue: deque[JobSpec] = deque()
        self._running: list[RunHandle] = []
        self._selector = selectors.DefaultSelector()

    # -- queue -------------------------------------------------------------------------------------------

    def submit(self, job: JobSpec) -> bool:
        """Given a job, queue it and return True; return False (queue unchanged) if a job of its strategy and
        kind is already queued or running — a backup never overlaps its strategy's backup, nor a drill its drill."""
        if self.is_busy(job.strategy.name, job.kind):
            return False
        self._queue.append(job)
        return True

    def running(self) -> list[RunHandle]:
        return list(self._running)

    def queued(self) -> list[JobSpec]:
        return list(self._queue)

    def is_busy(self, strategy_name: str, kind: str = BACKUP) -> bool:
        """Given a strategy and a kind of job, return whether such a job is queued or running."""
        key = (strategy_name, kind)
        return any(h.job.key == key for h in self._running) or any(j.key == key for j in self._queue)

    @property
    def idle(self) -> bool:
        return not self._running and not self._queue

    # -- the loop ----------------------------------------------------------------------------------------

    def poll(self, timeout: float = 0.0) -> None:
        """Run one iteration: start queued jobs, wait up to `timeout` s for output, deliver events and stderr
        lines, kill silent workers, cancel or kill stopping ones whose time is up, reap exited ones. Exceptions
        from the callbacks propagate to the caller."""
        self._start_queued()
        for key, _mask in self._selector.select(self._select_timeout(timeout)):
            if isinstance(key.data, _Stream):
                self._read(key.data)  # else a worker's pidfd woke us: it has exited and is reaped below
        self._enforce_heartbeat()
        self._enforce_stop_deadlines()
        for handle in list(self._running):
            if _has_exited(handle.pid):
                self._finish(handle)

    def stop(self, grace: float | None = None, on_tick: Callable[[], None] | None = None) -> list[JobSpec]:
        """Drop the queue and let every running worker finish for up to its strategy's timeout.shutdown_grace
        (`grace` instead, if given); then cancel it (see `cancel`); reap all, each with its on_finished.

        `on_tick` is called between polls while waiting (the supervisor's health heartbeat, and its signals: a
        second SIGTERM calls `cancel_all()`). Return the jobs dropped from the queue."""
        tick = on_tick or (lambda: None)
        dropped = self.drain(grace)
        while self._running:
            self.poll(0.1)
            tick()
            self._wait_for_unkillable()
        return dropped

    def drain(self, grace: float | None = None) -> list[JobSpec]:
        """Drop the queue and give each running worker a deadline: now + its grace (its strategy's
        timeout.shutdown_grace, or `grace`); `poll()` cancels it then. Return the jobs dropped from the queue."""
        dropped = list(self._queue)
        self._queue.clear()
        now = self.clock()
        for handle in self._running:
            allowed = handle.job.strategy.timeout.shutdown_grace if grace is None else grace
            handle.cancel_at = now + allowed if handle.cancel_at is None else min(handle.cancel_at, now + allowed)
        return dropped

    def cancel_all(self) -> None:
        """Cancel every running worker now (a second SIGTERM/SIGINT: the grace is over)."""
        for handle in self._running:
            self.cancel(handle)

    def cancel(self, handle: RunHandle) -> None:
        """Given a running worker, SIGTERM it alone: it stops pg_dump and the compressor, aborts its upload and
        sends its result. Its whole group is SIGKILLed `cancel_wait` s later if it is still there. Idempotent."""
        if handle.stop_reason is not None:
            return
        handle.stop_reason = "shutdown"
        handle.kill_at = self.clock() + self.cancel_wait
        with contextlib.suppress(ProcessLookupError):  # it has exited meanwhile: reaped by the next poll
            os.kill(handle.pid, signal.SIGTERM)

    def _enforce_stop_deadlines(self) -> None:
        now = self.clock()
        for handle in self._running:
            if handle.cancel_at is not None and now >= handle.cancel_at and handle.stop_reason is None:
                log.bind(strategy=handle.strategy, run_id=handle.run_id).warning(
                    f"worker pid {handle.pid} still running at the end of its shutdown grace; cancelling it")
                self.cancel(handle)
            if handle.kill_at is not None and now >= handle.kill_at:
                log.bind(strategy=handle.strategy, run_id=handle.run_id).warning(
                    f"worker pid {handle.pid} still running {self.cancel_wait:g} s after it was cancelled; "
                    "killing its process group")
                handle.kill_at = None
                handle.killed_at = now
                self.kill_group(handle, signal.SIGKILL)

    def _wait_for_unkillable(self) -> None:
        """Block on the workers SIGKILLed more than _KILL_WAIT s ago: in uninterruptible I/O, they die when it
        ends, and nothing else is left to do."""
        now = self.clock()
        for handle in list(self._running):
            if handle.killed_at is not None and now - handle.killed_at > _KILL_WAIT:
                handle.process.wait()
                self._finish(handle)

    def close(self) -> None:
        """Release the selector, the pidfds of workers never reaped (a callback raised) and a spare worker never
        taken; call after `stop()`."""
        if self.spare is not None:
            self.spare.dismiss()
        for handle in self._running:
            if handle.exit_fd is not None:
                os.close(handle.exit_fd)
                handle.exit_fd = None
        self._selector.close()

    def kill_group(self, handle: RunHandle, sig: int) -> None:
        """Given a handle and a signal, send it to the worker's whole process group (pg_dump, ssh, compressor).

        The worker is reaped only after this can no longer be called for it, so its PID (= its group id)
        cannot have been reused.
        """
        with contextlib.suppress(ProcessLookupError):  # the group is already gone: nothing left to signal
            os.killpg(handle.pid, sig)

    # -- starting ----------------------------------------------------------------------------------------

    def _start_queued(self) -> None:
        """Start queued jobs, first in first started, while a slot is free; one that may not run beside a running
        job waits, and the jobs behind it may start meanwhile."""
        while len(self._running) < self.max_parallel:
            index = next((i for i, job in enumerate(self._queue) if self._may_start(job)), None)
            if index is None:
                return
            job = self._queue[index]
            del self._queue[index]
            self._start(job)

    def _may_start(self, job: JobSpec) -> bool:
        return all(may_run_beside(job.key, handle.job.key) for handle in self._running)

    def _start(self, job: JobSpec) -> None:
        now = self.clock()
        try:
            process = self.spare.take(self.worker_argv) if self.spare is not None else None
            process = process or spawn_worker(self.worker_argv)
        except OSError as exc:
            self._could_not_start(job, now, exc)
            return
        handle = RunHandle(job=job, process=process, pid=process.pid, started_at=now, last_event_at=now)
        self._running.append(handle)
        log.bind(strategy=handle.strategy, run_id=handle.run_id).debug(f"worker started, pid {process.pid}")
        self._send_job(handle)
        handle.exit_fd = _exit_fd(process.pid)
        if handle.exit_fd is not None:
            self._selector.register(handle.exit_fd, selectors.EVENT_READ, handle)
        for name, pipe in (("stdout", process.stdout), ("stderr", process.stderr)):
            os.set_blocking(pipe.fileno(), False)
            limit = wire.MAX_LINE if name == "stdout" else wire.MAX_LOG_LINE
            stream = _Stream(handle, name, pipe.fileno(), wire.LineReader(limit))
            handle.streams[name] = stream
            self._selector.register(stream.fd, selectors.EVENT_READ, stream)

    def _send_job(self, handle: RunHandle) -> None:
        stdin = handle.process.stdin
        try:
            stdin.write(handle.job.to_json().encode("utf-8"))
            stdin.close()
        except BrokenPipeError:
            log.bind(strategy=handle.strategy, run_id=handle.run_id).warning(
                "worker exited before reading its job; it is reported as crashed when reaped")
            with contextlib.suppress(BrokenPipeError):  # closing flushes the same unread bytes again
                stdin.close()

    def _could_not_start(self, job: JobSpec, now: float, exc: OSError) -> None:
        handle = RunHandle(job=job, process=None, pid=0, started_at=now, last_event_at=now,
                           exit_description=f"could not start: {exc}")
        error = EasybackupError(f"could not start the worker: {exc}", detail=" ".join(self.worker_argv),
                                hint="check that easybackup is installed for this Python", kind="internal")
        handle.result = self._synthetic_result(handle, error)
        log.bind(strategy=handle.strategy, run_id=handle.run_id).error(error.message)
        self.on_finished(handle)

    # -- reading -----------------------------------------------------------------------------------------

    def _select_timeout(self, timeout: float) -> float:
        """Given the caller's timeout, return it cut to the next deadline: a silence limit or a stop deadline."""
        deadlines = [h.cancel_at for h in self._running if h.cancel_at is not None and h.stop_reason is None]
        deadlines += [h.kill_at for h in self._running if h.kill_at is not None]
        if self.heartbeat_timeout is not None:
            deadlines += [h.last_event_at + self.heartbeat_timeout for h in self._running if h.stop_reason is None]
        if not deadlines:
            return max(0.0, timeout)
        return max(0.0, min(timeout, min(deadlines) - self.clock()))

    def _read(self, stream: _Stream) -> bool:
        """Given an open stream, read what is there and deliver its lines; return False at EOF or when empty."""
        try:
            data = os.read(stream.fd, _READ_SIZE)
        except BlockingIOError:
            return False
        if not data:
            self._close_stream(stream)
            return False
        for line in stream.reader.feed(data):
            self._deliver(stream, line)
        return True

    def _drain(self, handle: RunHandle) -> None:
        """Given an exited worker, read everything left in its pipes (it wrote it all before exiting)."""
        for stream in list(handle.streams.values()):
            while self._read(stream):
                pass

    def _close_stream(self, stream: _Stream) -> None:
        leftover = stream.reader.flush()
        if leftover is not None:
            if stream.name == "stdout":
                self._malformed(stream.handle, "truncated event at end of stream", leftover)
            else:
                self._deliver(stream, leftover)
        self._selector.unregister(stream.fd)
        del stream.handle.streams[stream.name]
        pipe = stream.handle.process.stdout if stream.name == "stdout" else stream.handle.process.stderr
        pipe.close()

    def _deliver(self, stream: _Stream, line: bytes) -> None:
        handle = stream.handle
        if stream.name == "stderr":
            text = mask(line.decode("utf-8", "backslashreplace").rstrip("\r"))
            if isinstance(line, wire.OversizedLine):
                text += " …[cut]"
            handle.stderr_tail.append(text)
            self.on_stderr(handle, text)
        elif isinstance(line, wire.OversizedLine):
            self._malformed(handle, f"event line longer than {wire.MAX_LINE} bytes dropped", line)
        else:
            try:
                event = wire.decode(line)
            except wire.WireError as exc:
                self._malformed(handle, exc.message, line)
                return
            self._accept(handle, event)

    def _accept(self, handle: RunHandle, event: dict) -> None:
        if (event["run_id"], event["strategy"]) != (handle.run_id, handle.strategy):
            self._malformed(handle, f"event for another run ({event['strategy']}/{event['run_id']})", b"")
            return
        if handle.result is not None:
            self._malformed(handle, f"{event['type']} event after the result", b"")
            return
        handle.events_seen += 1
        handle.last_event_at = self.clock()
        kind = event["type"]
        if kind == "heartbeat":  # it only proves the worker alive: nothing for the observers
            return
        if kind == "upload_started":
            handle.announced_upload = (str(event.get("key")), str(event.get("upload_id")))
        elif kind == "db_finished":
            handle.announced_upload = None  # the worker completed or aborted that upload itself
            handle.finished_databases.append(event)
        elif kind == "result":
            handle.result = event
        self.on_event(handle, event)

    def _malformed(self, handle: RunHandle, problem: str, line: bytes) -> None:
        handle.malformed_lines += 1
        handle.first_malformed = handle.first_malformed or problem
        if handle.malformed_lines > MALFORMED_LOGGED:
            return
        shown = mask(line[:120].decode("utf-8", "backslashreplace"))
        suffix = " (further malformed lines are only counted)" if handle.malformed_lines == MALFORMED_LOGGED else ""
        log.bind(strategy=handle.strategy, run_id=handle.run_id).warning(
            f"malformed output from worker pid {handle.pid}: {problem}" + (f": {shown!r}" if shown else "") + suffix)

    # -- heartbeat and reaping ---------------------------------------------------------------------------

    def _enforce_heartbeat(self) -> None:
        if self.heartbeat_timeout is None:
            return
        now = self.clock()
        for handle in self._running:
            if handle.stop_reason is None and now - handle.last_event_at > self.heartbeat_timeout:
                handle.stop_reason = "heartbeat"
                handle.killed_at = now
                log.bind(strategy=handle.strategy, run_id=handle.run_id).error(
                    f"worker pid {handle.pid} sent no event for {self.heartbeat_timeout:g} s; killing its group")
                self.kill_group(handle, signal.SIGKILL)

    def _finish(self, handle: RunHandle) -> None:
        """Given a worker that has exited (not yet reaped), collect its output, reap it and report it once."""
        # Whatever is left in its group (a pg_dump of a crashed worker) has no owner any more; killing it first
        # also bounds the drain below. The worker is still a zombie here, so its group id cannot have been reused.
        self.kill_group(handle, signal.SIGKILL)
        self._drain(handle)
        for stream in list(handle.streams.values()):  # a leftover child held the pipe; we are done with it
            self._close_stream(stream)
        if handle.exit_fd is not None:
            self._selector.unregister(handle.exit_fd)
            os.close(handle.exit_fd)
            handle.exit_fd = None
        handle.exit_code = handle.process.wait()
        handle.exit_description = describe_exit(handle.exit_code)
        self._running.remove(handle)
        bound = log.bind(strategy=handle.strategy, run_id=handle.run_id)
        if handle.result is None:
            handle.result = self._synthetic_result(handle, self._crash_error(handle))
            bound.error(f"worker pid {handle.pid} {handle.exit_description} without sending its result")
            if handle.announced_upload and self.abort_upload:
                self.abort_upload(handle, *handle.announced_upload)
        else:
            bound.debug(f"worker pid {handle.pid} {handle.exit_description}")
        self.on_finished(handle)

    def _crash_error(self, handle: RunHandle) -> EasybackupError:
        tail = list(handle.stderr_tail)
        codes = {"worker": handle.exit_code}
        if handle.stop_reason == "shutdown":
            return EasybackupError(f"worker stopped at shutdown: {handle.exit_description}", kind="cancelled",
                                   exit_codes=codes, last_lines=tail,
                                   hint="raise timeout.shutdown_grace to let running backups finish")
        malformed = (f"{handle.malformed_lines} malformed line(s) on its event stream, the first: "
                     f"{handle.first_malformed}") if handle.malformed_lines else None
        if handle.stop_reason == "heartbeat":
            return EasybackupError(f"worker sent no event for {self.heartbeat_timeout:g} s and was killed",
                                   detail="; ".join(filter(None, [handle.exit_description, malformed])),
                                   kind="crashed", exit_codes=codes, last_lines=tail,
                                   hint="the worker hung; its last lines may say where")
        hint = "the kernel may have killed it for memory; check dmesg" if handle.exit_code == -signal.SIGKILL \
            else "the worker ended without its result; its last lines may say why"
        if malformed:
            hint = "the worker and the supervisor may be different easybackup versions, or something else wrote to " \
                   "the worker's stdout"
        return EasybackupError(f"worker {handle.exit_description}", detail=malformed, kind="crashed",
                               exit_codes=codes, last_lines=tail, hint=hint)

    def _synthetic_result(self, handle: RunHandle, error: EasybackupError) -> dict:
        """Given a handle without a result and the error that ended it, return a `result` event in its name."""
        return {"v": wire.VERSION, "type": "result", "run_id": handle.run_id, "strategy": handle.strategy,
                "database": None, "seq": handle.events_seen + 1, "ts": wire.iso_timestamp(time.time()),
                "status": "failed", "duration_s": round(self.clock() - handle.started_at, 3),
                "databases": list(handle.finished_databases), "error": error.to_dict(), "synthetic": True}


def _exit_fd(pid: int) -> int | None:
    """Given a child's PID, return a pidfd that turns readable when it exits, so the loop reaps it at once rather
    than at its next timeout; None where there is none (Linux < 5.3, or not Linux)."""
    pidfd_open = getattr(os, "pidfd_open", None)
    if pidfd_open is None:
        return None
    try:
        return pidfd_open(pid)
    except OSError:
        return None


def _has_exited(pid: int) -> bool:
    """Given a child's PID, return whether it has exited, without reaping it (Popen.wait does that)."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True
