"""Where values come from: the environment beats .env, an override variable beats global, a strategy's own
value beats the override, and DATABASE_URL fills only strategies that name no database."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from easybackup.config import load_config
from easybackup.config.expand import expand
from easybackup.errors import ConfigError

CONFIG = """\
global:
  s3: {bucket: bucket-from-config, credentials: {access_key: AKIACONFIG, secret_key: secret-config}}
  slack: {bot_token: xoxb-config-token, channel_id: C0CONFIG001, api_url: 'https://slack.example/api'}
strategies:
  - name: plain
    database_url: postgres://u@db/plain
  - name: own
    database_url: postgres://u@db/own
    s3: {bucket: bucket-of-strategy}
    slack: {channel_id: C0STRATEGY1}
  - name: empty
"""


def write(directory: Path, text: str = CONFIG) -> Path:
    path = directory / "config.yaml"
    path.write_text(text)
    path.chmod(0o600)
    return path


def strategies(config):
    return {s.name: s for s in config.strategies}


def test_override_variables_beat_global_but_not_a_strategys_own_value(tmp_path):
    environ = {"S3_BUCKET": "bucket-from-env", "SLACK_BOT_TOKEN": "xoxb-env-token", "SLACK_CHANNEL_ID": "C0ENVIRON01",
               "SLACK_API_URL": "http://127.0.0.1:1/api", "AWS_ACCESS_KEY_ID": "AKIAENV",
               "AWS_SECRET_ACCESS_KEY": "secret-env", "DATABASE_URL": "postgres://u@env/envdb"}
    found = strategies(load_config(write(tmp_path), environ=environ))

    plain, own = found["plain"], found["own"]
    assert plain.s3.bucket == "bucket-from-env" and own.s3.bucket == "bucket-of-strategy"
    assert plain.slack.channel_id == "C0ENVIRON01" and own.slack.channel_id == "C0STRATEGY1"
    assert own.slack.bot_token == "xoxb-env-token" and own.slack.api_url == "http://127.0.0.1:1/api"
    assert (own.s3.access_key, own.s3.secret_key) == ("AKIAENV", "secret-env")


def test_database_url_fills_only_strategies_without_a_database(tmp_path):
    found = strategies(load_config(write(tmp_path), environ={"DATABASE_URL": "postgres://u@env/envdb"}))

    assert [d.url for d in found["empty"].databases] == ["postgres://u@env/envdb"]
    assert [d.url for d in found["plain"].databases] == ["postgres://u@db/plain"]


def test_without_database_url_a_strategy_without_a_database_is_an_error(tmp_path):
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path), environ={})
    assert caught.value.problems[0].startswith("strategies[2] (empty): names no database")


def test_the_real_environment_beats_the_dotenv_file(tmp_path):
    (tmp_path / ".env").write_text("S3_BUCKET=bucket-from-dotenv\nDATABASE_URL=postgres://u@dotenv/dotdb\n")
    found = strategies(load_config(write(tmp_path), environ={"S3_BUCKET": "bucket-from-env"}))

    assert found["plain"].s3.bucket == "bucket-from-env"
    assert found["empty"].databases[0].url == "postgres://u@dotenv/dotdb"


def test_the_dotenv_file_beside_the_config_is_read_by_default(tmp_path):
    (tmp_path / ".env").write_text("S3_BUCKET=bucket-from-dotenv\nDATABASE_URL=postgres://u@dotenv/dotdb\n")
    found = strategies(load_config(write(tmp_path), environ={}))
    assert found["plain"].s3.bucket == "bucket-from-dotenv"


def test_an_explicit_env_file_is_used_and_os_environ_is_left_alone(tmp_path):
    env_file = tmp_path / "elsewhere.env"
    env_file.write_text("EASYBACKUP_TEST_ONLY_IN_DOTENV=postgres://u@dotenv/dotdb\n")
    text = CONFIG + "    database_url: ${EASYBACKUP_TEST_ONLY_IN_DOTENV}\n"
    found = strategies(load_config(write(tmp_path, text), env_file=str(env_file)))

    assert found["empty"].databases[0].url == "postgres://u@dotenv/dotdb"
    assert "EASYBACKUP_TEST_ONLY_IN_DOTENV" not in os.environ


def test_a_missing_explicit_env_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path), env_file=str(tmp_path / "missing.env"), environ={})
    assert caught.value.problems == [f"{tmp_path / 'missing.env'}: env file not found"]


def test_an_invalid_override_says_which_variable_it_came_from(tmp_path):
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path), environ={"S3_BUCKET": "Not A Bucket", "DATABASE_URL": "postgres://u@e/d"})
    assert caught.value.problems == ["global.s3.bucket: 'Not A Bucket' is not a bucket name (3-63 characters: a-z, "
                                     "0-9, '.', '-') (from $S3_BUCKET)"]


def test_an_override_creates_the_global_section_when_there_is_none(tmp_path):
    text = "strategies:\n  - {name: app, database_url: 'postgres://u@db/app'}\n"
    config = load_config(write(tmp_path, text), environ={"S3_BUCKET": "bucket-from-env"})
    assert config.strategies[0].s3.bucket == "bucket-from-env"


@pytest.mark.parametrize(("text", "environ", "expected"), [
    ("${A}", {"A": "x"}, "x"),
    ("pre-${A}-post", {"A": "x"}, "pre-x-post"),
    ("${A:-fallback}", {}, "fallback"),
    ("${A:-fallback}", {"A": ""}, "fallback"),
    ("${A}", {"A": ""}, ""),
    ("cost: $$5 and $HOME", {}, "cost: $5 and $HOME"),
    ("$${A}", {"A": "x"}, "${A}"),
    ("${A}", {"A": "8080"}, 8080),
    ("${A}", {"A": "true"}, True),
    ("${A}", {"A": "1.5"}, 1.5),
    ("${A}", {"A": "[1, 2]"}, "[1, 2]"),
    ("${A}", {"A": "a: b"}, "a: b"),
    ("${A}:${B}", {"A": "1", "B": "2"}, "1:2"),
], ids=["plain", "embedded", "default-unset", "default-empty", "empty", "dollars", "escaped", "int", "bool",
        "float", "no-structure-list", "no-structure-mapping", "two-substitutions-stay-text"])
def test_expansion(text, environ, expected):
    result = expand({"key": text}, environ)
    assert result.problems == []
    assert result.data == {"key": expected}


def test_expansion_leaves_keys_and_non_strings_alone():
    result = expand({"${A}": [1, True, None, "${A}"]}, {"A": "x"})
    assert result.data == {"${A}": [1, True, None, "x"]}


def test_an_unset_variable_names_the_variable_and_the_path():
    result = expand({"strategies": [{"database_url": "${DB}"}]}, {})
    assert result.problems == ["strategies[0].database_url: environment variable DB is not set "
                               "(set it, add it to .env, or write ${DB:-default})"]
