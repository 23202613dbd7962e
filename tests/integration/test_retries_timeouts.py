"""Retries, timeouts and precise failures, through `easybackup once`, real PostgreSQL, moto and the fault proxy."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Callable

import pytest

from tests.harness.configs import EASYBACKUP, cli_env, run_cli, write_config
from tests.harness.postgres import PostgresCluster
from tests.harness.restore import archive_keys, manifest_keys

FAST_RETRIES = {"max_attempts": 3, "initial_delay": "1s", "max_delay": "2s"}


@pytest.fixture(scope="module")
def small_db(pg) -> str:
    """A database of ~1 MB of rows: a second to dump directly, many through a throttled link."""
    name = f"rt_small_{os.getpid()}"
    pg.create_database(name)
    pg.psql("CREATE TABLE items AS SELECT g AS id, md5(g::text) AS digest FROM generate_series(1, 20000) g", name)
    return name


@pytest.fixture(scope="module")
def spare_pg():
    """A PostgreSQL cluster of this module's own, which a test may stop and start again."""
    cluster = PostgresCluster().init()
    try:
        cluster.create_database("app")
        cluster.psql("CREATE TABLE t AS SELECT generate_series(1, 100) AS n", "app")
        yield cluster
    finally:
        cluster.destroy()


def strategy(url: str) -> list[dict]:
    return [{"name": "main", "database_url": url}]


def run_once_reacting(config, pattern: str, action: Callable[[], None], timeout: float = 90):
    """Run `easybackup once -c config`; call `action` (once) as soon as a stderr line contains `pattern`.
    Return (exit code, stdout, stderr, whether the action ran)."""
    process = subprocess.Popen([*EASYBACKUP, "once", "-c", str(config)], env=cli_env(), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    fired = threading.Event()

    def watch_stderr() -> None:
        for line in process.stderr:
            lines.append(line)
            if pattern in line and not fired.is_set():
                fired.set()
                action()

    watcher = threading.Thread(target=watch_stderr, daemon=True)
    watcher.start()
    try:
        stdout = process.stdout.read()
        process.wait(timeout)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    watcher.join(10)
    return process.returncode, stdout, "".join(lines), fired.is_set()


def db_row(stdout: str, database: str) -> list[str]:
    """Given once's summary, return the cells before KEY / ERROR of `database`'s row."""
    for line in stdout.splitlines():
        cells = line.split()
        if len(cells) > 3 and cells[0] == "main" and cells[1] == database:
            return cells
    raise AssertionError(f"no summary row for {database} in:\n{stdout}")


def assert_nothing_stored(moto, bucket: str) -> None:
    assert archive_keys(moto, bucket) == [] and manifest_keys(moto, bucket) == []
    assert moto.open_uploads(bucket) == []


def test_postgresql_down_at_start_is_retried_until_it_is_back(spare_pg, moto, bucket, tmp_path):
    config = write_config(tmp_path, bucket=bucket, endpoint=moto.endpoint, strategies=strategy(spare_pg.url("app")),
                          retry={"max_attempts": 3, "initial_delay": "1s", "max_delay": "3s"})
    spare_pg.stop()
    try:
        code, stdout, stderr, fired = run_once_reacting(config, "retrying in", spare_pg.start)
    finally:
        if not fired:
            spare_pg.start()
    assert fired, stderr
    assert code == 0, stdout + stderr
    assert "attempt 1/3 failed" in stderr and "Connection refused" in stderr
    status, attempts = db_row(stdout, "app")[2:4]
    assert status == "success" and int(attempts) >= 2
    assert len(manifest_keys(moto, bucket)) == 1


def test_a_wrong_password_fails_at_once_without_retries_and_masked(pg, small_db, moto, bucket, tmp_path):
    wrong = "Wrong-pw-5521-distinctive"
    config = write_config(tmp_path, bucket=bucket, endpoint=moto.endpoint, retry=FAST_RETRIES,
                          strategies=strategy(pg.url(small_db, password=wrong)))
    started = time.monotonic()
    result = run_cli("once", "-c", str(config), timeout=60)
    assert result.returncode == 1, result.stdout + result.stderr
    assert time.monotonic() - started < 15
    status, attempts = db_row(result.stdout, small_db)[2:4]
    assert (status, attempts) == ("failed", "1")
    assert "[authentication]" in result.stdout and "password authentication failed" in result.stdout
    assert "not retried: authentication failures are permanent" in result.stdout
    assert "retrying in" not in result.stderr
    assert wrong not in result.stdout + result.stderr
    assert_nothing_stored(moto, bucket)


def test_s3_answering_503_for_a_while_is_retried_and_succeeds(pg, small_db, moto, bucket, tmp_path, fault_proxy):
    proxy = fault_proxy("127.0.0.1", moto.port, "http")
    # botocore makes 3 tries per call (its retries.max_attempts 2 counts retries): attempt 1 fails, attempt 2 works.
    # Only the upload's writes fail: the worker's look for stale uploads (a GET, on a thread beside the dump) would
    # otherwise take the 503s first, and which call gets them would be a race.
    proxy.fail_http(503, count=3, methods=["POST", "PUT"])
    config = write_config(tmp_path, bucket=bucket, endpoint=proxy.url, retry=FAST_RETRIES,
                          strategies=strategy(pg.url(small_db)))
    result = run_cli("once", "-c", str(config), timeout=90)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "attempt 1/3 failed: S3 is unavailable or throttling" in result.stderr
    assert int(db_row(result.stdout, small_db)[3]) >= 2
    assert [status for status in (r.status for r in proxy.requests) if status == 503] == [503, 503, 503]
    assert len(archive_keys(moto, bucket)) == 1 and len(manifest_keys(moto, bucket)) == 1
    assert moto.open_uploads(bucket) == []


def test_s3_stalled_past_timeout_upload_times_out_and_leaves_nothing(pg, small_db, moto, bucket, tmp_path,
                                                                      fault_proxy):
    proxy = fault_proxy("127.0.0.1", moto.port, "http")
    proxy.stall_after_requests(1)  # CreateMultipartUpload gets through; the part upload hangs inside botocore
    config = write_config(tmp_path, bucket=bucket, endpoint=proxy.url, strategies=strategy(pg.url(small_db)),
                          timeout={"backup": "1m", "upload": "3s", "shutdown_grace": "10s"})
    started = time.monotonic()
    # The abort goes to the same stalled S3: heal it once the watchdog fired, so the abort (retried) lands.
    code, stdout, stderr, fired = run_once_reacting(config, "timeout.upload fired", proxy.heal)
    assert fired, stderr
    assert code == 1, stdout + stderr
    assert time.monotonic() - started < 45
    status = db_row(stdout, small_db)[2]
    assert status == "timed_out"
    assert "[timeout] timed out (upload)" in stdout and "timeout.upload (3s)" in stdout
    assert any(r.method == "DELETE" and "uploadId=" in r.path for r in proxy.requests), "no abort was attempted"
    assert_nothing_stored(moto, bucket)


def test_a_dump_slower_than_timeout_backup_times_out(pg, small_db, moto, bucket, tmp_path, fault_proxy):
    proxy = fault_proxy(pg.host, pg.port, "tcp")
    proxy.throttle(60_000)  # ~1 MB at 60 kB/s: far longer than timeout.backup
    # timeout.upload is shorter than timeout.backup: a slow dump filling its first part is no upload stall.
    config = write_config(tmp_path, bucket=bucket, endpoint=moto.endpoint, strategies=strategy(
        pg.url(small_db, port=proxy.port)), timeout={"backup": "4s", "upload": "2s", "shutdown_grace": "10s"},
        s3={"compression": "none"})
    started = time.monotonic()
    result = run_cli("once", "-c", str(config), timeout=60)
    assert result.returncode == 1, result.stdout + result.stderr
    assert time.monotonic() - started < 30
    assert db_row(result.stdout, small_db)[2] == "timed_out"
    assert "[timeout] timed out (backup)" in result.stdout and "timeout.backup (4s)" in result.stdout
    assert "timeout.backup fired" in result.stderr and "timeout.upload fired" not in result.stderr
    assert_nothing_stored(moto, bucket)


def test_a_missing_bucket_fails_at_once_naming_the_bucket(pg, small_db, moto, tmp_path):
    missing = f"no-such-bucket-{os.getpid()}"
    config = write_config(tmp_path, bucket=missing, endpoint=moto.endpoint, retry=FAST_RETRIES,
                          strategies=strategy(pg.url(small_db)))
    started = time.monotonic()
    result = run_cli("once", "-c", str(config), timeout=60)
    assert result.returncode == 1, result.stdout + result.stderr
    assert time.monotonic() - started < 15
    assert db_row(result.stdout, small_db)[2:4] == ["failed", "1"]
    assert f"[storage] S3 bucket '{missing}' does not exist" in result.stdout
    assert f"hint: create bucket '{missing}'" in result.stdout
    assert "not retried: this S3 error is permanent" in result.stdout and "retrying in" not in result.stderr
