"""What a restore drill (catalogue/drill.py) asks of a PostgreSQL target beyond a restore: the archive's table of
contents, exact row counts, the database's size, and dropping drill databases even while a session holds them.

A mixin of PostgresTarget (engines/postgres_server.py), which supplies `psql`.
"""

from __future__ import annotations

import json
import threading

from easybackup.pipeline.stages import StageSpec, base_env

# Every user table with its exact row count (a partitioned parent: null, its partitions hold the rows), as JSON.
TABLES_SQL = r"""SELECT coalesce(json_agg(json_build_array(n.nspname, c.relname, CASE WHEN c.relkind = 'r' THEN
  (xpath('/row/c/text()', query_to_xml(format('SELECT count(*) AS c FROM %I.%I', n.nspname, c.relname),
   false, true, '')))[1]::text::bigint END)), '[]')
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\_toast%' AND n.nspname NOT LIKE 'pg\_temp%'"""
PREFIXED_SQL = "SELECT datname FROM pg_database WHERE starts_with(datname, :'prefix') ORDER BY 1"
SIZE_SQL = "SELECT pg_database_size(current_database())"
PG_CLASS_OID = "1259"


class PostgresDrillQueries:
    """The DrillTarget half of PostgresTarget (whose `psql` it runs its SQL with)."""

    @staticmethod
    def toc_stage(fmt: str) -> StageSpec | None:
        """Given a dump's format, return `pg_restore --list` for the custom format: it prints the table of contents
        of the archive on its stdin and exits 0 without reading the data (its exit before the archive's end is no
        failure). None for plain SQL, which has no table of contents."""
        if fmt != "custom":
            return None
        return StageSpec("pg_restore --list", ["pg_restore", "--list"], env=base_env(), failure_kind="verification")

    @staticmethod
    def toc_tables(listing: str) -> list[tuple[str, str]]:
        """Given `pg_restore --list` output, return (schema, table) of every TABLE entry, in order.

        A table's entry reads `<id>; 1259 <oid> TABLE <schema> <name> <owner>` (1259: pg_class; `TABLE DATA` and
        `TABLE ATTACH` entries have catalog oid 0). A name holding a space is read whole; a schema or an owner
        holding one would be misread (pg_restore's list does not quote names)."""
        tables = []
        for line in listing.splitlines():
            if line.startswith(";") or "; " not in line:
                continue
            fields = line.split("; ", 1)[1].split(" ")
            if len(fields) >= 6 and fields[0] == PG_CLASS_OID and fields[2] == "TABLE":
                tables.append((fields[3], " ".join(fields[4:-1])))
        return tables

    def table_rows(self, *, timeout: float, stop: threading.Event | None = None) -> dict[tuple[str, str], int | None]:
        """Return {(schema, table): exact rows} of every user table (None for a partitioned parent)."""
        rows = json.loads(self.psql(TABLES_SQL, timeout=timeout, stop=stop) or "[]")
        return {(schema, name): count for schema, name, count in rows}

    def database_size(self, *, stop: threading.Event | None = None) -> int:
        """Return the database's size on disk in bytes."""
        return int(self.psql(SIZE_SQL, stop=stop))

    def databases_starting_with(self, prefix: str) -> list[str]:
        """Return the names of the server's databases that start with `prefix`, sorted."""
        return self.psql(PREFIXED_SQL, {"prefix": prefix}).splitlines()

    def drop_database(self, name: str) -> None:
        """Drop the database `name` (gone already: fine); WITH (FORCE) ends the sessions still in it (a killed
        pg_restore's backend)."""
        self.psql('DROP DATABASE IF EXISTS :"name" WITH (FORCE)', {"name": name})
