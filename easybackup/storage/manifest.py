"""Manifests: the commit marker of a backup. An archive counts as a backup only when its manifest exists.

S3 is the state store: listing, restore, verify, retention and the supervisor's start-up state all read these.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
from dataclasses import dataclass

from botocore.exceptions import BotoCoreError, ClientError

from easybackup.logs import log
from easybackup.storage.layout import MANIFEST_SUFFIX, manifest_key
from easybackup.storage.s3 import classify_s3_error, error_code, put_new_object

# 2 added `engine`; a manifest of format 1 (no engine) is PostgreSQL's, the only engine there was. A reader refuses
# a format it does not know, so an older easybackup skips manifests of format 2 rather than misread them.
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
ENGINE_BEFORE_VERSION_2 = "postgres"
# Reading manifests one by one is latency-bound; a few in parallel keep a listing of thousands quick.
READ_CONCURRENCY = 8


@dataclass(frozen=True)
class Manifest:
    strategy: str
    database: str
    run_id: str
    key: str  # the archive's key
    started_at: str  # UTC, ISO 8601 with Z
    finished_at: str  # UTC, ISO 8601 with Z
    stored_bytes: int
    sha256: str  # of the stored object
    compression: str  # gzip | zstd | none
    format: str  # the engine's dump format: custom | plain for postgres
    dump_bytes: int | None = None  # bytes out of the dump program, before compression
    pg_dump_version: str | None = None  # the dump program's version (the name predates engines)
    server_version: str | None = None
    easybackup_version: str | None = None
    verified: bool = False
    duration_s: float | None = None
    # The codec chain beyond compression (codec_table.CodecChain.manifest_fields): older manifests lack these.
    encryption: str = "none"  # none | age
    recipients: list[str] | None = None  # the age recipients (public keys) the archive was encrypted to
    verify_level: str | None = None  # with verified: "full" (read back whole) or "ciphertext" (sha256 + age header)
    format_version: int = FORMAT_VERSION
    engine: str = ENGINE_BEFORE_VERSION_2  # the engine that wrote the dump (easybackup.engines)

    def to_json(self) -> str:
        """Return the manifest as JSON text, keys sorted."""
        return json.dumps(dataclasses.asdict(self), sort_keys=True, indent=1)

    @classmethod
    def from_json(cls, text: str | bytes) -> Manifest:
        """Given manifest JSON, return the Manifest (unknown fields ignored); raise ValueError if it is not one."""
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"not JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise ValueError("a manifest is a JSON object")
        if "format_version" not in data:
            raise ValueError("manifest lacks format_version")
        version = data["format_version"]
        if version not in READABLE_VERSIONS or isinstance(version, bool):
            raise ValueError(f"unsupported manifest format_version {version!r} (this version reads "
                             f"{', '.join(map(str, READABLE_VERSIONS))})")
        if version >= 2 and "engine" not in data:
            raise ValueError("manifest lacks engine")
        known = {f.name: f for f in dataclasses.fields(cls)}
        missing = [name for name, f in known.items() if _required(f) and name not in data]
        if missing:
            raise ValueError("manifest lacks " + ", ".join(missing))
        values = {name: data[name] for name in known if name in data}
        values.setdefault("engine", ENGINE_BEFORE_VERSION_2)  # format 1 had no engine but PostgreSQL
        _check_types(values)
        return cls(**values)


def _required(field: dataclasses.Field) -> bool:
    return field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING


_TEXT_FIELDS = ("strategy", "database", "run_id", "key", "started_at", "finished_at", "sha256", "compression", "format",
                "engine")


def _check_types(values: dict) -> None:
    for name in _TEXT_FIELDS:
        if not isinstance(values[name], str) or not values[name]:
            raise ValueError(f"manifest field {name} must be a non-empty string")
    for name in ("started_at", "finished_at"):
        if not values[name].endswith("Z"):
            raise ValueError(f"manifest field {name} must be UTC ending in Z, not {values[name]!r}")
    for name in ("stored_bytes", "dump_bytes"):
        value = values.get(name)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
            raise ValueError(f"manifest field {name} must be a byte count")
    if not isinstance(values.get("verified", False), bool):
        raise ValueError("manifest field verified must be true or false")
    if not isinstance(values.get("encryption", "none"), str):
        raise ValueError("manifest field encryption must be a string")
    recipients = values.get("recipients")
    if recipients is not None and not (isinstance(recipients, list) and all(isinstance(r, str) for r in recipients)):
        raise ValueError("manifest field recipients must be a list of strings")


def write_manifest(client, bucket: str, manifest: Manifest, extra_args: dict | None = None) -> str:
    """Given a manifest, store it beside its archive — the commit marker, so write it last; return its key.
    A manifest never replaces another: raise s3.ObjectExists if a different one is there (s3.put_new_object).

    `extra_args` carries server-side encryption settings (see s3.extra_put_args(s3, storage_class=False)).
    """
    key = manifest_key(manifest.key)
    put_new_object(client, bucket, key, manifest.to_json().encode("utf-8"), ContentType="application/json",
                   **(extra_args or {}))
    return key


def read_manifest(client, bucket: str, key: str) -> Manifest:
    """Given a manifest key, return the Manifest; raise the classified S3 error, or ValueError if unparseable."""
    try:
        body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    except (ClientError, BotoCoreError) as exc:
        raise classify_s3_error(exc, bucket) from exc
    try:
        return Manifest.from_json(body)
    except ValueError as exc:
        raise ValueError(f"{key}: {exc}") from exc


def list_manifest_keys(client, bucket: str, prefix: str) -> list[str]:
    """Given a prefix, return every manifest key under it (all pages)."""
    keys = []
    try:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            keys.extend(item["Key"] for item in page.get("Contents", []) if item["Key"].endswith(MANIFEST_SUFFIX))
    except (ClientError, BotoCoreError) as exc:
        raise classify_s3_error(exc, bucket) from exc
    return keys


def list_manifests(client, bucket: str, prefix: str) -> list[Manifest]:
    """Given a prefix, return every readable manifest under it, oldest first.

    A manifest that cannot be parsed, or that vanished since the listing (retention), is skipped with a
    warning; any other S3 error is raised classified, because a partial answer could mislead retention.
    """
    keys = list_manifest_keys(client, bucket, prefix)
    with concurrent.futures.ThreadPoolExecutor(READ_CONCURRENCY, thread_name_prefix="manifest") as pool:
        found = list(pool.map(lambda key: _read_or_skip(client, bucket, key), keys))
    manifests = [manifest for manifest in found if manifest is not None]
    return sorted(manifests, key=lambda m: (m.started_at, m.finished_at, m.key))


def _read_or_skip(client, bucket: str, key: str) -> Manifest | None:
    try:
        body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as exc:
        if error_code(exc) in ("NoSuchKey", "404"):
            log.warning("manifest {} vanished while listing; skipped", key)
            return None
        raise classify_s3_error(exc, bucket) from exc
    except BotoCoreError as exc:
        raise classify_s3_error(exc, bucket) from exc
    try:
        return Manifest.from_json(body)
    except ValueError as exc:
        log.warning("manifest {} cannot be read and is skipped: {}", key, exc)
        return None


def newest_manifest(client, bucket: str, prefix: str) -> Manifest | None:
    """Given a prefix, return the most recent readable manifest under it, or None when there is none.

    The run timestamp is in the key, so only the newest keys are read, not every manifest of the prefix.
    """
    keys = sorted(list_manifest_keys(client, bucket, prefix), key=_run_timestamp_of, reverse=True)
    for key in keys:
        manifest = _read_or_skip(client, bucket, key)
        if manifest is not None:
            return manifest
    return None


def _run_timestamp_of(key: str) -> tuple[str, str]:
    return key.rpartition("/")[2].removesuffix(MANIFEST_SUFFIX), key


def newest_manifest_per_directory(client, bucket: str, prefix: str) -> list[Manifest]:
    """Given a strategy's prefix, return the most recent readable manifest of each database directory under it
    (one listing; only the newest keys of each directory are read)."""
    groups: dict[str, list[str]] = {}
    for key in list_manifest_keys(client, bucket, prefix):
        groups.setdefault(key.rpartition("/")[0], []).append(key)
    newest = []
    for keys in groups.values():
        for key in sorted(keys, key=_run_timestamp_of, reverse=True):
            manifest = _read_or_skip(client, bucket, key)
            if manifest is not None:
                newest.append(manifest)
                break
    return newest
