"""The status page in a real headless Chromium, served by `easybackup run` with real backups in moto's S3: one
strategy succeeded (with earlier backups from `once` read back from S3 for its chart), one failed (its database
does not exist), one pending (added by a reload, its schedule a month away). The DOM Chromium built is checked and
a screenshot is saved (set EASYBACKUP_STATUS_PAGE_PNG to keep it: docs/status-page.png is made so)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from tests.harness.configs import run_cli, write_config
from tests.harness.daemon import daemon_factory, monitoring
from tests.harness.net import free_port

CHROMIUM = shutil.which("chromium")
EARLIER_BACKUPS = 3


class Dom(HTMLParser):
    """Each table row of the page: its id, class and the text of each cell; and every tag seen."""

    def __init__(self, text: str):
        super().__init__()
        self.rows: dict[str, dict] = {}
        self.tags: list[str] = []
        self._row: dict | None = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        attrs = dict(attrs)
        if tag == "tr" and (attrs.get("id") or "").startswith("strategy-"):
            self._row = {"class": attrs.get("class"), "cells": [], "rects": 0}
            self.rows[attrs["id"].removeprefix("strategy-")] = self._row
        elif tag == "td" and self._row is not None:
            self._row["cells"].append("")
        elif tag == "rect" and self._row is not None:
            self._row["rects"] += 1

    def handle_endtag(self, tag):
        if tag == "tr":
            self._row = None

    def handle_data(self, data):
        if self._row is not None and self._row["cells"]:
            self._row["cells"][-1] += data + " "


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    # --no-sandbox: the tests run as root, where Chromium's sandbox refuses to start; the page is our own.
    argv = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
            f"--user-data-dir={tmp_path / 'chromium-profile'}", *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=True)


@pytest.fixture
def start_daemon(tmp_path):
    yield from daemon_factory(tmp_path)


def strategies(pg, *, with_pending: bool) -> list[dict]:
    chosen = [{"name": "orders", "database_url": pg.url("page_orders")},
              {"name": "billing", "database_url": pg.url("page_no_such_billing")}]
    if with_pending:
        chosen.append({"name": "archive", "schedule": "30d", "retention": "90d", "database_url": pg.url("page_orders")})
    return chosen


def test_chromium_renders_the_status_page_of_a_real_supervisor(pg, moto, bucket, tmp_path, start_daemon):
    assert CHROMIUM, "chromium is not installed: `make test` installs it (Makefile SYSTEM_TOOLS)"
    pg.create_database("page_orders")
    port = free_port()
    settings = {"bucket": bucket, "endpoint": moto.endpoint, "monitoring": monitoring(port)}
    config = write_config(tmp_path, strategies=strategies(pg, with_pending=False), run_on_start=True, **settings)
    for number in range(EARLIER_BACKUPS):  # backups of a growing database, read back from S3 for the chart
        rows = 20000 * (number + 1)
        pg.psql(f"CREATE TABLE t{number} AS SELECT g, md5(g::text) AS h FROM generate_series(1, {rows}) g",
                "page_orders")
        done = run_cli("once", "-c", str(config), "-s", "orders")
        assert done.returncode == 0, done.stderr

    daemon = start_daemon(config, port)
    daemon.wait_health(lambda doc: {name: view["status"] for name, view in doc["strategies"]["last_backup_status"]
                                    .items()} == {"orders": "success", "billing": "failed"}, timeout=120,
                       what="orders succeeded and billing failed")
    write_config(tmp_path, strategies=strategies(pg, with_pending=True), run_on_start=True, **settings)
    daemon.send(signal.SIGHUP)
    daemon.wait_status("archive", "pending", timeout=30)

    url = f"http://127.0.0.1:{port}/"
    dom = Dom(chromium(tmp_path, "--dump-dom", url).stdout)
    assert "script" not in dom.tags and "svg" in dom.tags
    assert list(dom.rows) == ["billing", "archive", "orders"], "failed first, then by name"
    orders, billing, archive = dom.rows["orders"], dom.rows["billing"], dom.rows["archive"]
    strategy_cell, status, last_success, next_run, size, error, chart = orders["cells"]
    assert orders["class"] == "success" and "succeeded" in status and "ago" in last_success
    assert " in " in next_run and "ago" not in next_run, next_run  # `1d` slots are at midnight
    assert "KiB" in size or "MiB" in size
    assert orders["rects"] == EARLIER_BACKUPS + 1, "the backups of `once` read from S3, and the supervisor's own"
    assert f"{EARLIER_BACKUPS + 1} backups" in chart and error.strip() == ""
    assert billing["class"] == "failed" and "failed" in billing["cells"][1] and "never" in billing["cells"][2]
    assert "page_no_such_billing" in billing["cells"][5] and billing["rects"] == 0
    assert archive["class"] == "pending" and "pending" in archive["cells"][1]
    assert " in " in archive["cells"][3] and archive["cells"][2].strip() == "never", archive["cells"]
    assert "no backups yet" in archive["cells"][6]

    screenshot = tmp_path / "status-page.png"
    chromium(tmp_path, f"--screenshot={screenshot}", "--window-size=1200,800", url)
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and screenshot.stat().st_size > 10_000
    if os.environ.get("EASYBACKUP_STATUS_PAGE_PNG"):
        shutil.copyfile(screenshot, os.environ["EASYBACKUP_STATUS_PAGE_PNG"])
    assert daemon.stop() == 0
