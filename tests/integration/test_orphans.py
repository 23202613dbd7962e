"""No archive without a manifest stays forever (issue 22, item 3): one older than the longest run its strategy allows
is garbage — the supervisor deletes it at start (logged, counted in a metric), `prune` deletes it, `list --all`
shows it; and `once` aborts its strategies' stale multipart uploads as the supervisor does.

Objects cannot be back-dated in S3, so the supervisor and the CLI run under libfaketime two hours ahead: an archive
written now is two hours old to them. The strategy `short` allows runs of 1 s + the 1 h margin; `long` allows 5 h.
"""

from __future__ import annotations

import glob
import json
import subprocess

import pytest

from easybackup.storage.layout import manifest_key
from easybackup.storage.manifest import Manifest
from tests.harness.configs import EASYBACKUP, cli_env, run_cli, write_config
from tests.harness.daemon import daemon_factory, monitoring, wait_until
from tests.harness.net import free_port

ORPHAN = "backups/short/shop/2024-05-01T020000Z-0123456789ab.dump.gz"
YOUNG_ENOUGH = "backups/long/shop/2024-05-01T020000Z-0123456789ab.dump.gz"  # no manifest, but `long` may still run
BACKUP = "backups/short/shop/2024-05-01T010000Z-aaaaaaaaaaaa.dump.gz"
FOREIGN = ("backups/short/shop/notes.txt", "backups/short/shop/2024-05-01T020000Z.dump.gz.bak")


@pytest.fixture
def start_daemon(tmp_path):
    yield from daemon_factory(tmp_path)


def strategies() -> list[dict]:
    dead = "postgres://u:p@127.0.0.1:1/shop"
    return [{"name": "short", "database_url": dead, "catch_up": False, "timeout": {"backup": "1s"}},
            {"name": "long", "database_url": dead, "catch_up": False, "timeout": {"backup": "5h"}}]


def store_objects(moto, bucket: str) -> None:
    client = moto.client()
    manifest = Manifest(strategy="short", database="shop", run_id="aaaaaaaaaaaa", key=BACKUP,
                        started_at="2024-05-01T01:00:00Z", finished_at="2024-05-01T01:00:05Z", stored_bytes=6,
                        sha256="0" * 64, compression="gzip", format="custom")
    client.put_object(Bucket=bucket, Key=BACKUP, Body=b"backup")
    client.put_object(Bucket=bucket, Key=manifest_key(BACKUP), Body=manifest.to_json().encode())
    for key in (ORPHAN, YOUNG_ENOUGH, *FOREIGN):
        client.put_object(Bucket=bucket, Key=key, Body=b"x" * 1000)


def env_ahead() -> dict:
    """The environment of a process whose wall clock runs two hours ahead (libfaketime, preloaded: the signals
    reach easybackup itself, not a wrapper)."""
    found = sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1") + glob.glob("/usr/lib/faketime/libfaketime.so.1"))
    assert found, "libfaketime not found: apt-get install faketime (make test does)"
    return cli_env(LD_PRELOAD=found[0], FAKETIME="+2h", FAKETIME_DONT_FAKE_MONOTONIC="1")


def cli_ahead(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*EASYBACKUP, *args], env=env_ahead(), capture_output=True, text=True, timeout=120)


def test_the_supervisor_at_start_deletes_an_archive_without_a_manifest_older_than_the_longest_run_and_counts_it(
        moto, bucket, tmp_path, start_daemon):
    store_objects(moto, bucket)
    port = free_port()
    config = write_config(tmp_path, bucket=bucket, endpoint=moto.endpoint, strategies=strategies(),
                          monitoring=monitoring(port))
    daemon = start_daemon(config, port, env=env_ahead())
    daemon.wait_log(f"deleting {ORPHAN}: an archive without a manifest", timeout=30)
    wait_until(lambda: ORPHAN not in moto.list_keys(bucket), 10, "the orphan to be deleted")
    # The reader deletes first and hands its answer to the loop after: the count lands on the loop's next tick.
    short = ("easybackup_orphaned_archives_deleted_total", (("strategy", "short"),))
    wait_until(lambda: daemon.metrics().get(short) == 1, 10, "the deleted orphan to be counted")
    samples = daemon.metrics()
    assert samples[short] == 1
    assert samples[("easybackup_orphaned_archives_deleted_total", (("strategy", "long"),))] == 0
    assert sorted(moto.list_keys(bucket)) == sorted([BACKUP, manifest_key(BACKUP), YOUNG_ENOUGH, *FOREIGN])
    assert daemon.stop() == 0


def test_list_all_shows_the_orphan_and_prune_deletes_it_and_nothing_else(moto, bucket, tmp_path):
    store_objects(moto, bucket)
    config = write_config(tmp_path, bucket=bucket, endpoint=moto.endpoint, strategies=strategies())
    listed = cli_ahead("list", "-c", str(config), "--all", "--json")
    assert listed.returncode == 0, listed.stderr
    others = {doc["name"]: {item["key"]: item["kind"] for item in doc["others"]}
              for doc in json.loads(listed.stdout)["strategies"]}
    assert others["short"] == {ORPHAN: "orphaned", FOREIGN[0]: "foreign", FOREIGN[1]: "foreign"}
    assert others["long"] == {YOUNG_ENOUGH: "incomplete"}
    text = cli_ahead("list", "-c", str(config), "--all")
    assert f"orphaned    {ORPHAN}" in text.stdout, text.stdout

    dry = cli_ahead("prune", "-c", str(config), "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert f"would delete {ORPHAN}" in dry.stdout and ORPHAN in moto.list_keys(bucket)
    pruned = cli_ahead("prune", "-c", str(config))
    assert pruned.returncode == 0, pruned.stderr
    assert f"deleted {ORPHAN}" in pruned.stdout
    assert sorted(moto.list_keys(bucket)) == sorted([BACKUP, manifest_key(BACKUP), YOUNG_ENOUGH, *FOREIGN])
    assert run_cli("prune", "-c", str(config)).returncode == 0  # at the real time nothing else is old enough


def test_once_aborts_its_strategies_stale_multipart_uploads_as_the_supervisor_does(pg, moto, bucket, tmp_path):
    pg.create_database("orphans_once")
    client = moto.client()
    stale = "backups/main/orphans_once/2020-01-01T000000Z.dump.gz"
    client.create_multipart_upload(Bucket=bucket, Key=stale)
    client.create_multipart_upload(Bucket=bucket, Key="not-ours/2020-01-01T000000Z.dump.gz")
    # Stale: older than timeout.backup by the key's run timestamp (2020) and by moto's `Initiated` (a fixed date in
    # 2010). A timeout of a second or two made the backup itself time out on a loaded machine.
    config = write_config(tmp_path, bucket=bucket, endpoint=moto.endpoint, timeout={"backup": "60s"},
                          strategies=[{"name": "main", "database_url": pg.url("orphans_once")}])
    result = run_cli("once", "-c", str(config))
    assert result.returncode == 0, result.stderr
    assert f"aborting a stale multipart upload of {stale}" in result.stderr
    assert [upload["Key"] for upload in moto.open_uploads(bucket)] == ["not-ours/2020-01-01T000000Z.dump.gz"]
