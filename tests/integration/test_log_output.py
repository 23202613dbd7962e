"""The log as an operator reads it (issue 23), through the CLI as typed against PostgreSQL, moto's S3 and the Slack
server: progress on a terminal never runs into a log line, `--log-format json` is one flat object a line, and one
message is logged once (a Slack failure, the retention line, a reload's rescheduled strategy)."""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import time

import pytest

from tests.harness.configs import EASYBACKUP, REPO, cli_env, run_cli, write_config
from tests.harness.daemon import daemon_factory, monitoring
from tests.harness.net import free_port

ONCE = [EASYBACKUP[0], str(REPO / "bin" / "easybackup-once")]
TEXT_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d \| ")
RFC3339_UTC_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
CHANNEL = "C0123456789"


@pytest.fixture(scope="module")
def log_dbs(pg) -> tuple[str, str]:
    """Two small databases, backed up one after the other by one strategy."""
    for name in ("logs_one", "logs_two"):
        pg.create_database(name)
        pg.psql("CREATE TABLE t AS SELECT g AS id, md5(g::text) AS h FROM generate_series(1, 20000) g", name)
    return "logs_one", "logs_two"


@pytest.fixture
def start_daemon(tmp_path):
    yield from daemon_factory(tmp_path)


def config_for(tmp_path, pg, moto, bucket: str, urls: list[str], **extra) -> str:
    return str(write_config(tmp_path, bucket=bucket, endpoint=moto.endpoint,
                            strategies=[{"name": "main", "database_urls": urls}], **extra))


# ------------------------------------------------------------------------------------------ a terminal


def run_on_a_terminal(argv: list[str], timeout: float = 180) -> tuple[int, bytes]:
    """Run argv with stdout and stderr on a new pseudo-terminal (as typed in one); return (exit code, all bytes
    the terminal received)."""
    master, slave = os.openpty()
    process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, env=cli_env(),
                               close_fds=True)
    os.close(slave)
    received = bytearray()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if not ready:
                if process.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: every holder of the terminal's other side has closed it
                break
            if not chunk:
                break
            received += chunk
        return process.wait(max(1.0, deadline - time.monotonic())), bytes(received)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(master)


def screen_lines(output: str) -> list[str]:
    """Given what a terminal received, return the lines it shows (carriage return, erase to end of line and
    newline interpreted; every other byte printed where the cursor is)."""
    lines, line, column = [], [], 0
    for token in re.findall(r"\x1b\[K|\r|\n|[^\r\n\x1b]+|\x1b", output):
        if token == "\r":
            column = 0
        elif token == "\n":
            lines.append("".join(line))
            line, column = [], 0
        elif token == "\x1b[K":
            del line[column:]
        else:
            line[column:column + len(token)] = list(token)
            column += len(token)
    return lines + ["".join(line)]


def test_progress_on_a_terminal_never_runs_into_a_log_line(pg, moto, bucket, tmp_path, log_dbs):
    config = config_for(tmp_path, pg, moto, bucket, [pg.url(name) for name in log_dbs])
    code, received = run_on_a_terminal([*ONCE, "-c", config])
    output = received.decode("utf-8", "replace")
    assert code == 0, output
    assert re.search(r"main/logs_one: [\d.]+ \w?i?B stored, ", output), "no progress was drawn:\n" + output
    lines = screen_lines(output)
    logged = [line for line in lines if " | INFO    | " in line or " | DEBUG   | " in line]
    assert any("logs_one: backup succeeded" in line for line in logged), lines
    assert any("logs_two: backup started" in line for line in logged), lines
    run_into = [line for line in lines if " stored, " in line and " | " in line]
    assert run_into == [], run_into
    assert all(TEXT_LINE.match(line) for line in logged), [line for line in logged if not TEXT_LINE.match(line)]
    assert not any(" stored, " in line for line in lines), "the progress line was left on the screen"


# ------------------------------------------------------------------------------------------ JSON lines


def test_json_logs_are_one_flat_object_a_line_with_the_fields_shippers_expect(pg, moto, bucket, tmp_path,
                                                                             log_dbs):
    config = config_for(tmp_path, pg, moto, bucket, [pg.url(log_dbs[0]), pg.url("no_such_db")])
    result = run_cli("once", "-c", config, "--log-format", "json", timeout=180)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "\r" not in result.stderr and "\x1b" not in result.stderr  # no progress when stderr is no terminal
    lines = [json.loads(line) for line in result.stderr.splitlines()]  # every line parses
    assert len(lines) > 5
    fields = ["time", "level", "message", "strategy", "database", "run_id", "event"]
    for line in lines:
        assert list(line)[:7] == fields and set(line) <= {*fields, "error", "exception"}, line
        assert RFC3339_UTC_MS.match(line["time"]), line
        assert line["level"] in ("debug", "info", "warning", "error") and isinstance(line["message"], str)
        assert all(not isinstance(line[key], (dict, list)) for key in fields), line  # flat
        assert len(json.dumps(line)) < 1000, line
    run_ids = {line["run_id"] for line in lines if line["strategy"] == "main"}
    assert len(run_ids) == 1 and re.fullmatch(r"[0-9a-f]{12}", run_ids.pop())
    started = [line for line in lines if line["event"] == "db_started"]
    assert {line["database"] for line in started} == {log_dbs[0], "no_such_db"}
    assert all(line["message"].endswith("backup started") and line["strategy"] == "main" for line in started)
    [failed] = [line for line in lines if line["event"] == "db_finished" and line["level"] == "error"]
    assert failed["database"] == "no_such_db" and failed["error"] == {"kind": "not_found"}, failed
    [result_line] = [line for line in lines if line["event"] == "result"]
    assert result_line["error"] == {"kind": "not_found"} and result_line["level"] == "error"
    assert [line for line in lines if line["event"] == "db_finished" and line["level"] == "info"][0]["database"] \
        == log_dbs[0]
    assert all("error" not in line for line in lines if line["level"] in ("debug", "info"))
    assert pg.password not in result.stderr


# ------------------------------------------------------------------------------------------ one message once


def test_a_slack_failure_is_logged_once_per_run_not_once_per_message(pg, moto, bucket, tmp_path, log_dbs, slack):
    slack.respond_error("chat.postMessage", "channel_not_found")
    config = config_for(tmp_path, pg, moto, bucket, [pg.url(name) for name in log_dbs],
                        slack={"bot_token": "xoxb-test-token", "channel_id": CHANNEL, "api_url": slack.api_url})
    result = run_cli("once", "-c", config, "--log-level", "info", timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    posts = len(slack.calls_to("chat.postMessage"))
    assert posts >= 4, posts  # parent, progress/final replies, the parent's state: each one failed
    failures = [line for line in result.stderr.splitlines()
                if "Slack chat.postMessage failed: channel_not_found" in line]
    assert len(failures) == 1, failures
    assert " | WARNING | " in failures[0] and "hint: check slack.channel_id" in failures[0]
    assert f"Slack: 0 sent, {posts} failed, 0 dropped" in result.stderr  # still counted, every one


def test_the_retention_line_is_logged_once_per_run(pg, moto, bucket, tmp_path, log_dbs):
    config = config_for(tmp_path, pg, moto, bucket, [pg.url(log_dbs[0])])
    result = run_cli("once", "-c", config, timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    retention = [line for line in result.stderr.splitlines() if "retention: deleted" in line]
    assert len(retention) == 1 and "retention: deleted 0 backup(s), kept 1" in retention[0], retention


def test_a_reload_names_the_strategy_whose_schedule_changed(pg, moto, bucket, tmp_path, start_daemon):
    port = free_port()
    strategies = [{"name": "alpha", "database_url": pg.url("no_such_db")},
                  {"name": "beta", "database_url": pg.url("no_such_db")}]
    config = write_config(tmp_path, bucket=bucket, endpoint=moto.endpoint, strategies=strategies,
                          monitoring=monitoring(port))
    daemon = start_daemon(config, port)
    daemon.wait_health(lambda doc: doc["strategies"]["total"] == 2, what="both strategies listed")
    write_config(tmp_path, bucket=bucket, endpoint=moto.endpoint, monitoring=monitoring(port),
                 strategies=[{**strategies[0], "schedule": "12h"}, strategies[1],
                             {"name": "gamma", "database_url": pg.url("no_such_db")}])
    daemon.send(signal.SIGHUP)
    daemon.wait_log("configuration reloaded")
    assert daemon.stop() == 0
    [reloaded] = [line for line in daemon.log_text().splitlines() if "configuration reloaded" in line]
    assert reloaded.endswith("configuration reloaded: 3 strategies; added gamma; rescheduled alpha (1d -> 12h)"), \
        reloaded
