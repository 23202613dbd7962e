"""MySQL and MariaDB, the engine (mysql:// and mariadb:// URLs): listing a server's databases, the restore target
through `mariadb` (or `mysql`), and the Engine object. The pieces live beside it: mysql_client.py (URLs, client
programs and their flavour, the password's option file, error classification), mysql_dump.py (MysqlSource: the
dump's argv, completeness and versions).
"""

from __future__ import annotations

from pathlib import Path

from easybackup.engines import new_database_hint
from easybackup.engines.mysql_client import (
    CLIENT_PROGRAMS,
    CONNECT_TIMEOUT_S,
    QUERY_TIMEOUT_S,
    SCHEMES,
    SYSTEM_DATABASES,
    ClientConnection,
    ClientProgram,
    MysqlUrl,
    classify_lines,
    connection_options,
    find_program,
    numbered,
    parse_mysql_url,
    parse_version_output,
    probe,
    quote_identifier,
    quote_string,
    routed_url,
    with_database,
    with_password,
)
from easybackup.engines.mysql_drill import MysqlDrillQueries
from easybackup.engines.mysql_dump import (
    DumpVersions,
    MysqlSource,
    dump_problem,
    ends_complete,
    versions_from_dump_head,
)
from easybackup.engines.mysql_globals import MysqlGlobalsSource
from easybackup.error_rules import first_match, rule
from easybackup.errors import EasybackupError, UsageError
from easybackup.pipeline.stages import StageSpec

__all__ = ["ENGINE", "ClientProgram", "DumpVersions", "MysqlEngine", "MysqlGlobalsSource", "MysqlRestoreTarget",
           "MysqlSource", "MysqlUrl",
           "classify_lines", "connection_options", "dump_problem", "list_databases", "parse_mysql_url",
           "parse_version_output", "probe", "versions_from_dump_head"]


# -- listing ---------------------------------------------------------------------------------------------------

def list_databases(url: str, private_dir: Path, timeout: float = QUERY_TIMEOUT_S,
                   connect_timeout: float = CONNECT_TIMEOUT_S) -> list[str]:
    """Return the server's databases except information_schema, performance_schema, sys and mysql, sorted; raise
    the classified error when they cannot be listed, not_found when there is none."""
    with ClientConnection(url, private_dir, connect_timeout) as connection:
        rows = connection.query("SHOW DATABASES", timeout=timeout)
        where = connection.url.where
    names = sorted(row[0] for row in rows if row and row[0] not in SYSTEM_DATABASES)
    if not names:
        raise EasybackupError(f"no database to back up on {where}", "SHOW DATABASES lists only system databases",
                              "check that the user may see the databases (SHOW DATABASES privilege, or grants on "
                              "each)", kind="not_found")
    return names


# -- restore ---------------------------------------------------------------------------------------------------

class MysqlRestoreTarget(MysqlDrillQueries):
    """A database to restore a dump into (or, with no database in the URL, the server), through `mariadb` (or
    `mysql`) with the same option-file rule: the RestoreTarget of easybackup.engines, and (MysqlDrillQueries,
    engines/mysql_drill.py) its DrillTarget."""

    def __init__(self, url: str, private_dir: Path, connect_timeout: float = CONNECT_TIMEOUT_S):
        self.connection = ClientConnection(url, private_dir, connect_timeout)
        self.url = self.connection.url
        self.dbname = self.url.dbname or ""
        self.program = find_program(CLIENT_PROGRAMS)

    def __enter__(self) -> MysqlRestoreTarget:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.cleanup()

    def cleanup(self) -> None:
        self.connection.cleanup()

    def asks_for_password(self) -> bool:
        """Connect; return True when the server refused us for want of a password (1045, `using password: NO`),
        False when connected or when it failed otherwise."""
        try:
            self.check()
        except EasybackupError as error:
            return error.kind == "authentication" and "using password: NO" in error.message
        return False

    def check(self) -> None:
        """Connect and authenticate (and open the database, when the URL names one); raise the classified error."""
        self.connection.query("SELECT 1", self.dbname or None)

    def database_exists(self, name: str) -> bool:
        rows = self.connection.query("SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name = "
                                     + quote_string(name))
        return rows[0][0] != "0"

    def create_database(self, name: str) -> None:
        self.connection.query(f"CREATE DATABASE {quote_identifier(name)} CHARACTER SET utf8mb4")

    def user_table_count(self) -> int:
        """Return how many tables, views, routines and events the database holds (0: safe to restore into)."""
        name = quote_string(self.dbname)
        rows = self.connection.query(
            f"SELECT (SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = {name})"
            f" + (SELECT COUNT(*) FROM information_schema.routines WHERE routine_schema = {name})"
            f" + (SELECT COUNT(*) FROM information_schema.events WHERE event_schema = {name})")
        return int(rows[0][0])

    def prepare(self, replace: bool = False) -> None:
        """Create the database when missing; refuse a non-empty one unless `replace` (the dump then replaces the
        objects it holds, as its DROP ... IF EXISTS statements do; other objects stay)."""
        if not self.database_exists(self.dbname):
            self.create_database(self.dbname)
            return
        count = self.user_table_count()
        if count and not replace:
            raise EasybackupError(
                f"database {self.dbname} at {self.url.where} is not empty ({count} tables, views, routines or "
                "events)", hint="restore into a new database, or pass --clean to restore over it", kind="config",
                transient=False)

    def restore_stage(self, fmt: str = "plain", *, globals_dump: bool = False, clean: bool = False,
                      jobs: int | None = None, path: Path | None = None, without_owners: bool = False
                      ) -> StageSpec:
        """Return the stage that replays a dump from stdin: `mariadb` into the database (or, for users and grants,
        into the server). A MySQL dump drops and recreates what it holds by itself, so `clean` adds nothing;
        it is one stream, so `jobs` is refused. `without_owners` (a drill's) changes nothing: the dump's DEFINERs
        are SQL, replayed as written; a server creates an object whose definer it lacks when the restoring user has
        SET USER (or SUPER), which a drill user is told to have (README, Restore drills)."""
        if jobs and jobs > 1:
            raise UsageError("--jobs needs a PostgreSQL custom-format archive; a MySQL dump replays as one stream",
                             hint="leave out --jobs")
        argv = self.connection.client_argv(self.program) + ["--default-character-set=utf8mb4"]
        if not globals_dump:
            argv += ["--", self.dbname]
        return StageSpec(self.program.name, argv, env=self.connection.child_env(), failure_kind="dump_failed")

    @staticmethod
    def restore_error(line: str) -> bool:
        """Given a line the client printed replaying users and grants, return whether it is an error."""
        return line.startswith("ERROR")

    def failure_hint(self, lines: list[str]) -> tuple[str, str] | None:
        """Given the client's last lines, return (kind, what to fix) for a failure a restore of a MySQL dump meets."""
        found = first_match(RESTORE_RULES, lines)
        if found is None:
            return None
        matched, _line = found
        return matched.kind, matched.hint.format(user=self.url.user or "(default)", where=self.url.where)


# What stops the replay of a dump, in priority order (the client prints `ERROR <number> (<state>) at line N: ...`).
RESTORE_RULES = (
    rule(numbered(1227) + r"|SUPER, SET USER|SET_USER_ID|SYSTEM_USER", "permission", False,
         "the dump's views, triggers, routines and events name their DEFINER: user {user} needs SET USER (MariaDB; "
         "SET_USER_ID on MySQL 8.2+, SUPER before) to create them as another user, or restore as a user that has it"),
    rule(numbered(1045) + r"|Access denied for user .*using password", "authentication", False,
         "check the password for user {user} (the restore's URL, EASYBACKUP_TARGET_PASSWORD or the password file)"),
    rule(numbered(1044, 1142, 1143, 1370) + r"|Access denied", "permission", False,
         "grant user {user} ALL on the target database (a restore creates, drops and fills its objects)"),
    rule(numbered(2006, 2013) + r"|server has gone away|Lost connection", "connection", True,
         "the server at {where} closed the connection mid-restore: a row larger than its max_allowed_packet is "
         "the usual cause (raise it on the server), else a restart — see the server's error log"),
)


# -- the engine ------------------------------------------------------------------------------------------------

class MysqlEngine:
    """The Engine (easybackup.engines) for mysql:// and mariadb:// URLs. Its dumps are plain SQL (`.sql`)."""

    name = "mysql"
    schemes = SCHEMES
    maintenance_database = ""  # the clients connect to the server without a database
    # what include_globals adds, for validate (mysql_globals.py asks the server which way)
    globals_what = ("users and grants (MariaDB: mariadb-dump --system=users; MySQL: SHOW CREATE USER and "
                    "SHOW GRANTS)")

    def parse_url(self, url: str) -> MysqlUrl:
        return parse_mysql_url(url)

    def with_database(self, url: str, dbname: str) -> str:
        return with_database(url, dbname)

    def with_password(self, url: str, password: str) -> str:
        return with_password(url, password)

    def routed_url(self, url: str, address: str, port: int) -> str:
        return routed_url(url, address, port)

    def dump_format(self, strategy) -> str:
        return "plain"

    def dump_source(self, target, strategy, private_dir: Path) -> MysqlSource:
        return MysqlSource(target.name, target.url, private_dir, extra_args=strategy.mysqldump.extra_args,
                           connect_timeout=strategy.timeout.connect)

    def globals_source(self, target, strategy, private_dir: Path) -> MysqlGlobalsSource:
        return MysqlGlobalsSource(target.name, target.url, private_dir, connect_timeout=strategy.timeout.connect)

    def list_databases(self, url: str, private_dir: Path, timeout: float, connect_timeout: float) -> list[str]:
        return list_databases(url, private_dir, timeout, connect_timeout)

    def reader_stages(self, fmt: str) -> list[StageSpec]:
        return []  # the decompressed dump comes out of the chain; dump_end_problem reads its end

    def dump_end_problem(self, fmt: str, tail: bytes) -> tuple[str, str] | None:
        if fmt != "plain":
            return (f"its manifest says {fmt} format, and a MySQL dump is plain SQL",
                    "the manifest does not describe this archive; restore an older backup")
        if ends_complete(tail):
            return None
        return ("it does not end with '-- Dump completed', which the dump program writes last",
                "the dump stopped before the end; restore an older backup")

    def restore_target(self, url: str, private_dir: Path, connect_timeout: float) -> MysqlRestoreTarget:
        return MysqlRestoreTarget(url, private_dir, connect_timeout)

    def not_empty_hint(self, fmt: str, create: bool) -> str:
        """A dump drops and recreates each table, view, routine and event it holds (DROP ... IF EXISTS), so
        --clean restores over a database that is not empty; not in one transaction (MySQL's DDL commits)."""
        return (f"{new_database_hint(create)}, or add --clean to restore over it: the dump drops and recreates each "
                "table, view, routine and event it holds and leaves the others; it is not one transaction, so a "
                "failed restore leaves the database half replaced")


ENGINE = MysqlEngine()
