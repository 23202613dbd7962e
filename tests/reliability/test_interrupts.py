"""Ctrl-C (SIGINT) on `easybackup once` as an operator presses it: the backup stops cleanly, as on SIGTERM, but the
exit code says it was interrupted (130, as shells report Ctrl-C), not terminated (143). SIGINT on an idle `run` is
in tests/integration/test_command_line.py."""

from __future__ import annotations

import signal

import pytest

from tests.harness.configs import write_config
from tests.harness.daemon import alive
from tests.reliability.conftest import THROTTLE, assert_nothing_stored
from tests.reliability.test_faults_processes import summary_line, wait_streaming

DATABASE = "rel_sigint"


@pytest.fixture(scope="module")
def interrupted_db(pg) -> str:
    """About 1.7 MB of rows: behind the throttled proxy the dump streams for ~10 s."""
    pg.create_database(DATABASE)
    pg.psql("CREATE TABLE items AS SELECT g AS id, md5(g::text) AS digest FROM generate_series(1, 40000) g",
            DATABASE)
    return DATABASE


def test_sigint_during_the_upload_under_once_exits_130_and_leaves_nothing(pg, interrupted_db, moto, bucket, tmp_path,
                                                                         fault_proxy, start_once):
    proxy = fault_proxy(pg.host, pg.port, "tcp")
    proxy.throttle(THROTTLE)
    config = write_config(tmp_path, bucket=bucket, endpoint=moto.endpoint, timeout={"shutdown_grace": "10s"},
                          strategies=[{"name": "main", "database_url": pg.url(interrupted_db, port=proxy.port)}])
    run = start_once(config)
    _worker, group = wait_streaming(run.pid, proxy, moto, bucket)
    run.process.send_signal(signal.SIGINT)

    assert run.wait(60) == 130, run.output()
    assert "received SIGINT" in run.stderr
    assert summary_line(run.stdout)[2] == "cancelled", run.output()
    assert alive(group) == []
    assert_nothing_stored(moto, bucket)
