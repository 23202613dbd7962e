"""Turn a validated, merged config document into the frozen model of `easybackup.config.model`."""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

from easybackup.config.encryption import age_section, recipients
from easybackup.config.merge import effective_strategy
from easybackup.config.model import (
    AnomalySettings,
    Config,
    DatabaseTarget,
    EncryptionSettings,
    Endpoint,
    KubernetesSettings,
    MysqldumpSettings,
    ObjectLockSettings,
    PgDumpSettings,
    ProxySettings,
    RestoreDrillSettings,
    RetentionTiers,
    RetrySettings,
    S3Settings,
    SlackSettings,
    Strategy,
    TimeoutSettings,
    TunnelSettings,
    VerifySettings,
)
from easybackup.scheduling import parse_duration


def database_name(url: str) -> str | None:
    """Given a database URL, return the database it names (percent-decoded), or None if it names none."""
    try:
        name = unquote(urlsplit(url).path.lstrip("/"))
    except ValueError:  # `postgres://[::1/x`: the checks report the URL itself
        return None
    return name or None


def database_entries(strategy: dict) -> list[tuple[tuple, str | None, str]]:
    """Given a strategy mapping, return (path within the strategy, name, url) for each database it lists;
    `name` is the given name or the URL's database name (None when neither exists)."""
    entries = []
    if isinstance(strategy.get("database_url"), str):
        url = strategy["database_url"]
        entries.append((("database_url",), database_name(url), url))
    urls = strategy.get("database_urls")
    for index, item in enumerate(urls if isinstance(urls, list) else []):
        if isinstance(item, str):
            entries.append((("database_urls", index), database_name(item), item))
        elif isinstance(item, dict) and isinstance(item.get("url"), str):
            name = item.get("name") if isinstance(item.get("name"), str) else None  # the schema reports others
            entries.append((("database_urls", index), name or database_name(item["url"]), item["url"]))
    return entries


def build_config(data: dict, source_path: str | None = None) -> Config:
    """Given a config document that passed the schema and the cross-field checks, return the frozen Config."""
    global_section = data.get("global") or {}
    monitoring = global_section.get("monitoring") or {}
    strategies = tuple(build_strategy(effective_strategy(global_section, s)) for s in data["strategies"])
    return Config(
        strategies=strategies,
        metrics=Endpoint(**{"path": "/metrics", **(monitoring.get("metrics") or {})}),
        health_check=Endpoint(**(monitoring.get("health_check") or {})),
        source_path=source_path,
        **_pick(global_section, "log_level", "log_format", "temp_dir", "max_parallel_strategies", "run_on_start"),
    )


def build_strategy(merged: dict) -> Strategy:
    """Given one strategy with global's defaults merged in, return the frozen Strategy."""
    retention = _retention(merged.get("retention"))
    return Strategy(
        name=merged["name"],
        databases=tuple(DatabaseTarget(name=name, url=url) for _path, name, url in database_entries(merged)),
        s3=_s3(merged["s3"], retention.get("retention", Strategy.retention)),
        retry=RetrySettings(**_durations(merged.get("retry"), "initial_delay", "max_delay")),
        timeout=TimeoutSettings(**_durations(merged.get("timeout"), "backup", "upload", "shutdown_grace", "connect")),
        slack=_slack(merged.get("slack") or {}),
        pg_dump=_pg_dump(merged.get("pg_dump") or {}),
        mysqldump=MysqldumpSettings(extra_args=tuple((merged.get("mysqldump") or {}).get("extra_args", ()))),
        verify=VerifySettings(**(merged.get("verify") or {})),
        kubernetes=_kubernetes(merged.get("kubernetes") or {}),
        tunnel=_tunnel(merged.get("tunnel")),
        proxy=ProxySettings(**merged["proxy"]) if merged.get("proxy") else None,
        anomaly=AnomalySettings(**(merged.get("anomaly") or {})),
        encryption=_encryption(merged.get("encryption")),
        restore_drill=_restore_drill(merged.get("restore_drill")),
        **{**_pick(merged, "schedule", "timezone", "keep_last", "catch_up", "all_databases", "include_globals"),
           **retention},
    )


# The longest each tier's period can be: the span a tiered policy covers, which run records are kept for.
TIER_SPAN_S = {"hourly": 3600.0, "daily": 86400.0, "weekly": 7 * 86400.0, "monthly": 31 * 86400.0,
               "yearly": 366 * 86400.0}


def _retention(retention) -> dict:
    """A duration sets `retention`; tiers set `tiers`, their own keep_last (when written) and, as `retention`, the
    span they cover (at least a day)."""
    if retention is None:
        return {}
    if isinstance(retention, str):
        return {"retention": parse_duration(retention)}
    tiers = RetentionTiers(**retention)
    span = max([86400.0] + [count * TIER_SPAN_S[tier] for tier, count in retention.items() if tier in TIER_SPAN_S])
    return {"tiers": tiers, "retention": span, **({"keep_last": tiers.keep_last} if "keep_last" in retention else {})}


def _pick(mapping: dict, *keys: str) -> dict:
    return {key: mapping[key] for key in keys if key in mapping}


def _durations(mapping: dict | None, *duration_keys: str) -> dict:
    mapping = dict(mapping or {})
    for key in duration_keys:
        if key in mapping:
            mapping[key] = parse_duration(mapping[key])
    return mapping


def _s3(s3: dict, retention_s: float) -> S3Settings:
    credentials = s3.get("credentials") or {}
    prune = s3.get("prune_credentials") or {}
    optional = _pick(s3, "endpoint_url", "compression_level", "storage_class", "server_side_encryption",
                     "kms_key_id", "force_path_style", "checksum_mode", "compression")
    return S3Settings(bucket=s3["bucket"], base_path=s3.get("base_path", "").strip("/"),
                      object_lock=_object_lock(s3.get("object_lock"), retention_s),
                      prune_access_key=prune.get("access_key"), prune_secret_key=prune.get("secret_key"),
                      **_pick(credentials, "access_key", "secret_key", "region", "session_token"), **optional)


def _object_lock(lock: dict | None, retention_s: float) -> ObjectLockSettings | None:
    """`days: retention` is the strategy's retention duration (the checks refuse it with tiers)."""
    if not lock:
        return None
    days = retention_s / 86400.0 if lock["days"] == "retention" else float(lock["days"])
    return ObjectLockSettings(mode=lock["mode"], days=days)


def _slack(slack: dict) -> SlackSettings:
    channels = slack.get("channels") or {}
    return SlackSettings(
        bot_token=slack.get("bot_token") or None,
        channel_id=slack.get("channel_id") or None,
        success_channel=channels.get("success") or None,
        failure_channel=channels.get("failure") or None,
        **({"api_url": slack["api_url"].rstrip("/")} if slack.get("api_url") else {}),
        **_durations(_pick(slack, "progress_interval"), "progress_interval"),
    )


def _pg_dump(pg_dump: dict) -> PgDumpSettings:
    return PgDumpSettings(**_pick(pg_dump, "format"), extra_args=tuple(pg_dump.get("extra_args", ())))


def _kubernetes(kubernetes: dict) -> KubernetesSettings:
    return KubernetesSettings(**_durations(_pick(kubernetes, "resources", "node_selector", "active_deadline"),
                                           "active_deadline"),
                              tolerations=tuple(kubernetes.get("tolerations", ())))


def _encryption(value) -> EncryptionSettings | None:
    age = age_section(value)
    return None if age is None else EncryptionSettings(kind="age", recipients=tuple(recipients(age)))


def _tunnel(tunnel: dict | None) -> TunnelSettings | None:
    if not tunnel:
        return None
    return TunnelSettings(**{**tunnel, "jump_hosts": tuple(tunnel.get("jump_hosts", ()))})


def _restore_drill(drill: dict | None) -> RestoreDrillSettings | None:
    if not drill:
        return None
    return RestoreDrillSettings(**_durations(drill, "timeout"))
