"""pg_dump's command line read as pg_dump reads it, to find the options easybackup sets itself in `extra_args`.

pg_dump parses its arguments with glibc's getopt_long, so an option has many spellings: a long name may be
abbreviated to any prefix that is unambiguous (`--fi=/tmp/x`, `--fil /tmp/x` are `--file`), short options may
be combined (`-vf/tmp/x` is `-v -f /tmp/x`), a value may be attached (`-f/tmp/x`, `-Fp`, `--file=/tmp/x`) or
be the next argument (`--file /tmp/x`, `-f /tmp/x`) — and then that argument is a value, whatever it looks like
(`-t -f` dumps a table named `-f`). Options after a non-option argument still count (glibc permutes), `--`
ends them. The table is pg_dump 15's (`pg_dump --help`, plus the undocumented `--attribute-inserts`, `--no-acl`,
`--no-reconnect`/`-R`), checked against the installed pg_dump by the tests. Later versions only add names,
which can make an abbreviation ambiguous (pg_dump then refuses it) but never make one mean `--file`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

# getopt_long's short options of pg_dump 15: a letter followed by ':' takes a value.
SHORT_OPTIONS = "abBcCd:e:E:f:F:h:j:n:N:Op:RsS:t:T:U:vwWxZ:"

# Long name -> (what it is: its short letter, or the long name it is an alias of, or itself; takes a value).
LONG_OPTIONS: dict[str, tuple[str, bool]] = {
    "data-only": ("a", False), "blobs": ("b", False), "no-blobs": ("B", False), "clean": ("c", False),
    "create": ("C", False), "dbname": ("d", True), "extension": ("e", True), "file": ("f", True),
    "format": ("F", True), "host": ("h", True), "jobs": ("j", True), "no-reconnect": ("R", False),
    "schema": ("n", True), "exclude-schema": ("N", True), "no-owner": ("O", False), "port": ("p", True),
    "schema-only": ("s", False), "superuser": ("S", True), "table": ("t", True), "exclude-table": ("T", True),
    "no-password": ("w", False), "password": ("W", False), "username": ("U", True), "verbose": ("v", False),
    "no-privileges": ("x", False), "no-acl": ("x", False), "compress": ("Z", True), "encoding": ("E", True),
    "help": ("?", False), "version": ("V", False),
    "attribute-inserts": ("column-inserts", False), "binary-upgrade": ("binary-upgrade", False),
    "column-inserts": ("column-inserts", False), "disable-dollar-quoting": ("disable-dollar-quoting", False),
    "disable-triggers": ("disable-triggers", False), "enable-row-security": ("enable-row-security", False),
    "exclude-table-data": ("exclude-table-data", True), "extra-float-digits": ("extra-float-digits", True),
    "if-exists": ("if-exists", False), "inserts": ("inserts", False),
    "lock-wait-timeout": ("lock-wait-timeout", True), "no-table-access-method": ("no-table-access-method", False),
    "no-tablespaces": ("no-tablespaces", False), "quote-all-identifiers": ("quote-all-identifiers", False),
    "load-via-partition-root": ("load-via-partition-root", False), "role": ("role", True),
    "section": ("section", True), "serializable-deferrable": ("serializable-deferrable", False),
    "snapshot": ("snapshot", True), "strict-names": ("strict-names", False),
    "use-set-session-authorization": ("use-set-session-authorization", False),
    "no-comments": ("no-comments", False), "no-publications": ("no-publications", False),
    "no-security-labels": ("no-security-labels", False), "no-subscriptions": ("no-subscriptions", False),
    "no-toast-compression": ("no-toast-compression", False),
    "no-unlogged-table-data": ("no-unlogged-table-data", False), "no-sync": ("no-sync", False),
    "on-conflict-do-nothing": ("on-conflict-do-nothing", False), "rows-per-insert": ("rows-per-insert", True),
    "include-foreign-data": ("include-foreign-data", True), "restrict-key": ("restrict-key", True),
}

# What easybackup sets itself: output (file, format, compression) and connection (database, host, port, user,
# password prompt). Passing one again would send the dump elsewhere, change its format, or connect elsewhere.
RESERVED = {"f": "--file", "F": "--format", "Z": "--compress", "d": "--dbname", "h": "--host", "p": "--port",
            "U": "--username", "w": "--no-password", "W": "--password"}


@dataclass(frozen=True)
class ReservedUse:
    """An argument of extra_args (by index) that pg_dump would read as an option easybackup sets."""

    index: int
    argument: str
    why: str


def _takes_value(letter: str) -> bool | None:
    """Given a short option letter, return whether it takes a value; None when pg_dump has no such option."""
    position = SHORT_OPTIONS.find(letter)
    if letter == ":" or position < 0:
        return None
    return SHORT_OPTIONS[position + 1:position + 2] == ":"


def _long_matches(name: str) -> list[str]:
    """Given a long option as written (without `--` and `=value`), return the option names getopt_long could
    mean: the exact one, else every one it abbreviates, one per distinct option (aliases count once)."""
    if name in LONG_OPTIONS:
        return [name]
    found: dict[str, str] = {}
    for candidate, (identity, _takes) in LONG_OPTIONS.items():
        if candidate.startswith(name):
            found.setdefault(identity, candidate)
    return list(found.values())


def _spelled(identity: str) -> str:
    return f"-{identity} ({RESERVED[identity]})" if identity in RESERVED else f"--{identity}"


def reserved_uses(args: Sequence[str]) -> list[ReservedUse]:
    """Given pg_dump.extra_args, return each argument pg_dump would read as (or possibly as, when ambiguous) an
    option easybackup sets itself, in order."""
    found: list[ReservedUse] = []
    index = 0
    while index < len(args):
        argument = args[index]
        if argument == "--":
            break
        if argument.startswith("--"):
            use, value_follows = _long_option(index, argument)
        elif argument.startswith("-") and argument != "-":
            use, value_follows = _short_options(index, argument)
        else:
            use, value_follows = None, False  # a non-option argument: the options after it still count
        if use is not None:
            found.append(use)
        index += 2 if value_follows else 1
    return found


def _long_option(index: int, argument: str) -> tuple[ReservedUse | None, bool]:
    """Return the reserved use `--name[=value]` makes (or None) and whether its value is the next argument."""
    name, equals, _value = argument[2:].partition("=")
    matches = _long_matches(name)
    if not matches:
        return None, False  # pg_dump refuses an option it does not know
    reserved = [LONG_OPTIONS[match][0] for match in matches if LONG_OPTIONS[match][0] in RESERVED]
    if len(matches) > 1:
        if not reserved:
            return None, False  # pg_dump refuses an ambiguous abbreviation
        options = ", ".join(f"--{match}" for match in matches)
        return ReservedUse(index, argument, f"is ambiguous to pg_dump ({options}) and may mean "
                                            + " or ".join(RESERVED[letter] for letter in reserved)), False
    identity, takes_value = LONG_OPTIONS[matches[0]]
    use = None
    if reserved:
        spelled = f"--{matches[0]}"
        use = ReservedUse(index, argument, f"is pg_dump's {spelled}" if name == matches[0]
                          else f"abbreviates pg_dump's {spelled}")
    return use, takes_value and not equals


def _short_options(index: int, argument: str) -> tuple[ReservedUse | None, bool]:
    """Return the reserved use a cluster of short options makes (the first; or None) and whether the last one's
    value is the next argument."""
    use = None
    for position in range(1, len(argument)):
        letter = argument[position]
        if letter in RESERVED and use is None:
            use = ReservedUse(index, argument, f"passes pg_dump's {_spelled(letter)}")
        if _takes_value(letter):
            return use, position == len(argument) - 1  # the rest of the argument, or the next one, is its value
    return use, False
