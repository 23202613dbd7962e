"""MySQL through the SSH, SOCKS5 and HTTP CONNECT routes exactly as PostgreSQL: a MariaDB server that only listens
inside a network namespace is dumped through each route, and the dump restores table for table."""

from __future__ import annotations

import contextlib
import os
import subprocess

import pytest

from easybackup.config.model import DatabaseTarget, ProxySettings, S3Settings, Strategy, TunnelSettings
from easybackup.engines import engine_for_url
from easybackup.network.routes import open_route
from easybackup.pipeline.stages import Pipeline, StageFailed
from tests.conftest import REPO
from tests.harness.mariadb import NamespacedMariaDB
from tests.harness.net import free_port, wait_for_port
from tests.harness.netns import network_namespace
from tests.harness.sshd import SshServer, make_key
from tests.integration.tunnels.conftest import PROXY_PASSWORD, PROXY_USER, EventLog

pytestmark = pytest.mark.timeout(180)

DATABASE = "island_shop"


@pytest.fixture(scope="module")
def maria_island():
    """A namespace with MariaDB on its own loopback and the corpus in `island_shop`."""
    with network_namespace("m") as ns:
        server = NamespacedMariaDB(ns)
        try:
            server.init()
            server.create_database(DATABASE)
            server.sql_file(REPO / "tests" / "fixtures" / "mysql_dataset.sql", DATABASE)
            yield server
        finally:
            server.destroy()


def dump_through(strategy: Strategy, private_dir) -> bytes:
    """Dump the strategy's database as the worker does, through open_route and the engine; return the dump."""
    target = strategy.databases[0]
    engine = engine_for_url(target.url)
    with open_route(strategy, target, private_dir, EventLog()) as routed:
        assert "127.0.0.1" in routed.url
        with engine.dump_source(routed, strategy, private_dir) as source:
            chunks = []
            with Pipeline([source.dump_stage()], count_after=source.stage_name, keep_tail=True) as pipeline:
                while chunk := os.read(pipeline.output_fd, 1 << 16):
                    chunks.append(chunk)
                try:
                    pipeline.wait()
                except StageFailed as failure:
                    raise source.classify_failure(failure) from failure
                source.check_dump(pipeline.head, pipeline.tail, pipeline.bytes_counted, [])
    return b"".join(chunks)


def restores_identically(mariadb, island, dump: bytes, name: str) -> bool:
    mariadb.drop_database(name)
    mariadb.sql(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    mariadb.sql(dump.decode("utf-8"), name)
    return mariadb.table_fingerprints(name) == island.table_fingerprints(DATABASE)


def strategy_for(island, tunnel=None, proxy=None) -> Strategy:
    target = DatabaseTarget(DATABASE, island.url(DATABASE))  # 127.0.0.1 as the bastion or the proxy sees it
    return Strategy(name="island", databases=(target,), s3=S3Settings(bucket="unused"), tunnel=tunnel, proxy=proxy)


def test_the_server_is_unreachable_without_a_route(maria_island):
    done = subprocess.run(["mariadb", "--no-defaults", "-h", "127.0.0.1", "-P", str(maria_island.port), "-uroot",
                           "--connect-timeout=5", "-e", "select 1"], capture_output=True, text=True, timeout=30)
    assert done.returncode != 0 and "2002" in done.stderr


def test_a_dump_through_an_ssh_tunnel_restores_to_identical_tables(maria_island, mariadb, tmp_path):
    key = make_key(tmp_path, "id_ed25519")
    server = SshServer(maria_island.ns, maria_island.ns.address, 22, [key.public], "any").start()
    try:
        known_hosts = tmp_path / "known_hosts"
        known_hosts.write_text(server.known_hosts_line())
        tunnel = TunnelSettings(host=server.host, port=server.port, user="root", identity_file=str(key.private),
                                known_hosts_file=str(known_hosts))
        dump = dump_through(strategy_for(maria_island, tunnel=tunnel), tmp_path)
    finally:
        server.stop()
    assert restores_identically(mariadb, maria_island, dump, "restored_via_ssh")


@contextlib.contextmanager
def proxy_in(island, argv: list[str], port: int):
    """Run a proxy inside the island until the block ends; wait until it listens on `port`."""
    proxy = island.ns.popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(island.ns.address, port, timeout=10)
        yield
    finally:
        proxy.kill()
        proxy.wait()


def test_a_dump_through_socks5_restores_to_identical_tables(maria_island, mariadb, tmp_path):
    port = free_port()
    with proxy_in(maria_island, ["microsocks", "-i", maria_island.ns.address, "-p", str(port), "-u", PROXY_USER,
                                 "-P", PROXY_PASSWORD], port):
        url = f"socks5://{PROXY_USER}:{PROXY_PASSWORD}@{maria_island.ns.address}:{port}"
        dump = dump_through(strategy_for(maria_island, proxy=ProxySettings(url)), tmp_path)
    assert restores_identically(mariadb, maria_island, dump, "restored_via_socks5")


def test_a_dump_through_http_connect_restores_to_identical_tables(maria_island, mariadb, tmp_path):
    port = free_port()
    config = tmp_path / "tinyproxy.conf"
    config.write_text(f"Port {port}\nListen {maria_island.ns.address}\nTimeout 60\nMaxClients 20\n"
                      f"ConnectPort {maria_island.port}\nUser nobody\nGroup nogroup\n"
                      f"BasicAuth {PROXY_USER} {PROXY_PASSWORD}\n")
    with proxy_in(maria_island, ["tinyproxy", "-d", "-c", str(config)], port):
        url = f"http://{PROXY_USER}:{PROXY_PASSWORD}@{maria_island.ns.address}:{port}"
        dump = dump_through(strategy_for(maria_island, proxy=ProxySettings(url)), tmp_path)
    assert restores_identically(mariadb, maria_island, dump, "restored_via_http_connect")
