"""The versions pg_dump writes at the start of every dump: the custom format's header, the plain format's comments.

Read off the first bytes of the dump stream, they spare every backup a `pg_dump --version` (Debian's perl
wrapper, then pg_dump) and a second connection to the server after the dump (`show server_version` through
psql) — ~0.15 s of a run, and a connection a role with CONNECTION LIMIT 1 could refuse.

The custom format's header (pg_backup_archiver.c, WriteHead/ReadHead) is, for archive versions 1.10 to 1.16:
"PGDMP", major, minor and revision bytes, int size, offset size and format bytes, the compression (an int, or
from 1.15 on a byte naming the algorithm), the creation time (seven ints), then three strings: the database
name, the server's version and pg_dump's. An int is a sign byte and `int size` bytes, least significant first;
a string is its length as an int, then its bytes. A header this code does not know reads as None, and the
caller asks the programs instead.
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

PLAIN_BANNER = b"--\n-- PostgreSQL database dump\n--"  # pg_dumpall's says "database cluster dump"
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
