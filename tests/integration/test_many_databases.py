"""Many databases per strategy: each its own archive and result, all_databases, and the globals (roles)."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from tests.harness.configs import run_cli, write_config
from tests.harness.postgres import PostgresCluster
from tests.harness.restore import archive_keys, decompress, download, manifest_keys

ROLE_PASSWORD = "Role-pw-8813-distinctive"
ROLES_QUERY = ("SELECT rolname, rolsuper, rolcreatedb, rolcanlogin, rolconnlimit, rolpassword FROM pg_authid "
               "WHERE rolname !~ '^pg_' ORDER BY 1")
OWNERS_QUERY = "SELECT schemaname, tablename, tableowner FROM pg_tables WHERE schemaname = 'public' ORDER BY 1, 2"


def summary_row(stdout: str, database: str) -> str:
    rows = [line for line in stdout.splitlines() if line.split()[:2] == ["main", database]]
    assert len(rows) == 1, stdout
    return rows[0]


def test_three_databases_one_missing_store_two_and_report_the_third(pg, moto, bucket, tmp_path):
    suffix = os.getpid()
    shop, crm, missing = f"many_shop_{suffix}", f"many_crm_{suffix}", f"many_missing_{suffix}"
    for name in (shop, crm):
        pg.create_database(name)
        pg.psql("CREATE TABLE t AS SELECT generate_series(1, 50) AS n", name)
    urls = [pg.url(shop), {"name": "billing", "url": pg.url(crm)}, pg.url(missing)]
    config = write_config(tmp_path, bucket=bucket, endpoint=moto.endpoint,
                          strategies=[{"name": "main", "database_urls": urls}],
                          retry={"max_attempts": 3, "initial_delay": "1s", "max_delay": "2s"})
    result = run_cli("once", "-c", str(config), timeout=120)
    assert result.returncode == 1, result.stdout + result.stderr
    manifests = [json.loads(download(moto, bucket, key)) for key in manifest_keys(moto, bucket)]
    assert sorted(m["database"] for m in manifests) == sorted([shop, "billing"])
    assert {m["key"] for m in manifests} == set(archive_keys(moto, bucket))
    assert summary_row(result.stdout, shop).split()[2:4] == ["success", "1"]
    assert summary_row(result.stdout, "billing").split()[2:4] == ["success", "1"]
    failed = summary_row(result.stdout, missing)
    assert failed.split()[2:4] == ["failed", "1"]
    assert f'[not_found] pg_dump of database {missing} failed: connection to server at' in failed
    assert f'database "{missing}" does not exist' in failed
    assert "(not retried: a missing database or object stays missing)" in failed
    assert f"hint: check the database name {missing}" in failed
    assert "retrying in" not in result.stderr
    assert moto.open_uploads(bucket) == []


@pytest.fixture
def source_cluster():
    """A cluster of this test's own: four databases (postgres and three more), a role owning tables."""
    cluster = PostgresCluster().init()
    try:
        cluster.psql(f"CREATE ROLE shop_owner LOGIN CREATEDB CONNECTION LIMIT 7 PASSWORD '{ROLE_PASSWORD}'")
        cluster.psql("CREATE ROLE auditor NOLOGIN")
        cluster.psql("CREATE TABLE settings AS SELECT 'k' || g AS key, g AS value FROM generate_series(1, 20) g")
        for name in ("shop", "crm", "weird name ü"):
            cluster.create_database(name)
        cluster.psql("CREATE TABLE orders AS SELECT g AS id, md5(g::text) AS item FROM generate_series(1, 500) g; "
                     "ALTER TABLE orders OWNER TO shop_owner; GRANT SELECT ON orders TO auditor", "shop")
        cluster.psql("CREATE TABLE contacts (id int PRIMARY KEY, name text); "
                     "INSERT INTO contacts SELECT g, 'name ' || g FROM generate_series(1, 300) g", "crm")
        cluster.psql("CREATE TABLE \"ünïcode\" AS SELECT 'ß' || g AS v FROM generate_series(1, 30) g", "weird name ü")
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture
def fresh_cluster():
    cluster = PostgresCluster().init()
    try:
        yield cluster
    finally:
        cluster.destroy()


def restore_globals(cluster: PostgresCluster, sql: bytes) -> None:
    """Run a globals dump with psql; only the role every cluster already has may fail to be created again."""
    done = subprocess.run(["psql", "-X", "-q", "-d", "postgres"], input=sql, capture_output=True,
                          env=cluster.env(), check=True)
    errors = [line for line in done.stderr.decode().splitlines() if "ERROR" in line]
    assert all('role "postgres" already exists' in line for line in errors), errors


def restore_database(cluster: PostgresCluster, dump: bytes, database: str) -> None:
    """Restore a custom-format dump into `database` (created unless it is postgres), keeping table owners."""
    if database != "postgres":
        cluster.psql(f'CREATE DATABASE "{database}"')
    subprocess.run(["pg_restore", "--exit-on-error", "-d", database], input=dump, capture_output=True,
                   env=cluster.env(), check=True)


def test_all_databases_with_globals_reproduce_the_cluster_in_a_fresh_one(source_cluster, fresh_cluster, moto,
                                                                        bucket, tmp_path):
    config = write_config(tmp_path, bucket=bucket, endpoint=moto.endpoint, strategies=[{
        "name": "main", "database_url": source_cluster.url("postgres"), "all_databases": True,
        "include_globals": True}])
    result = run_cli("once", "-c", str(config), timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    manifests = {m["database"]: m for m in (json.loads(download(moto, bucket, key))
                                            for key in manifest_keys(moto, bucket))}
    assert sorted(manifests) == sorted(["_globals", "crm", "postgres", "shop", "weird name ü"])
    globals_manifest = manifests.pop("_globals")
    assert globals_manifest["format"] == "plain"
    server_version = source_cluster.psql("show server_version")
    assert globals_manifest["server_version"] == server_version, "pg_dumpall names none: asked of the server"
    assert all(manifest["server_version"] == server_version for manifest in manifests.values())
    assert globals_manifest["key"].startswith("backups/main/_globals/") and globals_manifest["key"].endswith(".sql.gz")
    assert manifests["weird name ü"]["key"].startswith("backups/main/weird%20name%20%C3%BC/")
    assert "_globals" in result.stdout and ROLE_PASSWORD not in result.stdout + result.stderr

    restore_globals(fresh_cluster, decompress(download(moto, bucket, globals_manifest["key"]), "gzip"))
    for database, manifest in manifests.items():
        restore_database(fresh_cluster, decompress(download(moto, bucket, manifest["key"]), "gzip"), database)

    assert fresh_cluster.psql(ROLES_QUERY) == source_cluster.psql(ROLES_QUERY)
    for database in manifests:
        assert fresh_cluster.table_fingerprints(database) == source_cluster.table_fingerprints(database), database
        assert fresh_cluster.psql(OWNERS_QUERY, database) == source_cluster.psql(OWNERS_QUERY, database)
    logged_in = subprocess.run(["psql", "-X", "-At", "-c", "SELECT current_user", "-d", fresh_cluster.url(
        "shop", user="shop_owner", password=ROLE_PASSWORD)], capture_output=True, text=True, check=True)
    assert logged_in.stdout.strip() == "shop_owner"


def test_all_databases_with_a_wrong_password_fails_the_listing_precisely(pg, moto, bucket, tmp_path):
    config = write_config(tmp_path, bucket=bucket, endpoint=moto.endpoint, strategies=[{
        "name": "main", "database_url": pg.url("postgres", password="Not-the-pw-3318"), "all_databases": True}],
        retry={"max_attempts": 3, "initial_delay": "1s", "max_delay": "2s"})
    result = run_cli("once", "-c", str(config), timeout=60)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"[authentication] listing the databases on {pg.host}:{pg.port} failed" in result.stdout
    assert "password authentication failed" in result.stdout and "not retried" in result.stdout
    assert "Not-the-pw-3318" not in result.stdout + result.stderr
    assert archive_keys(moto, bucket) == [] and moto.open_uploads(bucket) == []
