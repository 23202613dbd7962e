"""A server that accepts TCP and never answers (here the fault proxy, stalled, in front of the real PostgreSQL)
holds each attempt only for `timeout.connect`, not for `timeout.backup`: the attempt fails as `connection`, is
retried, and the hint names timeout.connect. Restore and the connectivity check connect under the same limit."""

from __future__ import annotations

import subprocess
import time

import pytest

from tests.harness.configs import restore_target, run_cli, write_config
from tests.harness.restore import archive_keys, manifest_keys

CONNECT = 2  # seconds; libpq's least
QUICK_RETRY = {"max_attempts": 2, "initial_delay": "1s", "max_delay": "1s"}


@pytest.fixture
def silent_server(pg, fault_proxy):
    """The test cluster behind a proxy that accepts every connection and forwards nothing."""
    proxy = fault_proxy(pg.host, pg.port)
    proxy.stall()
    return proxy


def silent_config(pg, moto, bucket, tmp_path, silent_server, **extra):
    return write_config(tmp_path, bucket=bucket, endpoint=moto.endpoint, retry=QUICK_RETRY,
                        timeout={"connect": f"{CONNECT}s", "backup": "10m", "upload": "1m", "shutdown_grace": "10s"},
                        strategies=[{"name": "main", "database_url": pg.url("postgres", port=silent_server.port)}],
                        **extra)


def test_a_server_that_accepts_and_never_answers_fails_each_attempt_within_timeout_connect(
        pg, moto, bucket, tmp_path, silent_server):
    config = silent_config(pg, moto, bucket, tmp_path, silent_server)
    started = time.monotonic()
    result = run_cli("once", "-c", str(config), timeout=120)
    elapsed = time.monotonic() - started
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    # Two attempts of CONNECT seconds each and a 1-2 s pause: far below timeout.backup (10 min), and below the
    # 30 s libpq wait easybackup used before timeout.connect existed.
    assert 2 * CONNECT <= elapsed < 25, (elapsed, output)
    assert "failed after 2 attempts: [connection]" in output, output
    assert f"did not answer within timeout.connect ({CONNECT}s)" in output
    assert "timed out (backup)" not in output and "timeout.backup" not in output
    assert silent_server.connections >= 2, "both attempts reached the listener"
    assert archive_keys(moto, bucket) == [] and manifest_keys(moto, bucket) == []
    assert moto.open_uploads(bucket) == []


def test_the_connectivity_check_and_restore_give_up_on_a_silent_server_within_timeout_connect(
        pg, moto, bucket, tmp_path, silent_server):
    config = silent_config(pg, moto, bucket, tmp_path, silent_server)
    started = time.monotonic()
    checked = run_cli("validate", "-c", str(config), "--check-connectivity", timeout=120)
    assert time.monotonic() - started < 15, checked.stdout + checked.stderr
    assert checked.returncode != 0
    assert f"did not answer within timeout.connect ({CONNECT}s)" in checked.stdout + checked.stderr

    # A real backup to restore, taken directly; then the restore's target is the silent server.
    good = write_config(tmp_path, bucket=bucket, endpoint=moto.endpoint, name="good.yaml",
                        timeout={"connect": f"{CONNECT}s"},
                        strategies=[{"name": "main", "database_url": pg.url("postgres")}])
    assert run_cli("once", "-c", str(good)).returncode == 0
    started = time.monotonic()
    silent_target, with_password = restore_target(pg.url("nowhere", port=silent_server.port))
    restored = run_cli("restore", "-c", str(good), "--strategy", "main", "--yes", "--target-url", silent_target,
                       env=with_password, stdin=subprocess.DEVNULL, timeout=120)
    assert time.monotonic() - started < 15, restored.stdout + restored.stderr
    assert restored.returncode != 0
    assert "timeout expired" in restored.stdout + restored.stderr
