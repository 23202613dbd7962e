"""The status page over a real socket: headers, hostile names as text, its path, and its history read from S3."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from datetime import datetime, timedelta, timezone
from html.parser import HTMLParser
from pathlib import Path

import pytest

from easybackup.config.model import DatabaseTarget, Endpoint, S3Settings, Strategy
from easybackup.errors import EasybackupError
from easybackup.monitoring.metrics import Metrics
from easybackup.monitoring.server import MonitoringServer
from easybackup.monitoring.state import MonitorState
from easybackup.storage.manifest import Manifest, write_manifest
from easybackup.supervision.startup import read_history
from tests.harness.moto_server import ACCESS_KEY, REGION, SECRET_KEY

HOSTILE = "<script>alert('x')</script>"
PASSWORD = "Pw-Page-secret-4417"


class Tags(HTMLParser):
    def __init__(self, text: str):
        super().__init__()
        self.tags, self.text = [], []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)

    def handle_data(self, data):
        self.text.append(data)


def get(url: str) -> tuple[int, dict, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, dict(response.headers), response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read().decode()


def strategy(name: str, bucket: str = "b", endpoint: str | None = None) -> Strategy:
    s3 = S3Settings(bucket=bucket, endpoint_url=endpoint, region=REGION, access_key=ACCESS_KEY,
                    secret_key=SECRET_KEY, force_path_style=True)
    return Strategy(name=name, s3=s3, databases=(DatabaseTarget(name=HOSTILE, url=f"postgres://u:{PASSWORD}@h/app"),))


def local(path: str = "/health", page_path: str = "/", enabled: bool = True) -> Endpoint:
    return Endpoint(enabled=enabled, port=0, path=path, bind="127.0.0.1", page_path=page_path)


@pytest.fixture
def hostile_state():
    state = MonitorState((strategy(HOSTILE), strategy("plain")))
    state.loop_heartbeat()
    now = datetime.now(timezone.utc)
    state.run_started(HOSTILE, "r1", now - timedelta(minutes=2))
    error = {"kind": "connection", "message": f"connection to postgres://u:{PASSWORD}@h/app failed: {HOSTILE}"}
    state.run_finished(HOSTILE, {"status": "failed", "duration_s": 3.0, "error": error,
                                 "databases": [{"database": HOSTILE, "status": "failed", "error": error}]}, now)
    return state


@pytest.fixture
def serve():
    servers = []

    def start(state: MonitorState, health: Endpoint, metrics: Endpoint | None = None) -> MonitoringServer:
        server = MonitoringServer(health, metrics or local("/metrics", enabled=False), state, Metrics()).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def test_the_page_is_html_with_a_policy_that_forbids_scripts_and_sniffing(serve, hostile_state):
    port = serve(hostile_state, local()).ports["page"]
    status, headers, body = get(f"http://127.0.0.1:{port}/")
    assert status == 200 and headers["Content-Type"] == "text/html; charset=utf-8"
    policy = {part.split()[0]: part.split()[1:] for part in headers["Content-Security-Policy"].split("; ")}
    assert policy["default-src"] == ["'none'"] and "script-src" not in policy  # scripts fall back to 'none'
    assert policy["style-src"] == ["'unsafe-inline'"] and policy["frame-ancestors"] == ["'none'"]
    assert headers["X-Content-Type-Options"] == "nosniff" and headers["Cache-Control"] == "no-store"
    assert "X-Content-Type-Options" not in get(f"http://127.0.0.1:{port}/health")[1], "health keeps its headers"


def test_a_strategy_database_and_error_with_a_script_tag_render_as_text_without_the_password(serve, hostile_state):
    port = serve(hostile_state, local()).ports["page"]
    _status, _headers, body = get(f"http://127.0.0.1:{port}/")
    parsed = Tags(body)
    assert "script" not in parsed.tags
    assert sum(HOSTILE in text for text in parsed.text) >= 3, "name, database and error shown as text"
    assert PASSWORD not in body
    assert "connection to postgres://u:***@h/app failed" in body


def test_the_page_path_is_configurable_and_shares_the_health_switch(serve, hostile_state):
    port = serve(hostile_state, local(page_path="/status")).ports["page"]
    assert get(f"http://127.0.0.1:{port}/status")[0] == 200
    assert get(f"http://127.0.0.1:{port}/")[0] == 404
    off = serve(hostile_state, local(enabled=False), local("/metrics"))
    assert "page" not in off.ports
    assert get(f"http://127.0.0.1:{off.ports['metrics']}/")[0] == 404


def test_a_page_path_that_collides_with_health_or_metrics_is_a_config_error(hostile_state):
    with pytest.raises(EasybackupError, match="health and page both want") as failure:
        MonitoringServer(local(page_path="/health"), local("/metrics"), hostile_state, Metrics())
    assert "global.monitoring.health_check.page_path" in failure.value.hint
    with pytest.raises(EasybackupError, match="page and metrics both want"):
        MonitoringServer(local(), local("/"), hostile_state, Metrics())


def test_the_history_is_read_from_the_newest_runs_manifests_in_s3(moto, bucket):
    target = strategy("hist", bucket=bucket, endpoint=moto.endpoint)
    client = moto.client()
    for day in range(1, 36):
        for database, size in (("app", 1000 + day), ("_globals", 10)):
            ext = "sql.gz" if database == "_globals" else "dump.gz"
            key = f"hist/{database}/2025-05-{day:02d}T020000Z-run{day:04d}.{ext}" if day <= 31 else \
                f"hist/{database}/2025-06-{day - 31:02d}T020000Z-run{day:04d}.{ext}"
            started = key.split("/")[2][:17]
            started = f"{started[:13]}:{started[13:15]}:{started[15:17]}Z"
            write_manifest(client, bucket, Manifest(
                strategy="hist", database=database, run_id=f"run{day:04d}", key=key, started_at=started,
                finished_at=started.replace("T02:00:00", "T02:01:40"), stored_bytes=size, sha256="0" * 64,
                compression="gzip", format="plain" if database == "_globals" else "custom"))
    # The newest run's manifest is not one: it is skipped, the 29 runs before it are charted.
    client.put_object(Bucket=bucket, Key="hist/app/2025-06-04T030000Z-run9999.dump.gz.manifest.json", Body=b"junk")
    points = read_history(target, client)
    assert [p.run_id for p in points] == [f"run{day:04d}" for day in range(7, 36)]
    assert points[-1].size_bytes == 1000 + 35 + 10 and points[-1].duration_s == 100.0


def test_page_path_loads_from_the_config_and_must_start_with_a_slash(tmp_path, moto, bucket):
    from easybackup.config import load_config
    from easybackup.errors import ConfigError
    from tests.harness.configs import write_config

    def config(page_path: str) -> Path:
        return write_config(tmp_path, bucket=bucket, endpoint=moto.endpoint,
                            monitoring={"health_check": {"page_path": page_path}},
                            strategies=[{"name": "a", "database_url": "postgres://h/app"}])

    assert load_config(config("/status")).health_check.page_path == "/status"
    with pytest.raises(ConfigError, match="page_path"):
        load_config(config("status"))


def test_an_s3_that_cannot_give_the_history_leaves_the_charts_empty_and_is_logged(moto, bucket, capfd):
    from easybackup.logs import setup_logging
    from easybackup.storage.s3 import make_client
    from easybackup.supervision.startup import StartupReader
    from tests.harness.net import free_port

    setup_logging("info")
    unreachable = strategy("far", bucket=bucket, endpoint=f"http://127.0.0.1:{free_port()}")
    started = time.monotonic()
    assert StartupReader._history(unreachable, make_client(unreachable.s3)) == ()
    assert time.monotonic() - started < 60
    assert "could not read the recent backups for the status page" in capfd.readouterr().err
