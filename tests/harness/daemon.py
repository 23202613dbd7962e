"""Running `easybackup run` in tests, and finding the processes it started: health and metrics over HTTP, its log
in a file, its workers and their process groups read from /proc."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.harness.configs import EASYBACKUP, cli_env


class Daemon:
    """One `easybackup run -c CONFIG` process (or the command line `args`, as typed), its log in a file, its health
    and metrics on `port`."""

    def __init__(self, config: Path, port: int, log: Path, env: dict | None = None, prefix: tuple[str, ...] = (),
                 args: tuple[str, ...] | None = None):
        self.config, self.port, self.log = config, port, log
        self._log_file = open(log, "ab")  # noqa: SIM115 — closed in stop()
        argv = args if args is not None else ("run", "-c", str(config))
        self.process = subprocess.Popen([*prefix, *EASYBACKUP, *argv], env=env or cli_env(),
                                        stdout=subprocess.DEVNULL, stderr=self._log_file)

    @property
    def pid(self) -> int:
        return self.process.pid

    def health(self) -> dict | None:
        """Return the health document, or None while nothing listens yet."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=5) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as error:
            return json.loads(error.read())
        except (urllib.error.URLError, ConnectionError):
            return None

    def strategy(self, name: str) -> dict:
        return (self.health() or {}).get("strategies", {}).get("last_backup_status", {}).get(name, {})

    def wait_health(self, predicate, timeout: float = 30, what: str = "health condition") -> dict:
        """Poll health until predicate(document) is true; return that document; fail with the last one."""
        deadline = time.monotonic() + timeout
        document = None
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"supervisor exited with {self.process.returncode}:\n{self.log_text()}"
            document = self.health()
            if document is not None and predicate(document):
                return document
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}; last health: {json.dumps(document, indent=1)}\n"
                             f"log:\n{self.log_text()[-4000:]}")

    def wait_status(self, name: str, status: str, timeout: float = 30) -> dict:
        return self.wait_health(lambda doc: doc["strategies"]["last_backup_status"].get(name, {}).get("status")
                                == status, timeout, f"{name} {status}")

    def metrics(self) -> dict[tuple, float]:
        """Return every sample as {(name, sorted label items): value}."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as response:
            text = response.read().decode()
        return parse_metrics(text)

    def wait_log(self, text: str, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log_text():
            assert time.monotonic() < deadline, f"{text!r} never logged:\n{self.log_text()[-4000:]}"
            time.sleep(0.1)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def send(self, sig: int) -> None:
        self.process.send_signal(sig)

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM it and return its exit code."""
        if self.process.poll() is None:
            self.send(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        finally:
            self._log_file.close()

    def kill(self) -> None:
        """Leave nothing behind: SIGKILL the supervisor and every worker group it still has."""
        for worker in workers_of(self.pid):
            try:
                os.killpg(worker, signal.SIGKILL)
            except ProcessLookupError:  # already gone
                pass
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._log_file.close()


def daemon_factory(directory: Path) -> Iterator:
    """The body of a `start_daemon` fixture (`yield from daemon_factory(tmp_path)`): yield a factory
    start(config, port, env=None, prefix=()) -> Daemon with its log in `directory`, then kill every daemon it
    started. `prefix` goes before the command (a `faketime` wrapper)."""
    daemons: list[Daemon] = []

    def start(config: Path, port: int, env: dict | None = None, prefix: tuple[str, ...] = ()) -> Daemon:
        daemon = Daemon(config, port, directory / f"supervisor-{len(daemons)}.log", env, prefix)
        daemons.append(daemon)
        return daemon

    try:
        yield start
    finally:
        for daemon in daemons:
            daemon.kill()


def parse_metrics(text: str) -> dict[tuple, float]:
    """Given Prometheus text, return every sample as {(name, sorted label items): value}."""
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def stat_fields(pid: int) -> list[str] | None:
    """Return the fields of /proc/PID/stat after the command name (state, ppid, pgrp, ...), or None."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def all_pids() -> list[int]:
    return [int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit()]


def argv_of(pid: int) -> list[str]:
    """Return the argv of `pid` ([] when it is gone or a zombie)."""
    try:
        return [part.decode(errors="replace") for part in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                if part]
    except OSError:
        return []


def children_of(parent: int) -> list[int]:
    """Return the pids whose parent is `parent`."""
    return [pid for pid in all_pids() if (fields := stat_fields(pid)) and int(fields[1]) == parent]


def is_worker_argv(argv: list[str]) -> bool:
    """Given a process's argv, return whether it is an easybackup worker (`python -m easybackup.worker`)."""
    return any(argv[i:i + 2] == ["-m", "easybackup.worker"] for i in range(len(argv) - 1))


def workers_of(parent: int) -> list[int]:
    """Return the pids of the worker children of `parent`."""
    return [pid for pid in children_of(parent) if is_worker_argv(argv_of(pid))]


def group_of(pgid: int) -> list[int]:
    """Return the pids in process group `pgid` (a worker, its pg_dump and its compressor)."""
    return [pid for pid in all_pids() if (fields := stat_fields(pid)) and int(fields[2]) == pgid]


def alive(pids) -> list[int]:
    """Return those of `pids` that still run. A zombie has died: orphans (the pg_dump of a SIGKILLed worker) are
    reaped by PID 1 (tini in a container) in its own time."""
    return [pid for pid in pids if (fields := stat_fields(pid)) and fields[0] != "Z"]


def monitoring(port: int) -> dict:
    return {"health_check": {"port": port, "bind": "127.0.0.1"}, "metrics": {"port": port, "bind": "127.0.0.1"}}


def parse_utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def wait_until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)
