"""A MySQL or MariaDB server's users and grants (`include_globals`), stored under `_globals/` as plain SQL.

Which way depends on the server, asked once per dump (`@@version`, `@@version_comment`), never on a program's name:

- a MariaDB server: `mariadb-dump --system=users --insert-ignore` (MysqlSource with globals_only), which also
  dumps MariaDB's roles;
- a MySQL server: the accounts listed from mysql.user, then one client run of `SHOW CREATE USER` for each
  (the roles first: a CREATE USER's DEFAULT ROLE names a role that must exist) and `SHOW GRANTS FOR` each, every
  result row one statement. MySQL's reserved accounts (mysql.sys, mysql.session, mysql.infoschema) are left out;
  root is kept, as --system=users keeps it. With `print_identified_with_as_hex` (MySQL 8.0.17+) the password
  hashes come out as hex, so a caching_sha2_password hash survives as text.

The SHOW way's script: a `-- MySQL dump of users and grants` header, `CREATE USER IF NOT EXISTS ...;` for every
account, then their `GRANT ...;`, and `-- Dump completed on ...` last — written by the client only after every
SHOW before it succeeded (a client in batch mode stops at the first error). IF NOT EXISTS, as --insert-ignore
writes it for MariaDB: the replay into a server that has some of the accounts (its root) adds the missing ones
and leaves the existing ones' passwords alone, instead of stopping at the first (the restore client stops at an
error, so tolerating error 1396 afterwards would come too late).

A SHOW GRANTS answers with several rows, and a SELECT cannot follow each row with a `;`: a small Python filter
(stdlib only, `python -I -c`, no module of ours) runs the client on the script (SHOW statements only, no secret:
a 0600 file in the private directory, as long as a command line could be) and appends the `;` to each row, so the
hashes stream from the client to the pipeline and touch neither disk nor a log. The client runs in batch mode with
its escaping (`\\n`, `\\t`, `\\\\`, `\\0`), which the filter undoes: one output line is one row, whatever a
name holds.
"""

from __future__ import annotations

import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from easybackup.engines.mysql_client import (
    CLIENT_PROGRAMS,
    CONNECT_TIMEOUT_S,
    ClientConnection,
    classify_dump_failure,
    find_program,
    invalid_dump_error,
    quote_identifier,
)
from easybackup.engines.mysql_dump import MysqlSource, dump_problem
from easybackup.errors import EasybackupError
from easybackup.pipeline.stages import StageFailed, StageSpec
from easybackup.secrets import mask
from easybackup.urls import masked_url

# MySQL 8's reserved accounts (and MariaDB's mariadb.sys, for the SHOW way run against MariaDB): the server makes
# them itself, and a replay must not change them.
SYSTEM_ACCOUNTS = frozenset({("mysql.sys", "localhost"), ("mysql.session", "localhost"),
                             ("mysql.infoschema", "localhost"), ("mariadb.sys", "localhost")})
BANNER = "-- MySQL dump of users and grants (SHOW CREATE USER, SHOW GRANTS; easybackup)"
SCRIPT_PREFIX = "mysql-accounts-"
FLAVOURS = ("mysql", "mariadb")

# The filter between the client and the pipeline: argv[1] the SQL script (fed to the client's stdin), argv[2:]
# the client's argv. Each row the client prints becomes a statement: its batch escapes undone, CREATE USER made
# IF NOT EXISTS, a `;` appended; comment rows (`-- ...`) pass as they are. Exits with the client's code.
ROWS_TO_STATEMENTS = r"""
import signal, subprocess, sys
ESCAPES = {b"n": b"\n", b"t": b"\t", b"0": b"\0", b"\\": b"\\"}
def unescape(row):
    out, i = bytearray(), 0
    while i < len(row):
        if row[i:i + 1] == b"\\" and row[i + 1:i + 2] in ESCAPES:
            out += ESCAPES[row[i + 1:i + 2]]
            i += 2
        else:
            out += row[i:i + 1]
            i += 1
    return bytes(out)
with open(sys.argv[1], "rb") as script:
    child = subprocess.Popen(sys.argv[2:], stdin=script, stdout=subprocess.PIPE)
signal.signal(signal.SIGTERM, lambda *_: (child.terminate(), sys.exit(143)))
out = sys.stdout.buffer
for line in child.stdout:
    row = unescape(line.rstrip(b"\n"))
    if row.startswith(b"CREATE USER ") and not row.startswith(b"CREATE USER IF NOT EXISTS "):
        row = b"CREATE USER IF NOT EXISTS " + row[len(b"CREATE USER "):]
    out.write(row + (b"\n" if row.startswith(b"--") else b";\n"))
out.flush()
code = child.wait()
sys.exit(code if code >= 0 else 128 - code)
"""


# -- pure parts ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ServerFacts:
    """What the dump asks the server first: its flavour and version, and which of its tables and variables exist."""

    flavour: str  # "mariadb" or "mysql"
    version: str
    has_role_edges: bool  # MySQL 8's mysql.role_edges (and mysql.default_roles): roles to create first
    has_is_role: bool  # MariaDB's mysql.user.is_role: its roles are no accounts for SHOW CREATE USER
    hex_hashes: bool  # print_identified_with_as_hex exists (MySQL 8.0.17+)


def server_flavour(version: str, version_comment: str) -> str:
    """Given @@version and @@version_comment, return "mariadb" or "mysql" (what is not MariaDB speaks MySQL's)."""
    return "mariadb" if "mariadb" in f"{version} {version_comment}".lower() else "mysql"


def account_name(user: str, host: str) -> str:
    # Backtick identifiers, not strings: neither NO_BACKSLASH_ESCAPES nor ANSI_QUOTES changes what they mean.
    return f"{quote_identifier(user)}@{quote_identifier(host)}"


def unescape_field(text: str) -> str:
    """Given a field as the client prints it in batch mode, return its value (`\\n`, `\\t`, `\\0`, `\\\\` undone)."""
    out, i = [], 0
    while i < len(text):
        pair = text[i:i + 2]
        if pair in _FIELD_ESCAPES:
            out.append(_FIELD_ESCAPES[pair])
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


_FIELD_ESCAPES = {"\\n": "\n", "\\t": "\t", "\\0": "\0", "\\\\": "\\"}


def accounts_to_dump(rows: list[tuple[str, str, bool]]) -> list[tuple[str, str]]:
    """Given (user, host, is a role) of every account, return those to dump: the system accounts left out, the
    roles first (a CREATE USER ... DEFAULT ROLE needs them), each group sorted."""
    kept = [(user, host, role) for user, host, role in rows if (user, host) not in SYSTEM_ACCOUNTS]
    return [(user, host) for user, host, _role in sorted(kept, key=lambda row: (not row[2], row[0], row[1]))]


def accounts_script(accounts: list[tuple[str, str]], hex_hashes: bool) -> str:
    """Given the accounts in order, return the SQL the client runs: the header, every SHOW CREATE USER (one row
    each), then every SHOW GRANTS, then the completion line (reached only when nothing before it failed)."""
    lines = ["SET print_identified_with_as_hex = ON;"] if hex_hashes else []
    lines += [f"SELECT '{BANNER}';", "SELECT CONCAT('-- Server version', CHAR(9), @@version);",
              f"SELECT '-- {len(accounts)} accounts (the reserved mysql.sys, mysql.session and "
              "mysql.infoschema left out)';"]
    lines += [f"SHOW CREATE USER {account_name(user, host)};" for user, host in accounts]
    lines += [f"SHOW GRANTS FOR {account_name(user, host)};" for user, host in accounts]
    lines.append("SELECT CONCAT('-- Dump completed on ', DATE_FORMAT(UTC_TIMESTAMP(), '%Y-%m-%d %H:%i:%s'));")
    return "\n".join(lines) + "\n"


def accounts_query(facts: ServerFacts) -> str:
    """Return the SELECT of (user, host, is a role) for every account the server has, as far as it can tell."""
    if facts.has_role_edges:
        role = ("EXISTS (SELECT 1 FROM mysql.role_edges e WHERE e.from_user = u.user AND e.from_host = u.host) "
                "OR EXISTS (SELECT 1 FROM mysql.default_roles d WHERE d.default_role_user = u.user AND "
                "d.default_role_host = u.host)")
    else:
        role = "0"
    where = " WHERE u.is_role <> 'Y'" if facts.has_is_role else ""
    return f"SELECT u.user, u.host, {role} FROM mysql.user u{where}"


FACTS_QUERY = ("SELECT @@version, @@version_comment, "
               "(SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = 'mysql' "
               "AND table_name = 'role_edges'), "
               "(SELECT COUNT(*) FROM information_schema.columns WHERE table_schema = 'mysql' "
               "AND table_name = 'user' AND column_name = 'is_role')")
HEX_QUERY = "SHOW VARIABLES LIKE 'print_identified_with_as_hex'"


def ask_server(connection: ClientConnection) -> ServerFacts:
    """Ask the server its flavour, version and features (two short client runs); raise the classified error."""
    version, comment, role_edges, is_role = connection.query(FACTS_QUERY)[0]
    hex_hashes = bool(connection.query(HEX_QUERY))
    return ServerFacts(server_flavour(version, comment), version, role_edges != "0", is_role != "0", hex_hashes)


# -- the source ------------------------------------------------------------------------------------------------

class MysqlGlobalsSource:
    """The DumpSource of a server's users and grants. `flavour` None asks the server which way to take; "mysql"
    takes the SHOW way whatever the server is (how the tests run it against MariaDB). Use as a context manager so
    the option file and the script are removed."""

    name = "mysql"
    needs_tail = True  # check_dump reads the completion line

    def __init__(self, target_name: str, url: str, private_dir: Path, connect_timeout: float = CONNECT_TIMEOUT_S,
                 flavour: str | None = None):
        if flavour is not None and flavour not in FLAVOURS:
            raise ValueError(f"flavour must be one of {FLAVOURS}, not {flavour!r}")
        self.target_name = target_name
        self.url_text = url
        self.private_dir = Path(private_dir)
        self.connect_timeout = connect_timeout
        self.connection = ClientConnection(url, private_dir, connect_timeout)
        self.url = self.connection.url
        self.flavour = flavour
        self.client = find_program(CLIENT_PROGRAMS)
        self.stage_name = self.client.name
        self.facts: ServerFacts | None = None
        self.dump: MysqlSource | None = None  # the mariadb-dump way, once chosen
        self.script: Path | None = None

    def __enter__(self) -> MysqlGlobalsSource:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.cleanup()

    def cleanup(self) -> None:
        self.connection.cleanup()
        if self.dump is not None:
            self.dump.cleanup()
        if self.script is not None:
            self.script.unlink(missing_ok=True)
            self.script = None

    def describe(self) -> str:
        """Return "users and grants at <masked url>"."""
        url = f"mysql://{self.url.user or ''}@{self.url.host}:{self.url.port}/"
        return f"users and grants at {mask(masked_url(url))}"

    def dumped(self) -> str:
        if self.dump is not None:
            return self.dump.dumped()
        return f"{self.client.name} SHOW CREATE USER and SHOW GRANTS of users and grants"

    def dump_stage(self) -> StageSpec:
        """Ask the server what it is, then return the stage of the way it takes (see the module docstring)."""
        self.facts = ask_server(self.connection)
        if (self.flavour or self.facts.flavour) == "mariadb":
            self.dump = MysqlSource(self.target_name, self.url_text, self.private_dir, globals_only=True,
                                    connect_timeout=self.connect_timeout)
            self.stage_name = self.dump.stage_name
            return self.dump.dump_stage()
        rows = self.connection.query(accounts_query(self.facts))
        accounts = accounts_to_dump([(unescape_field(row[0]), unescape_field(row[1]), row[2] not in ("0", ""))
                                     for row in rows])
        self.script = self._write_script(accounts_script(accounts, self.facts.hex_hashes))
        argv = [sys.executable, "-I", "-c", ROWS_TO_STATEMENTS, str(self.script),
                *self.connection.batch_argv(self.client)]
        return StageSpec(self.stage_name, argv, env=self.connection.child_env(), failure_kind="dump_failed")

    def _write_script(self, text: str) -> Path:
        fd, path = tempfile.mkstemp(prefix=SCRIPT_PREFIX, suffix=".sql", dir=self.private_dir)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        return Path(path)

    def classify_failure(self, stage_failed: StageFailed) -> EasybackupError:
        if self.dump is not None:
            return self.dump.classify_failure(stage_failed)
        if stage_failed.stage != self.stage_name:
            return stage_failed
        return classify_dump_failure(stage_failed, self.url, self.dumped())

    def check_dump(self, head: bytes, tail: bytes, size: int | None, last_lines: list[str]) -> None:
        if self.dump is not None:
            return self.dump.check_dump(head, tail, size, last_lines)
        problem = dump_problem(head, tail)
        if problem is None:
            return None
        raise invalid_dump_error(self.dumped(), self.stage_name, problem, size if size is not None else len(head),
                                 last_lines, hint=f"nothing was stored; check what wraps {self.stage_name} on the PATH")

    def versions_after_dump(self, head: bytes) -> dict[str, str | None]:
        """Return the manifest's versions: the mariadb-dump way's from its header; the SHOW way's name the client
        and the server's version as asked ("MySQL 8.0.36"; MariaDB's names itself)."""
        if self.dump is not None:
            return self.dump.versions_after_dump(head)
        version = self.facts.version if self.facts else None
        flavour = self.facts.flavour if self.facts else None
        if version and flavour == "mysql":
            version = f"MySQL {version}"
        client = f"{self.client.name} {self.client.version}" if self.client.version else self.client.name
        return {"dump_version": f"{client} (SHOW CREATE USER, SHOW GRANTS)", "server_version": version,
                "dump_flavour": self.client.flavour, "server_flavour": flavour}
