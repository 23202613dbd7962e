"""The worker pool: start workers, read their events and stderr without blocking, reap them, stop them.

Modelled on gunicorn's arbiter: exit statuses decoded by cause, only our own children reaped (by PID, never
`waitpid(-1)`), and a two-step stop (SIGTERM to each worker's process group, a grace period on the monotonic
clock, then SIGKILL). The pool never blocks on a worker; callers drive it with `poll()`.
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
from easybackup.jobspec import JobSpec
from easybackup.logs import log
from easybackup.secrets import mask
from easybackup.supervision.spawn import SpareWorker, default_worker_argv, spawn_worker

STDERR_TAIL = 25  # last stderr lines kept per worker, attached to a crash
_READ_SIZE = 64 * 1024
_KILL_WAIT = 5.0  # seconds to wait for SIGKILLed workers before blocking on them
MALFORMED_LOGGED = 10  # malformed lines logged per worker; a flood of them is counted, not logged line by line


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
    malformed_lines: int = 0  # lines on stdout that were not a valid event of this run
    first_malformed: str | None = None  # what was wrong with the first of them, for a crash's error
    streams: dict = field(default_factory=dict, repr=False)  # "stdout"/"stderr" -> _Stream while open
    exit_fd: int | None = None  # a pidfd, readable once the worker has exited (None where there is none)

    @property
    def strategy(self) -> str:
        return self.job.strategy.name

    @property
    def run_id(self) -> str:
        return self.job.run_id


@dataclass(eq=False)
class _Stream:
    handle: RunHandle
    name: str  # "stdout" (events) or "stderr" (raw lines)
    fd: int
    reader: wire.LineReader


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
    """At most `max_parallel` workers at once, a FIFO queue beyond that holding each strategy at most once."""

    def __init__(self, max_parallel: int, *, on_event: Callable, on_stderr: Callable, on_finished: Callable,
                 worker_argv: list[str] | None = None, abort_upload: Callable | None = None,
                 heartbeat_timeout: float | None = None, clock: Callable[[], float] = time.monotonic,
                 spare: SpareWorker | None = None):
        self.max_parallel = max_parallel
        self.on_event = on_event  # (handle, event)
        self.on_stderr = on_stderr  # (handle, line: str)
        self.on_finished = on_finished  # (handle), once, with handle.result set
        self.abort_upload = abort_upload  # (handle, key, upload_id); the caller runs S3 calls on a thread
        self.worker_argv = list(worker_argv) if worker_argv else default_worker_argv()
        self.spare = spare  # started before the pool (`once`): taken for the first job, dismissed by close()
        self.heartbeat_timeout = heartbeat_timeout
        self.clock = clock
        self._queue: deque[JobSpec] = deque()
        self._running: list[RunHandle] = []
        self._selector = selectors.DefaultSelector()

    # -- queue -------------------------------------------------------------------------------------------

    def submit(self, job: JobSpec) -> bool:
        """Given a job, queue it and return True; return False (queue unchanged) if its strategy is already
        queued or running — a strategy never overlaps itself."""
        if self.is_busy(job.strategy.name):
            return False
        self._queue.append(job)
        return True

    def running(self) -> list[RunHandle]:
        return list(self._running)

    def queued(self) -> list[JobSpec]:
        return list(self._queue)

    def is_busy(self, strategy_name: str) -> bool:
        return any(h.strategy == strategy_name for h in self._running) or any(
            j.strategy.name == strategy_name for j in self._queue)

    @property
    def idle(self) -> bool:
        return not self._running and not self._queue

    # -- the loop ----------------------------------------------------------------------------------------

    def poll(self, timeout: float = 0.0) -> None:
        """Run one iteration: start queued jobs, wait up to `timeout` s for output, deliver events and stderr
        lines, kill silent workers, reap exited ones. Exceptions from the callbacks propagate to the caller."""
        self._start_queued()
        for key, _mask in self._selector.select(self._select_timeout(timeout)):
            if isinstance(key.data, _Stream):
                self._read(key.data)  # else a worker's pidfd woke us: it has exited and is reaped below
        self._enforce_heartbeat()
        for handle in list(self._running):
            if _has_exited(handle.pid):
                self._finish(handle)

    def stop(self, grace: float, on_tick: Callable[[], None] | None = None) -> list[JobSpec]:
        """Drop the queue, SIGTERM every worker's group, wait up to `grace` s, SIGKILL the rest, reap all;
        every handle gets its on_finished. `on_tick` is called between polls while waiting (the supervisor's
        heartbeat: a long grace period is no stall). Return the jobs dropped from the queue."""
        tick = on_tick or (lambda: None)
        dropped = list(self._queue)
        self._queue.clear()
        for handle in self._running:
            handle.stop_reason = "shutdown"
            self.kill_group(handle, signal.SIGTERM)
        deadline = self.clock() + grace
        while self._running and (left := deadline - self.clock()) > 0:
            self.poll(min(0.1, left))
            tick()
        for handle in self._running:
            log.bind(strategy=handle.strategy, run_id=handle.run_id).warning(
                f"worker pid {handle.pid} still running after {grace:g} s; killing its process group")
            self.kill_group(handle, signal.SIGKILL)
        deadline = self.clock() + _KILL_WAIT
        while self._running and (left := deadline - self.clock()) > 0:
            self.poll(min(0.05, left))
            tick()
        for handle in list(self._running):  # unkillable for now (uninterruptible I/O): wait for it
            handle.process.wait()
            self._finish(handle)
        return dropped

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
        while self._queue and len(self._running) < self.max_parallel:
            self._start(self._queue.popleft())

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
        watched = [h.last_event_at for h in self._running if h.stop_reason is None]
        if self.heartbeat_timeout is None or not watched:
            return max(0.0, timeout)
        next_deadline = min(watched) + self.heartbeat_timeout
        return max(0.0, min(timeout, next_deadline - self.clock()))

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
