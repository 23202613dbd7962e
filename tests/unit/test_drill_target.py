"""A drill reaches its target through the engine: PostgreSQL's target is a DrillTarget; an engine without one
(MySQL for now) is refused as a config error before anything is created."""

from __future__ import annotations

import pytest

from easybackup.catalogue.drill import drill_target
from easybackup.engines import DrillTarget
from easybackup.errors import EasybackupError


def test_a_postgres_target_is_a_drill_target(tmp_path):
    target = drill_target("postgres://u@localhost:5432/postgres", tmp_path, 5)
    try:
        assert isinstance(target, DrillTarget)
    finally:
        target.cleanup()


def test_a_mysql_target_cannot_be_drilled_yet_and_leaves_no_file(tmp_path):
    with pytest.raises(EasybackupError) as caught:
        drill_target("mysql://u@localhost:3306/app", tmp_path, 5)
    assert caught.value.kind == "config" and "do not support mysql" in caught.value.message
    assert list(tmp_path.iterdir()) == []
