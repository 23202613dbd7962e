"""`pin` and `unpin` through the CLI over real PostgreSQL backups in moto: a pinned backup is never deleted by
`prune` or by a run's retention until its pin ends, `list` shows pins, and the pin is in S3 (every new process sees
it)."""

from __future__ import annotations

import json

from easybackup.storage.layout import manifest_key, pin_key
from tests.harness.configs import run_cli, write_config
from tests.integration.test_prune_reasons import TIERS, at, take_backups


def test_a_pinned_backup_outlives_retention_until_unpinned_or_its_pin_ends(pg, moto, bucket, tmp_path):
    monday, sunday, friday, saturday_early, saturday = take_backups(pg, moto, bucket, tmp_path)
    strategy = {"name": "ledger", "database_url": pg.url("prune_reasons"), "timezone": "Europe/Berlin",
                "retention": TIERS}
    config = str(write_config(tmp_path, bucket=bucket, endpoint=moto.endpoint, strategies=[strategy]))
    # without pins, tiers would delete monday and saturday_early (tests/integration/test_prune_reasons.py)
    pinned = run_cli("pin", monday, "--note", "audit 2026", "-c", config)
    assert pinned.returncode == 0, pinned.stderr
    assert pinned.stdout.strip() == f"{monday}: pinned (audit 2026) ({pin_key(monday)})"
    until = run_cli("pin", manifest_key(saturday_early), "--until", "2027-01-01", "-c", config)
    assert until.returncode == 0, until.stderr
    assert f"{saturday_early}: pinned until 2027-01-01T00:00:00Z" in until.stdout

    listed = run_cli("list", "-c", config)
    assert f"{monday}  (pinned (audit 2026))" in listed.stdout
    assert f"{saturday_early}  (pinned until 2027-01-01T00:00:00Z)" in listed.stdout
    assert f"{friday}  (pinned" not in listed.stdout
    backups = json.loads(run_cli("list", "--json", "-c", config).stdout)["strategies"][0]["backups"]
    assert [b.get("pin", {}).get("note") for b in backups] == ["audit 2026", None, None, None, None]
    assert len(backups) == 5  # a pin is not a backup
    everything = run_cli("list", "--all", "-c", config).stdout
    assert f"pin         {pin_key(monday)}" in everything and "foreign" not in everything

    dry = run_cli("prune", "--dry-run", "-c", config)
    assert dry.returncode == 0, dry.stderr
    assert "ledger: would delete 0 backup(s), kept 5" in dry.stdout
    assert f"  keep {monday}: pinned (audit 2026)\n" in dry.stdout
    assert f"  keep {saturday_early}: pinned until 2027-01-01T00:00:00Z\n" in dry.stdout
    before = set(moto.list_keys(bucket))
    assert run_cli("prune", "-c", config).returncode == 0
    assert set(moto.list_keys(bucket)) == before

    unpinned = run_cli("unpin", monday, "-c", config)
    assert unpinned.returncode == 0 and unpinned.stdout.strip() == f"{monday}: unpinned"
    again = run_cli("unpin", monday, "-c", config)
    assert again.returncode == 2 and f"{monday} is not pinned" in again.stderr
    pruned = run_cli("prune", "-c", config)
    assert f"  deleted {monday} (and its manifest): not among the newest 1" in pruned.stdout
    assert monday not in moto.list_keys(bucket) and saturday_early in moto.list_keys(bucket)

    # once the pin's date has passed, the backup goes, and its pin with it
    later = run_cli("prune", "-c", config, env=at("2027-01-02 00:00:00"))
    assert later.returncode == 0, later.stderr
    assert f"  deleted {saturday_early} (and its manifest): not among the newest 1" in later.stdout
    left = set(moto.list_keys(bucket))
    assert saturday_early not in left and pin_key(saturday_early) not in left
    assert {sunday, friday, saturday} <= left


def test_a_runs_retention_keeps_a_pinned_backup(pg, moto, bucket, tmp_path):
    monday, sunday, friday, saturday_early, saturday = take_backups(pg, moto, bucket, tmp_path)
    strategy = {"name": "ledger", "database_url": pg.url("prune_reasons"), "timezone": "Europe/Berlin",
                "retention": {"keep_last": 1}}
    config = str(write_config(tmp_path, bucket=bucket, endpoint=moto.endpoint, strategies=[strategy]))
    assert run_cli("pin", friday, "-c", config).returncode == 0
    run = run_cli("once", "-c", config)
    assert run.returncode == 0, run.stderr
    left = set(moto.list_keys(bucket))
    assert friday in left and pin_key(friday) in left
    assert not {monday, sunday, saturday_early, saturday} & left
    assert "retention: deleted 4 backup(s), kept 2" in run.stderr


def test_pin_refuses_a_key_that_names_no_backup_and_a_date_in_the_past(pg, moto, bucket, tmp_path):
    strategy = {"name": "ledger", "database_url": pg.url("postgres")}
    config = str(write_config(tmp_path, bucket=bucket, endpoint=moto.endpoint, strategies=[strategy]))
    missing = run_cli("pin", "backups/ledger/shop/2026-05-18T100000Z-abc.dump.gz", "-c", config)
    assert missing.returncode == 2 and "no manifest for backups/ledger/shop/2026-05-18T100000Z-abc.dump.gz" \
        in missing.stderr
    assert run_cli("pin", "nonsense", "-c", config).returncode == 2
    past = run_cli("pin", "backups/ledger/shop/2026-05-18T100000Z-abc.dump.gz", "--until", "2020-01-01", "-c", config)
    assert past.returncode == 2 and "--until '2020-01-01' is not in the future" in past.stderr
    assert [key for key in moto.list_keys(bucket) if key.endswith(".pin.json")] == []
