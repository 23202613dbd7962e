"""A throwaway PostgreSQL cluster: initdb with a password, pg_ctl on a free port, removed afterwards."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.harness.net import free_port

SUPERUSER = "postgres"
PASSWORD = "harness-pg-Secret-4471"


def postgres_bindir() -> Path:
    """Return the newest /usr/lib/postgresql/*/bin that has initdb; fail loudly if there is none."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if not candidates:
        raise RuntimeError("PostgreSQL server binaries not found: apt-get install postgresql (make test does)")
    return Path(candidates[-1]).parent


class PostgresCluster:
    """One cluster in a temp dir, run as the `postgres` user when we are root."""

    def __init__(self) -> None:
        self.bindir = postgres_bindir()
        self.root = Path(tempfile.mkdtemp(prefix="easybackup-pg-"))
        self.datadir = self.root / "data"
        self.sockdir = self.root / "sock"
        self.logfile = self.root / "postgres.log"
        self.port = free_port()
        self.host = "127.0.0.1"
        self.user = SUPERUSER
        self.password = PASSWORD
        self._run_as = None
        if os.geteuid() == 0:
            self._run_as = pwd.getpwnam("postgres")
            os.chmod(self.root, 0o755)

    def _cmd(self, argv: list[str]) -> subprocess.CompletedProcess:
        kwargs = {}
        if self._run_as:
            kwargs = {"user": self._run_as.pw_uid, "group": self._run_as.pw_gid, "extra_groups": []}
        return subprocess.run(argv, check=True, capture_output=True, text=True, cwd=self.root, **kwargs)

    def init(self) -> PostgresCluster:
        pwfile = self.root / "pwfile"
        pwfile.write_text(self.password + "\n")
        self.sockdir.mkdir()
        if self._run_as:
            for path in (self.root, pwfile, self.sockdir):
                os.chown(path, self._run_as.pw_uid, self._run_as.pw_gid)
        self._cmd([str(self.bindir / "initdb"), "-D", str(self.datadir), "-U", SUPERUSER, "--auth=scram-sha-256",
                   f"--pwfile={pwfile}", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"])
        pwfile.unlink()
        return self.start()

    def start(self) -> PostgresCluster:
        options = f"-p {self.port} -k {self.sockdir} -c listen_addresses={self.host} -c fsync=off"
        self._cmd([str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-o", options, "-l", str(self.logfile),
                   "-w", "-t", "60", "start"])
        return self

    def stop(self, mode: str = "fast") -> None:
        if self.datadir.exists():
            self._cmd([str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-m", mode, "-w", "stop"])

    def destroy(self) -> None:
        try:
            self.stop("immediate")
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str = "postgres", user: str | None = None, password: str | None = None,
            host: str | None = None, port: int | None = None) -> str:
        """Return a postgres:// URL for `database` on this cluster."""
        user = user or self.user
        password = self.password if password is None else password
        return f"postgres://{user}:{password}@{host or self.host}:{port or self.port}/{database}"

    def env(self) -> dict:
        """Return an environment in which psql/pg_dump reach this cluster as the superuser."""
        env = dict(os.environ)
        env.update(PGHOST=self.host, PGPORT=str(self.port), PGUSER=self.user, PGPASSWORD=self.password)
        return env

    def client_argv(self, argv: list[str]) -> list[str]:
        """Given a client command (psql), return the argv that runs it where this cluster is reachable."""
        return argv

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run `sql` with psql and return its unaligned, tuples-only output; raise on any error."""
        out = subprocess.run(self.client_argv(["psql", "-X", "-v", "ON_ERROR_STOP=1", "-At", "-d", database,
                                               "-c", sql]),
                             check=True, capture_output=True, text=True, env=self.env())
        return out.stdout.strip()

    def psql_file(self, path: str, database: str, variables: dict | None = None) -> None:
        """Run the SQL file at `path` against `database`, with psql -v variables."""
        argv = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", database, "-f", path]
        for key, value in (variables or {}).items():
            argv += ["-v", f"{key}={value}"]
        subprocess.run(self.client_argv(argv), check=True, capture_output=True, text=True, env=self.env())

    def create_database(self, name: str) -> str:
        """Create database `name` (dropping any old one) and return its URL."""
        self.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.psql(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def table_fingerprints(self, database: str) -> dict[str, tuple[int, str]]:
        """Return {schema.table: (row count, md5 of all rows in a stable order)} for every user table."""
        tables = self.psql(
            "SELECT quote_ident(schemaname)||'.'||quote_ident(tablename) FROM pg_tables "
            "WHERE schemaname NOT IN ('pg_catalog','information_schema') ORDER BY 1", database).splitlines()
        result = {}
        for table in tables:
            row = self.psql(f"SELECT count(*), coalesce(md5(string_agg(t::text, '|' ORDER BY t::text)), '') "
                            f"FROM {table} t", database)
            count, digest = row.split("|")
            result[table] = (int(count), digest)
        return result
