"""`easybackup once` backs a MariaDB database up into S3 (moto) through the same worker and pipeline as
PostgreSQL: the archive is plain SQL that restores table for table, the manifest names the versions from the
dump's header, the password stays in its option file, and failures are classified."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from easybackup.engines.mysql import probe
from tests.harness.configs import REPO, cli_env, run_cli, write_config
from tests.integration.test_once_backup import assert_nothing_left, once_killing_when_streaming
from tests.harness.restore import archive_keys, decompress, download, manifest_keys, sha256_of

pytestmark = pytest.mark.timeout(300)

DATASET = REPO / "tests" / "fixtures" / "mysql_dataset.sql"
SHOP = "eb_once_shop"
OTHER = "eb_once_other"


@pytest.fixture(scope="module")
def shop(mariadb):
    mariadb.create_database(SHOP)
    mariadb.sql_file(DATASET, SHOP)
    mariadb.create_database(OTHER)
    mariadb.sql("CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(10)); INSERT INTO t VALUES (1, 'a'), (2, NULL)", OTHER)
    # ~5 MB of dump in OTHER: a throttled dump is still streaming when the test kills it.
    mariadb.sql("CREATE TABLE big (id INT PRIMARY KEY, payload VARCHAR(100)); "
                "INSERT INTO big SELECT seq, CONCAT(MD5(seq), MD5(seq + 1)) FROM seq_1_to_60000", OTHER)
    return mariadb


def replay(server, dump: bytes, database: str) -> None:
    server.drop_database(database)
    server.sql(f"CREATE DATABASE `{database}` CHARACTER SET utf8mb4")
    server.sql(dump.decode("utf-8"), database)


@pytest.mark.parametrize("compression, scheme", [("zstd", "mysql"), ("gzip", "mariadb")])
def test_once_stores_a_dump_that_restores_table_for_table(shop, moto, bucket, tmp_path, compression, scheme):
    config = write_config(tmp_path, bucket=bucket, endpoint=moto.endpoint, s3={"compression": compression},
                          strategies=[{"name": "shop", "database_url": shop.url(SHOP, scheme=scheme)}])
    result = run_cli("once", "-c", str(config))
    assert result.returncode == 0, result.stderr
    [key] = archive_keys(moto, bucket)
    assert key.startswith(f"backups/shop/{SHOP}/") and key.endswith(".sql.zst" if compression == "zstd"
                                                                      else ".sql.gz")
    stored = download(moto, bucket, key)
    [manifest_key] = manifest_keys(moto, bucket)
    manifest = json.loads(download(moto, bucket, manifest_key))
    assert manifest["sha256"] == sha256_of(stored) and manifest["format"] == "plain"
    assert manifest["server_version"] == shop.sql("SELECT VERSION()"), "read off the dump's own header"
    assert manifest["pg_dump_version"] == f"mariadb-dump {probe('mariadb-dump').version}"  # the field predates engines
    assert manifest["engine"] == "mysql"
    dump = decompress(stored, compression)
    assert manifest["dump_bytes"] == len(dump) and dump.rstrip().splitlines()[-1].startswith(b"-- Dump completed")
    assert shop.password.encode() not in dump
    target = f"eb_once_restored_{compression}"
    replay(shop, dump, target)
    assert shop.table_fingerprints(target) == shop.table_fingerprints(SHOP)
    assert shop.routines(target) == shop.routines(SHOP)


def test_all_databases_and_globals_of_a_server(shop, moto, bucket, tmp_path):
    config = write_config(tmp_path, bucket=bucket, endpoint=moto.endpoint, strategies=[
        {"name": "server", "database_url": shop.url(""), "all_databases": True, "include_globals": True}])
    result = run_cli("once", "-c", str(config))
    assert result.returncode == 0, result.stderr
    keys = archive_keys(moto, bucket)
    databases = {key.split("/")[2] for key in keys}
    assert {SHOP, OTHER, "_globals"} <= databases
    assert not databases & {"mysql", "sys", "information_schema", "performance_schema"}
    assert databases - {"_globals"} == set(shop.databases())
    [globals_key] = [key for key in keys if "/_globals/" in key]
    users = decompress(download(moto, bucket, globals_key), "gzip")
    assert b"CREATE USER IF NOT EXISTS `root`@`%`" in users


def test_a_wrong_password_fails_as_authentication_without_retrying_or_showing_it(shop, moto, bucket, tmp_path):
    config = write_config(tmp_path, bucket=bucket, endpoint=moto.endpoint,
                          retry={"max_attempts": 3, "initial_delay": "1s", "max_delay": "1s"},
                          strategies=[{"name": "shop", "database_url": shop.url(SHOP, password="Wrong-Pw-4417")}])
    result = run_cli("once", "-c", str(config))
    assert result.returncode != 0
    assert "Access denied" in result.stdout + result.stderr and "authentication" in result.stdout + result.stderr
    assert "Wrong-Pw-4417" not in result.stdout + result.stderr
    assert archive_keys(moto, bucket) == []


def test_the_password_reaches_no_argv_and_no_environment(shop, moto, bucket, tmp_path):
    record = tmp_path / "record.jsonl"
    shims = tmp_path / "shims"
    shims.mkdir()
    real = probe("mariadb-dump").name
    wrapper = shims / "mariadb-dump"
    # Records how the worker runs the dump program (its --version probe passes through), then runs the real one.
    wrapper.write_text("#!/usr/bin/env python3\nimport json, os, shutil, sys\n"
                       "if sys.argv[1].startswith('--defaults-extra-file='):\n"
                       "    cnf = sys.argv[1].split('=', 1)[1]\n"
                       f"    with open({str(record)!r}, 'a') as out:\n"
                       "        out.write(json.dumps({'argv': sys.argv, 'env': dict(os.environ),"
                       " 'cnf': open(cnf).read(), 'mode': oct(os.stat(cnf).st_mode & 0o777)}) + '\\n')\n"
                       f"real = {shutil.which(real)!r}\nos.execv(real, [real] + sys.argv[1:])\n")
    wrapper.chmod(0o755)
    config = write_config(tmp_path, bucket=bucket, endpoint=moto.endpoint,
                          strategies=[{"name": "shop", "database_url": shop.url(SHOP)}])
    result = run_cli("once", "-c", str(config), env=cli_env(PATH=f"{shims}:{os.environ['PATH']}",
                                                            MYSQL_PWD=shop.password))
    assert result.returncode == 0, result.stderr
    [seen] = [json.loads(line) for line in record.read_text().splitlines()]
    assert seen["argv"][1].startswith("--defaults-extra-file=") and seen["mode"] == "0o600"
    assert shop.password in seen["cnf"]
    assert shop.password not in " ".join(seen["argv"]) and "MYSQL_PWD" not in seen["env"]
    assert shop.password not in json.dumps(seen["env"])
    assert shop.password not in result.stdout + result.stderr
    assert not Path(seen["argv"][1].split("=", 1)[1]).exists()


def test_validate_shows_the_engine_of_each_database_and_reaches_mariadb(shop, moto, bucket, tmp_path):
    config = write_config(tmp_path, bucket=bucket, endpoint=moto.endpoint, strategies=[
        {"name": "mixed", "database_urls": [shop.url(SHOP, scheme="mariadb"), "postgres://u@pg.invalid/app"],
         "include_globals": False},
        {"name": "server", "database_url": shop.url(""), "all_databases": True, "include_globals": True},
        {"name": "denied", "database_url": shop.url(SHOP, password="Wrong-Pw-5521")}])
    shown = run_cli("validate", "-c", str(config))
    assert shown.returncode == 0, shown.stderr
    assert f"{SHOP}  mariadb://root:***@{shop.host}:{shop.port}/{SHOP}  (mysql)" in shown.stdout
    assert "app  postgres://u@pg.invalid/app  (postgres)" in shown.stdout
    assert "users and grants (MariaDB: mariadb-dump --system=users; MySQL: SHOW CREATE USER and SHOW GRANTS)" \
        in shown.stdout
    assert shop.password not in shown.stdout + shown.stderr
    checked = run_cli("validate", "-c", str(config), "--check-connectivity")
    assert f"mixed: database {SHOP} (direct): ok" in checked.stdout
    assert f"denied: database {SHOP} (direct): FAILED: " in checked.stdout and "1045" in checked.stdout
    assert "hint: check the password for user root" in checked.stdout
    assert "Wrong-Pw-5521" not in checked.stdout + checked.stderr and shop.password not in checked.stdout


def test_a_dump_killed_mid_stream_leaves_no_object_and_no_open_upload(shop, moto, bucket, tmp_path, fault_proxy):
    proxy = fault_proxy(shop.host, shop.port, "tcp")
    proxy.throttle(200_000)
    config = write_config(tmp_path, bucket=bucket, endpoint=moto.endpoint,
                          strategies=[{"name": "shop", "database_url": shop.url(OTHER, port=proxy.port)}])
    # only this test's mariadb-dump, never one of a test beside it
    result, killed = once_killing_when_streaming(config, proxy, "mariadb-dump", f"--port={proxy.port}")
    assert killed, "mariadb-dump was never seen streaming"
    assert result.returncode == 1, result.stderr
    assert "mariadb-dump killed by signal 9" in result.stdout
    assert_nothing_left(moto, bucket)
