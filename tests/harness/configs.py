"""Writing easybackup config files for tests, and running the CLI as an operator does."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

import yaml

from tests.harness.moto_server import ACCESS_KEY, REGION, SECRET_KEY

REPO = Path(__file__).resolve().parents[2]
EASYBACKUP = [sys.executable, str(REPO / "bin" / "easybackup")]


def deep_merge(base: dict, override: dict) -> dict:
    """Given two dicts, return base with override merged in (dicts deep, everything else replaced)."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def write_config(directory: Path, *, bucket: str, endpoint: str, strategies: list[dict], name: str = "config.yaml",
                 **global_overrides) -> Path:
    """Given a directory, a bucket, an S3 endpoint and strategies, write a config (mode 0600) and return its path."""
    base = {
        "log_level": "debug",
        "schedule": "1d",
        "retention": "7d",
        "timezone": "UTC",
        "temp_dir": str(directory / "tmp"),
        "max_parallel_strategies": 2,
        "retry": {"max_attempts": 1, "initial_delay": "1s", "max_delay": "2s"},
        "timeout": {"backup": "5m", "upload": "1m", "shutdown_grace": "10s"},
        "s3": {"bucket": bucket, "base_path": "backups", "endpoint_url": endpoint, "force_path_style": True,
               "compression": "gzip", "credentials": {"region": REGION}},
    }
    document = {"global": deep_merge(base, global_overrides), "strategies": strategies}
    path = directory / name
    path.write_text(yaml.safe_dump(document, sort_keys=False, allow_unicode=True))
    path.chmod(0o600)
    return path


def cli_env(**extra: str) -> dict:
    """Return an environment for running the CLI against the harness's S3, with no stray AWS settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SLACK_", "PG", "S3_", "DATABASE_URL"))}
    env.update(AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY, AWS_DEFAULT_REGION=REGION)
    env.update(extra)
    return env


def restore_target(url: str, **extra: str) -> tuple[str, dict]:
    """Given a database URL with a password, return it without one and the CLI's environment that gives the
    password to `restore` ($EASYBACKUP_TARGET_PASSWORD): a password in --target-url is refused."""
    parts = urlsplit(url)
    userinfo, _at, hostport = parts.netloc.rpartition("@")
    user, _colon, password = userinfo.partition(":")
    bare = urlunsplit(parts._replace(netloc=f"{user}@{hostport}" if user else hostport))
    return bare, cli_env(EASYBACKUP_TARGET_PASSWORD=unquote(password), **extra)


def run_cli(*args: str, env: dict | None = None, timeout: float = 300, **kwargs) -> subprocess.CompletedProcess:
    """Run `bin/easybackup ARGS` as an operator would; return the completed process (text output)."""
    return subprocess.run([*EASYBACKUP, *args], env=env or cli_env(), capture_output=True, text=True,
                          timeout=timeout, **kwargs)
