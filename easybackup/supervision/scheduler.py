"""The scheduler: which strategies are due now, and when each runs next (DESIGN.md, "Process model").

Pure: it never reads the clock. The supervisor passes the wall-clock instant on every tick (about once a
second), which is what makes clock jumps and DST harmless:

- a jump forward past one or more slots fires the strategy once, then schedules from the new "now";
- a jump backward keeps the next slot already computed, so a slot that already ran never runs again;
- DST is the schedule's business: `next_run` works in UTC instants of local wall-clock slots.

`run_on_start` (global) runs every strategy once at start. `catch_up` (per strategy) runs a strategy at start
when its last scheduled slot before the start is later than its last run read from S3; S3 answers late (on a
thread), so the supervisor calls `catch_up()` whenever that answer arrives.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime, timezone

from easybackup.config.model import Strategy
from easybackup.scheduling import Schedule, next_run, parse_schedule, previous_run

SCHEDULE, RUN_ON_START, CATCH_UP = "schedule", "run_on_start", "catch_up"


@dataclass(frozen=True)
class Due:
    """A strategy to run now, and why: `schedule` (its slot came), `run_on_start` or `catch_up`."""

    strategy: Strategy
    reason: str
    slot: datetime | None = None  # the scheduled slot that came (reason `schedule`)


@dataclass
class _Entry:
    strategy: Strategy
    schedule: Schedule
    next_due: datetime  # the next slot (aware UTC) not yet fired
    run_now: str | None = None  # a reason to run at the next tick whatever the slot (run_on_start, catch_up)
    ran: bool = False  # fired at least once since the start (so catch-up is moot)

    def same_timing(self, strategy: Strategy) -> bool:
        return (strategy.schedule, strategy.timezone) == (self.strategy.schedule, self.strategy.timezone)


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError(f"the scheduler needs aware datetimes, got {moment.isoformat()}")
    return moment.astimezone(timezone.utc)


class Scheduler:
    """Given the strategies, the start instant and `run_on_start`, say which strategies are due; see `due()`.

    Raise ValueError if a strategy's schedule or timezone is invalid (a validated config never has one).
    """

    def __init__(self, strategies: tuple[Strategy, ...], now: datetime, *, run_on_start: bool = False):
        self.started_at = _utc(now)
        self._entries: dict[str, _Entry] = {}
        for strategy in strategies:
            entry = self._new_entry(strategy, self.started_at)
            entry.run_now = RUN_ON_START if run_on_start else None
            self._entries[strategy.name] = entry

    @staticmethod
    def _new_entry(strategy: Strategy, now: datetime) -> _Entry:
        schedule = parse_schedule(strategy.schedule)
        return _Entry(strategy, schedule, next_run(schedule, strategy.timezone, now))

    @property
    def strategies(self) -> tuple[Strategy, ...]:
        return tuple(entry.strategy for entry in self._entries.values())

    def due(self, now: datetime) -> list[Due]:
        """Given the current instant, return the strategies to run now (config order), each at most once, and
        advance past every slot that has come. Call it about once a second with a fresh wall-clock reading."""
        now = _utc(now)
        found = []
        for entry in self._entries.values():
            slot_came = now >= entry.next_due
            if entry.run_now:
                found.append(Due(entry.strategy, entry.run_now))
            elif slot_came:
                found.append(Due(entry.strategy, SCHEDULE, entry.next_due))
            if slot_came:
                # From `now`, not from the slot: after a jump forward the missed slots collapse into this one run.
                entry.next_due = next_run(entry.schedule, entry.strategy.timezone, now)
            if entry.run_now or slot_came:
                entry.run_now, entry.ran = None, True
        return found

    def next_run(self, name: str) -> datetime | None:
        """Given a strategy name, return its next scheduled slot (aware UTC), or None if it is not configured."""
        entry = self._entries.get(name)
        return entry.next_due if entry else None

    def next_runs(self) -> dict[str, datetime]:
        """Return every strategy's next scheduled slot."""
        return {name: entry.next_due for name, entry in self._entries.items()}

    def seconds_until_due(self, now: datetime) -> float:
        """Given the current instant, return how long until the earliest slot or pending run (0 if one is due)."""
        now = _utc(now)
        if any(entry.run_now for entry in self._entries.values()):
            return 0.0
        soonest = min((entry.next_due for entry in self._entries.values()), default=None)
        return max(0.0, (soonest - now).total_seconds()) if soonest else float("inf")

    def catch_up(self, name: str, last_run: datetime | None) -> bool:
        """Given a strategy and its last run as S3 knows it, mark it to run at the next tick if its last slot
        before the start is later than that run; return whether it was marked.

        Nothing happens when the strategy has `catch_up: false`, has no known run (a new strategy: nothing was
        missed that we know of — `run_on_start` covers a first run), already ran or is about to run.
        """
        entry = self._entries.get(name)
        if entry is None or not entry.strategy.catch_up or last_run is None or entry.ran or entry.run_now:
            return False
        missed = previous_run(entry.schedule, entry.strategy.timezone, self.started_at)
        if missed <= _utc(last_run):
            return False
        entry.run_now = CATCH_UP
        return True

    def replace_strategies(self, strategies: tuple[Strategy, ...], now: datetime) -> None:
        """Given the strategies of a reloaded config and the current instant, use them from now on: an unchanged
        schedule and timezone keep their next slot (and a pending run), anything else is scheduled from now."""
        now = _utc(now)
        entries = {}
        for strategy in strategies:
            old = self._entries.get(strategy.name)
            if old is not None and old.same_timing(strategy):
                old.strategy = strategy
                entries[strategy.name] = old
            else:
                entry = self._new_entry(strategy, now)
                if old is not None:
                    entry.ran = old.ran
                entries[strategy.name] = entry
        self._entries = entries


def drill_schedules(strategies: tuple[Strategy, ...]) -> tuple[Strategy, ...]:
    """Given the strategies, return those with restore drills, each with its drill's schedule as `schedule` (for a
    second Scheduler; drills never catch up: a missed drill runs at its next slot)."""
    return tuple(dataclasses.replace(s, schedule=s.restore_drill.schedule, catch_up=False)
                 for s in strategies if s.restore_drill is not None)
