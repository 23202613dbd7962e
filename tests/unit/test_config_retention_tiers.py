"""`retention` as a duration or as tiers: loading, the merge with global, the problems, the job spec round trip."""

from __future__ import annotations

from pathlib import Path

import pytest

from easybackup.config import load_config
from easybackup.config.model import RetentionTiers, Strategy
from easybackup.errors import ConfigError

DAY = 86400.0


def load(tmp_path: Path, global_lines: str, strategy_lines: str = ""):
    path = tmp_path / "config.yaml"
    path.write_text("global:\n  s3: {bucket: my-backup-bucket}\n" + global_lines
                    + "strategies:\n  - name: app\n    database_url: postgres://u@db:5432/app\n" + strategy_lines)
    path.chmod(0o600)
    return load_config(str(path)).strategies[0]


def problems(tmp_path: Path, global_lines: str, strategy_lines: str = "") -> str:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, global_lines, strategy_lines)
    return str(caught.value)


def test_tiers_load_with_their_keep_last_and_the_span_they_cover(tmp_path):
    strategy = load(tmp_path, "", "    keep_last: 1\n    retention: {keep_last: 3, hourly: 24, daily: 7, weekly: 4, "
                    "monthly: 12, yearly: 3}\n")
    assert strategy.tiers == RetentionTiers(keep_last=3, hourly=24, daily=7, weekly=4, monthly=12, yearly=3)
    assert strategy.keep_last == 3
    assert strategy.retention == 3 * 366 * DAY  # run records are kept for as long as the longest tier reaches


def test_a_plain_duration_keeps_its_meaning_and_sets_no_tiers(tmp_path):
    strategy = load(tmp_path, '  retention: "12w"\n  keep_last: 2\n')
    assert (strategy.retention, strategy.keep_last, strategy.tiers) == (84 * DAY, 2, None)


def test_tiers_without_keep_last_keep_the_strategys_and_cover_at_least_a_day(tmp_path):
    strategy = load(tmp_path, "  keep_last: 2\n", "    retention: {hourly: 6}\n")
    assert (strategy.keep_last, strategy.tiers, strategy.retention) == (2, RetentionTiers(hourly=6), DAY)


def test_a_strategys_tiers_replace_globals_whole_and_a_duration_replaces_tiers(tmp_path):
    tiers = load(tmp_path, "  retention: {daily: 7, monthly: 12}\n", "    retention: {weekly: 4}\n")
    assert tiers.tiers == RetentionTiers(weekly=4)
    inherited = load(tmp_path, "  retention: {daily: 7, monthly: 12}\n")
    assert inherited.tiers == RetentionTiers(daily=7, monthly=12)
    duration = load(tmp_path, "  retention: {daily: 7}\n", '    retention: "30d"\n')
    assert (duration.tiers, duration.retention) == (None, 30 * DAY)


@pytest.mark.parametrize(("lines", "expected"), [
    ("    retention: {dayly: 7}\n", "strategies[0] (app).retention.dayly: unknown key (did you mean 'daily'?)"),
    ("    retention: {daily: -1}\n", "strategies[0] (app).retention.daily"),
    ("    retention: {daily: 0, keep_last: 0}\n", "strategies[0] (app).retention: every tier is 0, so only the "
     "newest backup would be kept; set keep_last or a tier above 0"),
    ("    retention: {}\n", "strategies[0] (app).retention"),
    ("    retention: 7\n", "strategies[0] (app).retention"),
])
def test_bad_tiers_are_refused_naming_the_field(tmp_path, lines, expected):
    assert expected in problems(tmp_path, "", lines)


def test_tiers_survive_the_job_spec_round_trip(tmp_path):
    strategy = load(tmp_path, "", "    timezone: Europe/Berlin\n    retention: {daily: 7, weekly: 4}\n")
    assert Strategy.from_dict(strategy.to_dict()) == strategy
