"""A local forwarder through a SOCKS5 or HTTP CONNECT proxy, on a thread of the worker.

libpq has no proxy support, so pg_dump connects to 127.0.0.1:<port> and the forwarder carries each connection
through the proxy (python-socks does the SOCKS5 / CONNECT handshake) to the database as the proxy sees it:

    forwarder = ProxyForwarder("socks5://user:pass@proxy:1080", "db.internal", 5432)
    port = forwarder.start()        # probes the whole path first: a bad password fails here, precisely
    ...                             # pg_dump connects to 127.0.0.1:port
    problem = forwarder.failure()   # the first error a connection met, if any
    forwarder.stop()                # always: closes the listener and every connection, joins the threads
"""

from __future__ import annotations

import selectors
import socket
import threading
from urllib.parse import unquote, urlsplit

from python_socks import ProxyConnectionError, ProxyError, ProxyTimeoutError, ProxyType
from python_socks.sync import Proxy

from easybackup.errors import EasybackupError
from easybackup.network.http_connect import http_connect
from easybackup.secrets import register_secret

CONNECT_TIMEOUT_S = 15.0
_POLL_S = 0.2  # how often threads look at the stop flag when nothing happens
_CHUNK = 1 << 16
_TRANSIENT_REPLIES = {3, 4, 5, 6, 502, 503, 504}  # SOCKS: network/host unreachable, refused, TTL; HTTP: gateway


def proxy_url_parts(url: str) -> tuple[str, str, int, str | None, str | None]:
    """Given a proxy URL, return (scheme, host, port, username, password), percent-decoded.

    Raise EasybackupError (kind config) if it is not socks5://, socks5h:// or http:// with a host and a port.
    """
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme not in ("socks5", "socks5h", "http") or not parts.hostname or port is None:
        raise EasybackupError("proxy: the URL must be socks5://[user:pass@]host:port or http://[user:pass@]host:port",
                              kind="config")
    user = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    return parts.scheme, parts.hostname, port, user, password


def describe_proxy(url: str) -> str:
    """Given a proxy URL, return "socks5 proxy host:port (with authentication)" — never the password."""
    scheme, host, port, user, _password = proxy_url_parts(url)
    kind = "HTTP CONNECT" if scheme == "http" else scheme
    return f"{kind} proxy {host}:{port}" + (f" (user {user})" if user else "")


def _make_proxy(url: str) -> Proxy:
    scheme, host, port, user, password = proxy_url_parts(url)
    register_secret(password)
    if scheme == "http":
        return Proxy(ProxyType.HTTP, host, port, username=user, password=password)
    # socks5h and socks5 alike: the proxy resolves the database's host name, as the database URL names it for
    # the network behind the proxy, not for this machine.
    return Proxy(ProxyType.SOCKS5, host, port, username=user, password=password, rdns=True)


def classify_proxy_error(exc: Exception, proxy: str, target: str, timeout: float) -> EasybackupError:
    """Given what python-socks raised, the proxy's description and the target, return the operator's error."""
    if isinstance(exc, TimeoutError):  # ProxyTimeoutError is one
        return EasybackupError(f"proxy: {proxy} did not answer within {timeout:g}s", detail=str(exc),
                               hint="check that the proxy is up and reachable from this machine",
                               kind="connection", transient=True)
    if isinstance(exc, ProxyConnectionError) or not isinstance(exc, ProxyError):
        return EasybackupError(f"proxy: {proxy} is unreachable", detail=str(exc),
                               hint="check the proxy's host and port in proxy.url, and that it is up",
                               kind="connection", transient=True)
    text, code = str(exc), exc.error_code
    if code == 407 or "authentication failure" in text.lower():
        return EasybackupError(f"proxy: {proxy} rejected the user name or password", detail=text,
                               hint="check the user and password in proxy.url", kind="authentication")
    if "no acceptable authentication" in text.lower():
        return EasybackupError(f"proxy: {proxy} requires authentication that proxy.url does not give", detail=text,
                               hint="add user:password@ to proxy.url", kind="authentication")
    return EasybackupError(f"proxy: {proxy} refused the connection to {target}", detail=text,
                           hint=f"check that the proxy may connect to {target} (its rules, e.g. tinyproxy "
                                "ConnectPort) and that the database is up as the proxy sees it",
                           kind="connection", transient=code in _TRANSIENT_REPLIES)


class ProxyForwarder:
    """Listens on 127.0.0.1:<free port>; carries each accepted connection through the proxy to dest_host:dest_port."""

    def __init__(self, proxy_url: str, dest_host: str, dest_port: int, connect_timeout: float = CONNECT_TIMEOUT_S):
        self.proxy_url = proxy_url
        self.dest_host = dest_host
        self.dest_port = dest_port
        self.connect_timeout = connect_timeout
        self.description = describe_proxy(proxy_url)
        self.local_port: int | None = None
        self._proxy = _make_proxy(proxy_url)
        scheme, host, port, user, password = proxy_url_parts(proxy_url)
        # HTTP CONNECT is ours (http_connect.py): python-socks can drop the first bytes of a server that speaks first.
        self._http = ((host, port), None if user is None else (user, password or "")) if scheme == "http" else None
        self._listener: socket.socket | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._first_error: EasybackupError | None = None
        self._threads: list[threading.Thread] = []
        self._sockets: set[socket.socket] = set()

    @property
    def target(self) -> str:
        return f"{self.dest_host}:{self.dest_port}"

    def start(self) -> int:
        """Probe the path through the proxy, then listen; return the local port.

        Raise EasybackupError (proxy unreachable, authentication failed, target refused) if the probe fails.
        """
        self._open_upstream().close()
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        listener.settimeout(_POLL_S)
        self._listener = listener
        self.local_port = listener.getsockname()[1]
        self._spawn(self._accept_loop, "proxy-accept")
        return self.local_port

    def failure(self) -> EasybackupError | None:
        """Return the first error a forwarded connection met, or None."""
        with self._lock:
            return self._first_error

    def stop(self) -> None:
        """Close the listener and every open connection, then join every thread (idempotent)."""
        self._stopping.set()
        with self._lock:
            live = list(self._sockets)
        for sock in live:
            _shutdown(sock)
        for thread in list(self._threads):
            thread.join()
        if self._listener is not None:
            self._listener.close()

    # -- threads -------------------------------------------------------------------------------------------

    def _spawn(self, target, name: str, *args) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        with self._lock:
            self._threads.append(thread)
        thread.start()

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                client, _address = self._listener.accept()
            except TimeoutError:
                continue
            except OSError as exc:
                self._record(EasybackupError("proxy: the local forwarder stopped accepting", detail=str(exc)))
                return
            client.settimeout(None)
            self._spawn(self._serve, "proxy-conn", client)

    def _serve(self, client: socket.socket) -> None:
        self._track(client)
        try:
            try:
                upstream = self._open_upstream()
            except EasybackupError as error:
                self._record(error)
                return
            self._track(upstream)
            with upstream:
                self._pump(client, upstream)
        finally:
            self._untrack(client)
            client.close()

    def _open_upstream(self) -> socket.socket:
        try:
            if self._http is not None:
                sock = http_connect(*self._http, self.dest_host, self.dest_port, self.connect_timeout)
            else:
                sock = self._proxy.connect(self.dest_host, self.dest_port, timeout=self.connect_timeout)
        except (ProxyError, ProxyTimeoutError, ProxyConnectionError, OSError) as exc:
            raise classify_proxy_error(exc, self.description, self.target, self.connect_timeout) from exc
        sock.settimeout(None)  # a dump may pause for long (locks, big tables); liveness is the watchdog's job
        return sock

    def _pump(self, client: socket.socket, upstream: socket.socket) -> None:
        """Copy bytes both ways until both sides have closed or we are stopping; half-closes pass through."""
        sink = {client: upstream, upstream: client}
        with selectors.DefaultSelector() as selector:
            for sock in sink:
                selector.register(sock, selectors.EVENT_READ)
            while sink and not self._stopping.is_set():
                for key, _events in selector.select(_POLL_S):
                    source = key.fileobj
                    if not self._copy(source, sink[source], is_upstream=source is upstream):
                        selector.unregister(source)
                        del sink[source]
        self._untrack(upstream)

    def _copy(self, source: socket.socket, sink: socket.socket, is_upstream: bool) -> bool:
        """Copy one chunk; return False when `source` has closed (its half-close is passed on)."""
        try:
            data = source.recv(_CHUNK)
            if data:
                sink.sendall(data)
                return True
        except OSError as exc:
            if is_upstream and not self._stopping.is_set():
                self._record(EasybackupError(f"proxy: the connection through {self.description} to {self.target} "
                                             "was cut", detail=str(exc), kind="connection", transient=True))
            _shutdown(sink)
            return False
        try:
            sink.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the other side is gone already; its own read reports that
        return False

    # -- bookkeeping ---------------------------------------------------------------------------------------

    def _record(self, error: EasybackupError) -> None:
        with self._lock:
            if self._first_error is None:
                self._first_error = error

    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.add(sock)

    def _untrack(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.discard(sock)


def _shutdown(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already closed by its peer: nothing left to stop
