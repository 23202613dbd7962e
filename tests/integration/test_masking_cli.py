"""Masking that doesn't mangle, through the CLI as typed: with a database password `backup` and an S3 key `test`
(issue 23), `once` prints the real key, the log says `pwdb: backup started` and `Slack auth.test failed`, a
restore's hint names a key that can be pasted, and `validate` warns that such secrets are too short to mask."""

from __future__ import annotations

import re
import subprocess

import pytest

from tests.harness.configs import cli_env, restore_target, run_cli, write_config
from tests.harness.restore import archive_keys

PASSWORD = "backup"  # the database password: a word every log line about a backup holds
S3_KEY = "test"  # the S3 access and secret key: in `test-main`, `auth.test`, pytest's paths
ROLE, DATABASE, STRATEGY, BASE = "shorty", "pwdb", "test-main", "db-backups"


@pytest.fixture(scope="module")
def pwdb(pg) -> str:
    """A database owned by a role whose password is `backup`; ~20 MB stored uncompressed, so a restore that fails
    at its first statement stops the download early (and its hint names the key to verify)."""
    pg.psql(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
    pg.psql(f"DROP ROLE IF EXISTS {ROLE}")
    pg.psql(f"CREATE ROLE {ROLE} LOGIN PASSWORD '{PASSWORD}'")
    pg.psql(f"CREATE DATABASE {DATABASE} OWNER {ROLE}")
    pg.psql(f"SET ROLE {ROLE}; CREATE TABLE bulk AS SELECT g AS id, md5(g::text) || md5((g * 7)::text) "
            "|| md5((g * 13)::text) AS a FROM generate_series(1, 200000) g", DATABASE)
    return DATABASE


def env() -> dict:
    """The CLI's environment without AWS keys: the config's short ones are the ones in use (moto takes any)."""
    return {key: value for key, value in cli_env().items() if not key.startswith("AWS_")}


def short_secret_config(tmp_path, pg, moto, bucket: str, slack) -> str:
    return str(write_config(
        tmp_path, bucket=bucket, endpoint=moto.endpoint,
        strategies=[{"name": STRATEGY, "database_url": pg.url(DATABASE, user=ROLE, password=PASSWORD)}],
        s3={"base_path": BASE, "compression": "none", "credentials": {"access_key": S3_KEY, "secret_key": S3_KEY}},
        slack={"bot_token": "xoxb-4242-short-secrets", "channel_id": "C0123456789", "api_url": slack.api_url}))


def test_once_with_short_secrets_prints_the_real_key_and_whole_words(pg, moto, bucket, tmp_path, pwdb, slack):
    slack.tokens.add("xoxb-4242-short-secrets")
    slack.respond_error("auth.test", "invalid_auth")
    config = short_secret_config(tmp_path, pg, moto, bucket, slack)
    result = run_cli("once", "-c", config, env=env(), timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    [key] = archive_keys(moto, bucket)
    assert key.startswith(f"{BASE}/{STRATEGY}/{DATABASE}/")
    assert key in result.stdout.splitlines()[1], result.stdout  # the summary's row, pasteable
    assert f"{DATABASE}: backup started" in result.stderr
    assert f"{DATABASE}: backup succeeded" in result.stderr and f"→ {key}" in result.stderr
    assert "Slack auth.test failed: invalid_auth" in result.stderr
    mangled = re.findall(r"\S*(?:\w\*\*\*|\*\*\*\w)\S*", result.stdout + result.stderr)
    assert mangled == [], mangled


def test_a_failed_restores_hint_names_a_key_that_can_be_pasted(pg, moto, bucket, tmp_path, pwdb, slack):
    config = short_secret_config(tmp_path, pg, moto, bucket, slack)
    assert run_cli("once", "-c", config, env=env(), timeout=180).returncode == 0
    [key] = archive_keys(moto, bucket)
    # A target role that may not create tables: pg_restore stops at the first one, the download with it.
    pg.psql(f"DROP ROLE IF EXISTS restore_short; CREATE ROLE restore_short LOGIN PASSWORD '{PASSWORD}'")
    pg.create_database("pwdb_restored")
    target, with_password = restore_target(pg.url("pwdb_restored", user="restore_short", password=PASSWORD))
    restore_env = {**env(), "EASYBACKUP_TARGET_PASSWORD": with_password["EASYBACKUP_TARGET_PASSWORD"]}
    failed = run_cli("restore", "-c", config, "--strategy", STRATEGY, "--target-url", target, env=restore_env,
                     stdin=subprocess.DEVNULL, timeout=180)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    hinted = re.search(r"`easybackup (verify --backup \S+)` checks it", failed.stderr)
    assert hinted is not None, failed.stderr
    assert hinted.group(1) == f"verify --backup {key}"
    pasted = run_cli(*hinted.group(1).split(), "-c", config, env=env(), stdin=subprocess.DEVNULL, timeout=180)
    assert pasted.returncode == 0, pasted.stdout + pasted.stderr


def test_validate_warns_about_secrets_too_short_to_mask_without_showing_them(pg, moto, bucket, tmp_path, slack):
    config = short_secret_config(tmp_path, pg, moto, bucket, slack)
    result = run_cli("validate", "-c", config, env=env())
    assert result.returncode == 0, result.stdout + result.stderr
    warnings = [line for line in result.stderr.splitlines() if "too short to be masked safely" in line]
    assert len(warnings) == 3, result.stderr  # the URL's password, the access key, the secret key
    assert all(f"strategy {STRATEGY}: " in line and "shorter than 8 characters" in line for line in warnings)
    assert any(f"the password in database {DATABASE}'s URL" in line for line in warnings)
    assert any("s3.credentials.secret_key" in line for line in warnings)
    shown = [line.split(" | ", 3)[-1].replace(f"strategy {STRATEGY}:", "") for line in warnings]
    assert not any(re.search(rf"\b({PASSWORD}|{S3_KEY})\b|\*\*\*", line) for line in shown), shown
    assert "xoxb" not in result.stderr  # a long secret draws no warning


def test_validate_is_quiet_about_long_secrets(pg, moto, bucket, tmp_path):
    config = write_config(tmp_path, bucket=bucket, endpoint=moto.endpoint,
                          strategies=[{"name": "main", "database_url": pg.url(DATABASE, password="Pw-Zq9-7781")}],
                          s3={"credentials": {"access_key": "AKIAEASYBACKUPTEST", "secret_key": "AwsSecret-XY42"}})
    result = run_cli("validate", "-c", str(config), env=env())
    assert result.returncode == 0 and "too short" not in result.stderr, result.stderr
