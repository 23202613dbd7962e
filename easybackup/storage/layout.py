"""Object keys in S3 (DESIGN.md, Objects in S3). Pure functions, no I/O.

    <base_path>/<strategy>/<database>/<run name>.<dump|sql><codec suffixes>  the archive (codec_table.py)
    <base_path>/<strategy>/<database>/<run name>.manifest.json          the commit marker, written last
    <base_path>/<strategy>/<database>/<run name>.pin.json               a pin: retention keeps the backup (`pin`)
    <base_path>/<strategy>/_globals/<run name>.sql<codec suffixes>       roles and tablespaces
    <base_path>/<strategy>/_runs/<run name>.run.json                    the run record: how each database ended

The run name is `<run timestamp>-<run id>` (`2024-05-01T020000Z-3f2a9c1b7d4e`): two runs of one strategy started in
the same second (a `once` beside the supervisor) never share a key. Keys of older versions carry the bare run
timestamp (`2024-05-01T020000Z`); they parse as before, with no run id.

Strategy and database names are percent-encoded into one segment each, so a name with `/`, `..`, spaces,
quotes or unicode can neither escape its directory nor collide with another name. A leading `_` is encoded
too: names beginning with `_` are reserved for our own directories (`_globals`), so a database that is
really called `_globals` cannot mix with the globals dumps.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote, unquote

from easybackup.codec_table import SUFFIX_PATTERN, CodecChain, chain_of_suffix

GLOBALS = "_globals"
RUNS = "_runs"  # run records; `_` keeps the directory apart from every database (quote_segment encodes a leading `_`)
MANIFEST_SUFFIX = ".manifest.json"
RUN_RECORD_SUFFIX = ".run.json"
PIN_SUFFIX = ".pin.json"
FORMAT_EXTENSIONS = {"custom": "dump", "plain": "sql"}

_TIMESTAMP = r"\d{4}-\d{2}-\d{2}T\d{6}Z"
_RUN_ID = r"[0-9a-z]{1,32}"
_RUN_NAME = rf"(?P<name>(?P<ts>{_TIMESTAMP})(?:-(?P<run>{_RUN_ID}))?)"
_ARCHIVE_NAME = re.compile(rf"^{_RUN_NAME}\.(?P<ext>dump|sql){SUFFIX_PATTERN}$")
_RUN_NAME_ONLY = re.compile(rf"^{_RUN_NAME}$")
_RUN_RECORD_NAME = re.compile(rf"^{_RUN_NAME}{re.escape(RUN_RECORD_SUFFIX)}$")


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
    run_id: str | None = None  # None in the keys of versions before run names
    encryption: str = "none"  # none | age (codec_table.ENCRYPTIONS)

    @property
    def run_name(self) -> str:
        return run_name(self.run_timestamp, self.run_id)


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


def run_name(run_timestamp: str, run_id: str | None = None) -> str:
    """Given a run timestamp and the run id (None for the bare timestamp of older keys), return the run name
    that keys carry; raise ValueError if either is malformed."""
    name = f"{run_timestamp}-{run_id}" if run_id is not None else run_timestamp
    _check_run_name(name)
    return name


def split_run_name(text: str) -> tuple[str, str | None] | None:
    """Given text, return (run timestamp, run id or None) if it is a run name, else None."""
    match = _RUN_NAME_ONLY.match(text)
    return (match["ts"], match["run"]) if match else None


def _check_run_name(name: str) -> None:
    if not _RUN_NAME_ONLY.match(name):
        raise ValueError(f"'{name}' is not a run name (YYYY-mm-ddTHHMMSSZ, optionally -<run id>)")


def archive_extension(fmt: str, codecs: CodecChain | str) -> str:
    """Given an engine's dump format (custom | plain) and the codec chain (or just a compression codec), return the
    archive's extension (`dump.gz`)."""
    if fmt not in FORMAT_EXTENSIONS:
        raise ValueError(f"unknown dump format '{fmt}'")
    chain = codecs if isinstance(codecs, CodecChain) else CodecChain(compression=codecs)
    return FORMAT_EXTENSIONS[fmt] + chain.suffix


def archive_key(base_path: str | None, strategy: str, database: str, run: str, fmt: str,
                compression: CodecChain | str) -> str:
    """Given where, what and the run name (or a bare run timestamp), return the archive's key; raise ValueError on
    an unknown format or codec or a malformed run name."""
    _check_run_name(run)
    return f"{database_prefix(base_path, strategy, database)}{run}.{archive_extension(fmt, compression)}"


def globals_key(base_path: str | None, strategy: str, run: str, compression: CodecChain | str) -> str:
    """Given where and the run name, return the key of the run's globals dump (always plain SQL)."""
    _check_run_name(run)
    return f"{globals_prefix(base_path, strategy)}{run}.{archive_extension('plain', compression)}"


def runs_prefix(base_path: str | None, strategy: str) -> str:
    """Given the base path and strategy name, return the prefix of the strategy's run records."""
    return strategy_prefix(base_path, strategy) + RUNS + "/"


def run_record_key(base_path: str | None, strategy: str, run: str) -> str:
    """Given where and the run name, return the key of the run's record. It is no archive (`parse_archive_key`
    says None) and no manifest (another suffix), so listing, restore and retention of backups never take it
    for one."""
    _check_run_name(run)
    return f"{runs_prefix(base_path, strategy)}{run}{RUN_RECORD_SUFFIX}"


def run_name_of_record(key: str) -> str | None:
    """Given any key, return the run name if it is a run record's key (`…/_runs/<run name>.run.json`), else None."""
    directory, _, name = key.rpartition("/")
    match = _RUN_RECORD_NAME.match(name)
    return match["name"] if match and directory.rpartition("/")[2] == RUNS else None


def pin_key(archive: str) -> str:
    """Given an archive key, return the key of its pin; raise ValueError if it is not an archive key."""
    return manifest_key(archive).removesuffix(MANIFEST_SUFFIX) + PIN_SUFFIX


def manifest_key(archive: str) -> str:
    """Given an archive key, return the key of its manifest; raise ValueError if it is not an archive key."""
    prefix, _, name = archive.rpartition("/")
    match = _ARCHIVE_NAME.match(name)
    if not match:
        raise ValueError(f"'{archive}' is not an archive key")
    return _join(prefix, match["name"] + MANIFEST_SUFFIX)


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
    codecs = chain_of_suffix(match)
    if is_globals and fmt != "plain":
        return None
    return ArchiveKey(base_path="/".join(base), strategy=strategy, database=database,
                      run_timestamp=match["ts"], format=fmt, compression=codecs.compression, is_globals=is_globals,
                      run_id=match["run"], encryption=codecs.encryption)


def _decode_canonical(segment: str) -> str | None:
    """Given a key segment, return the name it encodes, or None if quote_segment would not have written it."""
    try:
        name = unquote_segment(segment)
    except UnicodeDecodeError:
        return None
    if not name or quote_segment(name) != segment:
        return None
    return name
