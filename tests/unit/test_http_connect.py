"""HTTP CONNECT leaves the server's first bytes for the client even when the proxy's reply and the greeting of a
server that speaks first (MySQL) arrive in one packet; refusals carry the HTTP status for classification."""

from __future__ import annotations

import socket
import threading

import pytest
from python_socks import ProxyError

from easybackup.network.http_connect import http_connect


def one_shot_proxy(reply: bytes) -> tuple[tuple[str, int], list[bytes]]:
    """Start a proxy that reads one CONNECT request, answers `reply` in a single send and closes; return its
    address and the list the request will be put in."""
    listener = socket.create_server(("127.0.0.1", 0))
    requests: list[bytes] = []

    def serve() -> None:
        with listener, listener.accept()[0] as conn:
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(4096)
            requests.append(data)
            conn.sendall(reply)

    threading.Thread(target=serve, daemon=True).start()
    return listener.getsockname(), requests


def test_the_greeting_sent_with_the_reply_is_left_for_the_client():
    greeting = b"\x5b\x00\x00\x00\x0a11.4.2-MariaDB greeting"
    address, requests = one_shot_proxy(b"HTTP/1.1 200 Connection established\r\nProxy-agent: x\r\n\r\n" + greeting)
    with http_connect(address, ("dumper", "Proxy-Pw-1"), "db.internal", 3306, timeout=5) as sock:
        received = b""
        while len(received) < len(greeting):
            received += sock.recv(4096)
    assert received == greeting
    assert requests[0].startswith(b"CONNECT db.internal:3306 HTTP/1.1\r\nHost: db.internal:3306\r\n")
    assert b"Proxy-Authorization: Basic ZHVtcGVyOlByb3h5LVB3LTE=\r\n" in requests[0]


@pytest.mark.parametrize("reply, code", [(b"HTTP/1.0 407 Proxy Authentication Required\r\n\r\n", 407),
                                         (b"HTTP/1.0 403 Forbidden\r\nX: y\r\n\r\n", 403)])
def test_a_refusal_carries_its_status(reply, code):
    address, _ = one_shot_proxy(reply)
    with pytest.raises(ProxyError) as refused:
        http_connect(address, None, "db.internal", 3306, timeout=5)
    assert refused.value.error_code == code


def test_a_proxy_that_closes_without_answering_is_an_error():
    address, _ = one_shot_proxy(b"")
    with pytest.raises(ProxyError, match="closed the connection"):
        http_connect(address, None, "db.internal", 3306, timeout=5)
