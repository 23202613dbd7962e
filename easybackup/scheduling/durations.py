"""Durations as text: `<n><unit>` in, human text out (DESIGN.md, "Durations and intervals").

The grammar is deliberately small: a positive whole number and one lowercase unit — `s`, `m` (minutes; months
do not exist because they have no fixed length), `h`, `d`, `w`. Surrounding whitespace is stripped, because
YAML and environment variables carry it in easily; whitespace inside (`6 h`) is an error.
"""

from __future__ import annotations

import math
import re

UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
# The longest duration or interval we accept; longer ones are typos and would overflow datetime arithmetic.
MAX_SECONDS = 36525 * 86400
GRAMMAR_HINT = "use <n><unit> with unit s, m, h, d or w, e.g. 30m, 6h, 7d"

# ASCII only: str.isdigit() and \d accept digits of every script, and int('６') would quietly work.
_COUNT_UNIT = re.compile(r"([0-9]+)([a-z]+)", re.ASCII)
_DECIMAL = re.compile(r"[0-9]*\.[0-9]+[a-z]+", re.ASCII)
_CALENDAR_UNITS = {"M", "mo", "mon", "month", "months", "y", "yr", "year", "years"}
_CALENDAR_UNIT = re.compile(r"[0-9]+([A-Za-z]+)", re.ASCII)


def quote(text: str, limit: int = 80) -> str:
    """Given user text, return it quoted for a one-line message: `'6x'`, or its repr when it holds control
    characters or a quote; long text is cut to `limit` characters."""
    if len(text) > limit:
        text = text[:limit] + "…"
    if text.isprintable() and "'" not in text:
        return f"'{text}'"
    return repr(text)


def require_text(value: object, what: str, example: str = "30m, 6h or 7d") -> str:
    """Given a config value, return it stripped; raise ValueError if it is not a string."""
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a valid {what}: expected text such as {example}")
    return value.strip()


def split_count_unit(text: str) -> tuple[int, str] | str:
    """Given stripped text, return (count, unit) when it is `<n><unit>` with a known unit and n >= 1 within
    MAX_SECONDS; otherwise return the reason it is not (`""` when it simply does not match the grammar)."""
    match = _COUNT_UNIT.fullmatch(text)
    if match is None or match.group(2) not in UNIT_SECONDS:
        if _DECIMAL.fullmatch(text):
            return ": the count must be a whole number"
        calendar = _CALENDAR_UNIT.fullmatch(text)
        if calendar and calendar.group(1) in _CALENDAR_UNITS:
            return ": months and years have no fixed length; use days or weeks"
        return ""
    digits, unit = match.groups()
    # Length check first: int() of a huge digit string is slow and guarded by Python's digit limit.
    if len(digits.lstrip("0")) > 12 or int(digits) * UNIT_SECONDS[unit] > MAX_SECONDS:
        return ": it is longer than 100 years"
    if int(digits) == 0:
        return ": the count must be at least 1"
    if digits.startswith("0"):
        return ": the count must not start with 0"
    return int(digits), unit


def parse_duration(text: str) -> float:
    """Given `<n><unit>` text (`30m`, `6h`, `7d`), return its length in seconds; raise ValueError with a
    one-line message that quotes the input and states the grammar if it is not one."""
    stripped = require_text(text, "duration")
    parsed = split_count_unit(stripped)
    if isinstance(parsed, str):
        raise ValueError(f"{quote(stripped)} is not a valid duration{parsed} ({GRAMMAR_HINT})")
    count, unit = parsed
    return float(count * UNIT_SECONDS[unit])


def format_interval_text(seconds: float) -> str:
    """Given a length in seconds, return its canonical `<n><unit>` form with the largest exact unit (`30d`,
    `2w`, `90m`); a length that is not a positive whole number of seconds gets format_duration's form."""
    if not math.isfinite(seconds) or seconds <= 0 or seconds != int(seconds):
        return format_duration(seconds)
    whole = int(seconds)
    for unit, size in sorted(UNIT_SECONDS.items(), key=lambda item: -item[1]):
        if whole % size == 0:
            return f"{whole // size}{unit}"
    raise AssertionError("unreachable: every whole number of seconds is a multiple of 1s")


# Units of the human form, largest first. Weeks are left out on purpose: "20d" reads better than "2w 6d".
_HUMAN_UNITS = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))


def format_duration(seconds: float) -> str:
    """Given a length in seconds, return it for people in at most two units, rounded to the smaller one:
    `850ms`, `0s`, `42s`, `4m 12s`, `2h`, `1d 3h`, `-5m` for negative lengths; raise ValueError for NaN or
    infinity."""
    if not math.isfinite(seconds):
        raise ValueError(f"{seconds!r} is not a length of time")
    if seconds < 0:
        return "-" + format_duration(-seconds)
    millis = round(seconds * 1000)
    if millis == 0:
        return "0s"
    if millis < 1000:
        return f"{millis}ms"
    return _two_units(round(seconds))


def _two_units(total: int) -> str:
    """Given whole seconds >= 1, return the largest unit and the next smaller one, rounded to the smaller."""
    for index, (name, size) in enumerate(_HUMAN_UNITS):
        if total < size:
            continue
        if size == 1:
            return f"{total}s"
        small_name, small_size = _HUMAN_UNITS[index + 1]
        rounded = (total + small_size // 2) // small_size * small_size
        if index > 0 and rounded >= _HUMAN_UNITS[index - 1][1]:
            # Rounding carried into the next larger unit (23h 59m 50s -> 24h): say it in that unit.
            return _two_units(rounded)
        major, minor = divmod(rounded, size)
        return f"{major}{name} {minor // small_size}{small_name}" if minor else f"{major}{name}"
    raise AssertionError("unreachable: total >= 1 is at least one second")
