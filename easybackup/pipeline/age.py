"""The age encryption codec (https://age-encryption.org/v1): its stages, the identity file, and what can be checked
of a ciphertext without the key.

The backup host holds only recipients (public keys); restore and a full verify need an identity file, given by
path (`--identity FILE` or $EASYBACKUP_AGE_IDENTITY_FILE). Its contents never reach argv, logs or errors: age gets
the path (`-i FILE`), and the lines we read to refuse a wrong file are registered as secrets so a message that
echoed them would be masked.

An age file starts with a text header: `age-encryption.org/v1`, one stanza per recipient (`-> X25519 …` or
`-> ssh-ed25519 …`, then base64 body lines, the last shorter than 64 columns), and `--- <MAC>`. The payload after
it is authenticated chunk by chunk, the last chunk marked, so a cut or altered object fails to decrypt.
"""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

from easybackup.errors import EasybackupError, UsageError
from easybackup.pipeline.stages import StageSpec, base_env
from easybackup.secrets import register_secret

PROGRAM = "age"
PACKAGE = "age"  # Debian and Alpine both
IDENTITY_ENV = "EASYBACKUP_AGE_IDENTITY_FILE"
VERSION_LINE = b"age-encryption.org/v1"
RECIPIENT_STANZAS = (b"X25519", b"ssh-ed25519", b"ssh-rsa")
HEADER_LIMIT = 64 * 1024  # far more than the header of any sane number of recipients


def encrypt_stage(recipients: tuple[str, ...]) -> StageSpec:
    """Given the recipients (public keys: fine in argv), return the stage that encrypts stdin to stdout."""
    if not recipients:
        raise ValueError("age encryption needs at least one recipient")
    argv = [PROGRAM, "--encrypt"]
    for recipient in recipients:
        argv += ["-r", recipient]
    return StageSpec(PROGRAM, argv, env=base_env(), failure_kind="compressor_failed")


def decrypt_stage(identity: Path) -> StageSpec:
    """Given a checked identity file, return the stage that decrypts stdin to stdout (the path only in argv)."""
    return StageSpec(PROGRAM, [PROGRAM, "--decrypt", "-i", str(identity)], env=base_env(),
                     failure_kind="verification")


def missing_program() -> str | None:
    """Return why encryption cannot run on this host (age not installed), or None."""
    if shutil.which(PROGRAM):
        return None
    return (f"the `{PROGRAM}` program is not installed (install the `{PACKAGE}` package: apt-get install {PACKAGE}, "
            f"apk add {PACKAGE})")


def identity_path(given: str | None, environ=None) -> Path | None:
    """Given --identity (or None), return the identity file to use ($EASYBACKUP_AGE_IDENTITY_FILE otherwise), or
    None when there is none; raise UsageError if it is missing, not a file, readable by others or no identity."""
    environ = os.environ if environ is None else environ
    text = given or environ.get(IDENTITY_ENV) or None
    if text is None:
        return None
    path = Path(text)
    try:
        info = path.stat()
    except OSError as exc:
        raise UsageError(f"cannot read the age identity file {path}: {exc.strerror}",
                         hint="give the file age-keygen wrote (or an SSH private key) with --identity") from None
    if not stat.S_ISREG(info.st_mode):
        raise UsageError(f"the age identity {path} is not a file")
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o077:
        raise UsageError(f"the age identity file {path} is readable by other users (mode {mode:04o}); refused",
                         hint=f"chmod 600 {path}")
    _register_lines(path)
    return path


def _register_lines(path: Path) -> None:
    """Register every line of the identity file as a secret: should a program ever echo one, it is masked."""
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as exc:
        raise UsageError(f"cannot read the age identity file {path}: {exc.strerror}") from None
    for line in lines:
        if line.strip() and not line.startswith("#"):
            register_secret(line.strip())


def need_identity(key: str) -> EasybackupError:
    """Given an encrypted archive's key, return the error for a restore (or full check) without an identity."""
    return UsageError(f"{key} is encrypted with age: restoring it needs the identity (private key)",
                      hint=f"give --identity FILE or ${IDENTITY_ENV} (the file age-keygen wrote, kept offline)")


def header_problem(head: bytes, recipients: int) -> str | None:
    """Given the first bytes of an object and how many recipients it was encrypted to, return why it is not an age
    file with that many recipient stanzas and a MAC line, or None when the header is whole and says so."""
    lines = head[:HEADER_LIMIT].split(b"\n")
    if lines[0] != VERSION_LINE:
        return "it does not start with the age header line 'age-encryption.org/v1'"
    stanzas = 0
    for line in lines[1:-1]:  # the last piece may be payload or cut short
        if line.startswith(b"--- ") and len(line) > 4:
            if stanzas != recipients:
                return f"its age header names {stanzas} recipient(s), the manifest {recipients}"
            return None
        if line.startswith(b"-> "):
            parts = line.split(b" ")
            stanzas += len(parts) > 1 and parts[1] in RECIPIENT_STANZAS
    return "its age header does not end (no '---' MAC line)"


def explain(failure, key: str, identity: Path | None) -> EasybackupError:
    """Given the age stage's StageFailed while decrypting `key` with `identity`, return the one-line error and hint
    (age's own `age: error:` line is the detail; its last line is only a link)."""
    said = next((line for line in reversed(failure.last_lines) if "error:" in line), failure.detail or "")
    if "no identity matched" in said:
        message = f"cannot decrypt {key}: the identity {identity} is not one of its recipients"
        hint = "give the identity of a recipient the manifest lists (`easybackup list` shows them)"
    elif "identity" in said or "reading" in said:
        message = f"cannot decrypt {key}: {identity} is not an age identity age can read"
        hint = "give the file age-keygen wrote, or an unencrypted SSH private key"
        said = said.split(": error at line", 1)[0]  # never a line of the file itself
    else:
        message = f"the encrypted archive {key} is damaged (truncated or altered): age cannot authenticate it"
        hint = "nothing was restored from it; restore an older backup"
    return EasybackupError(message, said.strip() or None, hint, kind="verification", transient=False,
                           last_lines=list(failure.last_lines))
