"""Compressor stages for the dump pipeline, and the matching decompressors for restore and verify.

`gzip` runs pigz when it is installed (same format, every core); `zstd` runs multi-threaded (-T0).
The stage is named after the program that really runs, so an error says "pigz exited with code 1".
Compressors get an environment without secrets (`base_env()`): they need none.
"""

from __future__ import annotations

import shutil

from easybackup.pipeline.stages import StageSpec, base_env
from easybackup.storage.layout import COMPRESSION_EXTENSIONS

CODECS = ("gzip", "zstd", "none")
DEFAULT_LEVELS = {"gzip": 6, "zstd": 3}
LEVEL_RANGES = {"gzip": (1, 9), "zstd": (1, 19)}


def _check_codec(codec: str) -> None:
    if codec not in CODECS:
        raise ValueError(f"unknown compression '{codec}' (expected one of: {', '.join(CODECS)})")


def gzip_program() -> str:
    """Return "pigz" when it is on the PATH, else "gzip"."""
    return "pigz" if shutil.which("pigz") else "gzip"


def compressor_stage(codec: str, level: int | None = None) -> StageSpec | None:
    """Given a codec and an optional level, return the stage that compresses stdin to stdout.

    Return None for `none`. Raise ValueError for an unknown codec or a level outside the codec's range.
    """
    _check_codec(codec)
    if codec == "none":
        return None
    low, high = LEVEL_RANGES[codec]
    level = DEFAULT_LEVELS[codec] if level is None else level
    if not low <= level <= high:
        raise ValueError(f"{codec} compression level must be {low}..{high}, not {level}")
    if codec == "gzip":
        program = gzip_program()
        return StageSpec(program, [program, "-c", f"-{level}"], env=base_env(), failure_kind="compressor_failed")
    return StageSpec("zstd", ["zstd", "-c", "-q", "-T0", f"-{level}"], env=base_env(),
                     failure_kind="compressor_failed")


def extension(codec: str) -> str:
    """Given a codec, return the archive suffix it adds: ".gz", ".zst" or ""."""
    _check_codec(codec)
    return COMPRESSION_EXTENSIONS[codec]


def decompress_argv(codec: str) -> list[str] | None:
    """Given a codec, return argv that decompresses stdin to stdout, or None for `none`."""
    _check_codec(codec)
    if codec == "gzip":
        return [gzip_program(), "-dc"]
    if codec == "zstd":
        return ["zstd", "-dc", "-q"]
    return None


def decompress_stage(codec: str) -> StageSpec | None:
    """Given a codec, return the decompressing stage for restore/verify pipelines, or None for `none`."""
    argv = decompress_argv(codec)
    return None if argv is None else StageSpec(argv[0], argv, env=base_env(), failure_kind="verification")
