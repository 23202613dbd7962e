"""The MySQL engine's pure parts: URLs, the programs' flavour from their --version, TLS options per flavour, the
dump's header and end, and how client errors are classified."""

from __future__ import annotations

import os
import shutil

import pytest

from easybackup.engines import mysql
from easybackup.engines.mysql import (
    ClientProgram,
    MysqlSource,
    classify_lines,
    connection_options,
    dump_problem,
    parse_mysql_url,
    parse_version_output,
    versions_from_dump_head,
)
from easybackup.errors import EasybackupError

MARIADB_HEAD = (b"/*M!999999\\- enable the sandbox mode */ \n"
                b"-- MariaDB dump 10.19  Distrib 10.11.19-MariaDB, for debian-linux-gnu (x86_64)\n--\n"
                b"-- Host: 127.0.0.1    Database: shop\n-- ----------\n-- Server version\t10.11.19-MariaDB-0+deb12u1\n")
MYSQL_HEAD = (b"-- MySQL dump 10.13  Distrib 8.0.36, for Linux (x86_64)\n--\n-- Host: db    Database: shop\n"
              b"-- ------\n-- Server version\t8.0.36\n")
TAIL = b"/*!40111 SET SQL_NOTES=@OLD_SQL_NOTES */;\n\n-- Dump completed on 2026-12-06 23:27:22\n"


def test_a_url_parses_with_its_tls_options_and_both_schemes():
    url = parse_mysql_url("mariadb://backup:p%40ss%2Fw@db.example:3307/shop?ssl-mode=verify_ca&ssl_ca=/etc/ca.pem")
    assert url == mysql.MysqlUrl("db.example", 3307, "backup", "p@ss/w", "shop", "VERIFY_CA", "/etc/ca.pem")
    bare = parse_mysql_url("mysql://backup@db2/")
    assert (bare.host, bare.port, bare.password, bare.dbname) == ("db2", 3306, None, None)


@pytest.mark.parametrize("url, expected", [
    ("mysql://u:Secret-Pw-1@db/shop?sslmode=require", "unknown option 'sslmode'"),
    ("mysql://u:Secret-Pw-1@db/shop?ssl-mode=sometimes", "ssl-mode must be one of"),
    ("postgres://u:Secret-Pw-1@db/shop", "not a mysql:// or mariadb:// URL"),
    ("mysql://u:Secret-Pw-1@db:99999/shop", "does not parse"),
])
def test_a_bad_url_is_refused_without_its_password(url, expected):
    with pytest.raises(ValueError) as refused:
        parse_mysql_url(url)
    assert expected in str(refused.value) and "Secret-Pw-1" not in str(refused.value)


@pytest.mark.parametrize("text, expected", [
    ("mariadb-dump  Ver 10.19 Distrib 10.11.19-MariaDB, for debian-linux-gnu (x86_64)",
     ("mariadb", "10.11.19-MariaDB")),
    ("mysqldump  Ver 10.19 Distrib 10.11.19-MariaDB, for debian-linux-gnu (x86_64)", ("mariadb", "10.11.19-MariaDB")),
    ("mysqldump  Ver 8.0.36 for Linux on x86_64 (MySQL Community Server - GPL)", ("mysql", "8.0.36")),
    ("mysqldump  Ver 10.13 Distrib 5.7.44, for Linux (x86_64)", ("mysql", "5.7.44")),
    ("", ("unknown", None)),
])
def test_the_flavour_comes_from_the_version_output_not_the_name(text, expected):
    assert parse_version_output(text) == expected


def test_ssl_mode_is_spelled_the_way_each_flavour_reads_it():
    url = parse_mysql_url("mysql://u@db/shop?ssl-mode=VERIFY_IDENTITY&ssl-ca=/ca.pem")
    assert connection_options(url, ClientProgram("mysqldump", "mysql", "8.0.36")) == [
        "--host=db", "--port=3306", "--user=u", "--ssl-ca=/ca.pem", "--ssl-mode=VERIFY_IDENTITY"]
    assert connection_options(url, ClientProgram("mariadb-dump", "mariadb", "10.11.19"))[-2:] == [
        "--ssl", "--ssl-verify-server-cert"]
    disabled = parse_mysql_url("mysql://u@db/shop?ssl-mode=disabled")
    assert connection_options(disabled, ClientProgram("mariadb", "mariadb", None))[-1] == "--skip-ssl"


def fake_program(directory, name: str, version_line: str) -> None:
    path = directory / name
    path.write_text(f"#!/bin/sh\necho '{version_line}'\n")
    path.chmod(0o755)


@pytest.mark.parametrize("version_line, gtid", [
    ("mysqldump  Ver 8.0.36 for Linux on x86_64 (MySQL Community Server - GPL)", True),
    ("mysqldump  Ver 10.19 Distrib 10.11.19-MariaDB, for debian-linux-gnu (x86_64)", False),
])
def test_set_gtid_purged_only_where_the_program_is_mysqls(tmp_path, monkeypatch, version_line, gtid):
    fake_program(tmp_path, "mysqldump", version_line)  # the same name, either flavour
    monkeypatch.setenv("PATH", str(tmp_path))
    mysql.probe.cache_clear()
    try:
        source = MysqlSource("shop", "mysql://backup:Secret-Pw-2@db/shop", tmp_path)
        argv = source.dump_argv()
    finally:
        mysql.probe.cache_clear()
    assert argv[0] == "mysqldump" and argv[1] == f"--defaults-extra-file={source.connection.option_file}"
    assert source.connection.option_file.parent == tmp_path
    assert ("--set-gtid-purged=OFF" in argv) is gtid
    assert argv[-2:] == ["--", "shop"] and "Secret-Pw-2" not in " ".join(argv)
    for option in ("--single-transaction", "--quick", "--routines", "--triggers", "--events", "--hex-blob",
                   "--default-character-set=utf8mb4"):
        assert option in argv
    source.cleanup()


def test_mariadb_dump_is_preferred_when_both_are_installed(tmp_path, monkeypatch):
    for name in ("mariadb-dump", "mysqldump"):
        os.symlink(shutil.which(name), tmp_path / name)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert MysqlSource("shop", "mysql://backup@db/shop", tmp_path).program.name == "mariadb-dump"


def test_versions_are_read_off_the_header():
    assert versions_from_dump_head(MARIADB_HEAD) == mysql.DumpVersions(
        "mariadb", "10.11.19-MariaDB", "mariadb", "10.11.19-MariaDB-0+deb12u1")
    assert versions_from_dump_head(MYSQL_HEAD) == mysql.DumpVersions("mysql", "8.0.36", "mysql", "8.0.36")
    assert versions_from_dump_head(b"CREATE TABLE t (x int);\n") is None


@pytest.mark.parametrize("head, tail, problem", [
    (MARIADB_HEAD, TAIL, None),
    (MYSQL_HEAD, b"-- Dump completed\n\n", None),  # --skip-dump-date
    (b"", b"", "it wrote nothing"),
    (b"CREATE TABLE t (x int);\n", TAIL, "does not begin with"),
    (MARIADB_HEAD, b"INSERT INTO `t` VALUES (1),(2", "does not end with '-- Dump completed'"),
    (MARIADB_HEAD, TAIL + b"INSERT INTO t VALUES (1);\n", "does not end with"),
])
def test_a_dump_is_whole_only_with_its_header_and_its_completion_line(head, tail, problem):
    found = dump_problem(head, tail)
    assert found == problem if problem is None else problem in found


URL = parse_mysql_url("mysql://backup:Secret-Pw-3@db:3306/shop")


@pytest.mark.parametrize("line, kind, transient", [
    ("mysqldump: Got error: 1045: Access denied for user 'backup'@'10.0.0.2' (using password: YES) when trying "
     "to connect", "authentication", False),
    ('mariadb-dump: Got error: 1049: "Unknown database \'shop\'" when selecting the database', "not_found", False),
    ("mysqldump: Got error: 1044: Access denied for user 'backup'@'%' to database 'shop' when using LOCK TABLES",
     "permission", False),
    ("mysqldump: Couldn't execute 'SHOW CREATE PROCEDURE `p`': Access denied; you need (at least one of) the "
     "PROCESS privilege(s) for this operation (1227)", "permission", False),
    ('mariadb-dump: Got error: 2002: "Can\'t connect to server on \'db\' (115)" when trying to connect',
     "connection", True),
    ("mysqldump: Got error: 2003: Can't connect to MySQL server on 'db:3306' (111) when trying to connect",
     "connection", True),
    ("mysqldump: Error 2013: Lost connection to server during query when dumping table `t` at row: 1234",
     "connection", True),
    ("mysqldump: Got error: 2006: MySQL server has gone away when using LOCK TABLES", "connection", True),
    ("mysqldump: Couldn't execute 'FLUSH TABLES': Lock wait timeout exceeded; try restarting transaction (1205)",
     "timeout", True),
    ("mysqldump: Got errno 28 on write", "dump_failed", False),
])
def test_client_errors_are_classified_with_a_one_line_message_and_a_hint(line, kind, transient):
    error = classify_lines([line], URL, "mysqldump exited with code 2", "mysqldump of database shop")
    assert (error.kind, error.transient) == (kind, transient)
    assert isinstance(error, EasybackupError) and error.hint and "\n" not in error.message
    assert error.message.startswith("mysqldump of database shop failed: ")


def test_the_engine_rewrites_urls_for_routes_passwords_and_other_databases():
    engine = mysql.ENGINE
    url = "mysql://backup:Secret-Pw-4@db.internal:3307/shop?ssl-mode=REQUIRED&socket=/run/mysqld.sock"
    assert engine.routed_url(url, "127.0.0.1", 40001) == \
        "mysql://backup:Secret-Pw-4@127.0.0.1:40001/shop?ssl-mode=REQUIRED"
    assert engine.routed_url("mariadb://u@db/x", "::1", 5) == "mariadb://u@[::1]:5/x"
    assert engine.with_database(url, "other db").startswith("mysql://backup:Secret-Pw-4@db.internal:3307/other%20db?")
    assert engine.parse_url(engine.with_database(url, "")).dbname is None
    with_password = engine.with_password("mysql://backup@db/shop", "p@ss:w/rd")
    assert engine.parse_url(with_password).password == "p@ss:w/rd"
    assert (engine.name, engine.schemes, engine.dump_format(None)) == ("mysql", ("mysql", "mariadb"), "plain")


def test_verify_reads_the_end_of_the_decompressed_dump():
    engine = mysql.ENGINE
    assert engine.reader_stages("plain") == []
    assert engine.dump_end_problem("plain", MARIADB_HEAD + TAIL) is None
    problem, hint = engine.dump_end_problem("plain", MARIADB_HEAD + b"INSERT INTO `t` VALUES (1")
    assert "-- Dump completed" in problem and "older backup" in hint
    assert "a MySQL dump is plain SQL" in engine.dump_end_problem("custom", MARIADB_HEAD + TAIL)[0]


def test_the_engine_is_registered_for_both_schemes_and_hands_out_protocol_objects(tmp_path):
    from easybackup.config.model import DatabaseTarget, MysqldumpSettings, S3Settings, Strategy
    from easybackup.engines import DumpSource, Engine, RestoreTarget, engine_for_url, engine_named

    assert engine_for_url("mysql://u@h/db") is engine_for_url("MariaDB://u@h/db") is mysql.ENGINE
    assert engine_named("mysql") is mysql.ENGINE and isinstance(mysql.ENGINE, Engine)
    target = DatabaseTarget("shop", "mysql://u:Secret-Pw-5@h/shop")
    strategy = Strategy(name="s", databases=(target,), s3=S3Settings(bucket="b"),
                        mysqldump=MysqldumpSettings(("--no-tablespaces",)))
    with mysql.ENGINE.dump_source(target, strategy, tmp_path) as source:
        assert isinstance(source, DumpSource) and source.needs_tail
        assert source.dump_argv()[-3:] == ["--no-tablespaces", "--", "shop"]
    with mysql.ENGINE.globals_source(target, strategy, tmp_path) as source:
        # which dump it runs the server says, when asked (tests/integration/test_mysql_globals.py)
        assert isinstance(source, DumpSource) and source.needs_tail and source.flavour is None
    with mysql.ENGINE.restore_target("mysql://u:Secret-Pw-5@h/shop", tmp_path, 5) as restore:
        assert isinstance(restore, RestoreTarget) and restore.dbname == "shop"
        assert restore.restore_stage("plain", globals_dump=False, clean=False).argv[-2:] == ["--", "shop"]
    assert list(tmp_path.iterdir()) == []  # every option file removed


@pytest.mark.parametrize("head, dump_version, server_version", [
    (MARIADB_HEAD, "mariadb-dump 10.11.19-MariaDB", "10.11.19-MariaDB-0+deb12u1"),
    (MYSQL_HEAD, "mariadb-dump 8.0.36", "MySQL 8.0.36"),  # the header's Distrib, the program we ran
])
def test_the_manifest_versions_name_the_program_and_the_server_flavour(tmp_path, head, dump_version,
                                                                          server_version):
    with MysqlSource("shop", "mysql://u@db/shop", tmp_path) as source:
        versions = source.versions_after_dump(head)
    assert (versions["dump_version"], versions["server_version"]) == (dump_version, server_version)


def test_a_failed_mysql_restore_is_explained_by_the_clients_error_number(tmp_path):
    with mysql.ENGINE.restore_target("mysql://restorer:Secret-Pw-5@db.example:3306/shop", tmp_path, 5) as restore:
        kind, hint = restore.failure_hint(["ERROR 1227 (42000) at line 4154: Access denied; you need (at least one "
                                           "of) the SUPER, SET USER privilege(s) for this operation"])
        assert kind == "permission" and "DEFINER" in hint and "restorer needs SET USER" in hint
        kind, hint = restore.failure_hint(["ERROR 2006 (HY000) at line 12: MySQL server has gone away"])
        assert kind == "connection" and "max_allowed_packet" in hint and "db.example:3306" in hint
        assert restore.failure_hint(["ERROR 1142 (42000): CREATE command denied to user"])[0] == "permission"
        assert restore.failure_hint(["ERROR 1064 (42000) at line 3: You have an error in your SQL syntax"]) is None


@pytest.mark.parametrize("line,number", [
    ("ERROR 1045 (28000): Access denied for user 'u'@'h' (using password: YES)", "1045"),
    ('mariadb-dump: Got error: 1049: "Unknown database \'x\'" when selecting the database', "1049"),
    ("mysqldump: Error 2013: Lost connection to server during query when dumping table `t` at row: 7", "2013"),
    ("mariadb-dump: Couldn't execute 'SHOW CREATE TABLE `t`': Lock wait timeout exceeded; try restarting "
     "transaction (1205)", "1205"),
    ("ERROR 1094 (HY000) at line 1: Unknown thread id: 21095", "1094"),
])
def test_the_clients_error_number_is_read_where_they_print_it(line, number):
    from easybackup.engines.mysql_client import error_numbers
    assert error_numbers(line) == {number}


def test_a_number_elsewhere_in_the_line_is_not_an_error_number(tmp_path):
    from easybackup.engines.mysql_client import error_numbers
    duplicate = "ERROR 1062 (23000) at line 2013: Duplicate entry '1227' for key 'PRIMARY'"
    assert error_numbers(duplicate) == {"1062"}
    with mysql.ENGINE.restore_target("mysql://restorer:Secret-Pw-5@db.example:3306/shop", tmp_path, 5) as restore:
        assert restore.failure_hint([duplicate]) is None
        assert restore.failure_hint(["ERROR 1064 (42000) at line 1227: You have an error in your SQL syntax"]) is None
