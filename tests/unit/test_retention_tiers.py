"""Tiered retention (catalogue.tiers.decide): each tier keeps exactly what it names, in the strategy's timezone,
the newest backup is never deleted, the order backups are listed in changes nothing; and every decision says why."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from easybackup.catalogue.tiers import NEWEST, TIERS, decide
from easybackup.config.model import RetentionTiers
from easybackup.storage.layout import archive_key

UTC = timezone.utc
NOW = datetime(2027, 6, 1, 12, 0, tzinfo=UTC)
START = datetime(2024, 1, 1, tzinfo=UTC)
ZONES = ("UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata")


@dataclass(frozen=True)
class Backup:
    key: str
    started_at: str


def backup(started: datetime, database: str = "shop") -> Backup:
    return Backup(archive_key("backups", "main", database, started.strftime("%Y-%m-%dT%H%M%SZ"), "custom", "gzip"),
                  started.strftime("%Y-%m-%dT%H:%M:%SZ"))


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def kept(backups, tiers: RetentionTiers, zone: str = "UTC") -> dict[str, tuple[str, ...]]:
    return {d.backup.key: d.reasons for d in decide(backups, NOW, retention_seconds=0, keep_last=0, tiers=tiers,
                                                    timezone=zone) if d.keep}


def tier_keeps(backups, tiers: RetentionTiers, tier: str, zone: str = "UTC") -> set[str]:
    return {key for key, reasons in kept(backups, tiers, zone).items()
            if any(reason.startswith(f"{tier} ") for reason in reasons)}


# The oracle: periods computed another way (the instant a local hour starts; the Monday a week starts).
def oracle_period(tier: str, started: datetime, zone: ZoneInfo):
    local = started.astimezone(zone)
    if tier == "hourly":
        return local.replace(minute=0, second=0).astimezone(UTC)
    if tier == "daily":
        return local.date()
    if tier == "weekly":
        return local.date() - timedelta(days=local.weekday())
    if tier == "monthly":
        return local.date().replace(day=1)
    return local.year


def oracle_tier(backups: list[Backup], tier: str, count: int, zone: ZoneInfo) -> set[str]:
    """A backup is kept by a tier if nothing newer shares its period and at most `count` periods hold a backup at
    least as new as it."""
    chosen = set()
    for mine in backups:
        newer = [b for b in backups if (b.started_at, b.key) >= (mine.started_at, mine.key)]
        periods = {oracle_period(tier, at(b.started_at), zone) for b in newer}
        own = oracle_period(tier, at(mine.started_at), zone)
        if all(oracle_period(tier, at(b.started_at), zone) != own for b in newer if b is not mine) \
                and len(periods) <= count:
            chosen.add(mine.key)
    return chosen


backup_lists = st.lists(st.tuples(st.sampled_from(["shop", "crm"]),
                                  st.integers(min_value=0, max_value=3 * 366 * 86400 // 60).map(lambda m: m * 60)),
                        min_size=1, max_size=60, unique=True).map(
    lambda items: [backup(START + timedelta(seconds=s), db) for db, s in items])
tier_counts = st.builds(RetentionTiers, keep_last=st.integers(0, 4), hourly=st.integers(0, 30),
                        daily=st.integers(0, 10), weekly=st.integers(0, 6), monthly=st.integers(0, 14),
                        yearly=st.integers(0, 4))


@settings(max_examples=300, deadline=None)
@given(backup_lists, tier_counts, st.sampled_from(ZONES))
def test_each_tier_keeps_exactly_the_newest_backup_of_each_of_its_newest_periods(backups, tiers, zone):
    for database in ("shop", "crm"):
        own = [b for b in backups if "/shop/" in b.key] if database == "shop" else \
            [b for b in backups if "/crm/" in b.key]
        for tier in TIERS:
            expected = oracle_tier(own, tier, getattr(tiers, tier), ZoneInfo(zone))
            assert tier_keeps(own, tiers, tier, zone) == expected, (tier, zone)


@settings(max_examples=300, deadline=None)
@given(backup_lists, tier_counts, st.sampled_from(ZONES))
def test_the_newest_backup_of_each_database_is_never_deleted_and_keep_last_keeps_the_newest_n(backups, tiers, zone):
    decisions = decide(backups, NOW, retention_seconds=0, keep_last=0, tiers=tiers, timezone=zone)
    assert sorted(d.backup.key for d in decisions) == sorted(b.key for b in backups)
    for database in ("shop", "crm"):
        own = sorted((d for d in decisions if f"/{database}/" in d.backup.key),
                     key=lambda d: (d.backup.started_at, d.backup.key), reverse=True)
        if own:
            assert own[0].keep and NEWEST in own[0].reasons
        by_keep_last = [d.backup.key for d in own if f"keep_last {tiers.keep_last}" in d.reasons]
        assert by_keep_last == [d.backup.key for d in own[:tiers.keep_last]]


@settings(max_examples=300, deadline=None)
@given(backup_lists, tier_counts, st.sampled_from(ZONES), st.randoms(use_true_random=False))
def test_the_decisions_do_not_depend_on_the_order_backups_are_listed(backups, tiers, zone, rng):
    shuffled = list(backups)
    rng.shuffle(shuffled)
    first = decide(backups, NOW, retention_seconds=0, keep_last=0, tiers=tiers, timezone=zone)
    assert decide(shuffled, NOW, retention_seconds=0, keep_last=0, tiers=tiers, timezone=zone) == first
    assert decide(list(reversed(backups)), NOW, retention_seconds=0, keep_last=0, tiers=tiers, timezone=zone) == first


@settings(max_examples=300, deadline=None)
@given(backup_lists, tier_counts, st.sampled_from(ZONES))
def test_a_backup_is_kept_exactly_when_a_rule_keeps_it_and_a_deleted_one_says_why_for_every_tier(backups, tiers,
                                                                                                 zone):
    for decision in decide(backups, NOW, retention_seconds=0, keep_last=0, tiers=tiers, timezone=zone):
        assert decision.reasons
        if not decision.keep and tiers == RetentionTiers():
            assert decision.reasons == ("no rule keeps it (keep_last and every tier are 0)",)
        elif not decision.keep:
            named = {reason.split(":")[0] for reason in decision.reasons}
            assert named == {t for t in TIERS if getattr(tiers, t)} | ({"not among the newest "
                                                                         f"{tiers.keep_last}"} if tiers.keep_last
                                                                        else set())


@settings(max_examples=200, deadline=None)
@given(backup_lists, st.integers(1, 4), st.integers(1, 400))
def test_a_plain_duration_keeps_what_it_kept_before_tiers(backups, keep_last, days):
    decisions = decide(backups, NOW, retention_seconds=days * 86400.0, keep_last=keep_last)
    for database in ("shop", "crm"):
        own = sorted((b for b in backups if f"/{database}/" in b.key), key=lambda b: (b.started_at, b.key),
                     reverse=True)
        expected = {b.key for b in own[:keep_last]} | {
            b.key for b in own if (NOW - at(b.started_at)).total_seconds() <= days * 86400.0}
        assert {d.backup.key for d in decisions if d.keep and f"/{database}/" in d.backup.key} == expected


# Hand-written: DST changes in Europe/Berlin, and the ISO week and year boundaries.

def test_the_hour_repeated_when_berlin_leaves_summer_time_is_two_hours():
    # 2026-10-25: 03:00 CEST becomes 02:00 CET, so 02:15 and 02:45 happen twice.
    backups = [backup(at(t)) for t in ("2026-10-25T02:15+02:00", "2026-10-25T02:45+02:00",
                                       "2026-10-25T02:15+01:00", "2026-10-25T02:45+01:00")]
    hourly = tier_keeps(backups, RetentionTiers(hourly=24), "hourly", "Europe/Berlin")
    assert hourly == {backups[1].key, backups[3].key}
    assert tier_keeps(backups, RetentionTiers(hourly=1), "hourly", "Europe/Berlin") == {backups[3].key}
    assert tier_keeps(backups, RetentionTiers(daily=7), "daily", "Europe/Berlin") == {backups[3].key}
    reasons = kept(backups, RetentionTiers(hourly=24), "Europe/Berlin")
    assert reasons[backups[1].key] == ("hourly 2/24 (2026-10-25 02:00 CEST)",)
    assert reasons[backups[3].key] == (NEWEST, "hourly 1/24 (2026-10-25 02:00 CET)")


def test_the_day_berlin_enters_summer_time_is_its_own_day_in_berlin_and_not_in_utc():
    # 2026-03-29 02:00 CET becomes 03:00 CEST. 23:30 on the 28th and 00:30 on the 29th, Berlin time, are both the
    # 28th in UTC.
    backups = [backup(at(t)) for t in ("2026-03-28T23:30+01:00", "2026-03-29T00:30+01:00", "2026-03-29T03:30+02:00")]
    assert tier_keeps(backups, RetentionTiers(daily=7), "daily", "Europe/Berlin") == {backups[0].key, backups[2].key}
    assert tier_keeps(backups, RetentionTiers(daily=7), "daily", "UTC") == {backups[1].key, backups[2].key}
    # the hour skipped by the change does not count: 01:30 CET and 03:30 CEST are the newest two hours
    assert tier_keeps(backups, RetentionTiers(hourly=2), "hourly", "Europe/Berlin") == {backups[1].key,
                                                                                         backups[2].key}


def test_weeks_start_on_monday_in_the_strategys_timezone():
    # Sunday 23:30 and Monday 00:30 in Berlin are one UTC Sunday.
    sunday, monday = backup(at("2026-11-08T23:30+01:00")), backup(at("2026-11-09T00:30+01:00"))
    assert tier_keeps([sunday, monday], RetentionTiers(weekly=4), "weekly", "Europe/Berlin") == {sunday.key,
                                                                                                 monday.key}
    assert tier_keeps([sunday, monday], RetentionTiers(weekly=4), "weekly", "UTC") == {monday.key}


def test_iso_weeks_cross_the_new_year_and_years_do_not():
    # 2026-12-31 (Thursday) and 2027-01-03 (Sunday) are both in ISO week 2026-W53; 2027-01-04 starts 2027-W01.
    thursday, sunday, monday = (backup(at(t)) for t in ("2026-12-31T12:00+01:00", "2027-01-03T12:00+01:00",
                                                        "2027-01-04T12:00+01:00"))
    backups = [thursday, sunday, monday]
    assert tier_keeps(backups, RetentionTiers(weekly=4), "weekly", "Europe/Berlin") == {sunday.key, monday.key}
    assert tier_keeps(backups, RetentionTiers(yearly=3), "yearly", "Europe/Berlin") == {thursday.key, monday.key}
    reasons = kept(backups, RetentionTiers(weekly=4), "Europe/Berlin")
    assert reasons[sunday.key] == ("weekly 2/4 (2026-W53)",)
    deleted = {d.backup.key: d.reasons for d in decide(backups, NOW, retention_seconds=0, keep_last=0,
                                                         tiers=RetentionTiers(weekly=4), timezone="Europe/Berlin")}
    assert deleted[thursday.key] == (f"weekly: {sunday.key} is newer in 2026-W53",)


def test_a_tier_past_its_count_says_its_period_is_older_than_the_newest_n():
    backups = [backup(START + timedelta(days=i)) for i in range(5)]
    decisions = decide(backups, NOW, retention_seconds=0, keep_last=0, tiers=RetentionTiers(keep_last=1, daily=3))
    assert [d.keep for d in decisions] == [False, False, True, True, True]
    assert decisions[0].reasons == ("not among the newest 1", "daily: 2024-01-01 is older than the newest 3")
    assert decisions[4].reasons == (NEWEST, "keep_last 1", "daily 1/3 (2024-01-05)")


def test_the_worked_example_in_the_readme_a_year_of_nightly_backups():
    # One backup a night at 02:30 Berlin time from 2025-06-01 to 2026-05-31, pruned with the tiers the README shows.
    first = datetime(2025, 6, 1, 2, 30, tzinfo=ZoneInfo("Europe/Berlin"))
    backups = [backup((first + timedelta(days=i)).astimezone(UTC)) for i in range(365)]
    random.Random(7).shuffle(backups)
    tiers = RetentionTiers(keep_last=3, daily=7, weekly=4, monthly=12, yearly=3)
    decisions = decide(backups, NOW, retention_seconds=0, keep_last=0, tiers=tiers, timezone="Europe/Berlin")
    kept_days = [d.backup.started_at[:10] for d in decisions if d.keep]
    assert kept_days == ["2025-06-30", "2025-07-31", "2025-08-31", "2025-09-30", "2025-10-31", "2025-11-30",
                         "2025-12-31", "2026-01-31", "2026-02-28", "2026-03-31", "2026-04-30", "2026-05-10",
                         "2026-05-17", "2026-05-24", "2026-05-25", "2026-05-26", "2026-05-27", "2026-05-28",
                         "2026-05-29", "2026-05-30", "2026-05-31"]
