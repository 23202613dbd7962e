"""PostgreSQL, the engine: pg_dump/pg_dumpall to back up, psql to list databases and restore plain SQL, pg_restore
to restore and verify the custom format. The pieces live beside it: postgres_url.py (libpq's URLs),
postgres_dump.py (PostgresSource, GlobalsSource: argv, passfile, failure classification, versions),
postgres_server.py (psql and pg_restore: listing, verify's reader, the restore target), dump_header.py (the
dump's own versions and completeness).
"""

from __future__ import annotations

from pathlib import Path

from easybackup.config.model import DatabaseTarget, Strategy
from easybackup.engines import new_database_hint, postgres_server, postgres_url
from easybackup.engines.postgres_dump import (
    DEFAULT_CONNECT_TIMEOUT_S,
    GlobalsSource,
    PostgresSource,
    parse_version_output,
    pg_dump_version,
)
from easybackup.engines.postgres_url import PostgresUrl, parse_postgres_url
from easybackup.pipeline.stages import StageSpec

__all__ = ["ENGINE", "DEFAULT_CONNECT_TIMEOUT_S", "PostgresEngine", "PostgresSource", "PostgresUrl",
           "parse_postgres_url", "parse_version_output", "pg_dump_version"]


class PostgresEngine:
    """The Engine (easybackup.engines) for postgres:// and postgresql:// URLs."""

    name = "postgres"
    schemes = ("postgres", "postgresql")
    maintenance_database = postgres_server.MAINTENANCE_DB

    def parse_url(self, url: str) -> PostgresUrl:
        return parse_postgres_url(url)

    def with_database(self, url: str, dbname: str) -> str:
        return postgres_url.with_database(url, dbname)

    def with_password(self, url: str, password: str) -> str:
        return postgres_url.with_password(url, password)

    def routed_url(self, url: str, address: str, port: int) -> str:
        return postgres_url.routed_url(url, address, port)

    def dump_format(self, strategy: Strategy) -> str:
        return strategy.pg_dump.format

    def dump_source(self, target: DatabaseTarget, strategy: Strategy, private_dir: Path) -> PostgresSource:
        return PostgresSource(target, strategy.pg_dump, private_dir,
                              compress_externally=strategy.s3.compression != "none",
                              connect_timeout=strategy.timeout.connect)

    def globals_source(self, target: DatabaseTarget, strategy: Strategy, private_dir: Path) -> GlobalsSource:
        return GlobalsSource(target, private_dir, compress_externally=strategy.s3.compression != "none",
                             connect_timeout=strategy.timeout.connect)

    def list_databases(self, url: str, private_dir: Path, timeout: float, connect_timeout: float) -> list[str]:
        return postgres_server.list_databases(url, private_dir, timeout, connect_timeout)

    def reader_stages(self, fmt: str) -> list[StageSpec]:
        return postgres_server.reader_stages(fmt)

    def dump_end_problem(self, fmt: str, tail: bytes) -> tuple[str, str] | None:
        return postgres_server.dump_end_problem(fmt, tail)

    def restore_target(self, url: str, private_dir: Path, connect_timeout: float) -> postgres_server.PostgresTarget:
        return postgres_server.PostgresTarget(url, private_dir, connect_timeout)

    def not_empty_hint(self, fmt: str, create: bool) -> str:
        """--clean needs pg_restore: a custom-format archive; a plain dump has no DROP statements to run."""
        if fmt != "custom":
            return f"{new_database_hint(create)} (--clean needs a custom-format archive; this backup is plain SQL)"
        return f"{new_database_hint(create)}, or add --clean to replace the objects the backup contains"


ENGINE = PostgresEngine()
