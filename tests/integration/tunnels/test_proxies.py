"""Dumps through real SOCKS5 (microsocks) and HTTP CONNECT (tinyproxy) proxies to a PostgreSQL only they reach."""

from __future__ import annotations

import pytest

from easybackup.config.model import ProxySettings
from easybackup.errors import EasybackupError
from easybackup.network.routes import describe_route
from easybackup.secrets import mask
from tests.harness.configs import run_cli, write_config
from tests.harness.net import free_port
from tests.harness.restore import archive_keys, decompress, download
from tests.integration.tunnels.conftest import (
    PROXY_PASSWORD,
    PROXY_USER,
    EventLog,
    dump_through_route,
    restores_identically,
    strategy_with,
)


def test_a_dump_through_socks5_with_authentication_restores_to_identical_tables(island, proxies, workdir, pg):
    port = proxies.socks5()
    url = f"socks5://{PROXY_USER}:{PROXY_PASSWORD}@{island.ns.address}:{port}"
    strategy = strategy_with(island.target(), proxy=ProxySettings(url))
    events = EventLog()
    dump = dump_through_route(strategy, workdir, events)
    assert restores_identically(pg, island, dump, "restored_via_socks5")
    assert describe_route(strategy) == f"via socks5 proxy {island.ns.address}:{port} (user {PROXY_USER})"
    assert PROXY_PASSWORD not in repr(events) and PROXY_PASSWORD not in describe_route(strategy)
    assert mask(url) == f"socks5://{PROXY_USER}:***@{island.ns.address}:{port}"


def test_a_wrong_socks5_password_fails_as_proxy_authentication(island, proxies, workdir):
    port = proxies.socks5()
    url = f"socks5://{PROXY_USER}:Not-The-Password-1@{island.ns.address}:{port}"
    with pytest.raises(EasybackupError) as caught:
        dump_through_route(strategy_with(island.target(), proxy=ProxySettings(url)), workdir, EventLog())
    assert caught.value.kind == "authentication" and not caught.value.transient
    assert caught.value.message == (f"proxy: socks5 proxy {island.ns.address}:{port} (user {PROXY_USER}) "
                                    "rejected the user name or password")
    assert "Not-The-Password-1" not in mask(str(caught.value))


def test_a_socks5_proxy_without_credentials_says_it_requires_them(island, proxies, workdir):
    port = proxies.socks5()
    url = f"socks5://{island.ns.address}:{port}"
    with pytest.raises(EasybackupError) as caught:
        dump_through_route(strategy_with(island.target(), proxy=ProxySettings(url)), workdir, EventLog())
    assert caught.value.kind == "authentication"
    assert "requires authentication that proxy.url does not give" in caught.value.message


def test_a_dump_through_http_connect_restores_to_identical_tables(island, proxies, workdir, pg):
    port = proxies.http(connect_port=island.pg.port, basic_auth=(PROXY_USER, PROXY_PASSWORD))
    url = f"http://{PROXY_USER}:{PROXY_PASSWORD}@{island.ns.address}:{port}"
    strategy = strategy_with(island.target(), proxy=ProxySettings(url))
    dump = dump_through_route(strategy, workdir, EventLog())
    assert restores_identically(pg, island, dump, "restored_via_http_connect")
    assert describe_route(strategy) == f"via HTTP CONNECT proxy {island.ns.address}:{port} (user {PROXY_USER})"


def test_an_http_proxy_that_refuses_the_port_is_reported_as_refusing_the_target(island, proxies, workdir):
    port = proxies.http(connect_port=443)
    url = f"http://{island.ns.address}:{port}"
    with pytest.raises(EasybackupError) as caught:
        dump_through_route(strategy_with(island.target(), proxy=ProxySettings(url)), workdir, EventLog())
    assert caught.value.kind == "connection"
    assert caught.value.message == (f"proxy: HTTP CONNECT proxy {island.ns.address}:{port} refused the connection "
                                    f"to 127.0.0.1:{island.pg.port}")
    assert caught.value.detail.startswith("403")


def test_an_unreachable_proxy_is_reported_as_unreachable(island, workdir):
    port = free_port()
    url = f"socks5://{PROXY_USER}:{PROXY_PASSWORD}@{island.ns.address}:{port}"
    with pytest.raises(EasybackupError) as caught:
        dump_through_route(strategy_with(island.target(), proxy=ProxySettings(url)), workdir, EventLog())
    assert caught.value.kind == "connection" and caught.value.transient
    assert caught.value.message == f"proxy: socks5 proxy {island.ns.address}:{port} (user {PROXY_USER}) is unreachable"


def test_once_backs_up_through_a_socks5_proxy(island, proxies, pg, moto, bucket, tmp_path):
    port = proxies.socks5()
    url = f"socks5://{PROXY_USER}:{PROXY_PASSWORD}@{island.ns.address}:{port}"
    config = write_config(tmp_path, bucket=bucket, endpoint=moto.endpoint,
                          strategies=[{"name": "island", "database_url": island.url(), "proxy": {"url": url}}])
    result = run_cli("once", "-c", str(config), timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    [key] = archive_keys(moto, bucket)
    assert restores_identically(pg, island, decompress(download(moto, bucket, key), "gzip"), "restored_once_socks5")
    assert PROXY_PASSWORD not in result.stdout + result.stderr


def test_once_reports_a_wrong_proxy_password_precisely(island, proxies, moto, bucket, tmp_path):
    port = proxies.socks5()
    url = f"socks5://{PROXY_USER}:Wrong-Proxy-Pw-9@{island.ns.address}:{port}"
    config = write_config(tmp_path, bucket=bucket, endpoint=moto.endpoint,
                          strategies=[{"name": "island", "database_url": island.url(), "proxy": {"url": url}}])
    result = run_cli("once", "-c", str(config), timeout=120)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "rejected the user name or password" in result.stdout
    assert "Wrong-Proxy-Pw-9" not in result.stdout + result.stderr
    assert archive_keys(moto, bucket) == [] and moto.open_uploads(bucket) == []
