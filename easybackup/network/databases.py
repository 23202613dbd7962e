"""Which databases a run backs up: the configured ones, or with `all_databases` every non-template database
the server allows connections to, listed once at run start over one connection to the strategy's database_url.

The listing uses PostgresSource's URL parsing, passfile and failure classification, so the password reaches
psql only through a 0600 passfile, and a wrong password or a server that is down reads the same as in pg_dump.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from easybackup.config.model import DatabaseTarget, PgDumpSettings, Strategy
from easybackup.engines.postgres import DEFAULT_CONNECT_TIMEOUT_S, PostgresSource
from easybackup.errors import EasybackupError
from easybackup.network.routes import logging_emit, open_route
from easybackup.pipeline.stages import StageFailed, describe_returncode
from easybackup.secrets import mask

LIST_QUERY = "SELECT datname FROM pg_database WHERE NOT datistemplate AND datallowconn ORDER BY 1"
LAST_LINES = 25
CHECK_QUERY_TIMEOUT_S = 30  # for the connectivity check's query, once connected


class _CatalogSource(PostgresSource):
    """A PostgresSource whose program is psql: only its passfile, environment and classification are used."""

    stage_name = "psql"


def with_database(url: str, dbname: str) -> str:
    """Given a postgres:// URL and a database name, return the same URL (user, password, host, port, query)
    naming that database instead."""
    return urlunsplit(urlsplit(url)._replace(path="/" + quote(dbname, safe="")))


def list_databases(url: str, private_dir: Path, timeout: float,
                   connect_timeout: float = DEFAULT_CONNECT_TIMEOUT_S) -> list[str]:
    """Given the URL of a database on a server, return the names of the server's non-template databases that
    allow connections, sorted; raise EasybackupError (classified like pg_dump's failures) if psql cannot."""
    connect = DatabaseTarget(name=unquote(urlsplit(url).path.lstrip("/")) or "postgres", url=url)
    with _CatalogSource(connect, PgDumpSettings(), private_dir, compress_externally=False,
                        connect_timeout=connect_timeout) as source:
        where = f"{source.url.host}:{source.url.port}"
        # NUL-separated records: a database name may hold a newline.
        argv = ["psql", "-X", "-A", "-t", "--no-password", "--record-separator-zero", "-c", LIST_QUERY,
                "--dbname", source.url.conninfo()]
        try:
            done = subprocess.run(argv, env=source.child_env(), capture_output=True, timeout=timeout,
                                  stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise EasybackupError(f"listing the databases on {where} timed out", f"no answer within {timeout:g} s",
                                  f"check that PostgreSQL at {where} is reachable", kind="connection",
                                  transient=True) from None
        except OSError as exc:
            raise EasybackupError("cannot start psql to list the databases", str(exc),
                                  "install the PostgreSQL client tools (psql) on this machine",
                                  kind="internal") from exc
        if done.returncode != 0:
            raise _listing_failed(source, where, done)
    names = [name for name in done.stdout.decode("utf-8", errors="replace").rstrip("\n").split("\0") if name]
    if not names:
        raise EasybackupError(f"no database to back up on {where}", "the listing of pg_database came back empty",
                              "check that the user may connect to the databases (CONNECT privilege)",
                              kind="not_found")
    return names


def _listing_failed(source: _CatalogSource, where: str, done: subprocess.CompletedProcess) -> EasybackupError:
    lines = [mask(line) for line in done.stderr.decode("utf-8", errors="replace").splitlines()][-LAST_LINES:]
    failed = StageFailed("psql", done.returncode, describe_returncode(done.returncode), kind="dump_failed",
                         exit_codes={"psql": done.returncode}, last_lines=lines)
    error = source.classify_failure(failed)
    # classify_failure words it for pg_dump; say what really failed.
    generic = f"pg_dump of database {source.target.name} failed"
    message = error.message.replace(generic, f"listing the databases on {where} failed", 1)
    message = message.replace("failed: pg_dump ", "failed: psql ", 1)
    detail = error.detail.replace("pg_dump ", "psql ", 1) if error.detail else error.detail
    hint = error.hint if error.kind != "dump_failed" else "read psql's last lines below"
    return EasybackupError(message, detail, hint, kind=error.kind, transient=error.transient,
                           exit_codes=error.exit_codes, last_lines=error.last_lines)


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
    server = DatabaseTarget(name=unquote(urlsplit(url).path.lstrip("/")) or "postgres", url=url)
    with open_route(strategy, server, private_dir, emit, cancel=cancel) as routed:
        names = list_databases(routed.url, private_dir, timeout=strategy.timeout.backup,
                               connect_timeout=strategy.timeout.connect)
    return [DatabaseTarget(name=name, url=with_database(url, name)) for name in names]


def check_reachable(strategy: Strategy, target: DatabaseTarget) -> None:
    """Given a strategy and one of its databases, connect through the strategy's route (tunnel, proxy or direct)
    as a backup would, authenticate and run one query; raise the classified EasybackupError if that fails."""
    with tempfile.TemporaryDirectory(prefix="easybackup-check-") as scratch:  # 0700, removed with its passfile
        private_dir = Path(scratch)
        with open_route(strategy, target, private_dir, logging_emit("debug")) as routed:
            list_databases(routed.url, private_dir, timeout=strategy.timeout.connect + CHECK_QUERY_TIMEOUT_S,
                           connect_timeout=strategy.timeout.connect)
