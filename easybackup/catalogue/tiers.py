"""Why each backup is kept or deleted: the pure decision behind retention (catalogue.retention applies it).

Two policies:
- a duration (`retention: "30d"`): a backup is kept while it started at most `retention` before now, and the
  newest `keep_last` of its database are kept however old;
- tiers (`retention: {keep_last: 3, hourly: 24, daily: 7, weekly: 4, monthly: 12, yearly: 3}`): a backup is
  kept if it is among the newest `keep_last`, or the newest backup of one of the newest N hours, days, ISO weeks
  (Monday start), months or years that hold a backup of its database. Periods are read on the local clock of the
  strategy's timezone; an hour is told apart by its UTC offset too, so the two 02:00 hours of an autumn DST change
  are two hours. Counting periods that hold a backup (as borg and restic do), not calendar periods back from now,
  means a strategy that stopped running for a while does not see its tiers drain.

Under both, the newest complete backup of each database is always kept. Pure: reads nothing but its arguments.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol
from zoneinfo import ZoneInfo

from easybackup.catalogue.listing import database_dir, parse_utc
from easybackup.config.model import RetentionTiers
from easybackup.scheduling.durations import format_duration

TIERS = ("hourly", "daily", "weekly", "monthly", "yearly")
NEWEST = "newest"  # the reason that keeps the newest backup of a database under any policy


class BackupLike(Protocol):
    key: str
    started_at: str


@dataclass(frozen=True)
class Decision:
    """One backup, whether retention keeps it, and why (every rule that keeps it, or why none does)."""

    backup: BackupLike
    keep: bool
    reasons: tuple[str, ...]


def period_of(tier: str, local: datetime) -> tuple:
    """Given a tier name and an aware local time, return the period it falls in; the hour an autumn DST change
    repeats is two periods (the UTC offset tells them apart)."""
    if tier == "hourly":
        return (local.year, local.month, local.day, local.hour, -local.utcoffset().total_seconds())
    if tier == "daily":
        return (local.year, local.month, local.day)
    if tier == "weekly":
        year, week, _ = local.isocalendar()
        return (year, week)
    if tier == "monthly":
        return (local.year, local.month)
    return (local.year,)


def period_label(tier: str, local: datetime) -> str:
    """Given a tier and an aware local time, return how its period is shown (`2026-03-29 02:00 CET`, `2026-W13`)."""
    if tier == "hourly":
        return local.strftime("%Y-%m-%d %H:00 %Z")
    if tier == "daily":
        return local.strftime("%Y-%m-%d")
    if tier == "weekly":
        year, week, _ = local.isocalendar()
        return f"{year}-W{week:02d}"
    if tier == "monthly":
        return local.strftime("%Y-%m")
    return local.strftime("%Y")


def decide(backups: Sequence[BackupLike], now: datetime, *, retention_seconds: float, keep_last: int,
           tiers: RetentionTiers | None = None, timezone: str = "UTC",
           protected: Callable[[BackupLike], str | None] | None = None) -> list[Decision]:
    """Given complete backups, now (aware), the duration policy (`retention_seconds`, `keep_last`) or `tiers` (then
    the duration is ignored and keep_last is the tiers'), the strategy's timezone, and optionally `protected`
    (a backup -> the reason it must be kept, or None), return one Decision per backup, oldest first (by start, then
    key). The result does not depend on the order `backups` are given in."""
    groups: dict[str, list] = defaultdict(list)
    for backup in backups:
        groups[database_dir(backup.key)].append(backup)
    decisions = []
    for members in groups.values():
        newest_first = sorted(members, key=_order, reverse=True)
        if tiers is None:
            reasons = _duration_reasons(newest_first, now, retention_seconds, keep_last)
        else:
            reasons = _tier_reasons(newest_first, tiers, ZoneInfo(timezone))
        for index, backup in enumerate(newest_first):
            keeps, why_not = reasons[backup.key]
            keeps = ([NEWEST] if index == 0 else []) + keeps
            extra = protected(backup) if protected is not None else None
            keeps += [extra] if extra else []
            why_not = why_not or ["no rule keeps it (keep_last and every tier are 0)"]
            decisions.append(Decision(backup, bool(keeps), tuple(keeps) if keeps else tuple(why_not)))
    return sorted(decisions, key=lambda d: _order(d.backup))


def _order(backup: BackupLike) -> tuple:
    return (parse_utc(backup.started_at), backup.key)


def _duration_reasons(newest_first: list, now: datetime, retention_seconds: float,
                      keep_last: int) -> dict[str, tuple[list[str], list[str]]]:
    limit = format_duration(retention_seconds)
    found = {}
    for index, backup in enumerate(newest_first):
        keeps, why_not = [], []
        if index < keep_last:
            keeps.append(f"keep_last {keep_last}")
        age = (now - parse_utc(backup.started_at)).total_seconds()
        if age <= retention_seconds:
            keeps.append(f"younger than retention {limit}")
        else:
            why_not.append(f"started {format_duration(age)} ago, past retention {limit}")
            if keep_last:
                why_not.append(f"not among the newest {keep_last}")
        found[backup.key] = (keeps, why_not)
    return found


def _tier_reasons(newest_first: list, tiers: RetentionTiers, zone: ZoneInfo) -> dict[str, tuple[list, list]]:
    found = {backup.key: ([], []) for backup in newest_first}
    for index, backup in enumerate(newest_first):
        if index < tiers.keep_last:
            found[backup.key][0].append(f"keep_last {tiers.keep_last}")
        elif tiers.keep_last:
            found[backup.key][1].append(f"not among the newest {tiers.keep_last}")
    for tier in TIERS:
        count = getattr(tiers, tier)
        if not count:
            continue
        seen: dict[tuple, BackupLike] = {}  # period -> the newest backup in it
        for backup in newest_first:
            local = parse_utc(backup.started_at).astimezone(zone)
            period, label = period_of(tier, local), period_label(tier, local)
            keeps, why_not = found[backup.key]
            if period in seen:
                why_not.append(f"{tier}: {seen[period].key} is newer in {label}")
            elif len(seen) < count:
                keeps.append(f"{tier} {len(seen) + 1}/{count} ({label})")
            else:
                why_not.append(f"{tier}: {label} is older than the newest {count}")
            seen.setdefault(period, backup)
    return found
