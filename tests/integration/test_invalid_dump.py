"""A dump program that exits 0 is no proof of a dump. What easybackup stores must begin with PGDMP (custom format),
or with pg_dump's (pg_dumpall's) preamble and end with its completion comment (plain): otherwise the run fails as
`invalid_dump`, and nothing is committed — no archive, no manifest, no open multipart upload.

The dump programs here are wrappers on the PATH around the real ones, doing what an `extra_args` option that
slipped past the check (`-vf/tmp/x`, `-Fp`) or a stream cut short would do."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.harness.configs import cli_env, run_cli, write_config
from tests.harness.restore import archive_keys, manifest_keys

# What the wrapper does with the real program's output, given its argv in `argv`.
BEHAVIOURS = {
    "cut short": "out = subprocess.run(argv, stdout=subprocess.PIPE, check=True).stdout\n"
                 "sys.stdout.buffer.write(out[:-120])\n",
    "writes nothing": "subprocess.run(argv + ['--file=/dev/null', '--no-sync'], check=True)\n",
    "writes plain SQL": "subprocess.run(argv + ['--format=plain'], check=True)\n",
    "writes other text": "sys.stdout.write('SET client_encoding = UTF8;\\n' * 500)\n",
}


def wrap(directory: Path, program: str, behaviour: str) -> None:
    """Put a `program` on PATH in `directory` that runs the real one as told by BEHAVIOURS, then exits 0."""
    real = shutil.which(program, path=os.environ["PATH"])
    directory.mkdir(exist_ok=True)
    (directory / program).write_text(
        "#!/usr/bin/env python3\nimport subprocess, sys\n"
        f"argv = [{real!r}] + sys.argv[1:]\n" + BEHAVIOURS[behaviour] + "sys.exit(0)\n")
    (directory / program).chmod(0o755)


@pytest.fixture(scope="module")
def invalid_db(pg) -> str:
    pg.create_database("invalid_dump_src")
    pg.psql("CREATE TABLE t AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 5000) g", "invalid_dump_src")
    return "invalid_dump_src"


@pytest.mark.parametrize("fmt,program,behaviour,problem", [
    ("plain", "pg_dump", "cut short", "does not end with '-- PostgreSQL database dump complete'"),
    ("plain", "pg_dump", "writes nothing", "it wrote nothing"),
    ("plain", "pg_dump", "writes other text", "does not begin with the plain format's preamble"),
    ("custom", "pg_dump", "writes nothing", "it wrote nothing"),
    ("custom", "pg_dump", "writes plain SQL", "does not begin with PGDMP"),
    ("custom", "pg_dumpall", "cut short", "does not end with '-- PostgreSQL database cluster dump complete'"),
])
def test_a_dump_program_that_exits_0_without_a_whole_dump_fails_as_invalid_dump_and_leaves_nothing(
        pg, moto, bucket, tmp_path, invalid_db, fmt, program, behaviour, problem):
    wrappers = tmp_path / "bin"
    wrap(wrappers, program, behaviour)
    globals_only = program == "pg_dumpall"
    config = write_config(tmp_path, bucket=bucket, endpoint=moto.endpoint, pg_dump={"format": fmt},
                          strategies=[{"name": "main", "database_url": pg.url(invalid_db),
                                       "include_globals": globals_only}])
    result = run_cli("once", "-c", str(config), env=cli_env(PATH=f"{wrappers}:{os.environ['PATH']}"))
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    failed = "_globals" if globals_only else invalid_db
    assert f"main/{failed} failed after 1 attempt: [invalid_dump]" in output, output
    assert problem in output and f"although {program} exited 0" in output
    assert "nothing was stored" in output
    keys = archive_keys(moto, bucket) + manifest_keys(moto, bucket)
    if globals_only:  # the database itself was dumped by the real pg_dump and is stored; the globals are not
        assert keys and not [key for key in keys if "/_globals/" in key], keys
    else:
        assert keys == []
    assert moto.open_uploads(bucket) == []
