"""Runs cannot collide (issue 22, item 9): two runs of one strategy started in the same second get keys of their own,
a manifest never replaces another, and a failed run's cleanup deletes only what that run created."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from datetime import datetime, timezone

import pytest

from easybackup.config import load_config
from easybackup.errors import EasybackupError
from easybackup.jobspec import new_job
from easybackup.storage.layout import archive_key, manifest_key, parse_archive_key
from easybackup.storage.manifest import Manifest, read_manifest, write_manifest
from easybackup.storage.s3 import ObjectExists, make_client
from easybackup.worker.backup import AttemptContext, _commit
from tests.harness.configs import cli_env, restore_target, run_cli, write_config
from tests.harness.moto_server import ACCESS_KEY, SECRET_KEY
from tests.harness.restore import archive_keys, download, manifest_keys, sha256_of


@pytest.fixture(scope="module")
def small_db(pg) -> str:
    pg.create_database("collide")
    pg.psql("CREATE TABLE t AS SELECT g, md5(g::text) AS h FROM generate_series(1, 3000) g", "collide")
    return "collide"


def run_worker(job) -> dict:
    """Run one real worker (`python -m easybackup.worker`) on `job`, as the pool does; return its `result` event."""
    done = subprocess.run([sys.executable, "-m", "easybackup.worker"], input=job.to_json().encode(), env=cli_env(),
                          capture_output=True, timeout=120)
    events = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    return next(event for event in events if event["type"] == "result")


def test_two_runs_started_in_the_same_second_keep_two_backups_each_restorable_by_its_run_name(
        pg, moto, bucket, tmp_path, small_db):
    config = write_config(tmp_path, bucket=bucket, endpoint=moto.endpoint,
                          strategies=[{"name": "main", "database_url": pg.url(small_db), "include_globals": True}])
    strategy = load_config(config).strategies[0]
    now = datetime.now(timezone.utc)
    # What the supervisor and a `once` beside it do in the same second: new_job(strategy, temp_dir, now).
    jobs = [new_job(strategy, str(tmp_path / "tmp"), now) for _ in range(2)]
    assert jobs[0].run_timestamp == jobs[1].run_timestamp
    results = [None, None]
    threads = [threading.Thread(target=lambda i=i: results.__setitem__(i, run_worker(jobs[i]))) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [r["status"] for r in results] == ["success", "success"], json.dumps(results)[:3000]
    manifests = [json.loads(download(moto, bucket, key)) for key in manifest_keys(moto, bucket)]
    assert len(manifests) == 4, "each run keeps its database backup and its globals dump"
    assert {m["run_id"] for m in manifests} == {job.run_id for job in jobs}
    for manifest in manifests:  # no archive was replaced under a manifest: each one still matches its own
        assert sha256_of(download(moto, bucket, manifest["key"])) == manifest["sha256"]
        parsed = parse_archive_key(manifest["key"])
        assert parsed.run_timestamp == jobs[0].run_timestamp and parsed.run_id == manifest["run_id"]
    assert len(archive_keys(moto, bucket)) == 4

    listed = run_cli("list", "-c", str(config), "--json")
    assert listed.returncode == 0, listed.stderr
    assert len(json.loads(listed.stdout)["strategies"][0]["backups"]) == 4
    pg.create_database("collide_back")
    wanted = jobs[0].run_timestamp + "-" + jobs[0].run_id
    target, with_password = restore_target(pg.url("collide_back"))
    restored = run_cli("restore", "-c", str(config), "--database", small_db, "--backup", wanted,
                       "--target-url", target, env=with_password)
    assert restored.returncode == 0, restored.stderr
    assert pg.table_fingerprints("collide_back") == pg.table_fingerprints(small_db)


def test_a_key_of_an_older_version_still_parses_and_its_manifest_sits_beside_it():
    old = "backups/main/shop/2024-05-01T020000Z.dump.gz"
    parsed = parse_archive_key(old)
    assert parsed.run_timestamp == "2024-05-01T020000Z" and parsed.run_id is None
    assert manifest_key(old) == "backups/main/shop/2024-05-01T020000Z.manifest.json"
    new = archive_key("backups", "main", "shop", "2024-05-01T020000Z-3f2a9c1b7d4e", "custom", "gzip")
    assert manifest_key(new) == "backups/main/shop/2024-05-01T020000Z-3f2a9c1b7d4e.manifest.json"
    assert parse_archive_key(new).run_id == "3f2a9c1b7d4e"


def _manifest(run_id: str, key: str, sha: str = "0" * 64) -> Manifest:
    return Manifest(strategy="main", database="shop", run_id=run_id, key=key, started_at="2024-05-01T02:00:00Z",
                    finished_at="2024-05-01T02:00:05Z", stored_bytes=1, sha256=sha, compression="gzip",
                    format="custom")


def test_a_manifest_never_overwrites_another_and_the_same_manifest_written_twice_is_fine(moto, bucket):
    client = moto.client()
    key = "backups/main/shop/2024-05-01T020000Z.dump.gz"
    first = _manifest("aaa", key)
    write_manifest(client, bucket, first)
    write_manifest(client, bucket, first)  # a PUT that landed, retried after its answer was lost
    with pytest.raises(ObjectExists) as caught:
        write_manifest(client, bucket, _manifest("bbb", key, "1" * 64))
    assert "already exists" in caught.value.message
    assert read_manifest(client, bucket, manifest_key(key)) == first


def test_a_store_without_conditional_puts_gets_a_head_and_a_plain_put(moto, bucket, fault_proxy):
    proxy = fault_proxy(*moto.endpoint.removeprefix("http://").split(":"), mode="http")
    client = moto.client(proxy.url)
    key = "backups/main/shop/2024-05-01T020000Z.dump.gz"
    proxy.fail_http(501, count=1, methods=["PUT"])  # "NotImplemented": as a store that lacks If-None-Match
    write_manifest(client, bucket, _manifest("aaa", key))
    puts = [r for r in proxy.requests if r.method == "PUT"]
    assert puts[0].headers.get("if-none-match") == "*" and puts[0].status == 501
    assert puts[-1].status == 200 and "if-none-match" not in puts[-1].headers
    assert read_manifest(moto.client(), bucket, manifest_key(key)).run_id == "aaa"
    with pytest.raises(ObjectExists):  # the fallback still refuses to replace another manifest
        proxy.fail_http(501, count=1, methods=["PUT"])
        write_manifest(client, bucket, _manifest("bbb", key, "1" * 64))
    assert read_manifest(moto.client(), bucket, manifest_key(key)).run_id == "aaa"


def test_a_run_whose_manifest_is_refused_deletes_neither_the_other_runs_manifest_nor_its_archive(
        moto, bucket, tmp_path):
    config = write_config(tmp_path, bucket=bucket, endpoint=moto.endpoint,
                          strategies=[{"name": "main", "database_url": "postgres://u@127.0.0.1:1/shop"}])
    strategy = load_config(config, environ={"AWS_ACCESS_KEY_ID": ACCESS_KEY,
                                            "AWS_SECRET_ACCESS_KEY": SECRET_KEY}).strategies[0]
    client = make_client(strategy.s3)
    key = "backups/main/shop/2024-05-01T020000Z.dump.gz"
    client.put_object(Bucket=bucket, Key=key, Body=b"the other run's archive")
    write_manifest(client, bucket, _manifest("other", key))
    ctx = AttemptContext(strategy=strategy, run_id="mine", run_timestamp="2024-05-01T020000Z", private_dir=tmp_path,
                         client=client, emit=lambda *a, **k: None, cancel=threading.Event())
    with pytest.raises(EasybackupError):
        _commit(ctx, _manifest("mine", key, "1" * 64))
    assert sorted(moto.list_keys(bucket)) == sorted([key, manifest_key(key)])
    assert read_manifest(client, bucket, manifest_key(key)).run_id == "other"
