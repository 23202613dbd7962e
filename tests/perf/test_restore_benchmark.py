"""`easybackup restore` against pg_restore of the same archive on local disk, measured in the same run (issue 20).

Runs tests/perf/bench_restore.py once (~1 GB by default; EASYBACKUP_BENCH_ROWS and EASYBACKUP_BENCH_RUNS as for
the backup benchmark) and asserts the targets.
"""

from __future__ import annotations

import pytest

from tests.perf import bench_restore as bench

JOBS = [1, 2]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(4 * 3600)]


@pytest.fixture(scope="module")
def results(bench_rows, bench_runs):
    """The summaries, ratios and manifest of one benchmark run, shared by every target below."""
    summaries, ratios, manifest = bench.benchmark(bench_rows, bench_runs, JOBS)
    return {(s.variant, s.codec): s for s in summaries}, ratios, manifest


@pytest.mark.parametrize("jobs", JOBS)
def test_restore_takes_at_most_10_percent_longer_than_pg_restore_of_the_archive_on_local_disk(results, jobs):
    """1.10x, or where this machine cannot do that for any restore doing the same work, within 5% of the least."""
    _, ratios, _ = results
    assert ratios[f"easybackup/local j{jobs}"] <= bench.allowed_ratio(ratios, f"j{jobs}")


def test_the_streamed_restore_writes_no_archive_data_to_local_disk(results):
    summaries, _, manifest = results
    # The measurement sees writes: `local -j 2` writes the whole dump.
    assert summaries[("local", "j2")].disk_write >= manifest["dump_bytes"]
    assert summaries[("easybackup", "j1")].disk_write <= bench.MAX_STREAMED_DISK_WRITE


def test_a_parallel_restore_writes_the_dump_once_and_no_more(results):
    summaries, _, manifest = results
    assert summaries[("easybackup", "j2")].disk_write <= manifest["dump_bytes"] + bench.MAX_STREAMED_DISK_WRITE
