"""Object keys in S3 (DESIGN.md, Objects in S3). Pure functions, no I/O.

    <base_path>/<strategy>/<database>/<run timestamp>.<dump|sql>[.gz|.zst]   the archive
    <base_path>/<strategy>/<database>/<run timestamp>.manifest.json          the commit marker, written last
    <base_path>/<strategy>/_globals/<run timestamp>.sql[.gz|.zst]            roles and tablespaces

Strategy and database names are percent-encoded into one segment each, so a name with `/`, `..`, spaces,
quotes or unicode can neither escape its directory nor collide with another name. A leading `_` is encoded
too: names beginning with `_` are reserved for our own directories (`_globals`), so a database that is
really called `_globals` cannot mix with the globals dumps.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote, unquote

GLOBALS = "_globals"
MANIFEST_SUFFIX = ".manifest.json"
FORMAT_EXTENSIONS = {"custom": "dump", "plain": "sql"}
COMPRESSION_EXTENSIONS = {"gzip": ".gz", "zstd": ".zst", "none": ""}

_TIMESTAMP = r"\d{4}-\d{2}-\d{2}T\d{6}Z"
_ARCHIVE_NAME = re.compile(rf"^(?P<ts>{_TIMESTAMP})\.(?P<ext>dump|sql)(?P<comp>\.gz|\.zst)?$")
_TIMESTAMP_ONLY = re.compile(rf"^{_TIMESTAMP}$")


@dataclass(frozen=True)
class ArchiveKey:
    """What an archive key says: where it lives and what is in it."""

    base_path: str
    strategy: str
    database: str  # decoded name; GLOBALS for the globals dump
    run_timestamp: str
    format: str  # custom | plain
    compression: str  # gzip | zstd | none
    is_globals: bool = False


def quote_segment(text: str) -> str:
    """Given a name, return it percent-encoded as one safe key segment; raise ValueError if it is empty."""
    if not text:
        raise ValueError("an empty name cannot be a key segment")
    encoded = quote(text, safe="")
    # quote() leaves `.` alone; `.` and `..` alone would mean "here" and "up" to anything that treats keys as paths.
    if encoded in (".", ".."):
        return encoded.replace(".", "%2E")
    if encoded.startswith("_"):
        return "%5F" + encoded[1:]
    return encoded


def unquote_segment(segment: str) -> str:
    """Given a segment made by quote_segment, return the original name."""
    return unquote(segment, errors="strict")


def normalize_base_path(base_path: str | None) -> str:
    """Given a configured base path (`/backups/prod/`, ``, None), return it without empty segments."""
    return "/".join(part for part in (base_path or "").split("/") if part)


def _join(*segments: str) -> str:
    return "/".join(segment for segment in segments if segment)


def strategy_prefix(base_path: str | None, strategy: str) -> str:
    """Given the base path and a strategy name, return the key prefix of all its objects (ends with `/`)."""
    return _join(normalize_base_path(base_path), quote_segment(strategy)) + "/"


def database_prefix(base_path: str | None, strategy: str, database: str) -> str:
    """Given the base path, strategy and database names, return the prefix of that database's objects."""
    return strategy_prefix(base_path, strategy) + quote_segment(database) + "/"


def globals_prefix(base_path: str | None, strategy: str) -> str:
    """Given the base path and strategy name, return the prefix of the strategy's globals dumps."""
    return strategy_prefix(base_path, strategy) + GLOBALS + "/"


def _check_timestamp(run_timestamp: str) -> None:
    if not _TIMESTAMP_ONLY.match(run_timestamp):
        raise ValueError(f"'{run_timestamp}' is not a run timestamp (YYYY-mm-ddTHHMMSSZ)")


def archive_extension(fmt: str, compression: str) -> str:
    """Given a pg_dump format and a compression codec, return the archive's extension (`dump.gz`)."""
    if fmt not in FORMAT_EXTENSIONS:
        raise ValueError(f"unknown pg_dump format '{fmt}'")
    if compression not in COMPRESSION_EXTENSIONS:
        raise ValueError(f"unknown compression '{compression}'")
    return FORMAT_EXTENSIONS[fmt] + COMPRESSION_EXTENSIONS[compression]


def archive_key(base_path: str | None, strategy: str, database: str, run_timestamp: str, fmt: str,
                compression: str) -> str:
    """Given where, what and when, return the archive's key; raise ValueError on an unknown format or codec."""
    _check_timestamp(run_timestamp)
    return f"{database_prefix(base_path, strategy, database)}{run_timestamp}.{archive_extension(fmt, compression)}"


def globals_key(base_path: str | None, strategy: str, run_timestamp: str, compression: str) -> str:
    """Given where and when, return the key of the run's globals dump (always plain SQL)."""
    _check_timestamp(run_timestamp)
    return f"{globals_prefix(base_path, strategy)}{run_timestamp}.{archive_extension('plain', compression)}"


def manifest_key(archive: str) -> str:
    """Given an archive key, return the key of its manifest; raise ValueError if it is not an archive key."""
    prefix, _, name = archive.rpartition("/")
    match = _ARCHIVE_NAME.match(name)
    if not match:
        raise ValueError(f"'{archive}' is not an archive key")
    return _join(prefix, match["ts"] + MANIFEST_SUFFIX)


def parse_archive_key(key: str) -> ArchiveKey | None:
    """Given any key, return what it says if it is an archive key of ours, or None for anything else."""
    segments = key.split("/")
    if len(segments) < 3:
        return None
    *base, strategy_segment, database_segment, name = segments
    match = _ARCHIVE_NAME.match(name)
    if not match or not strategy_segment or not database_segment:
        return None
    is_globals = database_segment == GLOBALS
    strategy = _decode_canonical(strategy_segment)
    database = GLOBALS if is_globals else _decode_canonical(database_segment)
    if strategy is None or database is None:
        return None
    fmt = "custom" if match["ext"] == "dump" else "plain"
    compression = {".gz": "gzip", ".zst": "zstd", None: "none"}[match["comp"]]
    if is_globals and fmt != "plain":
        return None
    return ArchiveKey(base_path="/".join(base), strategy=strategy, database=database,
                      run_timestamp=match["ts"], format=fmt, compression=compression, is_globals=is_globals)


def _decode_canonical(segment: str) -> str | None:
    """Given a key segment, return the name it encodes, or None if quote_segment would not have written it."""
    try:
        name = unquote_segment(segment)
    except UnicodeDecodeError:
        return None
    if not name or quote_segment(name) != segment:
        return None
    return name
