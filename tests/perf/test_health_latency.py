"""Benchmark: GET /health answers from memory — p99 of 1,000 requests under 50 ms (`make perf`)."""

from __future__ import annotations

import http.client
import json
import statistics
import threading
import time
from datetime import datetime, timedelta, timezone

from easybackup.config.model import DatabaseTarget, Endpoint, S3Settings, Strategy
from easybackup.monitoring.metrics import Metrics
from easybackup.monitoring.server import MonitoringServer
from easybackup.monitoring.state import MonitorState

REQUESTS = 1000
P99_LIMIT_MS = 50.0


def strategies(count: int) -> tuple[Strategy, ...]:
    return tuple(Strategy(name=f"db-{n}", s3=S3Settings(bucket="b"), schedule="6h",
                          databases=(DatabaseTarget(name="app", url="postgres://h/app"),)) for n in range(count))


def busy_state(configured: tuple[Strategy, ...]) -> MonitorState:
    state = MonitorState(configured)
    now = datetime.now(timezone.utc)
    for number, strategy in enumerate(configured):
        state.set_next_run(strategy.name, now + timedelta(hours=1))
        result = {"status": "success" if number % 3 else "failed", "duration_s": 12.0,
                  "error": {"kind": "connection", "message": "connection timeout"},
                  "databases": [{"database": "app", "status": "success", "size": 123456}]}
        state.run_finished(strategy.name, result, now)
    state.set_connectivity(s3="ok", slack="ok")
    return state


def test_health_p99_under_50_ms_while_the_loop_writes():
    configured = strategies(20)
    state, metrics = busy_state(configured), Metrics()
    server = MonitoringServer(Endpoint(port=0, path="/health", bind="127.0.0.1"),
                              Endpoint(port=0, path="/metrics", bind="127.0.0.1"), state, metrics).start()
    stop = threading.Event()

    def loop() -> None:  # stands in for the supervisor: heartbeats and run updates, contending for the lock
        while not stop.is_set():
            state.loop_heartbeat()
            state.run_started("db-1", "r", datetime.now(timezone.utc))
            time.sleep(0.001)

    writer = threading.Thread(target=loop, daemon=True)
    writer.start()
    port, timings = server.ports["health"], []
    try:
        for _ in range(REQUESTS):
            started = time.perf_counter()
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)  # a probe opens one each time
            connection.request("GET", "/health")
            response = connection.getresponse()
            body = response.read()
            connection.close()
            timings.append((time.perf_counter() - started) * 1000)
            assert response.status == 200 and json.loads(body)["strategies"]["total"] == 20
    finally:
        stop.set()
        writer.join()
        server.stop()
    timings.sort()
    p50, p99 = statistics.median(timings), timings[int(0.99 * len(timings)) - 1]
    print(f"\nGET /health x{REQUESTS} (20 strategies): p50 {p50:.2f} ms, p99 {p99:.2f} ms, max {timings[-1]:.2f} ms")
    assert p99 < P99_LIMIT_MS


def test_health_p99_under_50_ms_from_a_real_supervisor_while_a_backup_runs(pg, moto, bucket, tmp_path, fault_proxy):
    from tests.harness.configs import write_config
    from tests.harness.daemon import daemon_factory, monitoring
    from tests.harness.net import free_port

    pg.create_database("latency_bulky")
    pg.psql("CREATE TABLE t AS SELECT g, repeat(md5(g::text), 3) AS pad FROM generate_series(1, 30000) g",
            "latency_bulky")
    proxy = fault_proxy(pg.host, pg.port, "tcp")
    proxy.throttle(200_000)  # holds the backup running for ~15 s
    port = free_port()
    config = write_config(tmp_path, bucket=bucket, endpoint=moto.endpoint, run_on_start=True,
                          monitoring=monitoring(port),
                          strategies=[{"name": "bulky", "database_url": pg.url("latency_bulky", port=proxy.port)}])
    factory = daemon_factory(tmp_path)
    start = next(factory)
    try:
        daemon = start(config, port)
        daemon.wait_status("bulky", "running")
        timings, statuses = [], set()
        for _ in range(REQUESTS):
            started = time.perf_counter()
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            connection.request("GET", "/health")
            response = connection.getresponse()
            document = json.loads(response.read())
            connection.close()
            timings.append((time.perf_counter() - started) * 1000)
            statuses.add(document["strategies"]["last_backup_status"]["bulky"]["status"])
        assert statuses == {"running"}, "every request must have been served while the backup ran"
    finally:
        factory.close()
    timings.sort()
    p50, p99 = statistics.median(timings), timings[int(0.99 * len(timings)) - 1]
    print(f"\nGET /health x{REQUESTS} from `easybackup run` during a backup: p50 {p50:.2f} ms, p99 {p99:.2f} ms, "
          f"max {timings[-1]:.2f} ms")
    assert p99 < P99_LIMIT_MS
