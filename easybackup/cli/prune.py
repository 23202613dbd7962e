"""`easybackup prune`: apply retention now (the same rules a successful run applies), and delete the archives
without a manifest that no run can commit any more (catalogue.retention.delete_orphans). Exit 0 done, 1 some
objects could not be deleted, 2 bad usage or config."""

from __future__ import annotations

import argparse
from datetime import datetime, timedelta, timezone

from easybackup import exitcodes
from easybackup.catalogue.listing import incomplete_archives, list_objects, scan_prefix
from easybackup.catalogue.locked import VersionView
from easybackup.catalogue.retention import RetentionResult, apply_retention, delete_orphans, longest_run_s
from easybackup.cli.list import load
from easybackup.cli.validate import policy_text
from easybackup.humanize import format_bytes
from easybackup.scheduling.durations import format_duration
from easybackup.storage.s3 import make_prune_client

# An archive without a manifest younger than this may be a backup that is still being verified.
INCOMPLETE_REPORT_AGE = timedelta(days=1)


def add_parser(subparsers, common: argparse.ArgumentParser) -> None:
    """Register `prune` with the common options."""
    parser = subparsers.add_parser(
        "prune", parents=[common], help="delete backups that retention no longer keeps",
        description="Delete complete backups that `retention` no longer keeps (older than its duration, or kept by "
        "none of its tiers), never the newest `keep_last` of a database, and say for each backup which rule keeps "
        "it or why it goes; "
        "delete run records past `retention` (the newest 20 stay), drill records past `retention` once a later drill "
        "passed (or 20 later drills exist; the newest always stays), and archives without a manifest older than the "
        "longest run their strategy allows. Objects that are not easybackup's are never touched.")
    parser.add_argument("-s", "--strategy", default=None, metavar="NAME", help="only this strategy")
    parser.add_argument("-n", "--dry-run", action="store_true", help="show what would be deleted; delete nothing")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    config = load(args)
    now = datetime.now(timezone.utc)
    failed = False
    for strategy in config.select([args.strategy] if args.strategy else None):
        client = make_prune_client(strategy.s3)  # the key that may delete (s3.prune_credentials), when one is set
        result = apply_retention(client, strategy, now, dry_run=args.dry_run, explain=True)
        verb = "would delete" if args.dry_run else "deleted"
        print(f"{strategy.name}: {verb} {len(result.deleted)} backup(s), kept {result.kept} "
              f"(retention {policy_text(strategy)})")
        for line in decision_lines(result, verb):
            print(f"  {line}")
        for error in result.errors:
            print(f"  NOT DELETED {error}")
        if result.records_deleted:
            print(f"  {verb} {result.records_deleted} run record(s) past retention")
        for key, why in result.drill_records:
            print(f"  {verb} drill record {key}: {why}")
        failed = failed or bool(result.errors)
        failed = _prune_orphans(client, strategy, now, args.dry_run) or failed
    return exitcodes.FAILED if failed else exitcodes.OK


def decision_lines(result: RetentionResult, verb: str) -> list[str]:
    """Given what retention did, return one line per backup, oldest first: kept and by which rules, or deleted
    (`verb`) and why no rule keeps it. A backup S3 would not delete is left to the NOT DELETED lines."""
    deleted = set(result.deleted)
    lines = []
    for decision in result.decisions:
        reasons = "; ".join(decision.reasons)
        if decision.keep:
            lines.append(f"keep {decision.backup.key}: {reasons}")
        elif decision.backup.key in deleted:
            lines.append(f"{verb} {decision.backup.key} (and its manifest): {reasons}")
    return lines


def _prune_orphans(client, strategy, now: datetime, dry_run: bool) -> bool:
    """Delete (or list) the strategy's archives without a manifest older than its longest run; show the younger
    ones left alone. Return True if one could not be deleted."""
    limit = longest_run_s(strategy)
    orphaned = delete_orphans(client, strategy, now, dry_run=dry_run)
    for item in orphaned:
        print(f"  {'would delete' if dry_run else 'deleted'} {item.key} {format_bytes(item.size)}: no manifest, "
              f"older than the longest run ({format_duration(limit)})")
    gone = {item.key for item in orphaned}
    problem = False
    view = VersionView(client, strategy, now) if strategy.s3.object_lock is not None else None
    for item in incomplete_archives(list_objects(client, strategy.s3.bucket, scan_prefix(strategy)), strategy):
        age = (now - item.last_modified).total_seconds()
        lock = view.lock(item.key) if view is not None and age > limit and item.key not in gone else None
        if lock is not None:
            print(f"  keep {item.key} {format_bytes(item.size)}: no manifest, {lock.describe()}; deleted once it ends")
        elif age > limit and item.key not in gone and not dry_run:
            print(f"  NOT DELETED {item.key}: no manifest, older than the longest run")
            problem = True
        elif age > INCOMPLETE_REPORT_AGE.total_seconds() and age <= limit:
            print(f"  incomplete (no manifest, left alone until {format_duration(limit)} old): {item.key} "
                  f"{format_bytes(item.size)}")
    return problem
