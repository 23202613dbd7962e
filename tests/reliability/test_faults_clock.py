"""Fault matrix — the clock: DST changes and wall-clock jumps.

The scheduler on an injected clock, ticked a second at a time across both DST changes of Europe/Berlin in 2026;
then one end-to-end supervisor under libfaketime, whose wall clock the test moves (forward and back) while the
supervisor runs. (Jumps on the injected clock: tests/unit/test_scheduler.py, test_a_jump_forward_over_many_slots_
fires_once_and_schedules_from_the_new_time and test_a_jump_backward_never_reruns_a_slot_already_run.)
"""

from __future__ import annotations

import glob
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from easybackup.config.model import DatabaseTarget, S3Settings, Strategy
from easybackup.supervision.scheduler import Scheduler
from tests.harness.configs import write_config
from tests.harness.daemon import monitoring, parse_utc
from tests.harness.net import free_port
from tests.harness.restore import manifest_keys
from tests.reliability.conftest import runs_total, suite_env

UTC = timezone.utc
BERLIN = ZoneInfo("Europe/Berlin")


def strategy(name: str, schedule: str) -> Strategy:
    return Strategy(name=name, schedule=schedule, timezone="Europe/Berlin", s3=S3Settings(bucket="b"),
                    databases=(DatabaseTarget(name="app", url="postgres://h/app"),))


def runs_between(start: datetime, end: datetime, schedules: dict[str, str]) -> dict[str, list[str]]:
    """Tick an injected clock a second at a time from `start` to `end`; return, per strategy, the Berlin local
    times (with their UTC offset) at which it was due."""
    scheduler = Scheduler(tuple(strategy(name, text) for name, text in schedules.items()), start)
    fired: dict[str, list[str]] = {name: [] for name in schedules}
    now = start
    while now < end:
        now += timedelta(seconds=1)
        for due in scheduler.due(now):
            fired[due.strategy.name].append(now.astimezone(BERLIN).strftime("%H:%M:%S%z"))
    return fired


SCHEDULES = {"hourly": "1h", "half-hourly": "30m", "daily": "1d@02:30", "cron": "30 2 * * *"}


def test_across_the_spring_forward_every_slot_runs_exactly_once_and_the_missing_ones_right_after_the_gap():
    # 2026-03-29 in Berlin: 02:00 CET becomes 03:00 CEST; 02:00 and 02:30 do not exist that night.
    fired = runs_between(datetime(2026, 3, 28, 22, 0, 30, tzinfo=UTC), datetime(2026, 3, 29, 3, 0, 30, tzinfo=UTC),
                         SCHEDULES)
    assert fired == {
        "hourly": ["00:00:00+0100", "01:00:00+0100", "03:00:00+0200", "04:00:00+0200", "05:00:00+0200"],
        "half-hourly": ["23:30:00+0100", "00:00:00+0100", "00:30:00+0100", "01:00:00+0100", "01:30:00+0100",
                        "03:00:00+0200", "03:30:00+0200", "04:00:00+0200", "04:30:00+0200", "05:00:00+0200"],
        "daily": ["03:00:00+0200"],
        "cron": ["03:00:00+0200"],
    }


def test_across_the_fall_back_every_slot_runs_exactly_once_and_the_repeated_hour_does_not_run_again():
    # 2026-10-25 in Berlin: 03:00 CEST becomes 02:00 CET; 02:00-02:59 happens twice and runs the first time only.
    fired = runs_between(datetime(2026, 10, 24, 21, 0, 30, tzinfo=UTC), datetime(2026, 10, 25, 3, 0, 30, tzinfo=UTC),
                         SCHEDULES)
    assert fired == {
        "hourly": ["00:00:00+0200", "01:00:00+0200", "02:00:00+0200", "03:00:00+0100", "04:00:00+0100"],
        "half-hourly": ["23:30:00+0200", "00:00:00+0200", "00:30:00+0200", "01:00:00+0200", "01:30:00+0200",
                        "02:00:00+0200", "02:30:00+0200", "03:00:00+0100", "03:30:00+0100", "04:00:00+0100"],
        "daily": ["02:30:00+0200"],
        "cron": ["02:30:00+0200"],
    }


# -------------------------------------------------------------------------------- end to end, libfaketime


def libfaketime() -> str:
    """Return the path of libfaketime; fail (never skip) when it is missing: `make test` installs faketime."""
    found = sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1") + glob.glob("/usr/lib/faketime/libfaketime.so.1"))
    assert found, "libfaketime not found: apt-get install faketime (make test does)"
    return found[0]


class FakeWallClock:
    """The wall clock of every process started with `env()`: libfaketime reads its offset from a file on every
    call, so the test can move it while they run. Only the wall clock moves: the monotonic clock (timeouts, the
    heartbeat) stays real, as it does when an operator or NTP sets the time."""

    def __init__(self, directory: Path):
        self.file = directory / "faketime-offset"

    def set(self, moment: datetime) -> None:
        """Make the wall clock read `moment` now, and run on from there at normal speed."""
        self.file.write_text(f"{moment.timestamp() - time.time():+.3f}\n")

    def env(self) -> dict:
        return suite_env(LD_PRELOAD=libfaketime(), FAKETIME_TIMESTAMP_FILE=str(self.file), FAKETIME_NO_CACHE="1",
                         FAKETIME_DONT_FAKE_MONOTONIC="1", TZ="Europe/Berlin")


@pytest.fixture(scope="module")
def tiny_db(pg) -> str:
    pg.create_database("rel_clock")
    pg.psql("CREATE TABLE t AS SELECT g, md5(g::text) AS h FROM generate_series(1, 500) g", "rel_clock")
    return "rel_clock"


def utc(hour: int, minute: int, second: int, day: int = 25) -> datetime:
    """Return that UTC time of 2026-10-`day`, the day Berlin falls back (at 01:00 UTC)."""
    return datetime(2026, 10, day, hour, minute, second, tzinfo=UTC)


def test_a_supervisor_under_libfaketime_runs_the_fall_back_slot_once_a_forward_jump_once_and_a_backward_jump_never(
        pg, tiny_db, moto, bucket, tmp_path, start_daemon):
    clock = FakeWallClock(tmp_path)
    clock.set(utc(23, 50, 0, day=24))  # 2026-10-24 23:50 UTC = 01:50 CEST: no slot for a while
    port = free_port()
    config = write_config(tmp_path, bucket=bucket, endpoint=moto.endpoint, monitoring=monitoring(port),
                          strategies=[{"name": "main", "database_url": pg.url(tiny_db), "schedule": "1h",
                                       "timezone": "Europe/Berlin"}])
    daemon = start_daemon(config, port, env=clock.env())
    daemon.wait_health(lambda doc: doc["strategies"]["total"] == 1, what="the supervisor to serve health")

    def fake_now(document: dict) -> datetime:
        return parse_utc(document["timestamp"])

    def successes() -> float:
        return runs_total(daemon.metrics(), "main", "success")

    def wait_past(moment: datetime) -> dict:
        return daemon.wait_health(lambda doc: fake_now(doc) > moment, timeout=15, what=f"the clock past {moment}")

    def wait_runs(count: int) -> dict:
        daemon.wait_health(lambda doc: successes() == count and doc["strategies"]["last_backup_status"]["main"]
                           ["status"] == "success", timeout=30, what=f"{count} successful runs")
        return daemon.strategy("main")

    def just_before(slot: datetime) -> None:
        clock.set(slot - timedelta(seconds=1.5))

    def nothing_runs_across(slot: datetime) -> None:
        before = daemon.strategy("main")
        just_before(slot)
        wait_past(slot + timedelta(seconds=2))  # a due run shows as `running` within a tick (1 s)
        after = daemon.strategy("main")
        assert (after["status"], after["last_run"], after["next_run"]) == \
            (before["status"], before["last_run"], before["next_run"]), after

    # 02:00 CEST (00:00 UTC) runs; the next slot is 03:00 CET (02:00 UTC), not the repeated 02:00 CET.
    just_before(utc(0, 0, 0))
    view = wait_runs(1)
    assert parse_utc(view["last_run"]) - utc(0, 0, 0) < timedelta(seconds=5)
    assert parse_utc(view["next_run"]) == utc(2, 0, 0)
    # Through the start of the repeated hour (02:00 CET = 01:00 UTC): nothing runs.
    nothing_runs_across(utc(1, 0, 0))
    just_before(utc(2, 0, 0))
    view = wait_runs(2)
    assert parse_utc(view["last_run"]) - utc(2, 0, 0) < timedelta(seconds=5)

    # A jump forward over three slots (03:00, 04:00, 05:00 UTC) runs the missed slot once, then waits for 06:00.
    clock.set(utc(5, 30, 0))
    view = wait_runs(3)
    assert parse_utc(view["next_run"]) == utc(6, 0, 0)
    # A jump back before 05:00 UTC, a slot that run already covered: it does not run again.
    nothing_runs_across(utc(5, 0, 0))
    assert successes() == 3
    assert daemon.stop() == 0

    # S3 holds exactly those three runs, stamped with the supervisor's (fake) wall clock.
    stamps = sorted(key.rsplit("/", 1)[1][:15] for key in manifest_keys(moto, bucket))
    assert [stamp[:13] for stamp in stamps] == ["2026-10-25T00", "2026-10-25T02", "2026-10-25T05"], stamps
