"""PostgresSource through the real pg_dump and a real cluster: dumps restore, secrets stay private, failures
are classified the way an operator needs them."""

from __future__ import annotations

import os
import re
import signal
import stat
import subprocess

import pytest

from easybackup.config.model import DatabaseTarget, PgDumpSettings
from easybackup.engines import DumpSource
from easybackup.engines.postgres import (
    PostgresSource,
    parse_postgres_url,
    parse_version_output,
    pg_dump_version,
)
from easybackup.pipeline.codecs import compressor_stage, decompress_argv
from easybackup.pipeline.stages import Pipeline, StageFailed
from tests.harness.net import free_port
from tests.unit.test_pipeline import read_all

pytestmark = pytest.mark.timeout(60)

SMALL = "eb_pgsrc_small"
LARGE = "eb_pgsrc_large"
SPECIAL_PASSWORD = "pa:ss\\wo@rd/%?#x"  # every character the URL or the passfile must escape


@pytest.fixture(scope="module")
def databases(pg):
    pg.create_database(SMALL)
    pg.psql("create table customers(id int primary key, name text); "
            "insert into customers select i, 'customer ' || i from generate_series(1, 500) i; "
            "create table notes(body text); insert into notes values ('héllo'), ('tab\tand ''quote''')", SMALL)
    pg.create_database(LARGE)
    # ~16 MB of text: far more than the pipe buffers, so pg_dump is still writing when we look at it.
    pg.psql("create table big as select i, md5(i::text) || md5((i + 1)::text) as payload "
            "from generate_series(1, 200000) i", LARGE)
    for role, password in (("eb_reader", "reader-Secret-91"), ("eb_special", SPECIAL_PASSWORD)):
        pg.psql(f"drop role if exists {role}")
        pg.psql(f"create role {role} login password '{password}'")
    pg.psql(f'grant select on all tables in schema public to eb_special; grant connect on database "{SMALL}" '
            "to eb_special", SMALL)
    return pg


@pytest.fixture
def private_dir(tmp_path):
    path = tmp_path / "private"
    path.mkdir(mode=0o700)
    return path


def source_for(url: str, private_dir, fmt: str = "custom", codec: str = "zstd", name: str = SMALL):
    return PostgresSource(DatabaseTarget(name, url), PgDumpSettings(format=fmt), private_dir,
                          compress_externally=codec != "none")


def run_dump(source: PostgresSource, codec: str) -> bytes:
    """Run the source's dump through `codec`, reading the output the way the uploader does; return it."""
    stages = [source.dump_stage()]
    if codec != "none":
        stages.append(compressor_stage(codec))
    chunks = []
    with Pipeline(stages) as pipeline:
        while chunk := os.read(pipeline.output_fd, 1 << 20):
            chunks.append(chunk)
        pipeline.wait(timeout=30)
    return b"".join(chunks)


def decompress(codec: str, data: bytes) -> bytes:
    argv = decompress_argv(codec)
    return data if argv is None else subprocess.run(argv, input=data, capture_output=True, check=True).stdout


@pytest.mark.parametrize("codec", ["zstd", "gzip", "none"])
def test_a_custom_format_dump_restores_to_the_same_rows(databases, private_dir, tmp_path, codec):
    pg = databases
    with source_for(pg.url(SMALL), private_dir, codec=codec) as source:
        archive = tmp_path / f"{SMALL}.{source.file_extension()}"
        archive.write_bytes(decompress(codec, run_dump(source, codec)))
    listing = subprocess.run(["pg_restore", "--list", str(archive)], capture_output=True, text=True, check=True)
    assert re.search(r"Compression: (0|none)\b", listing.stdout)  # -Z0: compression is the compressor's job
    target = f"eb_pgsrc_restore_{codec}"
    pg.create_database(target)
    subprocess.run(["pg_restore", "--no-owner", "--exit-on-error", "-d", target, str(archive)],
                   env=pg.env(), check=True, capture_output=True)
    assert pg.table_fingerprints(target) == pg.table_fingerprints(SMALL)


@pytest.mark.parametrize("codec", ["gzip", "zstd"])
def test_a_plain_format_dump_replays_with_psql(databases, private_dir, tmp_path, codec):
    pg = databases
    with source_for(pg.url(SMALL), private_dir, fmt="plain", codec=codec) as source:
        assert source.file_extension() == "sql"
        assert not any(arg.startswith("-Z") for arg in source.dump_argv())
        script = tmp_path / "dump.sql"
        script.write_bytes(decompress(codec, run_dump(source, codec)))
    assert b"CREATE TABLE public.customers" in script.read_bytes()
    target = f"eb_pgsrc_plain_{codec}"
    pg.create_database(target)
    pg.psql_file(str(script), target)
    assert pg.table_fingerprints(target) == pg.table_fingerprints(SMALL)


def test_the_password_is_in_no_argv_and_no_environment_of_the_running_stages(databases, private_dir,
                                                                              monkeypatch):
    pg = databases
    monkeypatch.setenv("PGPASSWORD", pg.password)  # an inherited one must not reach any stage either
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-Secret-Key-8")  # nor the worker's other secrets
    secret = pg.password.encode()
    with source_for(pg.url(LARGE), private_dir, name=LARGE) as source:
        stage = source.dump_stage()
        assert pg.password not in " ".join(stage.argv)
        assert "PGPASSWORD" not in stage.env and pg.password not in "".join(stage.env.values())
        with Pipeline([stage, compressor_stage("zstd")]) as pipeline:
            seen = {}
            for name, pid in pipeline.pids().items():  # still running: nobody reads the output yet
                seen[name] = (read_proc(pid, "cmdline"), read_proc(pid, "environ"))
            passfile_mode = stat.S_IMODE(os.stat(source.passfile).st_mode)
            pipeline.kill()
        passfile = source.passfile
    for name, (cmdline, environ) in seen.items():
        assert secret not in cmdline and secret not in environ, name
        assert b"aws-Secret-Key-8" not in environ, name
        assert b"PGPASSWORD=" not in environ, name
    assert b"PGPASSFILE=" + str(passfile).encode() in seen["pg_dump"][1]
    assert b"--no-password" in seen["pg_dump"][0]
    assert passfile_mode == 0o600
    assert not passfile.exists()


def read_proc(pid: int, name: str) -> bytes:
    with open(f"/proc/{pid}/{name}", "rb") as handle:
        return handle.read()


def test_a_password_with_colons_backslashes_and_at_signs_works_through_the_passfile(databases, private_dir,
                                                                                    tmp_path):
    from urllib.parse import quote

    pg = databases
    url = f"postgresql://eb_special:{quote(SPECIAL_PASSWORD, safe='')}@{pg.host}:{pg.port}/{SMALL}?sslmode=disable"
    with source_for(url, private_dir, codec="none") as source:
        assert source.dump_argv()[-1] == f"postgresql://eb_special@{pg.host}:{pg.port}/{SMALL}?sslmode=disable"
        assert source.passfile is None  # written only when a stage needs it
        archive = tmp_path / "special.dump"
        archive.write_bytes(run_dump(source, "none"))
        assert source.passfile.read_text() == \
            f"{pg.host}:{pg.port}:{SMALL}:eb_special:pa\\:ss\\\\wo@rd/%?#x\n"
    listing = subprocess.run(["pg_restore", "--list", str(archive)], capture_output=True, text=True, check=True)
    assert "TABLE DATA public customers" in listing.stdout


def classify(pg, url: str, private_dir) -> tuple[StageFailed, object]:
    with source_for(url, private_dir, codec="none") as source:
        with pytest.raises(StageFailed) as failed:
            run_dump(source, "none")
        return failed.value, source.classify_failure(failed.value)


def test_a_wrong_password_is_an_authentication_error_that_is_not_retried(databases, private_dir):
    pg = databases
    _, error = classify(pg, pg.url(SMALL, password="wrong-Password-77"), private_dir)
    assert (error.kind, error.transient) == ("authentication", False)
    assert "password authentication failed" in error.message
    assert error.hint == "check the password for user postgres in the strategy's database URL (and that the " \
                         "role exists)"
    assert "wrong-Password-77" not in str(error.to_dict())


def test_a_missing_database_is_not_found(databases, private_dir):
    pg = databases
    _, error = classify(pg, pg.url("eb_pgsrc_nowhere"), private_dir)
    assert (error.kind, error.transient) == ("not_found", False)
    assert 'database "eb_pgsrc_nowhere" does not exist' in error.message
    assert pg.password not in str(error.to_dict())


def test_a_closed_port_is_a_transient_connection_error(databases, private_dir):
    pg = databases
    port = free_port()
    failed, error = classify(pg, pg.url(SMALL, port=port), private_dir)
    assert (error.kind, error.transient) == ("connection", True)
    assert f"{pg.host}:{port}" in error.hint
    assert error.exit_codes == {"pg_dump": 1} == failed.exit_codes
    assert pg.password not in str(error.to_dict())


def test_a_role_without_read_access_is_a_permission_error(databases, private_dir):
    pg = databases
    _, error = classify(pg, pg.url(SMALL, user="eb_reader", password="reader-Secret-91"), private_dir)
    assert (error.kind, error.transient) == ("permission", False)
    assert "permission denied" in error.message
    assert "reader-Secret-91" not in str(error.to_dict())


def test_pg_dump_killed_mid_stream_fails_the_pipeline_naming_pg_dump(databases, private_dir):
    pg = databases
    with source_for(pg.url(LARGE), private_dir, name=LARGE) as source:
        with Pipeline([source.dump_stage(), compressor_stage("zstd")]) as pipeline:
            assert os.read(pipeline.output_fd, 65536)  # the dump is flowing
            os.kill(pipeline.pids()["pg_dump"], signal.SIGKILL)
            while os.read(pipeline.output_fd, 1 << 20):
                pass  # zstd finishes a valid-looking stream from the truncated input: only exit codes tell
            with pytest.raises(StageFailed) as failed:
                pipeline.wait(timeout=30)
        error = source.classify_failure(failed.value)
    assert failed.value.stage == "pg_dump"
    assert failed.value.exit_codes == {"pg_dump": -9, "zstd": 0}
    assert error.kind == "dump_failed" and not error.transient
    assert "pg_dump killed by signal 9 (SIGKILL — perhaps out of memory?)" in error.message


def test_versions_name_pg_dump_and_the_server(databases, private_dir):
    pg = databases
    with source_for(pg.url(SMALL), private_dir) as source:
        server_version = source.server_version()
        passfile = source.passfile
    assert server_version == pg.psql("show server_version")
    assert re.fullmatch(r"\d+\.\d+", pg_dump_version())
    assert not passfile.exists()


def test_the_server_version_is_none_when_the_server_cannot_be_reached(private_dir):
    source = source_for(f"postgres://u:secret-Pw-55@127.0.0.1:{free_port()}/db", private_dir)
    with source:
        assert source.server_version() is None


# -- pure parts, no server needed -----------------------------------------------------------------------------


def test_urls_are_percent_decoded_and_default_to_localhost_5432():
    url = parse_postgres_url("postgres://app%40corp:p%3Ass@db.internal/sales%20eu?sslmode=require")
    assert (url.host, url.port, url.user, url.password, url.dbname) == \
        ("db.internal", 5432, "app@corp", "p:ss", "sales eu")
    assert url.conninfo() == "postgresql://app%40corp@db.internal:5432/sales%20eu?sslmode=require"
    bare = parse_postgres_url("postgresql://")
    assert (bare.host, bare.port, bare.user, bare.password, bare.dbname) == ("localhost", 5432, None, None, None)
    assert bare.passfile_line() == "localhost:5432:*:*:\n"


def test_an_ipv6_host_is_bracketed_in_the_url_and_escaped_in_the_passfile():
    url = parse_postgres_url("postgres://u:pw@[::1]:6432/db")
    assert url.conninfo() == "postgresql://u@[::1]:6432/db"
    assert url.passfile_line() == "\\:\\:1:6432:db:u:pw\n"


@pytest.mark.parametrize("url,host,port", [
    ("postgresql://u:pw@%2Fvar%2Frun%2FPostgreSQL/db", "/var/run/PostgreSQL", 5432),
    ("postgresql://u:pw@%2Ftmp%2Fs:5433/db", "/tmp/s", 5433),
    ("postgresql://u:pw@/db?host=/var/run/postgresql&port=6543", "/var/run/postgresql", 6543),
    ("postgresql://u:pw@ignored:1/db?host=%2Fsrv%2Fpg", "/srv/pg", 1),
])
def test_a_socket_directory_is_decoded_once_its_case_kept_and_encoded_once_for_libpq(url, host, port):
    parsed = parse_postgres_url(url)
    assert (parsed.host, parsed.port, parsed.dbname) == (host, port, "db")
    assert parsed.conninfo().startswith(f"postgresql://u@{host.replace('/', '%2F')}:{port}/db")
    # libpq looks a socket directory up in the passfile as `localhost` or as its path: the wildcard matches both.
    assert parsed.passfile_line() == f"*:{port}:db:u:pw\n"
    assert parsed.where == f"socket {host}/.s.PGSQL.{port}"


def test_a_non_postgres_url_is_refused_without_showing_its_password():
    with pytest.raises(ValueError) as refused:
        parse_postgres_url("mysql://root:hunter22-Secret@db/x")
    assert "hunter22-Secret" not in str(refused.value)


def test_argv_describe_and_env_keep_the_password_out(private_dir, monkeypatch):
    monkeypatch.setenv("PGPASSWORD", "inherited-Secret-1")
    settings = PgDumpSettings(format="custom", extra_args=("--no-owner", "--exclude-table=logs"))
    source = PostgresSource(DatabaseTarget("app", "postgres://app:top-Secret-42@db:6543/app?sslmode=verify-full"),
                            settings, private_dir, compress_externally=True)
    assert isinstance(source, DumpSource)
    with source:
        assert source.dump_argv() == ["pg_dump", "--no-password", "--format=custom", "-Z0", "--no-owner",
                                      "--exclude-table=logs", "--dbname",
                                      "postgresql://app@db:6543/app?sslmode=verify-full"]
        env = source.child_env()
        assert "PGPASSWORD" not in env and env["PGPASSFILE"] == str(private_dir / "pgpass")
        assert "top-Secret-42" not in source.describe() and "db:6543/app" in source.describe()
        assert stat.S_IMODE(os.stat(source.passfile).st_mode) == 0o600
    assert not (private_dir / "pgpass").exists()


def test_custom_format_without_a_compressor_still_turns_pg_dump_compression_off(private_dir):
    source = PostgresSource(DatabaseTarget("app", "postgres://app@db/app"), PgDumpSettings(), private_dir,
                            compress_externally=False)
    assert "-Z0" in source.dump_argv()
    assert "PGPASSFILE" not in source.child_env() and source.passfile is None  # no password, no passfile


def test_the_passfile_is_never_written_over_an_existing_file(private_dir):
    (private_dir / "pgpass").symlink_to("/tmp/somewhere-else")
    source = PostgresSource(DatabaseTarget("app", "postgres://app:pw-Secret-3@db/app"), PgDumpSettings(),
                            private_dir, compress_externally=True)
    with pytest.raises(FileExistsError):
        source.dump_stage()


def test_pg_dump_version_output_is_parsed():
    assert parse_version_output("pg_dump (PostgreSQL) 15.6 (Debian 15.6-0+deb12u1)\n") == "15.6"
    assert parse_version_output("pg_dump (PostgreSQL) 17devel\n") == "17"
    assert parse_version_output("garbage") is None


def test_the_globals_are_dumped_whatever_database_the_url_names(databases, private_dir):
    # pg_dumpall ignores the database of --dbname and connects to `postgres`: the passfile line must match it.
    from easybackup.engines.dump_header import dump_problem
    from easybackup.engines.postgres_dump import GlobalsSource

    url = databases.url(SMALL)
    with GlobalsSource(DatabaseTarget("_globals", url), private_dir, compress_externally=False) as source:
        with Pipeline([source.dump_stage()], count_after=source.stage_name, keep_tail=True) as pipeline:
            dump = read_all(pipeline.output_fd)
            pipeline.wait()
        source.check_dump(pipeline.head, pipeline.tail, pipeline.bytes_counted, [])
    assert b"CREATE ROLE eb_reader;" in dump
    assert dump_problem("plain", dump[:4096], dump[-4096:], banner=source.plain_banner,
                        complete=source.plain_complete) is None


@pytest.mark.parametrize("fmt", ["custom", "plain"])
def test_a_whole_dump_of_either_format_passes_the_check_and_a_cut_one_does_not(databases, private_dir, fmt):
    from easybackup.errors import EasybackupError

    with source_for(databases.url(SMALL), private_dir, fmt=fmt, codec="none") as source:
        with Pipeline([source.dump_stage()], count_after=source.stage_name, keep_tail=True) as pipeline:
            dump = read_all(pipeline.output_fd)
            pipeline.wait()
        source.check_dump(pipeline.head, pipeline.tail, pipeline.bytes_counted, [])
        assert pipeline.tail == dump[-4096:] and pipeline.bytes_counted == len(dump)
        if fmt == "plain":
            with pytest.raises(EasybackupError) as cut:
                source.check_dump(dump[:4096], dump[:-100][-4096:], len(dump) - 100, ["pg_dump: last words"])
            assert cut.value.kind == "invalid_dump" and cut.value.last_lines == ["pg_dump: last words"]
        with pytest.raises(EasybackupError) as empty:
            source.check_dump(b"", b"", 0, [])
        assert empty.value.kind == "invalid_dump" and "nothing was stored" in empty.value.hint
