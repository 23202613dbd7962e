"""Retention against a real S3 (moto): exactly the right backups go, archive and manifest together; foreign objects,
incomplete archives and the newest `keep_last` of each database stay."""

from __future__ import annotations

import concurrent.futures
import time
from datetime import datetime, timedelta, timezone

from easybackup.catalogue.retention import apply_retention
from easybackup.config.model import DatabaseTarget, S3Settings, Strategy
from easybackup.storage.layout import archive_key, manifest_key
from easybackup.storage.manifest import Manifest
from easybackup.storage.s3 import make_client
from tests.harness.configs import run_cli, write_config
from tests.harness.moto_server import ACCESS_KEY, SECRET_KEY

NOW = datetime(2024, 6, 1, 12, 0, tzinfo=timezone.utc)
DAY = 86400.0
FOREIGN = ("backups/main/shop/README.txt", "backups/main/shop/2020-01-01T000000Z.dump.gz.bak",
           "elsewhere/main/shop/2020-01-01T000000Z.dump.gz", "backups/main/shop/2020-01-01T000000Z.manifest.json.old")
# Ours by name but without a manifest: not a backup, so retention must leave it (list shows it as incomplete).
INCOMPLETE = "backups/main/shop/2020-02-02T000000Z.dump.gz"


def strategy_for(moto, bucket: str, retention_days: float = 30, keep_last: int = 3) -> Strategy:
    s3 = S3Settings(bucket=bucket, base_path="backups", endpoint_url=moto.endpoint, access_key=ACCESS_KEY,
                    secret_key=SECRET_KEY, force_path_style=True)
    return Strategy(name="main", databases=(DatabaseTarget("shop", "postgres://x@h/shop"),), s3=s3,
                    retention=retention_days * DAY, keep_last=keep_last)


def manifest_for(database: str, started: datetime) -> Manifest:
    stamp = started.strftime("%Y-%m-%dT%H%M%SZ")
    return Manifest(strategy="main", database=database, run_id=stamp, key=archive_key("backups", "main", database,
                    stamp, "custom", "gzip"), started_at=started.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    finished_at=started.strftime("%Y-%m-%dT%H:%M:%SZ"), stored_bytes=1, sha256="0" * 64,
                    compression="gzip", format="custom")


def store(client, bucket: str, manifests: list[Manifest], extra_keys=()) -> None:
    """Write each backup (a one-byte archive and its manifest) and the extra keys, 32 requests at a time."""
    def put(key: str, body: bytes) -> None:
        client.put_object(Bucket=bucket, Key=key, Body=body)

    jobs = [(m.key, b"x") for m in manifests] + [(manifest_key(m.key), m.to_json().encode()) for m in manifests]
    jobs += [(key, b"not ours") for key in extra_keys]
    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        list(pool.map(lambda job: put(*job), jobs))


def all_keys(client, bucket: str) -> set[str]:
    paginator = client.get_paginator("list_objects_v2")
    return {item["Key"] for page in paginator.paginate(Bucket=bucket) for item in page.get("Contents", [])}


def test_of_300_backups_over_90_days_exactly_those_past_30_days_are_deleted_with_their_manifests(moto, bucket):
    # The plan itself is tested with 2,500 backups in tests/unit/test_retention.py; moto takes ~15 ms a backup.
    strategy = strategy_for(moto, bucket)
    client = make_client(strategy.s3)
    step = timedelta(days=90) / 300
    backups = [manifest_for(("shop", "crm")[i % 2], NOW - step * (i + 1)) for i in range(300)]
    store(client, bucket, backups, FOREIGN + (INCOMPLETE,))
    events = []
    result = apply_retention(client, strategy, NOW, emit=lambda type, **fields: events.append((type, fields)),
                             batch_keys=100)
    old = [m for m in backups if NOW - datetime.strptime(m.started_at, "%Y-%m-%dT%H:%M:%SZ")
           .replace(tzinfo=timezone.utc) > timedelta(days=30)]
    young = [m for m in backups if m not in old]
    assert sorted(result.deleted) == sorted(m.key for m in old) and result.errors == ()
    assert result.kept == len(young) and len(old) == 200
    expected = {k for m in young for k in (m.key, manifest_key(m.key))} | set(FOREIGN) | {INCOMPLETE}
    assert all_keys(client, bucket) == expected
    assert events == [("retention", {"deleted": len(old), "kept": len(young)})]


def test_when_every_backup_is_past_retention_the_newest_three_of_each_database_survive(moto, bucket):
    strategy = strategy_for(moto, bucket)
    client = make_client(strategy.s3)
    backups = [manifest_for(db, NOW - timedelta(days=40 + i)) for i in range(12) for db in ("shop", "crm", "hr")]
    store(client, bucket, backups, FOREIGN + (INCOMPLETE,))
    result = apply_retention(client, strategy, NOW, batch_keys=10)  # several DeleteObjects batches
    survivors = [m for m in backups if m.started_at >= (NOW - timedelta(days=42)).strftime("%Y-%m-%dT%H:%M:%SZ")]
    assert len(survivors) == 9 and result.kept == 9 and len(result.deleted) == 27
    expected = {k for m in survivors for k in (m.key, manifest_key(m.key))} | set(FOREIGN) | {INCOMPLETE}
    assert all_keys(client, bucket) == expected


def test_prune_dry_run_deletes_nothing_and_prune_deletes_the_old_backups(moto, bucket, tmp_path):
    real_now = datetime.now(timezone.utc).replace(microsecond=0)
    client = make_client(strategy_for(moto, bucket).s3)
    old = [manifest_for("shop", real_now - timedelta(days=10 + i)) for i in range(4)]
    young = [manifest_for("shop", real_now - timedelta(hours=1))]
    store(client, bucket, old + young, (INCOMPLETE,))
    config = write_config(tmp_path, bucket=bucket, endpoint=moto.endpoint, retention="7d", keep_last=2,
                          strategies=[{"name": "main", "database_url": "postgres://u:p@127.0.0.1:1/shop"}])
    before = all_keys(client, bucket)
    dry = run_cli("prune", "-c", str(config), "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "would delete 3 backup(s), kept 2" in dry.stdout and all_keys(client, bucket) == before
    pruned = run_cli("prune", "-c", str(config))
    assert pruned.returncode == 0, pruned.stderr
    assert "deleted 3 backup(s), kept 2" in pruned.stdout
    assert f"incomplete (no manifest, left alone): {INCOMPLETE}" not in pruned.stdout  # written just now
    gone = {k for m in old[1:] for k in (m.key, manifest_key(m.key))}
    assert all_keys(client, bucket) == before - gone


def test_a_successful_run_applies_retention_and_a_failed_one_deletes_nothing(pg, moto, bucket, tmp_path):
    pg.create_database("retention_after_run")
    pg.psql("CREATE TABLE t AS SELECT generate_series(1, 100) AS n", "retention_after_run")
    good = [{"name": "main", "database_url": pg.url("retention_after_run"), "schedule": "1s", "retention": "1s",
             "keep_last": 1}]
    config = write_config(tmp_path, bucket=bucket, endpoint=moto.endpoint, strategies=good)
    for _ in range(3):
        result = run_cli("once", "-c", str(config))
        assert result.returncode == 0, result.stderr
        time.sleep(1.1)  # a new run timestamp each time, and the older backups pass their 1 s of retention
    manifests = [key for key in moto.list_keys(bucket) if key.endswith(".manifest.json")]
    assert len(manifests) == 1, manifests
    assert "retention: deleted 1 backup(s), kept 1" in result.stderr

    broken = [{**good[0], "database_urls": [pg.url("retention_after_run"), pg.url("no_such_db_here")]}]
    del broken[0]["database_url"]
    failing = write_config(tmp_path, bucket=bucket, endpoint=moto.endpoint, strategies=broken, name="failing.yaml")
    time.sleep(1.1)
    assert run_cli("once", "-c", str(failing)).returncode == 1
    after = [key for key in moto.list_keys(bucket) if key.endswith(".manifest.json")]
    assert set(manifests) <= set(after) and len(after) == 2, "a failed run must not delete anything"
