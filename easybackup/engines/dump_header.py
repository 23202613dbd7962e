"""What pg_dump writes at the start and the end of every dump: the versions in the custom format's header or the
plain format's comments, and the signs that the output is a whole dump at all (`PGDMP`; the plain format's
preamble and its closing `-- PostgreSQL database dump complete`).

Read off the first bytes of the dump stream, they spare every backup a `pg_dump --version` (Debian's perl
wrapper, then pg_dump) and a second connection to the server after the dump (`show server_version` through
psql) — ~0.15 s of a run, and a connection a role with CONNECTION LIMIT 1 could refuse.

The custom format's header (pg_backup_archiver.c, WriteHead/ReadHead) is, for archive versions 1.10 to 1.16:
"PGDMP", major, minor and revision bytes, int size, offset size and format bytes, the compression (an int, or
from 1.15 on a byte naming the algorithm), the creation time (seven ints), then three strings: the database
name, the server's version and pg_dump's. An int is a sign byte and `int size` bytes, least significant first;
a string is its length as an int, then its bytes. A header this code does not know reads as None, and the
caller asks the programs instead.

A program that exits 0 is not proof of a dump: an `extra_args` option that sends it to a file leaves stdout
empty, and a wrapper or a cut stream can stop mid-way. `dump_problem` says what is wrong with the first and last
bytes the counting relay kept; nothing that fails it is stored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

HEAD_BYTES = 4096  # both formats name their versions within the first KiB
MAGIC = b"PGDMP"
OLDEST_KNOWN = (1, 10)  # the server's version is in the header from 1.10 (PostgreSQL 7.4-era archives lack it)
NEWEST_KNOWN = (1, 16)  # PostgreSQL 17 and 18 write 1.16; a newer header may be laid out differently
COMPRESSION_AS_BYTE = (1, 15)  # PostgreSQL 16 replaced the compression level int by an algorithm byte
TIMESTAMP_INTS = 7

PLAIN_BANNER = b"--\n-- PostgreSQL database dump\n--"
CLUSTER_BANNER = b"--\n-- PostgreSQL database cluster dump\n--"  # pg_dumpall's
DUMP_COMPLETE = b"-- PostgreSQL database dump complete"
CLUSTER_DUMP_COMPLETE = b"-- PostgreSQL database cluster dump complete"
TAIL_BYTES = 4096  # the completion comment and what may follow it (`--`, `\unrestrict <key>`) fit many times
# After the completion comment: `--` and blank lines, and from the 2025 minor releases on `\unrestrict <key>`.
_TRAILER = re.compile(rb"^(--|\\unrestrict \S+)?$")
_SERVER_LINE = b"-- Dumped from database version "
_DUMP_LINE = b"-- Dumped by pg_dump version "
_NUMBER = re.compile(r"\d+(?:\.\d+)*")


@dataclass(frozen=True)
class DumpVersions:
    """pg_dump's version as a number ("15.6", as `pg_dump --version` gives it) and the server's as the server
    reports it ("15.6 (Debian 15.6-0+deb12u1)", as `show server_version` gives it)."""

    pg_dump_version: str
    server_version: str


def versions_from_dump_head(head: bytes) -> DumpVersions | None:
    """Given the first bytes of pg_dump's output (custom or plain format), return the versions it names; None when
    it names none this code can read (pg_dumpall's output, an unknown archive version, too few bytes)."""
    if head.startswith(MAGIC):
        return _from_custom_header(head)
    return _from_plain_preamble(head[:HEAD_BYTES].replace(b"\r\n", b"\n"))


def ends_like_a_complete_dump(tail: bytes, complete: tuple[bytes, ...] = (DUMP_COMPLETE, CLUSTER_DUMP_COMPLETE)
                               ) -> bool:
    """Given the last bytes of a plain SQL dump, return whether its last line that is not `--`, blank or
    `\\unrestrict <key>` is a completion comment (`complete`: pg_dump's or pg_dumpall's)."""
    lines = tail.replace(b"\r\n", b"\n").split(b"\n")
    while lines and _TRAILER.match(lines[-1].strip()):
        lines.pop()
    return bool(lines) and lines[-1].strip() in complete


def dump_problem(fmt: str, head: bytes, tail: bytes, *, banner: bytes = PLAIN_BANNER,
                 complete: bytes = DUMP_COMPLETE) -> str | None:
    """Given the format ("custom" or "plain"), the first and the last bytes a dump program wrote, and for plain
    SQL its preamble's first lines and its completion comment, return what shows it is not a whole dump, or None.
    The text names only easybackup's expectations, never the dump's own bytes (they are the database's data)."""
    if not head:
        return "it wrote nothing"
    if fmt == "custom":
        return None if head.startswith(MAGIC) else "it does not begin with PGDMP, the custom format's signature"
    if not head.replace(b"\r\n", b"\n").startswith(banner):
        first = banner.split(b"\n")[1].decode()
        return f"it does not begin with the plain format's preamble ('{first}')"
    if not ends_like_a_complete_dump(tail, (complete,)):
        return f"it does not end with '{complete.decode()}': it was cut short"
    return None


def _from_plain_preamble(head: bytes) -> DumpVersions | None:
    """Read the two version comments of pg_dump's preamble: only before its first statement, so no text of the
    dump itself (a name, a comment on an object) can pass for them."""
    if not head.startswith(PLAIN_BANNER):
        return None
    server = dump = None
    for line in head.split(b"\n")[:-1]:  # the last one may be cut
        if line.startswith(_SERVER_LINE):
            server = line[len(_SERVER_LINE):]
        elif line.startswith(_DUMP_LINE):
            dump = line[len(_DUMP_LINE):]
        elif line and not line.startswith((b"--", b"\\restrict ")):
            break  # the first statement: the preamble is over
    if server is None or dump is None:
        return None
    return _versions(dump_text=dump, server_text=server)


def _versions(dump_text: bytes, server_text: bytes) -> DumpVersions | None:
    dump, server = (text.decode("utf-8", errors="replace").strip() for text in (dump_text, server_text))
    number = _NUMBER.match(dump)
    if number is None or not server:
        return None
    return DumpVersions(pg_dump_version=number.group(0), server_version=server)


class _Truncated(Exception):
    """The header goes on past the bytes we have."""


class _Reader:
    def __init__(self, data: bytes):
        self.data = data
        self.position = 0
        self.int_size = 4

    def byte(self) -> int:
        if self.position >= len(self.data):
            raise _Truncated
        value = self.data[self.position]
        self.position += 1
        return value

    def bytes(self, count: int) -> bytes:
        end = self.position + count
        if end > len(self.data):
            raise _Truncated
        value = self.data[self.position:end]
        self.position = end
        return value

    def int(self) -> int:
        sign = self.byte()
        value = int.from_bytes(self.bytes(self.int_size), "little")
        return -value if sign else value

    def string(self) -> bytes | None:
        length = self.int()
        return None if length < 0 else self.bytes(length)


def _from_custom_header(head: bytes) -> DumpVersions | None:
    reader = _Reader(head)
    try:
        reader.bytes(len(MAGIC))
        version = (reader.byte(), reader.byte())
        reader.byte()  # revision
        if not OLDEST_KNOWN <= version <= NEWEST_KNOWN:
            return None
        reader.int_size = reader.byte()
        if not 1 <= reader.int_size <= 8:
            return None
        reader.byte()  # offset size
        reader.byte()  # format
        if version >= COMPRESSION_AS_BYTE:
            reader.byte()  # the compression algorithm
        else:
            reader.int()  # the compression level
        for _ in range(TIMESTAMP_INTS):
            reader.int()
        reader.string()  # the database name
        server, dump = reader.string(), reader.string()
    except _Truncated:
        return None
    if server is None or dump is None:
        return None
    return _versions(dump_text=dump, server_text=server)
