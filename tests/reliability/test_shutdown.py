"""Shutdown keeps running backups, and a quiet worker is not a hung one (issue 22, items 1 and 2).

Through the real parts: `easybackup run` (tests/harness/daemon.py) and `easybackup once` as an operator starts
them, PostgreSQL behind the fault proxy, moto's S3 server. The backup is made slow deterministically: the proxy lets
THROTTLE bytes/s through, so the dump needs about 5 s whatever the machine's load; a worker kept quiet waits behind
a `LOCK TABLE … IN ACCESS EXCLUSIVE MODE` another session holds.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from datetime import datetime, timezone

import pytest

from tests.harness.configs import write_config
from tests.harness.daemon import alive, children_of, group_of, monitoring, parse_utc, wait_until, workers_of
from tests.harness.net import free_port
from tests.harness.restore import manifest_keys
from tests.reliability.conftest import THROTTLE, assert_nothing_stored, assert_one_whole_backup, suite_env

DATABASE = "rel_shutdown"
ROWS = 6_000  # with pg_dump's catalogue queries ~950 kB through the proxy: the dump needs ~5 s
STREAMED_1S = THROTTLE  # bytes through the proxy after about a second of it
SILENCE_S = 5  # EASYBACKUP_WORKER_SILENCE_LIMIT in the quiet-worker tests


@pytest.fixture(scope="module")
def slow_db(pg) -> str:
    pg.create_database(DATABASE)
    pg.psql(f"CREATE TABLE items AS SELECT g AS id, md5(g::text) AS digest FROM generate_series(1, {ROWS}) g",
            DATABASE)
    return DATABASE


def shutdown_config(tmp_path, pg, port: int, moto, bucket: str, grace: str, **overrides):
    """A config with one strategy `main` that backs up the slow database through the proxy on `port`."""
    return write_config(tmp_path, bucket=bucket, endpoint=moto.endpoint,
                        strategies=[{"name": "main", "database_url": pg.url(DATABASE, port=port)}],
                        timeout={"backup": "5m", "upload": "1m", "shutdown_grace": grace}, **overrides)


def daemon_config(tmp_path, pg, proxy, moto, bucket: str, grace: str) -> tuple:
    port = free_port()
    return shutdown_config(tmp_path, pg, proxy.port, moto, bucket, grace, run_on_start=True,
                           monitoring=monitoring(port)), port


def wait_streaming(supervisor: int, proxy, moto, bucket: str, log=lambda: "") -> tuple[int, list[int]]:
    """Wait until the worker of `supervisor` has run for about a second with its upload open; return the worker's
    pid and its process group (worker, pg_dump, compressor). `log` returns the supervisor's log, for a failure."""
    deadline = time.monotonic() + 30
    while not (workers_of(supervisor) and moto.open_uploads(bucket) and proxy.bytes_down > STREAMED_1S):
        assert time.monotonic() < deadline, f"the dump never streamed ({proxy.bytes_down} bytes):\n{log()[-4000:]}"
        time.sleep(0.05)
    [worker] = workers_of(supervisor)
    group = group_of(worker)
    assert len(group) >= 3, f"expected worker, pg_dump and compressor in group {worker}: {group}"
    return worker, group


def assert_finished_after(moto, bucket: str, moment: datetime) -> dict:
    """One whole backup whose manifest was written after `moment` (the signal): the backup went on after it."""
    manifest = assert_one_whole_backup(moto, bucket)
    assert parse_utc(manifest["finished_at"]) >= moment.replace(microsecond=0), (manifest, moment)
    return manifest


def signal_and_time(send, sig: int = signal.SIGTERM) -> tuple[datetime, float]:
    moment, started = datetime.now(timezone.utc), time.monotonic()
    send(sig)
    return moment, started


# -------------------------------------------------------------------------------------- the supervisor


def test_sigterm_lets_the_running_backup_finish_within_the_grace_and_the_supervisor_exits_0_having_stayed_healthy(
        pg, slow_db, moto, bucket, tmp_path, throttled, start_daemon):
    config, port = daemon_config(tmp_path, pg, throttled, moto, bucket, grace="30s")
    daemon = start_daemon(config, port)
    worker, group = wait_streaming(daemon.pid, throttled, moto, bucket, daemon.log_text)
    moment, started = signal_and_time(daemon.send)
    during_grace = []
    while daemon.process.poll() is None:
        document = daemon.health()  # the loop no longer ticks, yet health keeps answering, and healthy
        if document is not None:
            during_grace.append((document["status"], document["strategies"]["last_backup_status"]["main"]["status"]))
        time.sleep(0.2)
        assert time.monotonic() - started < 30, "not finished within the grace"
    assert daemon.process.returncode == 0, daemon.log_text()[-4000:]
    assert time.monotonic() - started >= 1.0, "the backup still needed seconds when the signal came"
    assert during_grace and all(status != "unhealthy" for status, _ in during_grace), during_grace
    assert ("healthy", "running") in during_grace or ("degraded", "running") in during_grace, during_grace
    assert_finished_after(moto, bucket, moment)
    log = daemon.log_text()
    assert "may finish for up to 30 s" in log
    assert f"worker pid {worker} exited with code 0 (ok)" in log, "the worker was never signalled"
    assert "cancelling it" not in log and alive(group) == []


def test_a_backup_still_running_when_the_grace_ends_is_cancelled_its_upload_aborted_and_nothing_is_left(
        pg, slow_db, moto, bucket, tmp_path, throttled, start_daemon):
    config, port = daemon_config(tmp_path, pg, throttled, moto, bucket, grace="1s")
    daemon = start_daemon(config, port)
    worker, group = wait_streaming(daemon.pid, throttled, moto, bucket, daemon.log_text)
    _moment, started = signal_and_time(daemon.send)
    assert daemon.process.wait(30) == 0, daemon.log_text()[-4000:]
    elapsed = time.monotonic() - started
    assert 1.0 <= elapsed < 1.0 + 10, f"the grace (1 s) was given, then the cancel took {elapsed:.1f} s"
    log = daemon.log_text()
    assert "still running at the end of its shutdown grace; cancelling it" in log
    assert "backup cancelled: [cancelled] cancelled" in log, "the worker cancelled itself, not pg_dump a signal"
    assert f"worker pid {worker} exited with code 5 (cancelled)" in log
    assert alive(group) == []
    assert_nothing_stored(moto, bucket)


def test_a_second_sigterm_cancels_the_running_backup_at_once(pg, slow_db, moto, bucket, tmp_path, throttled,
                                                            start_daemon):
    config, port = daemon_config(tmp_path, pg, throttled, moto, bucket, grace="30s")
    daemon = start_daemon(config, port)
    _worker, group = wait_streaming(daemon.pid, throttled, moto, bucket, daemon.log_text)
    daemon.send(signal.SIGTERM)
    daemon.wait_log("may finish for up to 30 s")
    _moment, started = signal_and_time(daemon.send)
    assert daemon.process.wait(30) == 0, daemon.log_text()[-4000:]
    assert time.monotonic() - started < 5, "cancelled at once, not after the grace"
    assert "received SIGTERM again: cancelling 1 running backup(s) now" in daemon.log_text()
    assert alive(group) == []
    assert_nothing_stored(moto, bucket)


@pytest.mark.parametrize("how", ["tini, as the image runs it (docker stop, a pod's deletion)",
                                 "SIGTERM to the supervisor's whole process group"])
def test_a_signal_reaches_only_the_supervisor_never_its_workers_or_pg_dump(how, pg, slow_db, moto, bucket, tmp_path,
                                                                          throttled, start_daemon):
    """The workers run in their own sessions: neither tini (which forwards to its child) nor a signal to the
    supervisor's process group (a terminal's Ctrl-C, `kill -- -PGID`) reaches them; only the supervisor decides."""
    config, port = daemon_config(tmp_path, pg, throttled, moto, bucket, grace="30s")
    under_tini = how.startswith("tini")
    daemon = start_daemon(config, port, prefix=("tini", "--") if under_tini else ("setsid",))
    if under_tini:
        wait_until(lambda: children_of(daemon.pid), 10, "tini to start the supervisor")
        [supervisor] = children_of(daemon.pid)
    else:
        supervisor = daemon.pid
        wait_until(lambda: os.getpgid(supervisor) == supervisor, 10, "setsid to make it lead its own group")
    try:
        worker, group = wait_streaming(supervisor, throttled, moto, bucket, daemon.log_text)
        assert os.getsid(worker) == worker != os.getsid(supervisor), "the worker leads a session of its own"
        moment, _started = signal_and_time(daemon.send if under_tini else lambda sig: os.killpg(supervisor, sig))
        assert daemon.process.wait(30) == 0, daemon.log_text()[-4000:]
    finally:
        if under_tini and alive([supervisor]):  # the harness kills tini; its child would outlive it
            os.kill(supervisor, signal.SIGKILL)
    assert_finished_after(moto, bucket, moment)
    assert f"worker pid {worker} exited with code 0 (ok)" in daemon.log_text()
    assert alive(group) == []


# ----------------------------------------------------------------------------------------------- `once`


def once_config(tmp_path, pg, proxy, moto, bucket: str, grace: str):
    return shutdown_config(tmp_path, pg, proxy.port, moto, bucket, grace)


def test_sigterm_lets_once_finish_its_running_backup_within_the_grace_and_exit_0(pg, slow_db, moto, bucket, tmp_path,
                                                                                throttled, start_once):
    run = start_once(once_config(tmp_path, pg, throttled, moto, bucket, grace="30s"))
    worker, group = wait_streaming(run.pid, throttled, moto, bucket, lambda: run.stderr)
    moment, started = signal_and_time(run.process.send_signal)
    assert run.wait(30) == 0, run.output()
    assert time.monotonic() - started >= 1.0, "the backup still needed seconds when the signal came"
    assert_finished_after(moto, bucket, moment)
    assert "may finish for up to 30 s" in run.stderr
    assert f"worker pid {worker} exited with code 0 (ok)" in run.stderr, run.output()
    assert alive(group) == []


def test_once_cancels_a_backup_still_running_when_the_grace_ends_exits_143_and_leaves_nothing(
        pg, slow_db, moto, bucket, tmp_path, throttled, start_once):
    run = start_once(once_config(tmp_path, pg, throttled, moto, bucket, grace="1s"))
    _worker, group = wait_streaming(run.pid, throttled, moto, bucket, lambda: run.stderr)
    _moment, started = signal_and_time(run.process.send_signal)
    assert run.wait(30) == 143, run.output()
    elapsed = time.monotonic() - started
    assert 1.0 <= elapsed < 1.0 + 10, f"the grace (1 s) was given, then the cancel took {elapsed:.1f} s"
    assert "cancelled" in next(line for line in run.stdout.splitlines() if line.startswith("main ")), run.output()
    assert alive(group) == []
    assert_nothing_stored(moto, bucket)


def test_a_second_sigterm_makes_once_cancel_at_once_and_exit_143(pg, slow_db, moto, bucket, tmp_path, throttled,
                                                                start_once):
    run = start_once(once_config(tmp_path, pg, throttled, moto, bucket, grace="30s"))
    _worker, group = wait_streaming(run.pid, throttled, moto, bucket, lambda: run.stderr)
    run.process.send_signal(signal.SIGTERM)
    wait_until(lambda: "may finish for up to 30 s" in run.stderr, 10, "the first SIGTERM to be handled")
    _moment, started = signal_and_time(run.process.send_signal)
    assert run.wait(30) == 143, run.output()
    assert time.monotonic() - started < 5, "cancelled at once, not after the grace"
    assert alive(group) == []
    assert_nothing_stored(moto, bucket)


# --------------------------------------------------------------------------------- a quiet worker lives


class TableLock:
    """`LOCK TABLE … IN ACCESS EXCLUSIVE MODE` held by a psql session of its own until `release()`."""

    def __init__(self, pg, database: str, table: str):
        self.pg, self.database, self.table = pg, database, table
        self.process = subprocess.Popen(pg.client_argv(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", database]),
                                        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=pg.env())
        self.process.stdin.write(f"BEGIN;\nLOCK TABLE {table} IN ACCESS EXCLUSIVE MODE;\n")
        self.process.stdin.flush()
        wait_until(lambda: self._locks("AccessExclusiveLock", "true") == 1, 15, "the lock to be taken")

    def _locks(self, mode: str, granted: str) -> int:
        return int(self.pg.psql(f"SELECT count(*) FROM pg_locks WHERE relation = '{self.table}'::regclass "
                                f"AND mode = '{mode}' AND granted = {granted}", self.database))

    def waiting(self) -> bool:
        """Return whether somebody (pg_dump) waits for a share of the locked table."""
        return self._locks("AccessShareLock", "false") >= 1

    def release(self) -> None:
        if self.process.poll() is None:
            self.process.stdin.write("COMMIT;\n")
            self.process.stdin.close()
            self.process.wait(15)


@pytest.fixture
def table_lock(pg, slow_db):
    locks = []

    def take() -> TableLock:
        locks.append(TableLock(pg, slow_db, "items"))
        return locks[-1]

    yield take
    for lock in locks:
        lock.release()


def start_behind_a_lock(tmp_path, pg, moto, bucket: str, table_lock, start_daemon) -> tuple:
    """Lock the table, start a supervisor whose silence limit is SILENCE_S and wait until its run's pg_dump waits on
    the lock; return (daemon, lock)."""
    port = free_port()
    config = shutdown_config(tmp_path, pg, pg.port, moto, bucket, "10s", run_on_start=True,
                             monitoring=monitoring(port))
    lock = table_lock()
    daemon = start_daemon(config, port, env=suite_env(EASYBACKUP_WORKER_SILENCE_LIMIT=f"{SILENCE_S}s"))
    wait_until(lock.waiting, 30, "pg_dump to wait on the lock")
    return daemon, lock


def test_a_dump_waiting_on_a_lock_longer_than_the_silence_limit_is_not_killed_and_completes_once_it_is_released(
        pg, slow_db, moto, bucket, tmp_path, table_lock, start_daemon):
    daemon, lock = start_behind_a_lock(tmp_path, pg, moto, bucket, table_lock, start_daemon)
    [worker] = workers_of(daemon.pid)
    time.sleep(3 * SILENCE_S)  # pg_dump sends nothing all this time; the worker's heartbeat does
    assert alive([worker]) == [worker], daemon.log_text()[-4000:]
    assert lock.waiting(), "pg_dump was still waiting: the worker was quiet the whole time"
    lock.release()
    view = daemon.wait_status("main", "success", timeout=60)["strategies"]["last_backup_status"]["main"]
    assert view["consecutive_failures"] == 0
    assert daemon.stop() == 0
    assert "sent no event" not in daemon.log_text()
    manifest = assert_one_whole_backup(moto, bucket)
    assert manifest["duration_s"] >= 3 * SILENCE_S


def test_a_sigstopped_worker_is_still_killed_after_the_silence_limit_and_its_upload_aborted(
        pg, slow_db, moto, bucket, tmp_path, table_lock, start_daemon):
    daemon, lock = start_behind_a_lock(tmp_path, pg, moto, bucket, table_lock, start_daemon)
    wait_until(lambda: moto.open_uploads(bucket), 30, "the multipart upload to open")
    [worker] = workers_of(daemon.pid)
    group = group_of(worker)
    os.kill(worker, signal.SIGSTOP)  # frozen: its heartbeat thread stops with it
    stopped = time.monotonic()
    view = daemon.wait_status("main", "failed", timeout=SILENCE_S + 15)["strategies"]["last_backup_status"]["main"]
    assert time.monotonic() - stopped >= SILENCE_S - 1.5, "killed for silence, not before its limit"
    assert view["error_kind"] == "crashed" and f"worker sent no event for {SILENCE_S} s" in view["error"], view
    wait_until(lambda: moto.open_uploads(bucket) == [], 20, "the killed worker's upload to be aborted")
    assert alive(group) == [], "pg_dump went with its worker"
    assert daemon.stop() == 0
    lock.release()
    assert manifest_keys(moto, bucket) == []


def test_once_lets_a_quiet_worker_live_and_kills_a_frozen_one_after_the_silence_limit(
        pg, slow_db, moto, bucket, tmp_path, table_lock, start_once):
    config = shutdown_config(tmp_path, pg, pg.port, moto, bucket, "10s")
    env = suite_env(EASYBACKUP_WORKER_SILENCE_LIMIT=f"{SILENCE_S}s")
    lock = table_lock()
    run = start_once(config, env=env)
    wait_until(lock.waiting, 30, "pg_dump to wait on the lock")
    time.sleep(2 * SILENCE_S)
    assert run.running(), run.output()
    worker = run.worker()
    os.kill(worker, signal.SIGSTOP)
    assert run.wait(SILENCE_S + 20) == 1, run.output()
    assert f"[crashed] worker sent no event for {SILENCE_S} s and was killed" in run.stdout, run.output()
    lock.release()
    assert_nothing_stored(moto, bucket)
