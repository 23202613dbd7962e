"""Object keys follow DESIGN.md's layout, and any database name stays one safe segment."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from easybackup.storage.layout import (
    GLOBALS,
    archive_key,
    database_prefix,
    globals_key,
    manifest_key,
    parse_archive_key,
    quote_segment,
    strategy_prefix,
    unquote_segment,
)

TS = "2024-03-05T023000Z"
HOSTILE_NAMES = ["a/b", "..", ".", "../../etc", "my db", "it's \"quoted\"", "naïve-日本語", "100%", "a?b#c",
                 "_globals", "_private", "back\\slash", " leading space", "tab\there", "~tilde", "%2F"]


def test_a_custom_dump_key_has_the_documented_shape():
    assert archive_key("backups/prod", "nightly", "shop", TS, "custom", "gzip") == \
        f"backups/prod/nightly/shop/{TS}.dump.gz"


def test_a_plain_dump_with_zstd_and_one_without_compression():
    assert archive_key("b", "s", "d", TS, "plain", "zstd") == f"b/s/d/{TS}.sql.zst"
    assert archive_key("b", "s", "d", TS, "custom", "none") == f"b/s/d/{TS}.dump"


@pytest.mark.parametrize("base", ["", None, "/", "//"])
def test_no_base_path_means_no_leading_slash(base):
    assert archive_key(base, "s", "d", TS, "custom", "gzip") == f"s/d/{TS}.dump.gz"


def test_slashes_around_the_base_path_make_no_double_slashes():
    key = archive_key("/backups//prod/", "s", "d", TS, "custom", "gzip")
    assert key == f"backups/prod/s/d/{TS}.dump.gz"
    assert "//" not in key


def test_globals_live_beside_the_databases_as_plain_sql():
    assert globals_key("b", "s", TS, "gzip") == f"b/s/_globals/{TS}.sql.gz"


def test_the_manifest_sits_beside_its_archive():
    assert manifest_key(f"b/s/d/{TS}.dump.gz") == f"b/s/d/{TS}.manifest.json"
    assert manifest_key(f"s/_globals/{TS}.sql") == f"s/_globals/{TS}.manifest.json"


def test_a_key_that_is_not_an_archive_has_no_manifest_key():
    with pytest.raises(ValueError):
        manifest_key("b/s/d/notes.txt")


def test_prefixes_end_with_a_slash_and_nest():
    assert strategy_prefix("b", "s") == "b/s/"
    assert database_prefix("b", "s", "a/b") == "b/s/a%2Fb/"
    assert database_prefix(None, "s", "d").startswith(strategy_prefix(None, "s"))


def test_a_database_prefix_does_not_cover_a_database_whose_name_extends_it():
    assert not database_prefix("b", "s", "shop2").startswith(database_prefix("b", "s", "shop"))


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_a_hostile_database_name_is_one_safe_segment(name):
    segment = quote_segment(name)
    assert "/" not in segment
    assert segment not in (".", "..")
    assert not segment.startswith("_")
    assert segment.isascii() and " " not in segment and "'" not in segment and '"' not in segment
    assert unquote_segment(segment) == name


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_a_hostile_database_name_round_trips_through_an_archive_key(name):
    key = archive_key("base/path", "nightly", name, TS, "custom", "zstd")
    assert key.count("/") == 4
    parsed = parse_archive_key(key)
    assert (parsed.base_path, parsed.strategy, parsed.database, parsed.run_timestamp) == \
        ("base/path", "nightly", name, TS)
    assert (parsed.format, parsed.compression, parsed.is_globals) == ("custom", "zstd", False)


def test_a_database_called_globals_does_not_mix_with_the_globals_dump():
    database = archive_key("b", "s", "_globals", TS, "plain", "gzip")
    globals_dump = globals_key("b", "s", TS, "gzip")
    assert database != globals_dump
    assert parse_archive_key(database).is_globals is False
    assert parse_archive_key(globals_dump).is_globals is True
    assert parse_archive_key(globals_dump).database == GLOBALS


@given(st.text(min_size=1, max_size=40))
def test_any_name_round_trips(name):
    key = archive_key("", "s", name, TS, "plain", "none")
    assert parse_archive_key(key).database == name


@pytest.mark.parametrize("key", [
    "s/d/notes.txt",
    f"s/d/{TS}.manifest.json",
    f"d/{TS}.dump",
    f"s/d/{TS}.dump.bz2",
    "s/d/2024-03-05T02:30:00Z.dump",
    f"s/my db/{TS}.dump",       # not how we encode a space
    f"s/%2e%2e/{TS}.dump",      # not how we encode `..`
    f"s/_other/{TS}.dump",      # `_` names are ours, and only _globals exists
    f"s/_globals/{TS}.dump",    # globals are plain SQL
    f"s//{TS}.dump",
])
def test_foreign_keys_do_not_parse(key):
    assert parse_archive_key(key) is None


def test_an_empty_name_cannot_be_a_segment():
    with pytest.raises(ValueError):
        quote_segment("")


def test_a_malformed_run_timestamp_is_refused():
    with pytest.raises(ValueError):
        archive_key("b", "s", "d", "2024-03-05 02:30", "custom", "gzip")
