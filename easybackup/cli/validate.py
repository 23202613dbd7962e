"""`easybackup validate`: load the config, print what each strategy will do; optionally reach S3 and Slack."""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Mapping
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

from easybackup import exitcodes
from easybackup.config.loader import config_secrets, load_config
from easybackup.config.model import Config, Strategy
from easybackup.engines import engine_for_url
from easybackup.errors import ConfigError, EasybackupError
from easybackup.logs import log
from easybackup.network.routes import describe_route
from easybackup.pipeline import age
from easybackup.scheduling import format_duration, next_run
from easybackup.secrets import MIN_MASKABLE, mask, too_short_to_mask
from easybackup.storage.layout import strategy_prefix
from easybackup.urls import masked_url


def add_parser(subparsers, common: argparse.ArgumentParser) -> None:
    """Register `validate` with the common options (-c, --env-file, --log-level)."""
    parser = subparsers.add_parser("validate", parents=[common], help="check the config (offline by default)",
                                   description="Check the config and show what each strategy will do. Exit 0 "
                                   "when valid, 2 with every problem listed, 1 when a connectivity check fails.")
    parser.add_argument("--check-connectivity", action="store_true",
                        help="also check each S3 bucket (HeadBucket) and each Slack token (auth.test)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Given parsed arguments, validate the config and return the exit code; ConfigError propagates to the
    command dispatcher, which prints one line per problem and exits 2."""
    config = load_config(args.config, env_file=args.env_file)
    missing_tools(config)
    now = datetime.now(timezone.utc)
    count = len(config.strategies)
    print(f"{args.config}: valid, {count} {'strategy' if count == 1 else 'strategies'}")
    for warning in short_secret_warnings(config) + drill_identity_warnings(config):
        log.warning(warning)
    for strategy in config.strategies:
        print()
        print("\n".join(strategy_table(strategy, now)))
    if not getattr(args, "check_connectivity", False):
        return exitcodes.OK
    failed = check_connectivity(config)
    if failed:
        print(f"connectivity check failed: {', '.join(failed)}")
        return exitcodes.FAILED
    return exitcodes.OK


def missing_tools(config: Config) -> None:
    """Given a Config, raise ConfigError if a strategy encrypts and this host lacks the `age` program: every backup
    would fail at its first stage."""
    problem = age.missing_program()
    users = [f"strategies[{index}] ({strategy.name}).encryption" for index, strategy in enumerate(config.strategies)
             if strategy.encryption is not None]
    if problem and users:
        raise ConfigError([f"{where}: {problem}" for where in users],
                          hint=f"install the `{age.PACKAGE}` package, or turn encryption off (encryption: none)")


def drill_identity_warnings(config: Config, environ: Mapping[str, str] = os.environ) -> list[str]:
    """Given a Config and the environment, return a warning when strategies encrypt and drill but this host has no
    age identity: every drill of theirs would fail (kind config) when it runs. A warning, not an error: the
    identity may be set only in the service's own environment, not in the shell that runs validate."""
    names = [strategy.name for strategy in config.strategies
             if strategy.encryption is not None and strategy.restore_drill is not None]
    if not names or environ.get(age.IDENTITY_ENV):
        return []
    return [f"{'strategy' if len(names) == 1 else 'strategies'} {', '.join(names)}: restore_drill restores "
            f"backups encrypted with age, and ${age.IDENTITY_ENV} is not set here: every drill will fail until the "
            f"service's environment names a 0600 file holding an identity of the recipients (or set "
            f"restore_drill: null)"]


def short_secret_warnings(config: Config) -> list[str]:
    """Given a Config, return one warning per secret too short to be masked in free text (secrets.py), naming
    the strategies that use it and where it is set — never the secret."""
    users: dict[tuple[str, str], list[str]] = {}
    for strategy, what, value in config_secrets(config):
        if too_short_to_mask(value) and strategy not in users.setdefault((what, value), []):
            users[(what, value)].append(strategy)
    warnings = [f"{'strategy' if len(names) == 1 else 'strategies'} {', '.join(names)}: {what} is shorter than "
                f"{MIN_MASKABLE} characters, too short to be masked safely: it is masked only where it stands (a "
                f"URL's password, secret fields and options, headers), never in log text, where it would hide "
                f"ordinary words and give itself away; use a longer one" for (what, _value), names in users.items()]
    return list(dict.fromkeys(warnings))  # a URL's password written %-encoded and decoded: one warning


def policy_text(strategy: Strategy) -> str:
    """Given a strategy, return its retention policy in words (`30d (keep_last 1)`, `keep_last 3, daily 7, weekly 4
    (Europe/Berlin)`)."""
    if strategy.tiers is None:
        return f"{format_duration(strategy.retention)} (keep_last {strategy.keep_last})"
    counts = [(item.name, getattr(strategy.tiers, item.name)) for item in dataclasses.fields(strategy.tiers)]
    counts = [("keep_last", strategy.keep_last)] + [(name, count) for name, count in counts if name != "keep_last"]
    return ", ".join(f"{name} {count}" for name, count in counts if count) + f" ({strategy.timezone})"


def immutability_text(strategy: Strategy) -> str | None:
    """Given a strategy, return its Object Lock and prune key in words (`Object Lock governance, 35d from each
    upload; deletes with the prune key`), or None when it has neither."""
    s3 = strategy.s3
    parts = [f"Object Lock {s3.object_lock.mode}, {format_duration(s3.object_lock.days * 86400)} from each upload"
             ] if s3.object_lock else []
    parts += ["deletes with the prune key (s3.prune_credentials)"] if s3.prune_access_key else []
    return "; ".join(parts) or None


def strategy_table(strategy: Strategy, now: datetime) -> list[str]:
    """Given a strategy and the current time, return the lines that describe it (passwords masked)."""
    upcoming = next_run(strategy.schedule, strategy.timezone, now)
    local = upcoming.astimezone(ZoneInfo(strategy.timezone))
    rows = [("database", f"{target.name}  {masked_url(target.url)}  ({engine_name(target.url)})")
            for target in strategy.databases]
    if strategy.all_databases:
        rows.append(("database", "every database on that server (all_databases)"))
    if strategy.include_globals and strategy.databases:
        engine = engine_for_url(strategy.databases[0].url)
        # An engine may say what its globals are (MySQL: users and grants); PostgreSQL's are roles and tablespaces.
        rows.append(("globals", getattr(engine, "globals_what", "roles and tablespaces (the server's globals)")))
    rows += [
        ("connects", describe_route(strategy)),
        ("schedule", f"{strategy.schedule} ({strategy.timezone})"),
        ("next run", f"{local:%Y-%m-%d %H:%M %Z} ({upcoming:%Y-%m-%dT%H:%M:%SZ})"),
        ("retention", policy_text(strategy)),
        ("destination", f"s3://{strategy.s3.bucket}/{strategy_prefix(strategy.s3.base_path, strategy.name)}"),
        ("slack", strategy.slack.channel_id if strategy.slack.enabled else "off"),
        ("encryption", "off" if strategy.encryption is None else
         f"{strategy.encryption.kind} to {len(strategy.encryption.recipients)} recipient(s)"),
    ]
    rows += [("immutable", text)] if (text := immutability_text(strategy)) else []
    width = max(len(label) for label, _ in rows)
    return [strategy.name] + [f"  {label:<{width}}  {value}" for label, value in rows]


def engine_name(url: str) -> str:
    """Given a database URL, return the name of the engine that backs it up ("postgres", "mysql")."""
    try:
        return engine_for_url(url).name
    except ValueError:  # the config checks refuse such a URL; never fail a description on it
        return "unknown engine"


def check_connectivity(config: Config) -> list[str]:
    """Given a Config, check every distinct bucket, Slack token and database (through the strategy's tunnel or
    proxy, as a backup connects), print one line each; return what failed."""
    from easybackup.network.databases import check_reachable
    from easybackup.notifications.slack_api import SlackApi  # imported here: offline validation needs none
    from easybackup.storage.locks import check_object_lock
    from easybackup.storage.s3 import CHECK_TIMEOUT_S, check_bucket, make_client

    checks = {}
    for strategy in config.strategies:
        for target in strategy.databases:
            checks[("db", strategy.name, target.name)] = (
                f"{strategy.name}: database {target.name} ({describe_route(strategy)})",
                lambda s=strategy, t=target: check_reachable(s, t))
        s3 = strategy.s3
        checks.setdefault(("s3", s3.bucket, s3.endpoint_url, s3.access_key),
                          (f"s3://{s3.bucket}", lambda s3=s3: check_bucket(s3)))
        if s3.object_lock is not None:
            checks[("lock", strategy.name)] = (
                f"{strategy.name}: Object Lock of s3://{s3.bucket}",
                lambda s=strategy: check_object_lock(s.s3, make_client(s.s3, read_timeout=CHECK_TIMEOUT_S,
                                                                       connect_timeout=CHECK_TIMEOUT_S), s.name))
        slack = strategy.slack
        if slack.bot_token:
            checks.setdefault(("slack", slack.bot_token, slack.api_url),
                              (f"slack {slack.api_url}", lambda s=slack: SlackApi(s.bot_token, s.api_url)
                               .call("auth.test")))
    failed = []
    for name, attempt in checks.values():
        try:
            attempt()
        except EasybackupError as exc:
            print(mask(f"{name}: FAILED: {exc}"))
            failed.append(name)
        else:
            print(f"{name}: ok")
    return failed
