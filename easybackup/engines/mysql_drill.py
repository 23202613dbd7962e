"""What a restore drill (catalogue/drill.py) asks of a MySQL/MariaDB target beyond a restore: exact row counts, the
database's size, the drill databases by prefix, and dropping one even while a session holds it.

A mixin of MysqlRestoreTarget (engines/mysql.py), which supplies `connection` (ClientConnection) and `dbname`.

A MySQL dump is plain SQL: there is no table of contents to read off its head, so a drill checks it by its exact
counts only (as a PostgreSQL plain dump). Tables are keyed ("", table): the restored database is the drill's own
throwaway one, whose name says nothing about the backup.

Names travel as HEX() and are decoded here: a table or database name may hold a tab, a newline or a backslash,
which the client's batch output would escape.
"""

from __future__ import annotations

import threading
import time

from easybackup.engines.mysql_client import error_numbers, quote_identifier, quote_string
from easybackup.errors import EasybackupError
from easybackup.pipeline.stages import StageSpec

# The base tables of a database, by name: MariaDB's system-versioned ones too (COUNT(*) counts their current rows);
# not views, not sequences.
TABLES_SQL = ("SELECT HEX(table_name) FROM information_schema.tables WHERE table_schema = {schema} "
              "AND table_type IN ('BASE TABLE', 'SYSTEM VERSIONED') ORDER BY table_name")
SIZE_SQL = ("SELECT COALESCE(SUM(data_length + index_length), 0) FROM information_schema.tables "
            "WHERE table_schema = {schema}")
# LEFT() and BINARY: a LIKE would read the prefix's `_` as "any character", and the column's collation ignores case.
PREFIXED_SQL = ("SELECT HEX(schema_name) FROM information_schema.schemata "
                "WHERE LEFT(schema_name, CHAR_LENGTH({prefix})) = BINARY {prefix} ORDER BY schema_name")
SESSIONS_SQL = ("SELECT id FROM information_schema.processlist WHERE db = BINARY {name} "
                "AND id <> CONNECTION_ID()")
UNKNOWN_THREAD = "1094"  # KILL of a session that ended meanwhile
NOT_OWNER = "1095"  # KILL of another user's session without CONNECTION ADMIN
DROP_LOCK_WAIT_S = 10  # how long DROP DATABASE waits for a session we could not see or end, per attempt
DROP_ATTEMPTS = 3
QUERY_TIMEOUT_S = 60


def decoded(hex_name: str) -> str:
    """Given HEX() of a name, return the name."""
    return bytes.fromhex(hex_name).decode("utf-8", errors="replace")


class MysqlDrillQueries:
    """The DrillTarget half of MysqlRestoreTarget (whose `connection` runs its SQL)."""

    @staticmethod
    def toc_stage(fmt: str) -> StageSpec | None:
        """A MySQL dump is plain SQL, with no table of contents: None (the drill checks counts only)."""
        return None

    @staticmethod
    def toc_tables(listing: str) -> list[tuple[str, str]]:
        """No table of contents, so no table listed in one."""
        return []

    def table_rows(self, *, timeout: float, stop: threading.Event | None = None) -> dict[tuple[str, str], int | None]:
        """Return {("", table): exact rows} of every base table (views left out: they hold no rows of their own and
        may name a DEFINER the drill server lacks); raise kind cancelled once `stop` is set."""
        deadline = time.monotonic() + timeout
        schema = quote_string(self.dbname)
        tables = [decoded(row[0]) for row in self.connection.script(TABLES_SQL.format(schema=schema), timeout=timeout,
                                                                    stop=stop)]
        if not tables:
            return {}
        # One client, one statement per table, one result row each, in order.
        counts = self.connection.script(
            "".join(f"SELECT COUNT(*) FROM {quote_identifier(name)};\n" for name in tables), self.dbname,
            timeout=max(1.0, deadline - time.monotonic()), stop=stop)
        if len(counts) != len(tables):
            raise EasybackupError(f"counting the rows of database {self.dbname} gave {len(counts)} answers for "
                                  f"{len(tables)} tables", kind="internal")
        return {("", name): int(row[0]) for name, row in zip(tables, counts, strict=True)}

    def database_size(self, *, stop: threading.Event | None = None) -> int:
        """Return the database's size in bytes (data and indexes, as information_schema states them)."""
        rows = self.connection.script(SIZE_SQL.format(schema=quote_string(self.dbname)), timeout=QUERY_TIMEOUT_S,
                                      stop=stop)
        return int(rows[0][0])

    def databases_starting_with(self, prefix: str) -> list[str]:
        """Return the names of the server's databases that start with `prefix` (exactly: `_` is no wildcard,
        case counts), sorted."""
        rows = self.connection.script(PREFIXED_SQL.format(prefix=quote_string(prefix)))
        return sorted(name for name in (decoded(row[0]) for row in rows) if name.startswith(prefix))

    def drop_database(self, name: str) -> None:
        """Drop the database `name` (gone already: fine), first ending the sessions whose database it is (a killed
        restore's client may still hold it; MySQL has no DROP DATABASE … FORCE). A session the user cannot see
        (without PROCESS), or one that uses the database from another, makes the drop wait DROP_LOCK_WAIT_S per
        attempt, then fail with kind timeout."""
        for attempt in range(1, DROP_ATTEMPTS + 1):
            self._end_sessions(name)
            try:
                self.connection.script(f"SET SESSION lock_wait_timeout = {DROP_LOCK_WAIT_S};\n"
                                       f"DROP DATABASE IF EXISTS {quote_identifier(name)};",
                                       timeout=DROP_LOCK_WAIT_S + QUERY_TIMEOUT_S)
                return
            except EasybackupError as exc:
                if exc.kind == "timeout" and attempt < DROP_ATTEMPTS:
                    continue
                hint = ("a session the drill user cannot see holds it: grant the drill user PROCESS and CONNECTION "
                        "ADMIN (README: Restore drills), or end it and drop the database by hand"
                        if exc.kind == "timeout" else exc.hint)
                raise EasybackupError(f"cannot drop drill database {name} at {self.connection.url.where}",
                                      exc.message, hint, kind=exc.kind, transient=exc.transient,
                                      last_lines=exc.last_lines) from exc

    def _end_sessions(self, name: str) -> None:
        """KILL every other session whose current database is `name` (one that ended meanwhile: fine)."""
        for row in self.connection.script(SESSIONS_SQL.format(name=quote_string(name))):
            try:
                self.connection.script(f"KILL CONNECTION {int(row[0])}")
            except EasybackupError as exc:
                said = "\n".join(exc.last_lines) or exc.message
                if UNKNOWN_THREAD in error_numbers(said):
                    continue
                if NOT_OWNER in error_numbers(said):
                    raise EasybackupError(f"cannot end session {row[0]} in drill database {name} at "
                                          f"{self.connection.url.where}", exc.detail or said,
                                          "grant the drill user CONNECTION ADMIN (README: Restore drills)",
                                          kind="permission", last_lines=exc.last_lines) from exc
                raise
