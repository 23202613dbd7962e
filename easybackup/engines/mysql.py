"""MySQL and MariaDB as a dump source and a restore target: mariadb-dump (or mysqldump) argv, a private option
file for the password, the completeness check, versions from the dump's header, failure classification, the
database listing, users and grants, and the restore through mariadb (or mysql).

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
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

from easybackup.errors import EasybackupError, UsageError
from easybackup.pipeline.stages import StageFailed, StageSpec, base_env, describe_returncode
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
DUMP_PROGRAMS = ("mariadb-dump", "mysqldump")
CLIENT_PROGRAMS = ("mariadb", "mysql")
DUMP_OPTIONS = ("--single-transaction", "--quick", "--routines", "--triggers", "--events", "--hex-blob",
                "--default-character-set=utf8mb4")
DUMP_COMPLETE = b"-- Dump completed"  # written last, and only when the dump succeeded
HEAD_BANNERS = (b"-- MariaDB dump ", b"-- MySQL dump ")
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


class _Connection:
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

    def query(self, sql: str, database: str | None = None, timeout: float = QUERY_TIMEOUT_S) -> list[list[str]]:
        """Run `sql` through the client; return its rows as lists of fields; raise a classified error."""
        program = find_program(CLIENT_PROGRAMS)
        argv = self.client_argv(program) + ["--batch", "--skip-column-names", "--default-character-set=utf8mb4"]
        seconds = max(1, math.ceil(self.connect_timeout))
        argv += [f"--connect-timeout={seconds}", "--execute", sql] + (["--", database] if database else [])
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


# -- failures --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Rule:
    pattern: re.Pattern
    kind: str
    transient: bool
    hint: str


# The clients print the server's error number: `Got error: 1045: "Access denied ..."`, `ERROR 1049 (42000): ...`,
# `Couldn't execute '...': Lock wait timeout exceeded ... (1205)`.
_RULES = (
    _Rule(re.compile(r"\b1045\b|Access denied for user .*using password", re.I), "authentication", False,
          "check the password for user {user} in the strategy's database URL (and that the account may connect "
          "from this host)"),
    _Rule(re.compile(r"\b1049\b|Unknown database", re.I), "not_found", False,
          "check the database name {dbname} in the strategy's database URL, or create it"),
    _Rule(re.compile(r"\b(1044|1142|1143|1227|1370)\b|Access denied", re.I), "permission", False,
          "grant user {user} SELECT, SHOW VIEW, TRIGGER, EVENT, LOCK TABLES and PROCESS on {dbname} "
          "(README: the backup user's permissions)"),
    _Rule(re.compile(r"\b1205\b|Lock wait timeout", re.I), "timeout", True,
          "a transaction held a lock the dump needed for longer than innodb_lock_wait_timeout: find it "
          "(SHOW PROCESSLIST) or schedule the backup away from it"),
    _Rule(re.compile(r"\b(2002|2003|2005|2006|2013|2026)\b|Can't connect|server has gone away|Lost connection"
                     r"|Unknown (MySQL |MariaDB )?server host", re.I), "connection", True,
          "check that the server at {where} is up and reachable from this machine (firewall, tunnel, proxy)"),
)


def classify_lines(lines: list[str], url: MysqlUrl, description: str, what: str) -> EasybackupError:
    """Given a client's masked stderr lines, return the error an operator can act on: a known failure with its
    kind, transient flag and hint, else dump_failed with the last line."""
    for rule in _RULES:  # in priority order: access denied before the connection failure around it
        for line in lines:
            if rule.pattern.search(line):
                hint = rule.hint.format(user=url.user or "(default)", dbname=url.dbname or "(default)",
                                        where=url.where)
                return EasybackupError(f"{what} failed: {_short(line)}", detail=description, hint=mask(hint),
                                       kind=rule.kind, transient=rule.transient, last_lines=lines)
    last = next((line for line in reversed(lines) if line.strip()), None)
    return EasybackupError(f"{what} failed: {description}", detail=last, hint="read the program's last lines below",
                           kind="dump_failed", transient=False, last_lines=lines)


def _short(line: str) -> str:
    text = re.sub(r"^(mariadb-dump|mysqldump|mariadb|mysql):\s*", "", line.strip())
    return " ".join(text.split())


# -- the dump --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DumpVersions:
    """What a dump's header says: the dump program's flavour and version, the server's flavour and version."""

    dump_flavour: str
    dump_version: str | None
    server_flavour: str | None
    server_version: str | None


def versions_from_dump_head(head: bytes) -> DumpVersions | None:
    """Given the first bytes of a mysqldump/mariadb-dump, return the versions its header names, or None.

    `-- MariaDB dump 10.19  Distrib 10.11.19-MariaDB, for debian-linux-gnu (x86_64)` and
    `-- Server version\t10.11.19-MariaDB-0+deb12u1` (MySQL: `-- MySQL dump 10.13  Distrib 8.0.36, ...`)."""
    text = head.decode("utf-8", "replace")
    banner = re.search(r"^-- (MariaDB|MySQL) dump ([^\n]*)", text, re.M)
    if banner is None:
        return None
    distrib = re.search(r"Distrib\s+([^\s,]+)", banner.group(2))
    server = re.search(r"^-- Server version\s+(\S+)", text, re.M)
    server_version = server.group(1) if server else None
    server_flavour = None if server is None else ("mariadb" if "mariadb" in server_version.lower() else "mysql")
    return DumpVersions(banner.group(1).lower(), distrib.group(1) if distrib else None, server_flavour,
                        server_version)


def dump_problem(head: bytes, tail: bytes) -> str | None:
    """Given the first and the last bytes a dump program wrote, return what shows they are not a whole dump, or
    None. The text names only our expectations, never the dump's bytes (they are the database's data)."""
    if not head:
        return "it wrote nothing"
    if not any(banner in head[:1024] for banner in HEAD_BANNERS):
        return "it does not begin with the '-- MariaDB dump' or '-- MySQL dump' header"
    if not ends_complete(tail):
        return "it does not end with '-- Dump completed', which the dump program writes last and only on success"
    return None


def ends_complete(tail: bytes) -> bool:
    """Given a dump's last bytes, return whether its last line that is not blank is `-- Dump completed ...`."""
    lines = [line.strip() for line in tail.replace(b"\r\n", b"\n").split(b"\n") if line.strip()]
    return bool(lines) and lines[-1].startswith(DUMP_COMPLETE)


class MysqlSource:
    """One MySQL/MariaDB database (or, with `globals_only`, the server's users and grants) to dump. Use as a
    context manager so the option file is removed."""

    name = "mysql"

    needs_tail = True  # check_dump reads the completion line

    def __init__(self, target_name: str, url: str, private_dir: Path, extra_args: tuple[str, ...] = (),
                 globals_only: bool = False, connect_timeout: float = CONNECT_TIMEOUT_S):
        self.target_name = target_name
        self.connection = _Connection(url, private_dir, connect_timeout)
        self.url = self.connection.url
        self.extra_args = tuple(extra_args)
        self.globals_only = globals_only
        self.program = find_program(DUMP_PROGRAMS)
        self.stage_name = self.program.name

    def __enter__(self) -> MysqlSource:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.cleanup()

    def cleanup(self) -> None:
        self.connection.cleanup()

    def describe(self) -> str:
        """Return "database <name> at <masked url>"."""
        what = "users and grants" if self.globals_only else f"database {self.target_name}"
        return f"{what} at {mask(masked_url(self.connection_url_text()))}"

    def connection_url_text(self) -> str:
        url = self.url
        return f"mysql://{url.user or ''}@{url.host}:{url.port}/{url.dbname or ''}"

    def file_extension(self) -> str:
        return "sql"

    def dump_argv(self) -> list[str]:
        """Return the dump program's argv: the option file first, never a password, never a shell."""
        argv = self.connection.client_argv(self.program)
        if self.globals_only:
            return argv + self._globals_options() + list(self.extra_args)
        argv += list(DUMP_OPTIONS)
        if self.program.flavour == "mysql":
            argv.append("--set-gtid-purged=OFF")  # MySQL's only; a GTID line would fail a restore elsewhere
        if not self.url.dbname:
            raise EasybackupError(f"the URL of {self.target_name} names no database",
                                  hint="add the database to the URL's path, or use all_databases", kind="config")
        return argv + list(self.extra_args) + ["--", self.url.dbname]

    def _globals_options(self) -> list[str]:
        if self.program.flavour != "mariadb":
            raise EasybackupError(
                f"include_globals needs MariaDB's dump program; {self.program.name} is MySQL's",
                hint=f"{PACKAGES_HINT} (mariadb-dump --system=users dumps MySQL's accounts too), or turn "
                     "include_globals off for this strategy", kind="config", transient=False)
        # --insert-ignore: CREATE USER IF NOT EXISTS, so a replay onto a server that has some of the accounts
        # (its root, mariadb.sys) adds the missing ones instead of failing on the first existing one.
        return ["--system=users", "--insert-ignore", "--default-character-set=utf8mb4"]

    def dump_stage(self) -> StageSpec:
        return StageSpec(self.stage_name, self.dump_argv(), env=self.connection.child_env(),
                         failure_kind="dump_failed")

    def dumped(self) -> str:
        return f"{self.program.name} of {'users and grants' if self.globals_only else 'database ' + self.target_name}"

    def classify_failure(self, stage_failed: StageFailed) -> EasybackupError:
        """Given a StageFailed from the dump pipeline, return the error an operator can act on; a failure of
        another stage (the compressor) is returned unchanged."""
        if stage_failed.stage != self.stage_name:
            return stage_failed
        lines = [mask(line) for line in stage_failed.last_lines]
        if stage_failed.signal is not None:
            lines = []  # killed: its last words are not the cause
        error = classify_lines(lines, self.url, f"{self.stage_name} {stage_failed.description}", self.dumped())
        error.exit_codes = dict(stage_failed.exit_codes)
        error.last_lines = [mask(line) for line in stage_failed.last_lines]
        return error

    def check_dump(self, head: bytes, tail: bytes, size: int | None, last_lines: list[str]) -> None:
        """Raise EasybackupError (kind invalid_dump) unless `head` and `tail` are a whole dump's."""
        problem = dump_problem(head, tail)
        if problem is None:
            return
        raise EasybackupError(
            f"{self.dumped()} is not a whole dump although {self.stage_name} exited 0: {problem}",
            detail=f"{self.stage_name} wrote {size if size is not None else len(head)} bytes to easybackup",
            hint="nothing was stored; check mysqldump.extra_args for an option that sends the dump elsewhere or "
                 "drops its comments (--result-file, --tab, --compact, --skip-comments), and what wraps "
                 f"{self.stage_name} on the PATH",
            kind="invalid_dump", transient=False, last_lines=[mask(line) for line in last_lines])

    def versions_after_dump(self, head: bytes) -> dict[str, str | None]:
        """Return the manifest's versions, read off the dump's header (no second connection): `dump_version`
        names the program and its version ("mariadb-dump 10.11.19-MariaDB"), `server_version` the server's flavour
        and version ("10.11.19-MariaDB-0+deb12u1" names it; MySQL's "8.0.36" becomes "MySQL 8.0.36")."""
        found = versions_from_dump_head(head)
        dump_version = found.dump_version if found else self.program.version
        server_version = found.server_version if found else None
        if found and found.server_flavour == "mysql" and server_version:
            server_version = f"MySQL {server_version}"
        return {"dump_version": f"{self.program.name} {dump_version}" if dump_version else self.program.name,
                "server_version": server_version,
                "dump_flavour": found.dump_flavour if found else self.program.flavour,
                "server_flavour": found.server_flavour if found else None}


# -- listing ---------------------------------------------------------------------------------------------------

def list_databases(url: str, private_dir: Path, timeout: float = QUERY_TIMEOUT_S,
                   connect_timeout: float = CONNECT_TIMEOUT_S) -> list[str]:
    """Return the server's databases except information_schema, performance_schema, sys and mysql, sorted; raise
    the classified error when they cannot be listed, not_found when there is none."""
    with _Connection(url, private_dir, connect_timeout) as connection:
        rows = connection.query("SHOW DATABASES", timeout=timeout)
        where = connection.url.where
    names = sorted(row[0] for row in rows if row and row[0] not in SYSTEM_DATABASES)
    if not names:
        raise EasybackupError(f"no database to back up on {where}", "SHOW DATABASES lists only system databases",
                              "check that the user may see the databases (SHOW DATABASES privilege, or grants on "
                              "each)", kind="not_found")
    return names


# -- restore ---------------------------------------------------------------------------------------------------

def quote_identifier(name: str) -> str:
    """Return `name` as a MySQL identifier: in backticks, a backtick doubled."""
    return "`" + name.replace("`", "``") + "`"


def quote_string(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "''") + "'"


class MysqlRestoreTarget:
    """A database to restore a dump into (or, with no database in the URL, the server), through `mariadb` (or
    `mysql`) with the same option-file rule: the RestoreTarget of easybackup.engines."""

    def __init__(self, url: str, private_dir: Path, connect_timeout: float = CONNECT_TIMEOUT_S):
        self.connection = _Connection(url, private_dir, connect_timeout)
        self.url = self.connection.url
        self.dbname = self.url.dbname or ""
        self.program = find_program(CLIENT_PROGRAMS)

    def __enter__(self) -> MysqlRestoreTarget:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.cleanup()

    def cleanup(self) -> None:
        self.connection.cleanup()

    def asks_for_password(self) -> bool:
        """Connect; return True when the server refused us for want of a password (1045, `using password: NO`),
        False when connected or when it failed otherwise."""
        try:
            self.check()
        except EasybackupError as error:
            return error.kind == "authentication" and "using password: NO" in error.message
        return False

    def check(self) -> None:
        """Connect and authenticate (and open the database, when the URL names one); raise the classified error."""
        self.connection.query("SELECT 1", self.dbname or None)

    def database_exists(self, name: str) -> bool:
        rows = self.connection.query("SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name = "
                                     + quote_string(name))
        return rows[0][0] != "0"

    def create_database(self, name: str) -> None:
        self.connection.query(f"CREATE DATABASE {quote_identifier(name)} CHARACTER SET utf8mb4")

    def user_table_count(self) -> int:
        """Return how many tables, views, routines and events the database holds (0: safe to restore into)."""
        name = quote_string(self.dbname)
        rows = self.connection.query(
            f"SELECT (SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = {name})"
            f" + (SELECT COUNT(*) FROM information_schema.routines WHERE routine_schema = {name})"
            f" + (SELECT COUNT(*) FROM information_schema.events WHERE event_schema = {name})")
        return int(rows[0][0])

    def prepare(self, replace: bool = False) -> None:
        """Create the database when missing; refuse a non-empty one unless `replace` (the dump then replaces the
        objects it holds, as its DROP ... IF EXISTS statements do; other objects stay)."""
        if not self.database_exists(self.dbname):
            self.create_database(self.dbname)
            return
        count = self.user_table_count()
        if count and not replace:
            raise EasybackupError(
                f"database {self.dbname} at {self.url.where} is not empty ({count} tables, views, routines or "
                "events)", hint="restore into a new database, or pass --clean to restore over it", kind="config",
                transient=False)

    def restore_stage(self, fmt: str = "plain", *, globals_dump: bool = False, clean: bool = False,
                      jobs: int | None = None, path: Path | None = None) -> StageSpec:
        """Return the stage that replays a dump from stdin: `mariadb` into the database (or, for users and grants,
        into the server). A MySQL dump drops and recreates what it holds by itself, so `clean` adds nothing;
        it is one stream, so `jobs` is refused."""
        if jobs and jobs > 1:
            raise UsageError("--jobs needs a PostgreSQL custom-format archive; a MySQL dump replays as one stream",
                             hint="leave out --jobs")
        argv = self.connection.client_argv(self.program) + ["--default-character-set=utf8mb4"]
        if not globals_dump:
            argv += ["--", self.dbname]
        return StageSpec(self.program.name, argv, env=self.connection.child_env(), failure_kind="dump_failed")

    @staticmethod
    def restore_error(line: str) -> bool:
        """Given a line the client printed replaying users and grants, return whether it is an error."""
        return line.startswith("ERROR")

    def classify_failure(self, stage_failed: StageFailed) -> EasybackupError:
        if stage_failed.stage != self.program.name:
            return stage_failed
        lines = [mask(line) for line in stage_failed.last_lines]
        error = classify_lines(lines, self.url, f"{self.program.name} {stage_failed.description}",
                               f"restore into {self.dbname or 'the server'} at {self.url.where}")
        error.exit_codes = dict(stage_failed.exit_codes)
        return error


# -- the engine ------------------------------------------------------------------------------------------------

class MysqlEngine:
    """The Engine (easybackup.engines) for mysql:// and mariadb:// URLs. Its dumps are plain SQL (`.sql`)."""

    name = "mysql"
    schemes = SCHEMES
    maintenance_database = ""  # the clients connect to the server without a database
    globals_what = "users and grants (mariadb-dump --system=users)"  # what include_globals adds, for validate

    def parse_url(self, url: str) -> MysqlUrl:
        return parse_mysql_url(url)

    def with_database(self, url: str, dbname: str) -> str:
        return with_database(url, dbname)

    def with_password(self, url: str, password: str) -> str:
        return with_password(url, password)

    def routed_url(self, url: str, address: str, port: int) -> str:
        return routed_url(url, address, port)

    def dump_format(self, strategy) -> str:
        return "plain"

    def dump_source(self, target, strategy, private_dir: Path) -> MysqlSource:
        return MysqlSource(target.name, target.url, private_dir, extra_args=strategy.mysqldump.extra_args,
                           connect_timeout=strategy.timeout.connect)

    def globals_source(self, target, strategy, private_dir: Path) -> MysqlSource:
        return MysqlSource(target.name, target.url, private_dir, globals_only=True,
                           connect_timeout=strategy.timeout.connect)

    def list_databases(self, url: str, private_dir: Path, timeout: float, connect_timeout: float) -> list[str]:
        return list_databases(url, private_dir, timeout, connect_timeout)

    def reader_stages(self, fmt: str) -> list[StageSpec]:
        return []  # the decompressed dump comes out of the chain; dump_end_problem reads its end

    def dump_end_problem(self, fmt: str, tail: bytes) -> tuple[str, str] | None:
        if fmt != "plain":
            return (f"its manifest says {fmt} format, and a MySQL dump is plain SQL",
                    "the manifest does not describe this archive; restore an older backup")
        if ends_complete(tail):
            return None
        return ("it does not end with '-- Dump completed', which the dump program writes last",
                "the dump stopped before the end; restore an older backup")

    def restore_target(self, url: str, private_dir: Path, connect_timeout: float) -> MysqlRestoreTarget:
        return MysqlRestoreTarget(url, private_dir, connect_timeout)


ENGINE = MysqlEngine()
