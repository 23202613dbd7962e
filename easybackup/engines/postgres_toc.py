"""A PostgreSQL custom archive's table of contents, as restore drills read it (catalogue/drill.py): the stage that
lists it, reading only the archive's head. Here because only the engine names PostgreSQL's programs."""

from __future__ import annotations

from easybackup.pipeline.stages import StageSpec, base_env

TOC_STAGE = "pg_restore --list"


def toc_stage() -> StageSpec:
    """Return the stage that prints the table of contents of the custom archive on its stdin, then exits 0 without
    reading the data (its exit before the archive's end is no failure)."""
    return StageSpec(TOC_STAGE, ["pg_restore", "--list"], env=base_env(), failure_kind="verification")
