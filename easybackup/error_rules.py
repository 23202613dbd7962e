"""Reading a program's stderr for why it failed: a table of rules in priority order, and the first rule that matches
any line wins (pg_dump, the MySQL clients and ssh each keep their own table; this is the one way they are read).

Priority order matters because one failure prints several lines: a refused password is followed by "could not
connect", a changed host key by "Host key verification failed".
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class ErrorRule:
    """A failure a program reports: its line's pattern, the error kind, whether retrying may help, the hint (and
    for tables that word the failure themselves, the message), both formatted by their owner with its fields."""

    pattern: re.Pattern
    kind: str
    transient: bool
    hint: str
    message: str = ""


def rule(pattern: str, kind: str, transient: bool, hint: str, message: str = "") -> ErrorRule:
    """Given a case-insensitive pattern and the rest of a rule, return the rule."""
    return ErrorRule(re.compile(pattern, re.I), kind, transient, hint, message)


def first_match(rules: Sequence[ErrorRule], lines: Iterable[str]) -> tuple[ErrorRule, str] | None:
    """Given rules in priority order and a program's lines, return the first rule that matches any line, with that
    line; None when no rule does."""
    lines = list(lines)
    for candidate in rules:
        for line in lines:
            if candidate.pattern.search(line):
                return candidate, line
    return None
