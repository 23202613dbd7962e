"""Benchmark: `easybackup once` against the shell pipelines a careful operator writes (DESIGN.md "Performance").

    python -m tests.perf.bench_backup [--rows N] [--runs 3] [--codecs gzip,zstd] [--relay-check]

Starts a throwaway PostgreSQL cluster and a moto S3 server, loads tests/fixtures/dataset.sql once
(rows=4000000 is ~1 GB), then runs these variants interleaved (the order rotates every round, so noise from
other work on the machine hits them alike) and prints the median of each:

    limit      pg_dump -Fc -Z0 > /dev/null                               the floor: nothing is faster
    shell      pg_dump -Fc -Z0 | <compressor> | boto3 upload_fileobj     what a careful operator writes
    tempfile   pg_dump -f F; <compressor> < F > F.z; upload F.z; rm      the temp-file approach
    easybackup bin/easybackup once -c config.yaml                        the real CLI, supervisor + worker

The compressor is exactly the one easybackup runs (same program, level and threads); the uploader uses the
same part size (16 MiB) and concurrency (3) as easybackup's. Measured per run: wall time, CPU seconds of the
whole process tree (children's rusage, so the worker, pg_dump and the compressor are in), bytes stored,
the worker's peak RSS (VmHWM of its Python process, polled every 50 ms) and bytes the process tree wrote to
local disk (rusage ru_oublock, which counts page-cache writes when they are made, deleted files included).
The PostgreSQL server's and moto's CPU are outside every variant's own CPU alike; `machine cpu` is what the whole
machine spent meanwhile (/proc/stat), them included. Divided by the cores, it is the least wall time any
pipeline doing the same work could take here: `ceiling tempfile/stream` is how much faster than the temp-file
approach streaming could be on this machine at best.
"""

from __future__ import annotations

import argparse
import compileall
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from easybackup.pipeline.codecs import compressor_stage
from easybackup.storage.multipart import StreamingUpload
from tests.harness.configs import EASYBACKUP, REPO, cli_env, write_config
from tests.harness.daemon import workers_of
from tests.harness.moto_server import REGION, MotoServer
from tests.harness.net import free_port
from tests.harness.postgres import PostgresCluster

DATASET = REPO / "tests" / "fixtures" / "dataset.sql"  # the design notes' data set (tests/fixtures/README.md)
DATABASE = "bench"
BUCKET = "bench"
MiB = 1024 * 1024
PART_SIZE = 16 * MiB  # easybackup's first part size (storage/multipart.py)
CONCURRENCY = 3  # easybackup's upload concurrency
POLL_S = 0.05

# The targets (DESIGN.md "Performance", issue 5); test_backup_benchmark.py asserts them.
MAX_RATIO_VS_SHELL = 1.10
GOAL_RATIO_VS_SHELL = 1.05
MAX_ZSTD_RATIO_VS_LIMIT = 1.6
MAX_WORKER_RSS = 150 * MiB
MIN_TEMPFILE_RATIO = 1.3  # the goal; what is asserted is tempfile_target(): at most this, as the machine allows
REACH_OF_CEILING = 0.95  # streaming must reach 95% of the most any pipeline could gain over the temp file here
# The worker writes one passfile (a few bytes, a 4 KiB page) per database: that is not the dump.
MAX_DISK_WRITE = 64 * 1024
MAX_IDLE_CPU_PERCENT = 1.0  # of one core, `easybackup run` with 50 strategies none of which is due
IDLE_STRATEGIES = 50


@dataclass
class Sample:
    """One run of one variant."""

    variant: str
    codec: str
    wall_s: float
    cpu_s: float
    stored_bytes: int | None = None
    worker_rss: int | None = None  # VmHWM of the worker's Python process, bytes
    disk_write: int | None = None  # bytes the process tree wrote to local disk
    machine_cpu_s: float | None = None  # every core's busy time meanwhile: server, moto and the rest included
    servers_cpu_s: float | None = None  # the database server's and moto's CPU meanwhile (not other work's)


@dataclass
class Summary:
    """The medians of one variant's samples."""

    variant: str
    codec: str
    runs: int
    wall_s: float
    cpu_s: float
    stored_bytes: int | None
    worker_rss: int | None
    disk_write: int | None
    machine_cpu_s: float | None = None
    walls: list[float] = field(default_factory=list)
    servers_cpu_s: float | None = None


def median_or_none(values: list) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def summarize(samples: list[Sample]) -> list[Summary]:
    """Given every sample, return one Summary per (variant, codec), in first-seen order."""
    groups: dict[tuple[str, str], list[Sample]] = {}
    for sample in samples:
        groups.setdefault((sample.variant, sample.codec), []).append(sample)
    result = []
    for (variant, codec), group in groups.items():
        rss = [s.worker_rss for s in group if s.worker_rss is not None]
        disk = [s.disk_write for s in group if s.disk_write is not None]
        result.append(Summary(variant, codec, len(group), statistics.median(s.wall_s for s in group),
                              statistics.median(s.cpu_s for s in group),
                              median_or_none([s.stored_bytes for s in group]),
                              max(rss) if rss else None, max(disk) if disk else None,
                              median_or_none([s.machine_cpu_s for s in group]),
                              walls=[round(s.wall_s, 2) for s in group],
                              servers_cpu_s=median_or_none([s.servers_cpu_s for s in group])))
    return result


# -- running processes and measuring them ------------------------------------------------------------------


@dataclass
class Tree:
    """Wall time, CPU seconds and disk writes of a set of processes we waited for."""

    wall_s: float = 0.0
    cpu_s: float = 0.0
    disk_write: int = 0

    def add(self, rusage: resource.struct_rusage) -> None:
        # A process's rusage includes the children it reaped: the worker's includes pg_dump and the compressor.
        self.cpu_s += rusage.ru_utime + rusage.ru_stime
        self.disk_write += rusage.ru_oublock * 512


def reap(process: subprocess.Popen, tree: Tree, what: str) -> None:
    """Given a started process, wait for it with wait4 (its rusage goes into `tree`); raise if it failed."""
    _, status, rusage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    tree.add(rusage)
    if process.returncode != 0:
        raise RuntimeError(f"{what} exited with {process.returncode}")


def machine_busy_s() -> float:
    """Return the CPU seconds all cores of this machine have been busy since boot (/proc/stat: all but idle)."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle, iowait = fields[3], fields[4]
    return (sum(fields[:8]) - idle - iowait) / os.sysconf("SC_CLK_TCK")


def run_chain(argvs: list[list[str]], env: dict, tree: Tree, stdin=subprocess.DEVNULL,
              stdout=subprocess.DEVNULL) -> None:
    """Given argv lists, run them as a pipeline (a | b | c) and wait for all; raise if any failed."""
    processes = []
    upstream = stdin
    try:
        for index, argv in enumerate(argvs):
            last = index == len(argvs) - 1
            process = subprocess.Popen(argv, stdin=upstream, stdout=stdout if last else subprocess.PIPE,
                                       env=env)
            if processes and processes[-1].stdout is not None:
                processes[-1].stdout.close()  # the next stage holds it now; ours would keep EOF away
            processes.append(process)
            upstream = process.stdout
    finally:
        for process, argv in zip(processes, argvs, strict=False):
            reap(process, tree, Path(argv[0]).name)


def compressor_argv(codec: str) -> list[str]:
    """Given a codec, return exactly the compressor argv easybackup runs."""
    return list(compressor_stage(codec).argv)


def uploader_argv(endpoint: str, key: str) -> list[str]:
    """Return argv of the shell baselines' uploader: boto3 upload_fileobj from stdin, our part size."""
    return [sys.executable, "-m", "tests.perf.bench_backup", "_upload", endpoint, BUCKET, key]


def upload_stdin(endpoint: str, bucket: str, key: str) -> None:
    """Upload stdin to s3://bucket/key with boto3's transfer manager, 16 MiB parts, 3 at a time."""
    client, config = transfer_client(endpoint)
    client.upload_fileobj(sys.stdin.buffer, bucket, key, Config=config)


def transfer_client(endpoint: str):
    """Return a boto3 S3 client for `endpoint` and the transfer settings of easybackup's uploads (16 MiB parts,
    3 at a time): what a careful operator's boto3 (or aws s3 cp) copy uses."""
    import boto3
    from boto3.s3.transfer import TransferConfig
    from botocore.config import Config

    client = boto3.client("s3", endpoint_url=endpoint, region_name=REGION, config=Config(
        s3={"addressing_style": "path"}, max_pool_connections=CONCURRENCY + 2))
    config = TransferConfig(multipart_threshold=PART_SIZE, multipart_chunksize=PART_SIZE,
                            max_concurrency=CONCURRENCY, use_threads=True)
    return client, config


class WorkerWatcher(threading.Thread):
    """Finds the worker child of a process and keeps the peak of its VmHWM."""

    def __init__(self, parent_pid: int):
        super().__init__(daemon=True, name="worker-watcher")
        self.parent_pid = parent_pid
        self.worker_pid: int | None = None
        self.peak_rss = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            if self.worker_pid is None:
                self.worker_pid = next(iter(workers_of(self.parent_pid)), None)
            if self.worker_pid is not None:
                self.peak_rss = max(self.peak_rss, read_vmhwm(self.worker_pid))
            self.stop.wait(POLL_S)


def read_vmhwm(pid: int) -> int:
    """Given a pid, return its VmHWM (peak resident set) in bytes, 0 once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass  # exited between two polls: the earlier reading stands
    return 0


# -- the environment -----------------------------------------------------------------------------------------


@dataclass
class Bench:
    cluster: PostgresCluster
    moto: MotoServer
    workdir: Path
    counter: int = 0

    def next_key(self, variant: str, codec: str) -> str:
        self.counter += 1
        return f"{variant}/{codec}/{self.counter}"

    def dump_argv(self, output: str | None = None) -> list[str]:
        """Return the dump's argv, writing to `output` (a file) or stdout: `pg_dump -Fc -Z0`, as easybackup runs it."""
        argv = ["pg_dump", "--no-password", "-Fc", "-Z0", "-d", DATABASE]
        return argv + (["-f", output] if output else [])

    def dump_env(self) -> dict:
        """Return the dump's environment (the cluster's PGHOST, PGPORT, PGUSER and passfile)."""
        return self.cluster.env()

    def server_pid(self) -> int:
        """Return the pid of the database server's main process (PostgreSQL's postmaster)."""
        return int((self.cluster.datadir / "postmaster.pid").read_text().split()[0])

    def stored_size_and_clean(self, prefix: str) -> int:
        """Return the bytes stored under `prefix` (archives only), then delete them so moto stays small."""
        client = self.moto.client()
        size = 0
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
            for obj in page.get("Contents", []):
                if not obj["Key"].endswith(".manifest.json"):
                    size += obj["Size"]
                client.delete_object(Bucket=BUCKET, Key=obj["Key"])
        return size


@contextmanager
def bench_storage() -> Iterator[tuple[MotoServer, Path]]:
    """Yield a moto server with an empty bucket and a fresh work directory; remove both afterwards."""
    # A command's first run in a fresh checkout writes the .pyc files of what it imports: disk writes that are
    # not its own. Compile them all first.
    compileall.compile_dir(REPO / "easybackup", quiet=1)
    workdir = Path(tempfile.mkdtemp(prefix="easybackup-bench-"))
    moto = MotoServer()
    try:
        moto.start()
        moto.create_bucket(BUCKET)
        yield moto, workdir
    finally:
        moto.stop()
        shutil.rmtree(workdir, ignore_errors=True)


@contextmanager
def bench_environment(rows: int, dataset: Path = DATASET) -> Iterator[Bench]:
    """Given a row count, yield a Bench with the data set loaded and an empty bucket; remove it all afterwards."""
    if not dataset.exists():
        raise FileNotFoundError(f"benchmark data set not found: {dataset}")
    with bench_storage() as (moto, workdir):
        cluster = PostgresCluster()
        try:
            cluster.init()
            cluster.create_database(DATABASE)
            started = time.monotonic()
            cluster.psql_file(str(dataset), DATABASE, {"rows": rows})
            size = cluster.psql(f"SELECT pg_size_pretty(pg_database_size('{DATABASE}'))")
            print(f"loaded rows={rows} ({size}) in {time.monotonic() - started:.0f}s", file=sys.stderr)
            yield Bench(cluster, moto, workdir)
        finally:
            cluster.destroy()


# -- the variants ------------------------------------------------------------------------------------------------


def run_limit(bench: Bench, codec: str) -> Sample:
    tree = Tree()
    started = time.monotonic()
    run_chain([bench.dump_argv()], bench.dump_env(), tree)
    return Sample("limit", "-", time.monotonic() - started, tree.cpu_s, disk_write=tree.disk_write)


def upload_env(bench: Bench) -> dict:
    return cli_env()


def run_shell(bench: Bench, codec: str) -> Sample:
    key = bench.next_key("shell", codec)
    env = {**bench.dump_env(), **upload_env(bench)}
    tree = Tree()
    started = time.monotonic()
    run_chain([bench.dump_argv(), compressor_argv(codec), uploader_argv(bench.moto.endpoint, key)], env, tree)
    wall = time.monotonic() - started
    return Sample("shell", codec, wall, tree.cpu_s, bench.stored_size_and_clean(key), disk_write=tree.disk_write)


def run_tempfile(bench: Bench, codec: str) -> Sample:
    key = bench.next_key("tempfile", codec)
    env = {**bench.dump_env(), **upload_env(bench)}
    raw = bench.workdir / "dump.tmp"
    packed = bench.workdir / "dump.tmp.z"
    tree = Tree()
    started = time.monotonic()
    try:
        run_chain([bench.dump_argv(str(raw))], env, tree)
        with open(raw, "rb") as source, open(packed, "wb") as target:
            run_chain([compressor_argv(codec)], env, tree, stdin=source, stdout=target)
        raw.unlink()
        with open(packed, "rb") as source:
            run_chain([uploader_argv(bench.moto.endpoint, key)], env, tree, stdin=source)
    finally:
        raw.unlink(missing_ok=True)
        packed.unlink(missing_ok=True)
    wall = time.monotonic() - started
    return Sample("tempfile", codec, wall, tree.cpu_s, bench.stored_size_and_clean(key),
                  disk_write=tree.disk_write)


def easybackup_config(bench: Bench, codec: str, prefix: str, **extra) -> Path:
    """Given the environment, a codec and a key prefix (and other global settings: `encryption`), write a config."""
    directory = bench.workdir / prefix.replace("/", "-")
    directory.mkdir(parents=True, exist_ok=True)
    return write_config(directory, bucket=BUCKET, endpoint=bench.moto.endpoint, log_level="info",
                        strategies=[{"name": "bench", "database_url": bench.cluster.url(DATABASE)}],
                        s3={"compression": codec, "base_path": prefix},
                        timeout={"backup": "2h", "upload": "1h", "shutdown_grace": "10s"}, **extra)


def run_easybackup(bench: Bench, codec: str, tree_root: Path | None = None, variant: str | None = None,
                   **extra) -> Sample:
    """Given the environment and a codec, time `easybackup once`; with `tree_root`, the easybackup of another
    checkout (an earlier commit: `--compare-tree`), run as variant `easybackup@base`; `variant` names another one
    whose config differs by the global settings in `extra` (`encryption`: tests/perf/bench_age.py)."""
    variant = variant or ("easybackup" if tree_root is None else "easybackup@base")
    prefix = bench.next_key(variant, codec)
    config = easybackup_config(bench, codec, prefix, **extra)
    tree = Tree()
    started = time.monotonic()
    # Its output goes through a pipe that this process drains: a log file written by the run itself would count
    # in its disk writes (a page is counted each time it is dirtied again after writeback), and it is not the
    # backup path's.
    if tree_root is None:
        process = start_drained([*EASYBACKUP, "once", "-c", str(config)])
    else:  # `-m easybackup.worker` imports from the working directory first, then PYTHONPATH, then the venv's
        process = start_drained([sys.executable, str(tree_root / "bin" / "easybackup"), "once", "-c", str(config)],
                                cli_env(PYTHONPATH=str(tree_root)), cwd=tree_root)
    watcher = WorkerWatcher(process.pid)
    watcher.start()
    try:
        reap_drained(process, tree, "easybackup once")
    finally:
        watcher.stop.set()
        watcher.join()
    wall = time.monotonic() - started
    return Sample(variant, codec, wall, tree.cpu_s, bench.stored_size_and_clean(prefix),
                  worker_rss=watcher.peak_rss or None, disk_write=tree.disk_write)


def start_drained(argv: list[str], env: dict | None = None, cwd: Path | None = None) -> subprocess.Popen:
    """Given an easybackup command line (and its environment and working directory), start it with its output on
    a pipe (reap_drained drains it)."""
    return subprocess.Popen(argv, env=env or cli_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, cwd=cwd)


def reap_drained(process: subprocess.Popen, tree: Tree, what: str) -> bytes:
    """Given a process from start_drained, wait for it while reading its output; return the output, or raise
    with its end if the process failed."""
    output = bytearray()
    drain = threading.Thread(target=lambda: output.extend(process.stdout.read()), daemon=True)
    drain.start()
    try:
        reap(process, tree, what)
    except RuntimeError as failure:
        drain.join()
        raise RuntimeError(f"{failure}: {output[-3000:].decode(errors='replace')}") from None
    finally:
        drain.join()
        process.stdout.close()
    return bytes(output)


def run_stream(bench: Bench, codec: str, relay: bool) -> Sample:
    """The worker's pipeline and upload in a child Python process, with or without the counting relay."""
    key = bench.next_key("stream", codec)
    env = {**bench.cluster.env(), **upload_env(bench)}
    argv = [sys.executable, "-m", "tests.perf.bench_backup", "_stream", bench.moto.endpoint, BUCKET, key, codec,
            "relay" if relay else "direct"]
    tree = Tree()
    started = time.monotonic()
    run_chain([argv], env, tree)
    wall = time.monotonic() - started
    return Sample("stream+relay" if relay else "stream", codec, wall, tree.cpu_s,
                  bench.stored_size_and_clean(key), disk_write=tree.disk_write)


def stream_in_process(endpoint: str, bucket: str, key: str, codec: str, mode: str) -> None:
    """What backup.py does, minus the manifest: pg_dump | compressor into a StreamingUpload.

    For tuning experiments, BENCH_PART_MIB, BENCH_CONCURRENCY, BENCH_PIPE_KIB and BENCH_COMPRESSOR (an argv,
    space-separated) override easybackup's part size, upload concurrency, pipe size and compressor.
    """
    import boto3
    from botocore.config import Config

    from easybackup.pipeline.stages import Pipeline, StageSpec
    from easybackup.storage import multipart

    if "BENCH_PART_MIB" in os.environ:
        multipart.FIRST_PART_SIZE = int(os.environ["BENCH_PART_MIB"]) * MiB
    if "BENCH_PIPE_KIB" in os.environ:
        multipart.PIPE_SIZE = int(os.environ["BENCH_PIPE_KIB"]) * 1024
    concurrency = int(os.environ.get("BENCH_CONCURRENCY", CONCURRENCY))
    compressor = compressor_stage(codec)
    if os.environ.get("BENCH_COMPRESSOR"):
        compressor = StageSpec(compressor.name, os.environ["BENCH_COMPRESSOR"].split())
    client = boto3.client("s3", endpoint_url=endpoint, region_name=REGION, config=Config(
        s3={"addressing_style": "path"}, max_pool_connections=max(10, concurrency + 2)))
    stages = [StageSpec("pg_dump", ["pg_dump", "--no-password", "-Fc", "-Z0", "-d", DATABASE]), compressor]
    with Pipeline(stages, count_after="pg_dump" if mode == "relay" else None) as pipeline:
        with StreamingUpload(client, bucket, key, concurrency=concurrency) as upload:
            upload.upload_fd(pipeline.output_fd)
            pipeline.wait()
            upload.complete()


def idle_supervisor_cpu(bench: Bench, strategies: int = 50, quiet_s: float = 5.0,
                        measure_s: float = 30.0) -> float | None:
    """Given the environment, run `easybackup run` with `strategies` strategies that are not due; return the
    CPU it uses while idle, in percent of one core (None when `run` does not exist yet).

    Measuring starts once the startup work (a look at S3 per strategy) is over: the log was quiet `quiet_s`.
    """
    if not (REPO / "easybackup" / "cli" / "run.py").exists():
        return None
    directory = bench.workdir / "idle"
    directory.mkdir(exist_ok=True)
    url = bench.cluster.url(DATABASE)
    config = write_config(directory, bucket=BUCKET, endpoint=bench.moto.endpoint, log_level="info",
                          strategies=[{"name": f"s{n}", "database_url": url} for n in range(strategies)],
                          schedule="1d", monitoring={"metrics": {"port": free_port(), "bind": "127.0.0.1"},
                                                     "health_check": {"port": free_port(), "bind": "127.0.0.1"}})
    with open(directory / "run.log", "wb") as log:
        process = subprocess.Popen([*EASYBACKUP, "run", "-c", str(config)], env=cli_env(), stdout=log,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        wait_until_quiet(directory / "run.log", quiet_s, process)
        before = process_cpu_s(process.pid)
        time.sleep(measure_s)
        used = process_cpu_s(process.pid) - before
    finally:
        process.terminate()
        process.wait(30)
    return 100.0 * used / measure_s


def wait_until_quiet(log: Path, quiet_s: float, process: subprocess.Popen, limit_s: float = 300) -> None:
    """Given a log file, return once it has not grown for `quiet_s` seconds; raise if the process exits."""
    deadline = time.monotonic() + limit_s
    size, since = -1, time.monotonic()
    while time.monotonic() - since < quiet_s:
        if process.poll() is not None:
            raise RuntimeError(f"easybackup run exited: {log.read_text()[-2000:]}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"easybackup run still busy after {limit_s:.0f}s: {log.read_text()[-2000:]}")
        if log.stat().st_size != size:
            size, since = log.stat().st_size, time.monotonic()
        time.sleep(0.5)


def process_cpu_s(pid: int, reaped: bool = False) -> float:
    """Given a pid, return its user + system CPU seconds so far (its threads included); with `reaped`, those of
    the children it has waited for too."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    used = int(fields[11]) + int(fields[12]) + (int(fields[13]) + int(fields[14]) if reaped else 0)
    return used / os.sysconf("SC_CLK_TCK")


def tree_cpu_s(root: int) -> float:
    """Given a pid, return the CPU seconds of it, of its live descendants and of every child they reaped."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue  # gone meanwhile
            parents.setdefault(ppid, []).append(int(entry.name))
    total, pending = 0.0, [root]
    while pending:
        pid = pending.pop()
        try:
            total += process_cpu_s(pid, reaped=True)
        except (OSError, ValueError, IndexError):
            continue
        pending += parents.get(pid, [])
    return total


def servers_cpu_s(bench: Bench) -> float:
    """Given the environment, return the CPU seconds the database server's and moto's processes have used so far:
    the work every variant makes them do, without what other work on a shared machine uses."""
    return tree_cpu_s(bench.server_pid()) + tree_cpu_s(bench.moto.process.pid)


VARIANTS = {"shell": run_shell, "tempfile": run_tempfile, "easybackup": run_easybackup}


def run_rounds(bench: Bench, codecs: list[str], runs: int, relay_check: bool = False,
               variants: list[str] | None = None, compare_tree: Path | None = None) -> list[Sample]:
    """Given the environment, run every variant `runs` times, interleaved, the order rotating each round."""
    jobs = [("limit", "-", run_limit)]
    for codec in codecs:
        jobs += [(name, codec, VARIANTS[name]) for name in (list(VARIANTS) if variants is None else variants)]
        if compare_tree is not None:
            jobs.append(("easybackup@base", codec, lambda b, c: run_easybackup(b, c, compare_tree)))
        if relay_check:
            jobs += [("stream", codec, lambda b, c: run_stream(b, c, False)),
                     ("stream+relay", codec, lambda b, c: run_stream(b, c, True))]
    return run_interleaved(bench, jobs, runs)


def run_interleaved(bench, jobs: list[tuple[str, str, Callable]], runs: int,
                    prepare: Callable[[], None] | None = None) -> list[Sample]:
    """Given (variant, codec, job) triples, run each job(bench, codec) `runs` times, the order rotating every
    round so that noise from other work on the machine hits every variant alike; return the samples, each with
    the machine's CPU meanwhile. `prepare` runs before each job, outside what is measured."""
    samples = []
    for round_number in range(runs):
        shift = round_number % len(jobs)
        for name, codec, job in jobs[shift:] + jobs[:shift]:
            if prepare is not None:
                prepare()
            busy_before, servers_before = machine_busy_s(), servers_cpu_s(bench)
            sample = job(bench, codec)
            sample.machine_cpu_s = machine_busy_s() - busy_before
            sample.servers_cpu_s = servers_cpu_s(bench) - servers_before
            print(f"  round {round_number + 1}: {name:<13} {codec:<5} {sample.wall_s:7.2f}s wall "
                  f"{sample.cpu_s:7.2f}s cpu", file=sys.stderr)
            samples.append(sample)
    return samples


# -- reporting -----------------------------------------------------------------------------------------------


def mib(value: int | None) -> str:
    return "-" if value is None else f"{value / MiB:.1f}"


def machine_description() -> str:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024 ** 3
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    return f"{os.cpu_count()} CPUs ({cpu}), {memory:.0f} GiB RAM, load {load}, {platform.release()}"


def cpu(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


# The table's columns after wall and CPU time: name -> the cell of a summary.
COLUMNS = {
    "server cpu": lambda s: cpu(s.servers_cpu_s),
    "machine cpu": lambda s: cpu(s.machine_cpu_s),
    "stored MiB": lambda s: mib(s.stored_bytes),
    "worker RSS MiB": lambda s: mib(s.worker_rss),
    "disk write MiB": lambda s: mib(s.disk_write),
}
BACKUP_COLUMNS = ("machine cpu", "stored MiB", "worker RSS MiB", "disk write MiB")


def render_table(summaries: list[Summary], group: str = "codec", columns: tuple[str, ...] = BACKUP_COLUMNS) -> str:
    """Given summaries, return the table; `group` heads the second column (what `Summary.codec` holds)."""
    header = f"{'variant':<13} {group:<5} {'runs':>4} {'wall s':>8} {'cpu s':>8} " + " ".join(columns) + "  walls"
    lines = [header, "-" * len(header)]
    for s in summaries:
        cells = " ".join(f"{COLUMNS[name](s):>{len(name)}}" for name in columns)
        lines.append(f"{s.variant:<13} {s.codec:<5} {s.runs:>4} {s.wall_s:>8.2f} {s.cpu_s:>8.2f} {cells}  {s.walls}")
    return "\n".join(lines)


def find(summaries: list[Summary], variant: str, codec: str) -> Summary | None:
    return next((s for s in summaries if s.variant == variant and s.codec == codec), None)


def ratios(summaries: list[Summary], codecs: list[str]) -> dict[str, float]:
    """Given the summaries, return the ratios the targets are about, keyed "easybackup/shell gzip" etc."""
    result = {}
    limit = find(summaries, "limit", "-")
    for codec in codecs:
        ours, shell, temp = (find(summaries, name, codec) for name in ("easybackup", "shell", "tempfile"))
        if ours and shell:
            result[f"easybackup/shell {codec}"] = ours.wall_s / shell.wall_s
        if ours and limit:
            result[f"easybackup/limit {codec}"] = ours.wall_s / limit.wall_s
        if ours and temp:
            result[f"tempfile/easybackup {codec}"] = temp.wall_s / ours.wall_s
            if ours.machine_cpu_s:
                result[f"ceiling tempfile/stream {codec}"] = temp.wall_s / (ours.machine_cpu_s / os.cpu_count())
        direct, relayed = find(summaries, "stream", codec), find(summaries, "stream+relay", codec)
        if direct and relayed:
            result[f"relay cost {codec}"] = relayed.wall_s / direct.wall_s
    return result


TARGETS = {
    "easybackup/shell": f"<= {MAX_RATIO_VS_SHELL} (goal {GOAL_RATIO_VS_SHELL})",
    "easybackup/limit zstd": f"<= {MAX_ZSTD_RATIO_VS_LIMIT}",
    "ceiling tempfile/stream": "(no target: the most any pipeline doing this work could reach on this machine)",
    "relay cost": "<= 1.02",
    "supervisor idle": f"<= {MAX_IDLE_CPU_PERCENT} (% of one core)",
}


def tempfile_target(values: dict[str, float], codec: str) -> float:
    """Given the ratios, return the least `tempfile/easybackup` may be: 95% of the measured ceiling (the most
    any pipeline doing the same work could gain here), and never more than the 1.3x goal."""
    ceiling = values.get(f"ceiling tempfile/stream {codec}")
    return MIN_TEMPFILE_RATIO if ceiling is None else min(MIN_TEMPFILE_RATIO, REACH_OF_CEILING * ceiling)


def describe_tempfile_target(values: dict[str, float], codec: str) -> str:
    """Given the ratios, return the temp-file target as printed: what is asserted, and the goal."""
    ceiling = values.get(f"ceiling tempfile/stream {codec}")
    text = f">= {tempfile_target(values, codec):.3f} ({REACH_OF_CEILING:.0%} of the ceiling, at most the goal)"
    text += f"; goal >= {MIN_TEMPFILE_RATIO}"
    if ceiling is not None and ceiling < MIN_TEMPFILE_RATIO:
        text += f": not reachable on {os.cpu_count()} cores (ceiling {ceiling:.3f})"
    return text


def base_ratios(summaries: list[Summary], codecs: list[str]) -> dict[str, float]:
    """Given summaries with an easybackup@base variant, return this checkout's wall time and worker RSS over it."""
    values = {}
    for codec in codecs:
        ours, base = find(summaries, "easybackup", codec), find(summaries, "easybackup@base", codec)
        if ours and base:
            values[f"easybackup/base wall {codec}"] = ours.wall_s / base.wall_s
            if ours.worker_rss and base.worker_rss:
                values[f"easybackup/base rss {codec}"] = ours.worker_rss / base.worker_rss
    return values


def render_ratios(values: dict[str, float], targets: dict[str, str] = TARGETS) -> str:
    """Given the ratios, return them one a line, each with the target of the first prefix in `targets` it has."""
    lines = []
    for name, value in values.items():
        target = next((t for prefix, t in targets.items() if name.startswith(prefix)), "")
        if name.startswith("easybackup/limit") and not name.endswith("zstd"):
            target = "(no target)"
        if name.startswith("tempfile/easybackup"):
            target = describe_tempfile_target(values, name.rsplit(" ", 1)[1])
        lines.append(f"{name:<26} {value:6.3f}   target {target}")
    return "\n".join(lines)


def benchmark(rows: int, runs: int, codecs: list[str], relay_check: bool = False,
              variants: list[str] | None = None, idle: bool = False,
              compare_tree: Path | None = None) -> tuple[list[Summary], dict[str, float]]:
    """Given the data set size, run the benchmark; return the summaries and the ratios (and print both).

    With `idle`, the ratios also hold "supervisor idle cpu %" when `easybackup run` exists.
    """
    with bench_environment(rows) as bench:
        if compare_tree is not None:
            compileall.compile_dir(compare_tree / "easybackup", quiet=1)
        samples = run_rounds(bench, codecs, runs, relay_check, variants, compare_tree)
        idle_cpu = idle_supervisor_cpu(bench, IDLE_STRATEGIES) if idle else None
    summaries = summarize(samples)
    values = ratios(summaries, codecs)
    if compare_tree is not None:
        values.update(base_ratios(summaries, codecs))
    if idle_cpu is not None:
        values[f"supervisor idle cpu % ({IDLE_STRATEGIES} strategies)"] = idle_cpu
    print(f"\nmachine: {machine_description()}\ndata set: rows={rows}, median of {runs} interleaved runs\n")
    print(render_table(summaries))
    print()
    print(render_ratios(values))
    return summaries, values


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_upload":
        upload_stdin(*argv[1:4])
        return 0
    if argv and argv[0] == "_stream":
        stream_in_process(*argv[1:6])
        return 0
    parser = argparse.ArgumentParser(prog="python -m tests.perf.bench_backup", description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=4_000_000, help="data set rows (4000000 is ~1 GB)")
    parser.add_argument("--runs", type=int, default=3, help="rounds; each variant's median is reported")
    parser.add_argument("--codecs", default="gzip,zstd", help="comma-separated: gzip,zstd")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated: shell,tempfile,easybackup")
    parser.add_argument("--relay-check", action="store_true",
                        help="also time the worker's pipeline in-process with and without the counting relay")
    parser.add_argument("--compare-tree", type=Path, metavar="CHECKOUT",
                        help="also run the easybackup of another checkout (e.g. `git worktree add /tmp/base REV`) "
                             "as variant easybackup@base, and print this one's wall time and RSS over its")
    parser.add_argument("--idle", action="store_true",
                        help=f"also measure `easybackup run`'s CPU while idle with {IDLE_STRATEGIES} strategies")
    args = parser.parse_args(argv)
    benchmark(args.rows, args.runs, [c for c in args.codecs.split(",") if c], args.relay_check,
              [v for v in args.variants.split(",") if v], args.idle, args.compare_tree)
    return 0


if __name__ == "__main__":
    sys.exit(main())
