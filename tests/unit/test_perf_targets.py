"""`make perf` asserts what the machine allows: the targets computed from a run's ratios (tests/perf/)."""

from __future__ import annotations

import os

import pytest

from tests.perf import bench_backup, bench_mysql, bench_restore


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


def summary(variant: str, wall_s: float, worker_rss: int | None = None, disk_write: int = 0) -> bench_backup.Summary:
    return bench_backup.Summary(variant, "zstd", 3, wall_s, 1.0, 100, worker_rss, disk_write)


def test_the_mysql_benchmark_misses_no_target_when_once_is_within_10_percent_small_and_writes_nothing():
    summaries = [summary("shell", 10.0), summary("easybackup", 10.9, 90 * bench_mysql.MiB, 8192)]
    values = bench_backup.ratios(summaries, ["zstd"])
    assert bench_mysql.missed_targets(summaries, values, ["zstd"]) == []
    assert "easybackup/shell zstd" in bench_backup.render_ratios(values, bench_mysql.TARGETS)


def test_the_mysql_benchmark_names_each_missed_target():
    summaries = [summary("shell", 10.0), summary("easybackup", 11.2, 151 * bench_mysql.MiB, 1 << 20)]
    missed = bench_mysql.missed_targets(summaries, bench_backup.ratios(summaries, ["zstd"]), ["zstd"])
    assert [line.split(" ")[:2] for line in missed] == [["easybackup/shell", "zstd"], ["the", "worker's"],
                                                        ["easybackup", "with"]]
    unseen = [summary("shell", 10.0), summary("easybackup", 10.0, None)]
    assert bench_mysql.missed_targets(unseen, bench_backup.ratios(unseen, ["zstd"]), ["zstd"]) == [
        "the worker of easybackup with zstd was never seen: its peak RSS is unknown"]


def test_the_mysql_data_set_is_generated_in_chunks_that_cover_each_row_once():
    statements = bench_mysql.insert_statements(600_001, chunk=250_000)
    assert [statement.rsplit("FROM ", 1)[1] for statement in statements] == [
        "seq_1_to_250000", "seq_250001_to_500000", "seq_500001_to_600001"]
    assert bench_mysql.insert_statements(1, chunk=250_000)[0].endswith("FROM seq_1_to_1")
