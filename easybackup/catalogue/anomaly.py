"""The size-drop alarm: a backup much smaller than the backups of its database before it is `suspicious` (a table
emptied by mistake, a dump of the wrong database). The run still succeeds; Slack, health and a metric say why, and
retention keeps the newest normal backup while newer ones are suspicious. Pure: reads nothing but its arguments.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence

from easybackup.config.model import AnomalySettings
from easybackup.humanize import format_bytes


def size_drop(size: int, earlier: Sequence[int], settings: AnomalySettings) -> str | None:
    """Given a backup's stored size and the stored sizes of the backups of its database before it (oldest first),
    return why it is suspicious — below `min_ratio` of the median of the last `window` of them — or None. A first
    backup has nothing to compare with and is never suspicious."""
    window = list(earlier)[-settings.window:]
    if not window:
        return None
    median = statistics.median(window)
    if median <= 0 or size >= settings.min_ratio * median:
        return None
    return (f"stored size {format_bytes(size)} is {size / median:.0%} of the median {format_bytes(int(median))} of "
            f"the last {len(window)} backup(s) (anomaly.min_ratio {settings.min_ratio:g})")


def suspicious(sizes_oldest_first: Sequence[tuple[str, int]], settings: AnomalySettings) -> dict[str, str]:
    """Given one database's backups as (key, stored size), oldest first, return {key: reason} for each suspicious
    one, each judged against the backups before it."""
    found = {}
    for index, (key, size) in enumerate(sizes_oldest_first):
        reason = size_drop(size, [s for _, s in sizes_oldest_first[:index]], settings)
        if reason:
            found[key] = reason
    return found
