"""Write-only backups: with `s3.prune_credentials`, backup runs delete nothing with the backup key. In front of
moto's S3 a proxy refuses every delete signed with the backup key (as IAM does for a key without s3:DeleteObject):
backups still succeed, and retention, orphan cleanup and `prune` delete with the prune key."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from tests.harness.configs import run_cli, write_config
from tests.harness.moto_server import ACCESS_KEY
from tests.integration.test_prune_reasons import at

PRUNE_KEY = {"access_key": "prune-key-id-0001", "secret_key": "prune-S3-secret-0001"}


def signer(request) -> str:
    return request.headers.get("authorization", "").partition("Credential=")[2].partition("/")[0]


def deletes_by(proxy, key_id: str) -> list:
    return [r for r in proxy.requests if signer(r) == key_id and r.forwarded and r.status in (200, 204)
            and (r.method == "DELETE" or r.path.endswith(("?delete", "?delete=")))]


def test_backups_succeed_with_a_key_that_cannot_delete_and_the_prune_key_does_the_deleting(
        pg, moto, bucket, tmp_path, fault_proxy):
    pg.create_database("write_only")
    pg.psql("CREATE TABLE t AS SELECT g FROM generate_series(1, 100) g", "write_only")
    proxy = fault_proxy("127.0.0.1", moto.port, "http")
    proxy.refuse_deletes(ACCESS_KEY)  # the backup key ($AWS_ACCESS_KEY_ID of the CLI's environment)
    strategy = {"name": "vault", "database_url": pg.url("write_only"), "schedule": "1h", "retention": "1h",
                "keep_last": 1}
    backup_only = str(write_config(tmp_path, bucket=bucket, endpoint=proxy.url, strategies=[strategy],
                                   name="backup-only.yaml"))
    with_prune = str(write_config(tmp_path, bucket=bucket, endpoint=proxy.url, strategies=[strategy],
                                  s3={"prune_credentials": PRUNE_KEY}))
    now = datetime.now(timezone.utc)
    first = run_cli("once", "-c", backup_only, env=at(f"{now - timedelta(hours=3):%Y-%m-%d %H:%M:%S}"))
    assert first.returncode == 0, first.stderr

    # Without the prune key the run's retention tries the backup key, and the store refuses: the run still succeeds.
    second = run_cli("once", "-c", backup_only)
    assert second.returncode == 0, second.stderr
    assert proxy.deletes_refused >= 1 and "AccessDenied" in second.stderr
    assert len([key for key in moto.list_keys(bucket) if key.endswith(".manifest.json")]) == 2

    refused = proxy.deletes_refused
    third = run_cli("once", "-c", with_prune)
    assert third.returncode == 0, third.stderr
    assert proxy.deletes_refused == refused  # the backup key tried no delete at all
    assert deletes_by(proxy, PRUNE_KEY["access_key"])  # retention deleted with the prune key
    manifests = sorted(key for key in moto.list_keys(bucket) if key.endswith(".manifest.json"))
    assert len(manifests) == 2 and "retention: deleted" in third.stderr  # the 3 h old backup went
    assert PRUNE_KEY["secret_key"] not in third.stdout + third.stderr

    # `prune` and its orphan cleanup delete with the prune key too (a day later the archive is an orphan).
    orphan = "backups/vault/write_only/2020-01-01T000000Z-0123456789ab.dump.gz"
    moto.client().put_object(Bucket=bucket, Key=orphan, Body=b"cut short")
    pruned = run_cli("prune", "-c", with_prune, env=at(f"{now + timedelta(days=1):%Y-%m-%d %H:%M:%S}"))
    assert pruned.returncode == 0, pruned.stdout + pruned.stderr
    assert f"deleted {orphan}" in pruned.stdout and orphan not in moto.list_keys(bucket)
    assert proxy.deletes_refused == refused
    moto.client().put_object(Bucket=bucket, Key=orphan, Body=b"cut short again")
    refused_prune = run_cli("prune", "-c", backup_only, env=at(f"{now + timedelta(days=1):%Y-%m-%d %H:%M:%S}"))
    assert refused_prune.returncode == 1, refused_prune.stdout + refused_prune.stderr  # the backup key cannot
    assert f"NOT DELETED {orphan}" in refused_prune.stdout and proxy.deletes_refused > refused
