"""Database engines: everything easybackup knows about one kind of database server lives in one module here.

An `Engine` is looked up by the scheme of a database URL (`engine_for_url`) or by the name a manifest records
(`engine_named`). It hands out per-database objects — a `DumpSource` for a backup, a `RestoreTarget` for a
restore — and answers the few questions the rest of the code asks about a URL or a stored dump. Nothing outside
this package names a database's programs (pg_dump, psql, …); `tests/unit/test_engine_boundary.py` checks it.

Secrets: an engine keeps passwords out of argv and out of children's environments (files in the private
directory it is given, 0600, removed by `cleanup()`), and masks every text it returns.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Protocol, runtime_checkable

from easybackup.config.model import DatabaseTarget, Strategy
from easybackup.errors import EasybackupError
from easybackup.pipeline.stages import StageFailed, StageSpec
from easybackup.urls import masked_url


class ServerUrl(Protocol):
    """A database URL, parsed and percent-decoded; `where` says where the server listens, for messages."""

    host: str
    port: int
    user: str | None
    password: str | None
    dbname: str | None

    @property
    def where(self) -> str: ...


@runtime_checkable
class DumpSource(Protocol):
    """One dump to take (a database, or a server's globals). Use as a context manager: leaving it removes the
    files it wrote (passfiles). Implementations keep secrets out of argv, env and every text they return."""

    name: str  # the engine, e.g. "postgres"
    stage_name: str  # the dump program's stage in the pipeline (its failures and its byte count)
    needs_tail: bool  # check_dump reads the dump's last bytes (the relay keeps them)

    def __enter__(self) -> DumpSource: ...

    def __exit__(self, exc_type, exc, tb) -> None: ...

    def describe(self) -> str:
        """Return a one-line description for logs and Slack, secrets masked."""
        ...

    def dump_stage(self) -> StageSpec:
        """Return the stage that writes the dump to stdout (writing its passfile first when needed)."""
        ...

    def classify_failure(self, stage_failed: StageFailed) -> EasybackupError:
        """Given the pipeline's failure, return an error with the right kind, transient flag and hint (a failure
        of another stage unchanged)."""
        ...

    def check_dump(self, head: bytes, tail: bytes, size: int | None, last_lines: list[str]) -> None:
        """Given the first and last bytes the dump program wrote, their count and its last stderr lines, raise
        EasybackupError (kind invalid_dump) unless they are a whole dump."""
        ...

    def versions_after_dump(self, head: bytes) -> dict[str, str | None]:
        """Given the first bytes the dump program wrote, return {"dump_version", "server_version"} for the
        manifest, read off the dump's own header where it has one (None where one cannot be had)."""
        ...


@runtime_checkable
class RestoreTarget(Protocol):
    """A database to restore into (or, for `--create`, the server's maintenance database). `cleanup()` removes
    its passfile."""

    dbname: str

    def asks_for_password(self) -> bool:
        """Connect; return True when the server wants a password and none was given, False when connected or when
        it failed otherwise (the restore then reports that in its own words)."""
        ...

    def database_exists(self, name: str) -> bool: ...

    def create_database(self, name: str) -> None: ...

    def user_table_count(self) -> int:
        """Return how many user tables the database holds (0: safe to restore into)."""
        ...

    def restore_stage(self, fmt: str, *, globals_dump: bool, clean: bool, jobs: int | None = None,
                      path: Path | None = None, without_owners: bool = False) -> StageSpec:
        """Given the dump's format, return the stage that applies it from stdin (or from `path` with `jobs`);
        raise UsageError for options the format cannot do. `without_owners` (a drill's, into a scratch server
        that lacks production's roles) leaves out ownership and grants where the restore program can."""
        ...

    def restore_error(self, line: str) -> bool:
        """Given a line the restore of a globals dump printed, return whether it is an error that fails it
        (objects that already exist do not)."""
        ...

    def failure_hint(self, lines: list[str]) -> tuple[str, str] | None:
        """Given the last lines of a restore program that failed, return (error kind, what to fix) for a failure
        this engine recognises, else None (the lines then speak for themselves)."""
        ...

    def cleanup(self) -> None: ...


@runtime_checkable
class DrillTarget(RestoreTarget, Protocol):
    """A RestoreTarget a restore drill (catalogue/drill.py) can use: what it checks after the restore, and how it
    removes its throwaway databases. An engine whose target is not one cannot be drilled (the config says so)."""

    def toc_stage(self, fmt: str) -> StageSpec | None:
        """Given a dump's format, return the stage that prints the archive's table of contents from stdin, reading
        only its head and exiting 0 (the decompressor before it then dies of the closed pipe: no failure); None
        for a format without one (the drill then checks counts only)."""
        ...

    def toc_tables(self, listing: str) -> list[tuple[str, str]]:
        """Given what toc_stage printed, return (schema, table) of every table it lists, in order."""
        ...

    def table_rows(self, *, timeout: float, stop: threading.Event | None = None) -> dict[tuple[str, str], int | None]:
        """Return {(schema, table): exact row count} of every user table (None where a table holds no rows of its
        own, a partitioned parent); raise EasybackupError kind cancelled once `stop` is set."""
        ...

    def database_size(self, *, stop: threading.Event | None = None) -> int:
        """Return the database's size in bytes."""
        ...

    def databases_starting_with(self, prefix: str) -> list[str]:
        """(The maintenance database) return the server's databases whose names start with `prefix`, sorted."""
        ...

    def drop_database(self, name: str) -> None:
        """(The maintenance database) drop `name` if it exists, ending the sessions that still use it."""
        ...


@runtime_checkable
class Engine(Protocol):
    """One kind of database server. Stateless: per-database state lives in the objects it hands out."""

    name: str  # recorded in manifests ("postgres")
    schemes: tuple[str, ...]  # the URL schemes it serves ("postgres", "postgresql")
    maintenance_database: str  # where `restore --create` connects to create the target

    # -- URLs ----------------------------------------------------------------------------------------------------

    def parse_url(self, url: str) -> ServerUrl:
        """Given a database URL, return its parts; raise ValueError (masked) if it is not one of this engine."""
        ...

    def with_database(self, url: str, dbname: str) -> str:
        """Given a URL, return the same URL (user, password, host, port, options) naming `dbname` instead."""
        ...

    def with_password(self, url: str, password: str) -> str:
        """Given a URL without a password, return it with `password` (it reaches only a passfile)."""
        ...

    def routed_url(self, url: str, address: str, port: int) -> str:
        """Given a URL and the local address and port of a route (SSH tunnel, proxy forwarder), return the URL
        the engine's programs use to reach the same server through it (TLS still checks the server's name)."""
        ...

    # -- backup --------------------------------------------------------------------------------------------------

    def dump_format(self, strategy: Strategy) -> str:
        """Given a strategy, return the format its dumps have (the manifest's `format`, the key's extension)."""
        ...

    def dump_source(self, target: DatabaseTarget, strategy: Strategy, private_dir: Path) -> DumpSource:
        """Given a database (its URL already routed), its strategy and the worker's private dir, return its dump."""
        ...

    def globals_source(self, target: DatabaseTarget, strategy: Strategy, private_dir: Path) -> DumpSource:
        """Given any database of a server, return the dump of the server's globals (roles, tablespaces), plain."""
        ...

    def list_databases(self, url: str, private_dir: Path, timeout: float, connect_timeout: float) -> list[str]:
        """Given the URL of a database on a server, return the server's databases worth backing up, sorted; raise
        the classified EasybackupError if they cannot be listed (the reachability check calls this too)."""
        ...

    # -- verify and restore --------------------------------------------------------------------------------------

    def reader_stages(self, fmt: str) -> list[StageSpec]:
        """Given a dump's format, return the stages after the decompressor that read the whole dump from stdin
        and fail on a damaged one ([] where the dump itself comes out of the chain to be checked by dump_end)."""
        ...

    def dump_end_problem(self, fmt: str, tail: bytes) -> tuple[str, str] | None:
        """Given a dump's format and the last bytes of the decompressed dump (when reader_stages leaves it to
        us), return (what is wrong, hint) if it is not a complete dump, else None."""
        ...

    def restore_target(self, url: str, private_dir: Path, connect_timeout: float) -> RestoreTarget:
        """Given a URL of this engine and a private dir, return the database to restore into."""
        ...

    def not_empty_hint(self, fmt: str, create: bool) -> str:
        """Given a backup's format and whether --create was given, return what `restore` says to do about a
        target database that is not empty (a new name, and what --clean does with this engine's dumps, if any)."""
        ...


def new_database_hint(create: bool) -> str:
    """Return the first half of every engine's not_empty_hint: a new name (with --create unless it was given:
    then the name is what must change)."""
    return "name a database that does not exist yet in --target-url" + ("" if create else " and add --create")


def _registered() -> tuple[Engine, ...]:
    # The one place an engine is registered. Imported here, after the protocol above: an engine module may import
    # this package for its types, and the import direction stays inside engines/.
    from easybackup.engines.mysql import ENGINE as MYSQL
    from easybackup.engines.postgres import ENGINE as POSTGRES

    return (POSTGRES, MYSQL)


def engines() -> tuple[Engine, ...]:
    """Return every engine easybackup knows."""
    return _registered()


def engine_for_url(url: str) -> Engine:
    """Given a database URL, return the engine its scheme names; raise ValueError (masked) if none does."""
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    for engine in engines():
        if scheme in engine.schemes:
            return engine
    known = ", ".join(f"{scheme}://" for engine in engines() for scheme in engine.schemes)
    shown = masked_url(url) if scheme else "a URL without a scheme"  # masked_url masks only what parses as a URL
    raise ValueError(f"no database engine for {shown}: the URL must start with one of {known}")


def engine_named(name: str) -> Engine:
    """Given an engine's name as a manifest records it, return the engine; raise ValueError if none has it."""
    for engine in engines():
        if engine.name == name:
            return engine
    raise ValueError(f"unknown database engine '{name}' (this version knows "
                     f"{', '.join(engine.name for engine in engines())})")
