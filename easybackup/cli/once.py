"""`easybackup once` (and `easybackup-once`): run strategies once through the worker pool, then exit.

Exit 0 when everything succeeded, 1 when a database failed, 2 for a bad config or an unknown strategy,
143 when stopped by SIGTERM after aborting cleanly.
"""

from __future__ import annotations

import sys

from easybackup import exitcodes
from easybackup.cli.summary import render_table, summary_rows
from easybackup.config import load_config
from easybackup.logs import setup_logging
from easybackup.supervision.batch import Batch
from easybackup.supervision.observers import LogObserver, Observers, TerminalProgress


def add_parser(subparsers, common) -> None:
    parser = subparsers.add_parser("once", parents=[common], help="run strategies once and exit (cron, CronJob)",
                                   description="Run the chosen strategies once (all by default), then exit.")
    parser.add_argument("-s", "--strategy", action="append", default=[], metavar="NAME",
                        help="run only this strategy (repeatable)")
    parser.set_defaults(handler=run)


def build_observers() -> Observers:
    """Return the observers `once` reports through."""
    return Observers([LogObserver(), TerminalProgress()])


def run(args) -> int:
    config = load_config(args.config, env_file=args.env_file)
    setup_logging(args.log_level or config.log_level, args.log_format or config.log_format)
    strategies = config.select(args.strategy)
    outcome = Batch(config, strategies, build_observers()).run()
    print(render_table(summary_rows(outcome.results)), file=sys.stdout)
    if outcome.terminated:
        return exitcodes.TERMINATED
    return exitcodes.OK if outcome.succeeded else exitcodes.FAILED
