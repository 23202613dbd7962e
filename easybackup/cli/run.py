"""`easybackup run` (and `easybackup` with no command): the long-lived supervisor.

Schedules every strategy, serves health and metrics, reloads on SIGHUP, stops cleanly on SIGTERM (exit 0) or
SIGINT (exit 130, as Ctrl-C). Exit 2 when the config is invalid or an endpoint cannot listen.
"""

from __future__ import annotations

from easybackup import exitcodes
from easybackup.cli.validate import drill_identity_warnings
from easybackup.config import load_config
from easybackup.config.model import Config
from easybackup.errors import EasybackupError
from easybackup.logs import log, setup_logging
from easybackup.monitoring.connectivity import ConnectivityChecker
from easybackup.monitoring.metrics import Metrics
from easybackup.monitoring.server import MonitoringServer
from easybackup.monitoring.state import MonitorState
from easybackup.notifications.observer import build_slack
from easybackup.supervision.supervisor import Supervisor

SLACK_DRAIN_S = 10.0  # at shutdown, after the workers stopped: short, so a dead Slack cannot hold a restart


def add_parser(subparsers, common) -> None:
    parser = subparsers.add_parser("run", parents=[common], help="run the scheduler daemon (the default command)",
                                   description="Run the supervisor: schedule backups, serve health and metrics. "
                                               "SIGHUP reloads the config; SIGTERM stops cleanly.")
    parser.set_defaults(handler=run)


def _logging_for(args):
    def apply(config: Config) -> None:
        setup_logging(args.log_level or config.log_level, args.log_format or config.log_format)
    return apply


def run(args) -> int:
    config = load_config(args.config, env_file=args.env_file)
    apply_logging = _logging_for(args)
    apply_logging(config)
    for warning in drill_identity_warnings(config):
        log.warning(warning)
    state = MonitorState(config.strategies)
    metrics = Metrics()
    # Built even with Slack off everywhere: a SIGHUP may turn it on (the notifier then says "disabled").
    slack_observer, notifier = build_slack(config, on_error=metrics.notification_error, always=True)
    checker = ConnectivityChecker(config.strategies, state, slack_check=notifier.check)
    on_reload = [apply_logging,  # Slack's settings before the checker, which checks them again at once
                 lambda new: notifier.replace_settings([s.slack for s in new.strategies if s.slack.enabled]),
                 lambda new: checker.replace_strategies(new.strategies)]
    supervisor = Supervisor(config, state, metrics, observers=[slack_observer],
                            reload_config=lambda: load_config(args.config, env_file=args.env_file),
                            on_reload=on_reload)
    # Before anything is visible from outside: a SIGHUP sent as soon as health answers must reload, not kill.
    supervisor.install_signal_handlers()
    server = MonitoringServer(config.health_check, config.metrics, state, metrics)
    try:
        server.start()
    except EasybackupError as error:
        log.error(str(error))
        return exitcodes.CONFIG_ERROR
    notifier.start()
    checker.start()
    try:
        return supervisor.run()
    finally:
        checker.stop()
        server.stop()
        dropped = notifier.drain(SLACK_DRAIN_S)
        if dropped:
            log.warning(f"Slack: gave up on {dropped} message(s) at shutdown")
