"""Compressor stages: the right program and flags, and a real round trip through each codec."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from easybackup.pipeline import codecs as compressors
from easybackup.pipeline.codecs import compressor_stage, decompress_argv, extension
from easybackup.pipeline.stages import Pipeline, StageFailed, StageSpec

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def without_pigz(monkeypatch):
    real_which = shutil.which
    monkeypatch.setattr(compressors.shutil, "which", lambda name: None if name == "pigz" else real_which(name))


def test_gzip_runs_pigz_when_it_is_installed():
    assert shutil.which("pigz"), "pigz is a required system tool (make system-tools installs it)"
    stage = compressor_stage("gzip")
    assert stage.name == "pigz"
    assert list(stage.argv) == ["pigz", "-c", "-6"]
    assert stage.failure_kind == "compressor_failed"
    assert decompress_argv("gzip") == ["pigz", "-dc"]


def test_gzip_falls_back_to_gzip_without_pigz(without_pigz):
    stage = compressor_stage("gzip", 9)
    assert (stage.name, list(stage.argv)) == ("gzip", ["gzip", "-c", "-9"])
    assert decompress_argv("gzip") == ["gzip", "-dc"]


def test_zstd_is_quiet_multithreaded_and_level_3_by_default():
    assert list(compressor_stage("zstd").argv) == ["zstd", "-c", "-q", "-T0", "-3"]
    assert list(compressor_stage("zstd", 19).argv)[-1] == "-19"
    assert decompress_argv("zstd") == ["zstd", "-dc", "-q"]


def test_none_adds_no_stage_and_no_suffix():
    assert compressor_stage("none") is None
    assert compressor_stage("none", 5) is None
    assert decompress_argv("none") is None
    assert extension("none") == ""


def test_extensions_match_the_codec():
    assert (extension("gzip"), extension("zstd")) == (".gz", ".zst")


@pytest.mark.parametrize("codec, level", [("gzip", 0), ("gzip", 10), ("zstd", 0), ("zstd", 20)])
def test_a_level_outside_the_codec_range_is_refused(codec, level):
    with pytest.raises(ValueError, match=f"{codec} compression level must be"):
        compressor_stage(codec, level)


def test_an_unknown_codec_is_refused():
    with pytest.raises(ValueError, match="unknown compression 'lz4'"):
        compressor_stage("lz4")
    with pytest.raises(ValueError):
        extension("bzip2")


def _run(stages: list[StageSpec], data: bytes) -> bytes:
    read_end, write_end = os.pipe()
    with os.fdopen(write_end, "wb") as writer, Pipeline(stages, stdin=read_end) as pipeline:
        os.close(read_end)
        writer.write(data)  # small enough for the pipe buffers of the chain
        writer.close()
        chunks = []
        while chunk := os.read(pipeline.output_fd, 65536):
            chunks.append(chunk)
        pipeline.wait()
    return b"".join(chunks)


@pytest.mark.parametrize("codec", ["gzip", "zstd"])
def test_each_codec_round_trips_through_a_real_pipeline(codec):
    data = b"".join(b"row %d of a dump\n" % i for i in range(2000))
    compressed = _run([compressor_stage(codec, 1)], data)
    assert len(compressed) < len(data) / 3
    argv = decompress_argv(codec)
    assert subprocess.run(argv, input=compressed, capture_output=True, check=True).stdout == data


def test_gzip_output_is_readable_by_plain_gzip_whichever_program_wrote_it():
    data = b"same format\n" * 100
    assert subprocess.run(["gzip", "-dc"], input=_run([compressor_stage("gzip")], data),
                          capture_output=True, check=True).stdout == data


def test_a_corrupt_archive_fails_decompression_with_the_program_named():
    stage = compressors.decompress_stage("zstd")
    with pytest.raises(StageFailed) as failed:
        _run([stage], b"this is not zstd data")
    assert failed.value.stage == "zstd"
    assert failed.value.kind == "verification"
    assert failed.value.last_lines  # zstd says why, even with -q
