"""A chain of child processes (pg_dump | compressor) whose last stdout the caller reads.

    with Pipeline([dump_stage, compress_stage], on_line=emit_log) as pipeline:
        while chunk := os.read(pipeline.output_fd, 1 << 20):
            upload(chunk)
        exit_codes = pipeline.wait()      # raises StageFailed naming the stage that failed

Leaving the block always stops what still runs (SIGTERM, grace, SIGKILL), reaps every child with
`Popen.wait()` on the handles we own, joins the stderr readers and closes every fd. Every stage's stderr
is drained on its own thread: an undrained stderr stalls pg_dump once the pipe buffer (64 KiB) is full.

`count_after="pg_dump"` puts a counting relay behind that stage: a thread moves its output on to the next
link with splice(2) (pipe to pipe inside the kernel, no copy through Python) and `bytes_counted` says how
many bytes went through — the dump's size before compression, for the manifest and progress events — and `head`
holds the first HEAD_BYTES of them (the dump's header names pg_dump's and the server's versions). With
`keep_tail=True` it also keeps the last TAIL_BYTES in `tail` (a plain dump ends with its completion comment): it
then splices all but the last TAIL_BYTES waiting in the pipe and reads those, so the stream's last bytes are
always read, and the copy through user space stays a few KiB per wake-up. It may be the last link: the caller
then reads the relay's output.
"""

from __future__ import annotations

import array
import collections
import errno
import fcntl
import os
import select
import signal
import subprocess
import termios
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from easybackup.errors import EasybackupError
from easybackup.secrets import mask

LAST_LINES = 25  # lines of stderr kept per stage and attached to its error
MAX_LINE_BYTES = 2048  # longer stderr lines are cut (DESIGN: log lines cut to 2 KiB)
CUT_MARK = " …[line cut]"
_READ_SIZE = 65536
_POLL_S = 0.2  # how often a stderr reader looks at its stop flag when nothing arrives
_DRAIN_AFTER_STOP_S = 1.0
_RELAY_CHUNK = 1 << 20  # bytes asked for per splice/read; a pipe hands over at most what it holds
_RELAY_PIPE_SIZE = 1 << 20  # the unprivileged maximum: fewer wake-ups of the relay and of the stages
HEAD_BYTES = 4096  # kept by the relay from the start of the stream
TAIL_BYTES = 4096  # kept by the relay from the end of the stream, when asked to

LineCallback = Callable[[str, str], None]

_SIGNAL_HINTS = {
    signal.SIGKILL: "perhaps out of memory?",
    signal.SIGPIPE: "its reader stopped reading",
    signal.SIGSEGV: "it crashed",
}


@dataclass(frozen=True)
class StageSpec:
    """One program of a pipeline.

    `env` is the child's whole environment (None: inherit ours; prefer `base_env()`, which holds no
    secrets). `failure_kind` is the error kind (errors.KINDS) reported when this stage fails: compressors
    say `compressor_failed`.
    """

    name: str
    argv: Sequence[str]
    env: dict[str, str] | None = None
    failure_kind: str = field(default="dump_failed", compare=False)


class StageFailed(EasybackupError):
    """A stage of a pipeline exited non-zero or was killed; `stage` names it, `exit_codes` has every stage."""

    kind = "dump_failed"

    def __init__(self, stage: str, returncode: int, description: str, *, kind: str,
                 exit_codes: dict[str, int], last_lines: list[str]):
        detail = next((line for line in reversed(last_lines) if line.strip()), None)
        super().__init__(f"{stage} {description}", detail=detail, kind=kind,
                         exit_codes=exit_codes, last_lines=last_lines)
        self.stage = stage
        self.returncode = returncode
        self.description = description

    @property
    def signal(self) -> int | None:
        """The number of the signal that killed the stage, or None when it exited."""
        return -self.returncode if self.returncode < 0 else None


class StageStartError(EasybackupError):
    """A stage could not be started at all (program missing or not executable)."""

    kind = "internal"

    def __init__(self, stage: str, program: str, reason: str):
        super().__init__(f"cannot start {stage}: {reason}", detail=f"program: {program}",
                         hint=f"install {program} or put it on the PATH of the easybackup service")
        self.stage = stage
        self.program = program


class PipelineTimeout(EasybackupError):
    """`wait(timeout)` ran out while stages were still running."""

    kind = "timeout"
    transient = True


# What any child may need from our environment. Everything else (AWS keys, Slack tokens, PGPASSWORD) stays
# behind: secrets never reach a child's environment (docs/architecture.md).
_BASE_ENV_KEYS = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "LD_LIBRARY_PATH")


def base_env(keep_prefixes: Sequence[str] = (), drop: Sequence[str] = (), **extra: str) -> dict[str, str]:
    """Given prefixes of variables a program needs (e.g. "PG"), return a child environment without secrets.

    Keeps the locale and path basics, variables starting with `keep_prefixes` except those in `drop`,
    then sets `extra`.
    """
    env = {}
    for key, value in os.environ.items():
        wanted = key in _BASE_ENV_KEYS or key.startswith("LC_") or key.startswith(tuple(keep_prefixes))
        if wanted and key not in drop:
            env[key] = value
    env.update(extra)
    return env


def describe_returncode(returncode: int) -> str:
    """Given a Popen returncode, return "exited with code N" or "killed by signal N (SIGNAME — why)"."""
    if returncode >= 0:
        return f"exited with code {returncode}"
    number = -returncode
    try:
        name = signal.Signals(number).name
    except ValueError:
        return f"killed by signal {number}"
    why = _SIGNAL_HINTS.get(number)
    return f"killed by signal {number} ({name} — {why})" if why else f"killed by signal {number} ({name})"


class _StderrReader(threading.Thread):
    """Drains one stage's stderr: splits lines, keeps partial ones across reads, cuts long ones."""

    def __init__(self, stage: str, fd: int, on_line: LineCallback | None):
        super().__init__(name=f"stderr-{stage}", daemon=True)
        self.stage = stage
        self.fd = fd
        self.on_line = on_line
        self.last_lines: collections.deque[str] = collections.deque(maxlen=LAST_LINES)
        self.callback_error: BaseException | None = None
        self.stop = threading.Event()
        self._partial = b""
        self._skipping = False  # inside the rest of a line that was already cut
        self._stop_deadline: float | None = None
        self._poller = select.poll()
        self._poller.register(fd, select.POLLIN)

    def run(self) -> None:
        try:
            while self._read_once():
                pass
            if self._partial and not self._skipping:
                self._emit(self._partial)
        finally:
            os.close(self.fd)  # this thread owns the fd, so nobody closes it under a blocked read

    def _read_once(self) -> bool:
        """Read what is there; return False on EOF, or when told to stop and nothing more is waiting."""
        ready = self._poller.poll(_POLL_S * 1000)  # poll, not select: fds above 1023 work too
        if self.stop.is_set():
            # The stage is reaped; a grandchild that still holds stderr gets a bounded drain, not forever.
            self._stop_deadline = self._stop_deadline or time.monotonic() + _DRAIN_AFTER_STOP_S
            if not ready or time.monotonic() > self._stop_deadline:
                return False
        elif not ready:
            return True
        data = os.read(self.fd, _READ_SIZE)
        if not data:
            return False
        self._feed(data)
        return True

    def _feed(self, data: bytes) -> None:
        *complete, self._partial = (self._partial + data).split(b"\n")
        for line in complete:
            if self._skipping:
                self._skipping = False
            else:
                self._emit(line)
        if len(self._partial) > MAX_LINE_BYTES:
            if not self._skipping:
                self._emit(self._partial)
            self._skipping, self._partial = True, b""

    def _emit(self, raw: bytes) -> None:
        text = raw[:MAX_LINE_BYTES].decode("utf-8", errors="replace").rstrip("\r")
        if len(raw) > MAX_LINE_BYTES:
            text += CUT_MARK
        self.last_lines.append(text)
        if self.on_line is None or self.callback_error is not None:
            return
        try:
            self.on_line(self.stage, text)
        except Exception as exc:  # keep draining, or the stage stalls; wait() re-raises it
            self.callback_error = exc


class _Relay(threading.Thread):
    """Moves bytes from one pipe (`src`) to another (`dst`) until EOF, counting them in `bytes_moved`.

    Owns both fds and closes them when done: `dst` first, so the reader sees EOF; then `src`, so a writer
    still writing gets SIGPIPE (the next stage stopped reading) — the same story as without a relay.
    """

    def __init__(self, stage: str, src: int, dst: int, keep_tail: bool = False):
        super().__init__(name=f"relay-{stage}", daemon=True)
        self.src = src
        self.dst = dst
        self.keep_tail = keep_tail
        self.bytes_moved = 0  # written by this thread only; an int store is atomic for readers
        self.head = b""  # the first HEAD_BYTES moved (fewer if the stream was shorter); complete after join()
        self.tail = b""  # the last TAIL_BYTES moved, with keep_tail; complete after join()
        self.error: OSError | None = None
        self.spliced = False  # True once splice(2) moved data (else read/write did)

    def run(self) -> None:
        try:
            self._move()
        except BrokenPipeError:
            pass  # the next stage is gone: closing src passes that on upstream, wait() names the culprit
        except OSError as exc:  # kept for wait(): a relay that cannot move data is a bug, not a dump failure
            self.error = exc
        finally:
            os.close(self.dst)
            os.close(self.src)

    def _move(self) -> None:
        self._move_head()
        if self.keep_tail:
            self.tail = self.head[-TAIL_BYTES:]
        splice = getattr(os, "splice", None)
        if splice is not None and self.keep_tail:
            try:
                self._splice_keeping_tail(splice)
                return
            except OSError as exc:
                if exc.errno not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP) or self.spliced:
                    raise
        elif splice is not None:
            try:
                moved = splice(self.src, self.dst, _RELAY_CHUNK)
            except OSError as exc:
                if exc.errno not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
                    raise
            else:
                self.spliced = True
                while moved:
                    self.bytes_moved += moved
                    moved = splice(self.src, self.dst, _RELAY_CHUNK)
                return
        self._copy()

    def _move_head(self) -> None:
        """Move the first HEAD_BYTES through user space, keeping them: each read is passed on at once."""
        head = bytearray()
        while len(head) < HEAD_BYTES and (data := os.read(self.src, HEAD_BYTES - len(head))):
            self._write_all(data)
            head += data
        self.head = bytes(head)

    def _splice_keeping_tail(self, splice) -> None:
        """Move everything, splicing all but the last TAIL_BYTES that wait in the pipe and reading those: after a
        splice at least TAIL_BYTES wait, so the bytes read last are always the stream's newest, in order."""
        poller = select.poll()
        poller.register(self.src, select.POLLIN)
        waiting = array.array("i", [0])
        while True:
            poller.poll()  # data, or the writer gone (POLLHUP)
            fcntl.ioctl(self.src, termios.FIONREAD, waiting)
            if waiting[0] > TAIL_BYTES:
                moved = splice(self.src, self.dst, waiting[0] - TAIL_BYTES)
                self.spliced = True
                self.bytes_moved += moved
                continue
            data = os.read(self.src, TAIL_BYTES)
            if not data:
                return
            self._write_all(data)
            self.tail = (self.tail + data)[-TAIL_BYTES:]

    def _copy(self) -> None:
        """The fallback where splice(2) is missing: read and write through user space."""
        while data := os.read(self.src, _RELAY_CHUNK):
            self._write_all(data)
            if self.keep_tail:
                self.tail = (self.tail + data[-TAIL_BYTES:])[-TAIL_BYTES:]

    def _write_all(self, data: bytes) -> None:
        with memoryview(data) as view:
            written = 0
            while written < len(data):
                written += os.write(self.dst, view[written:])
        self.bytes_moved += len(data)


def _widen_pipe(fd: int) -> None:
    """Given a pipe fd, ask for a 1 MiB buffer; a refusal (a lowered pipe-max-size) leaves it as it is."""
    try:
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, _RELAY_PIPE_SIZE)
    except (OSError, AttributeError):
        pass  # only a speed-up: 64 KiB pipes work, with more wake-ups


class Pipeline:
    """Given stage specs, run them chained stdout -> stdin; see the module docstring.

    `count_after` names a stage whose output is counted on its way to the next link (`bytes_counted`), its first
    bytes kept (`head`) and, with `keep_tail`, its last (`tail`).
    """

    def __init__(self, stages: Sequence[StageSpec], on_line: LineCallback | None = None, stdin=None,
                 count_after: str | None = None, keep_tail: bool = False):
        if not stages:
            raise ValueError("a pipeline needs at least one stage")
        names = [stage.name for stage in stages]
        if len(set(names)) != len(names):
            raise ValueError(f"stage names must be unique: {names}")
        if count_after is not None and count_after not in names:
            raise ValueError(f"count_after names no stage: {count_after!r} (stages: {names})")
        self.stages = list(stages)
        self.on_line = on_line
        self.stdin = subprocess.DEVNULL if stdin is None else stdin
        self.count_after = count_after
        self.keep_tail = keep_tail
        self.output_fd: int | None = None
        self._procs: list[subprocess.Popen] = []
        self._readers: list[_StderrReader] = []
        self._relay: _Relay | None = None
        self._closed = False

    # -- starting ------------------------------------------------------------------------------------------

    def __enter__(self) -> Pipeline:
        self.start()
        return self

    def start(self) -> Pipeline:
        """Start every stage; raise StageStartError (after stopping the started ones) if one cannot start."""
        if self._procs:
            raise RuntimeError("pipeline already started")
        upstream = self.stdin
        owned: int | None = None  # the read end of the previous link, ours to close once handed on
        try:
            for spec in self.stages:
                read_end, write_end = os.pipe()
                # Wide links between stages too (compressor → age): a stage then blocks once per 1 MiB, not per
                # 64 KiB — on a loaded machine each wake-up waits for the scheduler (README, Encryption's cost).
                _widen_pipe(read_end)
                try:
                    self._spawn(spec, upstream, write_end)
                except BaseException:
                    os.close(read_end)
                    raise
                finally:
                    os.close(write_end)  # the child has its copy; ours would keep EOF from ever coming
                    if owned is not None:
                        os.close(owned)
                        owned = None
                upstream = owned = read_end
                if spec.name == self.count_after:
                    owned = None  # handed to the relay, which closes it
                    upstream = owned = self._start_relay(spec.name, read_end)
            self.output_fd, owned = owned, None
        except BaseException:
            if owned is not None:
                os.close(owned)
            self.close()
            raise
        return self

    def _start_relay(self, stage: str, src: int) -> int:
        """Given the read end of `stage`'s output, start the counting relay; return the new read end."""
        try:
            read_end, write_end = os.pipe()
        except BaseException:
            os.close(src)
            raise
        for fd in (src, write_end):
            _widen_pipe(fd)
        self._relay = _Relay(stage, src, write_end, keep_tail=self.keep_tail)
        self._relay.start()
        return read_end

    def _spawn(self, spec: StageSpec, stdin, stdout_fd: int) -> None:
        err_read, err_write = os.pipe()
        try:
            proc = subprocess.Popen(list(spec.argv), stdin=stdin, stdout=stdout_fd, stderr=err_write,
                                    env=spec.env, close_fds=True)
        except (FileNotFoundError, PermissionError, NotADirectoryError) as exc:
            os.close(err_read)
            program = spec.argv[0] if spec.argv else "(empty argv)"
            raise StageStartError(spec.name, program, exc.strerror or str(exc)) from exc
        except BaseException:
            os.close(err_read)
            raise
        finally:
            os.close(err_write)
        self._procs.append(proc)
        reader = _StderrReader(spec.name, err_read, self.on_line)
        self._readers.append(reader)
        reader.start()

    # -- inspecting ----------------------------------------------------------------------------------------

    @property
    def output(self) -> int | None:
        """Alias of `output_fd` (the name docs/architecture.md uses)."""
        return self.output_fd

    def pids(self) -> dict[str, int]:
        """Return {stage name: pid} of the started stages, in pipeline order."""
        return {spec.name: proc.pid for spec, proc in zip(self.stages, self._procs, strict=False)}

    def last_lines(self, stage: str) -> list[str]:
        """Given a stage name, return its last stderr lines (at most LAST_LINES)."""
        for reader in self._readers:
            if reader.stage == stage:
                return list(reader.last_lines)
        raise KeyError(stage)

    @property
    def head(self) -> bytes:
        """Return the first HEAD_BYTES the `count_after` stage wrote (complete after wait()), b"" without it."""
        return b"" if self._relay is None else self._relay.head

    @property
    def tail(self) -> bytes:
        """Return the last TAIL_BYTES the `count_after` stage wrote (complete after wait()); b"" without keep_tail."""
        return b"" if self._relay is None else self._relay.tail

    @property
    def bytes_counted(self) -> int | None:
        """Return the bytes the `count_after` stage wrote so far (all of them after wait()), None without it."""
        return None if self._relay is None else self._relay.bytes_moved

    def exit_codes(self) -> dict[str, int | None]:
        """Return {stage: Popen returncode} (None while running; negative: killed by that signal)."""
        return {spec.name: proc.poll() for spec, proc in zip(self.stages, self._procs, strict=False)}

    # -- waiting and stopping ------------------------------------------------------------------------------

    def wait(self, timeout: float | None = None) -> dict[str, int]:
        """Wait for every stage; return {stage: 0}; raise StageFailed naming the root-cause stage.

        Raise PipelineTimeout if stages still run after `timeout` seconds (they keep running: call kill()).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        for spec, proc in zip(self.stages, self._procs, strict=True):
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                proc.wait(remaining)
            except subprocess.TimeoutExpired:
                raise PipelineTimeout(f"{spec.name} still running after {timeout:g}s",
                                      exit_codes=self.exit_codes()) from None
        self._finish_readers()
        codes = {spec.name: proc.returncode for spec, proc in zip(self.stages, self._procs, strict=True)}
        failure = self._root_cause(codes)
        if failure is not None:
            raise failure
        for reader in self._readers:
            if reader.callback_error is not None:
                raise reader.callback_error
        if self._relay is not None and self._relay.error is not None:
            raise EasybackupError(f"the byte counter after {self.count_after} failed",
                                  detail=str(self._relay.error), kind="internal") from self._relay.error
        return codes

    def _root_cause(self, codes: dict[str, int]) -> StageFailed | None:
        """Given every exit code, return the error of the first failed stage that is not a SIGPIPE victim."""
        failed = [i for i, spec in enumerate(self.stages) if codes[spec.name] != 0]
        for position, index in enumerate(failed):
            downstream_failed = position + 1 < len(failed)
            if downstream_failed and self._died_of_broken_pipe(index, codes):
                continue  # its reader died first: blame the reader, the root cause
            spec = self.stages[index]
            lines = [mask(line) for line in self._readers[index].last_lines]
            return StageFailed(spec.name, codes[spec.name], describe_returncode(codes[spec.name]),
                               kind=spec.failure_kind, exit_codes=codes, last_lines=lines)
        return None

    def _died_of_broken_pipe(self, index: int, codes: dict[str, int]) -> bool:
        code = codes[self.stages[index].name]
        if code in (-signal.SIGPIPE, 128 + signal.SIGPIPE):
            return True
        # Programs that ignore SIGPIPE (Python, libpq clients) exit with an error that says so.
        return any("Broken pipe" in line or "BrokenPipeError" in line for line in self._readers[index].last_lines)

    def kill(self, grace: float = 2.0) -> None:
        """SIGTERM every live stage, wait up to `grace` seconds, SIGKILL what is left, and reap them all."""
        live = [proc for proc in self._procs if proc.poll() is None]
        for proc in live:
            proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for proc in live:
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
        for proc in live:
            proc.wait()

    def close_output(self) -> None:
        """Close the read end of the last stage's stdout (idempotent); the pipeline owns that fd."""
        if self.output_fd is not None:
            fd, self.output_fd = self.output_fd, None
            os.close(fd)

    def close(self, grace: float = 2.0) -> None:
        """Stop what still runs, reap every child, join the stderr readers and close every fd we hold."""
        if self._closed:
            return
        self._closed = True
        try:
            self.kill(grace)
        finally:
            self.close_output()
            self._finish_readers()

    def _finish_readers(self) -> None:
        # The children are reaped, but a grandchild may still hold a stderr open: stop polling then.
        for reader in self._readers:
            reader.stop.set()
        for reader in self._readers:
            reader.join()
        # The relay ends at EOF (its stage is reaped) or EPIPE (the next one is, or output_fd was closed).
        if self._relay is not None:
            self._relay.join()

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close()
