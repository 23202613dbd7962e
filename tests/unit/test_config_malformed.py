"""Malformed configs: each one is rejected by the real `validate` command (in-process, same dispatcher and
formatting as bin/easybackup) with exit code 2 and a one-line error that names where the problem is."""

from __future__ import annotations

import copy

import pytest
import yaml

from easybackup.cli import main
from easybackup.logs import setup_logging

OVERRIDE_VARS = ("SLACK_BOT_TOKEN", "SLACK_CHANNEL_ID", "SLACK_API_URL", "S3_BUCKET", "AWS_ACCESS_KEY_ID",
                 "AWS_SECRET_ACCESS_KEY", "DATABASE_URL", "EASYBACKUP_CONFIG")

BASE = {
    "global": {"schedule": "1d", "retention": "30d", "s3": {"bucket": "my-backup-bucket"}},
    "strategies": [{"name": "app", "database_url": "postgres://u@db:5432/app"}],
}

DELETE = object()


def patched(**changes) -> str:
    """Return BASE as YAML with changes applied: `global__s3__bucket=DELETE`, `strategies__0__schedule="6x"`."""
    data = copy.deepcopy(BASE)
    for dotted, value in changes.items():
        *parents, last = [int(p) if p.isdigit() else p for p in dotted.split("__")]
        node = data
        for part in parents:
            node = node[part]
        if value is DELETE:
            del node[last]
        else:
            node[last] = value
    return yaml.safe_dump(data, sort_keys=False)


TWO_STRATEGIES = {"strategies": [{"name": "app", "database_url": "postgres://u@db/app"},
                                 {"name": "app", "database_url": "postgres://u@db/other"}]}

# (id, config text, expected start of one error line)
CASES = [
    ("bad-yaml", "global:\n  slack: x\n   foo: bar\n", "{file}:3:7: mapping values are not allowed here"),
    ("tab-indent", "global:\n\tlog_level: info\n", "{file}:2:1: found character '\\t'"),
    ("duplicate-yaml-key", "strategies:\n  - name: a\n    name: b\n", "{file}:3:5: duplicate key 'name'"),
    ("empty-file", "", "{file}: is empty"),
    ("list-at-top", "- name: app\n", "{file}: holds list, not a mapping"),
    ("no-strategies", "global: {s3: {bucket: my-backup-bucket}}\n", "strategies: required key is missing"),
    ("empty-strategies", patched(strategies=[]), "strategies: must not be an empty list"),
    ("unknown-top-key", patched(globals={}), "globals: unknown key (did you mean 'global'?)"),
    ("unknown-strategy-key", patched(strategies__0__schedual="6h"),
     "strategies[0] (app).schedual: unknown key (did you mean 'schedule'?)"),
    ("unknown-nested-key", patched(global__s3__buckets="b"), "global.s3.buckets: unknown key"),
    ("string-for-integer", patched(global__max_parallel_strategies="two"),
     "global.max_parallel_strategies: expected an integer, got a string"),
    ("zero-parallelism", patched(global__max_parallel_strategies=0),
     "global.max_parallel_strategies: 0 is less than the minimum 1"),
    ("negative-keep-last", patched(strategies__0__keep_last=-2), "strategies[0] (app).keep_last: -2 is less than"),
    ("zero-attempts", patched(global__retry={"max_attempts": 0}), "global.retry.max_attempts: 0 is less than"),
    ("port-zero", patched(global__monitoring={"metrics": {"port": 0}}), "global.monitoring.metrics.port: 0 is"),
    ("port-too-high", patched(global__monitoring={"health_check": {"port": 65536}}),
     "global.monitoring.health_check.port: 65536 is more than the maximum 65535"),
    ("path-without-slash", patched(global__monitoring={"metrics": {"path": "metrics"}}),
     "global.monitoring.metrics.path: 'metrics' must start with /"),
    ("list-for-mapping", patched(global__s3=["my-backup-bucket"]), "global.s3: expected a mapping, got a list"),
    ("schedule-6x", patched(strategies__0__schedule="6x"), "strategies[0] (app).schedule: '6x' is not a valid"),
    ("schedule-0h", patched(strategies__0__schedule="0h"), "strategies[0] (app).schedule: '0h' is not a valid"),
    ("schedule-1.5d", patched(strategies__0__schedule="1.5d"),
     "strategies[0] (app).schedule: '1.5d' is not a valid"),
    ("schedule-5h", patched(global__schedule="5h"), "global.schedule: '5h' does not divide a day"),
    ("bad-cron", patched(strategies__0__schedule="61 * * * *"), "strategies[0] (app).schedule: "),
    ("negative-retention", patched(global__retention="-1d"), "global.retention: '-1d' is not a valid duration"),
    ("zero-timeout", patched(global__timeout={"backup": "0s"}), "global.timeout.backup: '0s' is not a valid"),
    ("bad-timezone", patched(strategies__0__timezone="Mars/Olympus"),
     "strategies[0] (app).timezone: 'Mars/Olympus' is not a known timezone"),
    ("duplicate-strategy-names", patched(**{"strategies": TWO_STRATEGIES["strategies"]}),
     "strategies[1] (app).name: 'app' is already the name of strategies[0] (app)"),
    ("duplicate-database-names",
     patched(strategies__0__database_urls=["postgres://u@db1/app", "postgres://u@db2/app"]),
     "strategies[0] (app).database_urls[0] (app): database name 'app' is already used by "
     "strategies[0] (app).database_url"),
    ("missing-bucket", patched(global__s3=DELETE), "strategies[0] (app).s3.bucket: no bucket"),
    ("missing-database", patched(strategies__0__database_url=DELETE), "strategies[0] (app): names no database"),
    ("database-without-name", patched(strategies__0__database_url="postgres://u@db:5432"),
     "strategies[0] (app).database_url: the URL names no database"),
    ("no-engine", patched(strategies__0__database_url="mongodb://u:hunter22@db/app"),
     "strategies[0] (app).database_url: 'mongodb://u:***@db/app' is not a database URL"),
    ("unset-variable", patched(strategies__0__database_url="${EASYBACKUP_TEST_UNSET_URL}"),
     "strategies[0] (app).database_url: environment variable EASYBACKUP_TEST_UNSET_URL is not set"),
    ("malformed-substitution", patched(global__s3__bucket="${S3 BUCKET}"), "global.s3.bucket: malformed"),
    ("global-key-under-strategy", patched(strategies__0__log_level="debug"),
     "strategies[0] (app).log_level: is a global setting; move it under global"),
    ("strategy-key-under-global", patched(global__database_url="postgres://u@db/app"),
     "global.database_url: belongs to a strategy, not global"),
    ("proxy-without-port", patched(strategies__0__proxy={"url": "socks5://p"}),
     "strategies[0] (app).proxy.url: names no port"),
    ("tunnel-host-smuggling-an-option", patched(strategies__0__tunnel={"host": "-oProxyCommand=x", "user": "u"}),
     "strategies[0] (app).tunnel.host: '-oProxyCommand=x' is not a valid ssh host"),
    ("tunnel-and-proxy-together", patched(strategies__0__tunnel={"host": "b"},
                                          strategies__0__proxy={"url": "socks5://p:1080"}),
     "strategies[0] (app).proxy: cannot be combined with tunnel"),
    ("retention-below-interval", patched(strategies__0__retention="1h"),
     "strategies[0] (app).retention: 1h is shorter than the schedule's interval"),
    ("unknown-compression", patched(global__s3__compression="lzma"),
     "global.s3.compression: 'lzma' is not one of 'gzip', 'zstd', 'none'"),
    ("gzip-level-too-high", patched(global__s3__compression_level=12),
     "global.s3.compression_level: 12 is above gzip's highest level 9"),
    ("channel-name-not-id", patched(global__slack={"bot_token": "xoxb-1", "channel_id": "#general"}),
     "global.slack.channel_id: '#general' is not a Slack channel ID"),
    ("token-without-channel", patched(global__slack={"bot_token": "xoxb-1-abc"}),
     "global.slack.channel_id: required when slack.bot_token is set"),
    ("bad-bucket-name", patched(global__s3__bucket="My_Bucket"), "global.s3.bucket: 'My_Bucket' is not a bucket"),
    ("node-selector-int-key", patched(strategies__0__kubernetes={"node_selector": {0: "", "bad key!": "x"}}),
     "strategies[0] (app).kubernetes.node_selector: expected a string, got an integer (0)"),
    ("bad-strategy-name", patched(strategies__0__name="prod/db"),
     "strategies[0] (prod/db).name: 'prod/db' may hold only"),
    ("reserved-pg-dump-arg", patched(global__pg_dump={"extra_args": ["--no-owner", "--file=/tmp/x"]}),
     "global.pg_dump.extra_args[1]: '--file=/tmp/x' is pg_dump's --file, which is set by easybackup"),
    ("delay-order", patched(global__retry={"initial_delay": "10m", "max_delay": "1m"}),
     "global.retry.initial_delay: is longer than retry.max_delay"),
    ("float-port", patched(global__monitoring={"metrics": {"port": 8080.0}}),
     "global.monitoring.metrics.port: expected an integer, got a number (8080.0)"),
    ("bool-for-string", patched(global__timezone=True), "global.timezone: expected a string, got true or false"),
]


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    for var in OVERRIDE_VARS:
        monkeypatch.delenv(var, raising=False)
    yield
    # main() pointed loguru at capsys's stream, which is closed now; point it at the current stderr again.
    setup_logging()


def test_there_are_at_least_thirty_malformed_cases():
    assert len(CASES) >= 30


@pytest.mark.parametrize(("text", "expected"), [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_a_malformed_config_is_rejected_with_a_one_line_error_naming_its_path(tmp_path, capsys, text, expected):
    path = tmp_path / "config.yaml"
    path.write_text(text)

    code = main(["validate", "-c", str(path)])

    out, err = capsys.readouterr()
    assert code == 2
    assert "Traceback" not in err
    errors = [line.removeprefix("error: ") for line in err.splitlines() if line.startswith("error: ")]
    wanted = expected.format(file=path)
    assert any(line.startswith(wanted) for line in errors), f"{wanted!r} not in:\n{err}"
    assert all(line.startswith(("error: ", "hint: ")) for line in err.splitlines()), err
    assert "valid," not in out


def test_a_key_whose_feature_is_not_built_is_rejected_not_ignored(tmp_path, capsys, monkeypatch):
    # Every planned key is built today; the mechanism stays for the next one (a tunnel that was silently
    # ignored would connect directly).
    monkeypatch.setattr("easybackup.config.checks.NOT_SUPPORTED_YET", frozenset({"tunnel"}))
    path = tmp_path / "config.yaml"
    path.write_text(patched(strategies__0__tunnel={"host": "bastion", "user": "backup"}))

    assert main(["validate", "-c", str(path)]) == 2
    assert "error: strategies[0] (app).tunnel: not supported yet (planned;" in capsys.readouterr().err


def test_every_problem_is_reported_at_once(tmp_path, capsys):
    path = tmp_path / "config.yaml"
    path.write_text(patched(strategies__0__schedule="6x", strategies__0__timezone="Nowhere/Land",
                            global__max_parallel_strategies=0, strategies__0__keep_last=-1))

    assert main(["validate", "-c", str(path)]) == 2

    err = capsys.readouterr().err
    for where in ("strategies[0] (app).schedule:", "strategies[0] (app).timezone:",
                  "global.max_parallel_strategies:", "strategies[0] (app).keep_last:"):
        assert f"error: {where}" in err


def test_an_unset_variable_is_reported_once_not_followed_by_what_its_empty_value_breaks(tmp_path, capsys):
    path = tmp_path / "config.yaml"
    path.write_text(patched(strategies__0__database_url="${EASYBACKUP_TEST_UNSET_URL}"))

    assert main(["validate", "-c", str(path)]) == 2

    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
    assert errors == ["error: strategies[0] (app).database_url: environment variable EASYBACKUP_TEST_UNSET_URL is "
                      "not set (set it, add it to .env, or write ${EASYBACKUP_TEST_UNSET_URL:-default})"]


def test_an_error_about_a_secret_does_not_echo_it(tmp_path, capsys):
    path = tmp_path / "config.yaml"
    path.write_text(patched(global__s3__credentials={"access_key": "AKIAEXAMPLE", "secret_key": 123456789}))

    assert main(["validate", "-c", str(path)]) == 2

    err = capsys.readouterr().err
    assert "error: global.s3.credentials.secret_key: expected a string, got an integer" in err
    assert "123456789" not in err


def test_an_unset_bucket_variable_is_reported_once_for_every_strategy_that_inherits_it(tmp_path, capsys):
    path = tmp_path / "config.yaml"
    path.write_text(patched(global__s3__bucket="${EASYBACKUP_TEST_UNSET_BUCKET}",
                            strategies=[{"name": "a", "database_url": "postgres://u@db/a"},
                                        {"name": "b", "database_url": "postgres://u@db/b"}]))

    assert main(["validate", "-c", str(path)]) == 2

    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and errors[0].startswith("error: global.s3.bucket: environment variable")


def test_a_strategy_whose_name_is_an_unset_variable_is_named_by_its_index_only(tmp_path, capsys):
    path = tmp_path / "config.yaml"
    path.write_text(patched(strategies__0__name="${EASYBACKUP_TEST_UNSET_NAME}", strategies__0__schedule="6x"))

    assert main(["validate", "-c", str(path)]) == 2

    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
    assert errors[0].startswith("error: strategies[0].name: environment variable EASYBACKUP_TEST_UNSET_NAME")
    assert errors[1].startswith("error: strategies[0].schedule: '6x' is not a valid interval")
