"""`make demo` works: the demo backs up its sample database into a local S3 and proves it restores."""

from __future__ import annotations

import subprocess
import sys

from tests.harness.configs import REPO


def test_the_demo_backs_up_the_sample_database_and_restores_every_table_identically():
    done = subprocess.run([sys.executable, str(REPO / "examples" / "demo.py")], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "the backup restores: every table identical (row count and md5)" in done.stdout
    assert "DIFFERENT" not in done.stdout
    assert ".dump.zst" in done.stdout and ".manifest.json" in done.stdout
