"""A manifest names its engine: a backup whose manifest predates that (format 1, as the fixture) still lists,
verifies and restores as PostgreSQL's; one of an engine the target is not, or this version does not know, is
refused with a message and nothing changed."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.harness.configs import REPO, restore_target, run_cli, write_config
from tests.harness.restore import download, manifest_keys

SOURCE = "engine_manifest_src"
OLD_MANIFEST = REPO / "tests" / "fixtures" / "manifest_v1_postgres.json"


def cli(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return run_cli(*args, stdin=subprocess.DEVNULL, **kwargs)


@pytest.fixture(scope="module")
def source_db(pg) -> dict:
    pg.create_database(SOURCE)
    pg.psql("CREATE TABLE items AS SELECT g AS id, md5(g::text) AS name FROM generate_series(1, 2000) g", SOURCE)
    return pg.table_fingerprints(SOURCE)


def backed_up(pg, moto, bucket, tmp_path) -> tuple[str, str, dict]:
    """Back SOURCE up with `once`; return the config's path, the manifest's key and the manifest as written."""
    config = write_config(tmp_path, bucket=bucket, endpoint=moto.endpoint,
                          strategies=[{"name": "main", "database_url": pg.url(SOURCE)}])
    done = cli("once", "-c", str(config))
    assert done.returncode == 0, done.stdout + done.stderr
    [key] = manifest_keys(moto, bucket)
    return str(config), key, json.loads(download(moto, bucket, key))


def rewrite(moto, bucket: str, key: str, manifest: dict) -> None:
    moto.client().put_object(Bucket=bucket, Key=key, Body=json.dumps(manifest, sort_keys=True, indent=1).encode())


def test_a_backup_whose_manifest_is_of_format_1_lists_verifies_and_restores(pg, moto, bucket, tmp_path, source_db):
    config, key, manifest = backed_up(pg, moto, bucket, tmp_path)
    assert (manifest["engine"], manifest["format_version"]) == ("postgres", 2)
    # The codec chain's fields (issue 17) came with format 2 too: a format 1 manifest has none of them.
    newer = {"engine", "encryption", "recipients", "verify_level"}
    old = {name: value for name, value in manifest.items() if name not in newer} | {"format_version": 1}
    assert old.keys() == json.loads(OLD_MANIFEST.read_text()).keys()  # exactly what the code before engines wrote
    rewrite(moto, bucket, key, old)
    listed = cli("list", "-c", config, "--json")
    assert listed.returncode == 0, listed.stderr
    assert [item["key"] for item in json.loads(listed.stdout)["strategies"][0]["backups"]] == [manifest["key"]]
    verified = cli("verify", "-c", config)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    url, env = restore_target(pg.url("engine_manifest_v1_restored"))
    restored = cli("restore", "-c", config, "--target-url", url, "--create", "--yes", env=env)
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert pg.table_fingerprints("engine_manifest_v1_restored") == source_db


def test_a_backup_of_another_engine_is_neither_restored_nor_verified(pg, moto, bucket, tmp_path, source_db):
    config, key, manifest = backed_up(pg, moto, bucket, tmp_path)
    rewrite(moto, bucket, key, manifest | {"engine": "mysql"})
    pg.create_database("engine_manifest_untouched")
    url, env = restore_target(pg.url("engine_manifest_untouched"))
    refused = cli("restore", "-c", config, "--target-url", url, "--yes", env=env)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "is a mysql backup and --target-url is a postgres database; nothing was changed" in refused.stderr
    assert pg.table_fingerprints("engine_manifest_untouched") == {}
    rewrite(moto, bucket, key, manifest | {"engine": "oracle"})  # mysql is known: an engine this version lacks
    failed = cli("verify", "-c", config)
    assert failed.returncode != 0 and "Traceback" not in failed.stderr
    assert "unknown database engine 'oracle'" in failed.stdout + failed.stderr
