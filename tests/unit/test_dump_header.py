"""The versions a dump names at its start: read off the custom format's header and the plain format's comments,
and None — never a wrong answer or an exception — for anything else."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from easybackup.worker.sources.dump_header import DumpVersions, versions_from_dump_head

DEBIAN = "15.20 (Debian 15.20-0+deb12u1)"
# The first bytes `pg_dump -Fc -Z0` 15.20 wrote for a database named "bench" (archive version 1.14.0).
PG15_HEADER = (b"PGDMP\x01\x0e\x00\x04\x08\x01\x00\x00\x00\x00\x00\x006\x00\x00\x00\x00 \x00\x00\x00\x00\x03\x00\x00"
               b"\x00\x00\x1b\x00\x00\x00\x00\n\x00\x00\x00\x00~\x00\x00\x00\x00\x00\x00\x00\x00\x00\x05\x00\x00"
               b"\x00bench\x00\x1e\x00\x00\x0015.20 (Debian 15.20-0+deb12u1)\x00\x1e\x00\x00\x0015.20 (Debian "
               b"15.20-0+deb12u1)\x00\x11\x00\x00\x00\x00\x1d\r\x00\x00\x00\x00\x00")
PLAIN_HEAD = (b"--\n-- PostgreSQL database dump\n--\n\n\\restrict hoEpncnrRdwB9Gyi7\n\n"
              b"-- Dumped from database version 16.4 (Ubuntu 16.4-1.pgdg22.04+1)\n"
              b"-- Dumped by pg_dump version 17.2 (Debian 17.2-1.pgdg120+1)\n\nSET statement_timeout = 0;\n")
PG_DUMPALL_HEAD = (b"--\n-- PostgreSQL database cluster dump\n--\n\nSET default_transaction_read_only = off;\n\n"
                   b"--\n-- Roles\n--\n\nCREATE ROLE postgres;\n")


def write_int(value: int, int_size: int = 4) -> bytes:
    """pg_backup_archiver.c WriteInt: a sign byte, then the magnitude least significant byte first."""
    return bytes([1 if value < 0 else 0]) + abs(value).to_bytes(int_size, "little")


def write_str(text: str | None, int_size: int = 4) -> bytes:
    if text is None:
        return write_int(-1, int_size)
    data = text.encode()
    return write_int(len(data), int_size) + data


def custom_header(minor: int, server: str | None = DEBIAN, dump: str | None = DEBIAN, int_size: int = 4,
                  major: int = 1) -> bytes:
    """A header as pg_dump's WriteHead lays it out for archive version major.minor.0."""
    head = b"PGDMP" + bytes([major, minor, 0, int_size, 8, 1])
    head += bytes([0]) if (major, minor) >= (1, 15) else write_int(0, int_size)
    head += b"".join(write_int(value, int_size) for value in (12, 30, 4, 27, 10, 126, 0))
    head += write_str("sales", int_size) + write_str(server, int_size) + write_str(dump, int_size)
    return head + b"\x11\x00\x00\x00\x00"  # the TOC count follows


def test_a_real_postgresql_15_header_names_both_versions():
    assert versions_from_dump_head(PG15_HEADER) == DumpVersions(pg_dump_version="15.20", server_version=DEBIAN)


@pytest.mark.parametrize("minor", range(10, 17))
@pytest.mark.parametrize("int_size", [4, 8])
def test_every_known_archive_version_is_read_whatever_the_int_size(minor, int_size):
    head = custom_header(minor, server="13.9", dump="17.2 (Debian 17.2-1.pgdg120+1)", int_size=int_size)
    assert versions_from_dump_head(head) == DumpVersions(pg_dump_version="17.2", server_version="13.9")


def test_postgresql_16_and_later_write_the_compression_as_one_byte_not_an_int():
    one_byte = custom_header(15)
    assert versions_from_dump_head(one_byte) is not None
    as_int = one_byte.replace(b"PGDMP\x01\x0f", b"PGDMP\x01\x0e", 1)  # same bytes read as 1.14: misaligned
    assert versions_from_dump_head(as_int) != versions_from_dump_head(one_byte)


@pytest.mark.parametrize(("major", "minor"), [(1, 9), (1, 17), (2, 0), (0, 14)])
def test_an_archive_version_this_code_does_not_know_reads_as_none(major, minor):
    assert versions_from_dump_head(custom_header(minor, major=major)) is None


def test_a_header_cut_anywhere_before_the_versions_end_reads_as_none():
    end_of_versions = PG15_HEADER.index(b"u1)\x00\x11") + 3
    for length in range(end_of_versions):
        assert versions_from_dump_head(PG15_HEADER[:length]) is None, length
    assert versions_from_dump_head(PG15_HEADER[:end_of_versions]) is not None


def test_a_header_without_a_server_version_reads_as_none():
    assert versions_from_dump_head(custom_header(14, server=None)) is None
    assert versions_from_dump_head(custom_header(14, dump="unknown")) is None


def test_a_plain_dump_names_both_versions_in_its_comments():
    assert versions_from_dump_head(PLAIN_HEAD) == DumpVersions(
        pg_dump_version="17.2", server_version="16.4 (Ubuntu 16.4-1.pgdg22.04+1)")


def test_a_plain_dump_with_windows_line_ends_is_read_too():
    assert versions_from_dump_head(PLAIN_HEAD.replace(b"\n", b"\r\n")).server_version.startswith("16.4 (Ubuntu")


def test_pg_dumpall_output_names_no_versions():
    assert versions_from_dump_head(PG_DUMPALL_HEAD) is None


def test_version_lines_inside_the_dump_itself_are_not_taken_for_pg_dumps():
    # A role or a comment may be named anything: its text comes after the preamble's first statement.
    forged = b"\n-- Dumped from database version 9.9\n-- Dumped by pg_dump version 1.0\n"
    assert versions_from_dump_head(PG_DUMPALL_HEAD + b'CREATE ROLE "x' + forged + b'";\n') is None
    banner_only = b"--\n-- PostgreSQL database dump\n--\n\nSET statement_timeout = 0;\n"
    assert versions_from_dump_head(banner_only + b'COMMENT ON TABLE t IS \'' + forged + b"';\n") is None


def test_a_preamble_cut_inside_the_pg_dump_line_reads_as_none():
    cut = PLAIN_HEAD[:PLAIN_HEAD.index(b"17.2 (Debian") + 6]
    assert versions_from_dump_head(cut) is None


def test_comments_far_into_a_stream_are_not_taken_for_the_header():
    assert versions_from_dump_head(b"-- data\n" * 1000 + PLAIN_HEAD) is None


def test_nothing_at_all_reads_as_none():
    assert versions_from_dump_head(b"") is None


@given(st.binary(max_size=300))
def test_any_bytes_after_the_magic_give_none_or_versions_never_an_exception(tail):
    result = versions_from_dump_head(b"PGDMP" + tail)
    assert result is None or isinstance(result, DumpVersions)


@given(st.binary(max_size=300))
def test_any_bytes_at_all_give_none_or_versions(data):
    result = versions_from_dump_head(data)
    assert result is None or isinstance(result, DumpVersions)
