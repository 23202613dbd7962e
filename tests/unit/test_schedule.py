"""Schedules: grammar, anchoring to the local wall clock, DST, previous runs, intervals, timezones."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter
from hypothesis import given, settings
from hypothesis import strategies as st

from easybackup.scheduling import (
    Schedule,
    interval,
    next_run,
    parse_schedule,
    previous_run,
    validate_timezone,
)

UTC = timezone.utc
HINT = (
    "(use <n><unit> with unit s, m, h, d or w and an optional @offset, e.g. 6h, 1d@02:30, 1w@sun-03:00, "
    "or a 5-field cron expression such as 0 3 * * *)"
)
DAILY_OFFSET = "(use HH:MM from 00:00 to 23:59, e.g. 1d@02:30 or 6h@00:15)"
WEEKLY_OFFSET = "(a weekly schedule takes a weekday mon..sun and optionally a time, e.g. 1w@sun-03:00 or 1w@fri)"


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


def at(tz: str, *args, fold: int = 0) -> datetime:
    return datetime(*args, tzinfo=ZoneInfo(tz), fold=fold)


def runs(schedule: str, tz: str, after: datetime, count: int) -> list[datetime]:
    """Return `count` consecutive runs after `after`."""
    found = []
    for _ in range(count):
        after = next_run(schedule, tz, after)
        found.append(after)
    return found


def wall(instants: list[datetime], tz: str) -> list[str]:
    """Return the instants as local wall-clock readings with their UTC offset, e.g. 2026-03-29T03:00+02:00."""
    return [moment.astimezone(ZoneInfo(tz)).isoformat(timespec="minutes") for moment in instants]


# ----------------------------------------------------------------------------------------------- grammar


@pytest.mark.parametrize(
    ("text", "first", "second"),
    [
        ("1s", "2026-01-01T00:00:01", "2026-01-01T00:00:02"),
        ("30s", "2026-01-01T00:00:30", "2026-01-01T00:01:00"),
        ("1m", "2026-01-01T00:01:00", "2026-01-01T00:02:00"),
        ("15m", "2026-01-01T00:15:00", "2026-01-01T00:30:00"),
        ("90m", "2026-01-01T01:30:00", "2026-01-01T03:00:00"),
        ("1440m", "2026-01-02T00:00:00", "2026-01-03T00:00:00"),
        ("1h", "2026-01-01T01:00:00", "2026-01-01T02:00:00"),
        ("6h", "2026-01-01T06:00:00", "2026-01-01T12:00:00"),
        ("24h", "2026-01-02T00:00:00", "2026-01-03T00:00:00"),
        ("6h@00:15", "2026-01-01T00:15:00", "2026-01-01T06:15:00"),
        ("30m@00:10", "2026-01-01T00:10:00", "2026-01-01T00:40:00"),
        ("1m@00:00", "2026-01-01T00:01:00", "2026-01-01T00:02:00"),
        ("1d", "2026-01-02T00:00:00", "2026-01-03T00:00:00"),
        ("1d@02:30", "2026-01-01T02:30:00", "2026-01-02T02:30:00"),
        ("2d", "2026-01-03T00:00:00", "2026-01-05T00:00:00"),
        ("3d", "2026-01-04T00:00:00", "2026-01-07T00:00:00"),
        ("2d@23:59", "2026-01-01T23:59:00", "2026-01-03T23:59:00"),
        ("1w", "2026-01-05T00:00:00", "2026-01-12T00:00:00"),
        ("2w", "2026-01-12T00:00:00", "2026-01-26T00:00:00"),
        ("1w@sun-03:00", "2026-01-04T03:00:00", "2026-01-11T03:00:00"),
        ("1w@SUN-03:00", "2026-01-04T03:00:00", "2026-01-11T03:00:00"),
        ("2w@sun-03:00", "2026-01-04T03:00:00", "2026-01-18T03:00:00"),
        ("1w@fri", "2026-01-02T00:00:00", "2026-01-09T00:00:00"),
        ("1w@Mon-23:59", "2026-01-05T23:59:00", "2026-01-12T23:59:00"),
        ("  6h\n", "2026-01-01T06:00:00", "2026-01-01T12:00:00"),
        ("0 3 * * *", "2026-01-01T03:00:00", "2026-01-02T03:00:00"),
        ("*/15 * * * *", "2026-01-01T00:15:00", "2026-01-01T00:30:00"),
        ("0 2 * * mon-fri", "2026-01-01T02:00:00", "2026-01-02T02:00:00"),
        ("0 2 * * MON-FRI", "2026-01-01T02:00:00", "2026-01-02T02:00:00"),
        ("0 0 1 */3 *", "2026-04-01T00:00:00", "2026-07-01T00:00:00"),
        ("0 12 * jan,jul sun", "2026-01-04T12:00:00", "2026-01-11T12:00:00"),
        ("5,35 */6 * * *", "2026-01-01T00:05:00", "2026-01-01T00:35:00"),
        ("0 0 * * fri-sun", "2026-01-02T00:00:00", "2026-01-03T00:00:00"),
        ("0 0 * * 7", "2026-01-04T00:00:00", "2026-01-11T00:00:00"),
        ("0 0 13 * fri", "2026-01-02T00:00:00", "2026-01-09T00:00:00"),
        ("0 0 1-7 * mon", "2026-01-02T00:00:00", "2026-01-03T00:00:00"),
        ("0 0 29 2 *", "2028-02-29T00:00:00", "2032-02-29T00:00:00"),
        ("  0   3  *  *  *  ", "2026-01-01T03:00:00", "2026-01-02T03:00:00"),
        ("@hourly", "2026-01-01T01:00:00", "2026-01-01T02:00:00"),
        ("@daily", "2026-01-02T00:00:00", "2026-01-03T00:00:00"),
        ("@DAILY", "2026-01-02T00:00:00", "2026-01-03T00:00:00"),
        ("@weekly", "2026-01-04T00:00:00", "2026-01-11T00:00:00"),
        ("@monthly", "2026-02-01T00:00:00", "2026-03-01T00:00:00"),
        ("@yearly", "2027-01-01T00:00:00", "2028-01-01T00:00:00"),
    ],
)
def test_a_valid_schedule_runs_at_its_slots(text, first, second):
    schedule = parse_schedule(text)
    assert isinstance(schedule, Schedule)
    assert str(schedule) == text.strip()
    found = runs(schedule, "UTC", utc(2026, 1, 1), 2)
    assert [moment.replace(tzinfo=None).isoformat() for moment in found] == [first, second]
    assert all(moment.tzinfo is UTC for moment in found)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("5h", "'5h' does not divide a day; use one of 1h, 2h, 3h, 4h, 6h, 8h, 12h"),
        ("7h", "'7h' does not divide a day; use one of 1h, 2h, 3h, 4h, 6h, 8h, 12h"),
        ("7m", "'7m' does not divide a day; the nearest that do are 6m and 8m"),
        ("1000m", "'1000m' does not divide a day; the nearest that do are 720m and 1d"),
        ("7s", "'7s' does not divide a day; the nearest that do are 6s and 8s"),
        ("48h", "'48h' is longer than a day; use 2d, or a cron expression"),
        ("25h", "'25h' is longer than a day; use whole days such as 1d or 2d, or a cron expression"),
        ("86401s", "'86401s' is longer than a day; use whole days such as 1d or 2d, or a cron expression"),
        ("0h", f"'0h' is not a valid interval: the count must be at least 1 {HINT}"),
        ("0d", f"'0d' is not a valid interval: the count must be at least 1 {HINT}"),
        ("1.5d", f"'1.5d' is not a valid interval: the count must be a whole number {HINT}"),
        ("06h", f"'06h' is not a valid interval: the count must not start with 0 {HINT}"),
        ("1mo", f"'1mo' is not a valid interval: months and years have no fixed length; use days or weeks {HINT}"),
        ("36526d", f"'36526d' is not a valid interval: it is longer than 100 years {HINT}"),
        ("6x", f"'6x' is not a valid interval {HINT}"),
        ("-1d", f"'-1d' is not a valid interval {HINT}"),
        ("@reboot", f"'@reboot' is not a valid interval {HINT}"),
        ("*", f"'*' is not a valid interval {HINT}"),
        ("", f"'' is not a valid schedule: it is empty {HINT}"),
        (" \t", f"'' is not a valid schedule: it is empty {HINT}"),
        ("6h@06:00", "'6h@06:00' has an offset 06:00 that is not smaller than the interval 6h"),
        ("30m@00:30", "'30m@00:30' has an offset 00:30 that is not smaller than the interval 30m"),
        ("30s@00:01", "'30s@00:01' has an offset 00:01 that is not smaller than the interval 30s"),
        ("1d@24:00", f"'1d@24:00' has an invalid offset '24:00' {DAILY_OFFSET}"),
        ("1d@2:30", f"'1d@2:30' has an invalid offset '2:30' {DAILY_OFFSET}"),
        ("1d@02:60", f"'1d@02:60' has an invalid offset '02:60' {DAILY_OFFSET}"),
        ("1d@02:30:00", f"'1d@02:30:00' has an invalid offset '02:30:00' {DAILY_OFFSET}"),
        ("1d@", f"'1d@' has an invalid offset '' {DAILY_OFFSET}"),
        ("1d@02:30@03:00", f"'1d@02:30@03:00' has an invalid offset '02:30@03:00' {DAILY_OFFSET}"),
        ("2d@mon", f"'2d@mon' has an invalid offset 'mon' {DAILY_OFFSET}"),
        ("1w@03:00", f"'1w@03:00' has an invalid offset '03:00' {WEEKLY_OFFSET}"),
        ("1w@sunday-03:00", f"'1w@sunday-03:00' has an invalid offset 'sunday-03:00' {WEEKLY_OFFSET}"),
        ("1w@sun-3:00", f"'1w@sun-3:00' has an invalid offset 'sun-3:00' {WEEKLY_OFFSET}"),
    ],
)
def test_an_invalid_interval_is_refused_with_a_message_that_says_why(text, message):
    with pytest.raises(ValueError) as caught:
        parse_schedule(text)
    assert str(caught.value) == message


CRON_FIELDS = "cron needs 5 (minute hour day-of-month month day-of-week)"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("0 3 * *", f"it has 4 fields, {CRON_FIELDS}"),
        ("0 3 * * * *", f"it has 6 fields, {CRON_FIELDS}"),
        ("0 25 * * *", "hour '25' is not a number from 0 to 23"),
        ("60 * * * *", "minute '60' is not a number from 0 to 59"),
        ("* * 0 * *", "day-of-month '0' is not a number from 1 to 31"),
        ("* * 32 * *", "day-of-month '32' is not a number from 1 to 31"),
        ("* * * 13 *", "month '13' is not a number from 1 to 12 or a name jan..dec"),
        ("* * * * 8", "day-of-week '8' is not a number from 0 to 7 or a name sun..sat"),
        ("0 3 * * funday", "day-of-week 'funday' is not a number from 0 to 7 or a name sun..sat"),
        ("*/0 * * * *", "minute step /0 must be at least 1"),
        ("5-2 * * * *", "minute range 5-2 runs backwards"),
        ("* * * * 5-2", "day-of-week range 5-2 runs backwards"),
        ("0 3 L * *", "day-of-month 'l' is not a number from 1 to 31"),
        ("0 3 * * 5#2", "day-of-week field '5#2' is not a value, range, list or step"),
        ("0 3 ? * *", "day-of-month field '?' is not a value, range, list or step"),
        ("*-5 * * * *", "minute field '*-5' is not a value, range, list or step"),
        ("1,,2 * * * *", "minute field '1,,2' is not a value, range, list or step"),
        ("0 ３ * * *", "hour field '３' is not a value, range, list or step"),
    ],
)
def test_an_invalid_cron_expression_is_refused_naming_the_field(text, reason):
    with pytest.raises(ValueError) as caught:
        parse_schedule(text)
    assert str(caught.value) == f"'{text}' is not a valid cron expression: {reason}"


@pytest.mark.parametrize("text", ["0 0 30 2 *", "0 0 31 4,6,9,11 *", "0 0 31 2 *"])
def test_a_cron_expression_that_can_never_run_is_refused(text):
    with pytest.raises(ValueError) as caught:
        parse_schedule(text)
    assert str(caught.value) == f"'{text}' never runs: no month has that day"


@pytest.mark.parametrize("value", [6, None, ["6h"]])
def test_a_schedule_that_is_not_text_is_refused_with_a_value_error(value):
    with pytest.raises(ValueError, match="is not a valid schedule: expected text such as 6h"):
        parse_schedule(value)


def test_a_message_about_text_with_control_characters_stays_on_one_line():
    with pytest.raises(ValueError) as caught:
        parse_schedule("6h@\x1b[31m")
    assert str(caught.value).startswith("'6h@\\x1b[31m' has an invalid offset '\\x1b[31m'")


@pytest.mark.parametrize(
    "expression",
    ["0 2 * * mon-fri", "0 0 13 * fri", "*/15 * * * *", "0 0 1,15 * *", "30 4 1 */3 *", "0 0 * * 7",
     "0 12 * jan,jul sun", "5-50/7 */5 * * *", "0 0 29 2 *", "59 23 31 * *", "0 0 1-7 * mon", "0 0 */2 * *"],
)
def test_cron_slots_agree_with_croniter_in_a_timezone_without_dst(expression):
    # croniter is an independent implementation of the same grammar (including Vixie's day-of-month OR
    # day-of-week rule); in UTC there is no DST, so its naive answers must equal ours.
    moment = utc(2023, 11, 30, 17, 41, 13)
    for _ in range(40):
        expected = croniter(expression, moment.replace(tzinfo=None)).get_next(datetime)
        assert next_run(expression, "UTC", moment).replace(tzinfo=None) == expected
        expected_previous = croniter(expression, moment.replace(tzinfo=None)).get_prev(datetime)
        assert previous_run(expression, "UTC", moment - timedelta(microseconds=1)).replace(
            tzinfo=None) == expected_previous
        moment += timedelta(days=9, hours=7, minutes=13, seconds=1)


# --------------------------------------------------------------------------------------------- anchoring


def test_six_hourly_runs_at_local_midnight_and_every_six_hours_in_berlin():
    found = runs("6h", "Europe/Berlin", at("Europe/Berlin", 2026, 1, 15, 5, 0), 4)
    assert wall(found, "Europe/Berlin") == [
        "2026-01-15T06:00+01:00", "2026-01-15T12:00+01:00", "2026-01-15T18:00+01:00", "2026-01-16T00:00+01:00",
    ]


def test_six_hourly_with_an_offset_is_shifted_from_local_midnight():
    found = runs("6h@00:15", "Europe/Berlin", at("Europe/Berlin", 2026, 7, 1, 23, 0), 3)
    assert wall(found, "Europe/Berlin") == [
        "2026-07-02T00:15+02:00", "2026-07-02T06:15+02:00", "2026-07-02T12:15+02:00",
    ]


def test_daily_at_half_past_two_runs_at_local_half_past_two_in_new_york():
    found = runs("1d@02:30", "America/New_York", at("America/New_York", 2026, 7, 1, 3, 0), 3)
    assert wall(found, "America/New_York") == [
        "2026-07-02T02:30-04:00", "2026-07-03T02:30-04:00", "2026-07-04T02:30-04:00",
    ]


@pytest.mark.parametrize("days", [2, 3, 5, 7])
@pytest.mark.parametrize("tz", ["UTC", "Europe/Berlin", "Pacific/Auckland", "America/Los_Angeles"])
def test_every_n_days_runs_at_local_midnight_on_days_counted_from_1970(days, tz):
    for moment in runs(f"{days}d", tz, utc(2026, 2, 10), 6):
        local = moment.astimezone(ZoneInfo(tz))
        assert local.time().isoformat() == "00:00:00"
        assert (local.date() - date(1970, 1, 1)).days % days == 0


@pytest.mark.parametrize("weeks", [1, 2, 3])
def test_every_n_weeks_runs_on_mondays_counted_from_the_monday_before_1970(weeks):
    found = runs(f"{weeks}w", "Europe/Berlin", utc(2026, 2, 10), 5)
    for moment in found:
        local = moment.astimezone(ZoneInfo("Europe/Berlin"))
        assert (local.weekday(), local.time().isoformat()) == (0, "00:00:00")
        assert (local.date() - date(1969, 12, 29)).days % (7 * weeks) == 0
    assert all(later - earlier <= timedelta(weeks=weeks, hours=1) for earlier, later in pairwise(found))


def test_weekly_on_sunday_at_three_runs_every_sunday_at_three_local_time():
    found = runs("1w@sun-03:00", "Europe/Berlin", utc(2026, 3, 20), 4)
    assert wall(found, "Europe/Berlin") == [
        "2026-03-22T03:00+01:00", "2026-03-29T03:00+02:00", "2026-04-05T03:00+02:00", "2026-04-12T03:00+02:00",
    ]


def test_an_after_with_another_timezone_means_the_same_instant():
    in_tokyo = at("Asia/Tokyo", 2026, 1, 15, 13, 0)  # 05:00 in Berlin
    assert next_run("6h", "Europe/Berlin", in_tokyo) == at("Europe/Berlin", 2026, 1, 15, 6, 0)


def test_next_run_is_strictly_after_a_slot():
    slot = at("Europe/Berlin", 2026, 1, 15, 6, 0)
    assert next_run("6h", "Europe/Berlin", slot) == at("Europe/Berlin", 2026, 1, 15, 12, 0)
    assert next_run("6h", "Europe/Berlin", slot - timedelta(microseconds=1)) == slot


def test_a_schedule_object_a_text_and_a_zoneinfo_are_all_accepted():
    after = utc(2026, 1, 1)
    assert next_run(parse_schedule("6h"), ZoneInfo("UTC"), after) == next_run("6h", "UTC", after)


# ------------------------------------------------------------------------------------------------- DST

BERLIN = "Europe/Berlin"


@pytest.mark.parametrize(
    ("schedule", "start", "expected"),
    [
        ("1h", (2026, 3, 29, 0, 30), ["2026-03-29T01:00+01:00", "2026-03-29T03:00+02:00", "2026-03-29T04:00+02:00"]),
        ("30m", (2026, 3, 29, 1, 10), ["2026-03-29T01:30+01:00", "2026-03-29T03:00+02:00", "2026-03-29T03:30+02:00"]),
        ("1d@02:30", (2026, 3, 27, 12, 0),
         ["2026-03-28T02:30+01:00", "2026-03-29T03:00+02:00", "2026-03-30T02:30+02:00"]),
        ("1d@02:00", (2026, 3, 28, 12, 0), ["2026-03-29T03:00+02:00", "2026-03-30T02:00+02:00"]),
        ("30 2 * * *", (2026, 3, 28, 12, 0), ["2026-03-29T03:00+02:00", "2026-03-30T02:30+02:00"]),
        ("*/15 * * * *", (2026, 3, 29, 1, 40),
         ["2026-03-29T01:45+01:00", "2026-03-29T03:00+02:00", "2026-03-29T03:15+02:00"]),
        ("0 2 * * 0", (2026, 3, 25, 0, 0), ["2026-03-29T03:00+02:00", "2026-04-05T02:00+02:00"]),
    ],
)
def test_a_local_time_that_does_not_exist_runs_once_at_the_end_of_the_gap(schedule, start, expected):
    found = runs(schedule, BERLIN, at(BERLIN, *start), len(expected))
    assert wall(found, BERLIN) == expected


@pytest.mark.parametrize(
    ("schedule", "start", "expected"),
    [
        ("1h", (2026, 10, 25, 0, 30),
         ["2026-10-25T01:00+02:00", "2026-10-25T02:00+02:00", "2026-10-25T03:00+01:00", "2026-10-25T04:00+01:00"]),
        ("30m", (2026, 10, 25, 1, 10),
         ["2026-10-25T01:30+02:00", "2026-10-25T02:00+02:00", "2026-10-25T02:30+02:00", "2026-10-25T03:00+01:00"]),
        ("1d@02:30", (2026, 10, 23, 12, 0),
         ["2026-10-24T02:30+02:00", "2026-10-25T02:30+02:00", "2026-10-26T02:30+01:00"]),
        ("30 2 * * *", (2026, 10, 24, 12, 0), ["2026-10-25T02:30+02:00", "2026-10-26T02:30+01:00"]),
        ("0 2 * * *", (2026, 10, 24, 12, 0), ["2026-10-25T02:00+02:00", "2026-10-26T02:00+01:00"]),
        ("*/15 * * * *", (2026, 10, 25, 2, 40),
         ["2026-10-25T02:45+02:00", "2026-10-25T03:00+01:00", "2026-10-25T03:15+01:00"]),
    ],
)
def test_a_local_time_that_happens_twice_runs_once_at_its_first_occurrence(schedule, start, expected):
    found = runs(schedule, BERLIN, at(BERLIN, *start), len(expected))
    assert wall(found, BERLIN) == expected


def test_a_run_at_the_end_of_a_gap_is_not_returned_again_for_the_slots_the_gap_swallowed():
    end_of_gap = at(BERLIN, 2026, 3, 29, 3, 0)  # 02:00, 02:30 and 03:00 all run at this instant
    assert wall([next_run("30m", BERLIN, end_of_gap)], BERLIN) == ["2026-03-29T03:30+02:00"]
    assert wall([next_run("*/15 * * * *", BERLIN, end_of_gap)], BERLIN) == ["2026-03-29T03:15+02:00"]
    assert previous_run("30m", BERLIN, end_of_gap) == end_of_gap


def test_during_the_repeated_hour_the_next_run_skips_the_second_occurrence():
    second_half_past_two = at(BERLIN, 2026, 10, 25, 2, 30, fold=1)  # 02:30 CET, after 02:30 CEST has run
    assert wall([next_run("1h", BERLIN, second_half_past_two)], BERLIN) == ["2026-10-25T03:00+01:00"]
    assert wall([next_run("30 2 * * *", BERLIN, second_half_past_two)], BERLIN) == ["2026-10-26T02:30+01:00"]


@pytest.mark.parametrize(
    ("schedule", "tz", "start", "expected"),
    [
        ("1d@02:30", "America/New_York", (2026, 3, 7, 12, 0), ["2026-03-08T03:00-04:00", "2026-03-09T02:30-04:00"]),
        ("1d@01:30", "America/New_York", (2026, 10, 31, 12, 0),
         ["2026-11-01T01:30-04:00", "2026-11-02T01:30-05:00"]),
        # Chile moves its clocks at midnight: the midnight that does not exist runs at 01:00.
        ("1d", "America/Santiago", (2026, 9, 4, 12, 0),
         ["2026-09-05T00:00-04:00", "2026-09-06T01:00-03:00", "2026-09-07T00:00-03:00"]),
        ("0 23 * * *", "America/Santiago", (2026, 4, 4, 12, 0), ["2026-04-04T23:00-03:00", "2026-04-05T23:00-04:00"]),
        # Lord Howe Island shifts by 30 minutes.
        ("1h", "Australia/Lord_Howe", (2026, 10, 4, 1, 10), ["2026-10-04T02:30+11:00", "2026-10-04T03:00+11:00"]),
        ("30m", "Australia/Lord_Howe", (2026, 4, 5, 0, 50),
         ["2026-04-05T01:00+11:00", "2026-04-05T01:30+11:00", "2026-04-05T02:00+10:30"]),
    ],
)
def test_dst_rules_hold_in_other_timezones(schedule, tz, start, expected):
    assert wall(runs(schedule, tz, at(tz, *start), len(expected)), tz) == expected


# ---------------------------------------------------------------------------------------- previous_run


@pytest.mark.parametrize(
    ("schedule", "moment", "expected"),
    [
        ("6h", at(BERLIN, 2026, 1, 15, 5, 59), "2026-01-15T00:00+01:00"),
        ("6h", at(BERLIN, 2026, 1, 15, 6, 0), "2026-01-15T06:00+01:00"),
        ("1d@02:30", at(BERLIN, 2026, 3, 29, 1, 59), "2026-03-28T02:30+01:00"),
        ("1d@02:30", at(BERLIN, 2026, 3, 29, 3, 0), "2026-03-29T03:00+02:00"),
        ("1d@02:30", at(BERLIN, 2026, 3, 29, 3, 10), "2026-03-29T03:00+02:00"),
        ("30m", at(BERLIN, 2026, 3, 29, 3, 10), "2026-03-29T03:00+02:00"),
        ("1h", at(BERLIN, 2026, 10, 25, 2, 30, fold=1), "2026-10-25T02:00+02:00"),
        ("1h", at(BERLIN, 2026, 10, 25, 2, 30, fold=0), "2026-10-25T02:00+02:00"),
        ("30 2 * * *", at(BERLIN, 2026, 10, 25, 2, 45, fold=1), "2026-10-25T02:30+02:00"),
        ("0 3 * * *", at(BERLIN, 2026, 1, 15, 2, 0), "2026-01-14T03:00+01:00"),
        ("1w@sun-03:00", at(BERLIN, 2026, 3, 28, 12, 0), "2026-03-22T03:00+01:00"),
        ("0 0 29 2 *", at(BERLIN, 2026, 1, 1, 0, 0), "2024-02-29T00:00+01:00"),
    ],
)
def test_previous_run_is_the_latest_slot_at_or_before_the_instant(schedule, moment, expected):
    found = previous_run(schedule, BERLIN, moment)
    assert wall([found], BERLIN) == [expected]
    assert found.tzinfo is UTC


# ------------------------------------------------------------------------------------------------ interval


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [
        ("30s", timedelta(seconds=30)),
        ("90m", timedelta(minutes=90)),
        ("6h", timedelta(hours=6)),
        ("6h@00:15", timedelta(hours=6)),
        ("1d@02:30", timedelta(days=1)),
        ("2d", timedelta(days=2)),
        ("2w", timedelta(weeks=2)),
        ("1w@sun-03:00", timedelta(weeks=1)),
        ("*/15 * * * *", timedelta(minutes=15)),
        ("* * * * *", timedelta(minutes=1)),
        ("0 3 * * *", timedelta(days=1)),
        ("0 9,17 * * *", timedelta(hours=16)),
        ("0 2 * * mon-fri", timedelta(days=3)),
        ("0 0 13 * fri", timedelta(days=7)),
        ("0 0 1 * *", timedelta(days=31)),
        ("0 0 1 1 *", timedelta(days=366)),
        ("0 0 29 2 *", timedelta(days=1461)),
        ("* * * 1 *", timedelta(days=335, minutes=1)),
        ("@hourly", timedelta(hours=1)),
        ("@weekly", timedelta(weeks=1)),
    ],
)
def test_interval_is_the_period_or_the_largest_gap_of_a_cron_schedule(schedule, expected):
    assert interval(schedule) == expected
    assert interval(parse_schedule(schedule)) == expected


# ------------------------------------------------------------------------------------------- timezones


@pytest.mark.parametrize(
    ("name", "expected"),
    [("UTC", "UTC"), ("Europe/Berlin", "Europe/Berlin"), ("America/New_York", "America/New_York"), (" UTC ", "UTC")],
)
def test_a_known_timezone_is_accepted(name, expected):
    assert validate_timezone(name) == expected


@pytest.mark.parametrize(
    "name", ["Mars/Base", "", "europe/berlin", "Europe", "Europe/", "/etc/passwd", "../etc/passwd", "CEST",
             "Europe/Berlin\x00", "zone1970.tab", "\ud800"],
)
def test_an_unknown_timezone_is_refused_with_a_value_error(name):
    with pytest.raises(ValueError, match="is not a known timezone"):
        validate_timezone(name)


def test_the_unknown_timezone_message_quotes_the_name_and_gives_examples():
    with pytest.raises(ValueError) as caught:
        next_run("6h", "Mars/Base", utc(2026, 1, 1))
    assert str(caught.value) == (
        "'Mars/Base' is not a known timezone (use an IANA name such as UTC, Europe/Berlin or America/New_York)"
    )


def test_a_naive_instant_is_refused():
    with pytest.raises(ValueError, match="after must be timezone-aware, got the naive datetime 2026-01-01T00:00:00"):
        next_run("6h", "UTC", datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="at must be timezone-aware"):
        previous_run("6h", "UTC", datetime(2026, 1, 1))


# -------------------------------------------------------------------------------------------- properties

ZONES = ["Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "America/Santiago", "Pacific/Chatham",
         "Asia/Kolkata", "America/Havana", "UTC"]


def _divisors(number: int, smallest: int) -> list[int]:
    return [d for d in range(smallest, number + 1) if number % d == 0]


def _clock(seconds: int) -> str:
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}"


@st.composite
def interval_schedules(draw) -> str:
    """An interval schedule of every form, with an offset about half the time."""
    kind = draw(st.sampled_from(["h", "m", "s", "d", "w"]))
    offset = draw(st.booleans())
    if kind == "w":
        count, day = draw(st.integers(1, 3)), draw(st.sampled_from(["mon", "wed", "sun", "SAT"]))
        return f"{count}w@{day}-{_clock(draw(st.integers(0, 1439)) * 60)}" if offset else f"{count}w"
    if kind == "d":
        count = draw(st.integers(1, 9))
        return f"{count}d@{_clock(draw(st.integers(0, 1439)) * 60)}" if offset else f"{count}d"
    size = {"h": 3600, "m": 60, "s": 1}[kind]
    # Seconds start at 60s: a 1s schedule is valid but makes each example walk thousands of slots.
    count = draw(st.sampled_from(_divisors(86400 // size, 60 if kind == "s" else 1)))
    minutes = count * size // 60
    if offset and minutes > 1:
        return f"{count}{kind}@{_clock(draw(st.integers(0, minutes - 1)) * 60)}"
    return f"{count}{kind}"


CRON_SCHEDULES = ["0 3 * * *", "*/15 * * * *", "0 2 * * mon-fri", "30 2 * * *", "0,30 1-3 * * *", "0 0 1 * *",
                  "45 23 * * sun", "*/7 2 * * *", "0 0 13 * fri"]
schedules = st.one_of(interval_schedules(), st.sampled_from(CRON_SCHEDULES))
instants = st.datetimes(min_value=datetime(1995, 1, 1), max_value=datetime(2060, 1, 1), timezones=st.just(UTC))


def _transitions(tz: str, year: int) -> list[datetime]:
    """Return instants just after each change of the UTC offset of `tz` in `year` (to 30 minutes)."""
    zone, found = ZoneInfo(tz), []
    moment = utc(year, 1, 1)
    while moment.year == year:
        later = moment + timedelta(minutes=30)
        if later.astimezone(zone).utcoffset() != moment.astimezone(zone).utcoffset():
            found.append(later)
        moment = later
    return found


TRANSITIONS = [(tz, moment) for tz in ZONES for moment in _transitions(tz, 2026)]


@st.composite
def near_a_transition(draw) -> tuple[str, datetime]:
    """A timezone and an instant within four hours of one of its DST changes in 2026."""
    tz, moment = draw(st.sampled_from(TRANSITIONS))
    return tz, moment + timedelta(seconds=draw(st.integers(-4 * 3600, 4 * 3600)))


moments = st.one_of(
    st.tuples(st.sampled_from(ZONES), instants),
    near_a_transition(),
)


def _is_slot(schedule: Schedule, local: datetime) -> bool:
    """Whether a naive local reading is one of the schedule's slots, judged without next_run."""
    if schedule.cron is not None:
        return croniter.match(schedule.text, local)
    since_anchor = (local - datetime(1970, 1, 1)) - timedelta(seconds=schedule.anchor)
    return since_anchor % timedelta(seconds=schedule.period) == timedelta(0)


@settings(max_examples=300, deadline=None)
@given(schedules, moments)
def test_next_run_is_after_the_instant_and_on_the_schedule(text, zone_and_instant):
    tz, after = zone_and_instant
    schedule = parse_schedule(text)
    found = next_run(schedule, tz, after)
    assert found > after and found.tzinfo is UTC
    assert previous_run(schedule, tz, found) == found
    assert previous_run(schedule, tz, found - timedelta(microseconds=1)) < found
    # The reading is a slot, or the first instant after a gap that swallowed one.
    zone = ZoneInfo(tz)
    reading = found.astimezone(zone).replace(tzinfo=None)
    just_before = (found - timedelta(seconds=1)).astimezone(zone).replace(tzinfo=None)
    assert _is_slot(schedule, reading) or reading - just_before > timedelta(seconds=1)


@settings(max_examples=300, deadline=None)
@given(schedules, moments)
def test_previous_and_next_run_bracket_the_instant(text, zone_and_instant):
    tz, moment = zone_and_instant
    before, after = previous_run(text, tz, moment), next_run(text, tz, moment)
    assert before <= moment < after
    assert next_run(text, tz, before) == after


@settings(max_examples=200, deadline=None)
@given(interval_schedules(), moments)
def test_consecutive_runs_are_never_more_than_the_interval_plus_an_hour_apart(text, zone_and_instant):
    tz, after = zone_and_instant
    found = runs(text, tz, after - timedelta(hours=2), 6)
    limit = interval(text) + timedelta(hours=1)
    zone = ZoneInfo(tz)
    for earlier, later in pairwise(found):
        assert timedelta(0) < later - earlier <= limit
        wall_clock = later.astimezone(zone).replace(tzinfo=None) - earlier.astimezone(zone).replace(tzinfo=None)
        assert wall_clock <= limit


FALL_BACKS = [(tz, moment) for tz, moment in TRANSITIONS
              if (moment + timedelta(hours=3)).astimezone(ZoneInfo(tz)).utcoffset()
              < (moment - timedelta(hours=3)).astimezone(ZoneInfo(tz)).utcoffset()]


@settings(max_examples=150, deadline=None)
@given(schedules, st.sampled_from(FALL_BACKS), st.integers(0, 3 * 3600))
def test_no_instant_and_no_local_time_runs_twice_across_a_fall_back(text, fall_back, lead):
    tz, change = fall_back
    moment, end = change - timedelta(hours=3) - timedelta(seconds=lead), change + timedelta(hours=3)
    found = []
    while moment < end:
        moment = next_run(text, tz, moment)
        found.append(moment)
    assert all(earlier < later for earlier, later in pairwise(found))
    readings = [moment.astimezone(ZoneInfo(tz)).replace(tzinfo=None) for moment in found]
    assert len(set(readings)) == len(readings)


def test_the_fall_back_property_test_really_covers_fall_backs():
    assert {tz for tz, _ in FALL_BACKS} == set(ZONES) - {"Asia/Kolkata", "UTC"}


@settings(max_examples=400, deadline=None)
@given(st.one_of(
    st.text(max_size=40),
    st.from_regex(r"\A[0-9]{1,3}[smhdwxM]{0,2}(@[a-zA-Z0-9:-]{0,10})?\Z"),
    st.from_regex(r"\A[0-9*/,a-zA-Z-]{1,7}( [0-9*/,a-zA-Z?#-]{1,7}){3,5}\Z"),
))
def test_arbitrary_text_either_parses_to_a_schedule_that_runs_or_raises_value_error(text):
    try:
        schedule = parse_schedule(text)
    except ValueError as exc:
        assert "\n" not in str(exc)
        return
    after = utc(2026, 5, 17, 8, 13)
    assert next_run(schedule, "Europe/Berlin", after) > after
    assert interval(schedule) > timedelta(0)
