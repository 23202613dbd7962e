"""The MySQL engine through the real mariadb-dump, mariadb and a real MariaDB server: dumps restore table for table,
a cut dump is caught, failures are classified for an operator, and the password stays in its option file."""

from __future__ import annotations

import os
import stat
import subprocess
from urllib.parse import quote

import pytest

from easybackup.engines.mysql import MysqlRestoreTarget, MysqlSource, list_databases, probe
from easybackup.errors import EasybackupError
from easybackup.pipeline.codecs import compressor_stage, decompress_stage
from easybackup.pipeline.stages import Pipeline, StageFailed
from tests.conftest import REPO
from tests.harness.net import free_port

pytestmark = pytest.mark.timeout(120)

SHOP = "eb_my_shop"
LARGE = "eb_my_large"
DATASET = REPO / "tests" / "fixtures" / "mysql_dataset.sql"
SPECIAL_USER = "eb_special"
SPECIAL_PASSWORD = "pa:ss\\wo@rd/%?#x\"'; =[client]"  # URL-reserved, option-file-reserved and quote characters


@pytest.fixture(scope="module")
def server(mariadb):
    mariadb.create_database(SHOP)
    mariadb.sql_file(DATASET, SHOP)
    mariadb.create_database(LARGE)
    # ~20 MB of dump: far more than the pipe buffers, so the dump program is still running when we look at it.
    mariadb.sql("CREATE TABLE big (id INT PRIMARY KEY, payload VARCHAR(100)) ENGINE=InnoDB; "
                "INSERT INTO big SELECT seq, CONCAT(MD5(seq), MD5(seq + 1)) FROM seq_1_to_250000", LARGE)
    escaped = SPECIAL_PASSWORD.replace("\\", "\\\\").replace("'", "\\'")
    mariadb.sql(f"DROP USER IF EXISTS {SPECIAL_USER}@'%'; CREATE USER {SPECIAL_USER}@'%' IDENTIFIED BY '{escaped}';"
                f"GRANT SELECT, SHOW VIEW, TRIGGER, EVENT, LOCK TABLES ON `{SHOP}`.* TO {SPECIAL_USER}@'%';"
                f"GRANT SELECT ON mysql.proc TO {SPECIAL_USER}@'%'")
    return mariadb


@pytest.fixture
def private_dir(tmp_path):
    path = tmp_path / "private"
    path.mkdir(mode=0o700)
    return path


def run_dump(source: MysqlSource, codec: str) -> tuple[bytes, Pipeline]:
    """Run the source's dump through `codec` as the worker does; return the output and the finished pipeline."""
    stages = [source.dump_stage()] + ([compressor_stage(codec)] if codec != "none" else [])
    chunks = []
    with Pipeline(stages, count_after=source.stage_name, keep_tail=True) as pipeline:
        while chunk := os.read(pipeline.output_fd, 1 << 20):
            chunks.append(chunk)
        pipeline.wait(timeout=60)
    return b"".join(chunks), pipeline


def restore(archive, codec: str, url: str, private_dir, replace: bool = False, globals_only: bool = False) -> None:
    """Stream `archive` through the decompressor into the target as `easybackup restore` does."""
    with MysqlRestoreTarget(url, private_dir) as target:
        if not globals_only:
            target.prepare(replace=replace)
        stages = [stage for stage in (decompress_stage(codec),) if stage]
        stages.append(target.restore_stage("plain", globals_dump=globals_only))
        with open(archive, "rb") as body, Pipeline(stages, stdin=body) as pipeline:
            pipeline.wait(timeout=60)


@pytest.mark.parametrize("codec", ["zstd", "gzip"])
def test_a_dump_restores_into_another_database_table_for_table(server, private_dir, tmp_path, codec):
    with MysqlSource(SHOP, server.url(SHOP), private_dir) as source:
        data, pipeline = run_dump(source, codec)
        source.check_dump(pipeline.head, pipeline.tail, pipeline.bytes_counted, [])
        versions = source.versions_after_dump(pipeline.head)
    archive = tmp_path / f"{SHOP}.sql.{codec}"
    archive.write_bytes(data)
    target = f"eb_my_restored_{codec}"
    server.drop_database(target)
    restore(archive, codec, server.url(target), private_dir)
    assert server.table_fingerprints(target) == server.table_fingerprints(SHOP)
    assert server.routines(target) == server.routines(SHOP)
    assert server.sql("SELECT name FROM customers WHERE id = 1", target) == "Zoë 😀"
    server_version = server.sql("SELECT VERSION()")
    assert versions == {"dump_version": f"mariadb-dump {probe('mariadb-dump').version}", "dump_flavour": "mariadb",
                        "server_flavour": "mariadb", "server_version": server_version}
    assert not list(private_dir.iterdir())  # the option file is gone


def test_a_non_empty_target_is_refused_unless_told(server, private_dir, tmp_path):
    with MysqlSource(SHOP, server.url(SHOP), private_dir) as source:
        data, _ = run_dump(source, "none")
    archive = tmp_path / "shop.sql"
    archive.write_bytes(data)
    target = "eb_my_busy"
    server.create_database(target)
    server.sql("CREATE TABLE keep_me (x INT); INSERT INTO keep_me VALUES (1)", target)
    with pytest.raises(EasybackupError) as refused:
        restore(archive, "none", server.url(target), private_dir)
    assert "is not empty (1 tables" in refused.value.message and "--clean" in refused.value.hint
    assert server.sql("SELECT x FROM keep_me", target) == "1"
    server.sql("CREATE TABLE customers (stale INT); INSERT INTO customers VALUES (7)", target)
    restore(archive, "none", server.url(target), private_dir, replace=True)  # --clean: over it
    restored = server.table_fingerprints(target)
    assert restored.pop("keep_me") == (1, int(server.sql("CHECKSUM TABLE keep_me EXTENDED", target).split()[1]))
    assert restored == server.table_fingerprints(SHOP)  # the dump's tables replaced, the other one kept


def test_a_name_with_a_backslash_is_found_whatever_the_servers_sql_mode(server, private_dir):
    name = "eb_my_back\\slash"  # a quoted literal 'eb_my_back\\slash' reads as another name under NO_BACKSLASH_ESCAPES
    server.sql(f"DROP DATABASE IF EXISTS `{name}`; CREATE DATABASE `{name}`")
    server.sql("CREATE TABLE t (x INT)", name)
    before = server.sql("SELECT @@GLOBAL.sql_mode")
    try:
        for mode in ("NO_BACKSLASH_ESCAPES", before):
            server.sql(f"SET GLOBAL sql_mode = '{mode}'")
            with MysqlRestoreTarget(server.url(name), private_dir) as target:
                assert target.database_exists(name), mode
                assert target.user_table_count() == 1, mode
    finally:
        server.sql(f"SET GLOBAL sql_mode = '{before}'")
        server.drop_database(name)


def test_a_cut_dump_that_exits_0_is_rejected(server, private_dir, tmp_path, monkeypatch):
    real = subprocess.run(["sh", "-c", "command -v mariadb-dump"], capture_output=True, text=True).stdout.strip()
    wrapper_dir = tmp_path / "bin"
    wrapper_dir.mkdir()
    wrapper = wrapper_dir / "mariadb-dump"
    wrapper.write_text(f'#!/bin/sh\n"{real}" "$@" | head -c 30000\nexit 0\n')  # a wrapper that loses the end
    wrapper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{wrapper_dir}:{os.environ['PATH']}")
    with MysqlSource(SHOP, server.url(SHOP), private_dir) as source:
        data, pipeline = run_dump(source, "none")
        assert len(data) == 30000 and pipeline.exit_codes() == {"mariadb-dump": 0}
        with pytest.raises(EasybackupError) as invalid:
            source.check_dump(pipeline.head, pipeline.tail, pipeline.bytes_counted, [])
    assert invalid.value.kind == "invalid_dump"
    assert "does not end with '-- Dump completed'" in invalid.value.message


def test_an_empty_output_is_rejected(server, private_dir):
    with MysqlSource(SHOP, server.url(SHOP), private_dir, extra_args=(f"--result-file={private_dir}/x.sql",)) \
            as source:
        data, pipeline = run_dump(source, "none")
        with pytest.raises(EasybackupError) as invalid:
            source.check_dump(pipeline.head, pipeline.tail, pipeline.bytes_counted, [])
    assert data == b"" and "it wrote nothing" in invalid.value.message


def classify(url: str, private_dir) -> EasybackupError:
    with MysqlSource("db", url, private_dir) as source, pytest.raises(StageFailed) as failed:
        run_dump(source, "none")
    return source.classify_failure(failed.value)


def test_a_wrong_password_is_an_authentication_error_that_is_not_retried(server, private_dir):
    error = classify(server.url(SHOP, password="wrong-Password-77"), private_dir)
    assert (error.kind, error.transient) == ("authentication", False)
    assert "1045" in error.message and "Access denied" in error.message
    assert error.hint.startswith("check the password for user root")
    assert "wrong-Password-77" not in str(error.to_dict())


def test_an_unknown_database_is_not_found(server, private_dir):
    error = classify(server.url("eb_my_nowhere"), private_dir)
    assert (error.kind, error.transient) == ("not_found", False)
    assert "Unknown database 'eb_my_nowhere'" in error.message
    assert "eb_my_nowhere" in error.hint and server.password not in str(error.to_dict())


def test_a_server_that_is_down_is_a_transient_connection_error(server, private_dir):
    port = free_port()
    error = classify(server.url(SHOP, port=port), private_dir)
    assert (error.kind, error.transient) == ("connection", True)
    assert f"{server.host}:{port}" in error.hint
    assert error.exit_codes == {"mariadb-dump": 2}
    assert "\n" not in error.message


def test_a_missing_client_program_names_the_packages(server, private_dir, tmp_path, monkeypatch):
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(EasybackupError) as missing:
        MysqlSource(SHOP, server.url(SHOP), private_dir)
    assert "mariadb-dump, mysqldump" in missing.value.message
    assert "apt-get install mariadb-client" in missing.value.hint and "apk add mariadb-client" in missing.value.hint


def read_proc(pid: int, name: str) -> bytes:
    with open(f"/proc/{pid}/{name}", "rb") as handle:
        return handle.read()


def test_the_password_is_in_no_argv_and_no_environment_of_the_running_stages(server, private_dir, monkeypatch):
    monkeypatch.setenv("MYSQL_PWD", server.password)  # an inherited one must not reach any stage
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-Secret-Key-8")
    secret = server.password.encode()
    with MysqlSource(LARGE, server.url(LARGE), private_dir) as source:
        stage = source.dump_stage()
        assert stage.argv[1] == f"--defaults-extra-file={source.connection.option_file}"  # first, as required
        assert source.connection.option_file.parent == private_dir
        with Pipeline([stage, compressor_stage("zstd")]) as pipeline:
            seen = {name: (read_proc(pid, "cmdline"), read_proc(pid, "environ"))
                    for name, pid in pipeline.pids().items()}  # still running: nobody reads the output yet
            option_file = source.connection.option_file
            mode = stat.S_IMODE(os.stat(option_file).st_mode)
            assert server.password in option_file.read_text()
            pipeline.kill()
    for name, (cmdline, environ) in seen.items():
        assert secret not in cmdline and secret not in environ, name
        assert b"MYSQL_PWD" not in environ and b"aws-Secret-Key-8" not in environ, name
    assert b"--single-transaction" in seen["mariadb-dump"][0] and b"--set-gtid-purged" not in seen["mariadb-dump"][0]
    assert mode == 0o600 and not option_file.exists()


def test_a_password_with_quotes_backslashes_and_brackets_works_through_the_option_file(server, private_dir,
                                                                                         tmp_path):
    url = f"mariadb://{SPECIAL_USER}:{quote(SPECIAL_PASSWORD, safe='')}@{server.host}:{server.port}/{SHOP}"
    with MysqlSource(SHOP, url, private_dir) as source:
        data, pipeline = run_dump(source, "none")
        source.check_dump(pipeline.head, pipeline.tail, pipeline.bytes_counted, [])
    assert b"CREATE TABLE `customers`" in data and SPECIAL_PASSWORD.encode() not in data


def test_listing_leaves_out_the_system_databases(server, private_dir):
    names = list_databases(server.url(), private_dir)
    assert SHOP in names and LARGE in names
    assert not set(names) & {"information_schema", "performance_schema", "sys", "mysql"}
    assert names == server.databases()


def test_listing_with_a_wrong_password_says_so(server, private_dir):
    with pytest.raises(EasybackupError) as denied:
        list_databases(server.url(password="wrong-Password-78"), private_dir)
    assert (denied.value.kind, denied.value.transient) == ("authentication", False)


def test_users_and_grants_dump_and_replay(server, private_dir, tmp_path):
    server.sql("DROP USER IF EXISTS eb_glob@'%'; CREATE USER eb_glob@'%' IDENTIFIED BY 'glob-Secret-3';"
               f"GRANT SELECT ON `{SHOP}`.* TO eb_glob@'%'")
    with MysqlSource("_globals", server.url(), private_dir, globals_only=True) as source:
        data, pipeline = run_dump(source, "zstd")
        source.check_dump(pipeline.head, pipeline.tail, pipeline.bytes_counted, [])
    archive = tmp_path / "globals.sql.zst"
    archive.write_bytes(data)
    grants = server.sql("SHOW GRANTS FOR eb_glob@'%'")
    server.sql("DROP USER eb_glob@'%'")
    restore(archive, "zstd", server.url(), private_dir, globals_only=True)
    assert server.sql("SHOW GRANTS FOR eb_glob@'%'") == grants
    assert server.sql("SHOW GRANTS FOR root@'%'").startswith("GRANT ALL PRIVILEGES")  # the others kept
