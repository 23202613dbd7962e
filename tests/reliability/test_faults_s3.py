"""Fault matrix — S3: refusing connections at start, cut in the middle of an upload, answering 500 for a while.

The fault proxy sits between easybackup and moto's S3 server (killing moto would wipe its memory and prove
nothing). S3 answering 503 and S3 stalled past timeout.upload are in tests/integration/test_retries_timeouts.py;
S3 cut mid-upload with no retry left is in tests/integration/test_once_backup.py.
"""

from __future__ import annotations


import pytest

from tests.harness.configs import write_config
from tests.harness.daemon import monitoring, wait_until
from tests.harness.net import free_port
from tests.integration.test_retries_timeouts import db_row
from tests.reliability.conftest import (
    assert_nothing_stored,
    assert_one_whole_backup,
    assert_slack_failed,
    assert_slack_succeeded,
    runs_total,
    slack_run,
    slack_settings,
)

DATABASE = "rel_s3"


@pytest.fixture(scope="module")
def small_db(pg) -> str:
    """About 1 MB of rows: one part, dumped in well under a second."""
    pg.create_database(DATABASE)
    pg.psql("CREATE TABLE items AS SELECT g AS id, md5(g::text) AS digest FROM generate_series(1, 20000) g",
            DATABASE)
    return DATABASE


def s3_config(tmp_path, pg, bucket: str, endpoint: str, slack, **overrides):
    return write_config(tmp_path, bucket=bucket, endpoint=endpoint, slack=slack_settings(slack.api_url),
                        strategies=[{"name": "main", "database_url": pg.url(DATABASE)}], **overrides)


def test_s3_refusing_connections_at_start_is_retried_then_fails_cleanly_as_storage(pg, small_db, moto, bucket,
                                                                                  tmp_path, slack, fault_proxy,
                                                                                  start_once):
    proxy = fault_proxy("127.0.0.1", moto.port, "http")
    proxy.cut()  # every connection is reset: S3 is unreachable from the first request on
    config = s3_config(tmp_path, pg, bucket, proxy.url, slack,
                       retry={"max_attempts": 2, "initial_delay": "1s", "max_delay": "1s"})
    run = start_once(config)
    assert run.wait() == 1, run.output()
    assert db_row(run.stdout, DATABASE)[2:4] == ["failed", "2"], run.output()
    assert "[storage] cannot connect to S3" in run.stdout
    assert "not retried" not in run.stdout, "a refused connection is transient: retried until the attempts ran out"
    assert "attempt 1/2 failed: cannot connect to S3" in run.stderr
    samples = run.metrics()
    assert (runs_total(samples, "main", "failed"), runs_total(samples, "main", "success")) == (1, 0)
    assert_slack_failed(slack, "storage")
    proxy.heal()
    assert_nothing_stored(moto, bucket)


def test_s3_cut_mid_upload_aborts_that_attempt_and_the_retry_stores_one_whole_backup(pg, small_db, moto, bucket,
                                                                                     tmp_path, slack, fault_proxy,
                                                                                     start_once):
    # The variant with no retry left (the run fails, nothing stays) is
    # tests/integration/test_once_backup.py::test_s3_cut_mid_upload_fails_naming_the_upload_and_leaves_nothing.
    proxy = fault_proxy("127.0.0.1", moto.port, "http")
    proxy.cut_after(200_000, direction="up", refuse=True)  # inside the first part; botocore's own retry fails too
    healer = proxy.heal_later(after_bytes_up=200_000, delay=2)  # S3 back: the abort and the next attempt land
    config = s3_config(tmp_path, pg, bucket, proxy.url, slack, s3={"compression": "none"},
                       retry={"max_attempts": 3, "initial_delay": "1s", "max_delay": "2s"})
    run = start_once(config)
    assert run.wait() == 0, run.output()
    healer.join(10)
    status, attempts = db_row(run.stdout, DATABASE)[2:4]
    assert status == "success" and int(attempts) >= 2, run.output()
    assert "attempt 1/3 failed: cannot connect to S3" in run.stderr
    aborts = [r for r in proxy.requests if r.method == "DELETE" and "uploadId=" in r.path]
    assert any(r.status == 204 for r in aborts), "the first attempt's upload was not aborted"
    manifest = assert_one_whole_backup(moto, bucket)
    assert manifest["dump_bytes"] == manifest["stored_bytes"] > 200_000
    samples = run.metrics()
    assert (runs_total(samples, "main", "success"), runs_total(samples, "main", "failed")) == (1, 0)
    replies = assert_slack_succeeded(slack)
    assert any("attempt 1/3 failed" in text for text in replies), replies


def test_s3_answering_500_for_a_while_is_retried_by_a_running_supervisor_and_health_shows_the_success(
        pg, small_db, moto, bucket, tmp_path, slack, fault_proxy, start_daemon):
    proxy = fault_proxy("127.0.0.1", moto.port, "http")
    # POST only: CreateMultipartUpload. The supervisor's own reads (GET, HEAD) pass. botocore tries each call twice:
    # attempt 1 meets two 500s, attempt 2 one 500 and then its botocore retry gets through.
    proxy.fail_http(500, count=3, methods=["POST"])
    port = free_port()
    config = s3_config(tmp_path, pg, bucket, proxy.url, slack, run_on_start=True, monitoring=monitoring(port),
                       retry={"max_attempts": 3, "initial_delay": "1s", "max_delay": "2s"})
    daemon = start_daemon(config, port)
    view = daemon.wait_status("main", "success", timeout=45)["strategies"]["last_backup_status"]["main"]
    assert view["consecutive_failures"] == 0 and "error" not in view and view["size_bytes"] > 0
    assert [r.status for r in proxy.requests if r.status == 500] == [500, 500, 500]
    samples = daemon.metrics()
    assert (runs_total(samples, "main", "success"), runs_total(samples, "main", "failed")) == (1, 0)
    daemon.wait_log("attempt 1/3 failed: S3 is unavailable or throttling")
    wait_until(lambda: any(c.method == "chat.update" for c in slack.calls), 30, "the Slack parent's final edit")
    _parent, thread, _update = slack_run(slack)
    assert any("attempt 1/3 failed" in reply["text"] for reply in thread)
    assert_slack_succeeded(slack)
    assert daemon.stop() == 0
    manifest = assert_one_whole_backup(moto, bucket)
    assert manifest["stored_bytes"] == view["size_bytes"]


def test_s3_stalled_under_a_running_supervisor_times_out_the_upload_and_leaves_nothing(
        pg, small_db, moto, bucket, tmp_path, slack, fault_proxy, start_daemon):
    # The same fault under `once` is tests/integration/test_retries_timeouts.py::
    # test_s3_stalled_past_timeout_upload_times_out_and_leaves_nothing.
    s3 = fault_proxy("127.0.0.1", moto.port, "http")
    postgres = fault_proxy(pg.host, pg.port, "tcp")
    postgres.throttle(400_000)  # the dump takes ~3 s: the stall comes while the upload is open, before its part
    port = free_port()
    config = write_config(tmp_path, bucket=bucket, endpoint=s3.url, slack=slack_settings(slack.api_url),
                          strategies=[{"name": "main", "database_url": pg.url(DATABASE, port=postgres.port)}],
                          run_on_start=True, monitoring=monitoring(port),
                          timeout={"backup": "1m", "upload": "2s", "shutdown_grace": "10s"})
    daemon = start_daemon(config, port)
    wait_until(lambda: moto.open_uploads(bucket), 30, "the multipart upload to open")
    s3.stall()
    daemon.wait_log("timeout.upload fired", timeout=30)
    s3.heal()  # S3 answers again: the abort (retried) lands
    view = daemon.wait_status("main", "failed", timeout=30)["strategies"]["last_backup_status"]["main"]
    assert view["error_kind"] == "timeout" and "timed out (upload)" in view["error"], view
    samples = daemon.metrics()
    assert (runs_total(samples, "main", "failed"), runs_total(samples, "main", "success")) == (1, 0)
    wait_until(lambda: any(c.method == "chat.update" for c in slack.calls), 30, "the Slack parent's final edit")
    assert_slack_failed(slack, "timeout")
    wait_until(lambda: moto.open_uploads(bucket) == [], 20, "the stalled upload to be aborted")
    assert daemon.stop() == 0
    assert_nothing_stored(moto, bucket)
