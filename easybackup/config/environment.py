"""The environment a config sees: the real one over a `.env` file, and the variables that override keys."""

from __future__ import annotations

import os
from pathlib import Path

from dotenv import dotenv_values

from easybackup.errors import ConfigError

# Variable -> the `global` key it overrides (a strategy's own value still wins when merged).
GLOBAL_OVERRIDES = {
    "SLACK_BOT_TOKEN": ("slack", "bot_token"),
    "SLACK_CHANNEL_ID": ("slack", "channel_id"),
    "SLACK_API_URL": ("slack", "api_url"),
    "S3_BUCKET": ("s3", "bucket"),
    "AWS_ACCESS_KEY_ID": ("s3", "credentials", "access_key"),
    "AWS_SECRET_ACCESS_KEY": ("s3", "credentials", "secret_key"),
}
DATABASE_KEYS = ("database_url", "database_urls", "all_databases")


def effective_environment(config_path: str | os.PathLike, env_file: str | None = None,
                          environ: dict[str, str] | None = None) -> dict[str, str]:
    """Given the config path, an optional dotenv file and the process environment (default os.environ), return
    the dotenv values overlaid by the environment; raise ConfigError if a named env file cannot be read.

    Without `env_file`, `.env` beside the config is read when it exists. os.environ is never modified.
    """
    environ = dict(os.environ if environ is None else environ)
    path = Path(env_file) if env_file else Path(config_path).parent / ".env"
    if env_file and not path.is_file():
        raise ConfigError([f"{path}: env file not found"], hint="check --env-file")
    if not path.is_file():
        return environ
    try:
        values = dotenv_values(path)
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{path}: cannot read env file: {exc}"]) from exc
    return {**{k: v for k, v in values.items() if v is not None}, **environ}


def apply_overrides(data: dict, environ: dict[str, str]) -> dict[tuple, str]:
    """Given an expanded config document (changed in place) and the environment, apply the override variables;
    return {path: variable} for every value they set, so errors can say where a value came from."""
    applied: dict[tuple, str] = {}
    overrides = {var: key for var, key in GLOBAL_OVERRIDES.items() if environ.get(var)}
    if overrides and data.get("global") is None:
        data["global"] = {}
    section = data.get("global")
    for var, key in overrides.items():
        if isinstance(section, dict) and _set_in(section, key, environ[var]):
            applied[("global", *key)] = var
    database_url = environ.get("DATABASE_URL")
    strategies = data.get("strategies")
    if database_url and isinstance(strategies, list):
        for index, strategy in enumerate(strategies):
            if isinstance(strategy, dict) and not any(k in strategy for k in DATABASE_KEYS):
                strategy["database_url"] = database_url
                applied[("strategies", index, "database_url")] = "DATABASE_URL"
    return applied


def _set_in(section: dict, key: tuple, value: str) -> bool:
    """Set section[key[0]]...[key[-1]] = value, creating mappings; return False if a non-mapping is in the way."""
    node = section
    for part in key[:-1]:
        if node.get(part) is None:
            node[part] = {}
        node = node[part]
        if not isinstance(node, dict):
            return False
    node[key[-1]] = value
    return True
