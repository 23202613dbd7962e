"""Benchmark: `easybackup once` of a MariaDB database against the shell pipeline a careful operator writes (issue 16).

    python -m tests.perf.bench_mysql [--rows N] [--runs 3] [--codecs zstd,gzip] [--compare-tree CHECKOUT]

The 1 GB run (the lead's, on a quiet machine):

    .venv/bin/python -m tests.perf.bench_mysql --rows 4000000 --runs 5

Starts a throwaway MariaDB server (tests/harness/mariadb.py) and a moto S3 server, generates the data set inside
the server (the SEQUENCE engine: `INSERT … SELECT … FROM seq_1_to_N`, in chunks, into one InnoDB table with an
integer key, a date, a short string, a decimal, a text column and a blob), then runs these variants interleaved
(the order rotates every round) and prints the median of each:

    limit      mariadb-dump > /dev/null                                  the floor: nothing is faster
    shell      mariadb-dump | <compressor> | boto3 upload_fileobj       what a careful operator writes
    easybackup bin/easybackup once -c config.yaml (a mysql:// strategy)  the real CLI, supervisor + worker

The dump is exactly the one easybackup runs: its argv and environment come from easybackup's own engine
(MysqlSource.dump_stage(): the same options, the password in a 0600 --defaults-extra-file, never in argv or the
environment). The compressor (zstd by default) and the uploader's part size and concurrency are easybackup's, as
in tests/perf/bench_backup.py, whose machinery (Tree/rusage CPU, the worker's VmHWM, disk writes from
ru_oublock, interleaving, the table) this module reuses. The targets: `once` at most 1.10× the shell pipeline
(goal 1.05×), the worker's peak RSS at most 150 MiB, and no dump data written to local disk; the command exits 1
when one is missed (tests/perf/test_mysql_benchmark.py asserts them in `make perf`).

Size and load time, measured 2026-12-07 on the shared 2-core VM (load 1.4-3.7): a row is 237-249 bytes of dump
output (200,000 rows: 47.4 MB; 400,000 rows: 99.5 MB, 92 MiB InnoDB file, 34.6 MB with zstd -3), so --rows 4000000
is a ~1.0 GB dump. Generating the data takes 4-5 s per 100 MB of dump (2.5 s for 47 MB, 4.2 s for 99.5 MB); the
1 GB load was not timed (the harness's 64 MiB buffer pool may make it somewhat slower per 100 MB).
"""

from __future__ import annotations

import argparse
import compileall
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from easybackup.engines.mysql_dump import MysqlSource
from easybackup.pipeline.stages import StageSpec
from tests.harness.mariadb import MariaDBServer
from tests.perf.bench_backup import (
    DATABASE,
    GOAL_RATIO_VS_SHELL,
    MAX_DISK_WRITE,
    MAX_RATIO_VS_SHELL,
    MAX_WORKER_RSS,
    MiB,
    Bench,
    Summary,
    base_ratios,
    bench_storage,
    find,
    machine_description,
    mib,
    ratios,
    render_ratios,
    render_table,
    run_rounds,
    summarize,
)

DEFAULT_ROWS = 4_000_000  # ~1 GB of dump output
CHUNK_ROWS = 250_000  # rows per INSERT: each transaction (and its undo log) stays small
VARIANTS = ("shell", "easybackup")  # and `limit`, always
TABLE = "bench_orders"
SCHEMA = f"""CREATE TABLE {TABLE} (
    id BIGINT UNSIGNED NOT NULL PRIMARY KEY,
    customer_id INT UNSIGNED NOT NULL,
    created_at DATETIME NOT NULL,
    status VARCHAR(16) NOT NULL,
    amount DECIMAL(12, 2) NOT NULL,
    note TEXT NOT NULL,
    payload BLOB NOT NULL
) ENGINE=InnoDB"""
# Deterministic rows that compress about as a real table does: numbers, repeated words, hashes (hex in `note`,
# bytes in `payload`, which --hex-blob dumps as hex).
ROWS = f"""INSERT INTO {TABLE}
SELECT seq, seq * 7919 % 100003, TIMESTAMP'2026-01-01 00:00:00' + INTERVAL seq * 13 SECOND,
       ELT(1 + seq % 4, 'paid', 'pending', 'shipped', 'refunded'), seq * 7919 % 1000000 / 100,
       CONCAT('order ', seq, ' for customer ', seq * 7919 % 100003, ' via ', ELT(1 + seq % 3, 'web', 'phone',
              'mobile app'), ': ',
              REPEAT(ELT(1 + seq % 3, 'express shipping, ', 'gift wrap, ', 'standard delivery, '), 1 + seq % 4),
              MD5(seq)),
       UNHEX(CONCAT(MD5(seq), SHA1(seq)))
FROM seq_{{first}}_to_{{last}}"""
# What the ratios are held to here: bench_backup's `easybackup/limit zstd` target is PostgreSQL's.
TARGETS = {"easybackup/shell": f"<= {MAX_RATIO_VS_SHELL} (goal {GOAL_RATIO_VS_SHELL})",
           "easybackup/limit": "(no target)"}


@dataclass
class MysqlBench(Bench):
    """bench_backup's Bench with a MariaDB server as `cluster` (its url() is what the config's strategy names)
    and `dump`, the dump stage easybackup's engine builds for it."""

    dump: StageSpec | None = None

    def dump_argv(self, output: str | None = None) -> list[str]:
        if output is not None:
            raise ValueError("the MySQL benchmark has no temp-file variant: the dump goes to stdout")
        return list(self.dump.argv)

    def dump_env(self) -> dict:
        return dict(self.dump.env)

    def server_pid(self) -> int:
        return int((self.cluster.root / "mariadb.pid").read_text().split()[0])


def insert_statements(rows: int, chunk: int = CHUNK_ROWS) -> list[str]:
    """Given a row count, return the INSERTs that generate rows 1..rows, `chunk` rows each."""
    return [ROWS.format(first=first, last=min(first + chunk - 1, rows)) for first in range(1, rows + 1, chunk)]


def load(server: MariaDBServer, rows: int) -> None:
    """Given a running server, create the benchmark database and generate `rows` rows in it."""
    server.create_database(DATABASE)
    server.sql(SCHEMA, DATABASE)
    started = time.monotonic()
    for statement in insert_statements(rows):
        server.sql(statement, DATABASE)
    size = (server.datadir / DATABASE / f"{TABLE}.ibd").stat().st_size
    print(f"loaded rows={rows} ({size / MiB:.0f} MiB InnoDB file) in {time.monotonic() - started:.0f}s",
          file=sys.stderr)


@contextmanager
def mysql_environment(rows: int) -> Iterator[MysqlBench]:
    """Given a row count, yield a MysqlBench with the data generated and an empty bucket; remove it all after."""
    with bench_storage() as (moto, workdir):
        server = MariaDBServer()
        try:
            server.init()
            load(server, rows)
            with MysqlSource(DATABASE, server.url(DATABASE), workdir) as source:
                yield MysqlBench(server, moto, workdir, dump=source.dump_stage())
        finally:
            server.destroy()


def missed_targets(summaries: list[Summary], values: dict[str, float], codecs: list[str]) -> list[str]:
    """Given the summaries and ratios, return one line per target missed (none: every target met)."""
    missed = []
    for codec in codecs:
        ratio = values[f"easybackup/shell {codec}"]
        if ratio > MAX_RATIO_VS_SHELL:
            missed.append(f"easybackup/shell {codec} is {ratio:.3f}, above {MAX_RATIO_VS_SHELL}")
        ours = find(summaries, "easybackup", codec)
        if ours.worker_rss is None:
            missed.append(f"the worker of easybackup with {codec} was never seen: its peak RSS is unknown")
        elif ours.worker_rss > MAX_WORKER_RSS:
            missed.append(f"the worker's peak RSS with {codec} is {mib(ours.worker_rss)} MiB, "
                          f"above {mib(MAX_WORKER_RSS)}")
        if ours.disk_write > MAX_DISK_WRITE:
            missed.append(f"easybackup with {codec} wrote {ours.disk_write} bytes to local disk, "
                          f"above {MAX_DISK_WRITE}")
    return missed


def benchmark(rows: int, runs: int, codecs: list[str],
              compare_tree: Path | None = None) -> tuple[list[Summary], dict[str, float]]:
    """Given the data set size, the rounds and the codecs, run the benchmark; return the summaries and the ratios
    (and print both)."""
    with mysql_environment(rows) as bench:
        if compare_tree is not None:  # its first run would write its .pyc files: disk writes not its own
            compileall.compile_dir(compare_tree / "easybackup", quiet=1)
        samples = run_rounds(bench, codecs, runs, variants=list(VARIANTS), compare_tree=compare_tree)
    summaries = summarize(samples)
    values = ratios(summaries, codecs)
    values.update(base_ratios(summaries, codecs))
    print(f"\nmachine: {machine_description()}\ndata set: MariaDB, rows={rows}, median of {runs} interleaved runs\n")
    print(render_table(summaries))
    print()
    print(render_ratios(values, TARGETS))
    return summaries, values


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.perf.bench_mysql", description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=DEFAULT_ROWS, help=f"data set rows ({DEFAULT_ROWS} is ~1 GB)")
    parser.add_argument("--runs", type=int, default=3, help="rounds; each variant's median is reported")
    parser.add_argument("--codecs", default="zstd", help="comma-separated: zstd,gzip")
    parser.add_argument("--compare-tree", type=Path, metavar="CHECKOUT",
                        help="also run the easybackup of another checkout as variant easybackup@base")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    codecs = [c for c in args.codecs.split(",") if c]
    summaries, values = benchmark(args.rows, args.runs, codecs, args.compare_tree)
    missed = missed_targets(summaries, values, codecs)
    for line in missed:
        print(f"missed: {line}", file=sys.stderr)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
