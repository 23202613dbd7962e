"""A MySQL backup through the catalogue commands, as an operator runs them: `once` with verify.after_backup,
`verify` (a flipped byte, a cut dump with a matching manifest), `restore --create` into a new database and a
refused non-empty one, `restore --globals`."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.harness.configs import REPO, restore_target, run_cli, write_config
from tests.harness.restore import archive_keys, download, manifest_keys
from tests.integration.test_age_encryption import keygen
from tests.integration.test_verify import replace_archive

pytestmark = pytest.mark.timeout(300)

SHOP = "eb_cat_shop"


@pytest.fixture(scope="module")
def shop(mariadb):
    mariadb.create_database(SHOP)
    mariadb.sql_file(REPO / "tests" / "fixtures" / "mysql_dataset.sql", SHOP)
    return mariadb


def back_up(shop, moto, bucket, tmp_path, **strategy):
    config = write_config(tmp_path, bucket=bucket, endpoint=moto.endpoint, s3={"compression": "zstd"},
                          verify={"after_backup": True},
                          strategies=[{"name": "shop", "database_url": shop.url(SHOP), **strategy}])
    result = run_cli("once", "-c", str(config))
    assert result.returncode == 0, result.stdout + result.stderr
    return config


def restore(config, url: str, *extra: str):
    bare, env = restore_target(url)
    return run_cli("restore", "-c", str(config), "--strategy", "shop", "--target-url", bare, "--yes", *extra, env=env)


def test_once_verify_and_restore_into_a_new_database(shop, moto, bucket, tmp_path):
    config = back_up(shop, moto, bucket, tmp_path)
    [manifest_key] = manifest_keys(moto, bucket)
    manifest = json.loads(download(moto, bucket, manifest_key))
    assert (manifest["engine"], manifest["verified"], manifest["format"]) == ("mysql", True, "plain")
    verified = run_cli("verify", "-c", str(config))
    assert verified.returncode == 0, verified.stdout + verified.stderr
    listed = run_cli("list", "-c", str(config), "--json")
    assert listed.returncode == 0, listed.stderr
    assert manifest["key"] in listed.stdout and shop.password not in listed.stdout
    target = "eb_cat_restored"
    shop.drop_database(target)
    restored = restore(config, shop.url(target), "--database", SHOP, "--create")
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert shop.table_fingerprints(target) == shop.table_fingerprints(SHOP)
    assert shop.routines(target) == shop.routines(SHOP)
    assert shop.password not in restored.stdout + restored.stderr
    again = restore(config, shop.url(target), "--database", SHOP)
    assert again.returncode == 2 and f"database {target} is not empty" in again.stderr
    into_postgres = run_cli("restore", "-c", str(config), "--strategy", "shop", "--target-url",
                            "postgres://u@127.0.0.1:1/x", "--yes")
    assert into_postgres.returncode == 2 and "is a mysql backup and --target-url is a postgres database" in \
        into_postgres.stderr


def test_verify_catches_a_flipped_byte_and_a_cut_dump(shop, moto, bucket, tmp_path):
    config = back_up(shop, moto, bucket, tmp_path)
    [key] = archive_keys(moto, bucket)
    original = download(moto, bucket, key)
    flipped = bytearray(original)
    flipped[len(flipped) // 2] ^= 0x01
    replace_archive(moto, bucket, key, bytes(flipped), update_manifest=False)
    failed = run_cli("verify", "-c", str(config))
    assert failed.returncode == 1 and f"FAILED  {key}: [verification] sha256 mismatch" in failed.stdout
    dump = subprocess.run(["zstd", "-dc"], input=original, capture_output=True, check=True).stdout
    cut = subprocess.run(["zstd", "-c", "-q"], input=dump[: len(dump) - 300], capture_output=True, check=True).stdout
    replace_archive(moto, bucket, key, cut, update_manifest=True)  # the manifest agrees: only the end tells
    failed = run_cli("verify", "-c", str(config))
    assert failed.returncode == 1 and "-- Dump completed" in failed.stdout, failed.stdout


def test_users_and_grants_restore_with_globals(shop, moto, bucket, tmp_path):
    shop.sql("DROP USER IF EXISTS eb_cat_user@'%'; CREATE USER eb_cat_user@'%' IDENTIFIED BY 'cat-Secret-77';"
             f"GRANT SELECT ON `{SHOP}`.* TO eb_cat_user@'%'")
    config = back_up(shop, moto, bucket, tmp_path, include_globals=True)
    grants = shop.sql("SHOW GRANTS FOR eb_cat_user@'%'")
    shop.sql("DROP USER eb_cat_user@'%'")
    restored = restore(config, shop.url(""), "--globals")
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert shop.sql("SHOW GRANTS FOR eb_cat_user@'%'") == grants


def test_an_encrypted_mysql_backup_verifies_and_restores_with_the_identity(shop, moto, bucket, tmp_path):
    identity, recipient = keygen(tmp_path, "shop")
    config = back_up(shop, moto, bucket, tmp_path, encryption={"age": {"recipients": [recipient]}})
    [key] = archive_keys(moto, bucket)
    assert key.endswith(".sql.zst.age") and download(moto, bucket, key).startswith(b"age-encryption.org/v1\n")
    [manifest_key] = manifest_keys(moto, bucket)
    manifest = json.loads(download(moto, bucket, manifest_key))
    assert (manifest["engine"], manifest["encryption"], manifest["verify_level"]) == ("mysql", "age", "ciphertext")
    without = run_cli("verify", "-c", str(config))
    assert without.returncode == 0 and "ciphertext only" in without.stdout, without.stdout + without.stderr
    whole = run_cli("verify", "-c", str(config), "--identity", str(identity))
    assert whole.returncode == 0 and "ciphertext only" not in whole.stdout, whole.stdout + whole.stderr
    target = "eb_cat_restored_age"
    shop.drop_database(target)
    refused = restore(config, shop.url(target), "--database", SHOP, "--create")
    assert refused.returncode == 2 and "is encrypted with age" in refused.stderr
    restored = restore(config, shop.url(target), "--database", SHOP, "--create", "--identity", str(identity))
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert shop.table_fingerprints(target) == shop.table_fingerprints(SHOP)
