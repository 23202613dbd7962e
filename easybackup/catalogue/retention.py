"""Retention: which backups to delete (a pure plan) and deleting them (archive and manifest together).

The rules, in order of strength:
- only complete backups of ours are candidates: an object without an easybackup manifest is never touched
  (foreign objects, and incomplete archives, which `easybackup list` shows instead);
- the newest complete backup of each database is always kept, and so are the newest `keep_last`, however old;
- a pinned backup (catalogue.pins) is kept while its pin holds; an expired pin goes with its backup;
- while the newest backups of a database are suspicious (catalogue.anomaly: a size drop), the newest normal one
  is kept;
- of the rest, a backup is deleted when it started more than `retention` seconds before `now`, or, when
  retention is written as tiers, when no tier keeps it (catalogue.tiers, which says why for each backup).

Callers run retention only after a successful run (a failed run never deletes anything).

Run records (storage/runrecord.py) follow the same clock: a record older than `retention` is deleted, except the
newest RUN_RECORDS_KEPT, which a restarted supervisor reads for the last status and the failures in a row.
Drill records (storage/drillrecord.py) too, with one more condition (`old_drill_records`): a record older than
`retention` goes only once a later drill passed or DRILL_RECORDS_KEPT later drills exist — the newest record (what
health shows after a restart) always stays, and a failed drill's stays as the evidence until a drill passes again.

An archive without a manifest is not a backup, and retention never touches it; but one older than the longest run
its strategy allows (`longest_run_s`) belongs to no live run: its worker died between completing the upload and
writing the manifest. `delete_orphans` deletes those (the supervisor at start, and `easybackup prune`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

from botocore.exceptions import BotoCoreError, ClientError

from easybackup.catalogue.anomaly import suspicious
from easybackup.catalogue.listing import (
    StoredObject,
    database_dir,
    incomplete_archives,
    list_objects,
    parse_utc,
    read_backups,
    scan_prefix,
)
from easybackup.catalogue.locked import VersionView, keep_locked, locked_backups
from easybackup.catalogue.pins import pin_reason, read_pins
from easybackup.catalogue.tiers import BackupLike, Decision, decide
from easybackup.config.model import AnomalySettings, RetentionTiers, Strategy
from easybackup.errors import EasybackupError
from easybackup.logs import log
from easybackup.scheduling import format_duration
from easybackup.storage.drillrecord import PASSED, drill_record_status, drill_run_name, list_drill_record_keys
from easybackup.storage.layout import MANIFEST_SUFFIX, manifest_key, pin_key, run_name_of_record, split_run_name
from easybackup.storage.manifest import Manifest
from easybackup.storage.runrecord import list_run_record_keys
from easybackup.storage.s3 import classify_s3_error

DELETE_BATCH_KEYS = 1000  # S3's DeleteObjects limit
RUN_RECORDS_KEPT = 20  # whatever their age: a restart reads up to this many for the failures in a row
DRILL_RECORDS_KEPT = 20  # past retention, failed drills' records stay until a drill passes, but at most this many
# Beyond the timeouts: clock skew between hosts, the manifest's own PUT, a slow store.
ORPHAN_MARGIN_S = 3600.0


@dataclass(frozen=True)
class RetentionResult:
    deleted: tuple[str, ...]  # archive keys whose backup (archive and manifest) was deleted
    kept: int  # complete backups left
    errors: tuple[str, ...]  # `key: reason` for each object S3 did not delete
    records_deleted: int = 0  # run records past retention
    decisions: tuple[Decision, ...] = ()  # every complete backup, kept or not, and why (oldest first)
    drill_records: tuple[tuple[str, str], ...] = ()  # (key, why) of each drill record deleted (dry run: to delete)

    @property
    def ok(self) -> bool:
        return not self.errors


def plan_retention(backups: Sequence[BackupLike], now: datetime, retention_seconds: float,
                   keep_last: int, *, tiers: RetentionTiers | None = None, timezone: str = "UTC") -> tuple[list, list]:
    """Given complete backups, the current time (aware), `retention` and `keep_last` (or `tiers`, in `timezone`),
    return (delete, keep), each oldest first. Pure: reads nothing but its arguments (catalogue.tiers.decide)."""
    decisions = decide(backups, now, retention_seconds=retention_seconds, keep_last=keep_last, tiers=tiers,
                       timezone=timezone)
    return [d.backup for d in decisions if not d.keep], [d.backup for d in decisions if d.keep]


def newest_normal(backups: Sequence[Manifest], settings: AnomalySettings) -> dict[str, str]:
    """Given complete backups and the size-drop settings, return {key: reason} for the newest backup of each
    database that is not suspicious, where newer ones are (catalogue.anomaly): a run of suspicious backups must not
    push the last normal one out. Pure."""
    groups: dict[str, list] = defaultdict(list)
    for backup in backups:
        groups[database_dir(backup.key)].append(backup)
    found = {}
    for members in groups.values():
        ordered = sorted(members, key=lambda b: (parse_utc(b.started_at), b.key))
        flagged = suspicious([(b.key, b.stored_bytes) for b in ordered], settings)
        normal = [index for index, b in enumerate(ordered) if b.key not in flagged]
        if normal and normal[-1] < len(ordered) - 1:
            newer = len(ordered) - 1 - normal[-1]
            found[ordered[normal[-1]].key] = f"the newest normal backup ({newer} newer one(s) suspicious: size drop)"
    return found


def deletion_batches(backups: Sequence[BackupLike], batch_keys: int = DELETE_BATCH_KEYS) -> list[list[str]]:
    """Given backups to delete, return lists of keys of at most `batch_keys`, an archive always in the same batch
    as its manifest."""
    per_batch = max(1, batch_keys // 2)
    batches = []
    for start in range(0, len(backups), per_batch):
        batch = []
        for backup in backups[start:start + per_batch]:
            batch += [backup.key, manifest_key(backup.key)]
        batches.append(batch)
    return batches


def apply_retention(client, strategy: Strategy, now: datetime, emit: Callable[..., None] | None = None, *,
                    dry_run: bool = False, batch_keys: int = DELETE_BATCH_KEYS,
                    explain: bool = False) -> RetentionResult:
    """Given a strategy and the current time (aware), delete its backups that retention no longer keeps; return
    what was deleted and kept, and why (`decisions`). With `emit`, send a `retention` event (deleted, kept counts).
    Each deletion is logged with its reasons; each kept backup too, at info with `explain` (prune), else at debug.
    Old run records and drill records (old_run_records, old_drill_records) go with the backups.

    Raise the classified S3 error if the backups cannot be listed (then nothing was deleted); an object S3
    refuses to delete is reported in `errors`, and the others are still deleted.
    """
    backups = read_backups(client, strategy)
    pins = read_pins(client, strategy)
    pinned, normal = pin_reason(pins, now), newest_normal(backups, strategy.anomaly)
    decisions = tuple(decide(backups, now, retention_seconds=strategy.retention, keep_last=strategy.keep_last,
                             tiers=strategy.tiers, timezone=strategy.timezone,
                             protected=lambda backup: pinned(backup) or normal.get(backup.key)))
    view = VersionView(client, strategy, now) if strategy.s3.object_lock is not None else None
    locked = locked_backups(view, decisions) if view is not None else {}
    # a locked backup is kept, and deleted by version once its lock ends (catalogue.locked)
    decisions = keep_locked(decisions, locked)
    delete = [d.backup for d in decisions if not d.keep]
    bound = log.bind(strategy=strategy.name)
    _log_decisions(bound, decisions, dry_run, explain, set(locked))
    records = old_run_records(list_run_record_keys(client, strategy.s3.bucket, strategy.s3.base_path, strategy.name),
                              now, strategy.retention)
    records = [key for key in records if view is None or view.lock(key) is None]  # a bucket's default lock
    drills = [(key, why) for key, why in _old_drill_records(client, strategy, now)
              if view is None or view.lock(key) is None]
    for key, why in drills:
        bound.info("retention {} drill record {}: {}", "would delete" if dry_run else "deletes", key, why)
    if dry_run:
        return RetentionResult(deleted=tuple(b.key for b in delete), kept=len(backups) - len(delete), errors=(),
                               records_deleted=len(records), decisions=decisions, drill_records=tuple(drills))
    failed: dict[str, str] = {}
    for batch in deletion_batches(delete, batch_keys):
        failed.update(_delete_manifests_then_archives(client, strategy.s3.bucket, batch, bound, view))
    # the expired pins of the backups deleted, with the run records: a pin left behind would pin nothing
    records = records + [pin_key(b.key) for b in delete if pin_key(b.key) in pins and b.key not in failed]
    for start in range(0, len(records), batch_keys):
        failed.update(_delete_batch(client, strategy.s3.bucket, records[start:start + batch_keys], bound, view))
    for start in range(0, len(drills), batch_keys):
        failed.update(_delete_batch(client, strategy.s3.bucket, [key for key, _ in drills[start:start + batch_keys]],
                                    bound, view))
    errors = [f"{key}: {reason}" for key, reason in failed.items()]
    deleted = tuple(b.key for b in delete if b.key not in failed and manifest_key(b.key) not in failed)
    kept = len(backups) - len(deleted)
    if emit is not None:  # the caller logs the event (a worker's supervisor): one line, not two
        emit("retention", deleted=len(deleted), kept=kept, **({"not_deleted": len(errors)} if errors else {}))
    else:
        bound.info("retention: deleted {} backup(s), kept {}{}", len(deleted), kept,
                   f", {len(errors)} object(s) not deleted" if errors else "")
    return RetentionResult(deleted=deleted, kept=kept, errors=tuple(errors),
                           records_deleted=len([key for key in records if key not in failed and key not in pins]),
                           decisions=decisions, drill_records=tuple(item for item in drills if item[0] not in failed))


def _log_decisions(bound, decisions: Sequence[Decision], dry_run: bool, explain: bool,
                   locked: set[str] = frozenset()) -> None:
    """Log why each backup goes (info) and why each stays (info when explaining or only a lock keeps it, else
    debug)."""
    for decision in decisions:
        reasons = "; ".join(decision.reasons)
        if decision.keep:
            loud = explain or decision.backup.key in locked
            (bound.info if loud else bound.debug)("retention keeps {}: {}", decision.backup.key, reasons)
        else:
            verb = "would delete" if dry_run else "deletes"
            bound.info("retention {} {} and its manifest: {}", verb, decision.backup.key, reasons)


def old_run_records(keys: Sequence[str], now: datetime, retention_seconds: float,
                    keep: int = RUN_RECORDS_KEPT) -> list[str]:
    """Given run record keys (oldest first), now and `retention`, return those to delete: older than retention
    (by the run timestamp in the key) and not among the newest `keep`. Pure."""
    candidates = list(keys)[:max(len(keys) - keep, 0)]
    old = []
    for key in candidates:
        if _age_s(run_name_of_record(key), now) > retention_seconds:
            old.append(key)
    return old


def old_drill_records(keys: Sequence[str], now: datetime, retention_seconds: float,
                      status_of: Callable[[str], str | None], keep: int = DRILL_RECORDS_KEPT) -> list[tuple[str, str]]:
    """Given drill record keys, now, `retention` and `status_of(key)` (a record's status; None: unreadable),
    return (key, why) of each to delete, oldest first: older than retention (by the run timestamp in its key)
    AND either a later drill passed or `keep` later drill records exist. So the newest record always stays, and a
    failed drill's stays until a drill passes again (at most `keep` of them past retention). Keys that are no
    drill records are never returned.

    Pure, and lazy: `status_of` is asked only about the newest `keep` records, newest first, only down to the
    first that passed, and only when a record past retention depends on the answer (none: no call at all)."""
    ordered = sorted((name, key) for key in keys if (name := drill_run_name(key)) is not None)
    newest = len(ordered) - 1
    old = [index for index, (name, _) in enumerate(ordered[:-1]) if _age_s(name, now) > retention_seconds]
    if not old:
        return []
    undecided = [index for index in old if newest - index < keep]  # fewer than `keep` later records
    passed = None
    if undecided:
        for index in range(newest, undecided[0], -1):
            if status_of(ordered[index][1]) == PASSED:
                passed = index
                break
    limit = format_duration(retention_seconds)
    found = []
    for index in old:
        name, key = ordered[index]
        if passed is not None and index < passed:
            found.append((key, f"older than retention ({limit}) and a later drill passed ({ordered[passed][0]})"))
        elif newest - index >= keep:
            found.append((key, f"older than retention ({limit}) and {keep} later drill records exist"))
    return found


def _age_s(run: str, now: datetime) -> float:
    """Given a run name, return its age in seconds by the timestamp in it; -inf (never old) for a timestamp that is
    no date (`2024-02-30T…`, made by hand): one odd key must not stop retention, and it is not ours to delete."""
    timestamp, _ = split_run_name(run)
    try:
        started = datetime.strptime(timestamp, "%Y-%m-%dT%H%M%SZ").replace(tzinfo=timezone.utc)
    except ValueError:
        return float("-inf")
    return (now - started).total_seconds()


def _old_drill_records(client, strategy: Strategy, now: datetime) -> list[tuple[str, str]]:
    """The strategy's drill records to delete (old_drill_records), their statuses read from S3 as needed (one
    that cannot be read counts as not passed: its elders stay). Raise the classified S3 error if the records
    cannot be listed."""
    s3 = strategy.s3

    def status_of(key: str) -> str | None:
        try:
            return drill_record_status(client, s3.bucket, key)
        except EasybackupError as error:
            log.bind(strategy=strategy.name).warning("could not read drill record {}: {}", key, error)
            return None

    keys = list_drill_record_keys(client, s3.bucket, s3.base_path, strategy.name)
    return old_drill_records(keys, now, strategy.retention, status_of)


def longest_run_s(strategy: Strategy) -> float:
    """Given a strategy, return how long after its archive appeared a live run may still write the manifest:
    every attempt at the full `timeout.backup` (twice that with `verify.after_backup`, which reads the archive
    back outside the dump's timeout), the longest waits between attempts, and ORPHAN_MARGIN_S. An attempt writes
    its manifest within the attempt that made the archive, so this over-counts on purpose."""
    attempts = max(1, strategy.retry.max_attempts)
    per_attempt = strategy.timeout.backup * (2 if strategy.verify.after_backup else 1)
    return attempts * per_attempt + (attempts - 1) * strategy.retry.max_delay + ORPHAN_MARGIN_S


def orphans(objects: Sequence[StoredObject], strategy: Strategy, now: datetime) -> list[StoredObject]:
    """Given a listing of the strategy's prefix and now, return its archives without a manifest that are older
    than `longest_run_s`: no live run can still commit them. Pure."""
    limit = longest_run_s(strategy)
    return [item for item in incomplete_archives(list(objects), strategy)
            if (now - item.last_modified).total_seconds() > limit]


def delete_orphans(client, strategy: Strategy, now: datetime, *, dry_run: bool = False) -> list[StoredObject]:
    """Given a strategy and now, delete its orphaned archives (see `orphans`), warning for each; return those
    deleted (or, with `dry_run`, those that would be). Raise the classified S3 error if the prefix cannot be
    listed; an archive S3 refuses to delete is warned about and left out of the answer."""
    found = orphans(list_objects(client, strategy.s3.bucket, scan_prefix(strategy)), strategy, now)
    bound = log.bind(strategy=strategy.name)
    limit = format_duration(longest_run_s(strategy))
    view = VersionView(client, strategy, now) if strategy.s3.object_lock is not None and found else None
    for item in [item for item in found if view is not None and view.lock(item.key) is not None]:
        bound.info(f"keeps {item.key}, an archive without a manifest: {view.lock(item.key).describe()}; deleted "
                   "once it ends")
        found.remove(item)
    for item in found:
        age = format_duration((now - item.last_modified).total_seconds())
        bound.warning(f"{'would delete' if dry_run else 'deleting'} {item.key}: an archive without a manifest, "
                      f"{age} old, older than the longest run the strategy allows ({limit}); its run died "
                      "before committing it")
    if dry_run or not found:
        return found
    keys = [item.key for item in found]
    failed: dict[str, str] = {}
    for start in range(0, len(keys), DELETE_BATCH_KEYS):
        failed.update(_delete_batch(client, strategy.s3.bucket, keys[start:start + DELETE_BATCH_KEYS], bound, view))
    return [item for item in found if item.key not in failed]


def _delete_manifests_then_archives(client, bucket: str, batch: list[str], bound,
                                    view: VersionView | None = None) -> dict[str, str]:
    """Given a batch of archive and manifest keys, delete the manifests first, then the archives whose manifest is
    gone; return {key: reason} for each key not deleted. A half-done deletion thus leaves at worst an archive
    without a manifest (flagged as incomplete), never a manifest that points at nothing."""
    manifests = [key for key in batch if key.endswith(MANIFEST_SUFFIX)]
    failed = _delete_batch(client, bucket, manifests, bound, view)
    archives = [key for key in batch if not key.endswith(MANIFEST_SUFFIX) and manifest_key(key) not in failed]
    if archives:
        failed.update(_delete_batch(client, bucket, archives, bound, view))
    return failed


def _delete_batch(client, bucket: str, keys: list[str], bound, view: VersionView | None = None) -> dict[str, str]:
    """Delete one batch with DeleteObjects (with `view`, every version of each key); log every key; return
    {key: reason} for each one not deleted."""
    if view is not None:
        failed = view.delete(keys)
    else:
        try:
            response = client.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": key} for key in keys],
                                                                     "Quiet": True})
        except (ClientError, BotoCoreError) as exc:
            error = classify_s3_error(exc, bucket)
            bound.warning("retention: could not delete {} object(s): {}", len(keys), error)
            return {key: error.message for key in keys}
        failed = {item["Key"]: f"{item.get('Code')} {item.get('Message', '')}".strip()
                  for item in response.get("Errors", [])}
    for key in keys:
        if key in failed:
            bound.warning("retention: could not delete {}: {}", key, failed[key])
        else:
            bound.info("retention: deleted {}", key)
    return failed
