"""The versions a dump names at its start: read off the custom format's header and the plain format's comments,
and None — never a wrong answer or an exception — for anything else."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from easybackup.engines.dump_header import (
    CLUSTER_BANNER,
    CLUSTER_DUMP_COMPLETE,
    DumpVersions,
    dump_problem,
    versions_from_dump_head,
)

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


# -- is it a whole dump? -------------------------------------------------------------------------------------

# How pg_dump 15.20 and pg_dumpall 15.20 end (`\unrestrict <key>` since the 2025 minor releases), and 15.13.
PG_DUMP_END = b"\n\n--\n-- PostgreSQL database dump complete\n--\n\n\\unrestrict lWLdIWDdeJ98CeA4OGHiV3kyvRmug5h\n\n"
PG_DUMP_END_OLDER = b"\nALTER TABLE ONLY public.t\n\n\n--\n-- PostgreSQL database dump complete\n--\n\n"
PG_DUMPALL_END = (b"\n\\unrestrict bZdIQsaqT1n3JRClQR\n\n--\n-- PostgreSQL database cluster dump complete\n"
                  b"--\n\n")


@pytest.mark.parametrize("tail", [PG_DUMP_END, PG_DUMP_END_OLDER, PG_DUMP_END.replace(b"\n", b"\r\n")])
def test_a_whole_plain_dump_passes(tail):
    assert dump_problem("plain", PLAIN_HEAD, tail) is None


def test_pg_dumpall_output_passes_with_its_own_preamble_and_completion_comment():
    assert dump_problem("plain", PG_DUMPALL_HEAD, PG_DUMPALL_END, banner=CLUSTER_BANNER,
                        complete=CLUSTER_DUMP_COMPLETE) is None
    assert "does not end with '-- PostgreSQL database dump complete'" in dump_problem("plain", PLAIN_HEAD,
                                                                                     PG_DUMPALL_END)


COMPLETE_ENDS_AT = PG_DUMP_END_OLDER.index(b"complete") + len(b"complete")


@pytest.mark.parametrize("keep", [0, 1, 10, 30, COMPLETE_ENDS_AT - 20, COMPLETE_ENDS_AT - 1])
def test_a_plain_dump_cut_before_its_completion_comment_ends_fails(keep):
    tail = b"COPY public.t (id) FROM stdin;\n1\n2\n" + PG_DUMP_END_OLDER[:keep]
    assert dump_problem("plain", PLAIN_HEAD, tail) == \
        "it does not end with '-- PostgreSQL database dump complete': it was cut short"


@pytest.mark.parametrize("keep", [keep for keep in range(COMPLETE_ENDS_AT, len(PG_DUMP_END_OLDER) + 1)
                                  if not PG_DUMP_END_OLDER[:keep].endswith(b"\n-")])  # half a `--` is no end
def test_a_plain_dump_with_its_whole_completion_comment_passes_whatever_blank_lines_follow(keep):
    assert dump_problem("plain", PLAIN_HEAD, PG_DUMP_END_OLDER[:keep]) is None


def test_a_cut_that_leaves_only_the_unrestrict_line_short_still_passes_as_pg_dump_itself_wrote_the_comment():
    # The completion comment is pg_dump's last word about the data; `\unrestrict` after it only ends psql's
    # restricted mode, and a cut inside it loses no data.
    assert dump_problem("plain", PLAIN_HEAD, PG_DUMP_END[:-10]) is None


def test_the_custom_format_must_begin_with_pgdmp_and_any_dump_must_not_be_empty():
    assert dump_problem("custom", PG15_HEADER, b"") is None
    assert dump_problem("custom", PLAIN_HEAD, PG_DUMP_END) == \
        "it does not begin with PGDMP, the custom format's signature"
    assert dump_problem("custom", b"", b"") == dump_problem("plain", b"", b"") == "it wrote nothing"
    assert "preamble" in dump_problem("plain", PG15_HEADER, PG_DUMP_END)
    assert "preamble" in dump_problem("plain", b"SET client_encoding = 'UTF8';\n", PG_DUMP_END)


@given(st.binary(max_size=300))
def test_any_bytes_give_a_problem_or_none_never_an_exception(data):
    for fmt in ("custom", "plain"):
        assert dump_problem(fmt, data, data) is None or isinstance(dump_problem(fmt, data, data), str)
