"""The wire format: events written by EventWriter come back whole through LineReader and decode()."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from easybackup import wire
from easybackup.wire import MAX_LINE, MAX_LOG_LINE, EventWriter, LineReader, OversizedLine, WireError, decode


def _writer(stream=None):
    return EventWriter(stream if stream is not None else io.BytesIO(), "abc123", "nightly", clock=lambda: 1714530600.5)


def _lines(stream: io.BytesIO) -> list[bytes]:
    data = stream.getvalue()
    assert data.endswith(b"\n")
    return data.split(b"\n")[:-1]


def test_events_round_trip_with_their_envelope():
    stream = io.BytesIO()
    writer = _writer(stream)
    first = writer.emit("started", pid=42, databases=["app", "crm"])
    second = writer.emit("db_finished", "app", status="success", size=1024, sha256="ab" * 32, verified=True)
    assert [decode(line) for line in _lines(stream)] == [first, second]
    assert first == {"v": 1, "type": "started", "run_id": "abc123", "strategy": "nightly", "database": None,
                     "seq": 1, "ts": "2024-05-01T02:30:00.500Z", "pid": 42, "databases": ["app", "crm"]}
    assert second["seq"] == 2 and second["database"] == "app"
    assert b" " not in _lines(stream)[0]  # compact


def test_secrets_are_masked_in_every_string_value():
    stream = io.BytesIO()
    event = _writer(stream).emit(
        "log", stream="pg_dump", level="error",
        line="connect postgresql://app:Sup3rS3cret@db:5432/app failed; slack xoxb-1234-5678-abcdefgh",
        error={"last_lines": ["password=hunter22 host=db"], "message": "see postgres://u:pw12345@h/db"})
    text = stream.getvalue().decode()
    for secret in ("Sup3rS3cret", "xoxb-1234", "hunter22", "pw12345"):
        assert secret not in text
    assert event["line"] == "connect postgresql://app:***@db:5432/app failed; slack ***"
    assert json.loads(text) == event


def test_a_log_line_is_cut_to_two_kib():
    event = _writer().emit("log", stream="pg_dump", level="info", line="é" * 5000)
    assert len(event["line"].encode()) <= MAX_LOG_LINE
    assert event["line"] == "é" * (MAX_LOG_LINE // 2) and event["truncated"] is True


def test_an_event_line_never_exceeds_64_kib():
    stream = io.BytesIO()
    event = _writer(stream).emit("result", status="failed", duration_s=1.5,
                                 error={"kind": "dump_failed", "message": "dump failed " * 20_000,
                                        "last_lines": ["\x01" * 30_000, "ok"]})
    (line,) = _lines(stream)
    assert len(line) + 1 <= MAX_LINE
    assert decode(line) == event and event["truncated"] is True
    assert event["error"]["kind"] == "dump_failed" and event["error"]["last_lines"][1] == "ok"
    assert event["error"]["message"].startswith("dump failed dump failed")


def test_an_event_of_many_small_fields_is_reduced_to_its_envelope():
    stream = io.BytesIO()
    _writer(stream).emit("retention", deleted=["k" * 10] * 40_000)
    (line,) = _lines(stream)
    event = decode(line)
    assert len(line) < MAX_LINE and event["truncated"] is True and event["dropped"] == ["deleted"]


@settings(max_examples=40, deadline=None)
@given(st.dictionaries(st.sampled_from(["message", "line", "key", "reason"]),
                       st.text(min_size=0, max_size=40_000), max_size=4))
def test_any_text_fits_on_one_valid_line(fields):
    stream = io.BytesIO()
    event = _writer(stream).emit("log", **fields)
    (line,) = _lines(stream)
    assert len(line) + 1 <= MAX_LINE
    assert decode(line) == event


def test_an_unknown_event_type_or_an_envelope_field_is_refused():
    with pytest.raises(ValueError):
        _writer().emit("finished")
    with pytest.raises(ValueError):
        _writer().emit("log", seq=7)


def test_a_gone_reader_raises_broken_pipe():
    read_end, write_end = os.pipe()
    os.close(read_end)
    with os.fdopen(write_end, "wb", buffering=0) as stream, pytest.raises(BrokenPipeError):
        _writer(stream).emit("progress", bytes_in=1, bytes_out=1, parts=0)


def test_timestamps_are_utc_with_milliseconds_and_z():
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", wire.iso_timestamp(0.0))
    assert wire.iso_timestamp(0.25) == "1970-01-01T00:00:00.250Z"


def test_the_line_reader_keeps_partial_lines_across_reads():
    reader = LineReader(100)
    assert reader.feed(b'{"a":') == []
    assert reader.feed(b'1}\n{"b"') == [b'{"a":1}']
    assert reader.feed(b":2}\n") == [b'{"b":2}']
    assert reader.flush() is None


def test_the_line_reader_returns_several_lines_from_one_chunk():
    assert LineReader(100).feed(b"one\ntwo\n\nthree\nfo") == [b"one", b"two", b"", b"three"]


def test_the_line_reader_cuts_an_oversized_line_and_drops_its_rest():
    reader = LineReader(10)
    assert reader.feed(b"0123456789") == []  # exactly the limit: still a line in progress
    lines = reader.feed(b"ABCDEF")
    assert lines == [b"0123456789"] and isinstance(lines[0], OversizedLine)
    assert reader.feed(b"more of the same line") == []
    assert reader.feed(b"...\nnext\n") == [b"next"]
    assert not isinstance(reader.feed(b"0123456789\n")[0], OversizedLine)
    assert reader.oversized == 1


def test_the_line_reader_hands_back_a_truncated_last_line_at_eof():
    reader = LineReader(100)
    assert reader.feed(b'{"v":1}\n{"v":1,"ty') == [b'{"v":1}']
    assert reader.flush() == b'{"v":1,"ty'
    assert reader.flush() is None


def _event(**changes) -> bytes:
    event = {"v": 1, "type": "log", "run_id": "r", "strategy": "s", "database": None, "seq": 1,
             "ts": "2024-05-01T00:00:00.000Z"}
    event.update(changes)
    return json.dumps({k: v for k, v in event.items() if v != "<drop>"}).encode()


@pytest.mark.parametrize("line, problem", [
    (b"\xff\xfe garbage", "not UTF-8"),
    (b"hello world", "not JSON"),
    (b'{"v":1,"type":"lo', "not JSON"),
    (b"[1, 2, 3]", "not a JSON object"),
    (_event(v=2), "unknown wire version 2"),
    (_event(seq="<drop>"), "lacks seq"),
    (_event(type="explode"), "unknown event type"),
    (_event(seq="1"), "seq is not an integer"),
    (_event(database=5), "database is neither"),
])
def test_decode_rejects_anything_that_is_not_an_event(line, problem):
    with pytest.raises(WireError) as raised:
        decode(line)
    assert problem in raised.value.message


def test_decode_error_detail_masks_secrets():
    with pytest.raises(WireError) as raised:
        decode(b"postgresql://u:topsecret@h/db")
    assert "topsecret" not in str(raised.value)


def test_take_over_stdout_sends_stray_output_to_stderr():
    program = (
        "import subprocess\n"
        "from easybackup.wire import EventWriter, take_over_stdout\n"
        "events = take_over_stdout()\n"
        "print('stray print')\n"
        "subprocess.run(['echo', 'child output'], check=True)\n"
        "EventWriter(events, 'r1', 's1').emit('started', pid=1, databases=[])\n"
    )
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, check=True, timeout=30)
    (line,) = done.stdout.splitlines()
    assert decode(line)["type"] == "started"
    assert b"stray print" in done.stderr and b"child output" in done.stderr
