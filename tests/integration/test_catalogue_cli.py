"""`list` and `restore` exactly as an operator types them: once → list → restore gives identical tables."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from easybackup.storage.manifest import Manifest
from tests.harness.configs import REPO, restore_target, run_cli, write_config
from tests.harness.restore import archive_keys, download, manifest_keys, sha256_of

SOURCE = "catalogue_src"


@pytest.fixture(scope="module")
def source_db(pg) -> dict:
    """A small database with awkward values and one larger table; returns its table fingerprints."""
    pg.create_database(SOURCE)
    pg.psql_file(str(REPO / "examples" / "demo-data.sql"), SOURCE)
    pg.psql("CREATE TABLE events AS SELECT g AS id, md5(g::text) AS payload, now() - g * interval '1 min' AS at "
            "FROM generate_series(1, 30000) g; ALTER TABLE events ADD PRIMARY KEY (id)", SOURCE)
    return pg.table_fingerprints(SOURCE)


@pytest.fixture(scope="module")
def shared_backup(pg, moto, source_db, tmp_path_factory) -> tuple[Path, str]:
    """One custom-format gzip backup of SOURCE for the tests that only read it: (config path, archive key)."""
    bucket = moto.create_bucket("catalogue-shared")
    config = back_up(pg, moto, bucket, tmp_path_factory.mktemp("shared"))
    [key] = archive_keys(moto, bucket)
    return config, key


def cli(*args: str, **kwargs) -> subprocess.CompletedProcess:
    """Run the CLI without a terminal on stdin (as from cron or CI)."""
    return run_cli(*args, stdin=subprocess.DEVNULL, **kwargs)


def back_up(pg, moto, bucket: str, tmp_path: Path, fmt: str = "custom", compression: str = "gzip",
            **strategy_extra) -> Path:
    """Write a config with one strategy `main` for SOURCE, run `once`, and return the config's path."""
    config = write_config(tmp_path, bucket=bucket, endpoint=moto.endpoint, s3={"compression": compression},
                          pg_dump={"format": fmt}, timezone="Europe/Berlin",
                          strategies=[{"name": "main", "database_url": pg.url(SOURCE), **strategy_extra}])
    result = cli("once", "-c", str(config))
    assert result.returncode == 0, result.stdout + result.stderr
    return config


def restore(config: Path, target_url: str, *extra: str) -> subprocess.CompletedProcess:
    url, env = restore_target(target_url)
    return cli("restore", "-c", str(config), "--strategy", "main", "--target-url", url, *extra, env=env)


@pytest.mark.parametrize("fmt,compression", [("custom", "gzip"), ("custom", "zstd"), ("custom", "none"),
                                             ("plain", "gzip"), ("plain", "zstd"), ("plain", "none")])
def test_once_list_restore_gives_identical_tables(pg, moto, bucket, tmp_path, source_db, fmt, compression):
    config = back_up(pg, moto, bucket, tmp_path, fmt, compression)
    listed = cli("list", "-c", str(config), "--json")
    assert listed.returncode == 0, listed.stderr
    [entry] = json.loads(listed.stdout)["strategies"][0]["backups"]
    [key] = archive_keys(moto, bucket)
    assert entry["key"] == key and entry["database"] == SOURCE and entry["format"] == fmt
    assert entry["sha256"] == sha256_of(download(moto, bucket, key)) and entry["archive_present"] is True
    target = f"restored_{fmt}_{compression}"
    pg.create_database(target)
    restored = restore(config, pg.url(target))
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert pg.table_fingerprints(target) == source_db
    assert f"restored {key}" in restored.stdout


def test_list_shows_local_and_utc_times_and_an_archive_without_manifest_as_incomplete(moto, shared_backup):
    config, key = shared_backup
    bucket = "catalogue-shared"
    orphan = key.rsplit("/", 1)[0] + "/2001-01-01T000000Z.dump.gz"
    moto.client().put_object(Bucket=bucket, Key=orphan, Body=b"half a backup")
    listed = cli("list", "-c", str(config))
    assert listed.returncode == 0, listed.stderr
    out = listed.stdout
    assert "main: 1 backup in s3://" in out and "TIME (Europe/Berlin)" in out and key in out
    assert ("CET" in out or "CEST" in out) and "incomplete — archive without a manifest" in out
    assert orphan in out.split("incomplete")[1] and orphan not in out.split("incomplete")[0]
    listed_json = json.loads(cli("list", "-c", str(config), "--json", "--database", SOURCE).stdout)
    assert [item["key"] for item in listed_json["strategies"][0]["incomplete"]] == [orphan]


def test_restore_with_two_jobs_gives_identical_tables_and_leaves_no_file(pg, source_db, shared_backup):
    config, _ = shared_backup
    pg.create_database("restored_jobs")
    restored = restore(config, pg.url("restored_jobs"), "--jobs", "2")
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert pg.table_fingerprints("restored_jobs") == source_db
    assert list((config.parent / "tmp").iterdir()) == [], "the download and the passfile must be removed"


def test_restore_refuses_a_non_empty_target_without_clean_and_leaves_it_untouched(pg, source_db, shared_backup):
    config, _ = shared_backup
    pg.create_database("restored_twice")
    assert restore(config, pg.url("restored_twice")).returncode == 0
    pg.psql("INSERT INTO customers (name) VALUES ('marker written after the restore')", "restored_twice")
    before = pg.table_fingerprints("restored_twice")
    refused = restore(config, pg.url("restored_twice"))
    assert refused.returncode == 2
    assert "is not empty" in refused.stderr and "nothing was changed" in refused.stderr and "--clean" in refused.stderr
    assert pg.table_fingerprints("restored_twice") == before
    # --clean without a terminal and without --yes still refuses: nobody confirmed replacing data.
    unconfirmed = restore(config, pg.url("restored_twice"), "--clean")
    assert unconfirmed.returncode == 2 and "--yes" in unconfirmed.stderr
    assert pg.table_fingerprints("restored_twice") == before
    cleaned = restore(config, pg.url("restored_twice"), "--clean", "--yes")
    assert cleaned.returncode == 0, cleaned.stdout + cleaned.stderr
    assert pg.table_fingerprints("restored_twice") == source_db


def test_restore_with_create_creates_the_target_database(pg, source_db, shared_backup):
    config, key = shared_backup
    pg.psql('DROP DATABASE IF EXISTS "brand new" WITH (FORCE)')
    missing = restore(config, pg.url("brand%20new"))
    assert missing.returncode == 1 and "does not exist" in missing.stderr and "--create" in missing.stderr
    run_timestamp = key.rsplit("/", 1)[1].split(".")[0]
    created = restore(config, pg.url("brand%20new"), "--create", "--backup", run_timestamp)
    assert created.returncode == 0, created.stdout + created.stderr
    assert pg.table_fingerprints("brand new") == source_db


def test_restore_of_an_altered_archive_fails_saying_data_may_be_applied(pg, moto, bucket, tmp_path, source_db):
    config = back_up(pg, moto, bucket, tmp_path, "custom", "none")
    [key] = archive_keys(moto, bucket)
    data = bytearray(download(moto, bucket, key))
    data[-10] ^= 0xFF  # inside the last data block: pg_restore itself may not notice
    moto.client().put_object(Bucket=bucket, Key=key, Body=bytes(data))
    pg.create_database("restored_bad")
    failed = restore(config, pg.url("restored_bad"))
    assert failed.returncode == 1
    assert "checksum mismatch" in failed.stderr and "may already have applied" in failed.stderr
    pg.create_database("restored_bad_jobs")
    failed_jobs = restore(config, pg.url("restored_bad_jobs"), "--jobs", "2")
    assert failed_jobs.returncode == 1 and "nothing was restored" in failed_jobs.stderr
    assert pg.table_fingerprints("restored_bad_jobs") == {}


def test_a_restore_that_fails_early_stops_downloading_and_says_the_checksum_was_not_checked(pg, moto, bucket,
                                                                                           tmp_path):
    pg.create_database("catalogue_big")
    pg.psql("CREATE TABLE bulk AS SELECT g AS id, md5(g::text) || md5((g * 7)::text) || md5((g * 13)::text) AS a "
            "FROM generate_series(1, 200000) g", "catalogue_big")  # ~20 MB, stored without compression
    config = write_config(tmp_path, bucket=bucket, endpoint=moto.endpoint, s3={"compression": "none"},
                          strategies=[{"name": "main", "database_url": pg.url("catalogue_big")}])
    assert cli("once", "-c", str(config)).returncode == 0
    [key] = archive_keys(moto, bucket)
    stored = len(download(moto, bucket, key))
    # A role that may not create tables in the target: pg_restore --exit-on-error stops at the first one.
    pg.psql("DROP ROLE IF EXISTS restore_weak; CREATE ROLE restore_weak LOGIN PASSWORD 'weak-Pw-7781'")
    pg.create_database("restored_by_weak")
    failed = restore(config, pg.url("restored_by_weak", user="restore_weak", password="weak-Pw-7781"))
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "permission denied for schema public" in failed.stderr
    read = int(failed.stderr.split("the download stopped with it after ")[1].split(" of ")[0])
    assert read < stored / 2, f"read {read} of {stored} bytes after pg_restore had failed"
    assert f"easybackup verify --backup {key}" in failed.stderr
    assert "checksum mismatch" not in failed.stderr


def test_restore_globals_recreates_a_dropped_role(pg, moto, bucket, tmp_path):
    config = write_config(tmp_path, bucket=bucket, endpoint=moto.endpoint,
                          strategies=[{"name": "main", "database_url": pg.url(SOURCE)}])
    pg.psql("DROP ROLE IF EXISTS catalogue_role; CREATE ROLE catalogue_role NOLOGIN")
    dump = subprocess.run(["pg_dumpall", "--globals-only"], env=pg.env(), capture_output=True, check=True).stdout
    pg.psql("DROP ROLE catalogue_role")
    key = "backups/main/_globals/2024-05-01T020000Z.sql"
    manifest = Manifest(strategy="main", database="_globals", run_id="r1", key=key, started_at="2024-05-01T02:00:00Z",
                        finished_at="2024-05-01T02:00:01Z", stored_bytes=len(dump), sha256=sha256_of(dump),
                        compression="none", format="plain")
    moto.client().put_object(Bucket=bucket, Key=key, Body=dump)
    moto.client().put_object(Bucket=bucket, Key=key.replace(".sql", ".manifest.json"), Body=manifest.to_json())
    assert manifest_keys(moto, bucket) == [key.replace(".sql", ".manifest.json")]
    restored = restore(config, pg.url("postgres"), "--globals")
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert pg.psql("SELECT count(*) FROM pg_roles WHERE rolname = 'catalogue_role'") == "1"


def test_restore_names_an_unknown_backup_and_refuses_a_bad_target_url(pg, shared_backup):
    config, _ = shared_backup
    unknown = restore(config, pg.url("x"), "--backup", "1999-01-01T000000Z")
    assert unknown.returncode == 2 and "no complete backup matches '1999-01-01T000000Z'" in unknown.stderr
    bad_url = restore(config, "mysql://nope")
    assert bad_url.returncode == 2 and "--target-url" in bad_url.stderr
    assert pg.password not in bad_url.stderr + unknown.stderr


# -- a failed restore leaves the target as it was (one transaction) ------------------------------------------------

GONE_OWNER = "restore_gone_owner"


@pytest.fixture(scope="module")
def failing_backups(pg, moto, tmp_path_factory) -> Path:
    """Backups (strategy `custom` and `plain`) of a database whose second table is owned by a role that is then
    dropped: restoring either creates `customers` and fails at `ALTER TABLE orders OWNER TO` the missing role."""
    pg.psql(f"DROP ROLE IF EXISTS {GONE_OWNER}; CREATE ROLE {GONE_OWNER} NOLOGIN")
    pg.create_database("owner_gone_src")
    pg.psql("CREATE TABLE customers AS SELECT g AS id, 'from the backup ' || g AS name FROM generate_series(1, 400) g;"
            "CREATE TABLE orders AS SELECT g AS id, g % 7 AS customer FROM generate_series(1, 300) g;"
            f"ALTER TABLE orders OWNER TO {GONE_OWNER}", "owner_gone_src")
    bucket = moto.create_bucket("catalogue-failing")
    config = write_config(tmp_path_factory.mktemp("failing"), bucket=bucket, endpoint=moto.endpoint, strategies=[
        {"name": name, "database_url": pg.url("owner_gone_src"), "pg_dump": {"format": name}}
        for name in ("custom", "plain")])
    result = cli("once", "-c", str(config))
    assert result.returncode == 0, result.stdout + result.stderr
    pg.psql("DROP DATABASE owner_gone_src WITH (FORCE)")
    pg.psql(f"DROP ROLE {GONE_OWNER}")
    return config


def restore_from(config: Path, strategy: str, target_url: str, *extra: str) -> subprocess.CompletedProcess:
    url, env = restore_target(target_url)
    return cli("restore", "-c", str(config), "--strategy", strategy, "--target-url", url, *extra, env=env)


def test_a_restore_with_clean_that_fails_partway_leaves_the_targets_tables_and_rows_exactly_as_they_were(
        pg, failing_backups):
    pg.create_database("clean_fails")
    pg.psql("CREATE TABLE customers (id int PRIMARY KEY, name text);"
            "INSERT INTO customers SELECT g, 'before the restore ' || g FROM generate_series(1, 50) g;"
            "CREATE TABLE orders (id int, customer int); INSERT INTO orders VALUES (1, 1), (2, 2);"
            "CREATE TABLE unrelated AS SELECT 'kept' AS note", "clean_fails")
    before = pg.table_fingerprints("clean_fails")
    failed = restore_from(failing_backups, "custom", pg.url("clean_fails"), "--clean", "--yes")
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert f'role "{GONE_OWNER}" does not exist' in failed.stderr
    assert pg.table_fingerprints("clean_fails") == before


def test_a_plain_restore_that_fails_partway_leaves_an_empty_target_empty(pg, failing_backups):
    pg.create_database("plain_fails")
    failed = restore_from(failing_backups, "plain", pg.url("plain_fails"), "--yes")
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert f'role "{GONE_OWNER}" does not exist' in failed.stderr
    assert pg.table_fingerprints("plain_fails") == {}


def test_clean_with_parallel_jobs_is_refused_unless_forced(pg, source_db, shared_backup):
    config, _ = shared_backup
    pg.create_database("restored_clean_jobs")
    assert restore(config, pg.url("restored_clean_jobs")).returncode == 0
    pg.psql("INSERT INTO customers (name) VALUES ('marker written after the restore')", "restored_clean_jobs")
    before = pg.table_fingerprints("restored_clean_jobs")
    refused = restore(config, pg.url("restored_clean_jobs"), "--clean", "--jobs", "2", "--yes")
    assert refused.returncode == 2, refused.stdout + refused.stderr
    [error] = refused.stderr.strip().splitlines()
    assert error.startswith("error: --clean with --jobs above 1 cannot run in one transaction"), error
    assert "hint: leave out --jobs" in error and "--force" in error.split("hint:")[1]
    assert pg.table_fingerprints("restored_clean_jobs") == before
    forced = restore(config, pg.url("restored_clean_jobs"), "--clean", "--jobs", "2", "--yes", "--force")
    assert forced.returncode == 0, forced.stdout + forced.stderr
    assert pg.table_fingerprints("restored_clean_jobs") == source_db
