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
    ("restore_drill: {schedule: 1d, target_url: 'mysql://h/p'}", AT + "restore_drill.target_url: is a MySQL"),
    ("restore_drill: {schedule: 1d, target_url: 'postgres://h/p', database_prefix: 'Drill-'}",
     AT + "restore_drill.database_prefix"),
])
def test_bad_drill_settings_are_refused_where_written(tmp_path, override, expected):
    text = ("global:\n  s3: {bucket: my-bucket}\nstrategies:\n  - name: app\n"
            f"    database_url: postgres://u@db/app\n    {override}\n")
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text)
    assert any(problem.startswith(expected) for problem in caught.value.problems), caught.value.problems


def test_a_mysql_strategy_drills_into_a_mysql_target(tmp_path):
    text = (CONFIG.replace("database_url: postgres://u@db:5432/app", "database_url: mysql://u@db:3306/app\n"
                           "    restore_drill: {target_url: 'mariadb://drill:${DRILL_PW}@scratch-db:3306/'}"))
    drill = load(tmp_path, text).strategy("app").restore_drill
    assert (drill.target_url, drill.schedule) == ("mariadb://drill:drill-secret-pw@scratch-db:3306/", "1w@sun-04:00")


def test_a_mysql_strategy_under_a_postgres_target_is_refused_naming_the_strategy_and_the_field(tmp_path):
    text = CONFIG.replace("database_url: postgres://u@db:5432/app", "database_url: mysql://u@db:3306/app")
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text)
    assert [problem for problem in caught.value.problems if "restore_drill" in problem] == [
        "global.restore_drill.target_url: is a PostgreSQL server, and strategy app has MySQL/MariaDB databases; a "
        "drill restores into a server of their engine (a mysql:// or mariadb:// URL), so give strategy app its own "
        "restore_drill.target_url, or restore_drill: null"]


def test_a_postgres_strategy_under_a_mysql_target_is_refused_where_the_target_is_written(tmp_path):
    text = CONFIG.replace("    restore_drill: {timeout: 10m, database_prefix: \"drill_\"}",
                          "    restore_drill: {target_url: 'mysql://drill@scratch-db:3306/'}")
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text)
    assert any(problem.startswith("strategies[1] (quick).restore_drill.target_url: is a MySQL/MariaDB server, and "
                                  "strategy quick has PostgreSQL databases") for problem in caught.value.problems), \
        caught.value.problems


def test_a_strategy_mixing_engines_cannot_be_drilled(tmp_path):
    text = CONFIG.replace("    database_url: postgres://u@db:5432/app",
                          "    database_urls: [postgres://u@db:5432/app, mysql://u@db:3306/shop]")
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text)
    assert [problem for problem in caught.value.problems if "restore_drill" in problem] == [
        "global.restore_drill: strategy app has MySQL/MariaDB and PostgreSQL databases, and a drill restores into "
        "one server of their engine; split the strategy by engine, or give it restore_drill: null"]


def test_a_target_of_no_engine_is_refused(tmp_path):
    text = CONFIG.replace("postgres://drill:${DRILL_PW}@scratch-db:5432/postgres", "oracle://scratch-db/x")
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text)
    assert any(problem.startswith("global.restore_drill.target_url: no database engine for oracle:// (strategy app)")
               for problem in caught.value.problems), caught.value.problems


def test_a_mysql_strategy_without_drills_loads(tmp_path):
    text = CONFIG.replace("database_url: postgres://u@db:5432/app",
                          "database_url: mysql://u@db:3306/app\n    restore_drill: null")
    assert load(tmp_path, text).strategy("app").restore_drill is None
