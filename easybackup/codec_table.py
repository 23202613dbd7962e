"""Every codec easybackup knows, as data: names, levels, object-key suffixes and manifest fields. Pure, no I/O.

A base module, not part of pipeline/codecs.py, because config/ (level checks) and storage/ (keys) sit below
pipeline/ in the layers and need this table too; pipeline/codecs.py builds the stages that run these codecs.
Adding a codec: docs/architecture.md, "Add a codec stage".

An archive's codecs in the order the backup applies them (restore and verify undo them in reverse):

    dump → compression (gzip | zstd | none) → stored object
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Compressor:
    """One compression codec: the key suffix it adds and its levels (lowest, highest, default); none: no levels."""

    suffix: str
    levels: tuple[int, int, int] | None


COMPRESSORS = {"gzip": Compressor(".gz", (1, 9, 6)), "zstd": Compressor(".zst", (1, 19, 3)),
               "none": Compressor("", None)}
# The part of an archive key's name after `.dump`/`.sql`; named groups `comp` (None for none).
SUFFIX_PATTERN = "(?P<comp>" + "|".join(re.escape(c.suffix) for c in COMPRESSORS.values() if c.suffix) + ")?"


@dataclass(frozen=True)
class CodecChain:
    """What one archive went through after the dump: its compression (and level, for the backup)."""

    compression: str = "gzip"
    level: int | None = None  # None: the codec's default; not recorded in the manifest

    def __post_init__(self):
        if self.compression not in COMPRESSORS:
            raise ValueError(f"unknown compression '{self.compression}' (expected one of: {', '.join(COMPRESSORS)})")

    @property
    def suffix(self) -> str:
        """The key suffix after `.dump`/`.sql`: `.zst`, `.gz` or ``."""
        return COMPRESSORS[self.compression].suffix

    def manifest_fields(self) -> dict:
        """The manifest fields that record this chain (storage/manifest.py holds them)."""
        return {"compression": self.compression}


def chain_of_manifest(manifest) -> CodecChain:
    """Given a Manifest (or anything with its codec fields), return the chain its archive went through."""
    return CodecChain(compression=manifest.compression)


def chain_of_suffix(match: re.Match) -> CodecChain:
    """Given a match of SUFFIX_PATTERN, return the chain the suffix names."""
    by_suffix = {c.suffix: name for name, c in COMPRESSORS.items()}
    return CodecChain(compression=by_suffix[match["comp"] or ""])
