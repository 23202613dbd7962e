"""The pure parts of a restore drill: names, leftovers, the judgement."""

from __future__ import annotations

from easybackup.catalogue.drill_plan import (
    drill_database_name,
    is_leftover,
    missing_tables,
    summary,
)



def test_the_drill_database_is_named_prefix_database_run_id():
    assert drill_database_name("easybackup_drill_", "app", "0123456789ab") == "easybackup_drill_app_0123456789ab"


def test_a_long_database_name_is_shortened_to_fit_postgres_63_bytes():
    name = drill_database_name("easybackup_drill_", "é" * 40, "0123456789ab")
    assert len(name.encode()) <= 63 and name.endswith("_0123456789ab") and name.startswith("easybackup_drill_é")


def test_a_leftover_is_a_drill_database_of_one_of_these_databases_from_another_run():
    databases = ["app", "app_archive"]
    assert is_leftover("easybackup_drill_app_0123456789ab", "easybackup_drill_", databases, "ffffffffffff")
    assert is_leftover("easybackup_drill_app_archive_0123456789ab", "easybackup_drill_", databases, "ffffffffffff")
    assert not is_leftover("easybackup_drill_app_ffffffffffff", "easybackup_drill_", databases, "ffffffffffff")
    assert not is_leftover("easybackup_drill_other_0123456789ab", "easybackup_drill_", databases, "ffffffffffff")
    assert not is_leftover("easybackup_drill_app", "easybackup_drill_", databases, "ffffffffffff")
    assert not is_leftover("app_0123456789ab", "easybackup_drill_", databases, "ffffffffffff")
    assert not is_leftover("easybackup_drill_app_Not-A-Run", "easybackup_drill_", databases, "ffffffffffff")


def test_missing_tables_are_named_schema_dot_table():
    restored = {("public", "p"): None, ("public", "t1"): 5}
    archive = [("public", "p"), ("public", "p1"), ("public", "t1"), ("s", "my tab")]
    assert missing_tables(archive, restored) == ["public.p1", "s.my tab"]


def test_the_summary_counts_rows_of_tables_and_leaves_out_partitioned_parents():
    found = summary({("public", "p"): None, ("public", "p1"): 2, ("public", "t1"): 5})
    assert found == {"tables": 3, "rows": 7, "table_rows": {"public.p": None, "public.p1": 2, "public.t1": 5}}


def test_a_table_of_an_engine_without_schemas_is_named_by_itself():
    # MySQL: a database has no schemas inside; its tables are keyed ("", table).
    assert summary({("", "orders"): 2000, ("", "customers"): 4}) == {
        "tables": 2, "rows": 2004, "table_rows": {"customers": 4, "orders": 2000}}
    assert missing_tables([("", "orders"), ("", "gone")], {("", "orders"): 1}) == ["gone"]
