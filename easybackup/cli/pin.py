"""`easybackup pin KEY [--until DATE] [--note TEXT]`: keep a backup whatever retention says (catalogue.pins), until
DATE if given. The pin is an object in S3 beside the manifest: it survives restarts and is seen by every host.
Exit 0 pinned, 1 S3 refused, 2 bad usage (a key that names no complete backup, a DATE that is not in the future)."""

from __future__ import annotations

import argparse
from datetime import datetime, timezone

from easybackup import exitcodes
from easybackup.catalogue.listing import database_of_key, read_backups, select_backup
from easybackup.catalogue.pins import Pin, write_pin
from easybackup.cli.list import load
from easybackup.cli.restore import pick_strategy
from easybackup.config.model import Strategy
from easybackup.errors import EasybackupError, UsageError
from easybackup.storage.manifest import Manifest
from easybackup.storage.s3 import make_client

UTC_TEXT = "%Y-%m-%dT%H:%M:%SZ"


def add_parser(subparsers, common: argparse.ArgumentParser) -> None:
    """Register `pin` with the common options."""
    parser = subparsers.add_parser(
        "pin", parents=[common], help="keep a backup whatever retention says",
        description="Pin a complete backup: retention never deletes it (until DATE, when given). The pin is stored "
        "in S3 beside the manifest; `list` shows it, `unpin` removes it. Pinning again replaces the pin.")
    parser.add_argument("key", metavar="KEY", help="the backup's archive or manifest key (as `list` shows it)")
    parser.add_argument("--until", default=None, metavar="DATE",
                        help="keep it until this time: YYYY-MM-DD (00:00 UTC) or an ISO time with its zone")
    parser.add_argument("--note", default=None, metavar="TEXT", help="why it is pinned (shown by list and prune)")
    parser.add_argument("-s", "--strategy", default=None, metavar="NAME",
                        help="the strategy (may be left out when the config has one)")
    parser.set_defaults(handler=run)


def parse_until(text: str, now: datetime) -> str:
    """Given --until text and now, return it as a UTC time (`2027-01-01T00:00:00Z`); raise UsageError if it is
    not a date or time, or not in the future."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(f"--until '{text}' is not a date", hint="give YYYY-MM-DD (00:00 UTC) or an ISO time with "
                         "its zone, e.g. 2027-01-01 or 2027-01-01T12:00+01:00") from None
    if moment.tzinfo is None:
        if len(text.strip()) > 10:
            raise UsageError(f"--until '{text}' names no time zone", hint="add one (2027-01-01T12:00Z, +01:00) or "
                             "give a date alone (00:00 UTC)")
        moment = moment.replace(tzinfo=timezone.utc)
    if moment <= now:
        raise UsageError(f"--until '{text}' is not in the future", hint="a pin that has ended keeps nothing; "
                         "`unpin` removes a pin")
    return moment.astimezone(timezone.utc).strftime(UTC_TEXT)


def find_backup(client, strategy: Strategy, key: str) -> Manifest:
    """Given a strategy and an archive or manifest key, return its manifest; raise UsageError if the key names no
    complete backup of the strategy."""
    if database_of_key(key) is None:
        raise UsageError(f"'{key}' is not a backup's key", hint="give the archive or manifest key `easybackup list` "
                         "shows")
    try:
        return select_backup(read_backups(client, strategy, database_of_key(key)), key)
    except EasybackupError as error:
        if error.kind != "not_found":
            raise
        raise UsageError(error.message, error.detail, error.hint) from None


def run(args: argparse.Namespace) -> int:
    config = load(args)
    now = datetime.now(timezone.utc)
    until = parse_until(args.until, now) if args.until else None
    strategy = pick_strategy(config, args.strategy)
    client = make_client(strategy.s3)
    manifest = find_backup(client, strategy, args.key)
    pin = Pin(key=manifest.key, pinned_at=now.strftime(UTC_TEXT), until=until, note=args.note or None)
    stored = write_pin(client, strategy, pin)
    print(f"{manifest.key}: {pin.describe()} ({stored})")
    return exitcodes.OK
