"""A schedule as the 5-field cron expression Kubernetes' CronJob reads (robfig/cron), or why it has none.

Exactly, never approximately: the rendered expression, read back by `parse_schedule`, names the same local times.
Cron names a set of minutes times a set of hours on matching days, so an interval schedule has one only when its
times of day are such a product (`6h@00:30`, `15m`), and a lattice of days only when it is a week (`1w@sun-03:00`,
`7d`): `2d` counts days from 1970-01-01 while cron's day fields start again every month.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from easybackup.scheduling.schedule import DAY, WEEK, CronFields, Schedule, next_local_time, parse_schedule

_THURSDAY = 4  # 1970-01-01, where the lattice of days starts, in cron's weekday numbers (0 = Sunday)


def cron_expression(text: str) -> str:
    """Given schedule text, return the cron expression that runs at exactly its times; raise ValueError with a
    one-line reason when there is none (or the text is not a schedule)."""
    schedule = parse_schedule(text)
    if schedule.cron is not None:
        return _from_cron(schedule.cron)
    return _from_interval(schedule)


def _from_interval(schedule: Schedule) -> str:
    period, anchor = schedule.period, schedule.anchor
    if period % 60 or anchor % 60:
        raise ValueError(f"{schedule.text} runs at seconds past the minute; cron's smallest unit is the minute")
    if period == WEEK:
        minute, hour = anchor % 3600 // 60, anchor % DAY // 3600
        return f"{minute} {hour} * * {(_THURSDAY + anchor // DAY) % 7}"
    if period > DAY:
        raise ValueError(f"{schedule.text} runs every {period // DAY} days counted from 1970-01-01, and cron's day "
                         "fields start again every month and week; use 1d, 1w or a cron expression")
    times = set(range(anchor % period, DAY, period))
    minutes = {second % 3600 // 60 for second in times}
    hours = {second // 3600 for second in times}
    if len(minutes) * len(hours) != len(times):
        raise ValueError(f"{schedule.text} does not run at the same minutes every hour it runs, and cron repeats "
                         "one set of minutes in every hour it names; use an interval that divides an hour or is "
                         "whole hours, or a cron expression")
    return f"{_field(minutes, 0, 59)} {_field(hours, 0, 23)} * * *"


def _from_cron(cron: CronFields) -> str:
    """Given parsed cron fields, return them in the one spelling both readers agree on: numbers (weekday 7 is 0),
    and the day fields as Kubernetes' robfig/cron reads them — it requires both days to match only when one field
    is a plain `*` (a `*/2` counts as a list there, while easybackup, as Vixie cron, looks at the leading `*`)."""
    minute, hour, month = _field(cron.minutes, 0, 59), _field(cron.hours, 0, 23), _field(cron.months, 1, 12)
    all_days, all_weekdays = cron.days == frozenset(range(1, 32)), cron.weekdays == frozenset(range(7))
    if not (cron.day_star or cron.weekday_star):  # either day matches: lists on both sides, never a `*`
        days, weekdays = _field(cron.days, 1, 31, star=False), _field(cron.weekdays, 0, 6, star=False)
    elif all_weekdays:
        days, weekdays = _field(cron.days, 1, 31), "*"  # a plain `*` weekday: both readers want both days
    elif all_days:
        days, weekdays = "*", _field(cron.weekdays, 0, 6, star=False)
    else:
        raise ValueError("it restricts both the day of the month (with a leading `*`, such as */2) and the day of "
                         "the week, which cron requires both to match; Kubernetes' cron runs when either does")
    return f"{minute} {hour} {days} {month} {weekdays}"


def _field(values: frozenset[int] | set[int], lowest: int, highest: int, *, star: bool = True) -> str:
    """Given a field's values and its range, return it as cron text: `*` (when `star`), `*/6`, `1-17/8`, or a list
    of values and runs (`1-5,10`). A day field takes star=False: a leading `*` changes how its days combine."""
    ordered = sorted(values)
    if star and ordered == list(range(lowest, highest + 1)):
        return "*"
    steps = {later - earlier for earlier, later in zip(ordered, ordered[1:], strict=False)}
    if len(ordered) >= 3 and len(steps) == 1 and (step := steps.pop()) > 1:
        whole = ordered[0] == lowest and ordered[-1] + step > highest
        return f"*/{step}" if star and whole else f"{ordered[0]}-{ordered[-1]}/{step}"
    return ",".join(_runs(ordered))


def _runs(ordered: list[int]) -> list[str]:
    runs: list[list[int]] = []
    for value in ordered:
        if runs and value == runs[-1][-1] + 1:
            runs[-1].append(value)
        else:
            runs.append([value])
    return [f"{run[0]}-{run[-1]}" if len(run) > 2 else ",".join(map(str, run)) for run in runs]


def dst_clash(text: str, zone_name: str, start: datetime, days: int = 800) -> datetime | None:
    """Given schedule text, a timezone and an aware instant, return the first local time (naive) the schedule names
    within `days` that a DST change skips or repeats, or None. There Kubernetes' cron (robfig/cron) and the
    supervisor part ways: robfig skips a time in a gap and runs a repeated one twice; the supervisor runs the first
    at the gap's end and the second once."""
    for low, high in dst_windows(zone_name, start, days):
        slot = next_local_time(text, low - timedelta(microseconds=1))
        if slot < high:
            return slot
    return None


def dst_windows(zone_name: str, start: datetime, days: int) -> list[tuple[datetime, datetime]]:
    """Given a timezone, an aware instant and a span, return the local wall-clock windows [low, high) its DST
    changes skip (spring forward) or repeat (fall back) in that span, as naive times."""
    zone, windows = ZoneInfo(zone_name), []
    moment, end = start.astimezone(timezone.utc), start + timedelta(days=days)
    step = timedelta(minutes=15)  # no zone changes its offset twice within 15 minutes
    while moment < end:
        before, after = moment.astimezone(zone).utcoffset(), (moment + step).astimezone(zone).utcoffset()
        if before != after:
            change = _change_within(zone, moment, step)
            low, high = sorted((change + before, change + after))
            windows.append((low.replace(tzinfo=None), high.replace(tzinfo=None)))
        moment += step
    return windows


def _change_within(zone: ZoneInfo, moment: datetime, step: timedelta) -> datetime:
    """Given a UTC instant and a step across which the zone's offset changes, return the instant it changes."""
    low, high = moment, moment + step
    while high - low > timedelta(seconds=1):
        middle = low + (high - low) / 2
        if middle.astimezone(zone).utcoffset() == low.astimezone(zone).utcoffset():
            low = middle
        else:
            high = middle
    return high.replace(microsecond=0)
