"""What a drill reads off a PostgreSQL archive's table of contents (`pg_restore --list` output)."""

from __future__ import annotations

from easybackup.engines import DrillTarget
from easybackup.engines.postgres import ENGINE
from easybackup.engines.postgres_server import PostgresTarget

LISTING = """;
; Archive created at 2026-12-06 23:40:30 UTC
;     dbname: probe
;
6; 2615 16388 SCHEMA - s postgres
217; 1259 16394 TABLE public p postgres
218; 1259 16397 TABLE public p1 postgres
215; 1259 16385 TABLE public t1 postgres
216; 1259 16389 TABLE s my tab postgres
219; 1259 16400 VIEW public v postgres
3209; 0 0 TABLE ATTACH public p1 postgres
3352; 0 16385 TABLE DATA public t1 postgres
"""


def test_the_archive_tables_are_its_table_entries_only():
    # A static method: reading a listing needs no server.
    assert PostgresTarget.toc_tables(LISTING) == [("public", "p"), ("public", "p1"), ("public", "t1"),
                                                  ("s", "my tab")]


def test_only_a_custom_archive_has_a_toc_stage(tmp_path):
    target = ENGINE.restore_target("postgres://u@localhost:5432/postgres", tmp_path, 5)
    try:
        assert isinstance(target, DrillTarget)
        assert target.toc_stage("custom").argv == ["pg_restore", "--list"]
        assert target.toc_stage("plain") is None
    finally:
        target.cleanup()
