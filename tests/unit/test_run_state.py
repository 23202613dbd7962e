"""What a restart restores from run records and manifests, which run records retention deletes, and how long a
strategy's run may take before its archive without a manifest is garbage — the pure parts, case by case."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from easybackup.catalogue.retention import ORPHAN_MARGIN_S, longest_run_s, old_run_records
from easybackup.config.model import RetrySettings, S3Settings, Strategy, TimeoutSettings, VerifySettings
from easybackup.storage.layout import run_record_key
from easybackup.storage.manifest import Manifest
from easybackup.storage.runrecord import DatabaseRecord, RunRecord, record_of
from easybackup.supervision.startup import restored_from

NOW = datetime(2025, 6, 17, 12, 0, tzinfo=timezone.utc)


def text(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def record(hours_ago: float, status: str, error: str | None = None) -> RunRecord:
    started = NOW - timedelta(hours=hours_ago)
    outcome = DatabaseRecord("shop", status, error_kind="connection" if error else None, error=error)
    return RunRecord(strategy="main", run_id=f"r{int(hours_ago)}", run_name=f"{started:%Y-%m-%dT%H%M%SZ}-r",
                     started_at=text(started), finished_at=text(started + timedelta(minutes=5)), status=status,
                     error_kind="connection" if error else None, error=error, databases=(outcome,))


def manifest(database: str, hours_ago: float) -> Manifest:
    started = NOW - timedelta(hours=hours_ago)
    return Manifest(strategy="main", database=database, run_id="x", key=f"b/main/{database}/{started:%Y-%m-%dT%H%M%SZ}"
                    ".dump", started_at=text(started), finished_at=text(started + timedelta(minutes=1)),
                    stored_bytes=10, sha256="0" * 64, compression="none", format="custom")


def test_the_newest_record_sets_the_status_and_the_failures_in_a_row_are_counted_to_the_last_success():
    records = [record(1, "failed", "shop: refused"), record(2, "failed", "shop: refused"), record(3, "success"),
               record(4, "failed", "old")]
    restored = restored_from("main", records, [manifest("shop", 3), manifest("_globals", 1)])
    assert restored.status == "failed" and restored.error == "shop: refused" and restored.error_kind == "connection"
    assert restored.consecutive_failures == 2
    assert restored.last_run == NOW - timedelta(hours=1)
    assert restored.last_success == NOW - timedelta(hours=3) + timedelta(minutes=5)
    assert restored.databases["shop"].status == "failed"
    assert restored.databases["shop"].last_success == NOW - timedelta(hours=3) + timedelta(minutes=1)
    assert restored.databases["_globals"].last_success == NOW - timedelta(hours=1) + timedelta(minutes=1)


def test_without_records_the_newest_manifest_stands_for_the_strategy_as_before():
    restored = restored_from("main", [], [manifest("shop", 5), manifest("crm", 2)])
    assert restored.status == "success" and restored.last_run == NOW - timedelta(hours=2)
    assert restored.error is None and restored.consecutive_failures == 0


def test_a_manifest_newer_than_the_newest_record_is_a_run_of_an_older_version_and_wins():
    restored = restored_from("main", [record(5, "failed", "shop: refused")], [manifest("shop", 1)])
    assert restored.status == "success" and restored.error is None


def test_nothing_at_all_restores_nothing():
    restored = restored_from("main", [], [])
    assert restored.status is None and restored.last_run is None and restored.databases == {}


# A secret of 8 characters or more: shorter ones are masked only where they stand (secrets.MIN_MASKABLE).
def test_a_record_masks_the_error_and_names_the_failed_database():
    result = {"status": "failed", "error": {"kind": "authentication", "message": "password hunter2-ledger-9 refused"},
              "databases": [{"database": "_globals", "status": "success", "key": "k", "size": 3},
                            {"database": "shop", "status": "failed",
                             "error": {"kind": "authentication", "message": "password hunter2-ledger-9"}}]}
    from easybackup.secrets import register_secret

    register_secret("hunter2-ledger-9")
    made = record_of("main", "r1", "2025-06-17T120000Z-r1", text(NOW), text(NOW), result)
    assert made.status == "failed" and made.error.startswith("shop: ") and "hunter2-ledger-9" not in made.to_json()
    assert RunRecord.from_json(made.to_json()) == made


def test_retention_deletes_records_past_retention_but_keeps_the_newest_twenty():
    keys = [run_record_key("b", "main", f"{NOW - timedelta(days=40 - i):%Y-%m-%dT%H%M%SZ}-r{i}") for i in range(40)]
    old = old_run_records(keys, NOW, retention_seconds=30 * 86400)
    assert old == keys[:10]  # 40 days .. 31 days old; the 20 newest would stay even if older
    assert old_run_records(keys, NOW, retention_seconds=0) == keys[:20]


def test_a_record_whose_timestamp_is_no_date_is_kept_and_stops_nothing():
    keys = [run_record_key("b", "main", f"{NOW - timedelta(days=40 - i):%Y-%m-%dT%H%M%SZ}-r{i}") for i in range(30)]
    odd = run_record_key("b", "main", "2025-02-30T120000Z-rodd")  # made by hand: February has no 30th
    assert old_run_records([odd, *keys], NOW, retention_seconds=30 * 86400) == keys[:10]


def test_the_longest_run_counts_every_attempt_the_waits_verification_and_the_margin():
    strategy = Strategy(name="s", databases=(), s3=S3Settings(bucket="b"),
                        retry=RetrySettings(max_attempts=3, max_delay=300),
                        timeout=TimeoutSettings(backup=7200))
    assert longest_run_s(strategy) == 3 * 7200 + 2 * 300 + ORPHAN_MARGIN_S
    verified = Strategy(name="s", databases=(), s3=S3Settings(bucket="b"),
                        retry=RetrySettings(max_attempts=1),
                        timeout=TimeoutSettings(backup=60), verify=VerifySettings(after_backup=True))
    assert longest_run_s(verified) == 120 + ORPHAN_MARGIN_S


def test_an_upload_is_stale_only_when_old_by_the_store_and_by_its_key_and_never_the_runs_own():
    from easybackup.storage.multipart import OpenUpload, stale_uploads

    long_ago = datetime(2010, 11, 10, 20, 48, 33, tzinfo=timezone.utc)  # what moto reports for every upload
    old_key = "b/main/shop/2025-06-17T080000Z-aaaaaaaaaaaa.dump.gz"
    young_key = "b/main/shop/2025-06-17T115900Z-bbbbbbbbbbbb.dump.gz"
    own_key = "b/main/shop/2025-06-17T080000Z-cccccccccccc.dump.gz"
    legacy_key = "b/main/shop/2025-06-17T080000Z.dump.gz"
    uploads = [OpenUpload(key, f"id-{i}", long_ago) for i, key in enumerate((old_key, young_key, own_key, legacy_key))]
    uploads.append(OpenUpload("b/main/shop/2025-06-17T080000Z-dddddddddddd.dump.gz", "id-new", NOW))
    stale = stale_uploads(uploads, NOW - timedelta(seconds=1), 3600, NOW, own_run_id="cccccccccccc")
    assert [upload.key for upload in stale] == [old_key, legacy_key]
