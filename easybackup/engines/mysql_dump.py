"""The MySQL/MariaDB dump: mariadb-dump's (or mysqldump's) argv, the check that its output is a whole dump, and the
versions its header names. A dump ends with `-- Dump completed` only when it succeeded; one without it is refused
even when the program exits 0.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from easybackup.engines.mysql_client import (
    CONNECT_TIMEOUT_S,
    PACKAGES_HINT,
    ClientConnection,
    classify_dump_failure,
    find_program,
    invalid_dump_error,
)
from easybackup.errors import EasybackupError
from easybackup.pipeline.stages import StageFailed, StageSpec
from easybackup.secrets import mask
from easybackup.urls import masked_url

DUMP_PROGRAMS = ("mariadb-dump", "mysqldump")
DUMP_OPTIONS = ("--single-transaction", "--quick", "--routines", "--triggers", "--events", "--hex-blob",
                "--default-character-set=utf8mb4")
DUMP_COMPLETE = b"-- Dump completed"  # written last, and only when the dump succeeded
HEAD_BANNERS = (b"-- MariaDB dump ", b"-- MySQL dump ")

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
        self.connection = ClientConnection(url, private_dir, connect_timeout)
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
                f"include_globals on a MariaDB server needs MariaDB's dump program; {self.program.name} is MySQL's",
                hint=f"{PACKAGES_HINT} (its mariadb-dump --system=users dumps MariaDB's users, grants and roles), "
                     "or turn include_globals off for this strategy", kind="config", transient=False)
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
        return classify_dump_failure(stage_failed, self.url, self.dumped())

    def check_dump(self, head: bytes, tail: bytes, size: int | None, last_lines: list[str]) -> None:
        """Raise EasybackupError (kind invalid_dump) unless `head` and `tail` are a whole dump's."""
        problem = dump_problem(head, tail)
        if problem is None:
            return
        raise invalid_dump_error(
            self.dumped(), self.stage_name, problem, size if size is not None else len(head), last_lines,
            hint="nothing was stored; check mysqldump.extra_args for an option that sends the dump elsewhere or "
                 "drops its comments (--result-file, --tab, --compact, --skip-comments), and what wraps "
                 f"{self.stage_name} on the PATH")

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
