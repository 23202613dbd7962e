"""An HTTP server in the test process that speaks the part of Prometheus' Pushgateway API a push uses.

`PUT /metrics/job/<job>[/<label>/<value>...]` replaces that group with the body (text exposition format, parsed
with prometheus_client's parser, so a malformed body answers 400 as the real one does); `POST` adds to it.
Every request is recorded in `.pushes`; `status` (e.g. 500) makes every answer fail.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote

from prometheus_client.parser import text_string_to_metric_families


@dataclass
class Push:
    method: str
    path: str
    grouping: dict[str, str]
    body: str


class Pushgateway:
    """Start with `with Pushgateway() as gateway:`; `gateway.url` is `http://127.0.0.1:<port>`."""

    def __init__(self):
        self.pushes: list[Push] = []
        self.groups: dict[tuple, dict] = {}
        self.status: int | None = None
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            def do_PUT(self):  # noqa: N802 - http.server's naming
                gateway._handle(self, replace=True)

            def do_POST(self):  # noqa: N802
                gateway._handle(self, replace=False)

            def log_message(self, *_args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> Pushgateway:
        self._thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handle(self, request: BaseHTTPRequestHandler, *, replace: bool) -> None:
        body = request.rfile.read(int(request.headers.get("Content-Length") or 0)).decode()
        parts = [unquote(part) for part in request.path.split("/")[2:]]  # after /metrics/
        grouping = dict(zip(parts[::2], parts[1::2], strict=False))
        self.pushes.append(Push(request.command, request.path, grouping, body))
        if self.status is not None or not request.path.startswith("/metrics/job/") or len(parts) % 2:
            return self._answer(request, self.status or 404)
        try:
            families = {family.name: family for family in text_string_to_metric_families(body)}
        except ValueError:
            return self._answer(request, 400)
        key = tuple(sorted(grouping.items()))
        self.groups[key] = families if replace else {**self.groups.get(key, {}), **families}
        return self._answer(request, 200)

    @staticmethod
    def _answer(request: BaseHTTPRequestHandler, status: int) -> None:
        request.send_response(status)
        request.send_header("Content-Length", "0")
        request.end_headers()

    def samples(self, job: str) -> dict[tuple, float]:
        """Given a job, return {(sample name, sorted labels): value} of its group."""
        families = self.groups.get((("job", job),), {})
        return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
                for family in families.values() for sample in family.samples}
