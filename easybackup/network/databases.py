"""Which databases a run backs up: the configured ones, or with `all_databases` every database the server holds
that is worth a backup (the engine says which), listed once at run start over one connection to the strategy's
database_url, through the strategy's route; and the reachability check, which is that listing.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from easybackup.config.model import DatabaseTarget, Strategy
from easybackup.engines import engine_for_url
from easybackup.errors import EasybackupError
from easybackup.network.routes import logging_emit, open_route

CHECK_QUERY_TIMEOUT_S = 30  # for the connectivity check's query, once connected


def list_databases(url: str, private_dir: Path, timeout: float, connect_timeout: float) -> list[str]:
    """Given the URL of a database on a server (routed), return the server's databases to back up, sorted, as its
    engine lists them; raise the engine's classified EasybackupError if it cannot."""
    return engine_for_url(url).list_databases(url, private_dir, timeout, connect_timeout)


def connection_url(strategy: Strategy) -> str:
    """Given a strategy, return the URL the listing and the globals dump connect through (its first database);
    raise EasybackupError (config) if it names none."""
    if not strategy.databases:
        raise EasybackupError(f"strategy {strategy.name} names no database to connect to",
                              "all_databases and include_globals list the server through database_url",
                              "set database_url (any database on the server, e.g. /postgres)", kind="config")
    return strategy.databases[0].url


def all_database_targets(strategy: Strategy, private_dir: Path, emit, cancel=None) -> list[DatabaseTarget]:
    """Given a strategy with all_databases, return one target per database on its server (same user,
    password, host and options; the database name replaced). The listing goes through the strategy's tunnel
    or proxy like every other connection; the targets keep the host as the bastion sees it (each backup opens
    its own route)."""
    url = connection_url(strategy)
    engine = engine_for_url(url)
    server = DatabaseTarget(name=engine.parse_url(url).dbname or engine.maintenance_database, url=url)
    with open_route(strategy, server, private_dir, emit, cancel=cancel) as routed:
        names = list_databases(routed.url, private_dir, timeout=strategy.timeout.backup,
                               connect_timeout=strategy.timeout.connect)
    return [DatabaseTarget(name=name, url=engine.with_database(url, name)) for name in names]


def check_reachable(strategy: Strategy, target: DatabaseTarget) -> None:
    """Given a strategy and one of its databases, connect through the strategy's route (tunnel, proxy or direct)
    as a backup would, authenticate and run one query; raise the classified EasybackupError if that fails."""
    with tempfile.TemporaryDirectory(prefix="easybackup-check-") as scratch:  # 0700, removed with its passfile
        private_dir = Path(scratch)
        with open_route(strategy, target, private_dir, logging_emit("debug")) as routed:
            list_databases(routed.url, private_dir, timeout=strategy.timeout.connect + CHECK_QUERY_TIMEOUT_S,
                           connect_timeout=strategy.timeout.connect)
