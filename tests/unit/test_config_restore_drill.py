"""`restore_drill`: global defaults, a strategy's override, `null` to turn it off, required keys, the target's
password as a secret."""

from __future__ import annotations

from pathlib import Path

import pytest

from easybackup.config import load_config
from easybackup.errors import ConfigError
from easybackup.secrets import mask

CONFIG = """\
global:
  s3: {bucket: my-bucket}
  restore_drill:
    schedule: "1w@sun-04:00"
    target_url: "postgres://drill:${DRILL_PW}@scratch-db:5432/postgres"
strategies:
  - name: app
    database_url: postgres://u@db:5432/app
  - name: quick
    database_url: postgres://u@db:5432/quick
    restore_drill: {timeout: 10m, database_prefix: "drill_"}
  - name: nodrill
    database_url: postgres://u@db:5432/off
    restore_drill: null
"""


def load(tmp_path: Path, text: str, **environ: str):
    path = tmp_path / "config.yaml"
    path.write_text(text)
    path.chmod(0o600)
    return load_config(path, environ={"DRILL_PW": "drill-secret-pw", **environ})


def test_global_drill_applies_to_every_strategy_with_defaults(tmp_path):
    drill = load(tmp_path, CONFIG).strategy("app").restore_drill
    assert (drill.schedule, drill.database_prefix, drill.timeout) == ("1w@sun-04:00", "easybackup_drill_", 7200.0)
    assert drill.target_url == "postgres://drill:drill-secret-pw@scratch-db:5432/postgres"


def test_a_strategy_overrides_some_keys_and_keeps_global_ones(tmp_path):
    drill = load(tmp_path, CONFIG).strategy("quick").restore_drill
    assert (drill.schedule, drill.database_prefix, drill.timeout) == ("1w@sun-04:00", "drill_", 600.0)


def test_null_turns_drills_off_for_one_strategy(tmp_path):
    assert load(tmp_path, CONFIG).strategy("nodrill").restore_drill is None


def test_no_restore_drill_means_no_drills(tmp_path):
    text = CONFIG.replace("  restore_drill:\n    schedule", "  unused:\n    schedule").split("  unused:")[0]
    text += "strategies:\n  - name: app\n    database_url: postgres://u@db:5432/app\n"
    assert load(tmp_path, text).strategy("app").restore_drill is None


def test_the_target_password_is_masked(tmp_path):
    load(tmp_path, CONFIG)
    assert "drill-secret-pw" not in mask("connecting with drill-secret-pw")


AT = "strategies[0] (app)."


@pytest.mark.parametrize("override, expected", [
    ("restore_drill: {schedule: 1d}", "strategies[0] (app).restore_drill: needs target_url"),
    ("restore_drill: {schedule: daily, target_url: 'postgres://h/postgres'}", AT + "restore_drill.schedule"),
    ("restore_drill: {schedule: 1d, target_url: 'postgres://h/p', timeout: 2x}", AT + "restore_drill.timeout"),
    ("restore_drill: {schedule: 1d, target_url: 'mysql://h/p'}", AT + "restore_drill.target_url"),
    ("restore_drill: {schedule: 1d, target_url: 'postgres://h/p', database_prefix: 'Drill-'}",
     AT + "restore_drill.database_prefix"),
])
def test_bad_drill_settings_are_refused_where_written(tmp_path, override, expected):
    text = ("global:\n  s3: {bucket: my-bucket}\nstrategies:\n  - name: app\n"
            f"    database_url: postgres://u@db/app\n    {override}\n")
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text)
    assert any(problem.startswith(expected) for problem in caught.value.problems), caught.value.problems


def test_a_mysql_strategy_cannot_be_drilled_yet(tmp_path):
    text = CONFIG.replace("database_url: postgres://u@db:5432/app", "database_url: mysql://u@db:3306/app")
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text)
    assert any(problem.startswith("global.restore_drill: restore drills support PostgreSQL databases only")
               and "strategy app has mysql://" in problem for problem in caught.value.problems), caught.value.problems


def test_a_mysql_strategy_without_drills_loads(tmp_path):
    text = CONFIG.replace("database_url: postgres://u@db:5432/app",
                          "database_url: mysql://u@db:3306/app\n    restore_drill: null")
    assert load(tmp_path, text).strategy("app").restore_drill is None
