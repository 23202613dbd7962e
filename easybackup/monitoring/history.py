"""The recent backups of each strategy, for the status page's charts: size and duration per run.

Read from the manifests once at start (supervision/startup.py) and appended as runs finish (state.py), so a page
request only reads memory. Pure: no I/O here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

HISTORY_RUNS = 30  # points per chart: a month of daily backups, and few enough manifests to read at start


@dataclass(frozen=True)
class HistoryPoint:
    """One run that stored at least one archive: when it finished, what it stored, how long it took."""

    run_id: str
    finished_at: datetime  # aware, UTC
    size_bytes: int
    duration_s: float | None


def _parse_utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def points_from_manifests(manifests: Iterable) -> tuple[HistoryPoint, ...]:
    """Given manifests (storage.manifest.Manifest), return one point per run, oldest first: the bytes its
    databases stored, and the time from its first start to its last finish."""
    runs: dict[str, list] = {}
    for manifest in manifests:
        runs.setdefault(manifest.run_id, []).append(manifest)
    points = []
    for run_id, items in runs.items():
        started = min(_parse_utc(m.started_at) for m in items)
        finished = max(_parse_utc(m.finished_at) for m in items)
        points.append(HistoryPoint(run_id, finished, sum(m.stored_bytes for m in items),
                                   max((finished - started).total_seconds(), 0.0)))
    return merge_history((), points)


def merge_history(kept: Iterable[HistoryPoint], more: Iterable[HistoryPoint],
                  limit: int = HISTORY_RUNS) -> tuple[HistoryPoint, ...]:
    """Given the points kept and more points, return the newest `limit` of both, oldest first; of two points of
    the same run, the one in `kept` stays (what this process saw itself is more exact than the manifests)."""
    by_run = {point.run_id: point for point in more}
    by_run.update({point.run_id: point for point in kept})
    return tuple(sorted(by_run.values(), key=lambda p: (p.finished_at, p.run_id))[-limit:])


def newest_run_keys(keys: Iterable[str], limit: int = HISTORY_RUNS) -> list[str]:
    """Given manifest keys (`.../<run name>.<ext>.manifest.json`), return those of the newest `limit` run names."""
    runs: dict[str, list[str]] = {}
    for key in keys:
        runs.setdefault(_run_name_of(key), []).append(key)
    return [key for name in sorted(runs)[-limit:] for key in runs[name]]


def _run_name_of(key: str) -> str:
    return key.rpartition("/")[2].partition(".")[0]
