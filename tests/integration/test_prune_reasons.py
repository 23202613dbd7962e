"""`prune --dry-run` and `prune` say, backup by backup, which rule keeps it or why it goes: real PostgreSQL backups
taken by `once` at chosen dates (libfaketime), then pruned through the CLI with tiers in Europe/Berlin."""

from __future__ import annotations

import glob
import time
from datetime import datetime, timezone

from tests.harness.configs import cli_env, run_cli, write_config

# When each `once` runs (UTC; Berlin is two hours ahead in May): Mon and Sun of ISO week 21, Fri and Sat (twice)
# of week 22.
RUNS = ("2026-05-18 10:00:00", "2026-05-24 10:00:00", "2026-05-29 10:00:00", "2026-05-30 09:00:00",
        "2026-05-30 10:00:00")
TIERS = {"keep_last": 1, "daily": 2, "weekly": 2}


def libfaketime() -> str:
    found = sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1") + glob.glob("/usr/lib/faketime/libfaketime.so.1"))
    assert found, "libfaketime not found: apt-get install faketime (make test does)"
    return found[0]


def at(moment: str) -> dict:
    """The CLI's environment with its wall clock starting at `moment` (UTC); the monotonic clock stays real. An
    offset, as tests/reliability/test_faults_clock.py gives it: libfaketime's absolute `@` start upset Python's
    thread locks in the worker (`release unlocked lock`)."""
    offset = datetime.fromisoformat(moment).replace(tzinfo=timezone.utc).timestamp() - time.time()
    return cli_env(LD_PRELOAD=libfaketime(), FAKETIME=f"{offset:+.3f}", FAKETIME_DONT_FAKE_MONOTONIC="1", TZ="UTC")


def take_backups(pg, moto, bucket: str, tmp_path) -> list[str]:
    """Run `once` at each of RUNS, keeping everything; return the archive keys, oldest first."""
    pg.create_database("prune_reasons")
    pg.psql("CREATE TABLE t AS SELECT g, md5(g::text) AS h FROM generate_series(1, 500) g", "prune_reasons")
    strategy = {"name": "ledger", "database_url": pg.url("prune_reasons"), "timezone": "Europe/Berlin",
                "retention": "3650d"}
    config = write_config(tmp_path, bucket=bucket, endpoint=moto.endpoint, strategies=[strategy], name="take.yaml")
    for moment in RUNS:
        result = run_cli("once", "-c", str(config), env=at(moment))
        assert result.returncode == 0, result.stderr
    manifests = sorted(key for key in moto.list_keys(bucket) if key.endswith(".manifest.json"))
    assert len(manifests) == len(RUNS) and manifests[0].startswith("backups/ledger/prune_reasons/2026-05-18T100")
    return [key.removesuffix(".manifest.json") + ".dump.gz" for key in manifests]


def test_prune_dry_run_and_prune_say_which_tier_keeps_each_backup_and_why_the_others_go(pg, moto, bucket, tmp_path):
    monday, sunday, friday, saturday_early, saturday = take_backups(pg, moto, bucket, tmp_path)
    assert all(key in moto.list_keys(bucket) for key in (monday, saturday))
    strategy = {"name": "ledger", "database_url": pg.url("prune_reasons"), "timezone": "Europe/Berlin",
                "retention": TIERS}
    config = write_config(tmp_path, bucket=bucket, endpoint=moto.endpoint, strategies=[strategy])
    before = set(moto.list_keys(bucket))

    dry = run_cli("prune", "-c", str(config), "--dry-run")
    assert dry.returncode == 0, dry.stderr
    expected = [
        "ledger: would delete 2 backup(s), kept 3 (retention keep_last 1, daily 2, weekly 2 (Europe/Berlin))",
        f"  would delete {monday} (and its manifest): not among the newest 1; daily: 2026-05-18 is older than the "
        f"newest 2; weekly: {sunday} is newer in 2026-W21",
        f"  keep {sunday}: weekly 2/2 (2026-W21)",
        f"  keep {friday}: daily 2/2 (2026-05-29)",
        f"  would delete {saturday_early} (and its manifest): not among the newest 1; daily: {saturday} is newer in "
        f"2026-05-30; weekly: {saturday} is newer in 2026-W22",
        f"  keep {saturday}: newest; keep_last 1; daily 1/2 (2026-05-30); weekly 1/2 (2026-W22)",
    ]
    assert dry.stdout.splitlines()[:len(expected)] == expected
    assert set(moto.list_keys(bucket)) == before

    pruned = run_cli("prune", "-c", str(config))
    assert pruned.returncode == 0, pruned.stderr
    assert pruned.stdout.splitlines()[:len(expected)] == [line.replace("would delete", "deleted") for line in expected]
    # the log of a real prune says the same, backup by backup
    assert f"retention deletes {monday} and its manifest: not among the newest 1; daily: 2026-05-18 is older" \
        in pruned.stderr
    assert f"retention keeps {sunday}: weekly 2/2 (2026-W21)" in pruned.stderr
    gone = {monday, monday.removesuffix(".dump.gz") + ".manifest.json", saturday_early,
            saturday_early.removesuffix(".dump.gz") + ".manifest.json"}
    assert set(moto.list_keys(bucket)) == before - gone  # run records (`_runs/`) stay: the newest 20 always do


def test_a_plain_duration_says_which_backups_are_young_enough_and_how_old_the_others_are(pg, moto, bucket,
                                                                                         tmp_path):
    monday, sunday, friday, saturday_early, saturday = take_backups(pg, moto, bucket, tmp_path)
    strategy = {"name": "ledger", "database_url": pg.url("prune_reasons"), "retention": "7d", "keep_last": 2}
    config = write_config(tmp_path, bucket=bucket, endpoint=moto.endpoint, strategies=[strategy])
    dry = run_cli("prune", "-c", str(config), "--dry-run", env=at("2026-05-31 12:00:00"))
    assert dry.returncode == 0, dry.stderr
    lines = dry.stdout.splitlines()
    assert lines[0] == "ledger: would delete 2 backup(s), kept 3 (retention 7d (keep_last 2))"
    assert lines[1] == (f"  would delete {monday} (and its manifest): started 13d 2h ago, past retention 7d; "
                        "not among the newest 2")
    assert lines[2].startswith(f"  would delete {sunday} (and its manifest): started 7d 2h")
    assert lines[3] == f"  keep {friday}: younger than retention 7d"
    assert lines[5] == f"  keep {saturday}: newest; keep_last 2; younger than retention 7d"
