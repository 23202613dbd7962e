"""Settings of the performance benchmarks (`make perf`): the data set size and the number of rounds.

    EASYBACKUP_BENCH_ROWS=400000 make perf     # ~100 MB, a quick look; the default 4000000 is ~1 GB
    EASYBACKUP_BENCH_RUNS=9 make perf          # more rounds on a noisy machine
"""

from __future__ import annotations

import os

import pytest

DEFAULT_ROWS = 4_000_000  # ~1 GB: the size DESIGN.md's targets are stated for
DEFAULT_RUNS = 5  # this shared VM varies ±10% run to run: five rounds keep the medians steady


@pytest.fixture(scope="session")
def bench_rows() -> int:
    """Rows of tests/fixtures/dataset.sql to load (EASYBACKUP_BENCH_ROWS)."""
    return int(os.environ.get("EASYBACKUP_BENCH_ROWS", DEFAULT_ROWS))


@pytest.fixture(scope="session")
def bench_runs() -> int:
    """Interleaved rounds per variant; medians are compared (EASYBACKUP_BENCH_RUNS)."""
    return int(os.environ.get("EASYBACKUP_BENCH_RUNS", DEFAULT_RUNS))
