"""`easybackup drill` through real parts: a backup made by `once` (PostgreSQL, moto S3) is restored into a second,
throwaway PostgreSQL cluster, checked, measured and dropped (issue 18)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from tests.harness.configs import EASYBACKUP, cli_env, run_cli, write_config
from tests.harness.daemon import daemon_factory, monitoring, workers_of
from tests.harness.net import free_port
from tests.harness.slack_server import DEFAULT_TOKEN
from tests.integration.test_age_encryption import keygen

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


@pytest.fixture
def target(pg_scratch):
    """The drill target: a second throwaway cluster, as an operator's scratch server."""
    return pg_scratch


def prefixed(target) -> list[str]:
    return target.psql(f"SELECT datname FROM pg_database WHERE datname LIKE '{PREFIX}%' ORDER BY 1").splitlines()


def backed_up(pg, moto, bucket, tmp_path, database: str, sql: str, target, settings: dict | None = None,
              **drill) -> str:
    """Create `database` from `sql`, back it up with `once`; return the config (with restore_drill)."""
    pg.create_database(database)
    pg.psql(sql, database)
    config = write_config(tmp_path, bucket=bucket, endpoint=moto.endpoint,
                          strategies=[{"name": "main", "database_url": pg.url(database)}],
                          restore_drill={"schedule": "1w", "target_url": target.url("postgres"), **drill},
                          timeout={"backup": "5m", "upload": "1m", "shutdown_grace": "1s"}, **(settings or {}))
    result = run_cli("once", "-c", str(config))
    assert result.returncode == 0, result.stderr
    return str(config)


def drill_restoring(config: str, target) -> subprocess.Popen:
    """Start `easybackup drill` and return it once its drill database exists on the target."""
    drill = subprocess.Popen([*EASYBACKUP, "drill", "-c", config], env=cli_env(), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not prefixed(target) and time.monotonic() < deadline and drill.poll() is None:
        time.sleep(0.1)
    assert prefixed(target), "the drill database never appeared"
    return drill


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


def test_a_plain_sql_backup_is_drilled_through_psql_with_exact_counts(pg, moto, bucket, tmp_path, target):
    config = backed_up(pg, moto, bucket, tmp_path, "drillplain", SOURCE_SQL, target,
                       settings={"pg_dump": {"format": "plain"}, "s3": {"compression": "zstd"}})
    result = run_cli("drill", "-c", config)
    assert result.returncode == 0, result.stderr
    assert "main/drillplain: passed — 3 table(s), 1003 row(s)" in result.stdout
    [record] = drill_records(moto, bucket)
    assert record["databases"][0]["key"].endswith(".sql.zst") and record["databases"][0]["toc_tables"] is None
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
    drill = drill_restoring(config, target)
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


@pytest.fixture
def start_daemon(tmp_path):
    yield from daemon_factory(tmp_path)


def test_the_supervisor_runs_drills_on_their_schedule_and_a_restart_shows_the_last_one_from_s3(
        pg, moto, bucket, tmp_path, target, start_daemon):
    backed_up(pg, moto, bucket, tmp_path, "drillsched", SOURCE_SQL, target)
    port = free_port()
    strategies = [{"name": "main", "database_url": pg.url("drillsched"), "catch_up": False}]

    def config(schedule: str):
        return write_config(tmp_path, bucket=bucket, endpoint=moto.endpoint, strategies=strategies,
                            monitoring=monitoring(port), name=f"run-{len(schedule)}.yaml",
                            restore_drill={"schedule": schedule, "target_url": target.url("postgres")})

    first = start_daemon(config("10s"), port)
    document = first.wait_health(lambda doc: doc["strategies"]["last_backup_status"]["main"]["last_restore_drill"]
                                 ["status"] == "success", timeout=60, what="a scheduled drill passed")
    drill = document["strategies"]["last_backup_status"]["main"]["last_restore_drill"]
    assert drill["error"] is None and drill["duration_seconds"] > 0 and document["status"] == "healthy"
    samples = first.metrics()
    assert samples[("easybackup_restore_drill_runs_total", (("status", "success"), ("strategy", "main")))] >= 1
    assert samples[("easybackup_backup_runs_total", (("status", "success"), ("strategy", "main")))] == 0
    assert first.stop() == 0
    newest = max(drill_records(moto, bucket), key=lambda record: record["run_name"])

    second = start_daemon(config("0 3 1 1 *"), port)  # no drill due before January: health's comes from S3
    document = second.wait_health(lambda doc: doc["strategies"]["last_backup_status"]["main"]["last_restore_drill"]
                                  ["status"] == "success", what="the last drill from S3")
    assert document["strategies"]["last_backup_status"]["main"]["last_restore_drill"]["last_run"] == \
        newest["started_at"]
    assert second.stop() == 0
    assert prefixed(target) == []


def test_a_drill_past_its_timeout_is_stopped_and_its_database_dropped(pg, moto, bucket, tmp_path, target):
    config = backed_up(pg, moto, bucket, tmp_path, "drilllate", SLOW_SQL, target, timeout="2s")
    started = time.monotonic()
    result = run_cli("drill", "-c", config)
    assert result.returncode == 1, result.stderr
    assert "main/drilllate: timed_out — the restore drill took longer than restore_drill.timeout (2s)" in result.stdout
    assert time.monotonic() - started < 30
    [record] = drill_records(moto, bucket)
    assert record["databases"][0]["error_kind"] == "timeout"
    assert prefixed(target) == []


def test_a_drill_is_reported_as_one_slack_thread(pg, moto, bucket, tmp_path, target, slack):
    backed_up(pg, moto, bucket, tmp_path, "drillslack", SOURCE_SQL, target)
    config = write_config(tmp_path, bucket=bucket, endpoint=moto.endpoint, name="slack.yaml",
                          strategies=[{"name": "main", "database_url": pg.url("drillslack")}],
                          restore_drill={"schedule": "1w", "target_url": target.url("postgres")},
                          slack={"bot_token": DEFAULT_TOKEN, "channel_id": "C0123456789", "api_url": slack.api_url})
    result = run_cli("drill", "-c", str(config))
    assert result.returncode == 0, result.stderr
    [parent] = [m for m in slack.messages("C0123456789") if "thread_ts" not in m]
    assert parent["text"].startswith("✅ Restore drill passed: *main* — 1 database, 1003 rows in")
    replies = [reply["text"] for reply in slack.thread(parent["ts"])]
    assert replies[0] == "▶️ *drillslack*: restore drill started"
    assert replies[1].startswith("✅ *drillslack*: restored in ") and "3 tables, 1003 rows" in replies[1]
    assert replies[-1].startswith("Restore drill of main: passed")
    assert [u["text"] for u in slack.updates(parent["ts"])] == [parent["text"]]


def test_a_sigkilled_drill_leaves_its_database_and_the_next_drill_drops_it(pg, moto, bucket, tmp_path, target):
    config = backed_up(pg, moto, bucket, tmp_path, "drillkill", SLOW_SQL, target)
    drill = drill_restoring(config, target)
    [left] = prefixed(target)
    [worker] = workers_of(drill.pid)
    os.killpg(worker, signal.SIGKILL)  # the worker and its pg_restore: nothing runs to drop the database
    drill.communicate(timeout=60)
    assert drill.returncode == 1
    assert prefixed(target) == [left]
    [record] = drill_records(moto, bucket)  # the worker wrote none: the pool did, for health after a restart
    assert (record["status"], record["error_kind"]) == ("failed", "crashed")
    # The next drill must not wait out the slow restore to prove the cleanup: a short timeout ends it.
    again = write_config(tmp_path, bucket=bucket, endpoint=moto.endpoint, name="again.yaml",
                         strategies=[{"name": "main", "database_url": pg.url("drillkill")}],
                         restore_drill={"schedule": "1w", "target_url": target.url("postgres"), "timeout": "3s"})
    result = run_cli("drill", "-c", str(again))
    assert f"dropped drill database {left}, left behind by a drill that did not finish" in result.stderr
    assert prefixed(target) == []


def test_an_encrypted_backup_is_drilled_with_the_hosts_identity(pg, moto, bucket, tmp_path, target):
    identity, recipient = keygen(tmp_path, "drill")
    config = backed_up(pg, moto, bucket, tmp_path, "drillage", SOURCE_SQL, target,
                       settings={"encryption": {"age": {"recipients": [recipient]}}, "s3": {"compression": "zstd"}})
    result = run_cli("drill", "-c", config, env=cli_env(EASYBACKUP_AGE_IDENTITY_FILE=str(identity)))
    assert result.returncode == 0, result.stderr
    assert "main/drillage: passed — 3 table(s), 1003 row(s)" in result.stdout
    [record] = drill_records(moto, bucket)
    [database] = record["databases"]
    assert database["key"].endswith(".dump.zst.age") and database["toc_tables"] == 3  # the TOC read through age
    assert prefixed(target) == []


def test_an_encrypted_backup_without_an_identity_fails_its_drill_as_a_config_error(pg, moto, bucket, tmp_path,
                                                                                   target):
    _, recipient = keygen(tmp_path, "drill")
    config = backed_up(pg, moto, bucket, tmp_path, "drillnokey", SOURCE_SQL, target,
                       settings={"encryption": {"age": {"recipients": [recipient]}}})
    env = cli_env()
    env.pop("EASYBACKUP_AGE_IDENTITY_FILE", None)
    result = run_cli("drill", "-c", config, env=env)
    assert result.returncode == 1, result.stdout
    assert "main/drillnokey: failed — cannot drill backups/main/drillnokey/" in result.stdout
    assert "it is encrypted with age and this host has no identity" in result.stdout
    [record] = drill_records(moto, bucket)
    assert record["databases"][0]["error_kind"] == "config"
    assert prefixed(target) == []
