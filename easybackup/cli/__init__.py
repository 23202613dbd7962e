"""Command line: `easybackup [run|once|validate|list|restore|verify|prune|worker] ...`.

Each command lives in its own module here and exposes `add_parser(subparsers, common)` and
`run(args) -> int`; only the module of the command being run is imported.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from easybackup import __version__, exitcodes
from easybackup.errors import ConfigError, EasybackupError, UsageError
from easybackup.logs import LEVELS, log, setup_logging

# Order is the order shown in --help.
COMMANDS = ("run", "once", "validate", "list", "restore", "verify", "prune", "worker")
DEFAULT_COMMAND = "run"
DEFAULT_CONFIG = "/etc/easybackup/config.yaml"


def default_config_path() -> str:
    """Return $EASYBACKUP_CONFIG, else ./config.yaml when present, else /etc/easybackup/config.yaml."""
    if os.environ.get("EASYBACKUP_CONFIG"):
        return os.environ["EASYBACKUP_CONFIG"]
    if os.path.exists("config.yaml"):
        return "config.yaml"
    return DEFAULT_CONFIG


def _common_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-c", "--config", default=None, help="config file (default: $EASYBACKUP_CONFIG, "
                        "./config.yaml, /etc/easybackup/config.yaml)")
    common.add_argument("--env-file", default=None, help="dotenv file (default: .env beside the config)")
    common.add_argument("--log-level", choices=LEVELS, default=None, help="overrides the config's log_level")
    common.add_argument("--log-format", choices=("text", "json"), default=None, help="overrides log_format")
    common.add_argument("--version", action="version", version=f"easybackup {__version__}")
    return common


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """Return the argument parser with every command, or — given `only`, a command name — with just that one:
    a run imports only its own command's module (each pulls in up to 0.4 s of imports, a worker none of them)."""
    common = _common_options()
    parser = argparse.ArgumentParser(prog="easybackup", parents=[common],
                                     description="Back up PostgreSQL databases to S3, on a schedule.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in (only,) if only else COMMANDS:
        importlib.import_module(f"easybackup.cli.{name}").add_parser(sub, common)
    return parser


def _with_default_command(argv: list[str]) -> list[str]:
    if argv[:1] and argv[0] in COMMANDS:
        return argv
    if any(arg in ("-h", "--help", "--version") for arg in argv):
        return argv
    return [DEFAULT_COMMAND, *argv]


def main(argv: list[str] | None = None) -> int:
    """Given the command line (default sys.argv[1:]), run the command and return its exit code."""
    # Not list(): importing the `list` command binds easybackup.cli.list over the builtin in this namespace.
    argv = _with_default_command([*(sys.argv[1:] if argv is None else argv)])
    spare = _spare_worker(argv)
    try:
        return _run_command(argv, spare)
    finally:
        if spare is not None:
            spare.dismiss()


def _spare_worker(argv: list[str]):
    """Given the command line, start a worker for `once` now, before its command's imports and the config: its
    own imports overlap them (supervision/spawn.py). Return None for every other command."""
    if argv[0] != "once" or any(arg in ("-h", "--help", "--version") for arg in argv):
        return None
    from easybackup.supervision.spawn import SpareWorker

    return SpareWorker()


def _run_command(argv: list[str], spare) -> int:
    parser = build_parser(only=argv[0] if argv[0] in COMMANDS else None)
    args = parser.parse_args(argv)
    args.spare_worker = spare
    if getattr(args, "config", None) is None:
        args.config = default_config_path()
    setup_logging(args.log_level or "info", args.log_format or "text")
    try:
        return int(args.handler(args))
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"error: {problem}", file=sys.stderr)
        if exc.hint:
            print(f"hint: {exc.hint}", file=sys.stderr)
        return exitcodes.CONFIG_ERROR
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exitcodes.CONFIG_ERROR
    except EasybackupError as exc:
        log.bind(error_kind=exc.kind).error(str(exc))
        return exitcodes.FAILED
    except KeyboardInterrupt:
        return 130


def once_main() -> int:
    """Entry point of the `easybackup-once` console script."""
    return main(["once", *sys.argv[1:]])
