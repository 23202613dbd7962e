"""HTTP CONNECT through a proxy, reading its reply to the blank line that ends it and not one byte further.

python-socks reads the proxy's reply with a single recv(): when the server behind the proxy speaks first (MySQL
and MariaDB send their greeting at once), its first bytes can arrive in that same read and are dropped with the
reply, and the client then waits for a greeting that never comes ("Lost connection ... reading initial
communication packet"). PostgreSQL's client speaks first, so it never showed there.
"""

from __future__ import annotations

import base64
import socket

from python_socks import ProxyError

MAX_REPLY_BYTES = 16384  # a CONNECT reply is a status line and a few headers


def http_connect(proxy: tuple[str, int], credentials: tuple[str, str] | None, host: str, port: int,
                 timeout: float) -> socket.socket:
    """Given the proxy's address, its user and password (or None) and the target, return a socket connected
    through the proxy to the target. Raise ProxyError (error_code: the HTTP status) when the proxy refuses, OSError
    (TimeoutError among them) when it cannot be reached or does not answer."""
    sock = socket.create_connection(proxy, timeout=timeout)
    try:
        target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        lines = [f"CONNECT {target} HTTP/1.1", f"Host: {target}"]
        if credentials is not None:
            token = base64.b64encode(f"{credentials[0]}:{credentials[1]}".encode()).decode()
            lines.append(f"Proxy-Authorization: Basic {token}")
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        status_line = _read_reply(sock).split(b"\r\n", 1)[0].decode("latin-1")
        parts = status_line.split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
            raise ProxyError(f"the proxy's reply to CONNECT is not HTTP: {status_line[:80]!r}")
        if parts[1] != "200":
            raise ProxyError(f"{parts[1]} {parts[2] if len(parts) > 2 else ''}".strip(), error_code=int(parts[1]))
        return sock
    except BaseException:
        sock.close()
        raise


def _read_reply(sock: socket.socket) -> bytes:
    """Read the proxy's reply up to and including its blank line; leave what follows (the server's) unread."""
    reply = b""
    while True:
        peeked = sock.recv(4096, socket.MSG_PEEK)
        if not peeked:
            raise ProxyError("the proxy closed the connection before it answered CONNECT")
        end = (reply + peeked).find(b"\r\n\r\n")
        take = len(peeked) if end < 0 else end + 4 - len(reply)
        reply += sock.recv(take)  # no more than was peeked: those bytes are in the buffer already
        if end >= 0:
            return reply
        if len(reply) > MAX_REPLY_BYTES:
            raise ProxyError("the proxy's reply to CONNECT does not end")
