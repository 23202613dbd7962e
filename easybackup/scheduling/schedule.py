"""Schedules: parse `6h`, `1d@02:30`, `1w@sun-03:00` or a 5-field cron expression, and find its runs in a
timezone (DESIGN.md, "Durations and intervals").

A schedule is a set of local wall-clock times. Interval schedules are a lattice `anchor + k * period` in
naive local seconds since 1970-01-01 00:00; cron schedules are matching days times the times of day.
Each local time L becomes the instant I(L) = the earliest instant whose local time is >= L. That one rule
gives both DST promises: a time in a spring-forward gap runs at the first instant after the gap, and a time
that happens twice runs at its first occurrence only. I is non-decreasing in L, which is what makes
next_run and previous_run simple scans.
"""

from __future__ import annotations

import functools
import re
from itertools import pairwise
from bisect import bisect_left, bisect_right
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from easybackup.scheduling.durations import UNIT_SECONDS, quote, require_text, split_count_unit
from easybackup.scheduling.suggestions import suggest_schedule

DAY = 86400
WEEK = 7 * DAY
_EPOCH = datetime(1970, 1, 1)  # naive on purpose: the lattice lives in local wall-clock time
_FIRST_MONDAY = -3 * DAY  # 1969-12-29, the Monday weeks are counted from
_SECOND = timedelta(seconds=1)
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# A fall-back repeats at most a few hours; this only stops a runaway loop on a broken tz database.
_MAX_SKIPS = 200_000

_SCHEDULE_HINT = (
    "use <n><unit> with unit s, m, h, d or w and an optional @offset, e.g. 6h, 1d@02:30, 1w@sun-03:00, "
    "or a 5-field cron expression such as 0 3 * * *"
)
_HHMM = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])", re.ASCII)
# Text in easybackup's own grammar (`6h`, `1d@2:30`) or shaped like cron (`0 3 * *`): its own error says best what
# is wrong. Anything else (`daily`, `every 6 hours`, `1 day`) is a phrase, answered with the forms and a suggestion.
_OWN_INTERVAL = re.compile(r"[0-9]+[smhdw](@.*)?", re.ASCII | re.DOTALL)
_LETTER = re.compile(r"[A-Za-z]", re.ASCII)


@dataclass(frozen=True)
class CronFields:
    """A parsed 5-field cron expression. Weekdays are 0 (Sunday) .. 6; `times` are the seconds of the local
    day at which it runs on a matching day, ascending."""

    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    day_star: bool  # the day-of-month field starts with `*` (Vixie cron: then both day fields must match)
    weekday_star: bool
    times: tuple[int, ...]


@dataclass(frozen=True)
class Schedule:
    """A parsed schedule: an interval lattice (`period`, `anchor` in local seconds) or `cron` fields."""

    text: str
    period: int = 0
    anchor: int = 0
    cron: CronFields | None = None

    def __str__(self) -> str:
        return self.text


# ---------------------------------------------------------------------------------------------- parsing


def parse_schedule(text: str) -> Schedule:
    """Given schedule text, return the Schedule; raise ValueError with a one-line reason if it is not one — for a
    phrase (`every day`), the accepted forms and the nearest schedule (`did you mean "1d"?`)."""
    try:
        return _parse_schedule(text)
    except ValueError as error:
        if not _is_phrase(text):
            raise
        suggestions = " or ".join(f'"{choice}"' for choice in suggest_schedule(text))
        if not suggestions and len(text.split()) == 1:
            raise  # `6x`, `6.5h`, `1mo`: the interval parser's own reason says more than the forms would
        did_you_mean = f"; did you mean {suggestions}?" if suggestions else ""
        raise ValueError(f"{quote(text.strip())} is not a valid schedule{did_you_mean} ({_SCHEDULE_HINT})") from error


def _is_phrase(text: object) -> bool:
    """Given schedule text that did not parse, return whether it is in neither easybackup's interval grammar
    (`6h`, `1d@2:30`) nor the shape of a cron expression (3 fields or more, no letter in the first two, the minute
    and the hour): `daily`, `every 6 hours`, `1 day`, `6hrs`."""
    if not isinstance(text, str) or not text.strip():
        return False
    fields = text.split()
    if len(fields) >= 3 and not any(_LETTER.search(field) for field in fields[:2]):
        return False
    return len(fields) > 1 or _OWN_INTERVAL.fullmatch(fields[0]) is None


def _parse_schedule(text: str) -> Schedule:
    stripped = require_text(text, "schedule", "6h, 1d@02:30 or 0 3 * * *")
    if not stripped:
        raise ValueError(f"'' is not a valid schedule: it is empty ({_SCHEDULE_HINT})")
    if stripped.lower() in CRON_MACROS:
        return _parse_cron(stripped, CRON_MACROS[stripped.lower()])
    if len(stripped.split()) > 1:
        return _parse_cron(stripped, stripped)
    return _parse_interval(stripped)


def _parse_interval(text: str) -> Schedule:
    """Given `<n><unit>[@offset]`, return its lattice; raise ValueError saying what is wrong."""
    head, has_offset, offset_text = text.partition("@")
    parsed = split_count_unit(head)
    if isinstance(parsed, str):
        raise ValueError(f"{quote(text)} is not a valid interval{parsed} ({_SCHEDULE_HINT})")
    count, unit = parsed
    period = count * UNIT_SECONDS[unit]
    if unit in "smh":
        _check_divides_day(text, count, unit)
    offset = _parse_offset(text, unit, offset_text) if has_offset else 0
    if offset >= period:
        raise ValueError(
            f"{quote(text)} has an offset {offset_text} that is not smaller than the interval {head}"
        )
    return Schedule(text=text, period=period, anchor=offset + (_FIRST_MONDAY if unit == "w" else 0))


def _check_divides_day(text: str, count: int, unit: str) -> None:
    """Raise ValueError unless `count` units divide a day, naming the intervals that would."""
    per_day = DAY // UNIT_SECONDS[unit]
    if per_day % count == 0:
        return
    if count > per_day:
        whole_days = f"use {count // per_day}d" if count % per_day == 0 else "use whole days such as 1d or 2d"
        raise ValueError(f"{quote(text)} is longer than a day; {whole_days}, or a cron expression")
    divisors = [d for d in range(1, per_day) if per_day % d == 0]
    if unit == "h":
        choices = "use one of " + ", ".join(f"{d}h" for d in divisors)
    else:
        lower = max(d for d in divisors if d < count)
        upper = min((d for d in divisors if d > count), default=None)
        choices = f"the nearest that do are {lower}{unit} and " + (f"{upper}{unit}" if upper else "1d")
    raise ValueError(f"{quote(text)} does not divide a day; {choices}")


def _parse_offset(text: str, unit: str, offset_text: str) -> int:
    """Given the text after `@`, return the offset in seconds from the anchor; raise ValueError if invalid."""
    if unit == "w":
        day, has_clock, clock = (offset_text.lower() if offset_text.isascii() else offset_text).partition("-")
        if day in WEEKDAYS and (not has_clock or _HHMM.fullmatch(clock)):
            return WEEKDAYS.index(day) * DAY + (_clock_seconds(clock) if has_clock else 0)
        raise ValueError(
            f"{quote(text)} has an invalid offset {quote(offset_text)} (a weekly schedule takes a weekday "
            "mon..sun and optionally a time, e.g. 1w@sun-03:00 or 1w@fri)"
        )
    if _HHMM.fullmatch(offset_text) is None:
        raise ValueError(
            f"{quote(text)} has an invalid offset {quote(offset_text)} (use HH:MM from 00:00 to 23:59, "
            "e.g. 1d@02:30 or 6h@00:15)"
        )
    return _clock_seconds(offset_text)


def _clock_seconds(clock: str) -> int:
    hours, minutes = clock.split(":")
    return int(hours) * 3600 + int(minutes) * 60


CRON_MACROS = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}
_MONTH_NAMES = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_CRON_DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
# (name, lowest, highest, names, value of the first name)
_CRON_FIELDS = (
    ("minute", 0, 59, (), 0),
    ("hour", 0, 23, (), 0),
    ("day-of-month", 1, 31, (), 0),
    ("month", 1, 12, _MONTH_NAMES, 1),
    ("day-of-week", 0, 7, _CRON_DAY_NAMES, 0),
)
_CRON_ITEM = re.compile(r"(\*|[0-9]{1,3}|[a-z]+)(?:-([0-9]{1,3}|[a-z]+))?(?:/([0-9]{1,3}))?", re.ASCII)


def _parse_cron(text: str, expression: str) -> Schedule:
    """Given a 5-field cron expression (the text itself or a macro's expansion), return its Schedule; raise
    ValueError naming the field that is wrong, or saying that it never runs."""
    fields = expression.split()
    if len(fields) != 5:
        raise ValueError(
            f"{quote(text)} is not a valid cron expression: it has {len(fields)} fields, cron needs 5 "
            "(minute hour day-of-month month day-of-week)"
        )
    minutes, hours, days, months, weekdays = (
        _parse_cron_field(text, field, spec) for field, spec in zip(fields, _CRON_FIELDS, strict=True)
    )
    cron = CronFields(
        minutes=minutes,
        hours=hours,
        days=days,
        months=months,
        weekdays=frozenset(day % 7 for day in weekdays),
        day_star=fields[2].startswith("*"),
        weekday_star=fields[4].startswith("*"),
        times=tuple(sorted(h * 3600 + m * 60 for h in hours for m in minutes)),
    )
    if _cron_next_day(cron, date(2001, 1, 1), 1) is None:
        raise ValueError(f"{quote(text)} never runs: no month has that day")
    return Schedule(text=text, cron=cron)


def _parse_cron_field(text: str, field: str, spec: tuple) -> frozenset[int]:
    """Given one cron field (`*/15`, `1-5`, `mon-fri`, `0,30`), return its values; raise ValueError if bad."""
    name, lowest, highest, _names, _first = spec
    values: set[int] = set()
    # Lowercase ASCII only: str.lower() maps some non-ASCII letters (the Kelvin sign) onto ASCII ones.
    for item in (field.lower() if field.isascii() else field).split(","):
        match = _CRON_ITEM.fullmatch(item)
        if match is None or (match.group(1) == "*" and match.group(2)):
            raise _cron_error(text, f"{name} field {quote(field)} is not a value, range, list or step")
        start_text, end_text, step_text = match.groups()
        if start_text == "*":
            start, end = lowest, highest
        else:
            start = _cron_value(text, start_text, spec)
            end = _cron_value(text, end_text, spec) if end_text else (highest if step_text else start)
        if name == "day-of-week" and end == 0 and start > 0:
            end = 7  # `fri-sun`: Sunday is also 7, so the range does not run backwards
        if start > end:
            raise _cron_error(text, f"{name} range {start}-{end} runs backwards")
        step = int(step_text) if step_text else 1
        if step < 1:
            raise _cron_error(text, f"{name} step /{step_text} must be at least 1")
        values.update(range(start, end + 1, step))
    return frozenset(values)


def _cron_value(text: str, token: str, spec: tuple) -> int:
    name, lowest, highest, names, first = spec
    if token in names:
        return names.index(token) + first
    if not token.isdigit() or not lowest <= int(token) <= highest:
        known = f" or a name {names[0]}..{names[-1]}" if names else ""
        raise _cron_error(text, f"{name} {quote(token)} is not a number from {lowest} to {highest}{known}")
    return int(token)


def _cron_error(text: str, reason: str) -> ValueError:
    return ValueError(f"{quote(text)} is not a valid cron expression: {reason}")


# ------------------------------------------------------------------------------------- local slot lattice


def _next_local(schedule: Schedule, local: datetime) -> datetime:
    """Given a naive local time, return the first scheduled local time strictly after it."""
    if schedule.cron is not None:
        return _cron_next_local(schedule.cron, local)
    base, period = timedelta(seconds=schedule.anchor), timedelta(seconds=schedule.period)
    steps = (local - _EPOCH - base) // period + 1
    return _EPOCH + base + period * steps


def _previous_local(schedule: Schedule, local: datetime) -> datetime:
    """Given a naive local time, return the last scheduled local time strictly before it."""
    if schedule.cron is not None:
        return _cron_previous_local(schedule.cron, local)
    base, period = timedelta(seconds=schedule.anchor), timedelta(seconds=schedule.period)
    steps = -((base + _EPOCH - local) // period) - 1  # ceil((local - base) / period) - 1
    return _EPOCH + base + period * steps


def _second_of_day(local: datetime) -> float:
    return local.hour * 3600 + local.minute * 60 + local.second + local.microsecond / 1e6


def _at(day: date, second: int) -> datetime:
    return datetime(day.year, day.month, day.day) + timedelta(seconds=second)


def _cron_next_local(cron: CronFields, local: datetime) -> datetime:
    index = bisect_right(cron.times, _second_of_day(local))
    if index < len(cron.times) and _cron_day_matches(cron, local.date()):
        return _at(local.date(), cron.times[index])
    return _at(_cron_next_day_or_fail(cron, local.date() + timedelta(days=1), 1), cron.times[0])


def _cron_previous_local(cron: CronFields, local: datetime) -> datetime:
    index = bisect_left(cron.times, _second_of_day(local)) - 1
    if index >= 0 and _cron_day_matches(cron, local.date()):
        return _at(local.date(), cron.times[index])
    return _at(_cron_next_day_or_fail(cron, local.date() - timedelta(days=1), -1), cron.times[-1])


def _cron_day_matches(cron: CronFields, day: date) -> bool:
    if day.month not in cron.months:
        return False
    in_days = day.day in cron.days
    in_weekdays = day.isoweekday() % 7 in cron.weekdays
    if cron.day_star or cron.weekday_star:
        return in_days and in_weekdays
    return in_days or in_weekdays  # both restricted: Vixie cron runs when either matches


# Every schedule that runs at all runs within this many days: Feb 29 can be 8 years apart (2096 -> 2104).
_CRON_SEARCH_DAYS = 9 * 366


def _cron_next_day(cron: CronFields, day: date, step: int) -> date | None:
    """Given a day and a direction (+1/-1), return the nearest matching day from it on, or None within
    _CRON_SEARCH_DAYS."""
    limit = day + timedelta(days=step * _CRON_SEARCH_DAYS)
    while (day <= limit) if step > 0 else (day >= limit):
        if day.month not in cron.months:
            # Skip the whole month: a `* * * 12 *` search would otherwise walk eleven months a day at a time.
            day = _leave_month(day, step)
        elif _cron_day_matches(cron, day):
            return day
        else:
            day += timedelta(days=step)
    return None


def _leave_month(day: date, step: int) -> date:
    """Given a day, return the first day of the next month (step > 0) or the last day of the previous one."""
    if step > 0:
        return (day.replace(day=28) + timedelta(days=4)).replace(day=1)
    return day.replace(day=1) - timedelta(days=1)


def _cron_next_day_or_fail(cron: CronFields, day: date, step: int) -> date:
    found = _cron_next_day(cron, day, step)
    if found is None:
        raise RuntimeError(f"cron schedule found no matching day within {_CRON_SEARCH_DAYS} days of {day}")
    return found


# ------------------------------------------------------------------------------------- local -> instant


def _local(instant: datetime, zone: tzinfo) -> datetime:
    return instant.astimezone(zone).replace(tzinfo=None)


def _instant(local: datetime, zone: tzinfo) -> datetime:
    """Given a naive local time, return the earliest UTC instant whose local time is >= it: the time itself,
    its first occurrence when it happens twice, or the end of the gap when it does not exist."""
    first = local.replace(tzinfo=zone, fold=0).astimezone(timezone.utc)
    second = local.replace(tzinfo=zone, fold=1).astimezone(timezone.utc)
    exact = [moment for moment in (first, second) if _local(moment, zone) == local]
    if exact:
        return min(exact)
    # In a gap the two folds straddle the transition: the earlier reads before `local`, the later after it.
    # Search whole seconds: scheduled times and tz transitions both fall on whole seconds.
    before = min(first, second)
    low, high = 0, (max(first, second) - before) // _SECOND
    while high - low > 1:
        middle = (low + high) // 2
        if _local(before + middle * _SECOND, zone) >= local:
            high = middle
        else:
            low = middle
    return before + high * _SECOND


def _zone(tz: str | tzinfo) -> tzinfo:
    if isinstance(tz, tzinfo):
        return tz
    return ZoneInfo(validate_timezone(tz))


def _utc(moment: datetime, name: str) -> datetime:
    if not isinstance(moment, datetime):
        raise ValueError(f"{name} must be a timezone-aware datetime, got {moment!r}")
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got the naive datetime {moment.isoformat()}")
    return moment.astimezone(timezone.utc)


def _first_slot_after(schedule: Schedule, zone: tzinfo, moment: datetime) -> tuple[datetime, datetime]:
    """Given a UTC instant, return (local time, instant) of the first slot whose instant is after it.

    Slots before the local reading of `moment` all map to instants <= moment (I is non-decreasing), so the
    scan starts there; it only steps more than once across a fall-back, over the repeated hour."""
    local = _next_local(schedule, _local(moment, zone))
    for _ in range(_MAX_SKIPS):
        instant = _instant(local, zone)
        if instant > moment:
            return local, instant
        local = _next_local(schedule, local)
    raise RuntimeError(f"no run of {schedule.text!r} found after {moment.isoformat()} in {zone}")


# ------------------------------------------------------------------------------------------- public API


def _as_schedule(schedule: Schedule | str) -> Schedule:
    return schedule if isinstance(schedule, Schedule) else parse_schedule(schedule)


def next_run(schedule: Schedule | str, tz: str | tzinfo, after: datetime) -> datetime:
    """Given a schedule, a timezone (name or tzinfo) and an aware instant, return the first scheduled instant
    strictly after it, as an aware UTC datetime; raise ValueError if `after` is naive or tz unknown."""
    return _first_slot_after(_as_schedule(schedule), _zone(tz), _utc(after, "after"))[1]


def previous_run(schedule: Schedule | str, tz: str | tzinfo, at: datetime) -> datetime:
    """Given a schedule, a timezone and an aware instant, return the latest scheduled instant <= it (aware
    UTC); raise ValueError if `at` is naive or tz unknown."""
    schedule, zone = _as_schedule(schedule), _zone(tz)
    upcoming, _ = _first_slot_after(schedule, zone, _utc(at, "at"))
    # Every slot before `upcoming` maps to an instant <= at, so the one just before it is the latest.
    return _instant(_previous_local(schedule, upcoming), zone)


def interval(schedule: Schedule | str) -> timedelta:
    """Given a schedule, return its nominal interval: the period of an interval schedule, or for cron the
    largest gap between consecutive runs in local time over the years 2001-2028 (a whole 28-year cycle of
    the calendar, so every gap this century is seen)."""
    schedule = _as_schedule(schedule)
    if schedule.cron is None:
        return timedelta(seconds=schedule.period)
    return timedelta(seconds=_cron_largest_gap(schedule.cron))


@functools.lru_cache(maxsize=256)
def _cron_largest_gap(cron: CronFields) -> int:
    days = list(_cron_days(cron, date(2001, 1, 1), date(2029, 1, 1)))
    times = cron.times
    gap = max((later - earlier for earlier, later in pairwise(times)), default=0)
    for earlier, later in pairwise(days):
        gap = max(gap, (later - earlier).days * DAY + times[0] - times[-1])
    return gap


def _cron_days(cron: CronFields, start: date, stop: date) -> Iterator[date]:
    """Yield the matching days from `start` until the first one on or after `stop` (included, so the gap
    that wraps past the end is counted)."""
    day = _cron_next_day_or_fail(cron, start, 1)
    while True:
        yield day
        if day >= stop:
            return
        day = _cron_next_day_or_fail(cron, day + timedelta(days=1), 1)


def next_local_time(schedule: Schedule | str, local: datetime) -> datetime:
    """Given a schedule and a naive local wall-clock time, return the first scheduled local time strictly after it
    (before any DST rule maps it to an instant)."""
    return _next_local(_as_schedule(schedule), local.replace(tzinfo=None))


def validate_timezone(name: str) -> str:
    """Given an IANA timezone name, return it stripped; raise ValueError if it is not a known timezone."""
    text = require_text(name, "timezone", "UTC or Europe/Berlin")
    try:
        ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise ValueError(
            f"{quote(text)} is not a known timezone (use an IANA name such as UTC, Europe/Berlin or "
            "America/New_York)"
        ) from exc
    return text
