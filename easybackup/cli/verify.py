"""`easybackup verify`: read backups back from S3 and check them whole. Exit 0 all good, 1 any bad (the reason
is printed), 2 bad usage or config."""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict

from easybackup import exitcodes
from easybackup.catalogue.listing import LATEST, database_dir, database_of_key, read_backups, select_backup
from easybackup.catalogue.verify import verify_archive
from easybackup.codec_table import chain_of_manifest
from easybackup.cli.list import load
from easybackup.cli.restore import ProgressLine, pick_strategy
from easybackup.errors import EasybackupError
from easybackup.humanize import format_bytes
from easybackup.logs import log
from easybackup.pipeline import age
from easybackup.storage.manifest import Manifest
from easybackup.storage.s3 import make_client


def add_parser(subparsers, common: argparse.ArgumentParser) -> None:
    """Register `verify` with the common options."""
    parser = subparsers.add_parser(
        "verify", parents=[common], help="read backups back and check them",
        description="Stream a backup from S3, check its size and sha256 against the manifest and read the whole "
        "dump as its engine reads it (PostgreSQL: a restore to nowhere for the custom format, the completion "
        "comment for plain SQL). Without --database, the chosen backup of every database is checked. Exit 0 good, "
        "1 bad, 2 bad usage.")
    parser.add_argument("-s", "--strategy", default=None, metavar="NAME",
                        help="the strategy (may be left out when the config has one)")
    parser.add_argument("-d", "--database", default=None, metavar="DB", help="only this database")
    parser.add_argument("--identity", default=None, metavar="FILE",
                        help="the age identity file (mode 0600; default $EASYBACKUP_AGE_IDENTITY_FILE): an encrypted "
                             "backup is then decrypted and read whole; without it only its sha256 and age header "
                             "are checked")
    parser.add_argument("-b", "--backup", default=LATEST, metavar="latest|KEY|TIMESTAMP",
                        help="which backup: latest (default), its key, or its run timestamp")
    parser.set_defaults(handler=run)


def chosen_backups(client, strategy, database: str | None, choice: str) -> list[Manifest]:
    """Given the command line's choice, return the manifests to verify: one per database unless a key names one.
    Raise EasybackupError (not_found) when nothing matches, e.g. an archive whose manifest is missing."""
    database = database or database_of_key(choice)
    groups: dict[str, list[Manifest]] = defaultdict(list)
    for manifest in read_backups(client, strategy, database):
        groups[database_dir(manifest.key)].append(manifest)
    if database_of_key(choice) is not None or not groups:
        return [select_backup([m for group in groups.values() for m in group], choice)]
    return [select_backup(group, choice) for _, group in sorted(groups.items())]


def run(args: argparse.Namespace) -> int:
    config = load(args)
    strategy = pick_strategy(config, args.strategy)
    client = make_client(strategy.s3)
    failed = 0
    identity = age.identity_path(args.identity)
    for manifest in chosen_backups(client, strategy, args.database, args.backup):
        progress = ProgressLine(manifest.stored_bytes)
        try:
            checked = verify_archive(client, strategy.s3.bucket, manifest.key, size=manifest.stored_bytes,
                                     sha256=manifest.sha256, engine=manifest.engine, fmt=manifest.format,
                                     codecs=chain_of_manifest(manifest), identity=identity, on_progress=progress,
                                     on_line=lambda stage, line: log.info("{}: {}", stage, line))
        except EasybackupError as error:
            progress.clear()
            failed += 1
            print(f"FAILED  {manifest.key}: [{error.kind}] {error}")
            continue
        progress.clear()
        level = "" if checked.level == "full" else "  ciphertext only (sha256 + age header; --identity reads it whole)"
        print(f"OK      {manifest.key}  {format_bytes(manifest.stored_bytes)}  sha256 {manifest.sha256[:12]}{level}")
    sys.stdout.flush()
    return exitcodes.FAILED if failed else exitcodes.OK
