"""The JSON Schema is the source of truth: valid, described, closed, and in step with the README and the model."""

from __future__ import annotations

import re
from pathlib import Path

import jsonschema
import pytest

from easybackup.config.checks import NOT_SUPPORTED_YET
from easybackup.config.merge import shared_keys
from easybackup.config.model import AnomalySettings, Config, Endpoint, RetrySettings, S3Settings, SlackSettings, \
    Strategy, TimeoutSettings
from easybackup.config.schema import iter_properties, load_schema, schema_path
from easybackup.scheduling import parse_duration

REPO = Path(__file__).resolve().parents[2]


def all_subschemas(node):
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from all_subschemas(value)
    elif isinstance(node, list):
        for item in node:
            yield from all_subschemas(item)


def test_the_schema_is_a_valid_draft_2020_12_schema_found_in_the_source_tree():
    assert schema_path() == REPO / "schema" / "easybackup.schema.json"
    jsonschema.Draft202012Validator.check_schema(load_schema())


def test_every_property_has_a_description():
    undescribed = [name for name, prop in iter_properties() if not prop.get("description", "").strip()]
    assert undescribed == []


def test_every_object_rejects_unknown_keys():
    objects = [node for node in all_subschemas(load_schema()) if node.get("type") == "object"]
    # A record forbids keys it does not name; a map (kubernetes.node_selector) names the shape of every key instead.
    assert objects and all(node.get("additionalProperties") is False or "propertyNames" in node for node in objects)


def test_the_schema_has_every_extension_key_of_the_design():
    names = {name for name, _prop in iter_properties()}
    for key in ("run_on_start", "catch_up", "keep_last", "retry.initial_delay", "retry.max_delay", "timeout.backup",
                "timeout.upload", "timeout.shutdown_grace", "slack.api_url", "slack.channels.success",
                "slack.channels.failure", "slack.progress_interval", "s3.endpoint_url", "s3.force_path_style",
                "s3.checksum_mode", "s3.compression", "s3.compression_level", "s3.storage_class",
                "s3.server_side_encryption", "s3.kms_key_id", "s3.credentials.session_token", "pg_dump.format",
                "pg_dump.extra_args", "verify.after_backup", "log_format", "monitoring.metrics.bind"):
        assert f"global.{key}" in names
    for key in ("database_url", "database_urls[].name", "all_databases", "include_globals", "tunnel.jump_hosts",
                "proxy.url", "schedule", "retry.max_attempts"):
        assert f"strategies[].{key}" in names


def test_the_not_supported_keys_exist_in_the_schema():
    names = {name.split(".")[1] for name, _prop in iter_properties() if "." in name}
    assert NOT_SUPPORTED_YET <= names


def readme_reference_names() -> set[str]:
    text = (REPO / "README.md").read_text()
    section = re.search(r"<!-- config-reference:start -->(.*)<!-- config-reference:end -->", text, re.S).group(1)
    return set(re.findall(r"^\| `([^`]+)` \|", section, re.M))


def schema_reference_names() -> set[str]:
    """Every property once: shared keys without their section (`s3.bucket`), the others with it."""
    names = set()
    for name, _prop in iter_properties():
        for prefix in ("global.", "strategies[]."):
            rest = name.removeprefix(prefix)
            if rest != name and rest.split(".")[0] in shared_keys():
                name = rest
        names.add(name)
    return names


def test_the_readme_configuration_reference_names_every_schema_property_and_nothing_else():
    readme, schema = readme_reference_names(), schema_reference_names()
    assert sorted(schema - readme) == [], "missing from the README"
    assert sorted(readme - schema) == [], "in the README but not in the schema"


def duration(text):
    return parse_duration(text)


@pytest.mark.parametrize(("key", "model_default", "convert"), [
    ("global.log_level", Config.log_level, str),
    ("global.log_format", Config.log_format, str),
    ("global.temp_dir", Config.temp_dir, str),
    ("global.max_parallel_strategies", Config.max_parallel_strategies, int),
    ("global.run_on_start", Config.run_on_start, bool),
    ("global.monitoring.health_check.port", Endpoint.port, int),
    ("global.monitoring.health_check.path", Endpoint.path, str),
    ("global.monitoring.health_check.bind", Endpoint.bind, str),
    ("global.monitoring.health_check.page_path", Endpoint.page_path, str),
    ("global.schedule", Strategy.schedule, str),
    ("global.timezone", Strategy.timezone, str),
    ("global.retention", Strategy.retention, duration),
    ("global.keep_last", Strategy.keep_last, int),
    ("global.anomaly.min_ratio", AnomalySettings.min_ratio, float),
    ("global.anomaly.window", AnomalySettings.window, int),
    ("global.catch_up", Strategy.catch_up, bool),
    ("global.retry.max_attempts", RetrySettings.max_attempts, int),
    ("global.retry.initial_delay", RetrySettings.initial_delay, duration),
    ("global.retry.max_delay", RetrySettings.max_delay, duration),
    ("global.timeout.backup", TimeoutSettings.backup, duration),
    ("global.timeout.upload", TimeoutSettings.upload, duration),
    ("global.timeout.shutdown_grace", TimeoutSettings.shutdown_grace, duration),
    ("global.timeout.connect", TimeoutSettings.connect, duration),
    ("global.slack.api_url", SlackSettings.api_url, str),
    ("global.slack.progress_interval", SlackSettings.progress_interval, duration),
    ("global.s3.compression", S3Settings.compression, str),
    ("global.s3.checksum_mode", S3Settings.checksum_mode, str),
    ("global.s3.force_path_style", S3Settings.force_path_style, bool),
])
def test_the_documented_defaults_are_the_models_defaults(key, model_default, convert):
    documented = dict(iter_properties())[key]["default"]
    assert convert(documented) == model_default


def test_the_readme_marks_exactly_the_keys_that_are_not_supported_yet():
    from easybackup.config.checks import NOT_SUPPORTED_YET

    text = (REPO / "README.md").read_text()
    reference = text.split("<!-- config-reference:start -->")[1].split("<!-- config-reference:end -->")[0]
    marked = {line.split("`")[1] for line in reference.splitlines() if "Not supported yet" in line}
    assert marked == set(NOT_SUPPORTED_YET)
