"""The size-drop alarm through the supervisor: a database that loses most of its rows between runs gives a backup
that succeeds but is `suspicious` — the log, the Slack thread, health (`degraded`, with the reason) and a metric
say so — and retention keeps the newest normal backup although `keep_last` is 1."""

from __future__ import annotations

import json

import pytest

from tests.harness.configs import run_cli, write_config
from tests.harness.daemon import daemon_factory, monitoring, wait_until
from tests.harness.net import free_port
from tests.harness.slack_server import DEFAULT_TOKEN


@pytest.fixture
def start_daemon(tmp_path):
    yield from daemon_factory(tmp_path)


def test_a_database_that_lost_most_of_its_rows_gives_a_suspicious_backup_and_the_normal_one_stays(
        pg, moto, bucket, tmp_path, slack, start_daemon):
    pg.create_database("size_drop")
    pg.psql("CREATE TABLE t AS SELECT g, md5(g::text) AS h FROM generate_series(1, 20000) g", "size_drop")
    port = free_port()
    strategy = {"name": "shrink", "database_url": pg.url("size_drop"), "retention": {"keep_last": 1}}
    config = write_config(tmp_path, bucket=bucket, endpoint=moto.endpoint, strategies=[strategy],
                          run_on_start=True, monitoring=monitoring(port),
                          slack={"bot_token": DEFAULT_TOKEN, "channel_id": "C0123456789", "api_url": slack.api_url})
    first = run_cli("once", "-c", str(config))
    assert first.returncode == 0 and "suspicious" not in first.stderr, first.stderr
    [normal] = [key for key in moto.list_keys(bucket) if key.endswith(".manifest.json")]

    pg.psql("DELETE FROM t WHERE g > 500", "size_drop")  # 97.5 % of the rows gone
    slack.reset()
    daemon = start_daemon(config, port)
    daemon.wait_status("shrink", "degraded", timeout=60)
    view = daemon.strategy("shrink")
    assert view["warning"].startswith("size_drop: suspicious backup, stored size ")
    assert "of the median" in view["warning"] and "of the last 1 backup(s) (anomaly.min_ratio 0.5)" in view["warning"]
    assert daemon.health()["status"] == "degraded"
    samples = daemon.metrics()
    assert samples[("easybackup_suspicious_backups_total", (("database", "size_drop"), ("strategy", "shrink")))] == 1
    assert samples[("easybackup_backup_runs_total", (("status", "success"), ("strategy", "shrink")))] == 1
    wait_until(lambda: any(c.method == "chat.update" for c in slack.calls), 30, "the Slack thread completed")
    [parent] = [m for m in slack.messages("C0123456789") if "thread_ts" not in m]
    replies = json.dumps(slack.thread(parent["ts"]), ensure_ascii=False)
    assert "suspicious backup" in replies and "of the median" in replies
    assert "succeeded" in json.dumps(slack.updates(parent["ts"]))
    assert "suspicious backup: stored size" in daemon.log_text()

    manifests = sorted(key for key in moto.list_keys(bucket) if key.endswith(".manifest.json"))
    assert len(manifests) == 2 and manifests[0] == normal  # keep_last 1 would have deleted it
    assert "the newest normal backup (1 newer one(s) suspicious: size drop)" in daemon.log_text()
    assert daemon.stop() == 0


def test_a_backup_of_the_usual_size_is_not_suspicious(pg, moto, bucket, tmp_path):
    pg.create_database("size_steady")
    pg.psql("CREATE TABLE t AS SELECT g, md5(g::text) AS h FROM generate_series(1, 5000) g", "size_steady")
    strategy = {"name": "steady", "database_url": pg.url("size_steady"), "retention": {"keep_last": 1}}
    config = write_config(tmp_path, bucket=bucket, endpoint=moto.endpoint, strategies=[strategy])
    for _ in range(2):
        result = run_cli("once", "-c", str(config))
        assert result.returncode == 0 and "suspicious" not in result.stderr, result.stderr
    assert len([key for key in moto.list_keys(bucket) if key.endswith(".manifest.json")]) == 1
