"""The health state: per-strategy status, overdue, a stalled loop and connectivity, on an injected clock."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from easybackup import __version__
from easybackup.config.model import DatabaseTarget, S3Settings, Strategy
from easybackup.monitoring.state import MonitorState

START = datetime(2025, 6, 17, 0, 0, 5, tzinfo=timezone.utc)
UTC_TEXT = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
# The requirements' example response (tests/fixtures/README.md): every key of it is in ours, with its type.
SEED_HEALTH = json.loads((Path(__file__).resolve().parents[1] / "fixtures" / "seed_health.json").read_text())


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, start: datetime = START):
        self.now = start.timestamp()

    def __call__(self) -> float:
        return self.now

    def advance(self, **delta) -> datetime:
        self.now += timedelta(**delta).total_seconds()
        return self.at()

    def at(self) -> datetime:
        return datetime.fromtimestamp(self.now, timezone.utc)


def strategy(name: str, schedule: str = "6h") -> Strategy:
    return Strategy(name=name, schedule=schedule, s3=S3Settings(bucket="b"),
                    databases=(DatabaseTarget(name="app", url="postgres://u:hunter2@h/app"),))


def success(size: int = 1234, duration: float = 12.5) -> dict:
    return {"status": "success", "duration_s": duration, "error": None,
            "databases": [{"database": "app", "status": "success", "key": "k", "size": size, "sha256": "00",
                           "duration_s": duration, "verified": False, "attempts": 1, "error": None}]}


def failure(message: str = "connection timeout", kind: str = "connection") -> dict:
    error = {"kind": kind, "transient": True, "message": message, "detail": None, "hint": "check the host",
             "exit_codes": {"pg_dump": 1}, "last_lines": ["pg_dump: error: could not connect"]}
    return {"status": "failed", "duration_s": 3.0, "error": error,
            "databases": [{"database": "app", "status": "failed", "key": None, "size": None, "sha256": None,
                           "duration_s": 3.0, "verified": False, "attempts": 3, "error": error}]}


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def state(clock) -> MonitorState:
    state = MonitorState((strategy("production-db", "6h"), strategy("staging-db", "1d")), clock=clock)
    state.loop_heartbeat()
    return state


def beat(state: MonitorState, clock: Clock, **delta) -> datetime:
    moment = clock.advance(**delta)
    state.loop_heartbeat()
    return moment


def entry(state: MonitorState, name: str) -> dict:
    return state.snapshot()[1]["strategies"]["last_backup_status"][name]


def test_every_configured_strategy_is_pending_from_the_start(state):
    code, health = state.snapshot()
    assert code == 200 and health["status"] == "healthy"
    assert health["strategies"]["total"] == 2
    for name in ("production-db", "staging-db"):
        view = health["strategies"]["last_backup_status"][name]
        assert view["status"] == "pending"
        assert view["last_run"] is None and view["next_run"] is None and view["last_success"] is None
        assert "error" not in view and view["consecutive_failures"] == 0 and view["overdue"] is False
    assert health["s3_connectivity"] == "unknown" and health["slack_connectivity"] == "unknown"


def test_the_document_has_the_seed_keys_with_the_seed_types(state, clock):
    state.set_next_run("production-db", START + timedelta(hours=6))
    state.run_started("production-db", "r1", clock.at())
    state.run_finished("production-db", success(), beat(state, clock, minutes=1))
    state.run_started("staging-db", "r2", clock.at())
    state.run_finished("staging-db", failure(), beat(state, clock, minutes=1))
    state.set_connectivity(s3="ok", slack="ok")
    code, health = state.snapshot()
    health = json.loads(json.dumps(health))  # what a client sees
    assert {"status", "timestamp", "version", "strategies", "s3_connectivity", "slack_connectivity"} <= set(health)
    assert health["version"] == __version__ and isinstance(health["strategies"]["total"], int)
    assert UTC_TEXT.match(health["timestamp"])
    for view in health["strategies"]["last_backup_status"].values():
        assert {"status", "last_run", "next_run"} <= set(view)
        for key in ("last_run", "next_run", "last_success"):
            assert view[key] is None or UTC_TEXT.match(view[key]), (key, view[key])
    failed = health["strategies"]["last_backup_status"]["staging-db"]
    assert isinstance(failed["error"], str)
    assert_has_the_keys_and_types_of(health, SEED_HEALTH, skip={"last_backup_status"})
    seed_views = SEED_HEALTH["strategies"]["last_backup_status"]
    views = health["strategies"]["last_backup_status"]
    assert_has_the_keys_and_types_of(views["production-db"], seed_views["production-db"])  # a success
    assert_has_the_keys_and_types_of(views["staging-db"], seed_views["analytics-db"])  # a failure
    assert (views["production-db"]["status"], views["staging-db"]["status"]) == ("success", "failed")


def assert_has_the_keys_and_types_of(document: dict, seed: dict, skip: frozenset | set = frozenset()) -> None:
    """Given a document and the seed's, assert the document has every seed key (nested mappings too, but those
    in `skip`) with a value of the seed value's type; a time may be None (not known yet)."""
    for key, value in seed.items():
        assert key in document, key
        if isinstance(value, dict):
            if key not in skip:
                assert_has_the_keys_and_types_of(document[key], value, skip)
        elif not (document[key] is None and UTC_TEXT.match(str(value))):
            assert isinstance(document[key], type(value)), (key, document[key])


def test_a_started_run_shows_as_running(state, clock):
    state.run_started("production-db", "r1", clock.at())
    assert entry(state, "production-db")["status"] == "running"
    assert entry(state, "staging-db")["status"] == "pending"


def test_a_successful_run_records_its_time_size_and_duration(state, clock):
    started = beat(state, clock, minutes=5)
    state.run_started("production-db", "r1", started)
    finished = beat(state, clock, minutes=2)
    state.run_finished("production-db", success(size=4096, duration=119.5), finished)
    view = entry(state, "production-db")
    assert view["status"] == "success" and "error" not in view and view["error_kind"] is None
    assert view["last_run"] == "2025-06-17T00:05:05Z"  # when it started, as in the seed
    assert view["last_success"] == "2025-06-17T00:07:05Z"
    assert view["size_bytes"] == 4096 and view["duration_seconds"] == 119.5
    assert view["consecutive_failures"] == 0


def test_a_failed_run_shows_its_error_on_one_line_and_counts_failures(state, clock):
    for number in (1, 2):
        state.run_started("production-db", f"r{number}", beat(state, clock, minutes=1))
        state.run_finished("production-db", failure("connection timeout\n  after 10 s"), beat(state, clock, seconds=3))
    view = entry(state, "production-db")
    assert view["status"] == "failed"
    assert view["error"] == "app: connection timeout after 10 s"
    assert view["error_kind"] == "connection" and view["consecutive_failures"] == 2
    assert state.snapshot()[1]["status"] == "healthy"  # one failure is not overdue yet


def test_a_success_after_failures_clears_the_error(state, clock):
    state.run_finished("production-db", failure(), beat(state, clock, minutes=1))
    state.run_finished("production-db", success(), beat(state, clock, minutes=1))
    view = entry(state, "production-db")
    assert view["status"] == "success" and "error" not in view and view["consecutive_failures"] == 0


def test_a_crash_without_error_details_still_fails_with_a_message(state, clock):
    state.run_finished("production-db", {"status": "crashed"}, beat(state, clock, minutes=1))
    view = entry(state, "production-db")
    assert view["status"] == "failed" and "crashed" in view["error"]


def test_secrets_in_an_error_are_masked(state, clock):
    state.run_finished("production-db", failure("cannot connect to postgres://u:hunter2@h/app"),
                       beat(state, clock, minutes=1))
    assert "hunter2" not in json.dumps(state.snapshot()[1])


def test_overdue_is_counted_from_process_start_when_nothing_succeeded(state, clock):
    beat(state, clock, hours=11, minutes=59)
    assert entry(state, "production-db")["overdue"] is False
    beat(state, clock, minutes=2)  # two 6 h intervals since start, and no success
    code, health = state.snapshot()
    assert code == 200 and health["status"] == "degraded"
    assert health["strategies"]["last_backup_status"]["production-db"]["overdue"] is True
    assert health["strategies"]["last_backup_status"]["staging-db"]["overdue"] is False  # 1d schedule


def test_overdue_is_counted_from_the_last_success_when_it_is_later(state, clock):
    state.run_finished("production-db", success(), beat(state, clock, hours=10))
    beat(state, clock, hours=11)  # 21 h after start, 11 h after the success
    assert entry(state, "production-db")["overdue"] is False
    beat(state, clock, hours=2)
    assert entry(state, "production-db")["overdue"] is True
    assert state.snapshot()[1]["status"] == "degraded"


def test_an_old_success_restored_from_s3_counts_from_process_start(state, clock):
    state.restore_last("production-db", START - timedelta(days=3), START - timedelta(days=3), "success", 99)
    view = entry(state, "production-db")
    assert view["status"] == "success" and view["size_bytes"] == 99
    assert view["last_run"] == "2025-06-14T00:00:05Z" and view["overdue"] is False
    beat(state, clock, hours=12, seconds=1)
    assert entry(state, "production-db")["overdue"] is True


def test_a_restored_manifest_does_not_overwrite_a_run_seen_by_this_process(state, clock):
    state.run_started("production-db", "r1", clock.at())
    state.restore_last("production-db", START - timedelta(days=1), START - timedelta(days=1), "success")
    assert entry(state, "production-db")["status"] == "running"
    state.run_finished("production-db", success(), beat(state, clock, minutes=1))
    state.restore_last("production-db", START - timedelta(days=1), START - timedelta(days=1), "success")
    assert entry(state, "production-db")["last_success"] == "2025-06-17T00:01:05Z"


def test_a_stalled_loop_is_unhealthy_with_503(state, clock):
    clock.advance(seconds=29)
    assert state.snapshot()[0] == 200
    clock.advance(seconds=2)  # 31 s without a heartbeat
    code, health = state.snapshot()
    assert code == 503 and health["status"] == "unhealthy"
    state.loop_heartbeat()
    assert state.snapshot()[0] == 200


def test_a_loop_that_never_beats_becomes_unhealthy(clock):
    state = MonitorState((strategy("a"),), clock=clock)
    clock.advance(seconds=31)
    assert state.snapshot()[0] == 503


def test_a_stall_outranks_degraded(state, clock):
    state.set_connectivity(s3="error")
    clock.advance(minutes=1)
    assert state.snapshot()[1]["status"] == "unhealthy"


def test_s3_unreachable_is_degraded_but_slack_unreachable_is_not(state):
    state.set_connectivity(slack="error")
    assert state.snapshot()[1]["status"] == "healthy"
    state.set_connectivity(s3="error")
    code, health = state.snapshot()
    assert code == 200 and health["status"] == "degraded"
    assert health["s3_connectivity"] == "error" and health["slack_connectivity"] == "error"
    state.set_connectivity(s3="ok", slack="disabled")
    assert state.snapshot()[1]["status"] == "healthy"


def test_connectivity_rejects_unknown_values(state):
    with pytest.raises(ValueError, match="connectivity"):
        state.set_connectivity(s3="fine")


def test_next_run_and_timestamp_are_utc_with_z(state, clock):
    state.set_next_run("production-db", datetime(2025, 6, 17, 8, 0, tzinfo=timezone(timedelta(hours=2))))
    view = entry(state, "production-db")
    assert view["next_run"] == "2025-06-17T06:00:00Z"
    assert state.snapshot()[1]["timestamp"] == "2025-06-17T00:00:05Z"


def test_a_reload_keeps_the_strategies_that_remain_and_adds_new_ones_as_pending(state, clock):
    state.run_finished("production-db", success(size=7), beat(state, clock, minutes=1))
    state.replace_strategies((strategy("production-db", "1h"), strategy("new-db")))
    health = state.snapshot()[1]
    assert set(health["strategies"]["last_backup_status"]) == {"production-db", "new-db"}
    assert health["strategies"]["total"] == 2
    assert health["strategies"]["last_backup_status"]["production-db"]["size_bytes"] == 7
    assert health["strategies"]["last_backup_status"]["new-db"]["status"] == "pending"
    beat(state, clock, hours=2, minutes=1)  # the new 1h schedule applies to the overdue check
    assert entry(state, "production-db")["overdue"] is True


def test_updates_for_a_strategy_a_reload_removed_are_ignored(state, clock):
    state.replace_strategies((strategy("production-db"),))
    state.run_finished("staging-db", success(), clock.at())
    state.run_started("staging-db", "r", clock.at())
    assert set(state.snapshot()[1]["strategies"]["last_backup_status"]) == {"production-db"}


def test_a_malformed_result_never_raises(state, clock):
    state.run_finished("production-db", {"status": "failed", "databases": 7, "error": {"exit_codes": [1]}},
                       clock.at())
    state.run_finished("production-db", "not a dict", clock.at())
    assert entry(state, "production-db")["consecutive_failures"] == 2


def test_health_says_how_each_strategy_connects_without_secrets(clock):
    from dataclasses import replace

    from easybackup.config.model import ProxySettings, TunnelSettings

    tunnelled = replace(strategy("behind-bastion"), tunnel=TunnelSettings(host="bastion", user="backup"))
    proxied = replace(strategy("behind-proxy"), proxy=ProxySettings(url="socks5://u:Proxy-Pw-77@proxy:1080"))
    monitor = MonitorState((strategy("plain"), tunnelled, proxied), clock=clock)
    views = monitor.snapshot()[1]["strategies"]["last_backup_status"]
    assert views["plain"]["connects"] == "direct"
    assert views["behind-bastion"]["connects"] == "via ssh tunnel backup@bastion:22"
    assert views["behind-proxy"]["connects"].startswith("via socks5 proxy proxy:1080")
    assert "Proxy-Pw-77" not in json.dumps(views)


def test_a_suspicious_backup_makes_the_strategy_degraded_with_the_reason_until_a_normal_run(state, clock):
    suspicious = success()
    suspicious["databases"][0]["suspicious"] = "stored size 10 B is 1% of the median 1000 B of the last 7 backup(s)"
    state.run_started("production-db", "r1", clock.at())
    finished = beat(state, clock, minutes=1)
    state.run_finished("production-db", suspicious, finished)
    code, health = state.snapshot()
    view = health["strategies"]["last_backup_status"]["production-db"]
    assert code == 200 and health["status"] == "degraded"
    assert view["status"] == "degraded" and view["last_success"] == finished.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert view["warning"] == ("app: suspicious backup, stored size 10 B is 1% of the median 1000 B of the last 7 "
                               "backup(s)")
    assert view["consecutive_failures"] == 0 and "error" not in view
    state.run_started("production-db", "r2", clock.at())
    state.run_finished("production-db", success(), beat(state, clock, minutes=1))
    assert entry(state, "production-db")["status"] == "success" and "warning" not in entry(state, "production-db")
    assert state.snapshot()[1]["status"] == "healthy"
