"""Benchmark: what age encryption costs — `easybackup once` with zstd, with and without `encryption.age`, in one
interleaved run (issue 17: at most 1.10× the same pipeline without it).

    python -m tests.perf.bench_age [--rows N] [--runs 3]

Same environment and measurements as tests/perf/bench_backup.py (a throwaway PostgreSQL cluster and moto, the
data set loaded once, the order of the variants rotating every round so other work on the machine hits both
alike); the recipient is a fresh age key.
"""

from __future__ import annotations

import argparse
import subprocess
import sys

from tests.perf.bench_backup import (
    bench_environment,
    find,
    machine_description,
    render_table,
    run_easybackup,
    run_interleaved,
    summarize,
)

CODEC = "zstd"
MAX_RATIO = 1.10  # encrypted / plain wall time


def recipient(directory) -> str:
    """Make an age identity in `directory`; return its recipient (public key)."""
    identity = directory / "bench-age.key"
    subprocess.run(["age-keygen", "-o", str(identity)], check=True, capture_output=True)
    return subprocess.run(["age-keygen", "-y", str(identity)], check=True, capture_output=True,
                          text=True).stdout.strip()


def benchmark(rows: int, runs: int) -> tuple[list, float]:
    """Given the data set size and the rounds, run both variants interleaved; return the summaries and the ratio
    encrypted/plain of the median wall times (and print both)."""
    with bench_environment(rows) as bench:
        encryption = {"age": {"recipients": [recipient(bench.workdir)]}}
        jobs = [("easybackup", CODEC, run_easybackup),
                ("encrypted", CODEC, lambda b, codec: run_easybackup(b, codec, variant="encrypted",
                                                                   encryption=encryption))]
        samples = run_interleaved(bench, jobs, runs)
    summaries = summarize(samples)
    ratio = find(summaries, "encrypted", CODEC).wall_s / find(summaries, "easybackup", CODEC).wall_s
    print(f"\nmachine: {machine_description()}\ndata set: rows={rows}, median of {runs} interleaved runs\n")
    print(render_table(summaries))
    print(f"\nencrypted/easybackup {CODEC}  {ratio:6.3f}   target <= {MAX_RATIO}")
    return summaries, ratio


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.perf.bench_age", description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=4_000_000, help="data set rows (4000000 is ~1 GB)")
    parser.add_argument("--runs", type=int, default=3, help="rounds; each variant's median is reported")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    _, ratio = benchmark(args.rows, args.runs)
    return 0 if ratio <= MAX_RATIO else 1


if __name__ == "__main__":
    sys.exit(main())
