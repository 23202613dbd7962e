"""Retention under `s3.object_lock`: a backup whose archive or manifest is still locked is kept (with the date its
lock ends), and what is deleted is deleted version by version, so nothing is left in the bucket once the lock ends
(storage/locks.py says why a plain DELETE would leave it there).

Only the keys retention chose are touched. A key whose current version is a delete marker (someone deleted it
with a plain DELETE: a stolen backup key, say) keeps its older versions: they are the backup that delete could not
take, and an operator restores it by removing the marker.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from easybackup.catalogue.listing import scan_prefix
from easybackup.catalogue.tiers import Decision
from easybackup.config.model import Strategy
from easybackup.storage.layout import manifest_key
from easybackup.storage.locks import Lock, delete_versions, list_versions, lock_of, longest


class VersionView:
    """Given a client, a strategy and now: every version under the strategy's prefix (one listing), and the lock
    that holds each key, read (HEAD) only for the keys asked about."""

    def __init__(self, client, strategy: Strategy, now: datetime):
        self.client, self.bucket, self.now = client, strategy.s3.bucket, now
        self.versions = list_versions(client, self.bucket, scan_prefix(strategy))
        self._locks: dict[str, Lock | None] = {}

    def lock(self, key: str) -> Lock | None:
        """Return the lock that still holds a version of `key` and ends last, or None; raise the S3 error."""
        if key not in self._locks:
            locks = [lock_of(self.client, self.bucket, v) for v in self.versions.get(key, [])]
            self._locks[key] = longest([lock for lock in locks if lock is not None and lock.holds(self.now)])
        return self._locks[key]

    def backup_lock(self, archive: str) -> Lock | None:
        """Return what keeps a backup (its archive and its manifest) locked, or None."""
        return longest([lock for lock in (self.lock(archive), self.lock(manifest_key(archive))) if lock])

    def delete(self, keys: Sequence[str]) -> dict[str, str]:
        """Delete every version of `keys` (delete markers too), in their order; return {key: reason} for each key
        of which a version is left."""
        return delete_versions(self.client, self.bucket, [v for key in keys for v in self.versions.get(key, [])])


def keep_locked(decisions: Sequence[Decision], locks: dict[str, Lock]) -> tuple[Decision, ...]:
    """Given retention's decisions and the locks of the backups it would delete (by archive key), return the
    decisions with each locked one turned into a keep that says until when, and what happens then. Pure."""
    kept = []
    for decision in decisions:
        lock = locks.get(decision.backup.key)
        if decision.keep or lock is None:
            kept.append(decision)
            continue
        why = "; ".join(decision.reasons)
        kept.append(Decision(decision.backup, True, (f"{lock.describe()}; deleted once it ends ({why})",)))
    return tuple(kept)


def locked_backups(view: VersionView, decisions: Sequence[Decision]) -> dict[str, Lock]:
    """Given the versions and retention's decisions, return {archive key: lock} for each backup retention would
    delete that a lock still holds."""
    found = {}
    for decision in decisions:
        if not decision.keep and (lock := view.backup_lock(decision.backup.key)) is not None:
            found[decision.backup.key] = lock
    return found

