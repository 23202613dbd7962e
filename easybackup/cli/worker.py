"""`easybackup worker`: internal — one worker process, started by the supervisor or `once`."""

from __future__ import annotations

import argparse


def add_parser(subparsers, common) -> None:
    parser = subparsers.add_parser("worker", parents=[common], help=argparse.SUPPRESS,
                                   description="Internal: run one job read from stdin (started by the pool).")
    parser.set_defaults(handler=run)


def run(args) -> int:
    from easybackup.worker.main import main

    return main()
