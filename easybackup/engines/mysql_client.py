"""MySQL's and MariaDB's client side, shared by the dump and the restore: URLs, which client program is installed
and its flavour, the private option file for the password, one-shot queries, and the classification of a client's
error lines.

The password never reaches argv or a child's environment (no MYSQL_PWD): it goes into a 0600 option file in the
worker's private directory, named by `--defaults-extra-file=` — the client programs read that option only as
their first argument. `cleanup()` (or leaving the `with` block) removes it.

MariaDB's and MySQL's client programs share most options but not all: `--set-gtid-purged` is MySQL's, and
`--ssl-mode` is MySQL's where MariaDB has `--ssl`/`--ssl-verify-server-cert`. Which flavour a program is comes
from its `--version` output (Debian installs MariaDB's client as `mysqldump` too), asked once per process.
"""

from __future__ import annotations

import functools
import math
import os
import re
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

from easybackup.error_rules import first_match, rule
from easybackup.errors import EasybackupError
from easybackup.pipeline.queries import communicate
from easybackup.pipeline.stages import StageFailed, base_env, describe_returncode
from easybackup.secrets import mask, register_secret
from easybackup.urls import masked_url, url_problem

SCHEMES = ("mysql", "mariadb")
DEFAULT_HOST = "localhost"  # the clients read localhost as "the Unix socket"
DEFAULT_PORT = 3306
OPTION_FILE_PREFIX = "mysql-client-"
CONNECT_TIMEOUT_S = 30.0  # timeout.connect's default; the mariadb client takes whole seconds
SYSTEM_DATABASES = ("information_schema", "performance_schema", "sys", "mysql")
SSL_MODES = ("DISABLED", "PREFERRED", "REQUIRED", "VERIFY_CA", "VERIFY_IDENTITY")
QUERY_KEYS = ("ssl-mode", "ssl-ca", "socket")
CLIENT_PROGRAMS = ("mariadb", "mysql")
PACKAGES_HINT = ("install the MariaDB client (it talks to MySQL too): apt-get install mariadb-client on Debian and "
                 "Ubuntu, apk add mariadb-client on Alpine")
QUERY_TIMEOUT_S = 60
VERSION_TIMEOUT_S = 10

# -- URLs ------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class MysqlUrl:
    """A parsed mysql:// or mariadb:// URL, percent-decoded; `ssl_mode` upper-case or None."""

    host: str
    port: int
    user: str | None
    password: str | None
    dbname: str | None
    ssl_mode: str | None = None
    ssl_ca: str | None = None
    socket: str | None = None

    @property
    def where(self) -> str:
        """Return where the server listens, for messages."""
        return f"socket {self.socket}" if self.socket else f"{self.host}:{self.port}"


def is_mysql_url(url: str) -> bool:
    """Return whether `url` names a MySQL or MariaDB database (mysql:// or mariadb://)."""
    return url.partition("://")[0].lower() in SCHEMES and "://" in url


def parse_mysql_url(url: str) -> MysqlUrl:
    """Given a mysql:// or mariadb:// URL, return its parts; raise ValueError (the URL masked) if it is not one
    or names a query option this engine does not know."""
    if not is_mysql_url(url):
        raise ValueError(f"not a mysql:// or mariadb:// URL: {masked_url(url)}")
    problem = url_problem(url)  # never urlsplit's own message: it can quote a piece of the password
    if problem is not None:
        raise ValueError(problem)
    parts = urlsplit(url)
    options = _query_options(parts.query, url)
    dbname = unquote(parts.path.lstrip("/")) or None
    if dbname and "/" in dbname:
        raise ValueError(f"a database name cannot hold '/': {masked_url(url)}")
    ssl_mode = options.get("ssl-mode")
    if ssl_mode is not None and ssl_mode.upper() not in SSL_MODES:
        raise ValueError(f"ssl-mode must be one of {', '.join(SSL_MODES)}, not {ssl_mode!r} ({masked_url(url)})")
    return MysqlUrl(
        host=unquote(parts.hostname or "") or DEFAULT_HOST,
        port=parts.port or DEFAULT_PORT,
        user=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
        dbname=dbname,
        ssl_mode=ssl_mode.upper() if ssl_mode else None,
        ssl_ca=options.get("ssl-ca"),
        socket=options.get("socket"),
    )


def _query_options(query: str, url: str) -> dict[str, str]:
    """Given a URL's raw query, return {key: value} with `_` read as `-`; raise ValueError for an unknown key."""
    options = {}
    for item in filter(None, query.split("&")):
        key, _equals, value = item.partition("=")
        key = unquote(key).lower().replace("_", "-")
        if key not in QUERY_KEYS:
            raise ValueError(f"unknown option {key!r} in a MySQL URL ({masked_url(url)}); "
                             f"known: {', '.join(QUERY_KEYS)}")
        options[key] = unquote(value)
    return options


def with_database(url: str, dbname: str) -> str:
    """Given a MySQL URL and a database name ("" for none), return the URL naming that database instead."""
    parts = urlsplit(url)
    return parts._replace(path="/" + quote(dbname, safe="")).geturl()


def with_password(url: str, password: str) -> str:
    """Given a MySQL URL without a password, return it with `password` (it reaches only the option file)."""
    parts = urlsplit(url)
    user, _at, hostport = parts.netloc.rpartition("@")
    return parts._replace(netloc=f"{user}:{quote(password, safe='')}@{hostport}").geturl()


def routed_url(url: str, address: str, port: int) -> str:
    """Given a MySQL URL and the local end of a route (SSH tunnel, proxy forwarder), return the URL that reaches
    the same server through it: the host and port replaced, a `socket=` dropped (the route is TCP)."""
    parts = urlsplit(url)
    userinfo, at, _hostport = parts.netloc.rpartition("@")
    host = f"[{address}]" if ":" in address else address
    query = "&".join(item for item in parts.query.split("&")
                     if item and unquote(item.partition("=")[0]).lower() != "socket")
    return parts._replace(netloc=f"{userinfo}{at}{host}:{port}", query=query).geturl()


def quote_identifier(name: str) -> str:
    """Return `name` as a MySQL identifier: in backticks, a backtick doubled."""
    return "`" + name.replace("`", "``") + "`"


def quote_string(text: str) -> str:
    """Return `text` as a MySQL string literal that every sql_mode reads alike: hex, as utf8mb4 (in a quoted
    literal a backslash escapes unless the server runs NO_BACKSLASH_ESCAPES, so `a\\b` would name another database
    there)."""
    return f"CONVERT(X'{text.encode('utf-8').hex()}' USING utf8mb4)"


# -- client programs -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ClientProgram:
    """An installed client program: its name as run, its flavour ("mariadb" or "mysql"), its version text."""

    name: str
    flavour: str
    version: str | None


def find_program(candidates: tuple[str, ...]) -> ClientProgram:
    """Given programs in order of preference, return the first installed one with its flavour; raise
    EasybackupError naming the packages when none is."""
    for name in candidates:
        if shutil.which(name):
            return probe(name)
    raise EasybackupError(
        f"no MySQL/MariaDB client program: none of {', '.join(candidates)} is on the PATH",
        hint=PACKAGES_HINT, kind="dump_failed", transient=False)


@functools.lru_cache(maxsize=8)
def probe(name: str) -> ClientProgram:
    """Given an installed program's name, return it with the flavour and version its `--version` states."""
    try:
        done = subprocess.run([name, "--version"], capture_output=True, text=True, timeout=VERSION_TIMEOUT_S,
                              stdin=subprocess.DEVNULL, env=base_env())
        text = done.stdout
    except (OSError, subprocess.TimeoutExpired):
        text = ""
    flavour, version = parse_version_output(text)
    return ClientProgram(name, flavour, version)


def parse_version_output(text: str) -> tuple[str, str | None]:
    """Given a client's `--version` line, return (flavour, version).

    `mariadb-dump  Ver 10.19 Distrib 10.11.19-MariaDB, for debian-linux-gnu` -> ("mariadb", "10.11.19-MariaDB");
    `mysqldump  Ver 8.0.36 for Linux on x86_64 (MySQL Community Server - GPL)` -> ("mysql", "8.0.36");
    `mysqldump  Ver 10.13 Distrib 5.7.44, for Linux` -> ("mysql", "5.7.44"). No answer reads as ("unknown", None):
    then no flavour's own option is added (an unknown one fails the dump; a missing one only changes its text)."""
    lowered = text.lower()
    flavour = "mariadb" if "mariadb" in lowered else "mysql" if "mysql" in lowered else "unknown"
    found = re.search(r"Distrib\s+([^\s,]+)", text) or re.search(r"\bVer\s+(\d+(?:\.\d+)+)", text)
    return flavour, found.group(1) if found else None


# -- the option file and connection options --------------------------------------------------------------------

def option_file_text(url: MysqlUrl) -> str:
    """Return the option file that gives the clients the password: `[client]` and one quoted line."""
    escaped = (url.password or "").replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace(
        "\r", "\\r").replace("\t", "\\t")
    return f'[client]\npassword="{escaped}"\n'


def connection_options(url: MysqlUrl, program: ClientProgram) -> list[str]:
    """Return the options after the option file that name the server, the user and TLS for `program`."""
    options = [f"--socket={url.socket}"] if url.socket else [f"--host={url.host}", f"--port={url.port}"]
    if url.user:
        options.append(f"--user={url.user}")
    if url.ssl_ca:
        options.append(f"--ssl-ca={url.ssl_ca}")
    if url.ssl_mode:
        options += _ssl_mode_options(url.ssl_mode, program.flavour)
    return options


def _ssl_mode_options(mode: str, flavour: str) -> list[str]:
    if flavour != "mariadb":
        return [f"--ssl-mode={mode}"]
    # MariaDB's clients have no --ssl-mode: the same meaning through their own switches.
    return {"DISABLED": ["--skip-ssl"], "PREFERRED": [], "REQUIRED": ["--ssl"],
            "VERIFY_CA": ["--ssl", "--ssl-verify-server-cert"],
            "VERIFY_IDENTITY": ["--ssl", "--ssl-verify-server-cert"]}[mode]


class ClientConnection:
    """A parsed URL, an option file with its password in `private_dir` while in use, and the child env."""

    def __init__(self, url: str, private_dir: Path, connect_timeout: float = CONNECT_TIMEOUT_S):
        self.url = parse_mysql_url(url)
        register_secret(self.url.password)
        self.private_dir = Path(private_dir)
        self.connect_timeout = connect_timeout
        self.option_file: Path | None = None

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.cleanup()

    def client_argv(self, program: ClientProgram) -> list[str]:
        """Return `program`, the option file first (when the URL has a password), then the connection options."""
        first = [f"--defaults-extra-file={self._ensure_option_file()}"] if self.url.password is not None else []
        return [program.name, *first, *connection_options(self.url, program)]

    @staticmethod
    def child_env() -> dict[str, str]:
        """Return the clients' environment: the basics, never MYSQL_PWD or any secret of ours."""
        return base_env(drop=("MYSQL_PWD",))

    def _ensure_option_file(self) -> Path:
        if self.option_file is None:
            # mkstemp: 0600, O_EXCL (never a file someone else prepared, nor a symlink), a name of its own (a
            # restore holds the server's connection and the database's at once).
            fd, path = tempfile.mkstemp(prefix=OPTION_FILE_PREFIX, suffix=".cnf", dir=self.private_dir)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(option_file_text(self.url))
            self.option_file = Path(path)
        return self.option_file

    def cleanup(self) -> None:
        """Remove the option file if we wrote one (idempotent)."""
        if self.option_file is not None:
            self.option_file.unlink(missing_ok=True)
            self.option_file = None

    def batch_argv(self, program: ClientProgram) -> list[str]:
        """Given the client program, return its argv for queries: the option file first, then batch mode (tab-
        separated rows, no headers), utf8mb4 and timeout.connect."""
        return self.client_argv(program) + ["--batch", "--skip-column-names", "--default-character-set=utf8mb4",
                                            f"--connect-timeout={max(1, math.ceil(self.connect_timeout))}"]

    def query(self, sql: str, database: str | None = None, timeout: float = QUERY_TIMEOUT_S) -> list[list[str]]:
        """Run `sql` through the client; return its rows as lists of fields; raise a classified error."""
        program = find_program(CLIENT_PROGRAMS)
        argv = self.batch_argv(program) + ["--execute", sql] + (["--", database] if database else [])
        try:
            done = subprocess.run(argv, env=self.child_env(), capture_output=True, text=True, timeout=timeout,
                                  stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise EasybackupError(f"{program.name} at {self.url.where} did not answer within {timeout:g}s",
                                  hint="check that the server is up and not overloaded", kind="connection",
                                  transient=True) from None
        if done.returncode != 0:
            lines = [mask(line) for line in done.stderr.splitlines()]
            raise classify_lines(lines, self.url, f"{program.name} {describe_returncode(done.returncode)}",
                                 what=f"{program.name} at {self.url.where}")
        return [line.split("\t") for line in done.stdout.splitlines()]

    def script(self, sql: str, database: str | None = None, *, timeout: float = QUERY_TIMEOUT_S,
               stop: threading.Event | None = None) -> list[list[str]]:
        """Run `sql` (statements separated by `;`, read from stdin: no length limit of argv) through the client;
        return the rows of all its results in order. Raise the classified error if it fails, kind connection after
        `timeout` s, kind cancelled once `stop` is set (the client is killed either way)."""
        program = find_program(CLIENT_PROGRAMS)
        argv = self.batch_argv(program) + (["--", database] if database else [])
        with subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=self.child_env()) as proc:
            stdout, stderr = communicate(proc, sql, timeout, stop, f"{program.name} at {self.url.where}")
        if proc.returncode != 0:
            lines = [mask(line) for line in stderr.splitlines()]
            raise classify_lines(lines, self.url, f"{program.name} {describe_returncode(proc.returncode)}",
                                 what=f"{program.name} at {self.url.where}")
        return [line.split("\t") for line in stdout.splitlines()]


# -- failures --------------------------------------------------------------------------------------------------

_ERROR_NUMBER = re.compile(r"\berror:?\s+(\d{4})\b|\((\d{4})\)\s*$", re.I)


def numbered(*numbers: int) -> str:
    """Given server error numbers, return a pattern for them as the clients print them — `ERROR 1045 (28000)`,
    `Got error: 1045:`, `Error 2013:`, `… (1205)` at a line's end — never a number elsewhere (`at line 2013`)."""
    alternatives = "|".join(str(number) for number in numbers)
    return rf"\berror:?\s+(?:{alternatives})\b|\((?:{alternatives})\)\s*$"


def error_numbers(text: str) -> set[str]:
    """Given a client's output, return the server error numbers it reports (as `numbered` reads them)."""
    return {first or second for line in text.splitlines() for first, second in _ERROR_NUMBER.findall(line)}


# The clients print the server's error number: `Got error: 1045: "Access denied ..."`, `ERROR 1049 (42000): ...`,
# `Couldn't execute '...': Lock wait timeout exceeded ... (1205)`.
_RULES = (
    rule(numbered(1045) + r"|Access denied for user .*using password", "authentication", False,
         "check the password for user {user} in the strategy's database URL (and that the account may connect "
         "from this host)"),
    rule(numbered(1049) + r"|Unknown database", "not_found", False,
         "check the database name {dbname} in the strategy's database URL, or create it"),
    rule(numbered(1044, 1142, 1143, 1227, 1370) + r"|Access denied", "permission", False,
         "grant user {user} SELECT, SHOW VIEW, TRIGGER, EVENT, LOCK TABLES and PROCESS on {dbname} "
         "(README: the backup user's permissions)"),
    rule(numbered(1205) + r"|Lock wait timeout", "timeout", True,
         "a transaction held a lock the dump needed for longer than innodb_lock_wait_timeout: find it "
         "(SHOW PROCESSLIST) or schedule the backup away from it"),
    rule(numbered(2002, 2003, 2005, 2006, 2013, 2026) + r"|Can't connect|server has gone away|Lost connection"
         r"|Unknown (MySQL |MariaDB )?server host", "connection", True,
         "check that the server at {where} is up and reachable from this machine (firewall, tunnel, proxy)"),
)


def classify_lines(lines: list[str], url: MysqlUrl, description: str, what: str) -> EasybackupError:
    """Given a client's masked stderr lines, return the error an operator can act on: a known failure with its
    kind, transient flag and hint, else dump_failed with the last line."""
    found = first_match(_RULES, lines)  # in priority order: access denied before the connection failure around it
    if found is not None:
        matched, line = found
        hint = matched.hint.format(user=url.user or "(default)", dbname=url.dbname or "(default)", where=url.where)
        return EasybackupError(f"{what} failed: {_short(line)}", detail=description, hint=mask(hint),
                               kind=matched.kind, transient=matched.transient, last_lines=lines)
    last = next((line for line in reversed(lines) if line.strip()), None)
    return EasybackupError(f"{what} failed: {description}", detail=last, hint="read the program's last lines below",
                           kind="dump_failed", transient=False, last_lines=lines)


def classify_dump_failure(stage_failed: StageFailed, url: MysqlUrl, what: str) -> EasybackupError:
    """Given the failure of a dump stage (mariadb-dump, or the users-and-grants client), its URL and what it
    dumped, return the classified error (a killed program's last words are not its cause)."""
    lines = [mask(line) for line in stage_failed.last_lines]
    error = classify_lines(lines if stage_failed.signal is None else [], url,
                           f"{stage_failed.stage} {stage_failed.description}", what)
    error.exit_codes = dict(stage_failed.exit_codes)
    error.last_lines = lines
    return error


def invalid_dump_error(what: str, stage_name: str, problem: str, written: int, last_lines: list[str],
                       hint: str) -> EasybackupError:
    """Given what was dumped, by which stage, what is wrong with its output, the bytes it wrote, its last lines and
    the hint, return the invalid_dump error of a dump that exited 0 but is not whole."""
    return EasybackupError(f"{what} is not a whole dump although {stage_name} exited 0: {problem}",
                           detail=f"{stage_name} wrote {written} bytes to easybackup", hint=hint,
                           kind="invalid_dump", transient=False, last_lines=[mask(line) for line in last_lines])


def _short(line: str) -> str:
    text = re.sub(r"^(mariadb-dump|mysqldump|mariadb|mysql):\s*", "", line.strip())
    return " ".join(text.split())
