"""Schedules as Kubernetes cron: every form cron can express is rendered exactly — the next 50 runs of the
rendered cron in the strategy's timeZone are the supervisor's own next 50 slots, across DST changes — and every
other form is refused with the reason, never approximated."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from easybackup.deploy.cron import cron_expression, dst_clash
from easybackup.scheduling import next_run, parse_schedule

TIMEZONES = ("UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata")
MINUTE_DIVISORS = (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30)
HOUR_DIVISORS = (1, 2, 3, 4, 6, 8, 12)
INTERVALS = (
    [f"{m}m" for m in MINUTE_DIVISORS] + [f"{m}m@00:{m - 1:02d}" for m in MINUTE_DIVISORS if m > 1]
    + ["60s", "120s", "300s", "60m", "120m", "1440m", "24h", "1d"]
    + [f"{h}h" for h in HOUR_DIVISORS] + [f"{h}h@{h - 1:02d}:59" for h in HOUR_DIVISORS] + ["6h@00:30", "8h@01:00"]
    + ["1d@02:30", "1d@02:00", "1d@01:30", "1d@03:00", "1d@23:59", "7d", "7d@02:30", "1w", "1w@fri"]
    + [f"1w@{day}-02:30" for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")]
)
CRONS = (
    "0 3 * * *", "30 2 * * *", "*/15 * * * *", "5,35 1-3 * * *", "0 */6 * * *", "0 0 * * 7", "0 0 * * fri-sun",
    "0 9-17 * * mon-fri", "0 0 1,15 * mon", "0 0 */2 * *", "0 2 1 * *", "0 2 31 * *", "0 4 29 2 *",
    "0 0 1 jan,jul *", "*/20 2 * 3,10 sun", "0 12 1-7 * *", "@hourly", "@daily", "@weekly", "@monthly", "@yearly",
)


def transitions(zone_name: str, year: int = 2026) -> list[datetime]:
    """Given a timezone, return the instants (UTC) its offset changes in `year`, or its start when it never does."""
    zone, found = ZoneInfo(zone_name), []
    moment = datetime(year, 1, 1, tzinfo=timezone.utc)
    while moment.year == year:
        later = moment + timedelta(minutes=30)
        if moment.astimezone(zone).utcoffset() != later.astimezone(zone).utcoffset():
            found.append(later)
        moment = later
    return found or [datetime(year, 1, 1, tzinfo=timezone.utc)]


def runs(schedule, zone: str, after: datetime, count: int = 50) -> list[datetime]:
    found = []
    for _ in range(count):
        after = next_run(schedule, zone, after)
        found.append(after)
    return found


@pytest.mark.parametrize("text", [*INTERVALS, *CRONS])
def test_the_rendered_cron_runs_exactly_when_the_supervisor_would_in_every_timezone_across_dst(text):
    rendered = parse_schedule(cron_expression(text))
    assert rendered.cron is not None
    for zone in TIMEZONES:
        for change in transitions(zone):
            start = change - timedelta(minutes=30)  # 50 slots from here cross the change, even every minute
            assert runs(rendered, zone, start) == runs(text, zone, start), (text, zone, start)


@pytest.mark.parametrize(("text", "expected"), [
    ("6h", "0 */6 * * *"), ("6h@00:30", "30 */6 * * *"), ("1d@02:30", "30 2 * * *"), ("1w@sun-03:00", "0 3 * * 0"),
    ("15m@00:05", "5-50/15 * * * *"), ("8h@01:00", "0 1-17/8 * * *"), ("7d", "0 0 * * 4"), ("@daily", "0 0 * * *"),
    ("0 3 * * 7", "0 3 * * 0"), ("0 0 * * fri-sun", "0 0 * * 0,5,6"), ("0 0 */2 * *", "0 0 */2 * *"),
])
def test_the_rendered_cron_is_plain_numbers_kubernetes_reads(text, expected):
    assert cron_expression(text) == expected


@pytest.mark.parametrize(("text", "reason"), [
    ("90m", "same minutes every hour"),
    ("45m", "same minutes every hour"),
    ("30s", "seconds past the minute"),
    ("90s", "seconds past the minute"),
    ("2d", "every 2 days counted from 1970-01-01"),
    ("2w", "every 14 days"),
    ("7h", "does not divide a day"),
    ("0 0 */2 * 1", "Kubernetes' cron runs when either does"),
])
def test_a_schedule_cron_cannot_express_exactly_is_refused_with_the_reason(text, reason):
    with pytest.raises(ValueError, match=reason.replace("(", r"\(")) as caught:
        cron_expression(text)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(("text", "zone", "clash"), [
    ("1d@02:30", "Europe/Berlin", datetime(2026, 3, 29, 2, 30)),  # skipped by the spring change
    ("30 1 * * *", "America/New_York", datetime(2026, 11, 1, 1, 30)),  # repeated by the fall change
    ("1d@02:00", "Australia/Lord_Howe", datetime(2026, 10, 4, 2, 0)),  # October skips 02:00-02:30
    ("1d@01:45", "Australia/Lord_Howe", datetime(2026, 4, 5, 1, 45)),  # April repeats 01:30-02:00
    ("1h", "Europe/Berlin", datetime(2026, 3, 29, 2, 0)),
    ("1d@03:30", "Europe/Berlin", None),
    ("6h", "America/New_York", None),
    ("1h", "UTC", None),
    ("15m", "Asia/Kolkata", None),
])
def test_a_run_inside_a_dst_change_is_found_where_kubernetes_and_the_supervisor_part_ways(text, zone, clash):
    assert dst_clash(text, zone, datetime(2026, 1, 1, tzinfo=timezone.utc), days=365) == clash
