"""`easybackup list`: every complete backup in S3 (manifest present), and archives without a manifest apart."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

from easybackup import exitcodes
from easybackup.catalogue.listing import Catalogue, other_objects, parse_utc, read_catalogue
from easybackup.catalogue.pins import Pin, read_pins
from easybackup.catalogue.retention import longest_run_s
from easybackup.cli.summary import render_table
from easybackup.config import load_config
from easybackup.config.model import Config, Strategy
from easybackup.humanize import format_bytes
from easybackup.logs import setup_logging
from easybackup.scheduling.durations import format_duration
from easybackup.storage.layout import manifest_key, pin_key, strategy_prefix
from easybackup.storage.s3 import make_client

HEADERS = ("TIME", "UTC", "DATABASE", "SIZE", "DURATION", "VERIFIED", "SHA256", "KEY")


def add_parser(subparsers, common: argparse.ArgumentParser) -> None:
    """Register `list` with the common options."""
    parser = subparsers.add_parser("list", parents=[common], help="list the backups in S3",
                                   description="List every complete backup (its manifest exists) of each strategy, "
                                   "oldest first, and archives without a manifest (incomplete: not backups).")
    parser.add_argument("-s", "--strategy", default=None, metavar="NAME", help="only this strategy")
    parser.add_argument("-d", "--database", default=None, metavar="DB", help="only this database")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("-a", "--all", action="store_true",
                        help="also show every other object under the strategy's prefix: orphaned archives (no "
                             "manifest, older than the longest run: deleted at the supervisor's start and by "
                             "`prune`), incomplete ones, run records and foreign objects")
    parser.set_defaults(handler=run)


def load(args: argparse.Namespace) -> Config:
    """Given parsed arguments, load the config and set up logging as it says (the command line wins)."""
    config = load_config(args.config, env_file=args.env_file)
    setup_logging(args.log_level or config.log_level, args.log_format or config.log_format)
    return config


def run(args: argparse.Namespace) -> int:
    config = load(args)
    strategies = config.select([args.strategy] if args.strategy else None)
    found = []
    for strategy in strategies:
        client = make_client(strategy.s3)
        catalogue = read_catalogue(client, strategy, args.database)
        found.append((strategy, catalogue, read_pins(client, strategy, list(catalogue.objects))))
    show_all = getattr(args, "all", False)
    now = datetime.now(timezone.utc)
    if args.json:
        documents = []
        for strategy, catalogue, pins in found:
            document = catalogue_json(strategy, catalogue, pins)
            if show_all:
                document["others"] = others_json(strategy, catalogue, now)
            documents.append(document)
        print(json.dumps({"strategies": documents}, indent=1))
    else:
        print("\n\n".join(catalogue_text(s, c, p) + (others_text(s, c, now) if show_all else "") for s, c, p in found))
    return exitcodes.OK


def others_json(strategy: Strategy, catalogue: Catalogue, now: datetime) -> list[dict]:
    """Given a strategy and its catalogue, return `--all`'s other objects as JSON-able data."""
    return [{"kind": kind, "key": item.key, "size": item.size,
             "last_modified": f"{item.last_modified:%Y-%m-%dT%H:%M:%SZ}"}
            for kind, item in other_objects(catalogue, strategy, now, longest_run_s(strategy))]


def others_text(strategy: Strategy, catalogue: Catalogue, now: datetime) -> str:
    """Given a strategy and its catalogue, return `--all`'s lines: every other object, with what it is."""
    limit = longest_run_s(strategy)
    others = other_objects(catalogue, strategy, now, limit)
    lines = [f"\nother objects under the prefix ({len(others)}; an archive without a manifest older than "
             f"{format_duration(limit)} is orphaned: the supervisor at start and `prune` delete it):"]
    lines += [f"  {kind:<10}  {item.key}  {format_bytes(item.size)}  {item.last_modified:%Y-%m-%dT%H:%M:%SZ}"
              for kind, item in others]
    return "\n".join(lines)


def local_time(utc_text: str, timezone: str) -> str:
    """Given a manifest time and a timezone name, return the local time like `2024-05-01 04:00 CEST`."""
    return f"{parse_utc(utc_text).astimezone(ZoneInfo(timezone)):%Y-%m-%d %H:%M:%S %Z}"


def catalogue_text(strategy: Strategy, catalogue: Catalogue, pins: dict[str, Pin] | None = None) -> str:
    """Given a strategy, its catalogue and its pins (by pin key), return the table an operator reads."""
    where = f"s3://{strategy.s3.bucket}/{strategy_prefix(strategy.s3.base_path, strategy.name)}"
    count = len(catalogue.backups)
    lines = [f"{strategy.name}: {count} backup{'' if count == 1 else 's'} in {where}"]
    if catalogue.backups:
        rows = [(local_time(m.started_at, strategy.timezone), m.started_at, m.database, format_bytes(m.stored_bytes),
                 format_duration(m.duration_s) if m.duration_s is not None else "-", _verified(m),
                 m.sha256[:12], m.key + ("  (ARCHIVE MISSING)" if m.key in catalogue.missing_archives else "")
                 + (f"  (encrypted: {m.encryption})" if m.encryption != "none" else "")
                 + (f"  ({pins[pin_key(m.key)].describe()})" if pin_key(m.key) in (pins or {}) else ""))
                for m in catalogue.backups]
        lines.append(render_table(rows, (f"TIME ({strategy.timezone})", *HEADERS[1:])))
    if catalogue.incomplete:
        lines.append(f"incomplete — archive without a manifest, not a backup ({len(catalogue.incomplete)}):")
        lines += [f"  {item.key}  {format_bytes(item.size)}  {item.last_modified:%Y-%m-%dT%H:%M:%SZ}"
                  for item in catalogue.incomplete]
    return "\n".join(lines)


def _verified(manifest) -> str:
    """`yes` when read back whole, `ciphertext` when only its sha256 and age header were checked, else `no`."""
    if not manifest.verified:
        return "no"
    return "ciphertext" if manifest.verify_level == "ciphertext" else "yes"


def catalogue_json(strategy: Strategy, catalogue: Catalogue, pins: dict[str, Pin] | None = None) -> dict:
    """Given a strategy, its catalogue and its pins, return it as JSON-able data (`pin` on a pinned backup)."""
    backups = []
    for manifest in catalogue.backups:
        entry = json.loads(manifest.to_json())
        entry.update(local_time=local_time(manifest.started_at, strategy.timezone),
                     manifest_key=manifest_key(manifest.key), archive_present=manifest.key not in
                     catalogue.missing_archives)
        if pin_key(manifest.key) in (pins or {}):
            entry["pin"] = asdict(pins[pin_key(manifest.key)])
        backups.append(entry)
    incomplete = [{"key": item.key, "size": item.size,
                   "last_modified": f"{item.last_modified:%Y-%m-%dT%H:%M:%SZ}"} for item in catalogue.incomplete]
    return {"name": strategy.name, "bucket": strategy.s3.bucket, "timezone": strategy.timezone,
            "backups": backups, "incomplete": incomplete}
