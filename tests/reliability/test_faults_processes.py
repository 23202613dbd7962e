"""Fault matrix — processes and the host: a killed compressor, worker or supervisor, SIGTERM, a full temp disk.

Through the real parts: `easybackup once` and `easybackup run` as an operator starts them, PostgreSQL behind the
fault proxy (throttled, so that a fault lands while the dump streams), moto's S3 server, the Slack server, and a
tiny tmpfs for the full disk.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from easybackup.storage.layout import parse_archive_key
from tests.harness.configs import restore_target, run_cli, write_config
from tests.harness.daemon import (
    alive,
    argv_of,
    children_of,
    group_of,
    monitoring,
    parse_utc,
    wait_until,
    workers_of,
)
from tests.harness.net import free_port
from tests.harness.restore import download, manifest_keys, run_record_keys
from tests.reliability.conftest import (
    THROTTLE,
    assert_nothing_stored,
    assert_one_whole_backup,
    assert_slack_failed,
    runs_total,
    slack_settings,
    suite_env,
)

DATABASE = "rel_proc"


@pytest.fixture(scope="module")
def small_db(pg) -> str:
    """About 1.7 MB of rows (~900 kB gzipped)."""
    pg.create_database(DATABASE)
    pg.psql("CREATE TABLE items AS SELECT g AS id, md5(g::text) AS digest FROM generate_series(1, 40000) g",
            DATABASE)
    return DATABASE


def streaming_config(tmp_path, pg, proxy, moto, bucket: str, slack=None, **overrides) -> Path:
    extra = {"slack": slack_settings(slack.api_url)} if slack is not None else {}
    return write_config(tmp_path, bucket=bucket, endpoint=moto.endpoint,
                        strategies=[{"name": "main", "database_url": pg.url(DATABASE, port=proxy.port)}],
                        **extra, **overrides)


def wait_streaming(parent: int, proxy, moto, bucket: str) -> tuple[int, list[int]]:
    """Wait until the worker of `parent` streams the dump with its multipart upload open; return the worker's pid
    and its process group (worker, pg_dump, compressor)."""
    deadline = time.monotonic() + 30
    while not (workers_of(parent) and moto.open_uploads(bucket) and proxy.bytes_down > 300_000):
        assert time.monotonic() < deadline, "the dump never streamed"
        time.sleep(0.05)
    [worker] = workers_of(parent)
    group = group_of(worker)
    assert len(group) >= 3, f"expected worker, pg_dump and compressor in group {worker}: {group}"
    return worker, group


def summary_line(stdout: str) -> list[str]:
    """Given once's summary, return the cells of the strategy's row in the table."""
    return next(line.split() for line in stdout.splitlines() if line.startswith("main "))


# ------------------------------------------------------------------------------------- killed processes


def test_the_compressor_killed_mid_stream_fails_the_backup_as_compressor_failed_and_leaves_nothing(
        pg, small_db, moto, bucket, tmp_path, slack, throttled, start_once):
    config = streaming_config(tmp_path, pg, throttled, moto, bucket, slack, s3={"compression": "zstd"},
                              retry={"max_attempts": 2, "initial_delay": "1s", "max_delay": "1s"})
    run = start_once(config)
    worker, group = wait_streaming(run.pid, throttled, moto, bucket)
    [zstd] = [pid for pid in children_of(worker) if argv_of(pid)[:1] == ["zstd"]]
    os.kill(zstd, signal.SIGKILL)
    assert run.wait() == 1, run.output()
    assert summary_line(run.stdout)[2:4] == ["failed", "1"], run.output()
    assert "[compressor_failed] zstd killed by signal 9" in run.stdout, run.output()
    assert "not retried: the compressor would fail again" in run.stdout
    samples = run.metrics()
    assert (runs_total(samples, "main", "failed"), runs_total(samples, "main", "success")) == (1, 0)
    assert_slack_failed(slack, "compressor_failed")
    assert alive(group) == []
    assert_nothing_stored(moto, bucket)


def test_a_worker_killed_under_once_is_reported_crashed_its_upload_aborted_and_nothing_is_left(
        pg, small_db, moto, bucket, tmp_path, slack, throttled, start_once):
    config = streaming_config(tmp_path, pg, throttled, moto, bucket, slack)
    run = start_once(config)
    worker, group = wait_streaming(run.pid, throttled, moto, bucket)
    os.kill(worker, signal.SIGKILL)
    assert run.wait() == 1, run.output()
    assert summary_line(run.stdout)[:3] == ["main", "-", "failed"], run.output()
    assert "[crashed] worker killed by signal 9" in run.stdout, run.output()
    assert "aborted the multipart upload of backups/main/rel_proc/" in run.stderr
    samples = run.metrics()
    assert (runs_total(samples, "main", "failed"), runs_total(samples, "main", "success")) == (1, 0)
    assert_slack_failed(slack, "crashed")
    assert alive(group) == [], "pg_dump or the compressor outlived their worker"
    assert_nothing_stored(moto, bucket)


def test_sigterm_during_the_upload_under_once_exits_143_and_leaves_nothing(pg, small_db, moto, bucket, tmp_path,
                                                                         slack, throttled, start_once):
    config = streaming_config(tmp_path, pg, throttled, moto, bucket, slack, timeout={"shutdown_grace": "1s"})
    run = start_once(config)
    _worker, group = wait_streaming(run.pid, throttled, moto, bucket)
    started = time.monotonic()
    run.process.send_signal(signal.SIGTERM)
    assert run.wait(30) == 143, run.output()
    assert 1 <= time.monotonic() - started < 1 + 10, "the backup gets its grace, then stops promptly"
    assert summary_line(run.stdout)[2] == "cancelled", run.output()
    assert alive(group) == []
    assert_slack_failed(slack, "cancelled")
    assert_nothing_stored(moto, bucket)


def test_a_killed_supervisor_leaves_an_orphaned_worker_that_aborts_its_upload_and_exits(
        pg, small_db, moto, bucket, tmp_path, throttled, start_daemon):
    port = free_port()
    config = streaming_config(tmp_path, pg, throttled, moto, bucket, run_on_start=True, monitoring=monitoring(port))
    daemon = start_daemon(config, port)
    _worker, group = wait_streaming(daemon.pid, throttled, moto, bucket)
    daemon.process.kill()
    daemon.process.wait()
    wait_until(lambda: alive(group) == [], 15, "the orphaned worker, its pg_dump and compressor to exit")
    wait_until(lambda: moto.open_uploads(bucket) == [], 15, "the orphaned worker to abort its upload")
    assert_nothing_stored(moto, bucket)


def test_after_a_host_crash_the_next_start_aborts_the_stale_upload_and_shows_the_last_success_from_s3(
        pg, small_db, moto, bucket, tmp_path, throttled, start_once, start_daemon):
    throttled.throttle(None)
    first = start_once(streaming_config(tmp_path, pg, throttled, moto, bucket))
    assert first.wait() == 0, first.output()
    [manifest_key] = manifest_keys(moto, bucket)
    manifest = json.loads(download(moto, bucket, manifest_key))
    # The strategy's last success is its run's end, in the run record; its manifest was written just before.
    [record_key] = run_record_keys(moto, bucket)
    finished = json.loads(download(moto, bucket, record_key))["finished_at"]
    assert 0 <= (parse_utc(finished) - parse_utc(manifest["finished_at"])).total_seconds() <= 2

    throttled.throttle(THROTTLE)
    port = free_port()
    config = streaming_config(tmp_path, pg, throttled, moto, bucket, run_on_start=True, monitoring=monitoring(port),
                              name="crashing.yaml")
    crashing = start_daemon(config, port)
    worker, group = wait_streaming(crashing.pid, throttled, moto, bucket)
    [upload] = moto.open_uploads(bucket)
    # The host goes down (or the container is killed): the supervisor and its workers die at the same moment.
    os.killpg(worker, signal.SIGKILL)
    crashing.process.kill()
    crashing.process.wait()
    wait_until(lambda: alive(group) == [], 10, "the killed worker group to be gone")
    assert [u["Key"] for u in moto.open_uploads(bucket)] == [upload["Key"]], "nobody is left to abort it"

    # Restart once the upload is older than the new timeout.backup (5 s).
    # Old enough by the store's clock and by the run timestamp in its key (moto's `Initiated` is a fixed date).
    key_time = datetime.strptime(parse_archive_key(upload["Key"]).run_timestamp, "%Y-%m-%dT%H%M%SZ")
    begun = max(upload["Initiated"], key_time.replace(tzinfo=timezone.utc))
    time.sleep(max(0.0, 5.5 - (datetime.now(timezone.utc) - begun).total_seconds()))
    throttled.heal()
    config = streaming_config(tmp_path, pg, throttled, moto, bucket, monitoring=monitoring(port), catch_up=False,
                              timeout={"backup": "5s"}, name="restarted.yaml")
    restarted = start_daemon(config, port)
    restarted.wait_log(f"aborting a stale multipart upload of {upload['Key']}")
    wait_until(lambda: moto.open_uploads(bucket) == [], 15, "the stale upload to be aborted")
    view = restarted.wait_health(lambda doc: doc["strategies"]["last_backup_status"]["main"].get("last_success"),
                                 what="the last success read from S3")["strategies"]["last_backup_status"]["main"]
    assert view["status"] == "success" and view["last_success"] == finished
    samples = restarted.metrics()
    assert samples[("easybackup_last_success_timestamp_seconds", (("strategy", "main"),))] == \
        parse_utc(finished).timestamp()
    assert runs_total(samples, "main", "success") == 0, "nothing ran in the restarted supervisor"
    assert restarted.stop() == 0
    assert manifest_keys(moto, bucket) == [manifest_key]
    assert assert_one_whole_backup(moto, bucket) == manifest


# ------------------------------------------------------------------------------------------ a full disk


@pytest.fixture
def tiny_tmpfs():
    """A factory: tiny_tmpfs(size) mounts a tmpfs of `size` (mount's syntax: 1m) and returns its path; every
    mount is unmounted and removed after the test."""
    mounts: list[Path] = []

    def mount(size: str) -> Path:
        path = Path(tempfile.mkdtemp(prefix="easybackup-tmpfs-"))
        mounts.append(path)
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)], check=True,
                       capture_output=True, text=True)
        return path

    try:
        yield mount
    finally:
        for path in mounts:
            subprocess.run(["umount", str(path)], capture_output=True, check=False)
            path.rmdir()


@pytest.fixture
def stored_backup(pg, small_db, moto, bucket, tmp_path, start_once) -> dict:
    """One backup of the small database in `bucket` (gzip); its manifest."""
    config = write_config(tmp_path, bucket=bucket, endpoint=moto.endpoint, name="backup.yaml",
                          strategies=[{"name": "main", "database_url": pg.url(DATABASE)}])
    run = start_once(config)
    assert run.wait() == 0, run.output()
    return assert_one_whole_backup(moto, bucket)


def files_in(directory: Path) -> list[str]:
    return sorted(str(path.relative_to(directory)) for path in directory.rglob("*") if path.is_file())


def restore_with_jobs(tmp_path, pg, moto, bucket: str, temp_dir: Path, target: str, endpoint: str | None = None,
                      jobs: int = 2):
    config = write_config(tmp_path, bucket=bucket, endpoint=endpoint or moto.endpoint, name="restore.yaml",
                          temp_dir=str(temp_dir), strategies=[{"name": "main", "database_url": pg.url(DATABASE)}])
    url, env = restore_target(pg.url(target), **suite_env())
    return run_cli("restore", "-c", str(config), "--target-url", url, "--jobs", str(jobs), "--yes", env=env,
                   timeout=120)


def test_a_parallel_restore_into_a_temp_dir_too_small_fails_clearly_and_touches_nothing(
        pg, moto, bucket, tmp_path, stored_backup, tiny_tmpfs):
    temp_dir = tiny_tmpfs("1m")
    assert stored_backup["dump_bytes"] > 1024 * 1024, "the dump must not fit"
    pg.create_database("rel_restore_small_disk")
    result = restore_with_jobs(tmp_path, pg, moto, bucket, temp_dir, "rel_restore_small_disk")
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"not enough free space in {temp_dir}" in result.stderr and "restore without --jobs" in result.stderr
    assert "Traceback" not in result.stderr
    assert pg.table_fingerprints("rel_restore_small_disk") == {}, "the target was touched"
    assert files_in(temp_dir) == [], "a file was left in temp_dir"


def test_a_restore_with_one_job_streams_and_needs_no_room_in_temp_dir(pg, moto, bucket, tmp_path, stored_backup,
                                                                       tiny_tmpfs):
    temp_dir = tiny_tmpfs("1m")  # the dump does not fit (see above): one pg_restore job reads it from a pipe
    pg.create_database("rel_restore_one_job")
    result = restore_with_jobs(tmp_path, pg, moto, bucket, temp_dir, "rel_restore_one_job", jobs=1)
    assert result.returncode == 0, result.stdout + result.stderr
    assert pg.table_fingerprints("rel_restore_one_job") == pg.table_fingerprints(DATABASE)
    assert files_in(temp_dir) == []


def test_a_parallel_restore_writes_no_more_than_the_dump_its_manifest_names(pg, moto, bucket, tmp_path,
                                                                            stored_backup, tiny_tmpfs):
    # The manifest says the dump is 512 KiB: that much fits in temp_dir, the real dump would not. The restore must
    # stop writing at 512 KiB (its own clear error), not run the disk full (ENOSPC) nor apply anything.
    assert stored_backup["dump_bytes"] > 1024 * 1024, "the dump must not fit"
    [manifest_key] = manifest_keys(moto, bucket)
    moto.client().put_object(Bucket=bucket, Key=manifest_key,
                             Body=json.dumps({**stored_backup, "dump_bytes": 512 * 1024}).encode())
    temp_dir = tiny_tmpfs("1m")
    pg.create_database("rel_restore_bounded")
    result = restore_with_jobs(tmp_path, pg, moto, bucket, temp_dir, "rel_restore_bounded")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "decompresses to more than the 524288 bytes its manifest says the dump program wrote" in result.stderr
    assert "No space left" not in result.stderr and "Traceback" not in result.stderr
    assert pg.table_fingerprints("rel_restore_bounded") == {}, "the target was touched"
    assert files_in(temp_dir) == []


def test_a_temp_dir_that_fills_up_during_a_parallel_restore_fails_clearly_and_leaves_no_file(
        pg, moto, bucket, tmp_path, stored_backup, tiny_tmpfs, fault_proxy):
    temp_dir = tiny_tmpfs("4m")  # room for the archive when the restore checks, gone while it downloads
    slow_s3 = fault_proxy("127.0.0.1", moto.port, "http")
    slow_s3.throttle(150_000)  # ~3 s for the archive: time for something else to fill the disk
    filler = temp_dir / "someone-elses-file"
    filled = threading.Event()

    def fill_the_disk_once_the_download_starts() -> None:
        deadline = time.monotonic() + 60
        while not any(name.endswith("archive.dump") for name in files_in(temp_dir)):
            if time.monotonic() > deadline:
                return
            time.sleep(0.02)
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            while True:
                os.write(fd, b"\0" * 65536)
        except OSError:  # ENOSPC: the disk is full now
            filled.set()
        finally:
            os.close(fd)

    thread = threading.Thread(target=fill_the_disk_once_the_download_starts, daemon=True)
    thread.start()
    pg.create_database("rel_restore_full_disk")
    result = restore_with_jobs(tmp_path, pg, moto, bucket, temp_dir, "rel_restore_full_disk", slow_s3.url)
    thread.join(10)
    assert filled.is_set(), "the disk was never filled during the download"
    assert result.returncode == 1, result.stdout + result.stderr
    assert "cannot write the download to" in result.stderr and "No space left on device" in result.stderr
    assert "Traceback" not in result.stderr
    assert pg.table_fingerprints("rel_restore_full_disk") == {}, "the target was touched"
    assert files_in(temp_dir) == [filler.name], "the partial download was left in temp_dir"
