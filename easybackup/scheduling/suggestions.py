"""Schedules as people write them — `daily`, `every 6 hours`, `1 day`, `every monday at 3am` — are not schedules
easybackup reads. This finds the nearest schedule that is, for the error message to suggest (`did you mean
"1d"?`). A suggestion only: nothing here widens the schedule language, and every suggestion parses.
"""

from __future__ import annotations

import re

from easybackup.scheduling.durations import UNIT_SECONDS

DAY = UNIT_SECONDS["d"]
WEEK = UNIT_SECONDS["w"]
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

_UNITS = {
    "s": "s", "sec": "s", "secs": "s", "second": "s", "seconds": "s",
    "m": "m", "min": "m", "mins": "m", "minute": "m", "minutes": "m",
    "h": "h", "hr": "h", "hrs": "h", "hour": "h", "hours": "h",
    "d": "d", "day": "d", "days": "d", "night": "d", "nights": "d",
    "w": "w", "wk": "w", "wks": "w", "week": "w", "weeks": "w",
}
_ADVERBS = {"hourly": "h", "daily": "d", "nightly": "d", "weekly": "w"}
_NUMBERS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9,
            "ten": 10, "eleven": 11, "twelve": 12, "fifteen": 15, "twenty": 20, "thirty": 30, "other": 2}
_TIMES = {"once": 1, "twice": 2, "thrice": 3}
# Calendar periods have no fixed length: they map to cron expressions, at the given time of day.
_CALENDAR = {"monthly": "{m} {h} 1 * *", "month": "{m} {h} 1 * *", "months": "{m} {h} 1 * *",
             "yearly": "{m} {h} 1 1 *", "year": "{m} {h} 1 1 *", "annually": "{m} {h} 1 1 *"}
_FILLER = {"every", "each", "per", "a", "an", "the", "run", "runs", "on", "at", "and", "in", "cron", "schedule",
           "starting", "from", "of"}
_DAY_NAMES = {"monday": 0, "tuesday": 1, "wednesday": 2, "thursday": 3, "friday": 4, "saturday": 5, "sunday": 6,
              "tues": 1, "weds": 2, "thur": 3, "thurs": 3}
_CLOCK = re.compile(r"(?:\bat\s*|@\s*)?\b([0-9]{1,2})(?::([0-9]{2}))?\s*(am|pm)\b"
                    r"|(?:\bat\s*|@\s*)?\b([0-9]{1,2}):([0-9]{2})\b"
                    r"|\b(midnight|noon|midday)\b", re.ASCII)
_WORD = re.compile(r"[0-9]+|[a-z]+", re.ASCII)
# Words, numbers, times of day and quotes; a sign, a star or a comma means something this does not guess at.
_PHRASE = re.compile(r"[a-z0-9\s:@'\"]+", re.ASCII)
_MAX_DIGITS = 6  # a count longer than this is no schedule anyone meant; int() of it stays cheap


def suggest_schedule(text: str) -> tuple[str, ...]:
    """Given schedule text that did not parse, return the nearest schedules easybackup reads — one, or two when
    the text lies between two (`every 5 hours`: 4h or 6h) — or () when it does not look like a schedule."""
    if not isinstance(text, str) or not text.isascii():
        return ()
    words = text.strip().strip("'\"").lower()
    if not _PHRASE.fullmatch(words):
        return ()
    clock, words = _take_clock(words)
    if clock is None:
        return ()
    weekday, words = _take_weekday(words)
    tokens = [token for token in _WORD.findall(words) if token not in _FILLER]
    if any(token.isdigit() and len(token) > _MAX_DIGITS for token in tokens):
        return ()
    calendar = _calendar(tokens, clock)
    if calendar is not None:
        return (calendar,)
    found = _period(tokens, weekday is not None or clock[1])
    if found is None:
        return ()
    period, unit = found
    if weekday is not None:
        period, unit = max(WEEK, period - period % WEEK), "w"
    return tuple(_schedule_text(choice, unit, clock[0], weekday) for choice in _nearest_intervals(period))


def _take_clock(words: str) -> tuple[tuple[int, bool] | None, str]:
    """Given the lowered text, return ((seconds after midnight, whether a time was given), the text without
    it); (None, text) when the time is not a time of day (25:00, 13pm)."""
    match = _CLOCK.search(words)
    if match is None:
        return (0, False), words
    hour_ampm, minute_ampm, ampm, hour, minute, named = match.groups()
    if named:
        hours, minutes = (0 if named == "midnight" else 12), 0
    elif ampm:
        hours, minutes = int(hour_ampm), int(minute_ampm or 0)
        if not 1 <= hours <= 12:
            return None, words
        hours = hours % 12 + (12 if ampm == "pm" else 0)
    else:
        hours, minutes = int(hour), int(minute)
    if hours > 23 or minutes > 59:
        return None, words
    return (hours * 3600 + minutes * 60, True), words[:match.start()] + " " + words[match.end():]


def _take_weekday(words: str) -> tuple[int | None, str]:
    """Given the text, return (the weekday it names, 0 = Monday, or None; the text without it)."""
    for token in _WORD.findall(words):
        name = token[:-1] if token.endswith("s") and token[:-1] in _DAY_NAMES else token
        day = _DAY_NAMES.get(name, WEEKDAYS.index(name) if name in WEEKDAYS else None)
        if day is not None:
            return day, re.sub(rf"\b{token}\b", " ", words, count=1)
    return None, words


def _calendar(tokens: list[str], clock: tuple[int, bool]) -> str | None:
    if len(tokens) != 1 or tokens[0] not in _CALENDAR:
        return None
    seconds = clock[0]
    return _CALENDAR[tokens[0]].format(m=seconds % 3600 // 60, h=seconds // 3600)


def _period(tokens: list[str], anchored: bool) -> tuple[int, str] | None:
    """Given the words left (`6`, `hours`; `twice`, `day`), return (seconds between runs, the unit they were
    given in), or None. With no words left, a weekday or a time alone (`every monday`, `at 3am`) is daily, made
    weekly by the weekday."""
    if not tokens:
        return (DAY, "d") if anchored else None
    times = 1
    if tokens[0] in _TIMES or (len(tokens) >= 2 and tokens[1] in ("x", "times")):  # `twice daily`, `3 times a day`
        times = _TIMES.get(tokens[0]) or _count(tokens[0])
        tokens = tokens[1:] if tokens[0] in _TIMES else tokens[2:]
    if len(tokens) == 1 and tokens[0] in _ADVERBS:
        count, unit = 1, _ADVERBS[tokens[0]]
    elif len(tokens) == 1 and tokens[0] in _UNITS:
        count, unit = 1, _UNITS[tokens[0]]
    elif len(tokens) == 2 and _count(tokens[0]) and tokens[1] in _UNITS:
        count, unit = _count(tokens[0]), _UNITS[tokens[1]]
    else:
        return None
    if times < 1 or (count * UNIT_SECONDS[unit]) % times:
        return None
    return count * UNIT_SECONDS[unit] // times, unit


def _count(token: str) -> int:
    """Given a word, return the count it says (`6`, `six`, `other`), or 0."""
    if token.isdigit():
        return int(token)
    return _NUMBERS.get(token, 0)


def _nearest_intervals(period: int) -> list[int]:
    """Given seconds between runs, return it when it is an interval easybackup reads (it divides a day, or is whole
    days), else the nearest two that are."""
    if period <= 0:
        return []
    if period % DAY == 0 or DAY % period == 0:
        return [period]
    if period > DAY:
        return [period // DAY * DAY, (period // DAY + 1) * DAY]
    step = 3600 if period % 3600 == 0 else 60 if period % 60 == 0 else 1
    divisors = [d * step for d in range(1, DAY // step + 1) if (DAY // step) % d == 0]
    return [max(d for d in divisors if d < period), min(d for d in divisors if d > period)]


def _schedule_text(period: int, unit: str, offset: int, weekday: int | None) -> str:
    """Given seconds between runs, the unit they were written in, the time of day and the weekday, return the
    schedule text: `6h@00:30`, `1d@02:30`, `1w@sun-03:00`."""
    clock = f"{offset // 3600:02d}:{offset % 3600 // 60:02d}"
    if unit == "w" and period % WEEK == 0:
        at = "" if weekday is None and not offset else f"@{WEEKDAYS[weekday or 0]}" + (f"-{clock}" if offset else "")
        return f"{period // WEEK}w{at}"
    if unit == "w" or period >= DAY or period % UNIT_SECONDS[unit]:
        unit = next(u for u in ("d", "h", "m", "s") if period % UNIT_SECONDS[u] == 0)
    text = f"{period // UNIT_SECONDS[unit]}{unit}"
    shift = offset % period
    if shift == 0 or shift % 60:
        return text
    return f"{text}@{shift // 3600:02d}:{shift % 3600 // 60:02d}"
