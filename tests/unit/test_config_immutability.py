"""`s3.object_lock` and `s3.prune_credentials`: loading, the per-strategy override, the problems, the masking."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from easybackup.config import load_config
from easybackup.config.loader import config_secrets
from easybackup.config.model import ObjectLockSettings, Strategy
from easybackup.errors import ConfigError

DAY = 86400.0


def load_all(tmp_path: Path, global_lines: str, strategy_lines: str = "", environ=None):
    path = tmp_path / "config.yaml"
    path.write_text("global:\n  s3:\n    bucket: my-backup-bucket\n" + global_lines
                    + "strategies:\n  - name: app\n    database_url: postgres://u@db:5432/app\n" + strategy_lines)
    path.chmod(0o600)
    return load_config(str(path), environ=environ or {})


def load(tmp_path: Path, global_lines: str, strategy_lines: str = "", environ=None) -> Strategy:
    return load_all(tmp_path, global_lines, strategy_lines, environ).strategies[0]


def problems(tmp_path: Path, global_lines: str, strategy_lines: str = "") -> str:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, global_lines, strategy_lines)
    return str(caught.value)


def test_object_lock_loads_its_mode_and_days_and_is_off_by_default(tmp_path):
    assert load(tmp_path, "").s3.object_lock is None
    strategy = load(tmp_path, "    object_lock: {mode: compliance, days: 35}\n")
    assert strategy.s3.object_lock == ObjectLockSettings(mode="compliance", days=35.0)


def test_days_retention_is_the_strategys_own_retention_duration(tmp_path):
    strategy = load(tmp_path, '    object_lock: {mode: governance, days: retention}\n  retention: "14d"\n',
                    '    retention: "6w"\n')
    assert strategy.s3.object_lock == ObjectLockSettings(mode="governance", days=42.0)


def test_a_strategy_overrides_globals_object_lock_key_by_key(tmp_path):
    strategy = load(tmp_path, "    object_lock: {mode: governance, days: 35}\n",
                    "    s3: {object_lock: {mode: compliance, days: 7}}\n")
    assert strategy.s3.object_lock == ObjectLockSettings(mode="compliance", days=7.0)
    assert strategy.s3.bucket == "my-backup-bucket"


def test_days_retention_with_tiers_is_refused_with_the_reason(tmp_path):
    found = problems(tmp_path, "    object_lock: {mode: governance, days: retention}\n",
                     "    retention: {keep_last: 3, hourly: 24, yearly: 3}\n")
    assert "global.s3.object_lock.days: 'retention' needs retention written as a duration" in found
    assert "give the days every backup must survive" in found


@pytest.mark.parametrize(("lines", "expected"), [
    ("    object_lock: {mode: legal, days: 3}\n", "global.s3.object_lock.mode: 'legal' is not one of"),
    ("    object_lock: {mode: governance, days: 0}\n", "global.s3.object_lock.days: 0 is less than the minimum 1"),
    ("    object_lock: {mode: governance, days: forever}\n",
     "global.s3.object_lock.days: 'forever' is not one of 'retention'"),
    ("    object_lock: {mode: governance}\n", "global.s3.object_lock.days: required key is missing"),
    ("    object_lock: {mode: governance, days: 3}\n    checksum_mode: when_required\n",
     "global.s3.checksum_mode: when_required sends no checksum, and S3 refuses a locked write without one"),
    ("    prune_credentials: {access_key: AKIAPRUNE}\n", "global.s3.prune_credentials.secret_key: required key"),
])
def test_bad_object_lock_and_prune_credentials_are_reported_where_written(tmp_path, lines, expected):
    assert expected in problems(tmp_path, lines)


def test_prune_credentials_load_apart_from_the_backup_key_and_are_secrets(tmp_path):
    config = load_all(tmp_path, "    credentials: {access_key: AKIABACKUP0001, secret_key: backup-secret-0001}\n"
                      "    prune_credentials: {access_key: '${PRUNE_KEY}', secret_key: '${PRUNE_SECRET}'}\n",
                      environ={"PRUNE_KEY": "AKIAPRUNE00001", "PRUNE_SECRET": "prune-secret-00001"})
    s3 = config.strategies[0].s3
    assert (s3.access_key, s3.prune_access_key, s3.prune_secret_key) == \
        ("AKIABACKUP0001", "AKIAPRUNE00001", "prune-secret-00001")
    found = {what: value for _name, what, value in config_secrets(config)}
    assert found["s3.prune_credentials.secret_key"] == "prune-secret-00001"
    assert found["s3.prune_credentials.access_key"] == "AKIAPRUNE00001"
    assert Strategy.from_dict(config.strategies[0].to_dict()) == config.strategies[0]  # travels to the worker


def test_a_prune_secret_in_a_schema_error_is_never_echoed(tmp_path):
    found = problems(tmp_path, "    prune_credentials: {access_key: AKIAPRUNE, secret_key: 12345678901}\n")
    assert "global.s3.prune_credentials.secret_key: expected a string" in found
    assert "12345678901" not in found


def readme_policies() -> dict[str, dict]:
    """The two IAM policies of the README's Immutability section, parsed."""
    text = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Immutability\n")[1].split("\n## ")[0]
    blocks = [block.split("```")[0] for block in section.split("```json\n")[1:]]
    assert len(blocks) == 2, "the backup key's policy, then the prune key's"
    return dict(zip(("backup", "prune"), (json.loads(block) for block in blocks), strict=True))


def actions(policy: dict) -> set[str]:
    return {action for statement in policy["Statement"] for action in statement["Action"]}


def test_the_readmes_backup_key_policy_cannot_delete_and_the_prune_key_policy_can_delete_every_version():
    policies = readme_policies()
    backup, prune = actions(policies["backup"]), actions(policies["prune"])
    assert {"s3:PutObject", "s3:GetObject", "s3:ListBucket", "s3:AbortMultipartUpload",
            "s3:ListMultipartUploadParts", "s3:GetBucketObjectLockConfiguration"} <= backup
    assert not {action for action in backup if "Delete" in action or "Bypass" in action}
    assert {"s3:DeleteObject", "s3:DeleteObjectVersion", "s3:ListBucketVersions", "s3:ListBucket"} <= prune
    assert not {action for action in prune if "Bypass" in action}
