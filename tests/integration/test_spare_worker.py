"""`easybackup once` starts its worker before it reads the config, so the worker's imports overlap the
supervisor's: the job runs on that spare, and a spare nobody needs is killed and reaped."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from easybackup.cli import main
from easybackup.logs import setup_logging
from easybackup.supervision import pool as pool_module
from easybackup.supervision import spawn
from tests.harness.configs import write_config
from tests.harness.restore import archive_keys


@pytest.fixture
def spares(monkeypatch) -> list[int]:
    """Record the PID of every spare worker started; after the test, each must be gone (killed or run, and reaped)."""
    pids: list[int] = []

    class RecordedSpare(spawn.SpareWorker):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            pids.append(self.pid)

    monkeypatch.setattr(spawn, "SpareWorker", RecordedSpare)
    yield pids
    assert [pid for pid in pids if Path(f"/proc/{pid}").exists()] == [], "a spare worker was left behind"


def test_once_runs_its_job_on_the_worker_it_started_before_reading_the_config(pg, aws_env, bucket, tmp_path,
                                                                              monkeypatch, spares):
    pg.create_database("spare_worker")
    config = write_config(tmp_path, bucket=bucket, endpoint=aws_env.endpoint,
                          strategies=[{"name": "main", "database_url": pg.url("spare_worker")}])

    def no_other_worker(argv):
        raise OSError("only the spare may run this job")

    monkeypatch.setattr(pool_module, "spawn_worker", no_other_worker)
    try:
        assert main(["once", "-c", str(config)]) == 0
    finally:
        setup_logging("info", "text")
    [key] = archive_keys(aws_env, bucket)
    assert key.startswith("backups/main/spare_worker/") and len(spares) == 1


def test_a_bad_config_kills_the_spare_worker_and_leaves_no_process(tmp_path, spares):
    config = tmp_path / "config.yaml"
    config.write_text("strategies: [}\n")
    try:
        assert main(["once", "-c", str(config)]) == 2
    finally:
        setup_logging("info", "text")
    assert len(spares) == 1


def test_a_usage_error_kills_the_spare_worker_too(spares):
    with pytest.raises(SystemExit) as exited:
        main(["once", "--no-such-option"])
    assert exited.value.code == 2 and len(spares) == 1


def test_help_and_other_commands_start_no_spare_worker(capsys, monkeypatch, tmp_path):
    def no_spare(*args, **kwargs):
        raise AssertionError("a spare worker was started")

    monkeypatch.setattr(spawn, "SpareWorker", no_spare)
    with pytest.raises(SystemExit) as exited:
        main(["once", "--help"])
    assert exited.value.code == 0 and "Run the chosen strategies once" in capsys.readouterr().out
    try:
        assert main(["validate", "-c", str(tmp_path / "missing.yaml")]) == 2
    finally:
        setup_logging("info", "text")


def test_a_worker_whose_stdin_closes_empty_exits_quietly():
    done = subprocess.run([sys.executable, "-m", "easybackup.worker"], input=b"", capture_output=True, timeout=60)
    assert (done.returncode, done.stdout, done.stderr) == (0, b"", b"")
