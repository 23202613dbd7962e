"""Manifests are the commit marker: they round-trip through S3 and list completely, past one page of keys."""

import concurrent.futures
import dataclasses
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from loguru import logger

from easybackup.config.model import S3Settings
from easybackup.errors import EasybackupError
from easybackup.storage.layout import archive_key, database_prefix, manifest_key, strategy_prefix
from easybackup.storage.manifest import (
    Manifest,
    list_manifests,
    newest_manifest,
    read_manifest,
    write_manifest,
)
from easybackup.storage.s3 import make_client
from tests.harness.moto_server import ACCESS_KEY, SECRET_KEY

EPOCH = datetime(2024, 1, 1, tzinfo=timezone.utc)


def client_for(moto, bucket):
    return make_client(S3Settings(bucket=bucket, endpoint_url=moto.endpoint, access_key=ACCESS_KEY,
                                  secret_key=SECRET_KEY, force_path_style=True))


def manifest(number: int = 0, database: str = "shop", strategy: str = "nightly") -> Manifest:
    started = EPOCH + timedelta(hours=number)
    timestamp = started.strftime("%Y-%m-%dT%H%M%SZ")
    return Manifest(
        strategy=strategy, database=database, run_id=f"run{number:08d}",
        key=archive_key("base", strategy, database, timestamp, "custom", "zstd"),
        started_at=started.strftime("%Y-%m-%dT%H:%M:%SZ"),
        finished_at=(started + timedelta(seconds=42)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        dump_bytes=10_000 + number, stored_bytes=3_000 + number, sha256="ab" * 32, compression="zstd",
        format="custom", pg_dump_version="15.6", server_version="15.6", easybackup_version="0.1.0",
        verified=True, duration_s=42.5)


def test_a_manifest_round_trips_through_json():
    original = manifest(7)
    assert Manifest.from_json(original.to_json()) == original
    assert json.loads(original.to_json())["format_version"] == 2
    assert json.loads(original.to_json())["engine"] == "postgres"


def test_unknown_fields_are_ignored():
    data = json.loads(manifest().to_json()) | {"written_by_a_newer_minor": True}
    assert Manifest.from_json(json.dumps(data)) == manifest()


@pytest.mark.parametrize("missing", ["key", "sha256", "stored_bytes", "finished_at", "format_version"])
def test_a_manifest_without_a_required_field_is_refused(missing):
    data = json.loads(manifest().to_json())
    del data[missing]
    with pytest.raises(ValueError, match=missing):
        Manifest.from_json(json.dumps(data))


@pytest.mark.parametrize("change", [{"format_version": 3}, {"format_version": True}, {"engine": ""},
                                    {"stored_bytes": "12"}, {"started_at": "2024-01-01T00:00"},
                                    {"verified": "yes"}, {"database": ""}])
def test_a_manifest_with_wrong_values_is_refused(change):
    data = json.loads(manifest().to_json()) | change
    with pytest.raises(ValueError):
        Manifest.from_json(json.dumps(data))


@pytest.mark.parametrize("text", ["", "[]", "{not json", b"\xff\xfe"])
def test_text_that_is_not_a_manifest_is_refused(text):
    with pytest.raises(ValueError):
        Manifest.from_json(text)


def test_a_manifest_written_to_s3_reads_back_equal_beside_its_archive(moto, bucket):
    client = client_for(moto, bucket)
    original = manifest(3, database="a/b ..\"naïve\"")
    key = write_manifest(client, bucket, original)
    assert key == manifest_key(original.key)
    assert key.startswith(database_prefix("base", "nightly", "a/b ..\"naïve\""))
    assert read_manifest(client, bucket, key) == original
    assert client.head_object(Bucket=bucket, Key=key)["ContentType"] == "application/json"


def test_reading_a_missing_manifest_is_a_not_found_error(moto, bucket):
    with pytest.raises(EasybackupError) as failure:
        read_manifest(client_for(moto, bucket), bucket, "base/nightly/shop/2024-01-01T000000Z.manifest.json")
    assert failure.value.kind == "not_found"


def test_list_manifests_reads_past_one_page_of_keys(moto, bucket):
    client = client_for(moto, bucket)
    written = [manifest(number) for number in range(1100)]
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda m: write_manifest(client, bucket, m), written))
    # Archives beside the manifests are listed too but are not manifests.
    client.put_object(Bucket=bucket, Key=written[0].key, Body=b"archive")
    first_page = client.list_objects_v2(Bucket=bucket, Prefix=strategy_prefix("base", "nightly"))
    assert first_page["IsTruncated"] and first_page["KeyCount"] == 1000  # so a second page must be read
    found = list_manifests(client, bucket, strategy_prefix("base", "nightly"))
    assert found == written  # all 1,100, oldest first
    assert newest_manifest(client, bucket, strategy_prefix("base", "nightly")) == written[-1]


def test_a_database_prefix_lists_only_that_database(moto, bucket):
    client = client_for(moto, bucket)
    for database in ("shop", "shop2", "_globals"):
        write_manifest(client, bucket, manifest(1, database=database))
    found = list_manifests(client, bucket, database_prefix("base", "nightly", "shop"))
    assert [m.database for m in found] == ["shop"]


def test_an_unreadable_manifest_is_skipped_with_a_warning(moto, bucket):
    client = client_for(moto, bucket)
    good = [manifest(1), manifest(2)]
    for item in good:
        write_manifest(client, bucket, item)
    broken_key = manifest_key(manifest(3).key)
    client.put_object(Bucket=bucket, Key=broken_key, Body=b"{truncated")
    newer_version = manifest_key(manifest(4).key)
    client.put_object(Bucket=bucket, Key=newer_version,
                      Body=json.dumps(dataclasses.asdict(manifest(4)) | {"format_version": 99}).encode())
    warnings = []
    sink = logger.add(lambda message: warnings.append(str(message)), level="WARNING")
    try:
        found = list_manifests(client, bucket, strategy_prefix("base", "nightly"))
        newest = newest_manifest(client, bucket, strategy_prefix("base", "nightly"))
    finally:
        logger.remove(sink)
    assert found == good
    assert newest == good[-1]  # the two newer keys cannot be read, so the newest readable one wins
    assert any(broken_key in line for line in warnings)
    assert any(newer_version in line for line in warnings)


def test_an_empty_prefix_has_no_newest_manifest(moto, bucket):
    client = client_for(moto, bucket)
    assert list_manifests(client, bucket, "base/") == []
    assert newest_manifest(client, bucket, "base/") is None


def test_listing_a_missing_bucket_is_a_storage_error(moto):
    with pytest.raises(EasybackupError) as failure:
        list_manifests(client_for(moto, "no-such-bucket-here"), "no-such-bucket-here", "base/")
    assert (failure.value.kind, failure.value.transient) == ("storage", False)


OLD_MANIFEST = Path(__file__).resolve().parents[1] / "fixtures" / "manifest_v1_postgres.json"


def test_a_manifest_of_format_1_written_before_engines_reads_as_postgres():
    text = OLD_MANIFEST.read_text()
    assert "engine" not in json.loads(text)  # as the code before format 2 wrote it
    old = Manifest.from_json(text)
    assert (old.format_version, old.engine, old.format, old.compression) == (1, "postgres", "custom", "gzip")
    assert (old.pg_dump_version, old.stored_bytes, old.dump_bytes) == ("15.20", 532, 1236)
    assert old.key.endswith(".dump.gz") and old.sha256 == json.loads(text)["sha256"]


def test_a_manifest_of_format_1_in_s3_is_listed_beside_new_ones(moto, bucket):
    client = client_for(moto, bucket)
    old = Manifest.from_json(OLD_MANIFEST.read_text())
    client.put_object(Bucket=bucket, Key=manifest_key(old.key), Body=OLD_MANIFEST.read_bytes())
    new = dataclasses.replace(manifest(1, database="shop", strategy="main"), key=old.key.replace("/shop/", "/cart/"))
    write_manifest(client, bucket, new)
    assert list_manifests(client, bucket, strategy_prefix("backups", "main")) == sorted(
        [old, new], key=lambda m: (m.started_at, m.finished_at, m.key))


def test_a_manifest_of_format_2_without_its_engine_is_refused():
    data = json.loads(manifest().to_json())
    del data["engine"]
    with pytest.raises(ValueError, match="manifest lacks engine"):
        Manifest.from_json(json.dumps(data))
