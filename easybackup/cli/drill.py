"""`easybackup drill`: run a restore drill of strategies now (issue 18), through the worker pool like `once`.

Each strategy's drill restores the newest complete backup of each of its databases into a throwaway database on
`restore_drill.target_url`, checks it, measures it and drops it (worker/drill.py). Exit 0 when every drill passed
(or was superseded: its backup deleted by retention under it, after a newer one), 1 when one failed, 2 for a bad
config or a strategy without `restore_drill`, 143/130 when stopped by a signal.
"""

from __future__ import annotations

import sys

from easybackup import exitcodes
from easybackup.cli.once import SLACK_DRAIN_S, start_slack
from easybackup.config import load_config
from easybackup.errors import UsageError
from easybackup.humanize import format_bytes
from easybackup.jobspec import DRILL
from easybackup.logs import setup_logging
from easybackup.run_observer import Observers
from easybackup.scheduling import format_duration
from easybackup.storage.drillrecord import no_failure
from easybackup.supervision.batch import Batch
from easybackup.supervision.observers import LogObserver


def add_parser(subparsers, common) -> None:
    parser = subparsers.add_parser("drill", parents=[common], help="run a restore drill now",
                                   description="Restore the newest backup of each database of the chosen strategies "
                                               "(all with restore_drill by default) into a throwaway database, "
                                               "check it, and drop it.")
    parser.add_argument("-s", "--strategy", action="append", default=[], metavar="NAME",
                        help="drill only this strategy (repeatable)")
    parser.set_defaults(handler=run)


def drilled_strategies(config, names: list[str]):
    """Given the config and --strategy names, return the strategies to drill; raise UsageError for a named one
    without restore_drill, or when none has it."""
    chosen = config.select(names)
    off = [s.name for s in chosen if s.restore_drill is None]
    if names and off:
        raise UsageError(f"strategy {', '.join(off)} has no restore_drill",
                         hint="set restore_drill (schedule, target_url) under global or the strategy")
    chosen = tuple(s for s in chosen if s.restore_drill is not None)
    if not chosen:
        raise UsageError("no strategy has restore_drill", hint="set restore_drill (schedule, target_url) under global")
    return chosen


def summary_lines(results: dict[str, dict]) -> list[str]:
    """Given {strategy: result}, return one line per drilled database."""
    lines = []
    for strategy, result in results.items():
        for item in result.get("databases") or []:
            if item.get("status") == "success":
                lines.append(f"{strategy}/{item['database']}: passed — {item.get('tables')} table(s), "
                             f"{item.get('rows')} row(s), {format_bytes(item.get('restored_bytes'))} restored in "
                             f"{format_duration(item.get('restore_s') or 0)}")
            else:
                error = item.get("error") or {}
                lines.append(f"{strategy}/{item.get('database')}: {item.get('status')} — {error.get('message')}"
                             + (f": {error['detail']}" if error.get("detail") else ""))
        if not result.get("databases"):
            error = result.get("error") or {}
            lines.append(f"{strategy}: {result.get('status')} — {error.get('message')}")
    return lines


def run(args) -> int:
    config = load_config(args.config, env_file=args.env_file)
    setup_logging(args.log_level or config.log_level, args.log_format or config.log_format)
    strategies = drilled_strategies(config, args.strategy)
    slack, notifier = start_slack(config, None)
    outcome = Batch(config, strategies, Observers([o for o in (LogObserver(), slack) if o is not None]),
                    kind=DRILL).run()
    if notifier is not None:  # as `once`: drain Slack's queue before exit
        notifier.drain(SLACK_DRAIN_S)
    print("\n".join(summary_lines(outcome.results)), file=sys.stdout)
    if outcome.terminated:
        return exitcodes.stopped_by(outcome.signal)
    return exitcodes.OK if passed(outcome.results) else exitcodes.FAILED


def passed(results: dict[str, dict]) -> bool:
    """Given {strategy: result}, return whether every drill passed or was superseded (its backup deleted by
    retention under it after a newer one: no failure)."""
    return bool(results) and all(no_failure(r.get("status")) for r in results.values())
