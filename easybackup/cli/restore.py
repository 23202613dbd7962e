"""`easybackup restore`: stream a backup from S3 into a database with its engine's restore program.

Exit 0 restored; 1 the restore failed (checksum mismatch, restore errors); 2 bad usage or config, or a target
that is not empty without --clean (nothing was changed).
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import os
import stat
import sys
import time
from pathlib import Path

from easybackup import exitcodes
from easybackup.catalogue.listing import GLOBALS_DUMP, database_of_key, pick_database, read_backups, select_backup
from easybackup.catalogue.restore import private_directory, prove_decryptable, restore_parallel, restore_streaming
from easybackup.cli.list import load
from easybackup.config.model import Config, DatabaseTarget, Strategy
from easybackup.engines import Engine, RestoreTarget, engine_for_url, engine_named
from easybackup.errors import EasybackupError, UsageError
from easybackup.humanize import format_bytes, format_rate
from easybackup.logs import Console, console, log
from easybackup.network.routes import describe_route, logging_emit, open_route
from easybackup.pipeline import age
from easybackup.scheduling.durations import format_duration
from easybackup.secrets import mask_url, register_secret
from easybackup.storage.manifest import Manifest
from easybackup.storage.s3 import make_client

PASSWORD_ENV = "EASYBACKUP_TARGET_PASSWORD"


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
                        help="postgres:// or mysql:// user@host:port/dbname to restore into, without a password "
                             "(it would show in ps and the shell's history); the password comes from "
                             "$EASYBACKUP_TARGET_PASSWORD, --target-password-file, or a prompt on a terminal")
    parser.add_argument("--target-password-file", default=None, metavar="FILE",
                        help="read the target's password from the first line of FILE (mode 0600)")
    parser.add_argument("--clean", action="store_true",
                        help="drop the target's objects that the backup contains before restoring (custom format); "
                             "in one transaction, so a failed restore leaves the database as it was (MySQL: "
                             "restore over a database that is not empty; its dump drops what it holds itself)")
    parser.add_argument("--force", action="store_true",
                        help="allow --clean with --jobs above 1, which cannot run in one transaction")
    parser.add_argument("--create", action="store_true",
                        help="create the target database first (connects to the maintenance database 'postgres'; "
                             "MySQL: to the server)")
    parser.add_argument("-j", "--jobs", type=int, default=None, metavar="N",
                        help="parallel restore jobs; 2 or more download the archive to temp_dir first (custom "
                             "format); 1 streams, as without --jobs")
    parser.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    parser.add_argument("--direct", action="store_true",
                        help="connect to --target-url directly even when the strategy reaches its databases "
                             "through a tunnel or proxy")
    parser.add_argument("--identity", default=None, metavar="FILE",
                        help="the age identity (private key) file that decrypts an encrypted backup (mode 0600); "
                             f"default ${age.IDENTITY_ENV}")
    parser.add_argument("--globals", action="store_true",
                        help="restore the newest roles/tablespaces dump (`_globals/`) instead")
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
    backups = read_backups(client, strategy, database)
    try:
        return select_backup(backups, choice)
    except EasybackupError as error:
        if error.kind != "not_found":
            raise
        # README, exit codes: a --backup that names nothing is bad usage (2); nothing was read or changed.
        raise UsageError(error.message, error.detail, error.hint) from None


def run(args: argparse.Namespace) -> int:
    config = load(args)
    engine = _check_options(args)
    url = _with_target_password(args, engine)
    strategy = pick_strategy(config, args.strategy)
    client = make_client(strategy.s3)
    manifest = choose_backup(client, strategy, args.database, args.backup, args.globals)
    _check_engine(engine, manifest)
    encrypted = manifest.encryption != "none"
    print(f"backup: {manifest.key} ({format_bytes(manifest.stored_bytes)}, {manifest.format} format, "
          f"{manifest.compression}{', encrypted with ' + manifest.encryption if encrypted else ''}, "
          f"taken {manifest.started_at})", file=sys.stderr)
    args.identity = age.identity_path(args.identity) if encrypted else None
    if encrypted:
        _prove_decryptable(client, strategy, manifest, args.identity)
    with private_directory(config.temp_dir) as private, _route(args, strategy, private, url) as target_url:
        connect = strategy.timeout.connect
        target_url = _prompt_if_asked(engine, target_url, private, connect)
        target = engine.restore_target(target_url, private, connect)
        maintenance = (engine.restore_target(engine.with_database(target_url, engine.maintenance_database), private,
                                             connect) if args.create else None)
        try:
            return _restore(args, client, strategy, manifest, target, maintenance, private)
        finally:
            target.cleanup()
            if maintenance is not None:
                maintenance.cleanup()


def _prove_decryptable(client, strategy: Strategy, manifest: Manifest, identity) -> None:
    """Read an encrypted backup whole with the identity before the target is touched (catalogue.restore)."""
    print("decrypting and checking the whole backup before touching the target", file=sys.stderr)
    progress = ProgressLine(manifest.stored_bytes)
    try:
        prove_decryptable(client, strategy.s3.bucket, manifest, identity, on_progress=progress,
                          on_line=lambda stage, line: log.info("{}: {}", stage, line))
    finally:
        progress.clear()


@contextlib.contextmanager
def _route(args, strategy: Strategy, private, url: str):
    """Yield the URL the restore program connects to: through the strategy's tunnel or proxy when it has one — the
    target usually sits behind the same bastion as the backed-up server — unless --direct; else `url` itself."""
    if args.direct or (strategy.tunnel is None and strategy.proxy is None):
        yield url
        return

    print(f"connecting {describe_route(strategy)} (use --direct to bypass)", file=sys.stderr)
    target = DatabaseTarget(name="restore-target", url=url)
    with open_route(strategy, target, private, logging_emit("info")) as routed:
        yield routed.url


def _restore(args, client, strategy: Strategy, manifest: Manifest, target: RestoreTarget,
             maintenance: RestoreTarget | None, private) -> int:
    where = mask_url(args.target_url)
    missing = maintenance is not None and not maintenance.database_exists(target.dbname)
    # Roles and tablespaces are cluster-wide: the target database's tables do not matter to --globals.
    tables = 0 if missing or args.globals else target.user_table_count()
    if tables and not args.clean and not args.globals:
        raise UsageError(f"database {target.dbname} is not empty ({tables} user tables); nothing was changed",
                         hint=engine_named(manifest.engine).not_empty_hint(manifest.format, args.create))
    _confirm(args, manifest, where, tables, missing)
    if missing:
        maintenance.create_database(target.dbname)
        log.info("created database {}", target.dbname)
    progress = ProgressLine(manifest.stored_bytes)

    def on_line(stage: str, line: str) -> None:
        progress.clear()
        log.info("{}: {}", stage, line)

    started = time.monotonic()
    try:
        if args.jobs and args.jobs > 1:  # one job is what the streamed restore runs: no file needed
            restore_parallel(client, strategy.s3.bucket, manifest, target, private, jobs=args.jobs,
                             clean=args.clean, identity=args.identity, on_line=on_line, on_progress=progress)
        else:
            restore_streaming(client, strategy.s3.bucket, manifest, target, clean=args.clean,
                              identity=args.identity, on_line=on_line, on_progress=progress)
    finally:
        progress.clear()
    print(f"restored {manifest.key} into {where} in {format_duration(time.monotonic() - started)}")
    return exitcodes.OK


def _check_options(args) -> Engine:
    """Given the command line, return the engine of --target-url; raise UsageError for options that do not go
    together or a target URL that is not one, or holds a password."""
    if args.jobs is not None and args.jobs < 1:
        raise UsageError("--jobs must be at least 1")
    if args.globals and (args.clean or args.jobs):
        raise UsageError("--globals restores roles and tablespaces: --clean and --jobs do not apply")
    if args.clean and (args.jobs or 1) > 1 and not args.force:
        raise UsageError("--clean with --jobs above 1 cannot run in one transaction: a failed restore would leave "
                         "the target half replaced; nothing was changed",
                         hint="leave out --jobs (one transaction: a failure leaves the database as it was), or add "
                              "--force to accept that risk")
    try:
        engine = engine_for_url(args.target_url)
        parsed = engine.parse_url(args.target_url)
    except ValueError as exc:
        raise UsageError(f"--target-url: {exc}") from None
    if parsed.password:
        raise UsageError("--target-url holds a password, which shows in ps and the shell's history; nothing was "
                         "changed", hint=f"take it out of the URL and set ${PASSWORD_ENV}, pass "
                         "--target-password-file FILE, or type it when asked on a terminal")
    return engine


def _check_engine(engine: Engine, manifest: Manifest) -> None:
    """Given the target's engine and the backup's manifest, raise UsageError if the backup is another engine's."""
    if manifest.engine != engine.name:
        raise UsageError(f"{manifest.key} is a {manifest.engine} backup and --target-url is a {engine.name} "
                         "database; nothing was changed", hint=f"restore it into a {manifest.engine} database")


def _with_target_password(args, engine: Engine) -> str:
    """Return --target-url with the target's password in it, from $EASYBACKUP_TARGET_PASSWORD or
    --target-password-file, or unchanged when neither gives one. The URL goes no further than the passfile:
    every child gets the URL without it."""
    password = _password_from_file(args.target_password_file) if args.target_password_file else None
    if password is None:
        password = os.environ.get(PASSWORD_ENV) or None
    if password is None:
        return args.target_url
    register_secret(password)
    return engine.with_password(args.target_url, password)


def _password_from_file(name: str) -> str:
    """Given --target-password-file, return its first line; raise UsageError if it cannot be read, is empty, or
    others may read or write it."""
    path = Path(name)
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            raise UsageError(f"--target-password-file {name} is readable or writable by other users (mode "
                             f"{mode:04o}); nothing was changed", hint=f"chmod 600 {name}")
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        why = getattr(exc, "strerror", None) or "not UTF-8 text"
        raise UsageError(f"--target-password-file {name} cannot be read: {why}",
                         hint="name a readable file holding the password on its first line") from None
    if not lines or not lines[0]:
        raise UsageError(f"--target-password-file {name} holds no password on its first line")
    return lines[0]


def _prompt_if_asked(engine: Engine, url: str, private, connect_timeout: float) -> str:
    """Given the engine and the URL its restore program will use, return it with a password typed at the terminal
    when none was given, stdin is a terminal and the server asks for one; else unchanged (a restore without a
    terminal fails with the server's own "no password supplied")."""
    parsed = engine.parse_url(url)
    if parsed.password is not None or not sys.stdin.isatty():
        return url
    probe = engine.restore_target(url, private, connect_timeout)
    try:
        if not probe.asks_for_password():
            return url  # connected, or failed for another reason: the restore reports it in its own words
    finally:
        probe.cleanup()
    password = getpass.getpass(f"password for user {parsed.user or '(default)'} at {parsed.host}:{parsed.port}: ")
    register_secret(password)
    return engine.with_password(url, password)


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
        self.console = Console(stream) if stream is not None else console()  # shared with the log lines
        self.enabled = self.console.is_terminal
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
        self.console.show(f"{text}  {format_rate(rate)}")
        self._shown = True

    def clear(self) -> None:
        if self._shown:
            self.console.clear()
            self._shown = False
