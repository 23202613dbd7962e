"""A restore drill whose backup retention deleted under it, after a newer backup, is `superseded`, not failed: the
judgement (catalogue/drill_plan.py), and how health, metrics, the log and Slack say it."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

from easybackup.catalogue.drill_plan import drill_status, superseded_by
from easybackup.cli.drill import passed, summary_lines
from easybackup.jobspec import DRILL
from easybackup.notifications import messages
from easybackup.storage.layout import archive_key
from easybackup.storage.manifest import Manifest
from easybackup.supervision.observers import LogObserver
from tests.unit.test_drill_reporting import DRILLED, drill_finished, observed, sample
from tests.unit.test_health_state import Clock, entry
from tests.unit.test_log_observer import captured_lines

START = datetime(2025, 6, 17, 2, 0, tzinfo=timezone.utc)
RUN = messages.RunInfo(strategy="main", run_id="abc123def456", databases=("shop", "crm"),
                       destination="s3://bucket/backups/main/", timezone="UTC", started_at=START)


def backup(hours: int, database: str = "shop") -> Manifest:
    started = START + timedelta(hours=hours)
    stamp = started.strftime("%Y-%m-%dT%H%M%SZ")
    run_id = f"{hours + 100:012x}"
    text = started.strftime("%Y-%m-%dT%H:%M:%SZ")
    return Manifest(strategy="main", database=database, run_id=run_id,
                    key=archive_key("backups", "main", database, f"{stamp}-{run_id}", "custom", "gzip"),
                    started_at=text, finished_at=text, stored_bytes=1, sha256="0" * 64, compression="gzip",
                    format="custom")


def passed_db(name: str) -> dict:
    return {"database": name, "status": "success", "key": "k", "tables": 3, "rows": 1003, "restored_bytes": 4096,
            "restore_s": 2.0, "duration_s": 2.5, "error": None}


def superseded_db(name: str, drilled: Manifest, newer: Manifest) -> dict:
    return {"database": name, "status": "superseded", "key": drilled.key, "duration_s": 1.0,
            "error": {"kind": "superseded", "message": f"{drilled.key} was deleted while it was drilled",
                      "detail": f"a newer backup superseded it: {newer.key}"}}


def failed_db(name: str) -> dict:
    return {"database": name, "status": "failed", "key": "k", "duration_s": 1.0,
            "error": {"kind": "verification", "message": "checksum mismatch", "detail": None}}


DRILLED_BACKUP, NEWER_BACKUP = backup(0), backup(1)


def superseded_result() -> dict:
    gone = superseded_db("shop", DRILLED_BACKUP, NEWER_BACKUP)
    return {"status": "superseded", "duration_s": 9.0, "databases": [gone, passed_db("crm")], "error": gone["error"]}


# -- the judgement ----------------------------------------------------------------------------------------------

def test_a_drilled_backup_deleted_under_the_drill_with_a_newer_one_present_is_superseded_by_the_newest():
    newest = backup(2)
    assert superseded_by(DRILLED_BACKUP, [NEWER_BACKUP, newest], missing=()) == newest


def test_a_drilled_backup_whose_archive_alone_is_gone_is_superseded_too():
    assert superseded_by(DRILLED_BACKUP, [DRILLED_BACKUP, NEWER_BACKUP], missing={DRILLED_BACKUP.key}) == NEWER_BACKUP


def test_a_deleted_backup_with_no_newer_one_is_no_excuse():
    older = backup(-5)
    assert superseded_by(DRILLED_BACKUP, [older], missing=()) is None
    assert superseded_by(DRILLED_BACKUP, [], missing=()) is None
    assert superseded_by(DRILLED_BACKUP, [NEWER_BACKUP], missing={NEWER_BACKUP.key}) is None  # newer, not whole


def test_a_backup_still_whole_failed_its_drill_whatever_is_newer():
    assert superseded_by(DRILLED_BACKUP, [DRILLED_BACKUP, NEWER_BACKUP], missing=()) is None


def test_the_drill_is_superseded_only_when_nothing_failed_and_nothing_failed_is_success():
    assert drill_status(["success", "success"], error=False) == "success"
    assert drill_status(["success", "superseded"], error=False) == "superseded"
    assert drill_status(["superseded"], error=False) == "superseded"
    assert drill_status(["superseded", "failed"], error=False) == "failed"
    assert drill_status(["success", "timed_out"], error=False) == "failed"
    assert drill_status(["success"], error=True) == "failed"
    assert drill_status([], error=False) == "failed"


def test_drill_exits_zero_for_a_superseded_drill_and_says_why_per_database():
    result = superseded_result()
    assert passed({"main": result}) and not passed({"main": result, "other": {"status": "failed"}})
    assert not passed({})
    lines = summary_lines({"main": result})
    assert lines[0] == (f"main/shop: superseded — {DRILLED_BACKUP.key} was deleted while it was drilled: "
                        f"a newer backup superseded it: {NEWER_BACKUP.key}")
    assert lines[1].startswith("main/crm: passed — 3 table(s), 1003 row(s)")


# -- health and metrics -----------------------------------------------------------------------------------------

def test_a_superseded_drill_shows_in_health_with_why_and_does_not_degrade_it():
    clock = Clock()
    state, metrics, observer = observed(clock)
    drill_finished(observer, superseded_result())
    drill = entry(state, "production-db")["last_restore_drill"]
    assert drill["status"] == "superseded" and drill["overdue"] is False
    assert drill["error"] == f"shop: {DRILLED_BACKUP.key} was deleted while it was drilled: a newer backup " \
                             f"superseded it: {NEWER_BACKUP.key}"
    assert state.snapshot()[1]["status"] == "healthy"
    assert sample(metrics, "easybackup_restore_drill_runs_total", status="superseded") == 1
    assert sample(metrics, "easybackup_restore_drill_runs_total", status="failed") == 0
    assert sample(metrics, "easybackup_restore_drill_last_success_timestamp_seconds") is None  # nothing proved


def test_a_superseded_drill_is_no_pass_so_drills_that_are_only_ever_superseded_become_overdue():
    clock = Clock()
    state, _metrics, observer = observed(clock)
    drill_finished(observer, superseded_result())
    clock.advance(days=2, hours=1)
    state.loop_heartbeat()
    assert entry(state, "production-db")["last_restore_drill"]["overdue"] is True


def test_a_superseded_drill_read_back_from_its_record_after_a_restart_is_superseded():
    clock = Clock()
    state, _metrics, _observer = observed(clock)
    state.restore_drill(DRILLED.name, {"status": "superseded", "started_at": "2025-06-16T02:00:00Z",
                                       "finished_at": "2025-06-16T02:01:00Z", "duration_s": 60.0,
                                       "error": "shop: the backup was deleted while it was drilled"})
    drill = entry(state, "production-db")["last_restore_drill"]
    assert (drill["status"], drill["error"]) == ("superseded", "shop: the backup was deleted while it was drilled")
    assert state.snapshot()[1]["status"] == "healthy"


def test_every_drill_outcome_is_declared_at_zero_for_a_drilled_strategy():
    _state, metrics, _observer = observed(Clock())
    for status in ("success", "failed", "superseded"):
        assert sample(metrics, "easybackup_restore_drill_runs_total", status=status) == 0


# -- the log and Slack say "restore drill", not "backup" or "run" -------------------------------------------------

def drill_handle(result: dict) -> SimpleNamespace:
    return SimpleNamespace(strategy="main", run_id="abc123def456", job=SimpleNamespace(kind=DRILL), result=result)


def test_the_log_says_a_restore_drill_passed_was_superseded_or_failed():
    passed_line = captured_lines(lambda: LogObserver().run_finished(drill_handle(
        {"status": "success", "duration_s": 4.2})))
    assert passed_line == ["restore drill passed in 4.2 s"]
    [superseded] = captured_lines(lambda: LogObserver().run_finished(drill_handle(superseded_result())))
    assert superseded.startswith(f"restore drill superseded in 9.0 s: [superseded] {DRILLED_BACKUP.key} was deleted")
    [failed] = captured_lines(lambda: LogObserver().run_finished(drill_handle(
        {"status": "failed", "error": failed_db("shop")["error"]})))
    assert failed == "restore drill failed: [verification] checksum mismatch"


def test_the_drill_summary_for_the_outcome_channels_says_restore_drill_and_links_the_thread():
    link = messages.thread_link("C1", "1718600000.000100")
    ok = messages.drill_summary(RUN, {"status": "success", "duration_s": 5.0,
                                      "databases": [passed_db("shop"), passed_db("crm")]}, link)
    assert ok["text"] == f"✅ *main*: restore drill passed — 2 databases, 2006 rows in 5s · {link}"
    failed = messages.drill_summary(RUN, {"status": "failed", "duration_s": 5.0,
                                          "databases": [superseded_db("shop", DRILLED_BACKUP, NEWER_BACKUP),
                                                        failed_db("crm")]}, None)
    assert failed["text"] == "❌ *main*: restore drill failed — [verification] checksum mismatch"
    gone = messages.drill_summary(RUN, superseded_result(), None)
    assert gone["text"].startswith(f"⏭️ *main*: restore drill superseded — 1/2 databases passed, shop superseded: "
                                   f"{DRILLED_BACKUP.key} was deleted while it was drilled")
    assert "backup failed" not in ok["text"] + failed["text"] + gone["text"]


def test_the_drill_thread_says_superseded_on_the_database_the_report_and_the_parent():
    result = superseded_result()
    assert messages.drill_line(result["databases"][0]).startswith("⏭️ *shop*: superseded — ")
    assert messages.drill_report(RUN, result)["text"] == "Restore drill of main: superseded"
    assert messages.drill_finished_parent(RUN, result)["text"].startswith(
        "⏭️ Restore drill superseded: *main* — 1/2 databases passed, shop superseded: ")
    assert messages.drill_finished_parent(RUN, {"status": "failed", "databases": [failed_db("crm")]})["text"] == \
        "❌ Restore drill failed: *main* — [verification] checksum mismatch"
