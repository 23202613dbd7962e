"""The retention plan: delete what is older than `retention`, never the newest `keep_last` of a database."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from easybackup.catalogue.retention import deletion_batches, plan_retention
from easybackup.storage.layout import archive_key, manifest_key

NOW = datetime(2024, 6, 1, 12, 0, tzinfo=timezone.utc)
DAY = 86400.0


@dataclass(frozen=True)
class Backup:
    key: str
    started_at: str


def backup(database: str, started: datetime, strategy: str = "main") -> Backup:
    stamp = started.strftime("%Y-%m-%dT%H%M%SZ")
    return Backup(archive_key("backups", strategy, database, stamp, "custom", "gzip"),
                  started.strftime("%Y-%m-%dT%H:%M:%SZ"))


def synthetic(count: int, span_days: float, databases=("shop", "crm")) -> list[Backup]:
    """`count` backups spread evenly over the `span_days` before NOW, databases taking turns."""
    step = timedelta(days=span_days) / count
    return [backup(databases[i % len(databases)], NOW - step * (i + 1)) for i in range(count)]


def test_of_2500_backups_over_90_days_exactly_those_older_than_30_days_are_deleted():
    backups = synthetic(2500, 90)
    delete, keep = plan_retention(backups, NOW, 30 * DAY, keep_last=3)
    cutoff = NOW - timedelta(days=30)
    expected = {b.key for b in backups if datetime.strptime(b.started_at, "%Y-%m-%dT%H:%M:%SZ")
                .replace(tzinfo=timezone.utc) < cutoff}
    assert {b.key for b in delete} == expected
    assert {b.key for b in keep} == {b.key for b in backups} - expected
    assert 1650 <= len(delete) <= 1680  # two thirds of them, as a sanity check of the data itself


def test_when_every_backup_is_older_than_retention_the_newest_three_of_each_database_survive():
    backups = [backup(db, NOW - timedelta(days=100 + i)) for i in range(50) for db in ("shop", "crm", "hr")]
    delete, keep = plan_retention(backups, NOW, 30 * DAY, keep_last=3)
    newest = {b.key for b in backups if b.started_at >= (NOW - timedelta(days=102)).strftime("%Y-%m-%dT%H:%M:%SZ")}
    assert {b.key for b in keep} == newest and len(keep) == 9
    assert len(delete) == 141


def test_keep_last_counts_per_database_not_per_strategy():
    old = [backup("shop", NOW - timedelta(days=40 + i)) for i in range(5)]
    fresh = [backup("crm", NOW - timedelta(hours=i)) for i in range(5)]
    delete, keep = plan_retention(old + fresh, NOW, 30 * DAY, keep_last=2)
    assert {b.key for b in delete} == {b.key for b in old[2:]}
    assert len(keep) == 7


def test_a_backup_exactly_at_the_retention_age_is_kept():
    at_edge = backup("shop", NOW - timedelta(days=30))
    just_older = backup("shop", NOW - timedelta(days=30, seconds=1))
    delete, keep = plan_retention([at_edge, just_older], NOW, 30 * DAY, keep_last=0)
    assert delete == [just_older] and keep == [at_edge]


def test_the_globals_dumps_are_their_own_group():
    old_db = [backup("shop", NOW - timedelta(days=60 + i)) for i in range(3)]
    old_globals = [Backup(f"backups/main/_globals/{(NOW - timedelta(days=60 + i)):%Y-%m-%dT%H%M%SZ}.sql.gz",
                          (NOW - timedelta(days=60 + i)).strftime("%Y-%m-%dT%H:%M:%SZ")) for i in range(3)]
    delete, keep = plan_retention(old_db + old_globals, NOW, 30 * DAY, keep_last=1)
    assert {b.key for b in keep} == {old_db[0].key, old_globals[0].key}
    assert len(delete) == 4


def test_the_plan_does_not_depend_on_the_order_it_is_given():
    backups = synthetic(300, 90)
    forwards = plan_retention(backups, NOW, 30 * DAY, keep_last=3)
    backwards = plan_retention(list(reversed(backups)), NOW, 30 * DAY, keep_last=3)
    assert forwards == backwards


def test_deletion_batches_hold_at_most_1000_keys_and_never_split_an_archive_from_its_manifest():
    backups = synthetic(1201, 90)
    batches = deletion_batches(backups)
    assert [len(batch) for batch in batches] == [1000, 1000, 402]
    for batch in batches:
        archives = [key for key in batch if not key.endswith(".manifest.json")]
        assert sorted(batch) == sorted(archives + [manifest_key(key) for key in archives])


def test_manifests_go_first_and_an_archive_whose_manifest_stays_is_kept():
    from easybackup.catalogue.retention import _delete_manifests_then_archives
    from easybackup.logs import log
    from easybackup.storage.layout import manifest_key

    stuck, gone = "b/s/db/2020-01-01T000000Z.dump", "b/s/db/2020-01-02T000000Z.dump"

    class RefusesOneManifest:
        def __init__(self):
            self.requests = []

        def delete_objects(self, Bucket, Delete):
            keys = [item["Key"] for item in Delete["Objects"]]
            self.requests.append(keys)
            return {"Errors": [{"Key": key, "Code": "AccessDenied"} for key in keys if key == manifest_key(stuck)]}

    client = RefusesOneManifest()
    failed = _delete_manifests_then_archives(client, "bucket", [stuck, manifest_key(stuck), gone, manifest_key(gone)],
                                             log)
    assert client.requests == [[manifest_key(stuck), manifest_key(gone)], [gone]]
    assert set(failed) == {manifest_key(stuck)}, "the archive behind a surviving manifest must stay a whole backup"
