"""The size-drop alarm, the pure parts: when a backup is suspicious, and the newest normal backup retention keeps."""

from __future__ import annotations

from datetime import datetime, timezone

from hypothesis import given
from hypothesis import strategies as st

from easybackup.catalogue.anomaly import size_drop, suspicious
from easybackup.catalogue.retention import newest_normal, plan_retention
from easybackup.config.model import AnomalySettings
from easybackup.storage.layout import archive_key
from easybackup.storage.manifest import Manifest

DEFAULT = AnomalySettings()


def test_below_half_the_median_of_the_last_seven_is_suspicious_and_says_why():
    assert size_drop(400, [1000] * 7, DEFAULT) == ("stored size 400 B is 40% of the median 1000 B of the last 7 "
                                                   "backup(s) (anomaly.min_ratio 0.5)")
    assert size_drop(500, [1000] * 7, DEFAULT) is None  # exactly half is not below it


def test_only_the_last_window_backups_count_and_a_first_backup_is_never_suspicious():
    assert size_drop(400, [100] * 5 + [1000] * 7, DEFAULT) is not None
    assert size_drop(400, [100] * 5 + [1000] * 2, AnomalySettings(window=7)) is None  # median of 7 is 100
    assert size_drop(1, [], DEFAULT) is None
    assert size_drop(10, [0, 0, 0], DEFAULT) is None


@given(st.lists(st.integers(1, 10**9), min_size=1, max_size=20), st.integers(1, 10**9),
       st.floats(0.01, 1.0), st.integers(1, 10))
def test_suspicious_exactly_when_below_the_ratio_of_the_median(earlier, size, ratio, window):
    settings = AnomalySettings(min_ratio=ratio, window=window)
    last = sorted(earlier[-window:])
    middle = len(last) // 2
    median = last[middle] if len(last) % 2 else (last[middle - 1] + last[middle]) / 2
    assert (size_drop(size, earlier, settings) is not None) == (size < ratio * median)


def manifest(stamp: str, size: int, database: str = "shop") -> Manifest:
    started = datetime.strptime(stamp, "%Y-%m-%dT%H%M%SZ").replace(tzinfo=timezone.utc)
    return Manifest(strategy="main", database=database, run_id="a", key=archive_key("b", "main", database, stamp,
                    "custom", "gzip"), started_at=f"{started:%Y-%m-%dT%H:%M:%SZ}",
                    finished_at=f"{started:%Y-%m-%dT%H:%M:%SZ}", stored_bytes=size, sha256="0" * 64,
                    compression="gzip", format="custom")


def test_a_run_of_suspicious_backups_never_pushes_out_the_newest_normal_one():
    backups = [manifest(f"2026-05-{day:02d}T020000Z", size) for day, size in
               ((1, 1000), (2, 1100), (3, 1050), (4, 90), (5, 80), (6, 85))]
    assert set(suspicious([(b.key, b.stored_bytes) for b in backups], DEFAULT)) == {b.key for b in backups[3:]}
    guard = newest_normal(backups, DEFAULT)
    assert guard == {backups[2].key: "the newest normal backup (3 newer one(s) suspicious: size drop)"}
    now = datetime(2026, 6, 1, tzinfo=timezone.utc)
    delete, keep = plan_retention(backups, now, 86400, 1)
    assert backups[2] in delete  # without the guard, keep_last 1 lets it go; apply_retention passes the guard
    assert newest_normal(backups[:3], DEFAULT) == {}  # the newest is normal: keep_last already keeps it


def test_each_database_has_its_own_newest_normal_backup():
    shop = [manifest("2026-05-01T020000Z", 1000), manifest("2026-05-02T020000Z", 10)]
    crm = [manifest("2026-05-01T020000Z", 1000, "crm"), manifest("2026-05-02T020000Z", 990, "crm")]
    assert newest_normal(shop + crm, DEFAULT) == {shop[0].key: "the newest normal backup (1 newer one(s) "
                                                                "suspicious: size drop)"}
