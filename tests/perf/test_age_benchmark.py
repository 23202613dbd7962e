"""age encryption against the same pipeline without it, measured in the same interleaved run (issue 17).

Runs tests/perf/bench_age.py once (~1 GB by default) and asserts the target.
"""

from __future__ import annotations

import pytest

from tests.perf import bench_age

pytestmark = [pytest.mark.slow, pytest.mark.timeout(4 * 3600)]


def test_with_zstd_age_encryption_costs_at_most_10_percent(bench_rows, bench_runs):
    summaries, ratio = bench_age.benchmark(bench_rows, bench_runs)
    assert all(summary.stored_bytes for summary in summaries), "a variant stored nothing"
    assert ratio <= bench_age.MAX_RATIO
