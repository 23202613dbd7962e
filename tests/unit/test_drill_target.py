"""A drill reaches its target through the engine: PostgreSQL's and MySQL's targets are DrillTargets; a URL of no
engine is refused as a config error before anything is created."""

from __future__ import annotations

import pytest

from easybackup.catalogue.drill import ErrorLines, drill_target
from easybackup.engines import DrillTarget
from easybackup.errors import EasybackupError


@pytest.mark.parametrize("url", ["postgres://u@localhost:5432/postgres", "mysql://u@localhost:3306/",
                                 "mariadb://u@localhost:3306/"])
def test_postgres_and_mysql_targets_are_drill_targets_and_leave_no_file(tmp_path, url):
    target = drill_target(url, tmp_path, 5)
    try:
        assert isinstance(target, DrillTarget)
    finally:
        target.cleanup()
    assert list(tmp_path.iterdir()) == []


def test_a_url_of_no_engine_cannot_be_drilled(tmp_path):
    with pytest.raises(EasybackupError) as caught:
        drill_target("oracle://u@localhost:1521/app", tmp_path, 5)
    assert caught.value.kind == "config" and "cannot drill into restore_drill.target_url" in caught.value.message


def test_a_mysql_target_has_no_table_of_contents_to_read(tmp_path):
    target = drill_target("mysql://u@localhost:3306/", tmp_path, 5)
    try:
        assert target.toc_stage("plain") is None and target.toc_tables("anything") == []
    finally:
        target.cleanup()


@pytest.mark.parametrize("url, line, counted", [
    ("mysql://u@localhost:3306/", "ERROR 1064 (42000) at line 7: You have an error in your SQL syntax", True),
    ("mysql://u@localhost:3306/", "Warning (Code 1449): The user specified as a definer does not exist", False),
    ("postgres://u@localhost:5432/postgres", "pg_restore: error: could not execute query", True),
    ("postgres://u@localhost:5432/postgres", "psql:<stdin>:12: ERROR:  relation \"t\" already exists", True),
    ("postgres://u@localhost:5432/postgres", "NOTICE:  table \"t\" does not exist, skipping", False),
])
def test_the_restore_lines_that_fail_a_drill(tmp_path, url, line, counted):
    target = drill_target(url, tmp_path, 5)
    try:
        errors = ErrorLines(None, target.restore_error)
        errors("restore", line)
        assert errors.lines == ([line] if counted else [])
    finally:
        target.cleanup()
