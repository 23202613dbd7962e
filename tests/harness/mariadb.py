"""A throwaway MariaDB server: mariadb-install-db into a temp dir, mariadbd on a free loopback port, removed
afterwards. The harness reaches it as root through its socket with a client option file of its own (the harness is
not easybackup: it may keep a password in a file of the temp dir)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from tests.harness.net import free_port, wait_for_port

ADMIN = "root"
PASSWORD = "harness-maria-Secret-5813"
SYSTEM_DATABASES = ("information_schema", "performance_schema", "sys", "mysql")
START_TIMEOUT_S = 60


def server_program() -> str:
    """Return the path of mariadbd; fail loudly if it is not installed."""
    found = shutil.which("mariadbd") or (os.access("/usr/sbin/mariadbd", os.X_OK) and "/usr/sbin/mariadbd")
    if not found:
        raise RuntimeError("mariadbd not found: apt-get install mariadb-server (make test does)")
    return found


class MariaDBServer:
    """One server in a temp dir; `url()` gives easybackup's view of it, `sql()` the harness's."""

    def __init__(self) -> None:
        self.program = server_program()
        self.root = Path(tempfile.mkdtemp(prefix="easybackup-maria-"))
        self.datadir = self.root / "data"
        self.socket = self.root / "mariadb.sock"
        self.logfile = self.root / "mariadb.err"
        self.tmpdir = self.root / "tmp"
        self.client_cnf = self.root / "client.cnf"
        self.host = "127.0.0.1"
        self.port = free_port()
        self.user = ADMIN
        self.password = PASSWORD
        self._proc: subprocess.Popen | None = None

    # -- life cycle ----------------------------------------------------------------------------------------

    def init(self) -> MariaDBServer:
        """Create the data directory, start the server and give root a password on every host."""
        # A private tmpdir: installs running at once in the shared /tmp remove each other's temporary tables
        # ("Unknown table 'mysql.tmp_user_sys'", seen 3 times in 6 parallel installs; 0 in 8 with this).
        self.tmpdir.mkdir(mode=0o700, exist_ok=True)
        done = subprocess.run(["mariadb-install-db", "--no-defaults", f"--datadir={self.datadir}",
                               f"--tmpdir={self.tmpdir}", "--user=root", "--auth-root-authentication-method=normal",
                               "--skip-test-db", "--skip-name-resolve"],
                              capture_output=True, text=True, cwd=self.root)
        if done.returncode != 0:
            raise RuntimeError(f"mariadb-install-db failed ({done.returncode}): {(done.stdout + done.stderr)[:2000]}")
        self.start()
        self._sql_as_bare_root(
            f"ALTER USER root@localhost IDENTIFIED BY '{PASSWORD}';"
            f"CREATE USER root@'%' IDENTIFIED BY '{PASSWORD}';"
            "GRANT ALL PRIVILEGES ON *.* TO root@'%' WITH GRANT OPTION;"
            # install-db also made root@<this host's name> and root@127.0.0.1/::1 without a password; a name the
            # server does not resolve (skip-name-resolve) breaks SHOW CREATE USER for every account.
            "DELETE FROM mysql.global_priv WHERE user = 'root' AND host NOT IN ('localhost', '%');"
            "FLUSH PRIVILEGES;")
        self.client_cnf.write_text(f"[client]\nuser={ADMIN}\npassword={PASSWORD}\nsocket={self.socket}\n")
        self.client_cnf.chmod(0o600)
        return self

    def start(self) -> MariaDBServer:
        """Start mariadbd (again, after stop()) and wait until it accepts connections."""
        argv = [self.program, "--no-defaults", f"--datadir={self.datadir}", f"--port={self.port}",
                f"--socket={self.socket}", f"--tmpdir={self.tmpdir}", "--user=root", f"--bind-address={self.host}",
                f"--pid-file={self.root / 'mariadb.pid'}", f"--log-error={self.logfile}",
                "--skip-name-resolve", "--innodb-buffer-pool-size=64M", "--innodb-flush-log-at-trx-commit=0",
                "--skip-log-bin", "--event-scheduler=OFF", "--character-set-server=utf8mb4",
                "--collation-server=utf8mb4_general_ci"]
        self._proc = self._spawn(argv)
        try:
            self._wait_ready()
        except TimeoutError:
            log = self.logfile.read_text(errors="replace")[-2000:] if self.logfile.exists() else ""
            self.stop()
            raise RuntimeError(f"mariadbd did not start: {log}") from None
        return self

    def _spawn(self, argv: list[str]) -> subprocess.Popen:
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, cwd=self.root)

    def _wait_ready(self) -> None:
        wait_for_port(self.host, self.port, timeout=START_TIMEOUT_S)

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 30 s) and reap it."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    # -- what tests use ------------------------------------------------------------------------------------

    def url(self, database: str = "", user: str | None = None, password: str | None = None,
            host: str | None = None, port: int | None = None, scheme: str = "mysql") -> str:
        """Return a mysql:// URL for `database` on this server."""
        password = self.password if password is None else password
        return f"{scheme}://{user or self.user}:{password}@{host or self.host}:{port or self.port}/{database}"

    def client_argv(self, program: str = "mariadb") -> list[str]:
        """Return the argv prefix that runs a client program as root on this server."""
        return [program, f"--defaults-file={self.client_cnf}"]

    def sql(self, sql: str, database: str | None = None) -> str:
        """Run `sql` (one or more statements) and return the tab-separated rows, no headers; raise on any error."""
        argv = self.client_argv() + ["--batch", "--skip-column-names", "--default-character-set=utf8mb4"]
        argv += [database] if database else []
        done = subprocess.run(argv, input=sql, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"mariadb failed ({done.returncode}): {done.stderr.strip()}")
        return done.stdout.rstrip("\n")

    def sql_as(self, user: str, password: str, sql: str, database: str | None = None) -> str:
        """Run `sql` as `user` (through the socket, the password in an option file of the temp dir): what it
        creates has that user as its DEFINER. Return the rows; raise on any error."""
        cnf = self.root / f"client-{user}.cnf"
        cnf.write_text(f"[client]\nuser={user}\npassword={password}\nsocket={self.socket}\n")
        cnf.chmod(0o600)
        argv = ["mariadb", f"--defaults-file={cnf}", "--batch", "--skip-column-names",
                "--default-character-set=utf8mb4"] + ([database] if database else [])
        done = subprocess.run(argv, input=sql, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"mariadb as {user} failed ({done.returncode}): {done.stderr.strip()}")
        return done.stdout.rstrip("\n")

    def sql_file(self, path: Path, database: str) -> None:
        """Run the SQL file at `path` against `database` (it may change the delimiter)."""
        self.sql(Path(path).read_text(encoding="utf-8"), database)

    def create_database(self, name: str) -> str:
        """Create database `name` (dropping any old one) and return its URL."""
        self.sql(f"DROP DATABASE IF EXISTS `{name}`; CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
        return self.url(name)

    def drop_database(self, name: str) -> None:
        self.sql(f"DROP DATABASE IF EXISTS `{name}`")

    def databases(self) -> list[str]:
        """Return the names of the user databases (not the system ones), sorted."""
        names = self.sql("SHOW DATABASES").splitlines()
        return sorted(name for name in names if name not in SYSTEM_DATABASES)

    def table_fingerprints(self, database: str) -> dict[str, tuple[int, int]]:
        """Return {table: (row count, CHECKSUM TABLE ... EXTENDED)} for every base table of `database`."""
        tables = self.sql("SELECT table_name FROM information_schema.tables WHERE table_schema = DATABASE() "
                          "AND table_type = 'BASE TABLE' ORDER BY table_name", database).splitlines()
        result = {}
        for table in tables:
            count = int(self.sql(f"SELECT COUNT(*) FROM `{table}`", database))
            checksum = self.sql(f"CHECKSUM TABLE `{table}` EXTENDED", database).split("\t")[1]
            result[table] = (count, int(checksum))
        return result

    def routines(self, database: str) -> dict[str, list[str]]:
        """Return the names of the views, triggers, routines and events of `database`, each sorted."""
        queries = {
            "views": "SELECT table_name FROM information_schema.views WHERE table_schema = DATABASE()",
            "triggers": "SELECT trigger_name FROM information_schema.triggers WHERE trigger_schema = DATABASE()",
            "routines": "SELECT routine_name FROM information_schema.routines WHERE routine_schema = DATABASE()",
            "events": "SELECT event_name FROM information_schema.events WHERE event_schema = DATABASE()",
        }
        return {kind: sorted(self.sql(query, database).splitlines()) for kind, query in queries.items()}

    def _sql_as_bare_root(self, sql: str) -> None:
        """Run `sql` as root through the socket before root has a password (just after install)."""
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            done = subprocess.run(["mariadb", "--no-defaults", "-uroot", f"--socket={self.socket}"], input=sql,
                                  capture_output=True, text=True)
            if done.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"cannot set up mariadb: {done.stderr.strip()}")
            time.sleep(0.2)


class NamespacedMariaDB(MariaDBServer):
    """A MariaDBServer inside a network namespace (tests/harness/netns.py), listening only on the namespace's own
    127.0.0.1: unreachable over TCP from the root namespace. The harness still reaches it through its Unix socket
    (a file: no network namespace scopes it)."""

    def __init__(self, ns) -> None:
        super().__init__()
        self.ns = ns

    def _spawn(self, argv: list[str]) -> subprocess.Popen:
        return self.ns.popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             cwd=self.root)

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        # `ping` answers 0 once the server runs, whatever the credentials.
        while subprocess.run(["mariadb-admin", "--no-defaults", f"--socket={self.socket}", "ping"],
                             capture_output=True).returncode != 0:
            if time.monotonic() > deadline:
                raise TimeoutError("mariadbd did not answer on its socket")
            time.sleep(0.2)
