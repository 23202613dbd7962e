"""`easybackup once` of a MariaDB database against the shell pipeline measured in the same run (issue 16).

Runs tests/perf/bench_mysql.py once (~1 GB of dump by default, EASYBACKUP_BENCH_ROWS as for the PostgreSQL
benchmark) with zstd and asserts the targets.
"""

from __future__ import annotations

import pytest

from tests.perf import bench_mysql

CODEC = "zstd"

pytestmark = [pytest.mark.slow, pytest.mark.timeout(4 * 3600)]


@pytest.fixture(scope="module")
def results(bench_rows, bench_runs):
    """The summaries and ratios of one benchmark run, shared by every target below."""
    summaries, ratios = bench_mysql.benchmark(bench_rows, bench_runs, [CODEC])
    return {(s.variant, s.codec): s for s in summaries}, ratios


def test_easybackup_takes_at_most_10_percent_longer_than_the_shell_pipeline(results):
    summaries, ratios = results
    assert summaries[("easybackup", CODEC)].stored_bytes, "easybackup stored nothing"
    assert summaries[("shell", CODEC)].stored_bytes, "the shell pipeline stored nothing"
    assert ratios[f"easybackup/shell {CODEC}"] <= bench_mysql.MAX_RATIO_VS_SHELL


def test_the_worker_peak_memory_stays_under_150_mib(results):
    summaries, _ = results
    rss = summaries[("easybackup", CODEC)].worker_rss
    assert rss is not None, "the worker process was never seen"
    assert rss <= bench_mysql.MAX_WORKER_RSS


def test_the_backup_path_writes_no_dump_data_to_local_disk(results):
    summaries, _ = results
    assert summaries[("easybackup", CODEC)].disk_write <= bench_mysql.MAX_DISK_WRITE
