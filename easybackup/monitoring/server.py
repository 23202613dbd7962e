"""The supervisor's HTTP endpoints: health JSON, the HTML status page and Prometheus metrics (DESIGN.md,
"Monitoring").

One ThreadingHTTPServer per distinct (bind, port) on a daemon thread, so health and metrics may share a port.
A request only reads memory (`state.snapshot()`, `state.page_snapshot()`, `metrics.render()`): it never waits on
S3, Slack or the loop, and the page is rendered after the state's lock is released.
"""

from __future__ import annotations

import json
import socket
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from easybackup.config.model import Endpoint
from easybackup.errors import EasybackupError
from easybackup.logs import log
from easybackup.monitoring.metrics import CONTENT_TYPE, Metrics
from easybackup.monitoring.page import ChartCache, render_page
from easybackup.monitoring.state import MonitorState

REQUEST_TIMEOUT_S = 10.0  # a client that sends nothing does not hold a thread forever
CONFIG_KEYS = {"health": "global.monitoring.health_check", "page": "global.monitoring.health_check",
               "metrics": "global.monitoring.metrics"}
HTML = "text/html; charset=utf-8"
# The page is inert: no script may run (not even one injected through a name that escaping missed), it loads
# nothing from anywhere (air-gapped hosts; no tracking), its inline <style> and SVG are all it needs, and no
# other site may frame it. `form-action`, `base-uri` and `frame-ancestors` do not fall back to default-src.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
                               "base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


class _Handler(BaseHTTPRequestHandler):
    """Serves the routes of its server (`server.routes`: path -> callable returning status, type, body)."""

    timeout = REQUEST_TIMEOUT_S
    server_version = "easybackup"
    sys_version = ""

    def do_GET(self) -> None:
        route = self.server.routes.get(urlsplit(self.path).path)
        if route is None:
            self._send(HTTPStatus.NOT_FOUND, "text/plain; charset=utf-8", b"not found\n")
            return
        try:
            status, content_type, body, *headers = route()
        except Exception as exc:  # noqa: BLE001 — a bug here must answer 500, not print a traceback per probe
            log.opt(exception=exc).error(f"monitoring endpoint {self.path} failed: {type(exc).__name__}: {exc}")
            self._send(HTTPStatus.INTERNAL_SERVER_ERROR, "text/plain; charset=utf-8", b"internal error\n")
            return
        self._send(status, content_type, body, headers=headers[0] if headers else None)

    def _not_allowed(self) -> None:
        self._send(HTTPStatus.METHOD_NOT_ALLOWED, "text/plain; charset=utf-8", b"only GET\n", allow="GET")

    do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _not_allowed

    def _send(self, status: int, content_type: str, body: bytes, allow: str | None = None,
              headers: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        if allow:
            self.send_header("Allow", allow)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, format: str, *args) -> None:  # http.server logs every request to stderr; we do at debug
        log.debug(f"monitoring http {self.address_string()}: {format % args}")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64  # probes and scrapes may arrive in bursts; the default backlog is 5
    routes: dict


class _Server6(_Server):
    address_family = socket.AF_INET6


class MonitoringServer:
    """Given the health and metrics endpoints, the state and the metrics, serve them and the status page (at the
    health endpoint's `page_path`); see `start()`."""

    def __init__(self, health: Endpoint, metrics_endpoint: Endpoint, state: MonitorState, metrics: Metrics):
        self.state = state
        self.metrics = metrics
        self._charts = ChartCache()
        self._groups: dict[tuple[str, int], dict] = {}  # (bind, port) -> {path: (name, route)}
        routes = (("health", health, health.path, self._health), ("page", health, health.page_path, self._page),
                  ("metrics", metrics_endpoint, metrics_endpoint.path, self._metrics))
        for name, endpoint, path, route in routes:
            if not endpoint.enabled:
                continue
            group = self._groups.setdefault((endpoint.bind, endpoint.port), {})
            if path in group:
                raise EasybackupError(f"{group[path][0]} and {name} both want {endpoint.bind}:{endpoint.port}{path}",
                                      hint=f"give {CONFIG_KEYS[name]}.{'page_path' if name == 'page' else 'path'} "
                                           "another path", kind="config")
            group[path] = (name, route)
        self._servers: list[tuple[_Server, threading.Thread]] = []
        self.ports: dict[str, int] = {}  # endpoint name -> the port it listens on (useful with port 0)

    def _health(self) -> tuple[int, str, bytes]:
        status, document = self.state.snapshot()
        return status, "application/json", json.dumps(document).encode() + b"\n"

    def _page(self) -> tuple[int, str, bytes, dict]:
        status, document, histories = self.state.page_snapshot()
        self._charts.keep_only(histories)
        return status, HTML, render_page(document, histories, chart_of=self._charts).encode(), PAGE_HEADERS

    def _metrics(self) -> tuple[int, str, bytes]:
        return HTTPStatus.OK, CONTENT_TYPE, self.metrics.render()

    def start(self) -> MonitoringServer:
        """Listen on every enabled endpoint; raise EasybackupError naming bind:port and the key if one cannot."""
        try:
            for (bind, port), group in self._groups.items():
                server = self._listen(bind, port, group)
                thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.5},
                                          name=f"monitoring-http-{bind}:{port}", daemon=True)
                thread.start()
                self._servers.append((server, thread))
                for path, (name, _route) in group.items():
                    self.ports[name] = server.server_address[1]
                    log.info(f"serving {name} on http://{bind}:{server.server_address[1]}{path}")
        except EasybackupError:
            self.stop()
            raise
        return self

    @staticmethod
    def _listen(bind: str, port: int, group: dict) -> _Server:
        try:
            server = (_Server6 if ":" in bind else _Server)((bind, port), _Handler)
        except OSError as exc:
            keys = " and ".join(dict.fromkeys(f"{CONFIG_KEYS[name]}.port" for name, _route in group.values()))
            raise EasybackupError(f"cannot listen on {bind}:{port} for {' and '.join(n for n, _ in group.values())}",
                                  detail=f"{type(exc).__name__}: {exc.strerror or exc}",
                                  hint=f"another process may use the port; change {keys} (or .bind)",
                                  kind="config") from exc
        server.routes = {path: route for path, (_name, route) in group.items()}
        return server

    def stop(self) -> None:
        """Stop listening and wait for the server threads; safe to call twice."""
        servers, self._servers = self._servers, []
        for server, thread in servers:
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)
