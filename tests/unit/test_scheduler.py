"""The scheduler on a fake clock: slots, clock jumps both ways, DST, run_on_start, catch_up, reloads."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from easybackup.config.model import DatabaseTarget, S3Settings, Strategy
from easybackup.scheduling import next_run, previous_run
from easybackup.supervision.scheduler import CATCH_UP, RUN_ON_START, SCHEDULE, Scheduler

UTC = timezone.utc
SECOND = timedelta(seconds=1)


def strategy(name: str = "main", schedule: str = "1h", tz: str = "UTC", catch_up: bool = True) -> Strategy:
    return Strategy(name=name, schedule=schedule, timezone=tz, catch_up=catch_up, s3=S3Settings(bucket="b"),
                    databases=(DatabaseTarget(name="app", url="postgres://h/app"),))


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


class FakeClock:
    """A wall clock the test moves: tick() advances a second at a time, jump() sets it anywhere."""

    def __init__(self, start: datetime):
        self.now = start

    def tick(self, seconds: int = 1) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


def fired_over(scheduler: Scheduler, clock: FakeClock, seconds: int) -> list[tuple[str, str, datetime]]:
    """Tick the clock a second at a time for `seconds`; return (name, reason, when) for everything fired."""
    fired = []
    for _ in range(seconds):
        now = clock.tick()
        fired += [(due.strategy.name, due.reason, now) for due in scheduler.due(now)]
    return fired


# ------------------------------------------------------------------------------------------------ slots


def test_nothing_is_due_at_start_without_run_on_start():
    scheduler = Scheduler((strategy(),), utc(2026, 1, 1, 10, 30))
    assert scheduler.due(utc(2026, 1, 1, 10, 30)) == []
    assert scheduler.next_run("main") == utc(2026, 1, 1, 11, 0)


def test_a_strategy_fires_once_when_its_slot_comes_and_then_waits_for_the_next():
    clock = FakeClock(utc(2026, 1, 1, 10, 59, 55))
    scheduler = Scheduler((strategy(),), clock.now)
    fired = fired_over(scheduler, clock, 3610)
    assert [(name, reason, when) for name, reason, when in fired] == [
        ("main", SCHEDULE, utc(2026, 1, 1, 11, 0)), ("main", SCHEDULE, utc(2026, 1, 1, 12, 0))]
    assert scheduler.next_run("main") == utc(2026, 1, 1, 13, 0)


def test_the_due_entry_names_the_slot_that_came():
    scheduler = Scheduler((strategy(schedule="10s"),), utc(2026, 1, 1, 0, 0, 1))
    [due] = scheduler.due(utc(2026, 1, 1, 0, 0, 10, 400000))
    assert (due.reason, due.slot) == (SCHEDULE, utc(2026, 1, 1, 0, 0, 10))


def test_each_strategy_follows_its_own_schedule_and_timezone():
    clock = FakeClock(utc(2026, 6, 1, 0, 0))
    strategies = (strategy("hourly", "1h"), strategy("tokyo", "1d@02:30", "Asia/Tokyo"),
                  strategy("cron", "*/20 * * * *"))
    scheduler = Scheduler(strategies, clock.now)
    fired = fired_over(scheduler, clock, 2 * 86400)
    for item in strategies:
        expected, after = [], utc(2026, 6, 1, 0, 0)
        while (after := next_run(item.schedule, item.timezone, after)) <= clock.now:
            expected.append(after)
        assert [when for name, _, when in fired if name == item.name] == expected, item.name
    tokyo = [when for name, _, when in fired if name == "tokyo"]
    assert [when.astimezone(ZoneInfo("Asia/Tokyo")).strftime("%H:%M") for when in tokyo] == ["02:30", "02:30"]


def test_seconds_until_due_counts_down_to_the_earliest_slot():
    scheduler = Scheduler((strategy("a", "1h"), strategy("b", "10m")), utc(2026, 1, 1, 10, 3))
    assert scheduler.seconds_until_due(utc(2026, 1, 1, 10, 3)) == 7 * 60
    assert scheduler.seconds_until_due(utc(2026, 1, 1, 10, 11)) == 0.0


# ------------------------------------------------------------------------------------------ clock jumps


def test_a_jump_forward_over_many_slots_fires_once_and_schedules_from_the_new_time():
    scheduler = Scheduler((strategy(schedule="1h"),), utc(2026, 1, 1, 10, 30))
    jumped = utc(2026, 1, 1, 17, 12)
    assert [due.slot for due in scheduler.due(jumped)] == [utc(2026, 1, 1, 11, 0)]
    assert scheduler.due(jumped + SECOND) == []
    assert scheduler.next_run("main") == utc(2026, 1, 1, 18, 0)


def test_a_jump_backward_never_reruns_a_slot_already_run():
    clock = FakeClock(utc(2026, 1, 1, 11, 59, 58))
    scheduler = Scheduler((strategy(schedule="1h"),), clock.now)
    assert [when for _, _, when in fired_over(scheduler, clock, 5)] == [utc(2026, 1, 1, 12, 0)]
    clock.now = utc(2026, 1, 1, 11, 30)  # NTP steps the clock back half an hour
    fired = fired_over(scheduler, clock, 5400)
    assert [when for _, _, when in fired] == [utc(2026, 1, 1, 13, 0)]


@settings(max_examples=200, deadline=None)
@given(steps=st.lists(st.integers(min_value=-7200, max_value=7200), min_size=1, max_size=60),
       schedule=st.sampled_from(["10s", "1m", "15m", "1h", "6h", "1d", "*/7 * * * *"]))
def test_under_any_clock_jumps_each_slot_runs_at_most_once_and_never_before_it_comes(steps, schedule):
    now = utc(2026, 3, 1, 12, 0)
    scheduler = Scheduler((strategy(schedule=schedule),), now)
    slots = []
    for step in steps:
        now += timedelta(seconds=step)
        for due in scheduler.due(now):
            assert due.slot <= now
            slots.append(due.slot)
    assert slots == sorted(set(slots)), "a slot ran twice or out of order"


@settings(max_examples=100, deadline=None)
@given(start=st.datetimes(min_value=datetime(2025, 1, 1), max_value=datetime(2027, 1, 1)),
       schedule=st.sampled_from(["1m", "5m", "1h"]))
def test_with_a_steady_clock_no_slot_is_missed(start, schedule):
    clock = FakeClock(start.replace(tzinfo=UTC, microsecond=0))
    scheduler = Scheduler((strategy(schedule=schedule),), clock.now)
    fired = [when for _, _, when in fired_over(scheduler, clock, 3 * 3600)]
    expected, after = [], start.replace(tzinfo=UTC, microsecond=0)
    while (after := next_run(schedule, "UTC", after)) <= clock.now:
        expected.append(after)
    assert fired == expected


# ---------------------------------------------------------------------------------------------------- DST


def test_a_daily_slot_inside_the_spring_forward_gap_runs_once_right_after_the_gap():
    # Europe/Berlin, 2026-03-29: 02:00 -> 03:00. A 02:30 slot does not exist that day.
    clock = FakeClock(utc(2026, 3, 28, 12, 0))
    scheduler = Scheduler((strategy(schedule="1d@02:30", tz="Europe/Berlin"),), clock.now)
    fired = [when for _, _, when in fired_over(scheduler, clock, 2 * 86400)]
    berlin = [when.astimezone(ZoneInfo("Europe/Berlin")).isoformat(timespec="minutes") for when in fired]
    assert berlin == ["2026-03-29T03:00+02:00", "2026-03-30T02:30+02:00"]


def test_a_daily_slot_in_the_repeated_fall_back_hour_runs_once():
    # Europe/Berlin, 2026-10-25: 03:00 -> 02:00, so 02:30 happens twice; it runs at the first one only.
    clock = FakeClock(utc(2026, 10, 24, 12, 0))
    scheduler = Scheduler((strategy(schedule="1d@02:30", tz="Europe/Berlin"),), clock.now)
    fired = [when for _, _, when in fired_over(scheduler, clock, 2 * 86400)]
    berlin = [when.astimezone(ZoneInfo("Europe/Berlin")).isoformat(timespec="minutes") for when in fired]
    assert berlin == ["2026-10-25T02:30+02:00", "2026-10-26T02:30+01:00"]


def test_an_hourly_schedule_across_fall_back_runs_each_distinct_instant_once():
    clock = FakeClock(utc(2026, 10, 24, 22, 0, 30))
    scheduler = Scheduler((strategy(schedule="1h", tz="Europe/Berlin"),), clock.now)
    fired = [when for _, _, when in fired_over(scheduler, clock, 6 * 3600)]
    assert len(fired) == len(set(fired))
    assert all(later - earlier >= timedelta(hours=1) for earlier, later in zip(fired, fired[1:], strict=False))


# ------------------------------------------------------------------------------------------ run_on_start


def test_run_on_start_runs_every_strategy_once_at_the_first_tick():
    start = utc(2026, 1, 1, 10, 30)
    scheduler = Scheduler((strategy("a"), strategy("b", "1d")), start, run_on_start=True)
    assert scheduler.seconds_until_due(start) == 0.0
    assert [(due.strategy.name, due.reason) for due in scheduler.due(start)] == [("a", RUN_ON_START),
                                                                                 ("b", RUN_ON_START)]
    assert scheduler.due(start + SECOND) == []
    assert scheduler.next_run("a") == utc(2026, 1, 1, 11, 0)


# ---------------------------------------------------------------------------------------------- catch_up


def test_a_strategy_whose_last_slot_was_missed_catches_up_once():
    start = utc(2026, 1, 2, 10, 30)  # daily at midnight: the 2026-01-02 00:00 slot passed while we were down
    scheduler = Scheduler((strategy(schedule="1d"),), start)
    assert scheduler.catch_up("main", utc(2026, 1, 1, 0, 0, 4)) is True
    assert [(due.reason, due.slot) for due in scheduler.due(start + SECOND)] == [(CATCH_UP, None)]
    assert scheduler.due(start + 2 * SECOND) == []
    assert scheduler.catch_up("main", utc(2026, 1, 1, 0, 0, 4)) is False, "it already ran"


def test_a_strategy_that_ran_its_last_slot_does_not_catch_up():
    start = utc(2026, 1, 2, 10, 30)
    scheduler = Scheduler((strategy(schedule="1d"),), start)
    assert scheduler.catch_up("main", utc(2026, 1, 2, 0, 0, 3)) is False
    assert scheduler.due(start + SECOND) == []


def test_catch_up_uses_the_strategy_timezone():
    # Daily at local midnight in Tokyo (15:00 UTC). A run at 16:00 UTC on Jan 1 covers the Jan 2 Tokyo slot.
    start = utc(2026, 1, 1, 20, 0)
    scheduler = Scheduler((strategy(schedule="1d", tz="Asia/Tokyo"),), start)
    assert previous_run("1d", "Asia/Tokyo", start) == utc(2026, 1, 1, 15, 0)
    assert scheduler.catch_up("main", utc(2026, 1, 1, 16, 0)) is False
    assert scheduler.catch_up("main", utc(2026, 1, 1, 14, 0)) is True


@pytest.mark.parametrize("reason", ["catch_up is false", "no backup known", "not configured"])
def test_catch_up_does_nothing_when_it_cannot_apply(reason):
    start = utc(2026, 1, 2, 10, 30)
    scheduler = Scheduler((strategy(schedule="1d", catch_up=reason != "catch_up is false"),), start)
    name = "other" if reason == "not configured" else "main"
    last = None if reason == "no backup known" else utc(2025, 12, 1)
    assert scheduler.catch_up(name, last) is False
    assert scheduler.due(start + SECOND) == []


def test_catch_up_after_a_slot_already_ran_in_this_process_does_nothing():
    clock = FakeClock(utc(2026, 1, 1, 23, 59, 58))
    scheduler = Scheduler((strategy(schedule="1d"),), clock.now)
    assert len(fired_over(scheduler, clock, 5)) == 1  # midnight came before S3 answered
    assert scheduler.catch_up("main", utc(2025, 12, 1)) is False


def test_catch_up_together_with_run_on_start_runs_once():
    start = utc(2026, 1, 2, 10, 30)
    scheduler = Scheduler((strategy(schedule="1d"),), start, run_on_start=True)
    assert scheduler.catch_up("main", utc(2025, 12, 1)) is False
    assert [due.reason for due in scheduler.due(start)] == [RUN_ON_START]
    assert scheduler.due(start + SECOND) == []


# ------------------------------------------------------------------------------------------------- reload


def test_a_reload_keeps_unchanged_timing_reschedules_changed_ones_and_adds_new_strategies():
    start = utc(2026, 1, 1, 10, 30)
    scheduler = Scheduler((strategy("same", "1h"), strategy("changed", "1h"), strategy("gone", "1h")), start)
    later = utc(2026, 1, 1, 10, 40)
    scheduler.replace_strategies((strategy("same", "1h"), strategy("changed", "15m"), strategy("new", "1d")), later)
    assert scheduler.next_runs() == {"same": utc(2026, 1, 1, 11, 0), "changed": utc(2026, 1, 1, 10, 45),
                                     "new": utc(2026, 1, 2, 0, 0)}
    assert [s.name for s in scheduler.strategies] == ["same", "changed", "new"]
    assert [due.strategy.name for due in scheduler.due(utc(2026, 1, 1, 10, 45))] == ["changed"]


def test_a_reload_keeps_a_pending_run_on_start():
    start = utc(2026, 1, 1, 10, 30)
    scheduler = Scheduler((strategy("a"),), start, run_on_start=True)
    scheduler.replace_strategies((strategy("a"),), start)
    assert [due.reason for due in scheduler.due(start)] == [RUN_ON_START]


def test_a_reloaded_strategy_carries_its_new_settings():
    start = utc(2026, 1, 1, 10, 30)
    scheduler = Scheduler((strategy("a"),), start)
    changed = Strategy(name="a", schedule="1h", s3=S3Settings(bucket="other"),
                       databases=(DatabaseTarget(name="app", url="postgres://h/app"),))
    scheduler.replace_strategies((changed,), start)
    [due] = scheduler.due(utc(2026, 1, 1, 11, 0))
    assert due.strategy.s3.bucket == "other"


def test_naive_times_are_rejected():
    with pytest.raises(ValueError, match="aware"):
        Scheduler((strategy(),), datetime(2026, 1, 1))
