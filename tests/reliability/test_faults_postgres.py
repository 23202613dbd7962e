"""Fault matrix — PostgreSQL: down at start, restarted in the middle of a dump.

Through the real parts: `easybackup once` as cron runs it, a real PostgreSQL cluster, moto's S3 over HTTP, the
harness's Slack server, and the fault proxy throttling the dump so that a fault lands while it streams.
"""

from __future__ import annotations

import time

import pytest

from tests.harness.configs import write_config
from tests.harness.net import free_port
from tests.harness.postgres import PostgresCluster
from tests.harness.restore import archive_keys, decompress, download, restore_dump
from tests.integration.test_retries_timeouts import db_row
from tests.reliability.conftest import (
    assert_nothing_stored,
    assert_one_whole_backup,
    assert_slack_failed,
    assert_slack_succeeded,
    runs_total,
    slack_settings,
)

THROTTLE = 1_000_000  # bytes/s from PostgreSQL to pg_dump: the ~10 MB table then streams for ~10 s


@pytest.fixture(scope="module")
def restartable_pg():
    """A PostgreSQL cluster of this module's own, which a test restarts under a running dump. Its table (~10 MB) is
    larger than the socket buffers between the server and pg_dump, so a throttled COPY keeps the server busy."""
    cluster = PostgresCluster().init()
    try:
        cluster.create_database("app")
        cluster.psql("CREATE TABLE items AS SELECT g AS id, repeat(md5(g::text), 3) AS pad "
                     "FROM generate_series(1, 100000) g", "app")
        yield cluster
    finally:
        cluster.destroy()


def copying(cluster: PostgresCluster) -> bool:
    """Return whether a pg_dump is streaming table rows (COPY ... TO stdout) from `cluster` right now."""
    return cluster.psql("SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'COPY %'", "app") != "0"


def test_postgresql_down_at_start_exhausts_its_retries_and_fails_with_kind_connection(pg, moto, bucket, tmp_path,
                                                                                     slack, start_once):
    # The recovered variant (PostgreSQL back before the retries run out) is
    # tests/integration/test_retries_timeouts.py::test_postgresql_down_at_start_is_retried_until_it_is_back.
    config = write_config(tmp_path, bucket=bucket, endpoint=moto.endpoint, slack=slack_settings(slack.api_url),
                          strategies=[{"name": "main", "database_url": pg.url("app", port=free_port())}],
                          retry={"max_attempts": 2, "initial_delay": "1s", "max_delay": "1s"})
    run = start_once(config)
    assert run.wait() == 1, run.output()
    status, attempts = db_row(run.stdout, "app")[2:4]
    assert (status, attempts) == ("failed", "2"), run.output()
    assert "[connection] pg_dump of database app failed" in run.stdout and "Connection refused" in run.stdout
    assert "not retried" not in run.stdout, "a refused connection is transient: it was retried until the end"
    assert "attempt 1/2 failed" in run.stderr
    samples = run.metrics()
    assert (runs_total(samples, "main", "failed"), runs_total(samples, "main", "success")) == (1, 0)
    replies = assert_slack_failed(slack, "connection")
    assert any("attempt 1/2 failed" in text for text in replies), replies
    assert_nothing_stored(moto, bucket)


def test_postgresql_restarted_mid_dump_fails_that_attempt_and_the_retry_stores_one_whole_backup(
        restartable_pg, moto, bucket, tmp_path, slack, fault_proxy, start_once):
    proxy = fault_proxy(restartable_pg.host, restartable_pg.port, "tcp")
    proxy.throttle(THROTTLE)
    config = write_config(tmp_path, bucket=bucket, endpoint=moto.endpoint, slack=slack_settings(slack.api_url),
                          strategies=[{"name": "main", "database_url": restartable_pg.url("app", port=proxy.port)}],
                          retry={"max_attempts": 3, "initial_delay": "1s", "max_delay": "2s"})
    run = start_once(config)
    deadline = time.monotonic() + 30
    while not (copying(restartable_pg) and moto.open_uploads(bucket)):  # rows streaming into the open upload
        assert run.running() and time.monotonic() < deadline, run.output()
        time.sleep(0.05)
    time.sleep(0.5)
    restartable_pg.stop("fast")  # what `pg_ctl restart -m fast` does: every backend is terminated
    proxy.throttle(None)
    restartable_pg.start()
    assert run.wait() == 0, run.output()
    status, attempts = db_row(run.stdout, "app")[2:4]
    assert status == "success" and int(attempts) >= 2, run.output()
    # Only a transient error (kind connection) is retried: the restart was classified as one.
    [retried] = [line for line in run.stderr.splitlines() if "attempt 1/3 failed" in line]
    assert "pg_dump of database app failed" in retried and "server closed the connection unexpectedly" in retried
    assert 'Dumping the contents of table "items" failed' in run.stderr, "the restart came while rows streamed"
    manifest = assert_one_whole_backup(moto, bucket)
    assert manifest["database"] == "app" and manifest["dump_bytes"] > 10_000_000
    samples = run.metrics()
    assert (runs_total(samples, "main", "success"), runs_total(samples, "main", "failed")) == (1, 0)
    replies = assert_slack_succeeded(slack)
    assert any("attempt 1/3 failed" in text for text in replies), replies
    # The archive is whole: it restores to the very rows the database holds.
    [key] = archive_keys(moto, bucket)
    restartable_pg.create_database("restored")
    restore_dump(restartable_pg, decompress(download(moto, bucket, key), "gzip"), "custom", "restored")
    assert restartable_pg.table_fingerprints("restored") == restartable_pg.table_fingerprints("app")
