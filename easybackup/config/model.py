"""Frozen, typed configuration objects. Everything outside `easybackup.config` reads these, never raw dicts.

Durations are seconds (float). Schedules stay as their text (`6h`, `1d@02:30`, `0 3 * * *`) and are
interpreted by `easybackup.scheduling`. Every object round-trips through `to_dict()` / `from_dict()` so a
strategy can travel to a worker as JSON.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field

from easybackup.errors import UsageError


@dataclass(frozen=True)
class ObjectLockSettings:
    """S3 Object Lock of archives and manifests: `mode` governance or compliance, `days` from each upload (a
    `days: retention` in the config is resolved to the strategy's retention duration, in days)."""

    mode: str
    days: float


@dataclass(frozen=True)
class S3Settings:
    bucket: str
    base_path: str = ""
    region: str | None = None
    access_key: str | None = None
    secret_key: str | None = None
    session_token: str | None = None
    endpoint_url: str | None = None
    force_path_style: bool = False
    checksum_mode: str = "when_supported"  # or "when_required"
    compression: str = "gzip"  # "gzip" (pigz when installed), "zstd" or "none"
    compression_level: int | None = None
    storage_class: str | None = None
    server_side_encryption: str | None = None
    kms_key_id: str | None = None
    object_lock: ObjectLockSettings | None = None
    prune_access_key: str | None = None  # s3.prune_credentials: the key retention and cleanup delete with
    prune_secret_key: str | None = None


@dataclass(frozen=True)
class SlackSettings:
    bot_token: str | None = None
    channel_id: str | None = None
    api_url: str = "https://slack.com/api"
    success_channel: str | None = None  # slack.channels.success
    failure_channel: str | None = None  # slack.channels.failure
    progress_interval: float = 60.0

    @property
    def enabled(self) -> bool:
        return bool(self.bot_token and self.channel_id)


@dataclass(frozen=True)
class RetrySettings:
    max_attempts: int = 3
    initial_delay: float = 10.0
    max_delay: float = 300.0


@dataclass(frozen=True)
class TimeoutSettings:
    backup: float = 2 * 3600.0
    upload: float = 600.0
    shutdown_grace: float = 60.0
    connect: float = 30.0  # libpq's connect_timeout: a server that accepts TCP and never answers


@dataclass(frozen=True)
class PgDumpSettings:
    format: str = "custom"  # or "plain"
    extra_args: tuple[str, ...] = ()


@dataclass(frozen=True)
class MysqldumpSettings:
    """How MySQL/MariaDB databases are dumped: options added to mariadb-dump's (or mysqldump's) own."""

    extra_args: tuple[str, ...] = ()


@dataclass(frozen=True)
class VerifySettings:
    after_backup: bool = False


@dataclass(frozen=True)
class EncryptionSettings:
    """Client-side encryption (config/encryption.py): the program and the recipients (public keys)."""

    kind: str = "age"
    recipients: tuple[str, ...] = ()


@dataclass(frozen=True)
class KubernetesSettings:
    """How `render kubernetes` shapes the strategy's CronJob (the supervisor ignores it). `resources` is
    {"requests": {...}, "limits": {...}} and `tolerations` Kubernetes' own mappings, copied as written."""

    resources: dict = field(default_factory=dict)
    node_selector: dict = field(default_factory=dict)
    tolerations: tuple[dict, ...] = ()
    active_deadline: float | None = None


@dataclass(frozen=True)
class DatabaseTarget:
    name: str  # the archive's name in S3; the dbname of the URL unless given
    url: str


@dataclass(frozen=True)
class TunnelSettings:
    host: str
    user: str | None = None
    port: int = 22
    type: str = "ssh"
    identity_file: str | None = None
    known_hosts_file: str | None = None
    jump_hosts: tuple[str, ...] = ()


@dataclass(frozen=True)
class ProxySettings:
    url: str


@dataclass(frozen=True)
class AnomalySettings:
    """The size-drop alarm (catalogue.anomaly)."""

    min_ratio: float = 0.5
    window: int = 7


@dataclass(frozen=True)
class RetentionTiers:
    """`retention` as a mapping: the newest `keep_last`, and the newest backup of each of the newest N hours, days,
    ISO weeks, months and years that hold one (catalogue.tiers)."""

    keep_last: int = 0
    hourly: int = 0
    daily: int = 0
    weekly: int = 0
    monthly: int = 0
    yearly: int = 0


@dataclass(frozen=True)
class RestoreDrillSettings:
    """`restore_drill`: when and where the strategy's newest backups are restored to prove they restore
    (catalogue.drill). `target_url` may hold a password (from the config, `${VAR}`-expanded); it reaches only a
    0600 passfile."""

    schedule: str
    target_url: str
    database_prefix: str = "easybackup_drill_"
    timeout: float = 2 * 3600.0


@dataclass(frozen=True)
class Strategy:
    name: str
    databases: tuple[DatabaseTarget, ...]
    s3: S3Settings
    schedule: str = "1d"
    timezone: str = "UTC"
    retention: float = 30 * 86400.0
    keep_last: int = 1
    catch_up: bool = True
    all_databases: bool = False
    include_globals: bool = False
    retry: RetrySettings = field(default_factory=RetrySettings)
    timeout: TimeoutSettings = field(default_factory=TimeoutSettings)
    slack: SlackSettings = field(default_factory=SlackSettings)
    pg_dump: PgDumpSettings = field(default_factory=PgDumpSettings)
    mysqldump: MysqldumpSettings = field(default_factory=MysqldumpSettings)
    verify: VerifySettings = field(default_factory=VerifySettings)
    kubernetes: KubernetesSettings = field(default_factory=KubernetesSettings)
    tunnel: TunnelSettings | None = None
    proxy: ProxySettings | None = None
    tiers: RetentionTiers | None = None  # `retention` written as tiers; then `retention` is the span they cover
    encryption: EncryptionSettings | None = None  # None: archives are stored as compressed, not encrypted
    anomaly: AnomalySettings = field(default_factory=AnomalySettings)
    restore_drill: RestoreDrillSettings | None = None  # None: no drills (unset, or `restore_drill: null`)

    def to_dict(self) -> dict:
        return to_dict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Strategy:
        return from_dict(cls, data)


@dataclass(frozen=True)
class Endpoint:
    """An HTTP endpoint of the supervisor (metrics or health)."""

    enabled: bool = True
    port: int = 8080
    path: str = "/health"
    bind: str = "0.0.0.0"
    page_path: str = "/"  # health only: the HTML status page beside it (monitoring/page.py)


@dataclass(frozen=True)
class Config:
    strategies: tuple[Strategy, ...]
    log_level: str = "info"
    log_format: str = "text"
    temp_dir: str = "/tmp/easybackup"
    max_parallel_strategies: int = 2
    run_on_start: bool = False
    metrics: Endpoint = field(default_factory=lambda: Endpoint(path="/metrics"))
    health_check: Endpoint = field(default_factory=Endpoint)
    source_path: str | None = None

    def strategy(self, name: str) -> Strategy:
        """Given a strategy name, return it; raise UsageError naming the known ones if there is none."""
        for strategy in self.strategies:
            if strategy.name == name:
                return strategy
        known = ", ".join(s.name for s in self.strategies) or "none"
        raise UsageError(f"unknown strategy '{name}'", detail=f"configured strategies: {known}")

    def select(self, names: list[str] | None) -> tuple[Strategy, ...]:
        """Given strategy names (None or empty for all), return those strategies in config order."""
        if not names:
            return self.strategies
        wanted = [self.strategy(name).name for name in names]
        return tuple(s for s in self.strategies if s.name in wanted)


def to_dict(obj) -> dict:
    """Given a config dataclass, return plain JSON-able data (tuples become lists)."""
    return dataclasses.asdict(obj)


def from_dict(cls, data):
    """Given a dataclass type and data from `to_dict`, rebuild the frozen object (nested ones too)."""
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name in data:
            kwargs[f.name] = _coerce(hints[f.name], data[f.name])
    return cls(**kwargs)


def _coerce(hint, value):
    if value is None:
        return None
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        inner = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        return _coerce(inner[0], value) if len(inner) == 1 else value
    if origin is tuple:
        (item_type, *_rest) = typing.get_args(hint)
        return tuple(_coerce(item_type, item) for item in value)
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value)
    return value
