"""Talking to a PostgreSQL server with psql and pg_restore: listing its databases, and the target of a restore.

The password reaches psql and pg_restore only through a 0600 passfile (PostgresSource's), and a wrong password or
a server that is down reads the same as in pg_dump.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import threading
from pathlib import Path
from urllib.parse import unquote, urlsplit

from easybackup.config.model import DatabaseTarget, PgDumpSettings
from easybackup.engines.dump_header import ends_like_a_complete_dump
from easybackup.engines.postgres_drill import PostgresDrillQueries
from easybackup.engines.postgres_dump import DEFAULT_CONNECT_TIMEOUT_S, PostgresSource
from easybackup.engines.postgres_url import parse_postgres_url
from easybackup.errors import EasybackupError, UsageError
from easybackup.pipeline.queries import communicate
from easybackup.pipeline.stages import StageFailed, StageSpec, base_env, describe_returncode
from easybackup.secrets import mask

LIST_QUERY = "SELECT datname FROM pg_database WHERE NOT datistemplate AND datallowconn ORDER BY 1"
LAST_LINES = 25
MAINTENANCE_DB = "postgres"
QUERY_TIMEOUT_S = 60
USER_TABLES_SQL = ("SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                   "WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
                   "AND n.nspname NOT LIKE 'pg\\_toast%'")


class _CatalogSource(PostgresSource):
    """A PostgresSource whose program is psql: only its passfile, environment and classification are used."""

    stage_name = "psql"


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


# -- verify -----------------------------------------------------------------------------------------------------


def reader_stages(fmt: str) -> list[StageSpec]:
    """Given a dump's format, return the stages that read it whole: `pg_restore --file=/dev/null` for the custom
    format (it reads every block; `pg_restore --list` reads only the table of contents and passes a truncated
    archive); none for plain SQL, whose end dump_end_problem checks."""
    if fmt == "custom":
        return [StageSpec("pg_restore", ["pg_restore", "--file=/dev/null"], env=base_env(),
                          failure_kind="verification")]
    if fmt != "plain":
        raise ValueError(f"unknown pg_dump format '{fmt}'")
    return []


def dump_end_problem(fmt: str, tail: bytes) -> tuple[str, str] | None:
    """Given a dump's format and the last bytes of the decompressed dump, return (what is wrong, hint) when a plain
    dump lacks pg_dump's completion comment, else None."""
    if fmt == "plain" and not ends_like_a_complete_dump(tail):
        return ("it does not end with pg_dump's '-- PostgreSQL database dump complete'",
                "pg_dump stopped before the end; restore an older backup")
    return None


# -- restore ----------------------------------------------------------------------------------------------------


class PostgresTarget(PostgresDrillQueries):
    """A database to talk to with psql/pg_restore: conninfo without the password, env with a 0600 passfile. A
    DrillTarget too (the drill's queries are in postgres_drill.py)."""

    def __init__(self, url: str, private_dir: Path, connect_timeout: float = DEFAULT_CONNECT_TIMEOUT_S):
        parsed = parse_postgres_url(url)  # ValueError (masked) for anything that is not a postgres URL
        self.dbname = parsed.dbname or parsed.user or MAINTENANCE_DB
        self._dir = Path(tempfile.mkdtemp(prefix="conn-", dir=private_dir))  # passfile names are fixed per dir
        self._source = PostgresSource(DatabaseTarget(self.dbname, url), PgDumpSettings(), self._dir,
                                      compress_externally=False, connect_timeout=connect_timeout)

    def conninfo(self) -> str:
        return self._source.url.conninfo()

    def env(self) -> dict[str, str]:
        return self._source.child_env()

    def psql(self, sql: str, variables: dict[str, str] | None = None, *, timeout: float = QUERY_TIMEOUT_S,
             stop: threading.Event | None = None) -> str:
        """Given SQL (read from stdin, so :'var' interpolation works), run it; return the unaligned output.
        Raise EasybackupError (kind connection/authentication/not_found) with psql's last line if it fails, kind
        connection after `timeout` s, kind cancelled once `stop` is set (psql is killed either way)."""
        argv = ["psql", "-X", "-At", "--no-password", "-v", "ON_ERROR_STOP=1"]
        for name, value in (variables or {}).items():
            argv += ["-v", f"{name}={value}"]
        argv += ["--dbname", self.conninfo()]
        with subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=self.env()) as proc:
            stdout, stderr = communicate(proc, sql, timeout, stop, f"database {self.dbname}")
        if proc.returncode != 0:
            raise _connection_error(self.dbname, stderr)
        return stdout.strip()

    def asks_for_password(self) -> bool:
        """Connect; return True when the server wants a password and none was given, False when connected or when
        it failed otherwise (the restore then reports that in its own words)."""
        try:
            self.psql("SELECT 1")
        except EasybackupError as exc:
            return "no password supplied" in exc.message
        return False

    def database_exists(self, name: str) -> bool:
        """Given a database name (this target being the maintenance database), return whether it exists."""
        return self.psql("SELECT count(*) FROM pg_database WHERE datname = :'name'", {"name": name}) == "1"

    def create_database(self, name: str) -> None:
        """Given a database name (this target being the maintenance database), create it."""
        self.psql('CREATE DATABASE :"name"', {"name": name})

    def user_table_count(self) -> int:
        """Return how many user tables the database has (0: safe to restore into)."""
        return int(self.psql(USER_TABLES_SQL) or 0)

    def restore_stage(self, fmt: str, *, globals_dump: bool, clean: bool, jobs: int | None = None,
                      path: Path | None = None, without_owners: bool = False) -> StageSpec:
        """Given a dump's format, return the stage that applies it: pg_restore (custom) or psql (plain, globals).
        `without_owners` (a drill's) restores a custom archive with --no-owner --no-privileges; a plain dump's
        ALTER … OWNER statements are SQL psql runs as written.

        Raise UsageError for options the format cannot do (--clean or --jobs with a plain dump).
        """
        if globals_dump:
            # Roles that already exist fail their CREATE ROLE; the ALTER ROLE after it still applies. Keep going.
            argv = ["psql", "-X", "-q", "--no-password", "--dbname", self.conninfo()]
            return StageSpec("psql", argv, env=self.env(), failure_kind="dump_failed")
        if fmt == "plain":
            if clean or jobs:
                raise UsageError("--clean and --jobs need a custom-format archive; this backup is plain SQL",
                                 hint="restore a plain dump into an empty database (--create with a new name)")
            argv = ["psql", "-X", "-q", "--no-password", "-v", "ON_ERROR_STOP=1", "--single-transaction",
                    "--dbname", self.conninfo()]
            return StageSpec("psql", argv, env=self.env(), failure_kind="dump_failed")
        owners = ["--no-owner", "--no-privileges"] if without_owners else []
        argv = ["pg_restore", "--no-password", "--exit-on-error", *owners, "--dbname", self.conninfo()]
        if (jobs or 1) == 1:
            # One transaction: a restore that fails (with --clean: after dropping the target's objects) leaves the
            # database as it was. pg_restore refuses it with parallel jobs; the command line refuses --clean there.
            argv.append("--single-transaction")
        if clean:
            argv += ["--clean", "--if-exists"]
        if jobs:
            argv += [f"--jobs={jobs}"]
        if path is not None:
            argv.append(str(path))
        return StageSpec("pg_restore", argv, env=self.env(), failure_kind="dump_failed")

    @staticmethod
    def restore_error(line: str) -> bool:
        """Given a line psql printed restoring a globals dump, return whether it is an error that fails the restore:
        ERROR lines, except for objects that already exist (the usual case in a cluster that has some roles)."""
        return "ERROR:" in line and "already exists" not in line

    @staticmethod
    def failure_hint(lines: list[str]) -> tuple[str, str] | None:
        """pg_restore's and psql's errors name the object and the cause in their own words: no hint to add."""
        return None

    def cleanup(self) -> None:
        self._source.cleanup()
        shutil.rmtree(self._dir, ignore_errors=True)


def _connection_error(dbname: str, stderr: str) -> EasybackupError:
    last = next((line for line in reversed(stderr.splitlines()) if line.strip()), "psql failed")
    if "no password supplied" in last:
        return EasybackupError(f"cannot use database {dbname}: {last.removeprefix('psql: error: ')}",
                               kind="authentication", hint="give the target's password in $EASYBACKUP_TARGET_PASSWORD "
                               "or --target-password-file, or run restore on a terminal to be asked for it")
    kind = "not_found" if "does not exist" in last else "authentication" if "authentication" in last else "connection"
    return EasybackupError(f"cannot use database {dbname}: {last.removeprefix('psql: error: ')}", kind=kind,
                           hint="check --target-url; add --create to create the database" if kind == "not_found"
                           else "check --target-url (host, port, user) and the password")
