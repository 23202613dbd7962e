"""Configuration: load YAML, expand ${VARS}, apply .env and environment overrides, validate against the
JSON Schema, merge global into strategies, run cross-field checks, return a frozen `Config`."""

from easybackup.config.model import (  # noqa: F401
    Config,
    DatabaseTarget,
    Endpoint,
    PgDumpSettings,
    ProxySettings,
    RetrySettings,
    S3Settings,
    SlackSettings,
    Strategy,
    TimeoutSettings,
    TunnelSettings,
    VerifySettings,
)
