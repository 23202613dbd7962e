"""Every codec easybackup knows, as data: names, levels, object-key suffixes and manifest fields. Pure, no I/O.

A base module, not part of pipeline/codecs.py, because config/ (level and recipient checks) and storage/ (keys)
sit below pipeline/ in the layers and need this table too; pipeline/codecs.py builds the stages that run these
codecs. Adding a codec: docs/architecture.md, "Add a codec stage".

An archive's codecs in the order the backup applies them (restore and verify undo them in reverse), which is also
the order of their suffixes in the key (`….dump.zst.age`):

    dump → compression (gzip | zstd | none) → encryption (age | none) → stored object
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Compressor:
    """One compression codec: the key suffix it adds and its levels (lowest, highest, default); none: no levels."""

    suffix: str
    levels: tuple[int, int, int] | None


COMPRESSORS = {"gzip": Compressor(".gz", (1, 9, 6)), "zstd": Compressor(".zst", (1, 19, 3)),
               "none": Compressor("", None)}
ENCRYPTIONS = {"age": ".age", "none": ""}  # encryption -> key suffix


def _group(name: str, suffixes) -> str:
    return f"(?P<{name}>" + "|".join(re.escape(suffix) for suffix in suffixes if suffix) + ")?"


# The part of an archive key's name after `.dump`/`.sql`; named groups `comp` and `enc` (None for none).
SUFFIX_PATTERN = _group("comp", (c.suffix for c in COMPRESSORS.values())) + _group("enc", ENCRYPTIONS.values())

# age recipients (public keys, not secret): native X25519 (bech32 `age1…`) and SSH keys (age -r accepts both).
_AGE_RECIPIENT = re.compile(r"^age1[02-9ac-hj-np-z]{58}$")
_SSH_RECIPIENT = re.compile(r"^(ssh-ed25519|ssh-rsa) AAAA[0-9A-Za-z+/]+={0,2}( \S.*)?$")


@dataclass(frozen=True)
class CodecChain:
    """What one archive went through after the dump: its compression (and level, for the backup), then its
    encryption and the recipients it was encrypted to."""

    compression: str = "gzip"
    level: int | None = None  # None: the codec's default; not recorded in the manifest
    encryption: str = "none"
    recipients: tuple[str, ...] = field(default=())

    def __post_init__(self):
        if self.compression not in COMPRESSORS:
            raise ValueError(f"unknown compression '{self.compression}' (expected one of: {', '.join(COMPRESSORS)})")
        if self.encryption not in ENCRYPTIONS:
            raise ValueError(f"unknown encryption '{self.encryption}' (expected one of: {', '.join(ENCRYPTIONS)})")

    @property
    def encrypted(self) -> bool:
        return self.encryption != "none"

    @property
    def suffix(self) -> str:
        """The key suffix after `.dump`/`.sql`: `.zst`, `.gz.age`, ``…"""
        return COMPRESSORS[self.compression].suffix + ENCRYPTIONS[self.encryption]

    def manifest_fields(self) -> dict:
        """The manifest fields that record this chain (storage/manifest.py holds them)."""
        return {"compression": self.compression, "encryption": self.encryption,
                "recipients": list(self.recipients) if self.encrypted else None}


def chain_of_manifest(manifest) -> CodecChain:
    """Given a Manifest (or anything with its codec fields), return the chain its archive went through."""
    return CodecChain(compression=manifest.compression, encryption=manifest.encryption,
                      recipients=tuple(manifest.recipients or ()))


def chain_of_suffix(match: re.Match) -> CodecChain:
    """Given a match of SUFFIX_PATTERN, return the chain the suffix names (no recipients: keys do not hold them)."""
    compression = {c.suffix: name for name, c in COMPRESSORS.items()}[match["comp"] or ""]
    encryption = {suffix: name for name, suffix in ENCRYPTIONS.items()}[match["enc"] or ""]
    return CodecChain(compression=compression, encryption=encryption)


def recipient_problem(text) -> str | None:
    """Given a configured age recipient, return why it is not one, or None if it looks like a public key."""
    if not isinstance(text, str):
        return "a recipient is a string"
    if text.startswith("AGE-SECRET-KEY-"):
        return "this is an identity (a private key), not a recipient: give its public key (age-keygen -y FILE)"
    if _AGE_RECIPIENT.match(text) or _SSH_RECIPIENT.match(text):
        return None
    shown = text if len(text) <= 24 else text[:20] + "…"
    return f"'{shown}' is not an age recipient (age1… from age-keygen, or an ssh-ed25519/ssh-rsa public key)"
