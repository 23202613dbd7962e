"""The `encryption` key: which recipients a strategy's archives are encrypted to, and what is wrong with them.

`encryption: {age: {recipients: [...]}}` or `{age: {recipients_file: PATH}}` (both may be given: the lists join);
`null` or `none` means no encryption. The file is read when the config is loaded, so a worker gets the keys in its
job, never the path. Recipients are public keys: not secret, fine in argv and manifests.
"""

from __future__ import annotations

from pathlib import Path

from easybackup.codec_table import recipient_problem
from easybackup.config.schema import format_path


def age_section(value) -> dict | None:
    """Given the merged `encryption` value, return its `age` mapping, or None when encryption is off."""
    if isinstance(value, dict) and isinstance(value.get("age"), dict):
        return value["age"]
    return None


def read_recipients_file(path: str) -> list[str]:
    """Given a recipients file, return its recipients (one a line; blank lines and `#` comments skipped); raise
    OSError if it cannot be read."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def recipients(age: dict) -> list[str]:
    """Given a checked `age` mapping, return every recipient it names, the inline ones first."""
    found = list(age.get("recipients") or [])
    if age.get("recipients_file"):
        found += read_recipients_file(age["recipients_file"])
    return found


def problems(section: dict, path: tuple) -> list[str]:
    """Given a section (global or a strategy) and its path, return what is wrong with the `encryption` it writes."""
    age = age_section(section.get("encryption"))
    if age is None:
        return []
    where = (*path, "encryption", "age")
    found = []
    inline = age.get("recipients")
    for index, recipient in enumerate(inline if isinstance(inline, list) else []):
        problem = recipient_problem(recipient)
        if problem:
            found.append(f"{format_path((*where, 'recipients', index))}: {problem}")
    file = age.get("recipients_file")
    from_file: list[str] = []
    if isinstance(file, str):
        try:
            from_file = read_recipients_file(file)
        except (OSError, UnicodeDecodeError) as exc:
            found.append(f"{format_path((*where, 'recipients_file'))}: cannot read {file}: "
                         f"{getattr(exc, 'strerror', None) or exc}")
        for number, recipient in enumerate(from_file, start=1):
            problem = recipient_problem(recipient)
            if problem:
                found.append(f"{format_path((*where, 'recipients_file'))}: {file} line {number}: {problem}")
    if not found and not (inline or from_file):
        found.append(f"{format_path(where)}: no recipients (set recipients or recipients_file)")
    return found
