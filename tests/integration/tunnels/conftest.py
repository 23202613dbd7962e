"""An island: PostgreSQL inside a network namespace the tests create, reachable only through what runs there.

PostgreSQL listens on the namespace's own 127.0.0.1, so no path from the root namespace reaches it; sshd,
microsocks and tinyproxy listen on the namespace's veth address. Every fixture stops what it started and the
namespace (with anything still running in it) is removed at the end, even when a test fails.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from easybackup.config.model import DatabaseTarget, PgDumpSettings, ProxySettings, S3Settings, Strategy, TunnelSettings
from easybackup.engines.postgres import PostgresSource
from easybackup.network.routes import open_route
from easybackup.pipeline.stages import Pipeline, StageFailed
from tests.harness.net import free_port, wait_for_port
from tests.harness.netns import Namespace, NamespacedPostgres, network_namespace
from tests.harness.restore import restore_dump
from tests.harness.sshd import KeyPair, SshServer, make_key

REPO = Path(__file__).resolve().parents[3]
PROXY_USER, PROXY_PASSWORD = "dumper", "Proxy-Pw-5521"
BULK_ROWS = 60000  # ~8 MB of incompressible text: several seconds at the throttled rate


@dataclass
class Island:
    ns: Namespace
    pg: NamespacedPostgres
    fingerprints: dict

    def url(self, database: str = "island", port: int | None = None) -> str:
        """The database URL as the bastion or the proxy sees it: 127.0.0.1 inside the namespace."""
        return self.pg.url(database, port=port)

    def target(self, database: str = "island", port: int | None = None) -> DatabaseTarget:
        return DatabaseTarget(database, self.url(database, port))


@pytest.fixture(scope="package")
def island():
    """A namespace with PostgreSQL on its loopback, a database `island` (demo data) and `bulk` (big, for cuts)."""
    with network_namespace("t") as ns:
        pg = NamespacedPostgres(ns)
        try:
            pg.init()
            pg.create_database("island")
            pg.psql_file(str(REPO / "examples" / "demo-data.sql"), "island")
            pg.create_database("bulk")
            pg.psql("CREATE TABLE filler AS SELECT g AS id, md5(g::text) || md5((g*7)::text) || md5((g*13)::text) "
                    f"AS a, md5(random()::text) AS b FROM generate_series(1, {BULK_ROWS}) g", "bulk")
            yield Island(ns, pg, pg.table_fingerprints("island"))
        finally:
            pg.destroy()


@pytest.fixture
def workdir():
    """A private temp dir (0700) for keys, known_hosts and the route's files; removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="easybackup-tunnel-"))
    try:
        yield path
    finally:
        subprocess.run(["rm", "-rf", str(path)], check=True)


@pytest.fixture
def client_key(workdir) -> KeyPair:
    return make_key(workdir, "id_ed25519")


@pytest.fixture
def sshd(island):
    """A factory: sshd(host=None, port=22, keys=[...]) starts an sshd in the island; all are stopped afterwards."""
    servers: list[SshServer] = []

    def start(host: str | None = None, port: int = 22, keys: list[str] = (), permit_open: str = "any") -> SshServer:
        server = SshServer(island.ns, host or island.ns.address, port, keys, permit_open)
        servers.append(server)
        return server.start()

    try:
        yield start
    finally:
        for server in servers:
            server.stop()


@pytest.fixture
def proxies(island, workdir):
    """Factories: .socks5(user, password) -> port and .http(connect_port, basic_auth) -> port, in the island."""
    started: list[subprocess.Popen] = []

    class Proxies:
        def socks5(self, user: str = PROXY_USER, password: str = PROXY_PASSWORD) -> int:
            port = free_port()
            started.append(island.ns.popen(["microsocks", "-i", island.ns.address, "-p", str(port), "-u", user,
                                            "-P", password], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            wait_for_port(island.ns.address, port, timeout=10)
            return port

        def http(self, connect_port: int, basic_auth: tuple[str, str] | None = None) -> int:
            port = free_port()
            config = workdir / f"tinyproxy-{port}.conf"
            lines = [f"Port {port}", f"Listen {island.ns.address}", "Timeout 60", "MaxClients 20",
                     f"ConnectPort {connect_port}", "User nobody", "Group nogroup", "LogLevel Info"]
            if basic_auth:
                lines.append(f"BasicAuth {basic_auth[0]} {basic_auth[1]}")
            config.write_text("\n".join(lines) + "\n")
            started.append(island.ns.popen(["tinyproxy", "-d", "-c", str(config)], stdout=subprocess.DEVNULL,
                                           stderr=subprocess.DEVNULL))
            wait_for_port(island.ns.address, port, timeout=10)
            return port

    try:
        yield Proxies()
    finally:
        for proc in started:
            proc.kill()
            proc.wait()


def strategy_with(target: DatabaseTarget, tunnel: TunnelSettings | None = None,
                  proxy: ProxySettings | None = None) -> Strategy:
    return Strategy(name="island", databases=(target,), s3=S3Settings(bucket="unused"), tunnel=tunnel, proxy=proxy)


class EventLog(list):
    """Records the worker's events as (type, fields) for assertions."""

    def __call__(self, type: str, database: str | None = None, **fields) -> None:
        self.append((type, fields))

    def lines(self, stream: str) -> list[str]:
        return [fields["line"] for type, fields in self if type == "log" and fields.get("stream") == stream]


def dump_through_route(strategy: Strategy, private_dir: Path, emit: Callable[..., None],
                       on_chunk: Callable[[int], None] | None = None) -> bytes:
    """Dump the strategy's first database the way the worker does, through open_route; return pg_dump's output.

    Raise EasybackupError (the route's precise error, or pg_dump's classified one) if the dump fails.
    """
    target = strategy.databases[0]
    chunks, total = [], 0
    with open_route(strategy, target, private_dir, emit) as routed:
        assert routed.name == target.name and "127.0.0.1" in routed.url
        with PostgresSource(routed, PgDumpSettings(), private_dir, compress_externally=False) as source:
            with Pipeline([source.dump_stage()]) as pipeline:
                while chunk := _read(pipeline.output_fd):
                    chunks.append(chunk)
                    total += len(chunk)
                    if on_chunk is not None:
                        on_chunk(total)
                try:
                    pipeline.wait()
                except StageFailed as failure:
                    raise source.classify_failure(failure) from failure
    return b"".join(chunks)


def _read(fd: int) -> bytes:
    return os.read(fd, 1 << 16)


def restores_identically(pg, island: Island, dump: bytes, name: str) -> bool:
    """Restore a custom-format dump of `island` into the root namespace's cluster; compare every table."""
    pg.create_database(name)
    restore_dump(pg, dump, "custom", name)
    return pg.table_fingerprints(name) == island.fingerprints


def ssh_pids(under: Path) -> list[int]:
    """Return the pids of running ssh clients whose argv names a file under `under` (the route's ssh_config)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
            except OSError:
                continue
            if argv and Path(argv[0]).name == "ssh" and any(arg.startswith(str(under)) for arg in argv):
                found.append(int(entry.name))
    return found


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True
