"""The catalogue of one strategy, read from S3: complete backups (manifest present) and incomplete archives.

S3 is the state store (DESIGN.md, Objects in S3): a backup exists only when its manifest exists. An archive of
ours without a manifest is an upload that failed between completing and committing (or one in the middle of
`verify.after_backup`): listed apart as incomplete, never offered for restore, never deleted by retention.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from botocore.exceptions import BotoCoreError, ClientError

from easybackup.config.model import Strategy
from easybackup.errors import EasybackupError, UsageError
from easybackup.storage.drillrecord import is_drill_record
from easybackup.storage.layout import (
    GLOBALS,
    MANIFEST_SUFFIX,
    PIN_SUFFIX,
    database_prefix,
    globals_prefix,
    manifest_key,
    normalize_base_path,
    parse_archive_key,
    run_name_of_record,
    strategy_prefix,
    unquote_segment,
)
from easybackup.storage.manifest import Manifest, list_manifests
from easybackup.storage.s3 import classify_s3_error

LATEST = "latest"


@dataclass(frozen=True)
class StoredObject:
    key: str
    size: int
    last_modified: datetime


@dataclass(frozen=True)
class Catalogue:
    """One strategy's backups (oldest first), its archives without a manifest, and manifests without an archive."""

    backups: tuple[Manifest, ...]
    incomplete: tuple[StoredObject, ...]
    missing_archives: tuple[str, ...]  # archive keys named by a manifest but absent from S3
    objects: tuple[StoredObject, ...] = ()  # everything under the scanned prefix (`list --all`)


def list_objects(client, bucket: str, prefix: str) -> list[StoredObject]:
    """Given a prefix, return every object under it (all pages); raise the classified S3 error."""
    found = []
    try:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            found.extend(StoredObject(item["Key"], item["Size"], item["LastModified"])
                         for item in page.get("Contents", []))
    except (ClientError, BotoCoreError) as exc:
        raise classify_s3_error(exc, bucket) from exc
    return found


def belongs_to(key: str, strategy: Strategy) -> bool:
    """Given an archive key, return whether it is one of ours for this strategy (not a foreign object, and not a
    strategy nested under a longer base path that happens to share the prefix)."""
    parsed = parse_archive_key(key)
    return (parsed is not None and parsed.strategy == strategy.name
            and parsed.base_path == normalize_base_path(strategy.s3.base_path))


# Selects the roles-and-tablespaces dumps (`_globals/`) wherever a database name is expected. Not the text
# "_globals": a database may be called that (its archives live under `%5Fglobals/`), but no database name can
# hold a NUL byte.
GLOBALS_DUMP = "\x00globals"


def scan_prefix(strategy: Strategy, database: str | None = None) -> str:
    """Given a strategy and optionally a database (GLOBALS_DUMP for the globals dumps), return the prefix to scan."""
    if database is None:
        return strategy_prefix(strategy.s3.base_path, strategy.name)
    if database == GLOBALS_DUMP:
        return globals_prefix(strategy.s3.base_path, strategy.name)
    return database_prefix(strategy.s3.base_path, strategy.name, database)


def read_backups(client, strategy: Strategy, database: str | None = None) -> list[Manifest]:
    """Given a strategy (and optionally a database), return its complete backups, oldest first."""
    manifests = list_manifests(client, strategy.s3.bucket, scan_prefix(strategy, database))
    return [m for m in manifests if belongs_to(m.key, strategy)]


def read_catalogue(client, strategy: Strategy, database: str | None = None) -> Catalogue:
    """Given a strategy (and optionally a database), return its catalogue; raise the classified S3 error."""
    objects = list_objects(client, strategy.s3.bucket, scan_prefix(strategy, database))
    backups = read_backups(client, strategy, database)
    present = {item.key for item in objects}
    missing = tuple(m.key for m in backups if m.key not in present)
    return Catalogue(backups=tuple(backups), incomplete=tuple(incomplete_archives(objects, strategy)),
                     missing_archives=missing, objects=tuple(objects))


def other_objects(catalogue: Catalogue, strategy: Strategy, now: datetime,
                  longest_run_s: float) -> list[tuple[str, StoredObject]]:
    """Given a catalogue, now and the longest run the strategy allows, return every object that is not a listed
    backup's archive or manifest, each with what it is: `orphaned` (no manifest, older than the longest run: the
    supervisor at start and `prune` delete it), `incomplete` (no manifest yet: a run may still commit it), `run
    record`, `pin`, `manifest` (of a backup that is not listed: unreadable, or another strategy's), or `foreign`."""
    listed = {key for m in catalogue.backups for key in (m.key, manifest_key(m.key))}
    incomplete = {item.key for item in catalogue.incomplete}
    found = []
    for item in catalogue.objects:
        if item.key in listed:
            continue
        if item.key in incomplete:
            old = (now - item.last_modified).total_seconds() > longest_run_s
            kind = "orphaned" if old else "incomplete"
        elif run_name_of_record(item.key) is not None:
            kind = "run record"
        elif is_drill_record(item.key):
            kind = "drill record"
        elif item.key.endswith(PIN_SUFFIX):
            kind = "pin"
        elif item.key.endswith(MANIFEST_SUFFIX):
            kind = "manifest"
        else:
            kind = "foreign"
        found.append((kind, item))
    return found


def incomplete_archives(objects: list[StoredObject], strategy: Strategy) -> list[StoredObject]:
    """Given a listing, return the strategy's archives that have no manifest beside them (not backups)."""
    present = {item.key for item in objects}
    return [item for item in objects if belongs_to(item.key, strategy) and manifest_key(item.key) not in present]


def run_timestamp_of(manifest: Manifest) -> str:
    """Given a manifest, return its run timestamp (from the key: `2024-05-01T020000Z`)."""
    parsed = parse_archive_key(manifest.key)
    return parsed.run_timestamp if parsed else ""


def run_name_of(manifest: Manifest) -> str:
    """Given a manifest, return its run name (from the key: `2024-05-01T020000Z-3f2a9c1b7d4e`, or the bare run
    timestamp of an older version's key)."""
    parsed = parse_archive_key(manifest.key)
    return parsed.run_name if parsed else ""


def database_dir(key: str) -> str:
    """Given an archive key, return its directory: the group retention and `latest` work within."""
    return key.rpartition("/")[0]


def select_backup(backups: list[Manifest], choice: str | None) -> Manifest:
    """Given one database's backups and `latest`, an archive or manifest key, or a run timestamp, return that
    backup; raise EasybackupError (kind not_found) if there is none."""
    choice = (choice or LATEST).strip()
    if choice == LATEST:
        if not backups:
            raise EasybackupError("no complete backup found", "no manifest under this strategy and database",
                                  "run `easybackup list` to see what exists", kind="not_found")
        return max(backups, key=lambda m: (run_timestamp_of(m), m.started_at, m.key))
    wanted = _as_timestamp(choice)
    # Newest first: two runs in one second (a `once` beside the supervisor) share a timestamp, and then the
    # later one is `latest` for that second too; `<timestamp>-<run id>` names exactly one.
    for manifest in sorted(backups, key=lambda m: (m.started_at, m.key), reverse=True):
        if (choice in (manifest.key, manifest_key(manifest.key), run_name_of(manifest))
                or (wanted and run_timestamp_of(manifest) == wanted)):
            return manifest
    if database_of_key(choice) is not None:
        raise EasybackupError(f"no manifest for {choice}: it is not a complete backup",
                              "a backup exists only when its manifest exists (an archive without one is incomplete)",
                              "run `easybackup list` for the complete backups", kind="not_found")
    raise EasybackupError(f"no complete backup matches '{choice}'", "a backup exists only when its manifest exists",
                          "run `easybackup list` for the keys and timestamps", kind="not_found")


def _as_timestamp(text: str) -> str | None:
    """Given `2024-05-01T020000Z` or `2024-05-01T02:00:00Z`, return the run timestamp form, else None."""
    compact = text.replace(":", "")
    if len(compact) == 18 and compact[10] == "T" and compact.endswith("Z"):
        return compact
    return None


def database_of_key(text: str) -> str | None:
    """Given --backup text, return the database its archive or manifest key names (GLOBALS_DUMP for the globals
    dumps), or None when it is not a key."""
    if "/" not in text:
        return None
    segment = text.split("/")[-2]
    if segment == GLOBALS:
        return GLOBALS_DUMP
    try:
        return unquote_segment(segment) or None
    except UnicodeDecodeError:
        return None


def pick_database(strategy: Strategy, database: str | None) -> str:
    """Given a strategy and --database (or None), return the database name; raise UsageError if it is ambiguous."""
    names = [target.name for target in strategy.databases]
    if database is not None:
        return database
    if len(names) == 1:
        return names[0]
    raise UsageError(f"strategy '{strategy.name}' has several databases: say which with --database",
                     detail="databases: " + ", ".join(names) if names else "databases are discovered at run time")


def parse_utc(text: str) -> datetime:
    """Given a manifest time (`2024-05-01T02:00:00Z`), return an aware UTC datetime; raise ValueError."""
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
