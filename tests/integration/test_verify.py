"""`verify` and `verify.after_backup` read the whole archive back: a flipped byte, a truncated archive (even with a
matching manifest) and a missing manifest all fail, naming the reason."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from botocore.exceptions import FlexibleChecksumError

from tests.harness.configs import REPO, run_cli, write_config
from easybackup.storage.layout import manifest_key as manifest_key_of
from tests.harness.restore import archive_keys, download, manifest_keys, sha256_of

SOURCE = "verify_src"


@pytest.fixture(scope="module")
def source_db(pg) -> str:
    pg.create_database(SOURCE)
    pg.psql_file(str(REPO / "examples" / "demo-data.sql"), SOURCE)
    pg.psql("CREATE TABLE events AS SELECT g AS id, md5(g::text) AS payload FROM generate_series(1, 20000) g",
            SOURCE)
    return SOURCE


@pytest.fixture(scope="module")
def pristine(pg, moto, source_db, tmp_path_factory):
    """A factory: pristine(fmt, compression) returns (bucket, archive key) of a backup made once per module by
    `once`; tests copy it into their own bucket before damaging it."""
    made: dict[tuple[str, str], tuple[str, str]] = {}

    def get(fmt: str, compression: str) -> tuple[str, str]:
        if (fmt, compression) not in made:
            bucket = moto.create_bucket(f"verify-pristine-{fmt}-{compression}")
            _, result = back_up(pg, moto.endpoint, bucket, tmp_path_factory.mktemp("pristine"), fmt, compression)
            assert result.returncode == 0, result.stdout + result.stderr
            [key] = archive_keys(moto, bucket)
            made[(fmt, compression)] = bucket, key
        return made[(fmt, compression)]

    return get


def copied_backup(moto, pristine, bucket: str, tmp_path: Path, fmt: str = "custom",
                  compression: str = "gzip") -> tuple[Path, str]:
    """Copy a pristine backup (archive and manifest) into `bucket`; return a config for it and the archive key."""
    source_bucket, key = pristine(fmt, compression)
    client = moto.client()
    for name in (key, manifest_key_of(key)):
        # Not copy_object: moto's copy keeps a multipart object's composite checksum but drops its type, and
        # botocore then checks it as a whole-object checksum on download.
        body = client.get_object(Bucket=source_bucket, Key=name)["Body"].read()
        client.put_object(Bucket=bucket, Key=name, Body=body)
    config = write_config(tmp_path, bucket=bucket, endpoint=moto.endpoint,
                          strategies=[{"name": "main", "database_url": "postgres://u:p@127.0.0.1:1/" + SOURCE}])
    return config, key


def cli(*args: str) -> subprocess.CompletedProcess:
    return run_cli(*args, stdin=subprocess.DEVNULL)


def back_up(pg, endpoint: str, bucket: str, tmp_path: Path, fmt: str = "custom", compression: str = "gzip",
            after_backup: bool = False) -> tuple[Path, subprocess.CompletedProcess]:
    config = write_config(tmp_path, bucket=bucket, endpoint=endpoint, s3={"compression": compression},
                          pg_dump={"format": fmt}, verify={"after_backup": after_backup},
                          strategies=[{"name": "main", "database_url": pg.url(SOURCE)}])
    return config, cli("once", "-c", str(config))


def replace_archive(moto, bucket: str, key: str, data: bytes, *, update_manifest: bool) -> None:
    """Overwrite the archive in S3; with `update_manifest`, make the manifest agree with the new bytes."""
    client = moto.client()
    client.put_object(Bucket=bucket, Key=key, Body=data)
    if update_manifest:
        [manifest_key] = manifest_keys(moto, bucket)
        manifest = json.loads(download(moto, bucket, manifest_key))
        manifest.update(stored_bytes=len(data), sha256=sha256_of(data))
        client.put_object(Bucket=bucket, Key=manifest_key, Body=json.dumps(manifest).encode())


def test_verify_after_backup_marks_the_manifest_verified_and_verify_passes(pg, moto, bucket, tmp_path, source_db):
    config, result = back_up(pg, moto.endpoint, bucket, tmp_path, after_backup=True)
    assert result.returncode == 0, result.stdout + result.stderr
    [manifest_key] = manifest_keys(moto, bucket)
    assert json.loads(download(moto, bucket, manifest_key))["verified"] is True
    verified = cli("verify", "-c", str(config), "--strategy", "main")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    [key] = archive_keys(moto, bucket)
    assert f"OK      {key}" in verified.stdout


def test_verify_passes_where_the_store_reports_a_composite_checksum_as_a_whole_object_one(pg, moto, bucket,
                                                                                          tmp_path, source_db):
    config, result = back_up(pg, moto.endpoint, bucket, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    [key] = archive_keys(moto, bucket)
    client = moto.client()
    # moto's copy keeps the archive's per-part CRC32 but drops its type: a store that reports it as a whole-object
    # checksum, which botocore's own check of the download rejects.
    client.copy_object(Bucket=bucket, Key=key, CopySource={"Bucket": bucket, "Key": key}, MetadataDirective="REPLACE")
    with pytest.raises(FlexibleChecksumError):
        client.get_object(Bucket=bucket, Key=key)["Body"].read()
    verified = cli("verify", "-c", str(config), "--strategy", "main")
    assert verified.returncode == 0, verified.stdout + verified.stderr  # our sha256 check is the one that counts


@pytest.mark.parametrize("fmt", ["custom", "plain"])
def test_verify_fails_on_one_flipped_byte_naming_the_sha256(moto, bucket, tmp_path, pristine, fmt):
    config, key = copied_backup(moto, pristine, bucket, tmp_path, fmt)
    data = bytearray(download(moto, bucket, key))
    data[len(data) // 2] ^= 0x01
    replace_archive(moto, bucket, key, bytes(data), update_manifest=False)
    failed = cli("verify", "-c", str(config), "--strategy", "main", "--backup", key)
    assert failed.returncode == 1
    assert f"FAILED  {key}: [verification] sha256 mismatch" in failed.stdout


def test_verify_fails_on_a_truncated_object_naming_the_size(moto, bucket, tmp_path, pristine):
    config, key = copied_backup(moto, pristine, bucket, tmp_path)
    replace_archive(moto, bucket, key, download(moto, bucket, key)[:-100], update_manifest=False)
    failed = cli("verify", "-c", str(config))
    assert failed.returncode == 1 and "size mismatch" in failed.stdout


def test_a_truncated_custom_archive_with_a_matching_manifest_fails_where_pg_restore_list_passes(moto, bucket,
                                                                                             tmp_path, pristine):
    config, key = copied_backup(moto, pristine, bucket, tmp_path, "custom", "none")
    data = download(moto, bucket, key)
    truncated = data[: int(len(data) * 0.7)]
    listing = subprocess.run(["pg_restore", "--list"], input=truncated, capture_output=True)
    assert listing.returncode == 0, "pg_restore --list reads only the table of contents and passes it"
    replace_archive(moto, bucket, key, truncated, update_manifest=True)
    failed = cli("verify", "-c", str(config), "--strategy", "main")
    assert failed.returncode == 1
    assert f"FAILED  {key}: [verification] the archive {key} does not read back whole: pg_restore exited with " \
           "code 1" in failed.stdout
    assert "could not read from input file" in failed.stdout + failed.stderr


def test_a_truncated_plain_dump_with_a_matching_manifest_fails_as_incomplete(moto, bucket, tmp_path, pristine):
    config, key = copied_backup(moto, pristine, bucket, tmp_path, "plain", "zstd")
    dump = subprocess.run(["zstd", "-dc"], input=download(moto, bucket, key), capture_output=True, check=True).stdout
    cut = subprocess.run(["zstd", "-c", "-q"], input=dump[: len(dump) - 300], capture_output=True, check=True).stdout
    replace_archive(moto, bucket, key, cut, update_manifest=True)
    failed = cli("verify", "-c", str(config))
    assert failed.returncode == 1
    assert "is incomplete" in failed.stdout and "PostgreSQL database dump complete" in failed.stdout


def test_verify_of_an_archive_whose_manifest_is_missing_fails_naming_the_manifest(moto, bucket, tmp_path, pristine):
    config, key = copied_backup(moto, pristine, bucket, tmp_path)
    [manifest_key] = manifest_keys(moto, bucket)
    moto.client().delete_object(Bucket=bucket, Key=manifest_key)
    by_key = cli("verify", "-c", str(config), "--backup", key)
    assert by_key.returncode == 1 and f"no manifest for {key}: it is not a complete backup" in by_key.stderr
    latest = cli("verify", "-c", str(config))
    assert latest.returncode == 1 and "no complete backup found" in latest.stderr


def test_verify_after_backup_catches_an_archive_corrupted_on_read_back_and_leaves_nothing(pg, moto, bucket,
                                                                                         tmp_path, source_db,
                                                                                         fault_proxy):
    proxy = fault_proxy("127.0.0.1", moto.port, "http")
    proxy.corrupt_next_get(5000)  # the worker's only GET is the read-back
    config, result = back_up(pg, proxy.url, bucket, tmp_path, after_backup=True)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "[verification]" in result.stdout and "sha256 mismatch" in result.stdout
    assert archive_keys(moto, bucket) == [] and manifest_keys(moto, bucket) == []
    assert moto.open_uploads(bucket) == []
    assert any(r.method == "GET" and r.status == 200 for r in proxy.requests)
