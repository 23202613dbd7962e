"""How the worker reaches a database: directly, through an SSH tunnel, or through a SOCKS5/HTTP CONNECT proxy.

    with open_route(strategy, target, private_dir, emit, cancel=cancel) as routed:
        with engine.dump_source(routed, ...) as source:   # routed.url: the route's local end
            ...

The database URL keeps the host and port as the bastion or the proxy sees them; the dump program gets the same
URL pointed at the local end of the route (the engine says how: for PostgreSQL `hostaddr=127.0.0.1` and the
local port, its host name kept for TLS).
Whatever happens inside the block (success, failure, timeout, cancellation), leaving it stops the tunnel or the
forwarder. When the block fails while the route recorded a
problem of its own (the bastion went away, the proxy refused the target), that precise error is raised
instead of the dump program's vaguer "server closed the connection unexpectedly".
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from easybackup.config.model import DatabaseTarget, Strategy
from easybackup.engines import engine_for_url
from easybackup.errors import EasybackupError
from easybackup.logs import log
from easybackup.network.ssh_tunnel import READY_TIMEOUT_S, SshTunnel, describe_tunnel

LOCAL_HOST = "127.0.0.1"  # where tunnels and forwarders listen
# Errors of the database connection that a broken route explains better.
_ROUTE_EXPLAINS = frozenset({"connection", "dump_failed", "timeout"})


def logging_emit(level: str) -> Callable[..., None]:
    """Given a log level, return an event callback for open_route outside a worker (validate, restore): it logs
    each line ssh or the forwarder prints, as `stream: line`, where a worker would send a `log` event."""
    def emit(type: str, database: str | None = None, **fields) -> None:
        log.log(level.upper(), "{}: {}", fields.get("stream", "route"), fields.get("line", ""))

    return emit


def describe_route(strategy: Strategy) -> str:
    """Given a strategy, return how it reaches its databases, without secrets: "direct",
    "via ssh tunnel user@bastion:22 (jump: j1)" or "via socks5 proxy proxy:1080 (user u)"."""
    if strategy.tunnel is not None:
        return f"via {describe_tunnel(strategy.tunnel)}"
    if strategy.proxy is not None:
        from easybackup.network.proxy_forwarder import describe_proxy  # see _ProxyRoute

        return f"via {describe_proxy(strategy.proxy.url)}"
    return "direct"


def local_target(target: DatabaseTarget, port: int) -> DatabaseTarget:
    """Given a database and the local port of its route, return it pointed at the route's local end, as its engine
    rewrites the URL (the host name kept for TLS and the passfile, the local address and port)."""
    return replace(target, url=engine_for_url(target.url).routed_url(target.url, LOCAL_HOST, port))


@contextmanager
def open_route(strategy: Strategy, target: DatabaseTarget, private_dir: Path, emit: Callable[..., None],
               cancel: threading.Event | None = None) -> Iterator[DatabaseTarget]:
    """Given a strategy, a database, the run's private dir and the event callback, open the route to the database
    and yield the DatabaseTarget the engine's programs should use; stop the route on every way out of the block.

    Raise EasybackupError (connection/authentication, precise) if the route cannot be opened, or if the block
    fails while the route has recorded a problem of its own.
    """
    if strategy.tunnel is None and strategy.proxy is None:
        yield target
        return
    url = engine_for_url(target.url).parse_url(target.url)
    if strategy.tunnel is not None:
        route = _TunnelRoute(strategy, url.host, url.port, Path(private_dir), emit, target.name)
    else:
        route = _ProxyRoute(strategy, url.host, url.port, emit, target.name)
    port = route.start(cancel)
    try:
        yield local_target(target, port)
    except EasybackupError as error:
        better = route.failure_after(error)
        if better is not None:
            raise better from error
        raise
    finally:
        route.stop()


class _TunnelRoute:
    def __init__(self, strategy: Strategy, host: str, port: int, private_dir: Path, emit, database: str):
        self.emit = emit
        self.database = database
        self.description = describe_tunnel(strategy.tunnel)
        self.tunnel = SshTunnel(strategy.tunnel, host, port, private_dir, on_line=self._log)

    def start(self, cancel: threading.Event | None) -> int:
        self.emit("log", database=self.database, stream="worker", level="info",
                  line=f"opening {self.description} to {self.tunnel.dest_host}:{self.tunnel.dest_port}")
        port = self.tunnel.start(READY_TIMEOUT_S, cancel)
        self.emit("log", database=self.database, stream="worker", level="info",
                  line=f"{self.description} is open on {LOCAL_HOST}:{port}")
        return port

    def failure_after(self, error: EasybackupError) -> EasybackupError | None:
        if error.kind not in _ROUTE_EXPLAINS:
            return None
        self.tunnel.settle_after_failure()
        return self.tunnel.failure()

    def stop(self) -> None:
        self.tunnel.stop()

    def _log(self, stage: str, line: str) -> None:
        self.emit("log", database=self.database, stream=stage, level="info", line=line)


class _ProxyRoute:
    def __init__(self, strategy: Strategy, host: str, port: int, emit, database: str):
        self.emit = emit
        self.database = database
        # Imported here: python_socks would add ~20 ms to the start of every worker, proxy or not.
        from easybackup.network.proxy_forwarder import ProxyForwarder

        self.forwarder = ProxyForwarder(strategy.proxy.url, host, port)

    def start(self, cancel: threading.Event | None) -> int:
        port = self.forwarder.start()
        self.emit("log", database=self.database, stream="worker", level="info",
                  line=f"forwarding {LOCAL_HOST}:{port} through {self.forwarder.description} "
                       f"to {self.forwarder.target}")
        return port

    def failure_after(self, error: EasybackupError) -> EasybackupError | None:
        return self.forwarder.failure() if error.kind in _ROUTE_EXPLAINS else None

    def stop(self) -> None:
        self.forwarder.stop()
