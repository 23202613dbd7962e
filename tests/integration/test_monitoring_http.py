"""The monitoring HTTP endpoints on real sockets, and the connectivity checks against moto's S3 server."""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone

import pytest
from loguru import logger
from prometheus_client.parser import text_string_to_metric_families

from easybackup.config.model import DatabaseTarget, Endpoint, S3Settings, Strategy
from easybackup.errors import EasybackupError
from easybackup.logs import setup_logging
from easybackup.monitoring.connectivity import ConnectivityChecker
from easybackup.monitoring.metrics import Metrics
from easybackup.monitoring.server import MonitoringServer
from easybackup.monitoring.state import MonitorState
from tests.harness.moto_server import ACCESS_KEY, REGION, SECRET_KEY
from tests.harness.net import free_port


def strategy(name: str, bucket: str = "b", endpoint: str | None = None) -> Strategy:
    s3 = S3Settings(bucket=bucket, endpoint_url=endpoint, region=REGION, access_key=ACCESS_KEY,
                    secret_key=SECRET_KEY, force_path_style=True)
    return Strategy(name=name, s3=s3, databases=(DatabaseTarget(name="app", url="postgres://h/app"),))


def get(url: str) -> tuple[int, dict, bytes]:
    """GET `url`; return (status, headers, body) whatever the status."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


class Clock:
    def __init__(self):
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def parts():
    clock = Clock()
    strategies = (strategy("production-db"), strategy("staging-db"))
    state = MonitorState(strategies, clock=clock)
    state.loop_heartbeat()
    metrics = Metrics()
    metrics.declare_strategies(strategies)
    return state, metrics, clock


@pytest.fixture
def serve(parts):
    """A factory: serve(health_endpoint, metrics_endpoint) starts a MonitoringServer, stopped after the test."""
    state, metrics, _clock = parts
    servers = []

    def start(health: Endpoint, metrics_endpoint: Endpoint) -> MonitoringServer:
        server = MonitoringServer(health, metrics_endpoint, state, metrics).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def local(port: int = 0, path: str = "/health", enabled: bool = True) -> Endpoint:
    return Endpoint(enabled=enabled, port=port, path=path, bind="127.0.0.1")


def test_health_and_metrics_share_one_port(serve):
    server = serve(local(0, "/health"), local(0, "/metrics"))
    assert server.ports["health"] == server.ports["metrics"]
    port = server.ports["health"]
    status, headers, body = get(f"http://127.0.0.1:{port}/health")
    assert status == 200 and headers["Content-Type"] == "application/json"
    health = json.loads(body)
    assert health["status"] == "healthy" and health["strategies"]["total"] == 2
    assert health["strategies"]["last_backup_status"]["staging-db"]["status"] == "pending"
    status, headers, body = get(f"http://127.0.0.1:{port}/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
    names = {family.name for family in text_string_to_metric_families(body.decode())}
    assert "easybackup_backup_runs" in names and "easybackup_build_info" in names


def test_health_and_metrics_on_separate_ports(serve):
    health_port, metrics_port = free_port(), free_port()
    server = serve(local(health_port, "/healthz"), local(metrics_port, "/prom"))
    assert server.ports == {"health": health_port, "page": health_port, "metrics": metrics_port}
    assert get(f"http://127.0.0.1:{health_port}/healthz")[0] == 200
    assert get(f"http://127.0.0.1:{metrics_port}/prom")[0] == 200
    assert get(f"http://127.0.0.1:{health_port}/prom")[0] == 404
    assert get(f"http://127.0.0.1:{metrics_port}/healthz")[0] == 404


def test_other_paths_and_a_disabled_endpoint_answer_404(serve):
    server = serve(local(0, "/health"), local(0, "/metrics", enabled=False))
    port = server.ports["health"]
    assert "metrics" not in server.ports
    assert get(f"http://127.0.0.1:{port}/metrics")[0] == 404
    assert get(f"http://127.0.0.1:{port}/index.html")[0] == 404
    assert get(f"http://127.0.0.1:{port}/health/extra")[0] == 404
    assert get(f"http://127.0.0.1:{port}/health?verbose=1")[0] == 200


def test_only_get_is_allowed(serve):
    port = serve(local(0), local(0, "/metrics")).ports["health"]
    request = urllib.request.Request(f"http://127.0.0.1:{port}/health", data=b"{}", method="POST")
    with pytest.raises(urllib.error.HTTPError) as answer:
        urllib.request.urlopen(request, timeout=10)
    assert answer.value.code == 405 and answer.value.headers["Allow"] == "GET"


def test_a_stalled_loop_answers_503_with_the_json(serve, parts):
    _state, _metrics, clock = parts
    port = serve(local(0), local(0, "/metrics")).ports["health"]
    clock.now += 31
    status, headers, body = get(f"http://127.0.0.1:{port}/health")
    assert status == 503 and headers["Content-Type"] == "application/json"
    assert json.loads(body)["status"] == "unhealthy"


def test_the_bind_address_is_honoured(serve):
    """All of 127/8 is loopback on Linux: a server bound to 127.0.0.1 must not answer on 127.0.0.2."""
    port = serve(local(0), local(0, "/metrics")).ports["health"]
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.2", port), timeout=5).close()
    open_port = free_port()
    serve(Endpoint(port=open_port, path="/health", bind="0.0.0.0"), local(0, "/metrics", enabled=False))
    assert get(f"http://127.0.0.2:{open_port}/health")[0] == 200


def test_a_failing_endpoint_answers_500_and_keeps_serving(serve, parts, monkeypatch):
    state, _metrics, _clock = parts
    port = serve(local(0), local(0, "/metrics")).ports["health"]
    monkeypatch.setattr(state, "snapshot", lambda: 1 / 0)
    assert get(f"http://127.0.0.1:{port}/health")[0] == 500
    monkeypatch.undo()
    assert get(f"http://127.0.0.1:{port}/health")[0] == 200


def test_requests_are_not_logged_at_info(serve, capfd):
    setup_logging("info")
    try:
        port = serve(local(0), local(0, "/metrics")).ports["health"]
        for path in ("/health", "/metrics", "/nope"):
            get(f"http://127.0.0.1:{port}{path}")
        assert "GET /" not in capfd.readouterr().err
        setup_logging("debug")
        get(f"http://127.0.0.1:{port}/health")
        assert '"GET /health HTTP/1.1" 200' in capfd.readouterr().err
    finally:
        setup_logging("debug")


def test_a_port_in_use_names_the_address_and_the_config_key(parts):
    state, metrics, _clock = parts
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = MonitoringServer(local(port), local(port, "/metrics"), state, metrics)
        with pytest.raises(EasybackupError) as failure:
            server.start()
    text = str(failure.value)
    assert f"127.0.0.1:{port}" in text and "monitoring.health_check.port" in text
    assert "monitoring.metrics.port" in text and failure.value.kind == "config"


def test_a_failed_second_port_releases_the_first(parts):
    state, metrics, _clock = parts
    first = free_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        server = MonitoringServer(local(first), local(taken.getsockname()[1], "/metrics"), state, metrics)
        with pytest.raises(EasybackupError, match="monitoring.metrics.port"):
            server.start()
    with socket.socket() as again:  # the first port is free again
        again.bind(("127.0.0.1", first))


def test_health_and_metrics_on_the_same_port_and_path_is_a_config_error(parts):
    state, metrics, _clock = parts
    with pytest.raises(EasybackupError, match="both want"):
        MonitoringServer(local(0, "/x"), local(0, "/x"), state, metrics)


# --- connectivity, against moto's S3 server ----------------------------------------------------------------------

def test_connectivity_starts_unknown_then_reports_ok(moto, bucket, parts):
    state, _metrics, _clock = parts
    assert state.snapshot()[1]["s3_connectivity"] == "unknown"
    checker = ConnectivityChecker((strategy("a", bucket, moto.endpoint),), state, slack_check=lambda: "ok")
    assert checker.check_now() == ("ok", "ok")
    health = state.snapshot()[1]
    assert (health["s3_connectivity"], health["slack_connectivity"], health["status"]) == ("ok", "ok", "healthy")


def test_one_unreachable_bucket_makes_s3_error_and_health_degraded(moto, bucket, parts):
    state, _metrics, _clock = parts
    strategies = (strategy("a", bucket, moto.endpoint), strategy("b", "no-such-bucket-xyz", moto.endpoint))
    checker = ConnectivityChecker(strategies, state)
    assert checker.check_now() == ("error", "disabled")
    health = state.snapshot()[1]
    assert health["status"] == "degraded" and health["slack_connectivity"] == "disabled"


def test_an_outage_is_logged_once_not_every_check(moto, parts):
    state, _metrics, _clock = parts
    lines: list[str] = []
    sink = logger.add(lambda message: lines.append(str(message)), level="INFO", format="{message}")
    try:
        checker = ConnectivityChecker((strategy("a", "missing-bucket-q", moto.endpoint),), state,
                                      slack_check=lambda: (_ for _ in ()).throw(ConnectionError("refused")))
        for _ in range(3):
            assert checker.check_now() == ("error", "error")
    finally:
        logger.remove(sink)
    assert sum("S3 connectivity check of s3://missing-bucket-q" in line for line in lines) == 1
    assert sum("Slack connectivity check failed: ConnectionError: refused" in line for line in lines) == 1
    assert SECRET_KEY not in "".join(lines)


def test_the_background_thread_feeds_what_health_serves(moto, bucket, parts, serve):
    state, _metrics, _clock = parts
    port = serve(local(0), local(0, "/metrics")).ports["health"]
    checker = ConnectivityChecker((strategy("a", bucket, moto.endpoint),), state, interval=0.2,
                                  slack_check=lambda: "ok").start()
    try:
        deadline = time.monotonic() + 20
        while json.loads(get(f"http://127.0.0.1:{port}/health")[2])["s3_connectivity"] != "ok":
            assert time.monotonic() < deadline, "the checker never reported"
            time.sleep(0.05)
    finally:
        checker.stop()
    health = json.loads(get(f"http://127.0.0.1:{port}/health")[2])
    assert health["slack_connectivity"] == "ok"
    assert datetime.strptime(health["timestamp"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
