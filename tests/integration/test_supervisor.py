"""`easybackup run` as an operator runs it: health and metrics over HTTP, signals, crashes, restarts, reloads."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time

import pytest
import yaml

from easybackup.scheduling import next_run
from tests.harness.configs import REPO, cli_env, write_config
from tests.harness.daemon import Daemon, alive, daemon_factory, group_of, monitoring, parse_utc, wait_until, workers_of
from tests.harness.net import free_port
from tests.harness.restore import archive_keys, download, manifest_keys, run_record_keys

SEED = REPO / "examples" / "config.yaml"
THROTTLE = 50_000  # bytes/s between pg_dump and PostgreSQL: the bulky database then takes about a minute


# ------------------------------------------------------------------------------------------------ helpers


@pytest.fixture
def start_daemon(tmp_path):
    """A factory: start_daemon(config, port, env=None) -> Daemon; every daemon is killed after the test."""
    yield from daemon_factory(tmp_path)


@pytest.fixture(scope="module")
def tiny_db(pg) -> str:
    pg.create_database("sup_tiny")
    pg.psql("CREATE TABLE t AS SELECT g, md5(g::text) AS h FROM generate_series(1, 2000) g", "sup_tiny")
    return "sup_tiny"


@pytest.fixture(scope="module")
def bulky_db(pg) -> str:
    """About 3 MB of rows: a minute of pg_dump traffic through a 50 KB/s proxy."""
    pg.create_database("sup_bulky")
    pg.psql("CREATE TABLE t AS SELECT g, repeat(md5(g::text), 3) AS pad FROM generate_series(1, 30000) g",
            "sup_bulky")
    return "sup_bulky"


def dead_url(pg, database: str = "nowhere") -> str:
    """A database URL whose port nothing listens on."""
    return pg.url(database, port=free_port())


# ------------------------------------------------------------------------------------------------- tests


def test_run_on_start_shows_one_success_and_one_failure_in_health_and_metrics(pg, moto, bucket, tmp_path, tiny_db,
                                                                             start_daemon):
    port = free_port()
    strategies = [{"name": "good", "database_url": pg.url(tiny_db), "schedule": "1h", "timezone": "Asia/Kolkata"},
                  {"name": "dead", "database_url": dead_url(pg), "schedule": "1d@02:30",
                   "timezone": "America/New_York"}]
    config = write_config(tmp_path, bucket=bucket, endpoint=moto.endpoint, strategies=strategies,
                          run_on_start=True, monitoring=monitoring(port))
    daemon = start_daemon(config, port)
    document = daemon.wait_health(lambda doc: {s["status"] for s in doc["strategies"]["last_backup_status"].values()}
                                  == {"success", "failed"}, what="both runs finished")
    assert isinstance(document["status"], str) and isinstance(document["version"], str)
    assert isinstance(document["timestamp"], str) and document["timestamp"].endswith("Z")
    assert document["strategies"]["total"] == 2
    assert document["s3_connectivity"] in ("ok", "unknown") and isinstance(document["slack_connectivity"], str)
    good, dead = (document["strategies"]["last_backup_status"][name] for name in ("good", "dead"))
    assert good["status"] == "success" and good["last_run"].endswith("Z") and "error" not in good
    assert dead["status"] == "failed" and dead["error_kind"] == "connection"
    assert "Connection refused" in dead["error"] and dead["last_run"].endswith("Z")
    now = parse_utc(document["timestamp"])
    for item, view in zip(strategies, (good, dead), strict=True):
        expected = next_run(item["schedule"], item["timezone"], now)
        assert parse_utc(view["next_run"]) == expected, item["name"]
    assert parse_utc(good["next_run"]).minute == 30, "hourly in India is at half past in UTC"

    samples = daemon.metrics()
    assert samples[("easybackup_backup_runs_total", (("status", "success"), ("strategy", "good")))] == 1
    assert samples[("easybackup_backup_runs_total", (("status", "failed"), ("strategy", "dead")))] == 1
    assert samples[("easybackup_backup_runs_total", (("status", "failed"), ("strategy", "good")))] == 0
    assert samples[("easybackup_last_success_timestamp_seconds", (("strategy", "good"),))] > time.time() - 120
    on_good = (("database", tiny_db), ("strategy", "good"))
    assert samples[("easybackup_backup_size_bytes", on_good)] == good["size_bytes"] > 0
    assert samples[("easybackup_backup_duration_seconds_count", on_good)] == 1
    assert samples[("easybackup_next_run_timestamp_seconds", (("strategy", "dead"),))] == \
        parse_utc(dead["next_run"]).timestamp()
    assert daemon.stop() == 0
    assert len(manifest_keys(moto, bucket)) == 1


def test_the_daemon_reports_each_run_as_one_slack_thread_and_shows_slack_ok_in_health(pg, moto, bucket, tmp_path,
                                                                                     tiny_db, slack, start_daemon):
    from tests.harness.slack_server import DEFAULT_TOKEN

    port = free_port()
    config = write_config(tmp_path, bucket=bucket, endpoint=moto.endpoint, run_on_start=True,
                          monitoring=monitoring(port), strategies=[{"name": "good", "database_url": pg.url(tiny_db)}],
                          slack={"bot_token": DEFAULT_TOKEN, "channel_id": "C0123456789", "api_url": slack.api_url})
    daemon = start_daemon(config, port)
    daemon.wait_status("good", "success")
    wait_until(lambda: any(c.method == "chat.update" for c in slack.calls), 30, "the parent edited to its final state")
    [parent] = [m for m in slack.messages("C0123456789") if "thread_ts" not in m]
    assert len(slack.thread(parent["ts"])) >= 2
    [update] = slack.updates(parent["ts"])
    assert "succeeded" in json.dumps(update)
    assert daemon.wait_health(lambda doc: doc["slack_connectivity"] == "ok", what="slack ok")
    assert daemon.stop() == 0
    assert DEFAULT_TOKEN not in daemon.log_text()


def test_slack_turned_on_by_a_sighup_reports_the_next_run(pg, moto, bucket, tmp_path, tiny_db, slack, start_daemon):
    from tests.harness.slack_server import DEFAULT_TOKEN

    port = free_port()
    quiet = {"name": "good", "database_url": pg.url(tiny_db)}
    config = write_config(tmp_path, bucket=bucket, endpoint=moto.endpoint, monitoring=monitoring(port),
                          strategies=[quiet])
    daemon = start_daemon(config, port)
    daemon.wait_health(lambda doc: doc["slack_connectivity"] == "disabled", what="slack disabled")

    write_config(tmp_path, bucket=bucket, endpoint=moto.endpoint, monitoring=monitoring(port),
                 strategies=[quiet, {"name": "soon", "database_url": pg.url(tiny_db), "schedule": "5s"}],
                 slack={"bot_token": DEFAULT_TOKEN, "channel_id": "C0123456789", "api_url": slack.api_url})
    daemon.send(signal.SIGHUP)
    daemon.wait_log("configuration reloaded")
    daemon.wait_status("soon", "success")
    wait_until(lambda: any(c.method == "chat.update" for c in slack.calls), 30, "the run's Slack thread completed")
    [parent, *_] = [m for m in slack.messages("C0123456789") if "thread_ts" not in m]
    assert "soon" in json.dumps(parent)
    assert daemon.wait_health(lambda doc: doc["slack_connectivity"] == "ok", what="slack ok after the reload")
    assert daemon.stop() == 0


def test_the_seed_example_starts_and_lists_its_three_strategies(moto, slack, tmp_path, start_daemon):
    config, port = SEED, 8080
    if _port_taken(8080):
        # 8080 is in use on this machine: a copy of the seed whose only change is the port.
        port = free_port()
        document = yaml.safe_load(SEED.read_text())
        document["global"]["monitoring"]["metrics"]["port"] = port
        document["global"]["monitoring"]["health_check"]["port"] = port
        config = tmp_path / "config.yaml"
        config.write_text(yaml.safe_dump(document, sort_keys=False))
    env = cli_env(AWS_ENDPOINT_URL_S3=moto.endpoint, SLACK_API_URL=slack.api_url)
    daemon = start_daemon(config, port, env)
    document = daemon.wait_health(lambda doc: doc["strategies"]["total"] == 3, what="the seed's strategies")
    statuses = document["strategies"]["last_backup_status"]
    assert sorted(statuses) == ["analytics-db", "production-db", "staging-db"]
    assert {view["status"] for view in statuses.values()} <= {"pending", "failed"}
    assert parse_utc(statuses["production-db"]["next_run"]).hour % 6 == 0
    assert daemon.stop() == 0


def _port_taken(port: int) -> bool:
    import socket

    with socket.socket() as probe:
        try:
            probe.bind(("0.0.0.0", port))
        except OSError:
            return True
    return False


def throttled_strategy(pg, fault_proxy, database: str, **extra) -> tuple[dict, object]:
    proxy = fault_proxy(pg.host, pg.port, "tcp")
    proxy.throttle(THROTTLE)
    return {"name": "slow", "database_url": pg.url(database, port=proxy.port), **extra}, proxy


def wait_streaming(daemon: Daemon, moto, bucket: str) -> tuple[int, list[int]]:
    """Wait until the slow strategy runs with its upload open; return its worker pid and process group."""
    daemon.wait_status("slow", "running")
    wait_until(lambda: moto.open_uploads(bucket), 30, "the multipart upload to open")
    [worker] = workers_of(daemon.pid)
    group = group_of(worker)
    assert len(group) >= 3, f"expected worker, pg_dump and compressor in group {worker}: {group}"
    return worker, group


def test_sigterm_during_a_backup_stops_cleanly_and_leaves_nothing(pg, moto, bucket, tmp_path, bulky_db,
                                                                  fault_proxy, start_daemon):
    port = free_port()
    strategy, _proxy = throttled_strategy(pg, fault_proxy, bulky_db)
    config = write_config(tmp_path, bucket=bucket, endpoint=moto.endpoint, strategies=[strategy], run_on_start=True,
                          monitoring=monitoring(port), timeout={"shutdown_grace": "1s"})
    daemon = start_daemon(config, port)
    _worker, group = wait_streaming(daemon, moto, bucket)
    started = time.monotonic()
    assert daemon.stop(timeout=1 + 15) == 0
    assert 1 <= time.monotonic() - started < 1 + 10, "the backup gets its grace, then stops promptly"
    assert alive(group) == []
    assert archive_keys(moto, bucket) == [] and manifest_keys(moto, bucket) == []
    assert moto.open_uploads(bucket) == []


def test_a_killed_worker_is_recorded_as_crashed_its_upload_aborted_and_the_next_run_succeeds(
        pg, moto, bucket, tmp_path, bulky_db, fault_proxy, start_daemon):
    port = free_port()
    strategy, proxy = throttled_strategy(pg, fault_proxy, bulky_db, schedule="10s")
    config = write_config(tmp_path, bucket=bucket, endpoint=moto.endpoint, strategies=[strategy], run_on_start=True,
                          monitoring=monitoring(port))
    daemon = start_daemon(config, port)
    worker, group = wait_streaming(daemon, moto, bucket)
    # Kill just after a 10 s slot (skipped: the run is still going), so `failed` shows for ~9 s before the next.
    time.sleep((10.5 - time.time() % 10) % 10)
    os.kill(worker, signal.SIGKILL)
    view = daemon.wait_status("slow", "failed", timeout=5)["strategies"]["last_backup_status"]["slow"]
    assert view["error_kind"] == "crashed" and "killed by signal 9" in view["error"]
    wait_until(lambda: moto.open_uploads(bucket) == [], 20, "the crashed worker's upload to be aborted")
    assert alive(group) == []
    skipped = daemon.metrics()[("easybackup_backup_runs_total", (("status", "skipped"), ("strategy", "slow")))]
    assert skipped >= 1
    proxy.heal()
    view = daemon.wait_status("slow", "success", timeout=30)["strategies"]["last_backup_status"]["slow"]
    assert view["consecutive_failures"] == 0 and view["last_success"]
    assert daemon.stop() == 0
    assert len(manifest_keys(moto, bucket)) == 1


def test_a_restarted_supervisor_reads_the_last_success_from_s3_and_aborts_stale_uploads(
        pg, moto, bucket, tmp_path, tiny_db, start_daemon):
    port = free_port()
    strategies = [{"name": "keep", "database_url": pg.url(tiny_db), "catch_up": False}]
    config = write_config(tmp_path, bucket=bucket, endpoint=moto.endpoint, strategies=strategies, run_on_start=True,
                          monitoring=monitoring(port))
    first = start_daemon(config, port)
    before = first.wait_status("keep", "success")["strategies"]["last_backup_status"]["keep"]
    assert first.stop() == 0
    [manifest_key] = manifest_keys(moto, bucket)
    manifest = json.loads(download(moto, bucket, manifest_key))
    # The strategy's last success is its run's end, in the run record; its manifest was written just before.
    [record_key] = run_record_keys(moto, bucket)
    finished = json.loads(download(moto, bucket, record_key))["finished_at"]
    assert 0 <= (parse_utc(finished) - parse_utc(manifest["finished_at"])).total_seconds() <= 2

    client = moto.client()
    stale_key = f"backups/keep/{tiny_db}/2020-01-01T000000Z.dump.gz"
    client.create_multipart_upload(Bucket=bucket, Key=stale_key)
    client.create_multipart_upload(Bucket=bucket, Key="not-ours/2020-01-01T000000Z.dump.gz")
    time.sleep(1.2)  # older than the timeout.backup of the second start
    config = write_config(tmp_path, bucket=bucket, endpoint=moto.endpoint, strategies=strategies,
                          monitoring=monitoring(port), timeout={"backup": "1s"})
    second = start_daemon(config, port)
    document = second.wait_health(lambda doc: doc["strategies"]["last_backup_status"]["keep"]["last_success"],
                                  what="last_success from S3")
    view = document["strategies"]["last_backup_status"]["keep"]
    assert view["status"] == "success"
    assert view["last_success"] == finished
    assert abs((parse_utc(view["last_success"]) - parse_utc(before["last_success"])).total_seconds()) <= 2
    samples = second.metrics()
    assert samples[("easybackup_backup_runs_total", (("status", "success"), ("strategy", "keep")))] == 0
    assert samples[("easybackup_last_success_timestamp_seconds", (("strategy", "keep"),))] == \
        parse_utc(finished).timestamp()
    wait_until(lambda: [u["Key"] for u in moto.open_uploads(bucket)] == ["not-ours/2020-01-01T000000Z.dump.gz"], 15,
               "the stale upload under the strategy's prefix to be aborted")
    second.wait_log(f"aborting a stale multipart upload of {stale_key}")
    assert second.stop() == 0
    assert len(manifest_keys(moto, bucket)) == 1, "no new run happened"


def test_sighup_keeps_the_old_config_when_the_new_one_is_invalid_and_applies_a_valid_one(pg, moto, bucket, tmp_path,
                                                                                         start_daemon):
    port = free_port()
    alpha = {"name": "alpha", "database_url": dead_url(pg)}
    config = write_config(tmp_path, bucket=bucket, endpoint=moto.endpoint, strategies=[alpha],
                          monitoring=monitoring(port))
    daemon = start_daemon(config, port)
    daemon.wait_health(lambda doc: doc["strategies"]["total"] == 1, what="alpha listed")

    shutil.copy(config, tmp_path / "good.yaml")
    write_config(tmp_path, bucket=bucket, endpoint=moto.endpoint, monitoring=monitoring(port),
                 strategies=[{**alpha, "schedule": "6x", "bogus_key": 1}, {"name": "beta"}])
    daemon.send(signal.SIGHUP)
    daemon.wait_log("reload failed")
    log = daemon.log_text()
    assert "config: strategies[0] (alpha).schedule: '6x' is not a valid interval" in log and "bogus_key" in log
    assert "config: strategies[1] (beta): names no database" in log
    document = daemon.health()
    assert list(document["strategies"]["last_backup_status"]) == ["alpha"]

    write_config(tmp_path, bucket=bucket, endpoint=moto.endpoint, monitoring=monitoring(port),
                 strategies=[alpha, {"name": "beta", "database_url": dead_url(pg), "schedule": "12h"}])
    daemon.send(signal.SIGHUP)
    document = daemon.wait_health(lambda doc: doc["strategies"]["total"] == 2, what="beta added")
    beta = document["strategies"]["last_backup_status"]["beta"]
    assert beta["status"] == "pending" and parse_utc(beta["next_run"]).hour in (0, 12)
    daemon.wait_log("configuration reloaded: 2 strategies; added beta")
    assert daemon.stop() == 0


UNIT = REPO / "examples" / "systemd" / "easybackup.service"


def test_the_systemd_unit_has_what_an_operator_needs():
    import configparser

    parser = configparser.ConfigParser(strict=True, interpolation=None)
    parser.optionxform = str  # keys are case-sensitive in systemd
    parser.read_string(UNIT.read_text())
    service = parser["Service"]
    assert service["User"] == "easybackup"
    assert service["EnvironmentFile"] == "-/etc/easybackup/env"
    assert service["ExecStart"] == "/usr/local/bin/easybackup run -c /etc/easybackup/config.yaml"
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert (service["Restart"], service["RestartSec"], service["KillMode"]) == ("on-failure", "10", "mixed")
    assert int(service["TimeoutStopSec"]) > 60, "above the default timeout.shutdown_grace"
    for key, value in {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "PrivateTmp": "yes", "ProtectHome": "yes",
                       "StateDirectory": "easybackup", "RuntimeDirectory": "easybackup"}.items():
        assert service[key] == value, key
    assert "/tmp" in service["ReadWritePaths"].split(), "the default temp_dir must stay writable"
    assert parser["Install"]["WantedBy"] == "multi-user.target"


def test_systemd_analyze_verifies_the_unit_without_a_warning(tmp_path):
    # verify insists that ExecStart exists; the only change is the program's path, to this checkout's launcher.
    unit = tmp_path / "easybackup.service"
    unit.write_text(UNIT.read_text().replace("/usr/local/bin/easybackup", str(REPO / "bin" / "easybackup")))
    result = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout + result.stderr == "", result.stdout + result.stderr
