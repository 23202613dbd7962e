"""The counting relay of the pipeline: it moves a stage's output on unchanged, counts it, and leaks nothing."""

from __future__ import annotations

import errno
import gzip
import os
import signal
import sys

import pytest

from easybackup.pipeline import stages as pipeline_module
from easybackup.pipeline.stages import Pipeline, StageFailed, StageSpec
from tests.unit import test_pipeline
from tests.unit.test_pipeline import py, read_all

pytestmark = pytest.mark.timeout(60)
no_leaks = test_pipeline.no_leaks  # the same fixture: no fd, thread or process may be left behind

SIZE = 5 * 1024 * 1024 + 123  # several relay chunks and not a multiple of any of them
WRITE_BYTES = f"import sys\nsys.stdout.buffer.write(bytes(range(256)) * ({SIZE} // 256) + b'x' * ({SIZE} % 256))"


def expected_bytes() -> bytes:
    return bytes(range(256)) * (SIZE // 256) + b"x" * (SIZE % 256)


def gzip_stage() -> StageSpec:
    return StageSpec("gzip", ["gzip", "-c", "-1"], failure_kind="compressor_failed")


def run_to_end(pipeline: Pipeline) -> bytes:
    with pipeline:
        data = read_all(pipeline.output_fd)
        pipeline.wait()
    return data


def test_the_relay_counts_every_byte_the_dump_wrote_while_the_compressor_gets_them_unchanged(no_leaks):
    pipeline = Pipeline([py("dump", WRITE_BYTES), gzip_stage()], count_after="dump")
    compressed = run_to_end(pipeline)
    assert gzip.decompress(compressed) == expected_bytes()
    assert pipeline.bytes_counted == SIZE


def test_on_linux_the_relay_moves_data_with_splice_not_through_python(no_leaks):
    pipeline = Pipeline([py("dump", WRITE_BYTES), gzip_stage()], count_after="dump")
    run_to_end(pipeline)
    assert pipeline._relay.spliced is True


def test_without_splice_the_relay_copies_and_counts_the_same(no_leaks, monkeypatch):
    monkeypatch.delattr(os, "splice")
    pipeline = Pipeline([py("dump", WRITE_BYTES), gzip_stage()], count_after="dump")
    compressed = run_to_end(pipeline)
    assert gzip.decompress(compressed) == expected_bytes()
    assert pipeline.bytes_counted == SIZE and pipeline._relay.spliced is False


def test_a_splice_the_kernel_refuses_falls_back_to_copying(no_leaks, monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError(errno.EINVAL, "Invalid argument")

    monkeypatch.setattr(pipeline_module.os, "splice", refuse)
    pipeline = Pipeline([py("dump", WRITE_BYTES), gzip_stage()], count_after="dump")
    compressed = run_to_end(pipeline)
    assert gzip.decompress(compressed) == expected_bytes() and pipeline.bytes_counted == SIZE


def test_counting_after_the_last_stage_counts_what_the_caller_reads(no_leaks):
    pipeline = Pipeline([py("dump", WRITE_BYTES), gzip_stage()], count_after="gzip")
    compressed = run_to_end(pipeline)
    assert pipeline.bytes_counted == len(compressed) > 0


def test_the_relay_keeps_the_first_bytes_of_the_stream_for_the_dump_header(no_leaks):
    pipeline = Pipeline([py("dump", WRITE_BYTES), gzip_stage()], count_after="dump")
    run_to_end(pipeline)
    assert pipeline.head == expected_bytes()[:pipeline_module.HEAD_BYTES]


def test_the_first_bytes_are_kept_without_splice_too(no_leaks, monkeypatch):
    monkeypatch.delattr(os, "splice")
    pipeline = Pipeline([py("dump", WRITE_BYTES), gzip_stage()], count_after="dump")
    run_to_end(pipeline)
    assert pipeline.head == expected_bytes()[:pipeline_module.HEAD_BYTES]


def test_a_stream_written_in_dribs_is_kept_whole_up_to_the_head_size(no_leaks):
    dribs = "import os, time\nfor n in range(5):\n    os.write(1, b'%d' % n * 100)\n    time.sleep(0.01)"
    pipeline = Pipeline([py("dump", dribs), gzip_stage()], count_after="dump")
    compressed = run_to_end(pipeline)
    expected = b"".join(b"%d" % n * 100 for n in range(5))
    assert pipeline.head == expected == gzip.decompress(compressed) and pipeline.bytes_counted == 500


def test_the_relay_may_be_the_last_link_and_the_caller_reads_through_it(no_leaks):
    pipeline = Pipeline([py("dump", WRITE_BYTES)], count_after="dump")
    assert run_to_end(pipeline) == expected_bytes()
    assert pipeline.bytes_counted == SIZE and pipeline.head == expected_bytes()[:pipeline_module.HEAD_BYTES]


def test_an_empty_stream_counts_zero(no_leaks):
    pipeline = Pipeline([py("dump", "pass"), gzip_stage()], count_after="dump")
    compressed = run_to_end(pipeline)
    assert gzip.decompress(compressed) == b"" and pipeline.bytes_counted == 0 and pipeline.head == b""


def test_without_count_after_nothing_is_counted(no_leaks):
    pipeline = Pipeline([py("dump", WRITE_BYTES), gzip_stage()])
    run_to_end(pipeline)
    assert pipeline.bytes_counted is None and pipeline.head == b""


def test_count_after_must_name_a_stage():
    with pytest.raises(ValueError, match="count_after names no stage: 'pg_dump'"):
        Pipeline([py("dump", "pass")], count_after="pg_dump")


def test_a_compressor_that_stops_reading_is_blamed_not_the_dump_behind_the_relay(no_leaks):
    endless = "import sys\nwhile True: sys.stdout.buffer.write(b'y' * 65536)"
    quitter = py("compressor", "import sys\nsys.stdin.buffer.read(100000)\nsys.exit(3)")
    with Pipeline([StageSpec("dump", [sys.executable, "-c", endless]), quitter], count_after="dump") as pipeline:
        no_leaks.extend(pipeline.pids().values())
        read_all(pipeline.output_fd)
        with pytest.raises(StageFailed) as failure:
            pipeline.wait(timeout=20)
    assert failure.value.stage == "compressor" and failure.value.returncode == 3
    assert failure.value.exit_codes["dump"] in (-signal.SIGPIPE, 1)
    assert pipeline.bytes_counted >= 100000


def test_leaving_the_block_mid_stream_stops_the_stages_and_the_relay(no_leaks):
    endless = "import sys\nwhile True: sys.stdout.buffer.write(b'z' * 65536)"
    with Pipeline([py("dump", endless), py("cat", "import shutil, sys\n"
                                          "shutil.copyfileobj(sys.stdin.buffer, sys.stdout.buffer)")],
                  count_after="dump") as pipeline:
        no_leaks.extend(pipeline.pids().values())
        assert len(os.read(pipeline.output_fd, 65536)) > 0
    assert not pipeline._relay.is_alive()
    assert pipeline.bytes_counted > 0


def test_a_dump_that_fails_behind_the_relay_is_named(no_leaks):
    failing = "import sys\nsys.stdout.write('partial')\nprint('pg_dump: error: connection lost', file=sys.stderr)\n" \
              "sys.exit(1)"
    with Pipeline([py("pg_dump", failing), gzip_stage()], count_after="pg_dump") as pipeline:
        no_leaks.extend(pipeline.pids().values())
        read_all(pipeline.output_fd)
        with pytest.raises(StageFailed) as failure:
            pipeline.wait()
    assert failure.value.stage == "pg_dump" and "connection lost" in failure.value.detail
    assert pipeline.bytes_counted == len("partial")


# -- the last bytes (keep_tail: a plain dump must end with its completion comment) ----------------------------

TAIL = pipeline_module.TAIL_BYTES
HEAD = pipeline_module.HEAD_BYTES
# Random sizes (one byte to several pipe-fulls) with pauses: the relay wakes to every kind of pipe content.
RAGGED = ("import os, random, time\nrandom.seed(7)\nsent = 0\nfor n in range(120):\n"
          "    size = random.choice([1, 7, 4095, 4096, 4097, 9000, 65536, 300000])\n"
          "    os.write(1, bytes((sent + i) % 251 for i in range(size)))\n"
          "    sent += size\n"
          "    if n % 9 == 0: time.sleep(0.01)\n")


def ragged_bytes() -> bytes:
    import random
    random.seed(7)
    sent, out = 0, bytearray()
    for _ in range(120):
        size = random.choice([1, 7, 4095, 4096, 4097, 9000, 65536, 300000])
        out += bytes((sent + i) % 251 for i in range(size))
        sent += size
    return bytes(out)


def test_with_keep_tail_the_relay_keeps_the_last_bytes_and_still_splices(no_leaks):
    pipeline = Pipeline([py("dump", WRITE_BYTES), gzip_stage()], count_after="dump", keep_tail=True)
    compressed = run_to_end(pipeline)
    assert gzip.decompress(compressed) == expected_bytes() and pipeline.bytes_counted == SIZE
    assert pipeline.tail == expected_bytes()[-TAIL:] and pipeline.head == expected_bytes()[:HEAD]
    assert pipeline._relay.spliced is True, "all but a few KiB per wake-up still move without a copy"


def test_the_last_bytes_are_right_whatever_sizes_the_writes_have(no_leaks):
    expected = ragged_bytes()
    pipeline = Pipeline([py("dump", RAGGED), gzip_stage()], count_after="dump", keep_tail=True)
    compressed = run_to_end(pipeline)
    assert gzip.decompress(compressed) == expected and pipeline.bytes_counted == len(expected)
    assert pipeline.tail == expected[-TAIL:]


@pytest.mark.parametrize("size", [0, 1, 100, TAIL - 1, TAIL, TAIL + 1, 2 * TAIL + 5])
def test_a_short_stream_is_its_own_tail(no_leaks, size):
    data = bytes(i % 256 for i in range(size))
    pipeline = Pipeline([py("dump", f"import os\nos.write(1, bytes(i % 256 for i in range({size})))")],
                        count_after="dump", keep_tail=True)
    assert run_to_end(pipeline) == data and pipeline.tail == data[-TAIL:]  # b"" for an empty stream


def test_the_last_bytes_are_kept_without_splice_too(no_leaks, monkeypatch):
    monkeypatch.delattr(os, "splice")
    expected = ragged_bytes()
    pipeline = Pipeline([py("dump", RAGGED), gzip_stage()], count_after="dump", keep_tail=True)
    assert gzip.decompress(run_to_end(pipeline)) == expected and pipeline.tail == expected[-TAIL:]


def test_a_splice_the_kernel_refuses_falls_back_to_copying_and_keeps_the_last_bytes(no_leaks, monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError(errno.EINVAL, "Invalid argument")

    monkeypatch.setattr(pipeline_module.os, "splice", refuse)
    pipeline = Pipeline([py("dump", WRITE_BYTES), gzip_stage()], count_after="dump", keep_tail=True)
    assert gzip.decompress(run_to_end(pipeline)) == expected_bytes() and pipeline.tail == expected_bytes()[-TAIL:]


def test_without_keep_tail_no_tail_is_kept(no_leaks):
    pipeline = Pipeline([py("dump", WRITE_BYTES), gzip_stage()], count_after="dump")
    run_to_end(pipeline)
    assert pipeline.tail == b""
