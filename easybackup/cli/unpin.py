"""`easybackup unpin KEY`: remove a backup's pin (cli/pin.py); retention then treats it like any other backup.
Exit 0 unpinned, 1 S3 refused, 2 bad usage (a key that names no complete backup, or a backup that is not pinned)."""

from __future__ import annotations

import argparse

from easybackup import exitcodes
from easybackup.catalogue.pins import delete_pin, read_pins
from easybackup.cli.list import load
from easybackup.cli.pin import find_backup
from easybackup.cli.restore import pick_strategy
from easybackup.errors import UsageError
from easybackup.storage.layout import pin_key
from easybackup.storage.s3 import make_prune_client


def add_parser(subparsers, common: argparse.ArgumentParser) -> None:
    """Register `unpin` with the common options."""
    parser = subparsers.add_parser("unpin", parents=[common], help="remove a backup's pin",
                                   description="Remove the pin `easybackup pin` set: retention decides about the "
                                   "backup again at the next successful run or `prune`.")
    parser.add_argument("key", metavar="KEY", help="the backup's archive or manifest key (as `list` shows it)")
    parser.add_argument("-s", "--strategy", default=None, metavar="NAME",
                        help="the strategy (may be left out when the config has one)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    config = load(args)
    strategy = pick_strategy(config, args.strategy)
    client = make_prune_client(strategy.s3)  # deleting needs the prune key, when one is set
    manifest = find_backup(client, strategy, args.key)
    if pin_key(manifest.key) not in read_pins(client, strategy):
        raise UsageError(f"{manifest.key} is not pinned", hint="`easybackup list` shows the pins")
    delete_pin(client, strategy, manifest.key)
    print(f"{manifest.key}: unpinned")
    return exitcodes.OK
