"""mysqldump's and mariadb-dump's command line read as they read it, to find the options easybackup sets itself in
`mysqldump.extra_args`.

Both parse with my_getopt: a long name may be abbreviated to an unambiguous prefix (`--res=x` is `--result-file`),
may carry `--loose-` in front, and a boolean may be switched off with `--skip-`/`--disable-` (`--skip-comments`
drops the `-- Dump completed` line the completeness check needs). Short options cluster (`-vrx` is `-v -r x`),
a value attached or next. The check is conservative: a prefix of a reserved name is refused even where the program
would find it ambiguous, and no value is skipped, so a value spelled like a reserved option is refused too.

easybackup puts `-- <database>` last. A word that is no option's value would be read as the database (or a table
of it), and a `--` would end the options early, so both are refused: a long option's value is written with `=`
(`--where=id>5`), a short one's attached or next (`-wid>5`, `-w id>5`).
"""

from __future__ import annotations

from collections.abc import Sequence

from easybackup.config.pg_dump_args import ReservedUse

# Long name -> why it is easybackup's: connection and password (from the URL), output (stdout, SQL, comments).
RESERVED_LONG = {
    "host": "connection", "port": "connection", "user": "connection", "password": "password", "socket": "connection",
    "protocol": "connection", "defaults-file": "password", "defaults-extra-file": "password",
    "no-defaults": "password", "defaults-group-suffix": "password", "login-path": "password",
    "print-defaults": "output", "result-file": "output", "tab": "output", "xml": "output", "databases": "output",
    "all-databases": "output", "compact": "output", "comments": "output", "system": "output",
    "set-gtid-purged": "output", "help": "output", "version": "output",
}
SWITCHES_OFF = ("skip-", "disable-")
# Short letters easybackup reserves, and the letters whose value is the rest of the cluster or the next argument.
RESERVED_SHORT = {"h": "host", "P": "port", "u": "user", "p": "password", "S": "socket", "r": "result-file",
                  "T": "tab", "X": "xml", "B": "databases", "A": "all-databases", "?": "help", "V": "version"}
VALUE_SHORT = "hPupSrTw#"


def reserved_uses(args: Sequence[str]) -> list[ReservedUse]:
    """Given mysqldump.extra_args, return each argument the dump program would (or might) read as an option
    easybackup sets itself, in order."""
    found = []
    for index, argument in enumerate(args):
        if argument == "--" or not argument.startswith("-") or argument == "-":
            if not _value_of_previous(args, index):
                found.append(ReservedUse(index, argument, "is no option: the dump program would read it as the "
                                         "database or a table (the database comes from the URL; write a long "
                                         "option's value with =)"))
            continue
        if argument.startswith("--"):
            why = _long_option(argument[2:])
        else:
            why = _short_options(argument[1:])
        if why is not None:
            found.append(ReservedUse(index, argument, why))
    return found


def _value_of_previous(args: Sequence[str], index: int) -> bool:
    """Return whether args[index] is the value of a short option that ends the argument before it (`-w`, `-vw`)."""
    previous = args[index - 1] if index else ""
    return previous.startswith("-") and not previous.startswith("--") and len(previous) > 1 and \
        previous[-1] in VALUE_SHORT and not any(letter in VALUE_SHORT for letter in previous[1:-1])


def _long_option(written: str) -> str | None:
    name, _equals, value = written.partition("=")
    while name.startswith("loose-"):
        name = name[len("loose-"):]
    switched_off = name.startswith(SWITCHES_OFF)
    base = name.partition("-")[2] if switched_off else name
    if not base:
        return None
    exact = base in RESERVED_LONG
    matches = [base] if exact else [option for option in RESERVED_LONG if option.startswith(base)]
    if not matches:
        return None
    if matches == ["comments"] and not switched_off and value.lower() not in ("0", "off", "false"):
        return None  # comments on is what easybackup needs anyway
    spelled = " or ".join(f"--{match}" for match in matches)
    return f"is the dump program's {spelled}" if exact else f"may abbreviate the dump program's {spelled}"


def _short_options(cluster: str) -> str | None:
    for position, letter in enumerate(cluster):
        if letter in RESERVED_SHORT:
            return f"passes the dump program's -{letter} (--{RESERVED_SHORT[letter]})"
        if letter in VALUE_SHORT and position + 1 < len(cluster):
            return None  # the rest of the cluster is this option's value
    return None
