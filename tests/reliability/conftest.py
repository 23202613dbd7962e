"""The fault matrix's shared parts: a marked environment for every process it starts, and the check that none of
them survives a test (or the suite).

Every CLI run here gets `LC_EASYBACKUP_FAULT_SUITE=<token>` in its environment. easybackup hands LC_* variables on
to every child (the worker, pg_dump, the compressors keep the locale basics), so the marker finds exactly the
processes these tests started — never a test's running beside them or a developer's own.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from tests.harness.configs import EASYBACKUP, cli_env
from tests.harness.daemon import daemon_factory, parse_metrics, stat_fields, workers_of
from tests.harness.restore import archive_keys, download, manifest_keys, sha256_of
from tests.harness.slack_server import DEFAULT_TOKEN

MARKER = "LC_EASYBACKUP_FAULT_SUITE"
TOKEN = uuid.uuid4().hex
SLACK_CHANNEL = "C0123456789"
SETTLE_S = 5.0


def suite_env(**extra: str) -> dict:
    """Return cli_env(**extra) with the suite's marker: every process started with it is checked for leftovers."""
    return cli_env(**{MARKER: TOKEN}, **extra)


def marked_processes() -> dict[int, str]:
    """Return {pid: command line} of every live (not zombie) process that carries this session's marker."""
    found = {}
    needle = f"{MARKER}={TOKEN}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            argv = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        fields = stat_fields(int(entry.name))
        if needle in environ.split(b"\0") and fields and fields[0] != "Z":
            found[int(entry.name)] = argv
    return found


def leftovers(settle: float = SETTLE_S) -> dict[int, str]:
    """Return the marked processes still running after up to `settle` seconds (a worker finishing its abort)."""
    deadline = time.monotonic() + settle
    while (found := marked_processes()) and time.monotonic() < deadline:
        time.sleep(0.1)
    return found


def kill_all(pids) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:  # gone meanwhile
            pass


@pytest.fixture(autouse=True)
def nothing_left_behind():
    """After each test (and after its fixtures stopped the CLI processes they own): no process it started survives —
    no orphaned worker, pg_dump or compressor. Survivors are killed (so one failure does not spill into the next
    test) and fail the test."""
    yield
    found = leftovers()
    kill_all(found)
    assert not found, f"processes left behind: {found}"


@pytest.fixture(scope="session", autouse=True)
def no_process_survives_the_suite():
    """The session-level check: once every test ran, no process started by these tests is still running."""
    yield
    found = leftovers()
    kill_all(found)
    assert not found, f"processes left behind by the fault matrix: {found}"


# bytes/s from PostgreSQL to pg_dump through `throttled`: a small database then streams for seconds whatever the
# machine's load, so a test can act mid-stream.
THROTTLE = 200_000


@pytest.fixture
def throttled(pg, fault_proxy):
    """A fault proxy in front of PostgreSQL that lets THROTTLE bytes/s through."""
    proxy = fault_proxy(pg.host, pg.port, "tcp")
    proxy.throttle(THROTTLE)
    return proxy


@pytest.fixture
def start_daemon(tmp_path):
    """A factory: start_daemon(config, port, env=suite_env(), prefix=()) -> Daemon; killed after the test."""
    factory = daemon_factory(tmp_path)
    start = next(factory)
    try:
        yield lambda config, port, env=None, prefix=(): start(config, port, env or suite_env(), prefix)
    finally:
        factory.close()


def slack_settings(api_url: str) -> dict:
    """The `slack` section that points a config at the harness's Slack server."""
    return {"bot_token": DEFAULT_TOKEN, "channel_id": SLACK_CHANNEL, "api_url": api_url}


# -------------------------------------------------------------------------------------------- `once` runs


class OnceRun:
    """`easybackup once -c CONFIG --metrics-file ...` in the background, as cron starts it, with the suite's marker;
    its stdout and stderr go to files (a full pipe would stall it)."""

    def __init__(self, config: Path, directory: Path, env: dict | None = None, args: tuple[str, ...] = ()):
        self.metrics_file = directory / "once.prom"
        self._out = directory / "once.stdout"
        self._err = directory / "once.stderr"
        with open(self._out, "wb") as out, open(self._err, "wb") as err:
            self.process = subprocess.Popen(
                [*EASYBACKUP, "once", "-c", str(config), "--metrics-file", str(self.metrics_file), *args],
                env=env or suite_env(), stdout=out, stderr=err)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def stdout(self) -> str:
        return self._out.read_text(errors="replace")

    @property
    def stderr(self) -> str:
        return self._err.read_text(errors="replace")

    def output(self) -> str:
        return f"--- stdout\n{self.stdout}\n--- stderr\n{self.stderr[-6000:]}"

    def wait(self, timeout: float = 90) -> int:
        """Wait for the exit; return the exit code."""
        return self.process.wait(timeout)

    def running(self) -> bool:
        return self.process.poll() is None

    def worker(self, timeout: float = 20) -> int:
        """Wait for the one worker of this run to start; return its pid."""
        deadline = time.monotonic() + timeout
        while not (found := workers_of(self.pid)):
            assert self.running(), f"once exited early with {self.process.returncode}:\n{self.output()}"
            assert time.monotonic() < deadline, "no worker started"
            time.sleep(0.05)
        return found[0]

    def metrics(self) -> dict[tuple, float]:
        """Return the samples once wrote to its --metrics-file."""
        return parse_metrics(self.metrics_file.read_text())

    def kill(self) -> None:
        """Leave nothing behind: SIGKILL the worker groups and the CLI."""
        for worker in workers_of(self.pid):
            try:
                os.killpg(worker, signal.SIGKILL)
            except ProcessLookupError:  # gone meanwhile
                pass
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def start_once(tmp_path):
    """A factory: start_once(config, env=None, args=()) -> OnceRun; every run still going is killed afterwards."""
    runs: list[OnceRun] = []

    def start(config: Path, env: dict | None = None, args: tuple[str, ...] = ()) -> OnceRun:
        directory = tmp_path / f"once-{len(runs)}"
        directory.mkdir()
        run = OnceRun(config, directory, env, args)
        runs.append(run)
        return run

    try:
        yield start
    finally:
        for run in runs:
            run.kill()


def runs_total(samples: dict, strategy: str, status: str) -> float:
    """Given metric samples, return easybackup_backup_runs_total{strategy, status}."""
    return samples[("easybackup_backup_runs_total", (("status", status), ("strategy", strategy)))]


# ------------------------------------------------------------------------------------------------ outcomes


def assert_nothing_stored(moto, bucket: str) -> None:
    """No archive, no manifest and no open multipart upload: the backup left nothing."""
    assert archive_keys(moto, bucket) == [], "a partial archive was left"
    assert manifest_keys(moto, bucket) == [], "a manifest was written for a failed backup"
    assert moto.open_uploads(bucket) == [], "a multipart upload was left open"


def assert_one_whole_backup(moto, bucket: str) -> dict:
    """Exactly one archive, its manifest, no open upload, and the archive is what the manifest says; return the
    manifest."""
    [archive] = archive_keys(moto, bucket)
    [manifest_key] = manifest_keys(moto, bucket)
    assert moto.open_uploads(bucket) == []
    manifest = json.loads(download(moto, bucket, manifest_key))
    stored = download(moto, bucket, archive)
    assert manifest["key"] == archive
    assert (manifest["stored_bytes"], manifest["sha256"]) == (len(stored), sha256_of(stored))
    return manifest


def slack_run(slack) -> tuple[dict, list[dict], dict]:
    """Return the one run's parent message, its thread and the parent's final edit (chat.update)."""
    parents = [m for m in slack.messages(SLACK_CHANNEL) if "thread_ts" not in m]
    assert len(parents) == 1, parents
    [update] = slack.updates(parents[0]["ts"])
    return parents[0], slack.thread(parents[0]["ts"]), update


def assert_slack_failed(slack, kind: str) -> list[str]:
    """The run is one Slack thread whose parent ends as failed with `[kind]` and whose last reply is the final
    report; return the texts of the thread's replies."""
    _parent, thread, update = slack_run(slack)
    assert update["text"].startswith("❌ Backup failed: *main*"), update["text"]
    assert f"[{kind}]" in update["text"], update["text"]
    texts = [reply["text"] for reply in thread]
    assert "Final report" in texts[-1] and "failed" in texts[-1], texts
    return texts


def assert_slack_succeeded(slack) -> list[str]:
    """The run is one Slack thread whose parent ends as succeeded; return the texts of the replies."""
    _parent, thread, update = slack_run(slack)
    assert update["text"].startswith("✅ Backup succeeded: *main*"), update["text"]
    texts = [reply["text"] for reply in thread]
    assert "Final report" in texts[-1] and "succeeded" in texts[-1], texts
    return texts
