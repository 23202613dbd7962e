"""S3 Object Lock through moto's S3 (a bucket created with Object Lock, and one without): backups are written
locked, retention keeps a locked backup and says until when, then deletes every version of it once the lock ends;
`validate --check-connectivity` and the supervisor say when the bucket cannot lock."""

from __future__ import annotations

import itertools
import os
import time
from datetime import datetime, timedelta, timezone

import pytest
from loguru import logger

from easybackup.config import load_config
from easybackup.supervision.startup import StartupReader
from tests.harness.configs import run_cli, write_config
from tests.integration.test_prune_reasons import at

_numbers = itertools.count()
LOCK = {"mode": "governance", "days": 1}


@pytest.fixture
def locked_bucket(moto) -> str:
    """A fresh bucket with Object Lock enabled (and so versioning)."""
    name = f"locked-bucket-{os.getpid()}-{next(_numbers)}"
    moto.client().create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
    return name


def stamp(moment: datetime) -> str:
    return f"{moment:%Y-%m-%d %H:%M:%S}"


def lock(client, bucket: str, key: str, until: datetime, bypass: bool = False) -> None:
    client.put_object_retention(Bucket=bucket, Key=key, Retention={"Mode": "GOVERNANCE", "RetainUntilDate": until},
                                BypassGovernanceRetention=bypass)


def versions(client, bucket: str, prefix: str) -> list[tuple[str, bool]]:
    answer = client.list_object_versions(Bucket=bucket, Prefix=prefix)
    return sorted([(v["Key"], False) for v in answer.get("Versions", [])]
                  + [(m["Key"], True) for m in answer.get("DeleteMarkers", [])])


def take_two_backups(pg, moto, bucket, tmp_path, proxy) -> tuple[str, str, str]:
    pg.create_database("object_lock")
    pg.psql("CREATE TABLE t AS SELECT g FROM generate_series(1, 100) g", "object_lock")
    strategy = {"name": "ledger", "database_url": pg.url("object_lock"), "schedule": "1h", "retention": "1h",
                "keep_last": 1}
    config = write_config(tmp_path, bucket=bucket, endpoint=proxy.url, strategies=[strategy], s3={"object_lock": LOCK})
    for _ in range(2):
        result = run_cli("once", "-c", str(config))
        assert result.returncode == 0, result.stderr
    manifests = sorted(key for key in moto.list_keys(bucket) if key.endswith(".manifest.json"))
    assert len(manifests) == 2
    older, newer = (key.removesuffix(".manifest.json") + ".dump.gz" for key in manifests)
    return str(config), older, newer


def lock_headers(proxy, method: str, wanted) -> list[tuple[str | None, str | None]]:
    return [(r.headers.get("x-amz-object-lock-mode"), r.headers.get("x-amz-object-lock-retain-until-date"))
            for r in proxy.requests if r.method == method and wanted(r.path)]


def test_a_locked_backup_is_kept_with_its_date_and_every_version_is_deleted_once_the_lock_ends(
        pg, moto, locked_bucket, tmp_path, fault_proxy):
    proxy = fault_proxy("127.0.0.1", moto.port, "http")
    config, older, newer = take_two_backups(pg, moto, locked_bucket, tmp_path, proxy)
    client = moto.client()
    # Archives (CreateMultipartUpload) and manifests are written locked for a day; run records and pins are not.
    tomorrow = datetime.now(timezone.utc) + timedelta(days=1)
    for mode, until in lock_headers(proxy, "POST", lambda path: "?uploads" in path) + lock_headers(
            proxy, "PUT", lambda path: path.split("?")[0].endswith(".manifest.json")):
        assert mode == "GOVERNANCE"
        assert abs((datetime.fromisoformat(until.replace("Z", "+00:00")) - tomorrow).total_seconds()) < 300
    assert len(lock_headers(proxy, "POST", lambda path: "?uploads" in path)) == 2
    assert set(lock_headers(proxy, "PUT", lambda path: "/_runs/" in path)) == {(None, None)}
    head = client.head_object(Bucket=locked_bucket, Key=older.removesuffix(".dump.gz") + ".manifest.json")
    assert head["ObjectLockMode"] == "GOVERNANCE"
    # moto keeps no lock asked for by CreateMultipartUpload (S3 does): lock the older archive as S3 would have.
    archive_until = (datetime.now(timezone.utc) + timedelta(days=2)).replace(microsecond=0)
    lock(client, locked_bucket, older, archive_until)
    later = stamp(datetime.now(timezone.utc) + timedelta(hours=2))  # the older backup is past retention (1h)

    dry = run_cli("prune", "-c", config, "--dry-run", env=at(later))
    assert dry.returncode == 0, dry.stderr
    held = f"  keep {older}: locked until {archive_until:%Y-%m-%dT%H:%M:%SZ} (governance); deleted once it ends ("
    assert dry.stdout.splitlines()[0] == "ledger: would delete 0 backup(s), kept 2 (retention 1h (keep_last 1))"
    assert dry.stdout.splitlines()[1].startswith(held)
    assert "past retention 1h" in dry.stdout.splitlines()[1]
    pruned = run_cli("prune", "-c", config, env=at(later))
    assert pruned.returncode == 0, pruned.stdout + pruned.stderr
    assert pruned.stdout.splitlines()[1].startswith(held) and "NOT DELETED" not in pruned.stdout
    assert f"retention keeps {older}: locked until {archive_until:%Y-%m-%dT%H:%M:%SZ}" in pruned.stderr
    assert older in moto.list_keys(locked_bucket)
    third = run_cli("once", "-c", config, env=at(later))  # a run's own retention says the same, at info
    assert third.returncode == 0, third.stderr
    assert [line for line in third.stderr.splitlines() if f"retention keeps {older}: locked until" in line][0] \
        .split("|")[1].strip() == "INFO"
    assert older in moto.list_keys(locked_bucket)

    # The lock ends (governance: an admin may shorten it); the next prune deletes every version, leaving nothing.
    soon = (datetime.now(timezone.utc) + timedelta(seconds=2)).replace(microsecond=0)
    for key in (older, older.removesuffix(".dump.gz") + ".manifest.json"):
        lock(client, locked_bucket, key, soon, bypass=True)
    time.sleep(max(0.0, (soon - datetime.now(timezone.utc)).total_seconds()) + 1.0)
    pruned = run_cli("prune", "-c", config, env=at(later))
    assert pruned.returncode == 0, pruned.stdout + pruned.stderr
    assert pruned.stdout.splitlines()[1].startswith(f"  deleted {older} (and its manifest): ")
    assert versions(client, locked_bucket, older.removesuffix(".dump.gz")) == []  # no data, no delete marker
    assert newer in moto.list_keys(locked_bucket)  # as is the third, newest one
    assert [marker for _key, marker in versions(client, locked_bucket, "") if marker] == []


def test_validate_and_the_supervisor_say_which_strategys_bucket_has_no_object_lock(
        pg, moto, bucket, locked_bucket, tmp_path, aws_env):
    url = pg.url("postgres")
    strategies = [{"name": "plain", "database_url": url, "s3": {"bucket": bucket}},
                  {"name": "locked", "database_url": url, "s3": {"bucket": locked_bucket}}]
    config = write_config(tmp_path, bucket=bucket, endpoint=moto.endpoint, strategies=strategies,
                          s3={"object_lock": LOCK})
    checked = run_cli("validate", "-c", str(config), "--check-connectivity")
    assert checked.returncode == 1, checked.stdout + checked.stderr
    lines = checked.stdout.splitlines()
    assert f"plain: Object Lock of s3://{bucket}: FAILED: bucket '{bucket}' of strategy 'plain' has no Object " \
        "Lock, but s3.object_lock asks for locked backups (every upload would be refused) — hint: enable Object " \
        "Lock on the bucket (`aws s3api create-bucket --object-lock-enabled-for-bucket`" in "\n".join(lines)
    assert f"locked: Object Lock of s3://{locked_bucket}: ok" in lines

    errors: list[str] = []
    sink = logger.add(lambda message: errors.append(message.record["message"]), level="ERROR")
    try:
        StartupReader(load_config(str(config)).strategies, datetime.now(timezone.utc), clean_uploads=False).read_all()
    finally:
        logger.remove(sink)
    once = run_cli("once", "-c", str(config), "--strategy", "plain")
    assert once.returncode != 0
    assert f"bucket '{bucket}' has no Object Lock, but s3.object_lock asks for locked backups" in once.stderr
    assert [line for line in errors if "Object Lock" in line] == [
        f"bucket '{bucket}' of strategy 'plain' has no Object Lock, but s3.object_lock asks for locked backups "
        "(every upload would be refused) — hint: enable Object Lock on the bucket (`aws s3api create-bucket "
        "--object-lock-enabled-for-bucket`, or `aws s3api put-object-lock-configuration` on a versioned bucket), "
        "or remove s3.object_lock"]
