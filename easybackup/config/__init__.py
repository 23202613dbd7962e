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


def __getattr__(name: str):
    # load_config is imported on first use: the worker reads only the model and need not import
    # jsonschema, YAML and the scheduler.
    if name == "load_config":
        from easybackup.config.loader import load_config

        return load_config
    raise AttributeError(f"module 'easybackup.config' has no attribute '{name}'")


__all__ = [
    "Config", "DatabaseTarget", "Endpoint", "PgDumpSettings", "ProxySettings", "RetrySettings", "S3Settings",
    "SlackSettings", "Strategy", "TimeoutSettings", "TunnelSettings", "VerifySettings", "load_config",
]
