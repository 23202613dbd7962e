"""`easybackup once` starts its worker before it reads the config, so the worker's imports overlap the
supervisor's: the job runs on that spare, and a spare nobody needs is killed and reaped."""

from __future__ import annotations

import os
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


def worker_children() -> list[int]:
    """Return the PIDs of this process's children (zombies included) that run easybackup's worker."""
    found = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        parent = int(stat[stat.rindex(")") + 2:].split()[1])
        if parent == os.getpid() and (b"easybackup.worker" in cmdline or stat.split()[2] == "Z"):
            found.append(int(entry))
    return found


def test_once_runs_its_job_on_the_worker_it_started_before_reading_the_config(pg, aws_env, bucket, tmp_path,
                                                                              monkeypatch):
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
    assert key.startswith("backups/main/spare_worker/")
    assert worker_children() == []


def test_a_bad_config_kills_the_spare_worker_and_leaves_no_process(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("strategies: [}\n")
    try:
        assert main(["once", "-c", str(config)]) == 2
    finally:
        setup_logging("info", "text")
    assert worker_children() == []


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
