"""Loading valid configs: the seed example, edge cases that must load, the merge, secrets and file modes."""

from __future__ import annotations

from pathlib import Path

import pytest
from loguru import logger

from easybackup.config import load_config
from easybackup.errors import ConfigError
from easybackup.secrets import mask

REPO = Path(__file__).resolve().parents[2]
SEED_CONFIG = REPO / "tests" / "fixtures" / "seed_config.yaml"  # the requirements' example (fixtures/README.md)
EXAMPLE = REPO / "examples" / "config.yaml"

SEED_ENV = {
    "SLACK_BOT_TOKEN": "xoxb-from-the-environment-1",
    "SLACK_CHANNEL_ID": "C0ENVIRONMT1",
    "DATABASE_URL": "postgres://env:envpass@env-db:5432/envdb",
    "AWS_ACCESS_KEY_ID": "AKIAENVIRONMENT",
    "AWS_SECRET_ACCESS_KEY": "secret-from-the-environment",
    "S3_BUCKET": "bucket-from-env",
}

MINIMAL = """\
global:
  s3: {bucket: my-backup-bucket}
strategies:
  - name: app
    database_url: postgres://u@db:5432/app
"""


def write(tmp_path: Path, text: str, mode: int = 0o600) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    path.chmod(mode)
    return path


def with_strategy_lines(*lines: str) -> str:
    return MINIMAL + "".join(f"    {line}\n" for line in lines)


@pytest.fixture
def warnings():
    records: list[str] = []
    handler = logger.add(lambda message: records.append(message.record["message"]), level="WARNING")
    yield records
    logger.remove(handler)


def test_the_example_config_is_the_seed_example_byte_for_byte():
    assert EXAMPLE.read_text() == SEED_CONFIG.read_text()


def test_the_seed_example_loads_unchanged_without_any_environment():
    config = load_config(EXAMPLE, environ={})

    assert [s.name for s in config.strategies] == ["production-db", "staging-db", "analytics-db"]
    production, staging, analytics = config.strategies
    assert production.schedule == "6h" and staging.schedule == "1d" and analytics.schedule == "12h"
    assert analytics.retention == 7 * 86400 and staging.retention == 30 * 86400
    assert production.slack.channel_id == "C9876543210" and staging.slack.channel_id == "C0123456789"
    assert production.slack.bot_token == "xoxb-your-slack-bot-token"
    assert production.s3.bucket == "my-backup-bucket" and production.s3.base_path == "database-backups"
    assert production.s3.access_key == "your-access-key" and production.s3.region == "us-east-1"
    assert production.timeout.backup == 1800 and production.timeout.upload == 600
    assert production.retry.max_attempts == 3
    assert [(d.name, d.url) for d in analytics.databases] == [
        ("analytics", "postgres://user:pass@analytics-db:5432/analytics")]
    assert config.max_parallel_strategies == 2 and config.temp_dir == "/tmp/db-backup"
    assert (config.metrics.port, config.metrics.path, config.metrics.enabled) == (8080, "/metrics", True)
    assert (config.health_check.port, config.health_check.path) == (8080, "/health")


def test_the_seed_example_loads_with_every_seed_variable_set_and_the_variables_override_global():
    config = load_config(EXAMPLE, environ=SEED_ENV)

    production, staging, _analytics = config.strategies
    assert staging.slack.bot_token == "xoxb-from-the-environment-1"
    assert staging.slack.channel_id == "C0ENVIRONMT1"
    assert production.slack.channel_id == "C9876543210"  # the strategy's own value still wins
    assert staging.s3.bucket == "bucket-from-env"
    assert (staging.s3.access_key, staging.s3.secret_key) == ("AKIAENVIRONMENT", "secret-from-the-environment")
    assert staging.databases[0].url == "postgres://user:pass@staging-db:5432/myapp"  # DATABASE_URL only fills


@pytest.mark.parametrize("schedule", ["1m", "30s", "2d", "1w@sun-03:00", "1d@02:30", "0 3 * * *", "*/15 * * * *"])
def test_valid_schedules_load(tmp_path, schedule):
    config = load_config(write(tmp_path, with_strategy_lines(f"schedule: '{schedule}'")), environ={})
    assert config.strategies[0].schedule == schedule


def test_a_whole_value_substitution_takes_its_yaml_type(tmp_path):
    text = MINIMAL.replace("global:\n", "global:\n  monitoring: {metrics: {port: '${PORT}', enabled: '${ON}'}}\n")
    config = load_config(write(tmp_path, text), environ={"PORT": "9100", "ON": "false"})
    assert config.metrics.port == 9100 and isinstance(config.metrics.port, int)
    assert config.metrics.enabled is False


def test_a_whole_value_substitution_stays_text_where_the_schema_wants_text(tmp_path):
    text = MINIMAL.replace("s3: {bucket: my-backup-bucket}",
                           "s3: {bucket: my-backup-bucket, credentials: {access_key: '${KEY}', secret_key: x}}")
    config = load_config(write(tmp_path, text), environ={"KEY": "12345"})
    assert config.strategies[0].s3.access_key == "12345"


def test_double_dollar_is_a_literal_dollar_and_defaults_apply(tmp_path):
    text = with_strategy_lines("database_urls: ['postgres://u:pa$$word@db/one', "
                               "'postgres://u@${HOST:-fallback-host}/two']")
    config = load_config(write(tmp_path, text.replace("    database_url: postgres://u@db:5432/app\n", "")),
                         environ={})
    assert [d.url for d in config.strategies[0].databases] == ["postgres://u:pa$word@db/one",
                                                              "postgres://u@fallback-host/two"]


def test_named_databases_may_share_a_database_name(tmp_path):
    text = MINIMAL.replace("database_url: postgres://u@db:5432/app", "database_urls:\n"
                           "      - {name: app-eu, url: 'postgres://u@eu/app'}\n"
                           "      - {name: app-us, url: 'postgres://u@us/app'}")
    config = load_config(write(tmp_path, text), environ={})
    assert [d.name for d in config.strategies[0].databases] == ["app-eu", "app-us"]


def test_mappings_merge_key_by_key_and_lists_are_replaced(tmp_path):
    text = """\
global:
  s3: {bucket: global-bucket, compression: zstd, credentials: {access_key: AKIAGLOBAL, secret_key: sglobal}}
  pg_dump: {extra_args: [--no-owner, --no-acl]}
  retry: {max_attempts: 5, max_delay: 1m}
strategies:
  - name: app
    database_url: postgres://u@db/app
    s3: {bucket: own-bucket, credentials: {region: eu-west-1}}
    pg_dump: {extra_args: [--no-comments]}
    retry: {initial_delay: 5s}
  - name: other
    database_url: postgres://u@db/other
"""
    app, other = load_config(write(tmp_path, text), environ={}).strategies
    assert (app.s3.bucket, app.s3.compression, app.s3.access_key, app.s3.region) == \
        ("own-bucket", "zstd", "AKIAGLOBAL", "eu-west-1")
    assert app.pg_dump.extra_args == ("--no-comments",)
    assert (app.retry.max_attempts, app.retry.initial_delay, app.retry.max_delay) == (5, 5.0, 60.0)
    assert other.s3.bucket == "global-bucket" and other.pg_dump.extra_args == ("--no-owner", "--no-acl")


def test_unset_keys_take_the_model_defaults(tmp_path):
    config = load_config(write(tmp_path, MINIMAL), environ={})
    strategy = config.strategies[0]
    assert (strategy.schedule, strategy.timezone, strategy.retention, strategy.keep_last) == ("1d", "UTC", 30 * 86400,
                                                                                              1)
    assert strategy.s3.compression == "gzip" and strategy.slack.enabled is False
    assert (config.log_level, config.max_parallel_strategies, config.run_on_start) == ("info", 2, False)


def test_extension_keys_are_built_into_the_model(tmp_path):
    text = """\
global:
  log_format: json
  run_on_start: true
  catch_up: false
  keep_last: 3
  timeout: {shutdown_grace: 2m}
  slack: {bot_token: xoxb-1-abc, channel_id: C0123456789, api_url: 'http://127.0.0.1:9/api/',
          channels: {success: CSUCCESS001, failure: CFAILURE001}, progress_interval: 30s}
  s3: {bucket: my-backup-bucket, endpoint_url: 'http://minio:9000', force_path_style: true,
       checksum_mode: when_required, compression: zstd, compression_level: 3, storage_class: STANDARD_IA,
       server_side_encryption: 'aws:kms', kms_key_id: key-1, credentials: {session_token: tok-123}}
  pg_dump: {format: plain}
  monitoring: {metrics: {port: 9100, bind: 127.0.0.1}, health_check: {enabled: false}}
strategies:
  - {name: app, database_url: 'postgres://u@db/app'}
"""
    config = load_config(write(tmp_path, text), environ={})
    strategy = config.strategies[0]
    assert (config.log_format, config.run_on_start, strategy.catch_up, strategy.keep_last) == ("json", True, False, 3)
    assert strategy.timeout.shutdown_grace == 120
    assert strategy.slack.api_url == "http://127.0.0.1:9/api"
    assert (strategy.slack.success_channel, strategy.slack.failure_channel) == ("CSUCCESS001", "CFAILURE001")
    assert strategy.slack.progress_interval == 30
    s3 = strategy.s3
    assert (s3.endpoint_url, s3.force_path_style, s3.checksum_mode, s3.compression, s3.compression_level) == \
        ("http://minio:9000", True, "when_required", "zstd", 3)
    assert (s3.storage_class, s3.server_side_encryption, s3.kms_key_id, s3.session_token) == \
        ("STANDARD_IA", "aws:kms", "key-1", "tok-123")
    assert strategy.pg_dump.format == "plain"
    assert (config.metrics.port, config.metrics.bind, config.health_check.enabled) == (9100, "127.0.0.1", False)


def test_the_model_round_trips_through_a_job_spec(tmp_path):
    from easybackup.config.model import Strategy

    strategy = load_config(EXAMPLE, environ={}).strategies[0]
    assert Strategy.from_dict(strategy.to_dict()) == strategy


def test_a_missing_config_file_is_one_error_naming_the_path(tmp_path):
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "nope.yaml", environ={})
    assert caught.value.problems == [f"{tmp_path / 'nope.yaml'}: config file not found"]


def test_every_secret_is_masked_after_loading(tmp_path):
    text = """\
global:
  slack: {bot_token: xoxb-secret-token-42, channel_id: C0123456789}
  s3: {bucket: my-backup-bucket, credentials: {access_key: AKIASECRET42, secret_key: s3cr3t-key-42,
       session_token: session-42-token}}
strategies:
  - name: app
    database_url: 'postgres://u:db-pass%2142@db/app'
"""
    load_config(write(tmp_path, text), environ={})
    line = "xoxb-secret-token-42 AKIASECRET42 s3cr3t-key-42 session-42-token db-pass!42 db-pass%2142"
    assert mask(line) == " ".join(["***"] * 6)


def test_a_config_readable_by_others_with_secrets_in_it_draws_a_warning(tmp_path, warnings):
    load_config(write(tmp_path, with_strategy_lines("slack: {bot_token: xoxb-1-abc, channel_id: C0123456789}"),
                      mode=0o644), environ={})
    assert any("readable by other users (mode 0644)" in w for w in warnings)


@pytest.mark.parametrize(("mode", "token"), [(0o600, "xoxb-1-abc"), (0o644, "${TOKEN}")],
                         ids=["private-file", "secret-from-environment"])
def test_no_warning_when_the_file_is_private_or_holds_no_secret_itself(tmp_path, warnings, mode, token):
    path = write(tmp_path, with_strategy_lines(f"slack: {{bot_token: '{token}', channel_id: C0123456789}}"), mode)
    load_config(path, environ={"TOKEN": "xoxb-from-env"})
    assert warnings == []
