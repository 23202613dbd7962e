"""The codec chain's stages: what the backup runs after the dump, and what verify and restore run to undo it.

Backup, verify and restore build their chains only here: `encode_stages(chain)` and `decode_stages(chain)`. The
codecs themselves (names, levels, suffixes, manifest fields) are data in easybackup/codec_table.py.

`gzip` runs pigz when it is installed (same format, every core); `zstd` runs multi-threaded (-T0).
The stage is named after the program that really runs, so an error says "pigz exited with code 1".
Codec stages get an environment without secrets (`base_env()`): they need none.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from easybackup.codec_table import COMPRESSORS, CodecChain
from easybackup.pipeline import age
from easybackup.pipeline.stages import StageSpec, base_env

CODECS = tuple(COMPRESSORS)


def _check_codec(codec: str) -> None:
    if codec not in COMPRESSORS:
        raise ValueError(f"unknown compression '{codec}' (expected one of: {', '.join(CODECS)})")


def chain_of_settings(strategy) -> CodecChain:
    """Given a Strategy, return the codec chain its backups go through (its s3 compression, its encryption)."""
    encryption = strategy.encryption
    return CodecChain(compression=strategy.s3.compression, level=strategy.s3.compression_level,
                      encryption="none" if encryption is None else encryption.kind,
                      recipients=() if encryption is None else tuple(encryption.recipients))


def encode_stages(chain: CodecChain) -> list[StageSpec]:
    """Given a codec chain, return the stages the backup runs after the dump, in order (none: no stage)."""
    stages = [compressor_stage(chain.compression, chain.level)]
    if chain.encrypted:
        stages.append(age.encrypt_stage(chain.recipients))
    return [stage for stage in stages if stage is not None]


def decode_stages(chain: CodecChain, identity: Path | None = None) -> list[StageSpec]:
    """Given the chain an archive went through (and the identity file for an encrypted one), return the stages that
    turn it back into the dump, in order. Raise UsageError for an encrypted archive without an identity."""
    stages = [decompress_stage(chain.compression)]
    if chain.encrypted:
        if identity is None:
            raise ValueError("an encrypted archive needs an identity to decode")
        stages.insert(0, age.decrypt_stage(identity))
    return [stage for stage in stages if stage is not None]


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
    low, high, default = COMPRESSORS[codec].levels
    level = default if level is None else level
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
    return COMPRESSORS[codec].suffix


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
