"""`easybackup validate` exactly as an operator types it: bin/easybackup in a subprocess."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.harness.slack_server import DEFAULT_TOKEN

REPO = Path(__file__).resolve().parents[2]
OVERRIDE_VARS = ("SLACK_BOT_TOKEN", "SLACK_CHANNEL_ID", "SLACK_API_URL", "S3_BUCKET", "AWS_ACCESS_KEY_ID",
                 "AWS_SECRET_ACCESS_KEY", "DATABASE_URL", "EASYBACKUP_CONFIG")


def run_cli(cmd: list[str], *args: str, env: dict | None = None, cwd: Path | None = None):
    base = {k: v for k, v in os.environ.items() if k not in OVERRIDE_VARS}
    return subprocess.run([*cmd, "validate", *args], capture_output=True, text=True, timeout=60,
                          env={**base, **(env or {})}, cwd=cwd)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    path.chmod(0o600)
    return path


def test_the_seed_example_validates_and_shows_each_strategy(easybackup_cmd):
    done = run_cli(easybackup_cmd, "-c", str(REPO / "examples" / "config.yaml"))

    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"{REPO / 'examples' / 'config.yaml'}: valid, 3 strategies")
    for name in ("production-db", "staging-db", "analytics-db"):
        assert f"s3://my-backup-bucket/database-backups/{name}/" in done.stdout
    assert "postgres://user:***@prod-db:5432/myapp" in done.stdout and ":pass@" not in done.stdout
    assert "6h (UTC)" in done.stdout and "7d (keep_last 1)" in done.stdout
    assert "Traceback" not in done.stderr


def test_the_seed_example_validates_with_the_seed_variables_set(easybackup_cmd):
    env = {"SLACK_BOT_TOKEN": "xoxb-env-1", "SLACK_CHANNEL_ID": "C0ENVIRONMT1", "S3_BUCKET": "bucket-from-env",
           "DATABASE_URL": "postgres://u:p@h/db", "AWS_ACCESS_KEY_ID": "AKIAENV", "AWS_SECRET_ACCESS_KEY": "s"}
    done = run_cli(easybackup_cmd, "-c", str(REPO / "examples" / "config.yaml"), env=env)

    assert done.returncode == 0, done.stderr
    assert "s3://bucket-from-env/database-backups/staging-db/" in done.stdout


def test_next_run_is_shown_in_local_time_and_utc(easybackup_cmd, tmp_path):
    path = write(tmp_path, "global: {s3: {bucket: my-backup-bucket}, timezone: Asia/Kolkata}\n"
                           "strategies:\n  - {name: app, database_url: 'postgres://u@db/app', schedule: '1d@02:30'}\n")
    done = run_cli(easybackup_cmd, "-c", str(path))

    assert done.returncode == 0, done.stderr
    # 02:30 in Kolkata (UTC+05:30) is 21:00 UTC the day before.
    assert "02:30 IST (" in done.stdout and "T21:00:00Z)" in done.stdout


THREE_STRATEGIES = """\
global:
  s3: {bucket: my-backup-bucket}
  schedule: 1d
strategies:
  - name: production-db
    database_url: postgres://u@prod-db:5432/app
  - name: staging-db
  - name: analytics-db
    retention: 1h
    database_urls:
      - postgres://u@analytics-db:5432/events
      - postgres://u@analytics-db:5432/users
      - postgres://u@analytics-db:5432/reports
      - {name: billing, url: "postgres://u@:5432/billing"}
"""


def test_each_error_names_the_strategy_and_the_database_beside_their_index(easybackup_cmd, tmp_path):
    done = run_cli(easybackup_cmd, "-c", str(write(tmp_path, THREE_STRATEGIES)))

    assert done.returncode == 2
    assert [line for line in done.stderr.splitlines() if line.startswith("error: ")] == [
        "error: strategies[1] (staging-db): names no database (set database_url or database_urls, or $DATABASE_URL)",
        "error: strategies[2] (analytics-db).database_urls[3] (billing): the URL names no host "
        "(add one, or ?host=/socket/dir)",
        "error: strategies[2] (analytics-db).retention: 1h is shorter than the schedule's interval (1d); each backup "
        "would expire before the next one is taken",
    ]


@pytest.mark.parametrize(("text", "expected"), [
    ("global: [\n", ":2:1: "),
    ("strategies:\n  - {name: app, database_url: 'postgres://u@db/app', schedule: 6x}\n",
     "error: strategies[0] (app).schedule: '6x' is not a valid interval"),
    ("global: {s3: {bucket: b-1}, monitoring: {metrics: {port: 99999}}}\n"
     "strategies:\n  - {name: app, database_url: 'postgres://u@db/app'}\n",
     "error: global.monitoring.metrics.port: 99999 is more than the maximum 65535"),
    ("global: {s3: {bucket: b-1}}\nstrategies:\n  - {name: app, database_url: 'postgres://u@db/app', "
     "tunnel: {host: bastion}, proxy: {url: 'socks5://p:1080'}}\n",
     "error: strategies[0] (app).proxy: cannot be combined with tunnel"),
    ("global: {s3: {bucket: b-1}}\nstrategies:\n  - {name: app, database_url: '${UNSET_FOR_THIS_TEST}'}\n",
     "error: strategies[0] (app).database_url: environment variable UNSET_FOR_THIS_TEST is not set"),
], ids=["bad-yaml", "bad-schedule", "port-out-of-range", "tunnel-and-proxy", "unset-variable"])
def test_a_malformed_config_exits_2_with_one_line_per_error_and_no_traceback(easybackup_cmd, tmp_path, text,
                                                                             expected):
    done = run_cli(easybackup_cmd, "-c", str(write(tmp_path, text)))

    assert done.returncode == 2
    assert expected in done.stderr
    assert "Traceback" not in done.stderr
    assert all(line.startswith(("error: ", "hint: ")) for line in done.stderr.splitlines()), done.stderr


def test_a_missing_config_file_exits_2_naming_it(easybackup_cmd, tmp_path):
    done = run_cli(easybackup_cmd, "-c", str(tmp_path / "absent.yaml"))
    assert done.returncode == 2
    assert f"error: {tmp_path / 'absent.yaml'}: config file not found" in done.stderr


def connectivity_config(tmp_path: Path, bucket: str, api_url: str, token: str = DEFAULT_TOKEN,
                        app_url: str = "postgres://u@db/app", other_url: str = "postgres://u@db/other") -> Path:
    path = write(tmp_path, f"global:\n  s3: {{bucket: {bucket}}}\n"
                           f"  slack: {{bot_token: {token}, channel_id: C0123456789, api_url: '{api_url}'}}\n"
                           f"strategies:\n  - {{name: app, database_url: '{app_url}'}}\n"
                           f"  - {{name: other, database_url: '{other_url}'}}\n")
    path.chmod(0o600)
    return path


def test_check_connectivity_reaches_each_bucket_slack_token_and_database_once(easybackup_cmd, tmp_path, aws_env,
                                                                               bucket, slack, pg):
    path = connectivity_config(tmp_path, bucket, slack.api_url, app_url=pg.url("postgres"),
                               other_url=pg.url("template1"))
    done = run_cli(easybackup_cmd, "-c", str(path), "--check-connectivity", env=dict(os.environ))

    assert done.returncode == 0, done.stdout + done.stderr
    assert f"s3://{bucket}: ok" in done.stdout and f"slack {slack.api_url}: ok" in done.stdout
    assert "app: database postgres (direct): ok" in done.stdout
    assert pg.password not in done.stdout + done.stderr
    calls = slack.calls_to("auth.test")
    assert len(calls) == 1
    assert calls[0].headers["authorization"] == f"Bearer {DEFAULT_TOKEN}"
    assert calls[0].headers["content-type"] == "application/json; charset=utf-8"


def test_check_connectivity_exits_1_naming_what_failed(easybackup_cmd, tmp_path, aws_env, slack, pg):
    path = connectivity_config(tmp_path, "no-such-bucket-here", slack.api_url, token="xoxb-wrong-token",
                               app_url=pg.url("postgres", password="wrong-Pw-331"))
    done = run_cli(easybackup_cmd, "-c", str(path), "--check-connectivity", env=dict(os.environ))

    assert done.returncode == 1
    assert "s3://no-such-bucket-here: FAILED" in done.stdout
    assert "app: database postgres (direct): FAILED" in done.stdout and "authentication" in done.stdout
    assert "wrong-Pw-331" not in done.stdout + done.stderr
    assert f"slack {slack.api_url}: FAILED: Slack auth.test failed: invalid_auth" in done.stdout
    assert "connectivity check failed: " in done.stdout and f"s3://no-such-bucket-here, slack {slack.api_url}" in \
        done.stdout
    assert "xoxb-wrong-token" not in done.stdout + done.stderr
    assert "Traceback" not in done.stderr


def test_validate_is_offline_by_default(easybackup_cmd, tmp_path, slack):
    path = connectivity_config(tmp_path, "no-such-bucket-here", slack.api_url)
    done = run_cli(easybackup_cmd, "-c", str(path))

    assert done.returncode == 0, done.stderr
    assert slack.calls_to("auth.test") == []
