"""Object Lock and the prune key, the pure parts: the lock arguments of a write, which lock holds a backup, how a
locked backup's decision reads, the settings that delete, and the error a bucket without Object Lock gives."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone

from botocore.exceptions import ClientError

from easybackup.catalogue.locked import keep_locked
from easybackup.catalogue.tiers import Decision, decide
from easybackup.config.model import ObjectLockSettings, S3Settings
from easybackup.storage.layout import archive_key
from easybackup.storage.locks import Lock, longest
from easybackup.storage.s3 import classify_s3_error, extra_put_args, prune_settings

NOW = datetime(2026, 5, 1, 2, 30, 0, 250000, tzinfo=timezone.utc)
LOCKED = S3Settings(bucket="vault", object_lock=ObjectLockSettings(mode="compliance", days=35.0))


@dataclasses.dataclass(frozen=True)
class Backup:
    key: str
    started_at: str


def test_a_locked_write_asks_for_the_mode_and_days_from_now_rounded_up_to_the_second():
    args = extra_put_args(LOCKED, now=NOW)
    assert args["ObjectLockMode"] == "COMPLIANCE"
    assert args["ObjectLockRetainUntilDate"] == datetime(2026, 6, 5, 2, 30, 1, tzinfo=timezone.utc)
    assert args["ChecksumAlgorithm"] == "CRC32"  # S3 refuses a locked write without a checksum


def test_pins_run_records_and_unlocked_strategies_are_written_without_a_lock():
    assert "ObjectLockMode" not in extra_put_args(LOCKED, storage_class=False, lock=False, now=NOW)
    assert "ObjectLockMode" not in extra_put_args(S3Settings(bucket="vault"), now=NOW)


def test_the_prune_key_replaces_the_backup_key_only_when_both_halves_are_set():
    backup = S3Settings(bucket="vault", access_key="AKIABACKUP", secret_key="backup-secret", session_token="tok")
    assert prune_settings(backup) is backup
    both = dataclasses.replace(backup, prune_access_key="AKIAPRUNE", prune_secret_key="prune-secret")
    prune = prune_settings(both)
    assert (prune.access_key, prune.secret_key, prune.session_token) == ("AKIAPRUNE", "prune-secret", None)
    assert prune.bucket == "vault"


def test_the_lock_that_ends_last_holds_a_backup_and_a_legal_hold_outlasts_any_date():
    early, late = Lock(NOW + timedelta(days=1), "GOVERNANCE"), Lock(NOW + timedelta(days=9), "COMPLIANCE")
    assert longest([early, late]) == late and longest([]) is None
    assert longest([late, Lock(legal_hold=True)]).legal_hold
    assert late.describe() == "locked until 2026-05-10T02:30:00Z (compliance)"
    assert late.holds(NOW) and not late.holds(NOW + timedelta(days=10))
    assert Lock(legal_hold=True).holds(NOW + timedelta(days=10_000))


def test_a_locked_backup_that_retention_would_delete_is_kept_saying_until_when_and_why_it_goes_then():
    old = Backup(archive_key("b", "s", "shop", "2026-03-01T023000Z", "custom", "gzip"), "2026-03-01T02:30:00Z")
    older = Backup(archive_key("b", "s", "shop", "2026-02-01T023000Z", "custom", "gzip"), "2026-02-01T02:30:00Z")
    new = Backup(archive_key("b", "s", "shop", "2026-04-30T023000Z", "custom", "gzip"), "2026-04-30T02:30:00Z")
    decisions = decide([old, older, new], NOW, retention_seconds=30 * 86400.0, keep_last=1)
    lock = Lock(NOW + timedelta(days=4), "GOVERNANCE")
    kept = keep_locked(decisions, {old.key: lock, new.key: lock})
    assert [d.keep for d in kept] == [False, True, True]
    assert kept[1].reasons == ("locked until 2026-05-05T02:30:00Z (governance); deleted once it ends (started 61d "
                               "ago, past retention 30d; not among the newest 1)",)
    assert kept[2] == decisions[2] and kept[0] == decisions[0]  # kept anyway, and not locked: unchanged
    assert all(isinstance(d, Decision) for d in kept)


def test_a_bucket_without_object_lock_refusing_a_locked_write_is_said_plainly():
    exc = ClientError({"Error": {"Code": "InvalidRequest", "Message": "Bucket is missing ObjectLockConfiguration"},
                       "ResponseMetadata": {"HTTPStatusCode": 400}}, "PutObject")
    error = classify_s3_error(exc, "vault")
    assert error.message == "bucket 'vault' has no Object Lock, but s3.object_lock asks for locked backups"
    assert "object-lock-enabled-for-bucket" in error.hint and not error.transient


def test_validate_shows_a_strategys_lock_and_prune_key_in_one_row():
    from easybackup.cli.validate import immutability_text
    from easybackup.config.model import Strategy

    strategy = Strategy(name="ledger", databases=(), s3=dataclasses.replace(LOCKED, prune_access_key="AKIAPRUNE",
                                                                            prune_secret_key="prune-secret"))
    assert immutability_text(strategy) == ("Object Lock compliance, 35d from each upload; deletes with the prune key "
                                           "(s3.prune_credentials)")
    assert immutability_text(dataclasses.replace(strategy, s3=S3Settings(bucket="vault"))) is None
