"""`easybackup drill` through real parts: a backup made by `once` (PostgreSQL, moto S3) is restored into a second,
throwaway PostgreSQL cluster, checked, measured and dropped (issue 18)."""

from __future__ import annotations

import json
import signal
import subprocess
import time

import pytest

from tests.harness.configs import EASYBACKUP, cli_env, run_cli, write_config
from tests.harness.postgres import PostgresCluster

PREFIX = "easybackup_drill_"
SOURCE_SQL = """
CREATE TABLE items (id int PRIMARY KEY, name text);
INSERT INTO items SELECT n, 'item ' || n FROM generate_series(1, 1000) n;
CREATE TABLE empty (a int);
CREATE SCHEMA other;
CREATE TABLE other."odd name" (b text);
INSERT INTO other."odd name" VALUES ('x'), ('y'), ('z');
"""
# A CHECK that sleeps per row: the restore of `slow` takes ~4 s however fast the machine, so a test can stop it.
SLOW_SQL = """
CREATE FUNCTION slow_ok(int) RETURNS boolean LANGUAGE sql AS 'SELECT pg_sleep(0.02) IS NOT NULL';
CREATE TABLE slow (a int CHECK (slow_ok(a)));
INSERT INTO slow SELECT generate_series(1, 200);
"""


@pytest.fixture(scope="module")
def target():
    """The drill target: a second throwaway cluster, as an operator's scratch server."""
    cluster = PostgresCluster().init()
    try:
        yield cluster
    finally:
        cluster.destroy()


def prefixed(target) -> list[str]:
    return target.psql(f"SELECT datname FROM pg_database WHERE datname LIKE '{PREFIX}%' ORDER BY 1").splitlines()


def backed_up(pg, moto, bucket, tmp_path, database: str, sql: str, target, **drill) -> str:
    """Create `database` from `sql`, back it up with `once`; return the config (with restore_drill)."""
    pg.create_database(database)
    pg.psql(sql, database)
    config = write_config(tmp_path, bucket=bucket, endpoint=moto.endpoint,
                          strategies=[{"name": "main", "database_url": pg.url(database)}],
                          restore_drill={"schedule": "1w", "target_url": target.url("postgres"), **drill},
                          timeout={"backup": "5m", "upload": "1m", "shutdown_grace": "1s"})
    result = run_cli("once", "-c", str(config))
    assert result.returncode == 0, result.stderr
    return str(config)


def s3(moto):
    return moto.client()


def drill_records(moto, bucket) -> list[dict]:
    client = s3(moto)
    listed = client.list_objects_v2(Bucket=bucket, Prefix="backups/main/_drills/").get("Contents", [])
    return [json.loads(client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()) for item in listed]


def test_a_drill_restores_the_newest_backup_reports_tables_and_rows_and_drops_its_database(
        pg, moto, bucket, tmp_path, target):
    config = backed_up(pg, moto, bucket, tmp_path, "drillsrc", SOURCE_SQL, target)
    result = run_cli("drill", "-c", config)
    assert result.returncode == 0, result.stderr
    assert "main/drillsrc: passed — 3 table(s), 1003 row(s)" in result.stdout
    [record] = drill_records(moto, bucket)
    [database] = record["databases"]
    assert (record["status"], database["status"], database["toc_tables"]) == ("success", "success", 3)
    assert database["table_rows"] == {"other.odd name": 3, "public.empty": 0, "public.items": 1000}
    assert database["restored_bytes"] > 0 and database["restore_s"] > 0
    assert database["key"].startswith("backups/main/drillsrc/")
    assert prefixed(target) == []


def test_a_corrupted_archive_fails_the_drill_with_the_checksum_mismatch_and_leaves_no_database(
        pg, moto, bucket, tmp_path, target):
    config = backed_up(pg, moto, bucket, tmp_path, "drillbad", SOURCE_SQL, target)
    client = s3(moto)
    [key] = [item["Key"] for item in client.list_objects_v2(Bucket=bucket)["Contents"]
             if item["Key"].endswith(".dump.gz")]
    stored = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    client.put_object(Bucket=bucket, Key=key, Body=stored + b"\x00" * 100)  # gunzip ignores it; sha256 does not
    result = run_cli("drill", "-c", config)
    assert result.returncode == 1, result.stdout
    assert f"main/drillbad: failed — checksum mismatch: {key} is not what was backed up" in result.stdout
    [record] = drill_records(moto, bucket)
    assert record["status"] == "failed" and record["databases"][0]["error_kind"] == "verification"
    assert prefixed(target) == []


def test_sigterm_mid_drill_drops_the_drill_database(pg, moto, bucket, tmp_path, target):
    config = backed_up(pg, moto, bucket, tmp_path, "drillslow", SLOW_SQL, target)
    drill = subprocess.Popen([*EASYBACKUP, "drill", "-c", config], env=cli_env(), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not prefixed(target) and time.monotonic() < deadline and drill.poll() is None:
        time.sleep(0.1)
    assert prefixed(target), "the drill database never appeared"
    drill.send_signal(signal.SIGTERM)
    out, err = drill.communicate(timeout=60)
    assert drill.returncode == 143, err
    assert "main/drillslow: cancelled" in out
    assert prefixed(target) == []


def test_the_next_drill_drops_a_leftover_and_never_touches_other_databases(pg, moto, bucket, tmp_path, target):
    config = backed_up(pg, moto, bucket, tmp_path, "drillleft", SOURCE_SQL, target)
    leftover = f"{PREFIX}drillleft_0123456789ab"  # as a SIGKILLed drill leaves it
    untouched = ["drillleft", f"{PREFIX}drillleftover_0123456789ab", f"{PREFIX}keep", "easybackup_drillleft_x"]
    for name in [leftover, *untouched]:
        target.psql(f'CREATE DATABASE "{name}"')
    try:
        result = run_cli("drill", "-c", config)
        assert result.returncode == 0, result.stderr
        assert f"dropped drill database {leftover}, left behind by a drill that did not finish" in result.stderr
        names = target.psql("SELECT datname FROM pg_database").splitlines()
        assert leftover not in names and set(untouched) <= set(names)
    finally:
        for name in untouched:
            target.psql(f'DROP DATABASE IF EXISTS "{name}"')


def test_drill_refuses_a_strategy_without_restore_drill(pg, moto, bucket, tmp_path):
    config = write_config(tmp_path, bucket=bucket, endpoint=moto.endpoint,
                          strategies=[{"name": "main", "database_url": pg.url("postgres")}])
    result = run_cli("drill", "-c", str(config), "--strategy", "main")
    assert result.returncode == 2 and "strategy main has no restore_drill" in result.stderr
