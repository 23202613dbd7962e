"""`easybackup worker`: internal — one worker process, started by the supervisor or `once`."""

from __future__ import annotations

import argparse
import os
import sys


def add_parser(subparsers, common) -> None:
    parser = subparsers.add_parser("worker", parents=[common], help=argparse.SUPPRESS,
                                   description="Internal: run one job read from stdin (started by the pool).")
    parser.set_defaults(handler=run)


def run(args) -> int:
    from easybackup.worker.main import main

    code = main()
    # Everything that matters is done: the result event is written (unbuffered), every child reaped, every
    # thread joined. Skipping the interpreter's teardown of boto3 & co. saves ~0.1 s per run.
    sys.stderr.flush()
    os._exit(code)
