"""`easybackup restore`: stream a backup from S3 into a database (pg_restore for custom, psql for plain).

Exit 0 restored; 1 the restore failed (checksum mismatch, restore errors); 2 bad usage or config, or a target
that is not empty without --clean (nothing was changed).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time

from easybackup import exitcodes
from easybackup.catalogue.listing import GLOBALS_DUMP, database_of_key, pick_database, read_backups, select_backup
from easybackup.catalogue.restore import (
    Connection,
    create_database,
    database_exists,
    private_directory,
    restore_parallel,
    restore_streaming,
    user_table_count,
    with_dbname,
)
from easybackup.cli.list import load
from easybackup.config.model import Config, DatabaseTarget, Strategy
from easybackup.errors import UsageError
from easybackup.humanize import format_bytes, format_rate
from easybackup.logs import log
from easybackup.scheduling.durations import format_duration
from easybackup.secrets import mask_url, register_secret
from easybackup.storage.manifest import Manifest
from easybackup.storage.s3 import make_client
from easybackup.worker.routes import describe_route, logging_emit, open_route
from easybackup.worker.sources.postgres import parse_postgres_url

MAINTENANCE_DB = "postgres"


def add_parser(subparsers, common: argparse.ArgumentParser) -> None:
    """Register `restore` with the common options."""
    parser = subparsers.add_parser(
        "restore", parents=[common], help="restore a backup into a database",
        description="Stream a backup from S3 into a database, checking its sha256 on the way. Refuses a target "
        "that has user tables unless --clean. Exit 0 restored, 1 failed, 2 bad usage or refused.")
    parser.add_argument("-s", "--strategy", default=None, metavar="NAME",
                        help="the strategy (may be left out when the config has one)")
    parser.add_argument("-d", "--database", default=None, metavar="DB",
                        help="the backed-up database (may be left out when the strategy has one)")
    parser.add_argument("-b", "--backup", default="latest", metavar="latest|KEY|TIMESTAMP",
                        help="which backup: latest (default), its key, or its run timestamp (2024-05-01T020000Z)")
    parser.add_argument("--target-url", required=True, metavar="URL",
                        help="postgres://user:password@host:port/dbname to restore into")
    parser.add_argument("--clean", action="store_true",
                        help="drop the target's objects that the backup contains before restoring (custom format)")
    parser.add_argument("--create", action="store_true",
                        help="create the target database first (connects to the maintenance database 'postgres')")
    parser.add_argument("-j", "--jobs", type=int, default=None, metavar="N",
                        help="parallel pg_restore jobs; 2 or more download the archive to temp_dir first (custom "
                             "format); 1 streams, as without --jobs")
    parser.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    parser.add_argument("--direct", action="store_true",
                        help="connect to --target-url directly even when the strategy reaches its databases "
                             "through a tunnel or proxy")
    parser.add_argument("--globals", action="store_true",
                        help="restore the newest roles/tablespaces dump (`_globals/`) with psql instead")
    parser.set_defaults(handler=run)


def pick_strategy(config: Config, name: str | None) -> Strategy:
    """Given the config and --strategy (or None), return the strategy; raise UsageError if it is ambiguous."""
    if name is not None:
        return config.strategy(name)
    if len(config.strategies) == 1:
        return config.strategies[0]
    raise UsageError("say which strategy with --strategy",
                     detail="configured strategies: " + ", ".join(s.name for s in config.strategies))


def choose_backup(client, strategy: Strategy, database: str | None, choice: str, want_globals: bool) -> Manifest:
    """Given the command line's choice, return the manifest of the backup to use."""
    if want_globals:
        database = GLOBALS_DUMP
    database = database or database_of_key(choice) or pick_database(strategy, None)
    return select_backup(read_backups(client, strategy, database), choice)


def run(args: argparse.Namespace) -> int:
    config = load(args)
    _check_options(args)
    register_secret(_password_of(args.target_url))
    strategy = pick_strategy(config, args.strategy)
    client = make_client(strategy.s3)
    manifest = choose_backup(client, strategy, args.database, args.backup, args.globals)
    print(f"backup: {manifest.key} ({format_bytes(manifest.stored_bytes)}, {manifest.format} format, "
          f"{manifest.compression}, taken {manifest.started_at})", file=sys.stderr)
    with private_directory(config.temp_dir) as private, _route(args, strategy, private) as target_url:
        target = Connection(target_url, private)
        maintenance = Connection(with_dbname(target_url, MAINTENANCE_DB), private) if args.create else None
        try:
            return _restore(args, client, strategy, manifest, target, maintenance, private)
        finally:
            target.cleanup()
            if maintenance is not None:
                maintenance.cleanup()


@contextlib.contextmanager
def _route(args, strategy: Strategy, private):
    """Yield the URL pg_restore connects to: through the strategy's tunnel or proxy when it has one — the target
    usually sits behind the same bastion as the backed-up server — unless --direct; else --target-url itself."""
    if args.direct or (strategy.tunnel is None and strategy.proxy is None):
        yield args.target_url
        return

    print(f"connecting {describe_route(strategy)} (use --direct to bypass)", file=sys.stderr)
    target = DatabaseTarget(name="restore-target", url=args.target_url)
    with open_route(strategy, target, private, logging_emit("info")) as routed:
        yield routed.url


def _restore(args, client, strategy: Strategy, manifest: Manifest, target: Connection, maintenance, private) -> int:
    where = mask_url(args.target_url)
    missing = maintenance is not None and not database_exists(maintenance, target.dbname)
    # Roles and tablespaces are cluster-wide: the target database's tables do not matter to --globals.
    tables = 0 if missing or args.globals else user_table_count(target)
    if tables and not args.clean and not args.globals:
        raise UsageError(f"database {target.dbname} is not empty ({tables} user tables); nothing was changed",
                         hint="add --clean to replace the objects the backup contains, or restore into a new "
                              "database with --create")
    _confirm(args, manifest, where, tables, missing)
    if missing:
        create_database(maintenance, target.dbname)
        log.info("created database {}", target.dbname)
    progress = ProgressLine(manifest.stored_bytes)

    def on_line(stage: str, line: str) -> None:
        progress.clear()
        log.info("{}: {}", stage, line)

    started = time.monotonic()
    try:
        if args.jobs and args.jobs > 1:  # one job is what the streamed restore runs: no file needed
            restore_parallel(client, strategy.s3.bucket, manifest, target, private, jobs=args.jobs,
                             clean=args.clean, on_line=on_line, on_progress=progress)
        else:
            restore_streaming(client, strategy.s3.bucket, manifest, target, clean=args.clean, on_line=on_line,
                              on_progress=progress)
    finally:
        progress.clear()
    print(f"restored {manifest.key} into {where} in {format_duration(time.monotonic() - started)}")
    return exitcodes.OK


def _check_options(args) -> None:
    if args.jobs is not None and args.jobs < 1:
        raise UsageError("--jobs must be at least 1")
    if args.globals and (args.clean or args.jobs):
        raise UsageError("--globals restores roles and tablespaces with psql: --clean and --jobs do not apply")
    try:
        parse_postgres_url(args.target_url)
    except ValueError as exc:
        raise UsageError(f"--target-url: {exc}") from None


def _password_of(url: str) -> str | None:
    try:
        return parse_postgres_url(url).password
    except ValueError:
        return None


def _confirm(args, manifest: Manifest, where: str, tables: int, missing: bool) -> None:
    """Ask on a terminal unless --yes; without a terminal, go ahead only into an empty database."""
    if args.yes:
        return
    if not sys.stdin.isatty():
        if tables:
            raise UsageError(f"database at {where} has {tables} user tables and there is no terminal to confirm "
                             "--clean; nothing was changed", hint="add --yes to restore without asking")
        return
    what = "create it and restore" if missing else "replace its objects" if tables else "restore"
    answer = input(f"{what} {manifest.key} into {where}? [y/N] ")
    if answer.strip().lower() not in ("y", "yes"):
        raise UsageError("restore cancelled; nothing was changed")


class ProgressLine:
    """A one-line progress display (bytes, rate, ETA) on a terminal; silent when stderr is not a terminal."""

    def __init__(self, total: int | None, stream=None, interval: float = 0.5):
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty()
        self.total = total
        self.interval = interval
        self.started = time.monotonic()
        self._last = 0.0
        self._shown = False

    def __call__(self, done: int) -> None:
        now = time.monotonic()
        if not self.enabled or now - self._last < self.interval:
            return
        self._last = now
        elapsed = max(now - self.started, 1e-6)
        rate = done / elapsed
        text = f"{format_bytes(done)}"
        if self.total:
            eta = (self.total - done) / rate if rate > 0 else None
            text += f" / {format_bytes(self.total)} ({100 * done / self.total:.0f}%)"
            text += f"  ETA {format_duration(eta)}" if eta is not None else ""
        self.stream.write(f"\r{text}  {format_rate(rate)}\033[K")
        self.stream.flush()
        self._shown = True

    def clear(self) -> None:
        if self._shown:
            self.stream.write("\r\033[K")
            self.stream.flush()
            self._shown = False
