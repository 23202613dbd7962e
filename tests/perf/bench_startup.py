"""Benchmark: what each start-up trick of `easybackup once` buys, each turned off alone (docs/architecture.md,
"Start-up tricks, measured").

    python -m tests.perf.bench_startup [--rows 2000] [--runs 21] [--tricks spare,client,...]

Starts a throwaway PostgreSQL cluster and a moto S3 server, loads a small slice of tests/fixtures/dataset.sql
(a backup whose fixed cost is most of its time), copies this checkout once per variant — `all` as it is, and
`no-<trick>` with that one trick edited out (TRICKS: the edit is a text replacement that must match exactly
once, so a renamed line fails loudly instead of measuring nothing) — and runs `bin/easybackup once` of each
copy interleaved, the order rotating every round. Prints each variant's median wall time and CPU seconds (the
process tree's, pg_dump and the compressor included), and per round its difference to `all` (the median of
those, and in how many rounds it was the slower: on a shared machine, the sign count says whether a difference
is more than noise). Each copy runs with its own
directory as the working directory and on PYTHONPATH, so its worker (`python -m easybackup.worker`) imports
the copy too.
"""

from __future__ import annotations

import argparse
import compileall
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from tests.harness.configs import REPO, cli_env, write_config
from tests.perf.bench_backup import BUCKET, DATABASE, Bench, Sample, Tree, bench_environment, reap_drained, \
    start_drained

# trick -> (file, the text that does it, the text without it)
TRICKS = {
    "spare": ("easybackup/cli/__init__.py", "    return SpareWorker()\n", "    return None\n"),
    "client": ("easybackup/worker/main.py", "client = BackgroundClient(strategy.s3)",
               "client = __import__('easybackup.storage.s3', fromlist=['x']).make_client(strategy.s3)"),
    "early-upload": ("easybackup/worker/backup.py", "start_in_background=True", "start_in_background=False"),
    "os-exit": ("easybackup/worker/main.py", "    os._exit(code)", "    sys.exit(code)"),
}


def make_variant(root: Path, name: str, trick: str | None) -> Path:
    """Given a directory, a variant name and the trick to turn off (None: none), copy the checkout's code there
    with that edit made; return the copy."""
    target = root / name
    shutil.copytree(REPO / "easybackup", target / "easybackup", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "bin", target / "bin")
    shutil.copytree(REPO / "schema", target / "schema")
    if trick is not None:
        relative, present, absent = TRICKS[trick]
        path = target / relative
        text = path.read_text()
        if text.count(present) != 1:
            raise SystemExit(f"{trick}: {present!r} is not in {relative} exactly once; update TRICKS")
        path.write_text(text.replace(present, absent))
    compileall.compile_dir(target / "easybackup", quiet=1)  # a first run's .pyc writes are nobody's cost
    return target


def run_variant(bench: Bench, name: str, copy: Path) -> Sample:
    bench.counter += 1
    prefix = f"startup/{name}/{bench.counter}"
    directory = bench.workdir / prefix.replace("/", "-")
    directory.mkdir(parents=True)
    config = write_config(directory, bucket=BUCKET, endpoint=bench.moto.endpoint, log_level="info",
                          strategies=[{"name": "bench", "database_url": bench.cluster.url(DATABASE)}],
                          s3={"compression": "gzip", "base_path": prefix})
    tree = Tree()
    started = time.monotonic()
    process = start_drained([sys.executable, str(copy / "bin" / "easybackup"), "once", "-c", str(config)],
                            env=cli_env(PYTHONPATH=str(copy)), cwd=copy)
    reap_drained(process, tree, f"easybackup once ({name})")
    wall = time.monotonic() - started
    return Sample(name, "-", wall, tree.cpu_s, bench.stored_size_and_clean(prefix))


def run_rounds(bench: Bench, copies: dict[str, Path], runs: int) -> list[dict[str, Sample]]:
    """Given the copies, run each once per round, the order rotating every round; return each round's samples."""
    names = list(copies)
    rounds = []
    for round_number in range(runs):
        shift = round_number % len(names)
        samples = {}
        for name in names[shift:] + names[:shift]:
            samples[name] = sample = run_variant(bench, name, copies[name])
            print(f"  round {round_number + 1}: {name:<20} {sample.wall_s:6.3f}s wall {sample.cpu_s:6.3f}s cpu",
                  file=sys.stderr)
        rounds.append(samples)
    return rounds


def render(rounds: list[dict[str, Sample]]) -> str:
    """Given the rounds, return a table: per variant the median wall and CPU time and, paired by round (so that
    what else the machine did then hits both alike), the median difference to `all` and in how many rounds the
    variant was the slower."""
    lines = [f"{'variant':<20} {'runs':>4} {'wall s':>7} {'cpu s':>6} {'Δwall':>7} {'slower':>7} {'Δcpu':>7} "
             f"{'more cpu':>8}"]
    for name in rounds[0]:
        walls, cpus = [r[name].wall_s for r in rounds], [r[name].cpu_s for r in rounds]
        dwall = [r[name].wall_s - r["all"].wall_s for r in rounds]
        dcpu = [r[name].cpu_s - r["all"].cpu_s for r in rounds]
        lines.append(f"{name:<20} {len(rounds):>4} {statistics.median(walls):7.3f} {statistics.median(cpus):6.3f} "
                     f"{statistics.median(dwall):+7.3f} {sum(d > 0 for d in dwall):>3}/{len(rounds):<3} "
                     f"{statistics.median(dcpu):+7.3f} {sum(d > 0 for d in dcpu):>4}/{len(rounds):<3}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.perf.bench_startup", description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=2000, help="data set rows (2000 is ~0.5 MB)")
    parser.add_argument("--runs", type=int, default=21, help="rounds; each variant's median is reported")
    parser.add_argument("--tricks", default=",".join(TRICKS), help=f"comma-separated, of: {','.join(TRICKS)}")
    args = parser.parse_args(argv)
    tricks = [t for t in args.tricks.split(",") if t]
    root = Path(tempfile.mkdtemp(prefix="easybackup-startup-"))
    try:
        copies = {"all": make_variant(root, "all", None)}
        copies.update({f"no-{trick}": make_variant(root, f"no-{trick}", trick) for trick in tricks})
        with bench_environment(args.rows) as bench:
            rounds = run_rounds(bench, copies, args.runs)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"\nrows={args.rows}, {args.runs} interleaved rounds; Δ: the variant minus `all` in the same round, "
          "median (+: slower without the trick)\n")
    print(render(rounds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
