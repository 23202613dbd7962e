"""`easybackup once` streams a database into S3 and the archive restores to identical tables."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import threading
import time
from pathlib import Path

import pytest

from easybackup.engines.postgres import pg_dump_version
from tests.harness.configs import EASYBACKUP, REPO, cli_env, run_cli, write_config
from tests.harness.daemon import workers_of
from tests.harness.restore import archive_keys, decompress, download, manifest_keys, restore_dump, sha256_of

DATASET = REPO / "tests" / "fixtures" / "dataset.sql"  # the benchmark data set
EXTENSIONS = {("custom", "gzip"): ".dump.gz", ("custom", "zstd"): ".dump.zst", ("custom", "none"): ".dump",
              ("plain", "gzip"): ".sql.gz", ("plain", "zstd"): ".sql.zst", ("plain", "none"): ".sql"}


@pytest.fixture(scope="module")
def sample_db(pg) -> tuple[str, dict]:
    """A database with the benchmark data set (small) plus unicode, NULLs and bytea; its table fingerprints."""
    pg.create_database("sample")
    pg.psql_file(str(DATASET), "sample", {"rows": 20000})
    pg.psql_file(str(REPO / "examples" / "demo-data.sql"), "sample")
    return "sample", pg.table_fingerprints("sample")


def no_psql(tmp_path: Path) -> Path:
    """Return a directory whose `psql` fails: a backup must read the server's version off its own dump."""
    shims = tmp_path / "shims"
    shims.mkdir()
    (shims / "psql").write_text("#!/bin/sh\necho 'psql: not for this test' >&2\nexit 2\n")
    (shims / "psql").chmod(0o755)
    return shims


def one_strategy(pg, database: str, **extra) -> list[dict]:
    return [{"name": "main", "database_url": pg.url(database), **extra}]


@pytest.mark.parametrize("fmt,compression", sorted(EXTENSIONS))
def test_a_backup_restores_to_identical_tables(pg, moto, bucket, tmp_path, sample_db, fmt, compression):
    database, fingerprints = sample_db
    config = write_config(tmp_path, bucket=bucket, endpoint=moto.endpoint, strategies=one_strategy(pg, database),
                          s3={"compression": compression}, pg_dump={"format": fmt})
    result = run_cli("once", "-c", str(config), env=cli_env(PATH=f"{no_psql(tmp_path)}:{os.environ['PATH']}"))
    assert result.returncode == 0, result.stderr
    [key] = archive_keys(moto, bucket)
    assert key.startswith("backups/main/sample/") and key.endswith(EXTENSIONS[(fmt, compression)])
    stored = download(moto, bucket, key)
    [manifest_key] = manifest_keys(moto, bucket)
    manifest = json.loads(download(moto, bucket, manifest_key))
    assert manifest["sha256"] == sha256_of(stored) and manifest["stored_bytes"] == len(stored)
    assert (manifest["format"], manifest["compression"], manifest["database"]) == (fmt, compression, "sample")
    assert manifest["server_version"] == pg.psql("show server_version"), "read off the dump's own header"
    assert manifest["pg_dump_version"] == pg_dump_version()
    dump = decompress(stored, compression)
    assert manifest["dump_bytes"] == len(dump), "dump_bytes counts what pg_dump wrote, before compression"
    target = f"restored_{fmt}_{compression}"
    pg.create_database(target)
    restore_dump(pg, dump, fmt, target)
    assert pg.table_fingerprints(target) == fingerprints
    assert key in result.stdout and "success" in result.stdout


def write_recording_wrapper(directory: Path, program: str, record: Path) -> None:
    """Put a `program` on PATH in `directory` that records its argv and environment, then runs the real one."""
    real = next(str(Path(p) / program) for p in os.environ["PATH"].split(":")
                if (Path(p) / program).exists() and Path(p) != directory)
    wrapper = directory / program
    wrapper.write_text(
        "#!/usr/bin/env python3\nimport json, os, sys\n"
        # One write() on an O_APPEND fd: pg_dump and psql run at once, and their records must not interleave.
        f"fd = os.open({str(record)!r}, os.O_WRONLY | os.O_APPEND | os.O_CREAT)\n"
        "os.write(fd, (json.dumps({'argv': sys.argv, 'env': dict(os.environ)}) + '\\n').encode())\n"
        "os.close(fd)\n"
        f"os.execv({real!r}, [{real!r}] + sys.argv[1:])\n")
    wrapper.chmod(0o755)


def test_the_password_never_reaches_argv_environment_or_logs(pg, moto, bucket, tmp_path, sample_db):
    database, _ = sample_db
    password = "Pw-distinctive-7731"
    # Its own role: tests/reliability/test_secrets.py has a `secretive` that owns a database.
    pg.psql(f"DROP ROLE IF EXISTS password_probe; CREATE ROLE password_probe LOGIN PASSWORD '{password}' SUPERUSER")
    wrappers = tmp_path / "bin"
    wrappers.mkdir()
    record = tmp_path / "calls.jsonl"
    for program in ("pg_dump", "psql"):
        write_recording_wrapper(wrappers, program, record)
    url = pg.url(database, user="password_probe", password=password)
    config = write_config(tmp_path, bucket=bucket, endpoint=moto.endpoint,
                          strategies=[{"name": "main", "database_url": url}])
    env = cli_env(PATH=f"{wrappers}:{os.environ['PATH']}")
    result = run_cli("once", "-c", str(config), "--log-level", "debug", env=env)
    assert result.returncode == 0, result.stderr
    calls = [json.loads(line) for line in record.read_text().splitlines()]
    assert any(Path(call["argv"][0]).name == "pg_dump" for call in calls)
    for call in calls:
        assert password not in " ".join(call["argv"])
        assert password not in json.dumps(call["env"])
        assert "PGPASSWORD" not in call["env"]
    assert password not in result.stdout + result.stderr
    for key in moto.list_keys(bucket):
        if key.endswith(".manifest.json"):
            assert password not in download(moto, bucket, key).decode()
    assert not list((tmp_path / "tmp").iterdir()), "the private dir with the passfile must be removed"
    assert stat.S_IMODE((tmp_path / "tmp").stat().st_mode) == 0o700


def pids_of(program: str, argument_fragment: str) -> list[int]:
    """Return the pids whose argv[0] ends with `program` and whose arguments contain `argument_fragment`
    (so a test only ever touches its own processes, never those of a test running beside it)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = [part.decode(errors="replace") for part in (entry / "cmdline").read_bytes().split(b"\0")]
        except OSError:
            continue
        if argv and argv[0].endswith(program) and any(argument_fragment in part for part in argv[1:]):
            found.append(int(entry.name))
    return found


def assert_nothing_left(moto, bucket: str) -> None:
    assert archive_keys(moto, bucket) == [] and manifest_keys(moto, bucket) == []
    assert moto.open_uploads(bucket) == []


def once_killing_when_streaming(config: Path, proxy, program: str, fragment: str) -> tuple:
    """Run `once`, SIGKILLing `program` (the one whose argv holds `fragment`: this test's own) once more than
    300 kB went through `proxy`; return the CLI's result and the pids killed."""
    killed = []

    def kill_when_it_streams() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not killed:
            fresh = pids_of(program, fragment)
            if fresh and proxy.bytes_down > 300_000:
                os.kill(fresh[0], signal.SIGKILL)
                killed.append(fresh[0])
            time.sleep(0.05)

    killer = threading.Thread(target=kill_when_it_streams)
    killer.start()
    result = run_cli("once", "-c", str(config))
    killer.join()
    return result, killed


def test_pg_dump_killed_mid_stream_fails_naming_pg_dump(pg, moto, bucket, tmp_path, sample_db, fault_proxy):
    database, _ = sample_db
    proxy = fault_proxy(pg.host, pg.port, "tcp")
    proxy.throttle(200_000)
    config = write_config(tmp_path, bucket=bucket, endpoint=moto.endpoint,
                          strategies=[{"name": "main", "database_url": pg.url(database, port=proxy.port)}])
    # pg_dump's --dbname names the proxy's port
    result, killed = once_killing_when_streaming(config, proxy, "pg_dump", f":{proxy.port}/")
    assert killed, "pg_dump was never seen streaming"
    assert result.returncode == 1, result.stderr
    assert "pg_dump killed by signal 9" in result.stdout
    assert_nothing_left(moto, bucket)


def test_a_failing_compressor_fails_naming_it(pg, moto, bucket, tmp_path, sample_db):
    database, _ = sample_db
    wrappers = tmp_path / "bin"
    wrappers.mkdir()
    for program in ("pigz", "gzip"):
        fake = wrappers / program
        fake.write_text("#!/usr/bin/env python3\nimport sys\nsys.stdin.buffer.read(65536)\n"
                        "print('simulated compressor failure: disk on fire', file=sys.stderr)\nsys.exit(3)\n")
        fake.chmod(0o755)
    config = write_config(tmp_path, bucket=bucket, endpoint=moto.endpoint, strategies=one_strategy(pg, database))
    result = run_cli("once", "-c", str(config), env=cli_env(PATH=f"{wrappers}:{os.environ['PATH']}"))
    assert result.returncode == 1, result.stderr
    assert "[compressor_failed] pigz exited with code 3" in result.stdout
    assert "disk on fire" in result.stdout + result.stderr
    assert_nothing_left(moto, bucket)


def test_s3_cut_mid_upload_fails_naming_the_upload_and_leaves_nothing(pg, moto, bucket, tmp_path, sample_db,
                                                                     fault_proxy):
    database, _ = sample_db
    proxy = fault_proxy("127.0.0.1", moto.port, "http")
    # A lasting cut (botocore's own retry must not get through), healed a little later so the abort can land.
    proxy.cut_after(200_000, direction="up", refuse=True)
    healer = proxy.heal_later(after_bytes_up=200_000, delay=2)
    config = write_config(tmp_path, bucket=bucket, endpoint=proxy.url, strategies=one_strategy(pg, database),
                          s3={"compression": "none"})
    result = run_cli("once", "-c", str(config))
    healer.join(30)
    assert result.returncode == 1, result.stderr
    assert "[storage]" in result.stdout and "cannot connect to S3" in result.stdout
    assert_nothing_left(moto, bucket)


def test_five_strategies_with_two_parallel_never_run_more_than_two_workers(pg, moto, bucket, tmp_path, sample_db):
    database, _ = sample_db
    strategies = [{"name": f"s{n}", "database_url": pg.url(database)} for n in range(5)]
    config = write_config(tmp_path, bucket=bucket, endpoint=moto.endpoint, strategies=strategies,
                          max_parallel_strategies=2)
    process = subprocess.Popen([*EASYBACKUP, "once", "-c", str(config)], env=cli_env(), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    seen = []
    while process.poll() is None:
        seen.append(len(workers_of(process.pid)))
        time.sleep(0.01)
    stdout, stderr = process.communicate()
    assert process.returncode == 0, stderr
    assert max(seen) == 2, f"worker counts seen: {sorted(set(seen))}"
    assert len(archive_keys(moto, bucket)) == 5 and len(manifest_keys(moto, bucket)) == 5
