"""`make perf` asserts what the machine allows: the targets computed from a run's ratios (tests/perf/)."""

from __future__ import annotations

import os

import pytest

from tests.perf import bench_backup, bench_restore


def test_below_the_1_3_goal_the_temp_file_target_is_95_percent_of_the_ceiling_and_says_why():
    ratios = {"tempfile/easybackup gzip": 1.202, "ceiling tempfile/stream gzip": 1.259}
    assert bench_backup.tempfile_target(ratios, "gzip") == pytest.approx(0.95 * 1.259)
    printed = bench_backup.render_ratios(ratios)
    assert f"goal >= 1.3: not reachable on {os.cpu_count()} cores (ceiling 1.259)" in printed
    assert "target >= 1.196" in printed


def test_with_room_above_the_goal_the_temp_file_target_is_the_goal():
    ratios = {"tempfile/easybackup zstd": 1.252, "ceiling tempfile/stream zstd": 1.400}
    assert bench_backup.tempfile_target(ratios, "zstd") == 1.3
    assert "not reachable" not in bench_backup.render_ratios(ratios)


def test_without_a_ceiling_the_temp_file_target_is_the_goal():
    assert bench_backup.tempfile_target({"tempfile/easybackup zstd": 1.4}, "zstd") == 1.3


def test_the_restore_target_is_1_10_unless_the_machine_allows_no_restore_that_fast():
    assert bench_restore.allowed_ratio({"floor easybackup/local j1": 0.7}, "j1") == 1.10
    slow = {"easybackup/local j2": 1.3, "floor easybackup/local j2": 1.2}
    assert bench_restore.allowed_ratio(slow, "j2") == pytest.approx(1.2 / 0.95)
    assert f"not reachable on {os.cpu_count()} cores: the floor is 1.200" in bench_restore.render_ratios(slow)
