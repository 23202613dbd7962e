"""PostgreSQL as a dump source: pg_dump argv, a private passfile, failure classification, versions.

The password never reaches argv or a child's environment: pg_dump gets the URL without it
(`--dbname postgresql://user@host:port/db?sslmode=...`) and `PGPASSFILE` pointing at a 0600 file in the
worker's private directory, removed by `cleanup()` (or leaving the `with` block).
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import threading
from dataclasses import replace
from pathlib import Path

from easybackup.config.model import DatabaseTarget, PgDumpSettings, TimeoutSettings
from easybackup.engines.dump_header import (
    CLUSTER_BANNER,
    CLUSTER_DUMP_COMPLETE,
    DUMP_COMPLETE,
    PLAIN_BANNER,
    dump_problem,
    versions_from_dump_head,
)
from easybackup.error_rules import first_match, rule
from easybackup.errors import EasybackupError
from easybackup.engines.postgres_url import PostgresUrl, parse_postgres_url
from easybackup.pipeline.stages import StageFailed, StageSpec, base_env
from easybackup.scheduling import format_duration
from easybackup.secrets import mask, register_secret

PASSFILE_NAME = "pgpass"
# libpq waits forever on a server that accepts TCP and never answers otherwise; a URL's connect_timeout wins.
DEFAULT_CONNECT_TIMEOUT_S = TimeoutSettings.connect
LIBPQ_MIN_CONNECT_TIMEOUT_S = 2  # libpq raises anything shorter to 2 s
VERSION_QUERY_TIMEOUT_S = 20


_RULES = (
    rule(r'password authentication failed|no password supplied|role ".*" does not exist'
         r"|no pg_hba.conf entry", "authentication", False,
         "check the password for user {user} in the strategy's database URL (and that the role exists)"),
    rule(r'database ".*" does not exist', "not_found", False,
         "check the database name {dbname} in the strategy's database URL, or create it"),
    rule(r"permission denied", "permission", False,
         "grant user {user} read access to every object in {dbname} (or dump as its owner)"),
    # libpq's connect_timeout ran out: the server (or a proxy before it) took the connection and never answered.
    rule(r"timeout expired", "connection", True,
         "PostgreSQL at {where} did not answer within timeout.connect ({connect}): check that it is up and not "
         "overloaded and the way to it (firewall, tunnel, proxy); raise timeout.connect if it is only slow"),
    # A reset while connecting (a proxy or load balancer dropping us, a server restarting) is as passing.
    rule(r"connection refused|could not connect|server closed the connection unexpectedly"
         r"|connection reset by peer|broken pipe|is the server running on that host"
         r"|terminating connection due to administrator command"
         r"|the database system is (starting up|shutting down)|no route to host"
         r"|could not translate host name", "connection", True,
         "check that PostgreSQL at {where} is up and reachable from this machine (firewall, tunnel, proxy)"),
)


class PostgresSource:
    """One PostgreSQL database to dump with pg_dump. Use as a context manager so the passfile is removed."""

    name = "postgres"
    stage_name = "pg_dump"
    plain_banner = PLAIN_BANNER  # how pg_dump's plain output begins, and the comment it ends with
    plain_complete = DUMP_COMPLETE

    def __init__(self, target: DatabaseTarget, settings: PgDumpSettings, private_dir: Path,
                 compress_externally: bool, connect_timeout: float = DEFAULT_CONNECT_TIMEOUT_S):
        self.target = target
        self.connect_timeout = connect_timeout
        self.settings = settings
        self.private_dir = Path(private_dir)
        # Custom format always gets -Z0: with a compressor it would compress twice, single-threaded;
        # with `none` the operator asked for no compression at all (DESIGN.md).
        self.compress_externally = compress_externally
        self.url = parse_postgres_url(target.url)
        register_secret(self.url.password)
        self.passfile: Path | None = None

    def __enter__(self) -> PostgresSource:
        return self

    @property
    def needs_tail(self) -> bool:
        """A plain dump is whole only if it ends with the completion comment: the relay keeps its last bytes."""
        return self.settings.format == "plain"

    def __exit__(self, exc_type, exc, tb) -> None:
        self.cleanup()

    # -- what to run ---------------------------------------------------------------------------------------

    def describe(self) -> str:
        """Return "database <name> at <masked url> (<format> format)"."""
        return f"database {self.target.name} at {mask(self.target.url)} ({self.settings.format} format)"

    def file_extension(self) -> str:
        """Return "dump" for the custom format, "sql" for plain."""
        return "dump" if self.settings.format == "custom" else "sql"

    def dump_argv(self) -> list[str]:
        """Return pg_dump's argv: never a password, never a shell."""
        argv = ["pg_dump", "--no-password", f"--format={self.settings.format}"]
        if self.settings.format == "custom":
            argv.append("-Z0")
        argv += list(self.settings.extra_args)
        return argv + ["--dbname", self.url.conninfo()]

    def child_env(self) -> dict[str, str]:
        """Return the environment for pg_dump/psql: the basics and PG* settings (PGSSLROOTCERT, ...), never
        PGPASSWORD or other secrets of ours, PGCONNECT_TIMEOUT from timeout.connect (libpq takes whole seconds),
        and PGPASSFILE when the URL has a password."""
        env = base_env(keep_prefixes=("PG",), drop=("PGPASSWORD",))
        env["PGCONNECT_TIMEOUT"] = str(max(LIBPQ_MIN_CONNECT_TIMEOUT_S, math.ceil(self.connect_timeout)))
        if self.url.password is not None:
            env["PGPASSFILE"] = str(self._ensure_passfile())
        return env

    def dump_stage(self) -> StageSpec:
        """Return the pg_dump stage (writes the passfile first when the URL has a password)."""
        return StageSpec(self.stage_name, self.dump_argv(), env=self.child_env(), failure_kind="dump_failed")

    def _ensure_passfile(self) -> Path:
        if self.passfile is None:
            path = self.private_dir / PASSFILE_NAME
            # O_EXCL: never write a password into a file someone else prepared (or a symlink).
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(self.passfile_url().passfile_line())
            self.passfile = path
        return self.passfile

    def passfile_url(self) -> PostgresUrl:
        """Return the URL whose passfile line the program's connections look up: the database's own."""
        return self.url

    def cleanup(self) -> None:
        """Remove the passfile if we wrote one (idempotent)."""
        if self.passfile is not None:
            self.passfile.unlink(missing_ok=True)
            self.passfile = None

    # -- failures ------------------------------------------------------------------------------------------

    def classify_failure(self, stage_failed: StageFailed) -> EasybackupError:
        """Given a StageFailed from the dump pipeline, return the error an operator can act on.

        A failure of another stage (the compressor) is returned unchanged.
        """
        if stage_failed.stage != self.stage_name:
            return stage_failed
        lines = [mask(line) for line in stage_failed.last_lines]
        found = first_match(_RULES, lines) if stage_failed.signal is None else None
        what = self.dumped()
        if found is None:
            return EasybackupError(
                f"{what} failed: pg_dump {stage_failed.description}", detail=_last_nonblank(lines),
                hint="read pg_dump's last lines below", kind="dump_failed", transient=False,
                exit_codes=stage_failed.exit_codes, last_lines=lines)
        matched, evidence = found
        hint = matched.hint.format(user=self.url.user or "(default)", dbname=self.url.dbname or "(default)",
                                   where=self.url.where, connect=format_duration(self.connect_timeout))
        return EasybackupError(
            f"{what} failed: {_short(evidence)}", detail=f"pg_dump {stage_failed.description}",
            hint=mask(hint), kind=matched.kind, transient=matched.transient,
            exit_codes=stage_failed.exit_codes, last_lines=lines)

    def dumped(self) -> str:
        """Return what the dump program dumps, for messages: "pg_dump of database <name>"."""
        return f"pg_dump of database {self.target.name}"

    def check_dump(self, head: bytes, tail: bytes, size: int | None, last_lines: list[str]) -> None:
        """Given the first and last bytes the dump program wrote (the counting relay keeps them), their count and
        its last stderr lines, raise EasybackupError (kind invalid_dump) unless they are a whole dump of the
        configured format: PGDMP first, or pg_dump's preamble first and its completion comment last."""
        problem = dump_problem(self.settings.format, head, tail, banner=self.plain_banner,
                               complete=self.plain_complete)
        if problem is None:
            return
        raise EasybackupError(
            f"{self.dumped()} is not a whole {self.settings.format}-format dump although {self.stage_name} exited 0: "
            f"{problem}",
            detail=f"{self.stage_name} wrote {size if size is not None else len(head)} bytes to easybackup",
            hint="nothing was stored; check pg_dump.extra_args for an option that sends the dump elsewhere or "
                 "changes its format, and what wraps pg_dump on the PATH",
            kind="invalid_dump", transient=False, last_lines=[mask(line) for line in last_lines])

    # -- versions ------------------------------------------------------------------------------------------

    def versions_after_dump(self, head: bytes) -> dict[str, str | None]:
        """Given the first bytes the dump program wrote, return {"dump_version", "server_version"} (pg_dump's and
        the server's) for the manifest: read off the dump's header, or — where it names none (pg_dumpall) — asked
        of pg_dump and the server, now that the dump's connection is closed (a second one beside it could take the
        last one a role or a pooler allows, CONNECTION LIMIT 1, and fail the dump).
        Values that cannot be had are None."""
        found = versions_from_dump_head(head)
        if found is not None:
            return {"dump_version": found.pg_dump_version, "server_version": found.server_version}
        answer: dict[str, str | None] = {}
        beside = threading.Thread(target=lambda: answer.update(pg_dump_version=pg_dump_version()),
                                  name="pg_dump-version", daemon=True)
        beside.start()  # both ask a program through Debian's perl wrapper, ~0.1 s each
        server = self.server_version()
        beside.join()
        return {"dump_version": answer.get("pg_dump_version"), "server_version": server}

    def server_version(self) -> str | None:
        """Return the server's version ("15.6") through a psql connection, or None when it cannot be had."""
        argv = ["psql", "-X", "-At", "--no-password", "-c", "show server_version", "--dbname", self.url.conninfo()]
        try:
            done = subprocess.run(argv, env=self.child_env(), capture_output=True, text=True,
                                  timeout=VERSION_QUERY_TIMEOUT_S, stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired):
            return None  # only for the manifest: the dump itself reports a real connection problem
        if done.returncode != 0:
            return None
        return done.stdout.strip() or None


class GlobalsSource(PostgresSource):
    """The globals of the server a URL points at, dumped with `pg_dumpall --globals-only` as plain SQL."""

    stage_name = "pg_dumpall"
    plain_banner = CLUSTER_BANNER
    plain_complete = CLUSTER_DUMP_COMPLETE

    def __init__(self, target: DatabaseTarget, private_dir, compress_externally: bool,
                 connect_timeout: float = DEFAULT_CONNECT_TIMEOUT_S):
        super().__init__(target, PgDumpSettings(format="plain"), private_dir, compress_externally,
                         connect_timeout=connect_timeout)

    def passfile_url(self) -> PostgresUrl:
        """pg_dumpall ignores the database of --dbname and connects to `postgres` (else `template1`): the passfile
        line names any database, or it would not match."""
        return replace(self.url, dbname=None)

    def describe(self) -> str:
        return f"roles and tablespaces of {self.url.host}:{self.url.port}"

    def dumped(self) -> str:
        return f"pg_dumpall --globals-only on {self.url.host}:{self.url.port}"

    def dump_argv(self) -> list[str]:
        """Return pg_dumpall's argv: globals only, never a password, never a shell."""
        return ["pg_dumpall", "--globals-only", "--no-password", "--dbname", self.url.conninfo()]

    def dump_stage(self) -> StageSpec:
        return StageSpec(self.stage_name, self.dump_argv(), env=self.child_env(), failure_kind="dump_failed")

    def classify_failure(self, stage_failed: StageFailed) -> EasybackupError:
        """Given a StageFailed of the pipeline, return PostgresSource's classification, worded for pg_dumpall."""
        error = super().classify_failure(stage_failed)
        if stage_failed.stage != self.stage_name:
            return error
        message = error.message.replace("failed: pg_dump ", "failed: pg_dumpall ", 1)
        detail = error.detail.replace("pg_dump ", "pg_dumpall ", 1) if error.detail else error.detail
        hint = error.hint
        if error.kind == "permission":
            hint = (f"reading roles needs a superuser: connect as one, or drop include_globals for user "
                    f"{self.url.user or '(default)'}")
        elif error.kind == "dump_failed":
            hint = "read pg_dumpall's last lines below"
        return EasybackupError(message, detail, hint, kind=error.kind, transient=error.transient,
                               exit_codes=error.exit_codes, last_lines=error.last_lines)


def pg_dump_version() -> str | None:
    """Return the installed pg_dump's version ("15.6"), or None when pg_dump cannot be run."""
    try:
        done = subprocess.run(["pg_dump", "--version"], capture_output=True, text=True, timeout=10,
                              stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return parse_version_output(done.stdout)


def parse_version_output(text: str) -> str | None:
    """Given `pg_dump (PostgreSQL) 15.6 (Debian 15.6-0+deb12u1)`, return "15.6"; None if there is no version."""
    found = re.search(r"\(PostgreSQL\)\s+(\d+(?:\.\d+)*)", text)
    return found.group(1) if found else None


def _last_nonblank(lines: list[str]) -> str | None:
    return next((line for line in reversed(lines) if line.strip()), None)


def _short(line: str) -> str:
    # pg_dump prefixes "pg_dump: error: connection to server at ... failed: FATAL:  ..."; keep the cause.
    text = re.sub(r"^pg_dump:\s*(error:\s*)?", "", line.strip())
    return " ".join(text.split())
