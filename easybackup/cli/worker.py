"""`easybackup worker`: internal — one worker process (the pool starts the same code as `python -m
easybackup.worker`)."""

from __future__ import annotations

from typing import NoReturn


def add_parser(subparsers, common) -> None:
    # No help=: a command added without one is left out of the list (help=SUPPRESS prints "==SUPPRESS==").
    parser = subparsers.add_parser("worker", parents=[common],
                                   description="Internal: run one job read from stdin (started by the pool).")
    parser.set_defaults(handler=run)


def run(args) -> NoReturn:
    from easybackup.worker.main import run_and_exit

    run_and_exit()
