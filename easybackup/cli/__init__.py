"""Command line: `easybackup [run|once|drill|validate|list|restore|verify|prune|pin|unpin|render|worker] ...`.

Each command lives in its own module here and exposes `add_parser(subparsers, common)` and
`run(args) -> int`; only the module of the command being run is imported.
"""

from __future__ import annotations

import argparse
import importlib
import os
import select
import sys

from easybackup import __version__, exitcodes
from easybackup.errors import ConfigError, EasybackupError, UsageError
from easybackup.logs import LEVELS, log, setup_logging

# Order is the order shown in --help.
COMMANDS = ("run", "once", "drill", "validate", "list", "restore", "verify", "prune", "pin", "unpin", "render",
            "worker")
DEFAULT_COMMAND = "run"
DEFAULT_CONFIG = "/etc/easybackup/config.yaml"


def default_config_path() -> str:
    """Return $EASYBACKUP_CONFIG, else ./config.yaml when present, else /etc/easybackup/config.yaml."""
    if os.environ.get("EASYBACKUP_CONFIG"):
        return os.environ["EASYBACKUP_CONFIG"]
    if os.path.exists("config.yaml"):
        return "config.yaml"
    return DEFAULT_CONFIG


def _common_options(default=None) -> argparse.ArgumentParser:
    """Return the options every command takes, before or after the command word. The top-level parser's copy
    has `default` None; each command's copy has SUPPRESS, so a value given before the command is not
    overwritten by that copy's default (given in both places, the one after the command wins, as a repeated
    option does)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-c", "--config", default=default, help="config file (default: $EASYBACKUP_CONFIG, "
                        "./config.yaml, /etc/easybackup/config.yaml)")
    common.add_argument("--env-file", default=default, help="dotenv file (default: .env beside the config)")
    common.add_argument("--log-level", choices=LEVELS, default=default, help="overrides the config's log_level")
    common.add_argument("--log-format", choices=("text", "json"), default=default, help="overrides log_format")
    common.add_argument("--version", action="version", version=f"easybackup {__version__}")
    return common


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """Return the argument parser with every command, or — given `only`, a command name — with just that one:
    a run imports only its own command's module (each pulls in up to 0.4 s of imports, a worker none of them)."""
    parser = argparse.ArgumentParser(prog="easybackup", parents=[_common_options()],
                                     description="Back up PostgreSQL databases to S3, on a schedule. The options "
                                     "below go before or after COMMAND.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    common = _common_options(argparse.SUPPRESS)
    for name in (only,) if only else COMMANDS:
        importlib.import_module(f"easybackup.cli.{name}").add_parser(sub, common)
    return parser


def _takes_value(arg: str, options: dict[str, bool]) -> bool:
    """Given a global option as typed (`-c`, `--conf`, `--config=x`, `-cx`) and {option: takes a value}, return
    whether the next word is its value; abbreviations resolve as argparse resolves them."""
    if "=" in arg or not arg.startswith("--"):
        return options.get(arg, False)  # `-c` takes the next word; `-cx` holds its value
    if arg in options:
        return options[arg]
    matches = [name for name in options if name.startswith(arg)]
    return len(matches) == 1 and options[matches[0]]


def find_command(argv: list[str]) -> int | None:
    """Given the command line, return the index of its first word that is not a global option or the value of
    one — the command, or a misspelt one argparse will reject — or None when there is none."""
    options = {name: action.nargs != 0 for action in _common_options()._actions for name in action.option_strings}
    skip_value = False
    for index, arg in enumerate(argv):
        if skip_value:
            skip_value = False
        elif arg == "--":
            return index + 1 if index + 1 < len(argv) else None
        elif arg.startswith("-") and arg != "-":
            skip_value = _takes_value(arg, options)
        else:
            return index
    return None


def with_default_command(argv: list[str]) -> tuple[list[str], str | None]:
    """Given the command line, return it with `run` added when it names no command (unless it asks for help or
    the version), and the command's name (None when there is none)."""
    index = find_command(argv)
    if index is not None:
        return argv, argv[index]
    if any(arg in ("-h", "--help", "--version") for arg in argv):
        return argv, None
    return [DEFAULT_COMMAND, *argv], DEFAULT_COMMAND


def main(argv: list[str] | None = None) -> int:
    """Given the command line (default sys.argv[1:]), run the command and return its exit code."""
    # Not list(): importing the `list` command binds easybackup.cli.list over the builtin in this namespace.
    argv, command = with_default_command([*(sys.argv[1:] if argv is None else argv)])
    spare = _spare_worker(argv, command)
    try:
        return _quiet_when_stdout_closes(lambda: _run_command(argv, command, spare))
    finally:
        if spare is not None:
            spare.dismiss()


def _quiet_when_stdout_closes(run) -> int:
    """Given the command to run, return its exit code — or OUTPUT_CLOSED, quietly, when the reader of stdout went
    away (`easybackup list | head -1`), as `ls | head` ends. Any other broken pipe (a child's stdin) propagates."""
    try:
        try:
            code = run()
        finally:
            # Here rather than at exit, where a closed pipe could only print "Exception ignored". No stdout at all
            # (started with fd 1 closed: Python sets None, and print() writes nothing) is not an error.
            if sys.stdout is not None:
                sys.stdout.flush()
        return code
    except BrokenPipeError:
        if sys.stdout is None or not stdout_reader_gone():
            raise
        # The Python docs' recipe (library/signal.html, "Note on SIGPIPE"): later writes and the flush at exit
        # go to /dev/null instead of raising again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return exitcodes.OUTPUT_CLOSED


def stdout_reader_gone() -> bool:
    """Return whether stdout is a pipe or socket nobody reads any more (poll reports an error on it)."""
    poller = select.poll()
    poller.register(sys.stdout.fileno(), 0)  # POLLERR and POLLHUP are reported whatever the mask
    return any(events & select.POLLERR for _fd, events in poller.poll(0))


def _spare_worker(argv: list[str], command: str | None):
    """Given the command line, start a worker for `once` now, before its command's imports and the config: its
    own imports overlap them (supervision/spawn.py). Return None for every other command."""
    if command != "once" or any(arg in ("-h", "--help", "--version") for arg in argv):
        return None
    from easybackup.supervision.spawn import SpareWorker

    return SpareWorker()


def _run_command(argv: list[str], command: str | None, spare) -> int:
    parser = build_parser(only=command if command in COMMANDS else None)
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
        return exitcodes.INTERRUPTED


def once_main() -> int:
    """Entry point of the `easybackup-once` console script."""
    return main(["once", *sys.argv[1:]])
