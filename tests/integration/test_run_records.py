"""Health after a restart tells the truth (issue 22, item 4): every run leaves a run record in S3, failed runs
included, and a restarted supervisor shows the last run's status, error and per-database state from those records
and the manifests — a `_globals` dump that succeeded no longer hides a database that failed."""

from __future__ import annotations

import json
import os
import signal
from datetime import datetime, timedelta, timezone

import pytest

from easybackup.storage.layout import archive_key, manifest_key
from easybackup.storage.manifest import Manifest
from tests.harness.configs import run_cli, write_config
from tests.harness.daemon import daemon_factory, monitoring, wait_until, workers_of
from tests.harness.net import free_port
from tests.harness.restore import download


@pytest.fixture
def start_daemon(tmp_path):
    yield from daemon_factory(tmp_path)


@pytest.fixture(scope="module")
def records_db(pg) -> str:
    pg.create_database("records_ok")
    pg.psql("CREATE TABLE t AS SELECT generate_series(1, 500) AS n", "records_ok")
    return "records_ok"


def run_records(moto, bucket: str) -> list[dict]:
    keys = sorted(key for key in moto.list_keys(bucket) if "/_runs/" in key)
    return [json.loads(download(moto, bucket, key)) for key in keys]


def test_after_a_restart_health_says_failed_with_the_error_although_the_globals_dump_succeeded(
        pg, moto, bucket, tmp_path, start_daemon):
    port = free_port()
    # The globals come from the server of the first URL; its database does not exist, so only `_globals` succeeds.
    strategies = [{"name": "main", "database_url": pg.url("no_such_database_here"), "include_globals": True,
                   "catch_up": False}]
    first = start_daemon(write_config(tmp_path, bucket=bucket, endpoint=moto.endpoint, strategies=strategies,
                                      run_on_start=True, monitoring=monitoring(port)), port)
    live = first.wait_status("main", "failed", timeout=60)["strategies"]["last_backup_status"]["main"]
    assert first.stop() == 0

    second = start_daemon(write_config(tmp_path, bucket=bucket, endpoint=moto.endpoint, strategies=strategies,
                                       monitoring=monitoring(port)), port)
    document = second.wait_health(lambda doc: doc["strategies"]["last_backup_status"]["main"]["status"] != "pending",
                                  what="the state from S3")
    view = document["strategies"]["last_backup_status"]["main"]
    assert view["status"] == "failed", view  # before run records: "success", from the `_globals` manifest
    assert view["error_kind"] == "not_found" and "no_such_database_here" in view["error"]
    assert view["error"] == live["error"]
    [record] = run_records(moto, bucket)
    assert record["status"] == "failed" and record["error_kind"] == "not_found"
    outcomes = {item["database"]: item for item in record["databases"]}
    assert outcomes["_globals"]["status"] == "success" and outcomes["_globals"]["key"].endswith(".sql.gz")
    assert outcomes["no_such_database_here"]["status"] == "failed"
    assert pg.password not in json.dumps(record)
    assert view["last_run"] == record["started_at"] and view["last_success"] is None
    assert view["consecutive_failures"] == 1
    assert view["databases"]["_globals"]["status"] == "success" and view["databases"]["_globals"]["last_success"]
    assert view["databases"]["no_such_database_here"]["status"] == "failed"
    assert view["databases"]["no_such_database_here"]["last_success"] is None
    assert second.stop() == 0


def test_a_bucket_written_before_run_records_still_restores_the_last_success(moto, bucket, tmp_path, start_daemon):
    port = free_port()
    started = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=2)
    stamp = started.strftime("%Y-%m-%dT%H%M%SZ")  # an old version's key: the bare run timestamp, no run id
    manifest = Manifest(strategy="main", database="shop", run_id="0123456789ab",
                        key=archive_key("backups", "main", "shop", stamp, "custom", "gzip"),
                        started_at=started.strftime("%Y-%m-%dT%H:%M:%SZ"),
                        finished_at=(started + timedelta(seconds=5)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                        stored_bytes=7, sha256="0" * 64, compression="gzip", format="custom")
    client = moto.client()
    client.put_object(Bucket=bucket, Key=manifest.key, Body=b"archive")
    client.put_object(Bucket=bucket, Key=manifest_key(manifest.key), Body=manifest.to_json().encode())
    strategies = [{"name": "main", "database_url": "postgres://u:p@127.0.0.1:1/shop", "catch_up": False}]
    daemon = start_daemon(write_config(tmp_path, bucket=bucket, endpoint=moto.endpoint, strategies=strategies,
                                       monitoring=monitoring(port)), port)
    document = daemon.wait_health(lambda doc: doc["strategies"]["last_backup_status"]["main"]["last_success"],
                                  what="last_success from the manifest")
    view = document["strategies"]["last_backup_status"]["main"]
    assert view["status"] == "success" and view["last_success"] == manifest.finished_at
    assert view["databases"]["shop"]["last_success"] == manifest.finished_at
    assert daemon.stop() == 0


def test_once_writes_a_run_record_for_a_good_run_and_retention_keeps_the_records_bounded(
        pg, moto, bucket, tmp_path, records_db):
    strategies = [{"name": "main", "database_url": pg.url(records_db), "schedule": "1s", "retention": "1s",
                   "keep_last": 1}]
    config = write_config(tmp_path, bucket=bucket, endpoint=moto.endpoint, strategies=strategies)
    result = run_cli("once", "-c", str(config))
    assert result.returncode == 0, result.stderr
    [record] = run_records(moto, bucket)
    assert record["status"] == "success" and record["error"] is None
    [outcome] = record["databases"]
    assert outcome["database"] == records_db and outcome["status"] == "success"
    manifest = json.loads(download(moto, bucket, manifest_key(outcome["key"])))
    assert manifest["run_id"] == record["run_id"]
    listed = run_cli("list", "-c", str(config), "--json")
    assert listed.returncode == 0, listed.stderr
    catalogue = json.loads(listed.stdout)["strategies"][0]
    assert len(catalogue["backups"]) == 1 and catalogue["incomplete"] == [], "a record is no backup, no archive"

    # 25 old records of runs long gone: retention deletes those past `retention` beyond the newest 20.
    client = moto.client()
    old = datetime.now(timezone.utc) - timedelta(days=3)
    for number in range(25):
        stamp = (old + timedelta(minutes=number)).strftime("%Y-%m-%dT%H%M%SZ")
        client.put_object(Bucket=bucket, Key=f"backups/main/_runs/{stamp}-{number:012x}.run.json", Body=b"{}")
    pruned = run_cli("prune", "-c", str(config))
    assert pruned.returncode == 0, pruned.stderr
    assert "deleted 6 run record(s)" in pruned.stdout, pruned.stdout
    assert len([key for key in moto.list_keys(bucket) if "/_runs/" in key]) == 20


def test_a_worker_killed_mid_run_leaves_a_record_so_a_restart_does_not_show_the_success_before_it(
        pg, moto, bucket, tmp_path, fault_proxy, start_daemon):
    pg.create_database("records_bulky")
    pg.psql("CREATE TABLE t AS SELECT g, repeat(md5(g::text), 3) AS pad FROM generate_series(1, 30000) g",
            "records_bulky")
    good = write_config(tmp_path, bucket=bucket, endpoint=moto.endpoint, name="good.yaml",
                        strategies=[{"name": "main", "database_url": pg.url("records_bulky")}])
    assert run_cli("once", "-c", str(good)).returncode == 0
    proxy = fault_proxy(pg.host, pg.port, "tcp")
    proxy.throttle(50_000)  # a minute of pg_dump traffic: time enough to kill the worker mid-run
    port = free_port()
    strategies = [{"name": "main", "database_url": pg.url("records_bulky", port=proxy.port), "catch_up": False}]
    first = start_daemon(write_config(tmp_path, bucket=bucket, endpoint=moto.endpoint, strategies=strategies,
                                      run_on_start=True, monitoring=monitoring(port)), port)
    first.wait_status("main", "running")
    wait_until(lambda: moto.open_uploads(bucket), 30, "the multipart upload to open")
    [worker] = workers_of(first.pid)
    os.kill(worker, signal.SIGKILL)
    first.wait_status("main", "failed", timeout=15)
    wait_until(lambda: len(run_records(moto, bucket)) == 2, 15, "the supervisor to write the crashed run's record")
    assert first.stop() == 0
    proxy.heal()

    second = start_daemon(write_config(tmp_path, bucket=bucket, endpoint=moto.endpoint, strategies=strategies,
                                       monitoring=monitoring(port)), port)
    document = second.wait_health(lambda doc: doc["strategies"]["last_backup_status"]["main"]["status"] != "pending",
                                  what="the state from S3")
    view = document["strategies"]["last_backup_status"]["main"]
    assert view["status"] == "failed" and view["error_kind"] == "crashed", view
    assert "killed by signal 9" in view["error"] and view["consecutive_failures"] == 1
    assert view["last_success"] == run_records(moto, bucket)[0]["finished_at"]
    assert second.stop() == 0
