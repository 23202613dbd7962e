"""S3 Object Lock and object versions: whether a bucket can lock, how long a version is locked, and deleting every
version of a key.

A bucket with Object Lock is versioned (S3 turns versioning on with the lock and never off). There a plain DELETE
removes nothing: it adds a delete marker, the object vanishes from listings, and its bytes stay — locked ones until
their lock ends, unlocked ones for ever, and billed. So whatever easybackup deletes under `s3.object_lock`, it
deletes version by version (s3:DeleteObjectVersion), delete markers included, and leaves nothing behind.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from botocore.exceptions import BotoCoreError, ClientError

from easybackup.config.model import S3Settings
from easybackup.errors import EasybackupError
from easybackup.storage.s3 import NO_OBJECT_LOCK_HINT, classify_s3_error, error_code

DELETE_BATCH_OBJECTS = 1000  # S3's DeleteObjects limit


@dataclass(frozen=True)
class Version:
    key: str
    version_id: str
    delete_marker: bool = False


@dataclass(frozen=True)
class Lock:
    """What keeps one version from being deleted: a retention date (`until`, with its mode) or a legal hold."""

    until: datetime | None = None
    mode: str | None = None
    legal_hold: bool = False

    def holds(self, now: datetime) -> bool:
        return self.legal_hold or (self.until is not None and now < self.until)

    def describe(self) -> str:
        """`locked until 2026-05-01T02:00:00Z (governance)`, or `under legal hold`."""
        if self.legal_hold:
            return "under legal hold (until it is lifted)"
        mode = f" ({self.mode.lower()})" if self.mode else ""
        return f"locked until {self.until.astimezone(timezone.utc):%Y-%m-%dT%H:%M:%SZ}{mode}"


def longest(locks: list[Lock]) -> Lock | None:
    """Given the locks of the versions that make one thing, return the one that ends last (a legal hold first)."""
    if not locks:
        return None
    return max(locks, key=lambda lock: (lock.legal_hold, lock.until or datetime.min.replace(tzinfo=timezone.utc)))


def check_object_lock(s3: S3Settings, client, strategy: str) -> None:
    """Given S3 settings with `object_lock`, an S3 client and the strategy's name, return if the bucket has Object
    Lock enabled; raise EasybackupError (one line naming bucket and strategy, with a hint) if not, and the
    classified S3 error if the bucket cannot be asked."""
    try:
        answer = client.get_object_lock_configuration(Bucket=s3.bucket)
        enabled = answer.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled") == "Enabled"
    except ClientError as exc:
        if error_code(exc) != "ObjectLockConfigurationNotFoundError":
            error = classify_s3_error(exc, s3.bucket)
            if error.kind == "permission":
                error = EasybackupError(error.message, error.detail, kind="permission",
                                        hint=f"grant s3:GetBucketObjectLockConfiguration on bucket '{s3.bucket}'")
            raise error from exc
        enabled = False
    except BotoCoreError as exc:
        raise classify_s3_error(exc, s3.bucket) from exc
    if not enabled:
        raise EasybackupError(f"bucket '{s3.bucket}' of strategy '{strategy}' has no Object Lock, but s3.object_lock "
                              "asks for locked backups (every upload would be refused)", kind="storage",
                              hint=NO_OBJECT_LOCK_HINT)


def list_versions(client, bucket: str, prefix: str) -> dict[str, list[Version]]:
    """Given a prefix, return every version and delete marker under it, by key; raise the classified S3 error."""
    found: dict[str, list[Version]] = {}
    try:
        for page in client.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Versions", []):
                found.setdefault(item["Key"], []).append(Version(item["Key"], item["VersionId"]))
            for item in page.get("DeleteMarkers", []):
                found.setdefault(item["Key"], []).append(Version(item["Key"], item["VersionId"], delete_marker=True))
    except (ClientError, BotoCoreError) as exc:
        raise classify_s3_error(exc, bucket) from exc
    return found


def lock_of(client, bucket: str, version: Version) -> Lock | None:
    """Given a version, return its lock (None for a delete marker, a version without one or one gone meanwhile);
    raise the classified S3 error. HEAD shows the lock to a key with s3:GetObjectRetention and
    s3:GetObjectLegalHold; without them a locked version shows none, and its deletion is refused instead."""
    if version.delete_marker:
        return None
    try:
        head = client.head_object(Bucket=bucket, Key=version.key, VersionId=version.version_id)
    except ClientError as exc:
        if error_code(exc) in ("NoSuchKey", "NoSuchVersion", "NotFound", "404"):
            return None
        raise classify_s3_error(exc, bucket) from exc
    except BotoCoreError as exc:
        raise classify_s3_error(exc, bucket) from exc
    lock = Lock(until=head.get("ObjectLockRetainUntilDate"), mode=head.get("ObjectLockMode"),
                legal_hold=head.get("ObjectLockLegalHoldStatus") == "ON")
    return lock if lock.until is not None or lock.legal_hold else None


def delete_versions(client, bucket: str, versions: list[Version]) -> dict[str, str]:
    """Given versions, delete each (DeleteObjects with VersionId, in batches); return {key: reason} for every key
    of which a version was not deleted. Raise nothing: a failed call counts against each of its keys."""
    failed: dict[str, str] = {}
    for start in range(0, len(versions), DELETE_BATCH_OBJECTS):
        batch = versions[start:start + DELETE_BATCH_OBJECTS]
        objects = [{"Key": v.key, "VersionId": v.version_id} for v in batch]
        try:
            response = client.delete_objects(Bucket=bucket, Delete={"Objects": objects, "Quiet": True})
        except (ClientError, BotoCoreError) as exc:
            reason = classify_s3_error(exc, bucket).message
            failed.update({v.key: reason for v in batch})
            continue
        for item in response.get("Errors", []):
            failed.setdefault(item["Key"], f"{item.get('Code')} {item.get('Message', '')}".strip())
    return failed
