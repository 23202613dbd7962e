"""Reading backups back in tests: download, decompress and restore with the standard tools."""

from __future__ import annotations

import hashlib
import subprocess

DECOMPRESS = {"gzip": ["gzip", "-dc"], "zstd": ["zstd", "-dc", "-q"], "none": None}


def download(moto, bucket: str, key: str) -> bytes:
    """Return the whole object at `key`."""
    return moto.client().get_object(Bucket=bucket, Key=key)["Body"].read()


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def decompress(data: bytes, compression: str) -> bytes:
    """Given stored bytes and the codec, return the dump as pg_dump wrote it."""
    argv = DECOMPRESS[compression]
    if argv is None:
        return data
    return subprocess.run(argv, input=data, capture_output=True, check=True).stdout


def restore_dump(pg, dump: bytes, fmt: str, database: str) -> None:
    """Given a dump in `fmt` (custom or plain), restore it into the (new, empty) `database`; raise on errors."""
    if fmt == "custom":
        argv = ["pg_restore", "--no-owner", "--exit-on-error", "-d", database]
    else:
        argv = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", database]
    subprocess.run(argv, input=dump, capture_output=True, check=True, env=pg.env())


def archive_keys(moto, bucket: str) -> list[str]:
    """Return the keys in `bucket` that are archives (not manifests, not run records)."""
    return [key for key in moto.list_keys(bucket) if not key.endswith((".manifest.json", ".run.json"))]


def run_record_keys(moto, bucket: str) -> list[str]:
    return [key for key in moto.list_keys(bucket) if key.endswith(".run.json")]


def manifest_keys(moto, bucket: str) -> list[str]:
    return [key for key in moto.list_keys(bucket) if key.endswith(".manifest.json")]
