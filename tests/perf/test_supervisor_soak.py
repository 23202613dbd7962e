"""Soak: the supervisor runs 300 backups on `schedule: 2s` and neither its memory nor its open fds grow.

Not part of `make test` (`make perf`). Prints the first and last samples of RSS and fds.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

from tests.harness.configs import write_config
from tests.harness.net import free_port
from tests.integration.test_supervisor import Daemon, monitoring, stat_fields

RUNS = 300
STRATEGIES = 4
WARM_UP_RUNS = 40  # imports, boto3 and prometheus caches settle in the first runs
RSS_MARGIN_KIB = 8 * 1024
FD_MARGIN = 3


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def open_fds(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/fd").iterdir()))


def zombie_children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := stat_fields(int(entry.name))) and int(fields[1]) == pid \
                and fields[0] == "Z":
            found.append(int(entry.name))
    return found


def finished_runs(daemon: Daemon) -> tuple[int, int]:
    samples = daemon.metrics()
    counts = {"success": 0, "failed": 0}
    for (name, labels), value in samples.items():
        status = dict(labels).get("status")
        if name == "easybackup_backup_runs_total" and status in counts:
            counts[status] += int(value)
    return counts["success"], counts["failed"]


def test_three_hundred_runs_leave_memory_fds_and_children_flat(pg, moto, bucket, tmp_path):
    pg.create_database("soak_tiny")
    pg.psql("CREATE TABLE t AS SELECT g FROM generate_series(1, 100) g", "soak_tiny")
    port = free_port()
    strategies = [{"name": f"soak{n}", "database_url": pg.url("soak_tiny"), "schedule": "2s", "retention": "1h"}
                  for n in range(STRATEGIES)]
    config = write_config(tmp_path, bucket=bucket, endpoint=moto.endpoint, strategies=strategies, log_level="info",
                          max_parallel_strategies=STRATEGIES, monitoring=monitoring(port))
    daemon = Daemon(config, port, tmp_path / "soak.log")
    samples: list[tuple[int, int, int]] = []  # (runs, rss KiB, fds)
    zombies_seen: set[int] = set()
    lingering: set[int] = set()  # zombies still there one sample (2 s) later: workers nobody reaps
    previous: set[int] = set()
    try:
        deadline = time.monotonic() + RUNS * 2.0 / STRATEGIES * 3 + 60
        while True:
            assert time.monotonic() < deadline, f"only {samples[-1] if samples else 0} runs in time"
            time.sleep(2.0)
            if daemon.health() is None:
                continue
            success, failed = finished_runs(daemon)
            assert failed == 0, daemon.log_text()[-4000:]
            samples.append((success, rss_kib(daemon.pid), open_fds(daemon.pid)))
            zombies = set(zombie_children(daemon.pid))
            lingering |= zombies & previous
            zombies_seen |= zombies
            previous = zombies
            if success >= RUNS:
                break
        assert daemon.stop() == 0
    finally:
        daemon.kill()

    settled = [sample for sample in samples if sample[0] >= WARM_UP_RUNS]
    first, last = settled[:5], settled[-5:]
    rss_first, rss_last = statistics.median(s[1] for s in first), statistics.median(s[1] for s in last)
    fds_first, fds_last = statistics.median(s[2] for s in first), statistics.median(s[2] for s in last)
    print(f"\nsoak: {samples[-1][0]} runs; RSS {rss_first:.0f} -> {rss_last:.0f} KiB "
          f"(first sample {samples[0][1]} KiB); fds {fds_first:.0f} -> {fds_last:.0f}; "
          f"max fds {max(s[2] for s in samples)}; zombie children seen in passing: {len(zombies_seen)}, "
          f"lingering: {len(lingering)}")
    assert rss_last - rss_first < RSS_MARGIN_KIB
    assert fds_last - fds_first <= FD_MARGIN
    # A worker is a zombie only between its exit and the loop's next poll; one still there 2 s later is a leak.
    assert lingering == set()
