"""Session-wide real parts. Each fixture starts its part once and always cleans up after itself."""

from __future__ import annotations

import itertools
import os
import sys
from pathlib import Path

import pytest

from tests.harness.fault_proxy import FaultProxy
from tests.harness.mariadb import MariaDBServer
from tests.harness.moto_server import MotoServer
from tests.harness.postgres import PostgresCluster
from tests.harness.slack_server import SlackServer

REPO = Path(__file__).resolve().parent.parent
_bucket_numbers = itertools.count(1)


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: takes more than a few seconds")


@pytest.fixture(autouse=True)
def isolated_secret_registry():
    """Each test starts with the secrets masked process-wide as they were: one test's registered password (say
    `12345`) must not mask text in the next test's assertions."""
    import easybackup.secrets as secrets

    saved = set(secrets._known)
    yield
    with secrets._lock:
        secrets._known.clear()
        secrets._known.update(saved)


@pytest.fixture(scope="session")
def repo() -> Path:
    """The repository root."""
    return REPO


@pytest.fixture(scope="session")
def easybackup_cmd() -> list[str]:
    """argv prefix that runs the CLI exactly as an operator does, through bin/easybackup."""
    return [sys.executable, str(REPO / "bin" / "easybackup")]


@pytest.fixture(scope="session")
def pg():
    """A throwaway PostgreSQL cluster with password auth on a free port."""
    cluster = PostgresCluster().init()
    try:
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture(scope="session")
def pg_scratch():
    """A second throwaway PostgreSQL cluster, as an operator's scratch server for restore drills (started once for
    every drill test module)."""
    cluster = PostgresCluster().init()
    try:
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture(scope="session")
def mariadb():
    """A throwaway MariaDB server with a root password on a free loopback port."""
    server = MariaDBServer().init()
    try:
        yield server
    finally:
        server.destroy()


@pytest.fixture(scope="session")
def mariadb_scratch():
    """A second throwaway MariaDB server, as an operator's scratch server for restore drills and a fresh server for
    restoring users and grants: it has none of the `mariadb` server's users."""
    server = MariaDBServer().init()
    try:
        yield server
    finally:
        server.destroy()


@pytest.fixture(scope="session")
def moto():
    """moto's S3 server over HTTP on a free loopback port."""
    server = MotoServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def bucket(moto) -> str:
    """A fresh, empty bucket for one test."""
    return moto.create_bucket(f"test-bucket-{os.getpid()}-{next(_bucket_numbers)}")


@pytest.fixture
def aws_env(moto, monkeypatch):
    """Point boto3 in this process and in children at the moto server."""
    from tests.harness.moto_server import ACCESS_KEY, REGION, SECRET_KEY

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", moto.endpoint)
    return moto


@pytest.fixture(scope="session")
def slack_server():
    """The Slack Web API server, once per session; tests use `slack`, which resets it first."""
    server = SlackServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def slack(slack_server) -> SlackServer:
    """The Slack Web API server with no calls, messages or faults left from earlier tests."""
    slack_server.reset()
    return slack_server


@pytest.fixture
def fault_proxy():
    """A factory: fault_proxy(target_host, target_port, mode="tcp"|"http") starts a FaultProxy; every proxy it
    started is stopped at the end of the test."""
    proxies: list[FaultProxy] = []

    def start(target_host: str, target_port: int, mode: str = "tcp") -> FaultProxy:
        proxy = FaultProxy(target_host, target_port, mode).start()
        proxies.append(proxy)
        return proxy

    try:
        yield start
    finally:
        failures = []
        for proxy in proxies:
            try:
                proxy.stop()
            except RuntimeError as failure:  # stop the others first, then report it
                failures.append(failure)
        if failures:
            raise failures[0]
