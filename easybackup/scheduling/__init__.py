"""Durations and schedules as pure functions of text, timezone and instant (DESIGN.md, "Durations and
intervals"). Nothing here reads the clock: callers pass the instant."""

from easybackup.scheduling.durations import format_duration, format_interval_text, parse_duration
from easybackup.scheduling.schedule import (
    Schedule,
    interval,
    next_run,
    parse_schedule,
    previous_run,
    validate_timezone,
)

__all__ = [
    "Schedule",
    "format_duration",
    "format_interval_text",
    "interval",
    "next_run",
    "parse_duration",
    "parse_schedule",
    "previous_run",
    "validate_timezone",
]
