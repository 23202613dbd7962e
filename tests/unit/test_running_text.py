"""A stop's log line says what is running: backups, restore drills or verify runs, by kind."""

from types import SimpleNamespace

from easybackup.supervision.pool import running_text


def handles(*kinds: str) -> list:
    return [SimpleNamespace(job=SimpleNamespace(kind=kind)) for kind in kinds]


def test_backups_alone_read_as_before():
    assert running_text(handles("backup")) == "1 running backup(s)"
    assert running_text(handles("backup", "backup")) == "2 running backup(s)"


def test_a_drill_alone_is_a_restore_drill_not_a_backup():
    assert running_text(handles("drill")) == "1 running restore drill(s)"


def test_several_kinds_are_counted_apart():
    assert running_text(handles("backup", "drill", "backup", "verify")) == \
        "4 running jobs (2 backup(s), 1 restore drill(s), 1 verify run(s))"


def test_nothing_running():
    assert running_text([]) == "0 running backup(s)"
