"""What becomes of restore drills' outcomes, through real parts (PostgreSQL, a throwaway drill target cluster, moto's
S3 behind a fault proxy, the harness's Slack server): a drill whose backup retention deletes under it after a newer
backup is superseded, not failed; drill records are pruned by their rule, with the prune key, never written locked;
and each drill's summary reaches Slack's success or failure channel."""

from __future__ import annotations

import json
import os
import subprocess
import time
from datetime import datetime, timedelta, timezone

import pytest

from tests.harness.configs import EASYBACKUP, cli_env, run_cli, write_config
from tests.harness.moto_server import ACCESS_KEY
from tests.harness.slack_server import DEFAULT_TOKEN
from tests.integration.test_object_lock import LOCK, lock_headers, versions
from tests.integration.test_restore_drill import SOURCE_SQL, prefixed
from tests.integration.test_write_only_key import PRUNE_KEY, deletes_by

CHANNEL, SUCCESS_CHANNEL, FAILURE_CHANNEL = "C0123456789", "CSUCCESS001", "CFAILURE001"
# ~640 KB of incompressible-ish rows: behind a proxy at SLOW bytes/s, reading the archive takes a minute, so the
# test acts while the drill reads it, and lets it go on by lifting the throttle.
BIG_SQL = "CREATE TABLE big AS SELECT g AS id, md5(g::text) || md5((g * 7)::text) AS h FROM generate_series(1, 20000) g"
SLOW = 10_000


@pytest.fixture
def scratch(pg_scratch):
    """The drill target: a second throwaway cluster, as an operator's scratch server."""
    return pg_scratch


@pytest.fixture
def lock_bucket(moto) -> str:
    """A fresh bucket with Object Lock enabled (and so versioning)."""
    name = f"drill-lock-{os.getpid()}-{time.monotonic_ns()}"
    moto.client().create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
    return name


def strategy(pg, database: str, **extra) -> list[dict]:
    return [{"name": "main", "database_url": pg.url(database), **extra}]


def drill_settings(scratch) -> dict:
    return {"schedule": "1w", "target_url": scratch.url("postgres")}


def archives(moto, bucket: str, database: str) -> list[str]:
    return sorted(key for key in moto.list_keys(bucket, f"backups/main/{database}/") if key.endswith(".dump.gz"))


def drill_records(moto, bucket: str) -> list[dict]:
    client = moto.client()
    return [json.loads(client.get_object(Bucket=bucket, Key=key)["Body"].read())
            for key in sorted(moto.list_keys(bucket, "backups/main/_drills/"))]


def drilling_slowly(config, proxy, key: str) -> subprocess.Popen:
    """Start `easybackup drill` through the throttled proxy; return it once it is reading the archive `key`."""
    drill = subprocess.Popen([*EASYBACKUP, "drill", "-c", str(config)], env=cli_env(), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and drill.poll() is None:
        if any(r.method == "GET" and r.path.split("?")[0].endswith(key) for r in proxy.requests):
            return drill
        time.sleep(0.05)
    drill.kill()
    out, err = drill.communicate()
    raise AssertionError(f"the drill never read {key}: {out}{err}")


def delete_backup(moto, bucket: str, archive: str) -> None:
    """As retention deletes a backup: the manifest first, then the archive."""
    client = moto.client()
    client.delete_object(Bucket=bucket, Key=archive.removesuffix(".dump.gz") + ".manifest.json")
    client.delete_object(Bucket=bucket, Key=archive)


def test_a_drill_whose_backup_retention_deletes_under_it_after_a_newer_backup_is_superseded(
        pg, moto, bucket, tmp_path, scratch, fault_proxy):
    pg.create_database("drillgone")
    pg.psql(BIG_SQL, "drillgone")
    strategies = strategy(pg, "drillgone", schedule="1s", retention="1s", keep_last=1)  # a run keeps one
    backups = write_config(tmp_path, bucket=bucket, endpoint=moto.endpoint, strategies=strategies,
                           restore_drill=drill_settings(scratch))
    assert run_cli("once", "-c", str(backups)).returncode == 0
    [drilled] = archives(moto, bucket, "drillgone")
    proxy = fault_proxy("127.0.0.1", moto.port, "http")
    proxy.throttle(SLOW)
    slowly = write_config(tmp_path, bucket=bucket, endpoint=proxy.url, strategies=strategies, name="drill.yaml",
                          restore_drill=drill_settings(scratch))
    drill = drilling_slowly(slowly, proxy, drilled)

    newer = run_cli("once", "-c", str(backups))  # a scheduled backup beside the drill: its retention deletes
    assert newer.returncode == 0, newer.stderr
    [superseding] = archives(moto, bucket, "drillgone")
    assert superseding != drilled and f"retention: deleted {drilled}" in newer.stderr
    proxy.throttle(None)
    out, err = drill.communicate(timeout=120)

    assert drill.returncode == 0, out + err
    assert f"main/drillgone: superseded — {drilled} was deleted while it was drilled: a newer backup superseded " \
           f"it: {superseding}" in out
    assert "restore drill superseded" in err and "restore drill failed" not in err
    [record] = drill_records(moto, bucket)
    [database] = record["databases"]
    assert (record["status"], database["status"], database["error_kind"]) == ("superseded",) * 3
    assert prefixed(scratch) == []


def test_a_drill_that_fails_on_its_own_stays_failed_though_retention_then_deletes_its_backup(
        pg, moto, bucket, tmp_path, scratch, fault_proxy):
    pg.create_database("drillbadgone")
    pg.psql(BIG_SQL, "drillbadgone")
    # Plain SQL: no table of contents read first, so the drill's one download is the restore's.
    strategies = strategy(pg, "drillbadgone", schedule="1s", retention="1s", keep_last=1,
                          pg_dump={"format": "plain"})
    backups = write_config(tmp_path, bucket=bucket, endpoint=moto.endpoint, strategies=strategies,
                           restore_drill=drill_settings(scratch))
    assert run_cli("once", "-c", str(backups)).returncode == 0
    [drilled] = [key for key in moto.list_keys(bucket, "backups/main/drillbadgone/") if key.endswith(".sql.gz")]
    client = moto.client()
    stored = client.get_object(Bucket=bucket, Key=drilled)["Body"].read()
    client.put_object(Bucket=bucket, Key=drilled, Body=stored + b"\x00" * 100)  # gunzip ignores it; sha256 does not
    proxy = fault_proxy("127.0.0.1", moto.port, "http")
    proxy.throttle(SLOW)
    slowly = write_config(tmp_path, bucket=bucket, endpoint=proxy.url, strategies=strategies, name="drill.yaml",
                          restore_drill=drill_settings(scratch))
    drill = drilling_slowly(slowly, proxy, drilled)

    newer = run_cli("once", "-c", str(backups))  # deleted while the restore reads it, after a newer backup
    assert newer.returncode == 0 and f"retention: deleted {drilled}" in newer.stderr, newer.stderr
    proxy.throttle(None)
    out, err = drill.communicate(timeout=120)

    assert drill.returncode == 1, out + err
    assert f"main/drillbadgone: failed — checksum mismatch: {drilled} is not what was backed up" in out
    [record] = drill_records(moto, bucket)
    assert (record["status"], record["databases"][0]["error_kind"]) == ("failed", "verification")
    assert prefixed(scratch) == []


def test_a_drill_whose_backup_is_deleted_with_no_newer_backup_still_fails(
        pg, moto, bucket, tmp_path, scratch, fault_proxy):
    pg.create_database("drillnonewer")
    pg.psql(BIG_SQL, "drillnonewer")
    backups = write_config(tmp_path, bucket=bucket, endpoint=moto.endpoint, strategies=strategy(pg, "drillnonewer"),
                           restore_drill=drill_settings(scratch))
    assert run_cli("once", "-c", str(backups)).returncode == 0
    [drilled] = archives(moto, bucket, "drillnonewer")
    proxy = fault_proxy("127.0.0.1", moto.port, "http")
    proxy.throttle(SLOW)
    slowly = write_config(tmp_path, bucket=bucket, endpoint=proxy.url, strategies=strategy(pg, "drillnonewer"),
                          name="drill.yaml", restore_drill=drill_settings(scratch))
    drill = drilling_slowly(slowly, proxy, drilled)

    delete_backup(moto, bucket, drilled)  # deleted, and nothing newer: the drill's failure is real
    proxy.throttle(None)
    out, err = drill.communicate(timeout=120)

    assert drill.returncode == 1, out + err
    assert f"main/drillnonewer: failed — the archive {drilled} is missing from S3" in out
    [record] = drill_records(moto, bucket)
    assert (record["status"], record["databases"][0]["error_kind"]) == ("failed", "verification")
    assert prefixed(scratch) == []


# -- drill records: retention, the prune key, never locked -------------------------------------------------------

def drill_record_key(days_ago: float, number: int) -> str:
    stamp = (datetime.now(timezone.utc) - timedelta(days=days_ago)).strftime("%Y-%m-%dT%H%M%SZ")
    return f"backups/main/_drills/{stamp}-{number:012x}.drill.json"


def put_drill_records(moto, bucket: str, statuses: dict[str, str]) -> None:
    for key, status in statuses.items():
        moto.client().put_object(Bucket=bucket, Key=key, Body=json.dumps({"status": status}).encode())


def test_old_drill_records_are_shown_by_prune_dry_run_and_deleted_by_a_runs_retention_with_the_prune_key(
        pg, moto, bucket, tmp_path, fault_proxy):
    pg.create_database("drillrecords")
    pg.psql("CREATE TABLE t AS SELECT g FROM generate_series(1, 100) g", "drillrecords")
    failed_old, passed_old, failed_since, passed_new = (drill_record_key(40, 1), drill_record_key(35, 2),
                                                        drill_record_key(31, 3), drill_record_key(1, 4))
    put_drill_records(moto, bucket, {failed_old: "failed", passed_old: "success", failed_since: "failed"})
    proxy = fault_proxy("127.0.0.1", moto.port, "http")
    proxy.refuse_deletes(ACCESS_KEY)  # the backup key may not delete: retention must use the prune key
    config = str(write_config(tmp_path, bucket=bucket, endpoint=proxy.url, retention="30d",
                              strategies=strategy(pg, "drillrecords"), s3={"prune_credentials": PRUNE_KEY}))

    # The last pass and the failure after it stay, however old: no drill passed since. The one before goes.
    dry = run_cli("prune", "-c", config, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert [line for line in dry.stdout.splitlines() if "drill record" in line] == [
        f"  would delete drill record {failed_old}: older than retention (30d) and a later drill passed "
        f"({passed_old.rsplit('/', 1)[1].removesuffix('.drill.json')})"]

    put_drill_records(moto, bucket, {passed_new: "success"})  # a drill passes again
    run = run_cli("once", "-c", config)
    assert run.returncode == 0, run.stderr
    assert f"retention deletes drill record {passed_old}: older than retention (30d) and a later drill passed" \
           in run.stderr
    assert sorted(moto.list_keys(bucket, "backups/main/_drills/")) == [passed_new]  # the newest stays
    assert proxy.deletes_refused == 0 and deletes_by(proxy, PRUNE_KEY["access_key"])


def test_a_drill_record_is_never_written_locked_and_an_old_one_is_pruned_with_every_version(
        pg, moto, lock_bucket, tmp_path, fault_proxy):
    failed_old, passed_old = drill_record_key(40, 1), drill_record_key(35, 2)
    put_drill_records(moto, lock_bucket, {failed_old: "failed", passed_old: "success"})
    proxy = fault_proxy("127.0.0.1", moto.port, "http")
    config = str(write_config(tmp_path, bucket=lock_bucket, endpoint=proxy.url, retention="30d",
                              strategies=strategy(pg, "never_backed_up"), s3={"object_lock": LOCK},
                              restore_drill={"schedule": "1w", "target_url": pg.url("postgres")}))
    drill = run_cli("drill", "-c", config)  # nothing to drill: it fails, and says so in its record
    assert drill.returncode == 1, drill.stdout + drill.stderr
    assert set(lock_headers(proxy, "PUT", lambda path: "/_drills/" in path)) == {(None, None)}
    [new] = [key for key in moto.list_keys(lock_bucket, "backups/main/_drills/") if key not in (failed_old,
                                                                                                     passed_old)]
    assert "ObjectLockMode" not in moto.client().head_object(Bucket=lock_bucket, Key=new)

    pruned = run_cli("prune", "-c", config)
    assert pruned.returncode == 0, pruned.stdout + pruned.stderr
    assert f"  deleted drill record {failed_old}: older than retention (30d) and a later drill passed" in pruned.stdout
    assert versions(moto.client(), lock_bucket, failed_old) == []  # no version, no delete marker left
    assert sorted(moto.list_keys(lock_bucket, "backups/main/_drills/")) == [passed_old, new]


# -- Slack: the outcome channels ---------------------------------------------------------------------------------

def slack_with_channels(slack) -> dict:
    return {"bot_token": DEFAULT_TOKEN, "channel_id": CHANNEL, "api_url": slack.api_url,
            "channels": {"success": SUCCESS_CHANNEL, "failure": FAILURE_CHANNEL}}


def thread_link(slack) -> str:
    [parent] = [m for m in slack.messages(CHANNEL) if "thread_ts" not in m]
    return f"<https://slack.com/archives/{CHANNEL}/p{parent['ts'].replace('.', '')}|thread>"


def test_a_passed_drill_posts_its_summary_in_the_success_channel(pg, moto, bucket, tmp_path, scratch, slack):
    pg.create_database("drillchannels")
    pg.psql(SOURCE_SQL, "drillchannels")
    config = str(write_config(tmp_path, bucket=bucket, endpoint=moto.endpoint,
                              strategies=strategy(pg, "drillchannels"), restore_drill=drill_settings(scratch),
                              slack=slack_with_channels(slack)))
    assert run_cli("once", "-c", config).returncode == 0
    slack.reset()
    result = run_cli("drill", "-c", config)
    assert result.returncode == 0, result.stderr
    [summary] = slack.messages(SUCCESS_CHANNEL)
    assert summary["text"].startswith("✅ *main*: restore drill passed — 1 database, 1003 rows in ")
    assert summary["text"].endswith(f" · {thread_link(slack)}")
    assert slack.messages(FAILURE_CHANNEL) == []
    assert "backup" not in " ".join(m["text"] for m in slack.messages()).replace("backups/main/", "")
    assert prefixed(scratch) == []


def test_a_failed_drill_posts_its_summary_in_the_failure_channel(pg, moto, bucket, tmp_path, slack):
    config = str(write_config(tmp_path, bucket=bucket, endpoint=moto.endpoint,
                              strategies=strategy(pg, "drillnothing"), slack=slack_with_channels(slack),
                              restore_drill={"schedule": "1w", "target_url": pg.url("postgres")}))
    result = run_cli("drill", "-c", config)
    assert result.returncode == 1, result.stdout + result.stderr
    [summary] = slack.messages(FAILURE_CHANNEL)
    assert summary["text"] == (f"❌ *main*: restore drill failed — [not_found] no complete backup of drillnothing "
                               f"to drill · {thread_link(slack)}")
    assert slack.messages(SUCCESS_CHANNEL) == []
    assert "restore drill failed: [not_found] no complete backup of drillnothing to drill" in result.stderr
