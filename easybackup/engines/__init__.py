"""Dump sources: what produces a database's dump stream. PostgreSQL today; MySQL/MariaDB can follow."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from easybackup.errors import EasybackupError
from easybackup.pipeline.stages import StageFailed, StageSpec


@runtime_checkable
class DumpSource(Protocol):
    """One database to dump. Implementations keep secrets out of argv, env and every text they return."""

    name: str  # the engine, e.g. "postgres"

    def describe(self) -> str:
        """Return a one-line description for logs and Slack, secrets masked."""
        ...

    def dump_stage(self) -> StageSpec:
        """Return the stage that writes the dump to stdout."""
        ...

    def file_extension(self) -> str:
        """Return the archive's extension before any compression suffix: "dump" or "sql"."""
        ...

    def classify_failure(self, stage_failed: StageFailed) -> EasybackupError:
        """Given the pipeline's failure, return an error with the right kind, transient flag and hint."""
        ...

    def check_dump(self, head: bytes, tail: bytes, size: int | None, last_lines: list[str]) -> None:
        """Given the first and last bytes the dump program wrote, their count and its last stderr lines, raise
        EasybackupError (kind invalid_dump) unless they are a whole dump."""
        ...

    def versions_after_dump(self, head: bytes) -> dict[str, str | None]:
        """Given the first bytes the dump program wrote, return {"pg_dump_version", "server_version"} for the
        manifest (None where one cannot be had)."""
        ...
