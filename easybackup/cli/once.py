"""`easybackup once` (and `easybackup-once`): run strategies once through the worker pool, then exit.

Exit 0 when everything succeeded, 1 when a database failed, 2 for a bad config or an unknown strategy,
143 when stopped by SIGTERM (130 by SIGINT) after aborting cleanly.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from easybackup import exitcodes
from easybackup.cli.summary import render_summary
from easybackup.config import load_config
from easybackup.errors import UsageError
from easybackup.logs import log, setup_logging
from easybackup.run_observer import Observers
from easybackup.supervision.batch import Batch
from easybackup.supervision.observers import LogObserver, TerminalProgress
from easybackup.urls import masked_url, url_secrets

SLACK_DRAIN_S = 30.0


def add_parser(subparsers, common) -> None:
    parser = subparsers.add_parser("once", parents=[common], help="run strategies once and exit (cron, CronJob)",
                                   description="Run the chosen strategies once (all by default), then exit.")
    parser.add_argument("-s", "--strategy", action="append", default=[], metavar="NAME",
                        help="run only this strategy (repeatable)")
    parser.add_argument("--metrics-file", default=None, metavar="PATH",
                        help="after the run, write the metrics there (atomically) for node_exporter's textfile "
                             "collector; name it *.prom")
    parser.add_argument("--push-metrics", default=None, metavar="URL",
                        help="after the run, push each strategy's metrics to this Prometheus Pushgateway (job "
                             "label = the strategy), e.g. http://pushgateway:9091; a failure is logged, never "
                             "changes the exit code")
    parser.set_defaults(handler=run)


def build_observers(extra=()) -> Observers:
    """Return the observers `once` reports through (plus `extra` ones)."""
    return Observers([LogObserver(), TerminalProgress(), *extra])


def check_metrics_file(path: str) -> None:
    """Given --metrics-file, raise UsageError before any backup runs if its directory cannot take the file."""
    directory = Path(path).parent
    if not directory.is_dir() or not os.access(directory, os.W_OK | os.X_OK):
        raise UsageError(f"cannot write --metrics-file {path}", detail=f"{directory} is not a writable directory",
                         hint="point it at node_exporter's --collector.textfile.directory")


def write_metrics_file(metrics, path: str) -> None:
    """Given the metrics of the run and --metrics-file, write them; a failure is logged, the backups stand."""
    try:
        metrics.write_textfile(path)
    except OSError as exc:
        log.error(f"could not write --metrics-file {path}: {exc}")
        return
    log.debug(f"metrics written to {path}")


def check_push_url(url: str) -> None:
    """Given --push-metrics, raise UsageError if it holds a password: it is on the command line (a pod's spec)."""
    if url_secrets(url):
        raise UsageError(f"--push-metrics {masked_url(url)} holds a password, which would stand on the command line",
                         hint="give the Pushgateway's URL without credentials (reach it inside the cluster)")


def push_metrics(metrics, url: str, strategies) -> None:
    """Given the metrics of the run, --push-metrics and the strategies run, push each strategy's series to the
    Pushgateway; a failure of any kind is logged, the backups and the exit code stand (a side channel)."""
    shown = masked_url(url) if "://" in url else url  # `host:9091` is a URL to push_to_gateway
    for strategy in strategies:
        try:
            metrics.push(url, strategy.name)
        except Exception as exc:  # noqa: BLE001 - urllib, http.client and bad URLs raise many kinds
            log.bind(strategy=strategy.name).error(f"could not push metrics to {shown}: {exc}")
        else:
            log.bind(strategy=strategy.name).debug(f"metrics pushed to {shown}")


def start_metrics(path: str | None, strategies) -> tuple:
    """Given --metrics-file (or None) and the strategies to run, return (observer, metrics) for the run; raise
    UsageError before any backup runs if the file cannot be written. Prometheus' code (and boto3, through the health
    state) is imported only then: it would add ~0.2 s to every run's start."""
    if path:
        check_metrics_file(path)
    from easybackup.monitoring.metrics import Metrics
    from easybackup.monitoring.observer import MonitoringObserver
    from easybackup.monitoring.state import MonitorState

    metrics = Metrics()
    metrics.declare_strategies(strategies)
    return MonitoringObserver(MonitorState(strategies), metrics), metrics


def start_slack(config, metrics) -> tuple:
    """Given the config and the run's metrics (or None), return the started (observer, notifier) for the
    strategies with Slack on, or (None, None). Slack's code (requests) is imported only when one has it on."""
    if not any(strategy.slack.enabled for strategy in config.strategies):
        return None, None
    from easybackup.notifications.observer import build_slack

    slack, notifier = build_slack(config, on_error=metrics.notification_error if metrics is not None else None)
    if notifier is not None:
        notifier.start()
    return slack, notifier


def run(args) -> int:
    config = load_config(args.config, env_file=args.env_file)
    setup_logging(args.log_level or config.log_level, args.log_format or config.log_format)
    strategies = config.select(args.strategy)
    metrics_file, push_url = getattr(args, "metrics_file", None), getattr(args, "push_metrics", None)
    if push_url:
        check_push_url(push_url)
    monitoring, metrics = start_metrics(metrics_file, strategies) if metrics_file or push_url else (None, None)
    slack, notifier = start_slack(config, metrics)
    outcome = Batch(config, strategies, build_observers([o for o in (monitoring, slack) if o is not None]),
                    spare=getattr(args, "spare_worker", None)).run()
    if notifier is not None:  # DESIGN.md, "once": drain Slack's queue for up to 30 s before exit
        notifier.drain(SLACK_DRAIN_S)
        log.info(f"Slack: {notifier.stats.sent} sent, {notifier.stats.failed} failed, "
                 f"{notifier.stats.dropped} dropped")
    if metrics_file:
        write_metrics_file(metrics, metrics_file)
    if push_url:
        push_metrics(metrics, push_url, strategies)
    print(render_summary(outcome.results), file=sys.stdout)
    if outcome.terminated:
        return exitcodes.stopped_by(outcome.signal)
    return exitcodes.OK if outcome.succeeded else exitcodes.FAILED
