"""The pure parts of a MySQL server's users and grants dump (engines/mysql_globals.py): which way the server's
version picks, which accounts are dumped and in what order, the SQL the client runs, how a client's rows become
statements, and what `restore` says about a target that is not empty."""

from __future__ import annotations

import subprocess
import sys

import pytest

from easybackup.engines import mysql, postgres
from easybackup.engines.mysql import MysqlSource
from easybackup.engines.mysql_globals import (
    ROWS_TO_STATEMENTS,
    ServerFacts,
    account_name,
    accounts_query,
    accounts_script,
    accounts_to_dump,
    server_flavour,
    unescape_field,
)
from easybackup.engines.mysql_dump import dump_problem


@pytest.mark.parametrize("version, comment, flavour", [
    ("10.11.19-MariaDB-0+deb12u1", "Debian 12", "mariadb"),
    ("8.0.36", "MySQL Community Server - GPL", "mysql"),
    ("8.4.3", "Source distribution", "mysql"),
    ("5.5.5-10.6.12-MariaDB", "", "mariadb"),  # a proxy's version prefix
    ("11.4.2", "mariadb.org binary distribution", "mariadb"),  # the comment says it when the version does not
])
def test_the_server_not_the_program_says_which_way_the_globals_take(version, comment, flavour):
    assert server_flavour(version, comment) == flavour


def test_an_account_is_named_with_backticks_whatever_its_name_holds():
    assert account_name("app", "%") == "`app`@`%`"
    assert account_name("o'brien`x\\", "10.0.0.%") == "`o'brien``x\\`@`10.0.0.%`"
    assert account_name("", "localhost") == "``@`localhost`"


def test_the_reserved_accounts_are_left_out_and_roles_come_first():
    rows = [("root", "localhost", False), ("mysql.sys", "localhost", False), ("app", "%", False),
            ("mysql.session", "localhost", False), ("mysql.infoschema", "localhost", False),
            ("reader", "%", True), ("mariadb.sys", "localhost", False), ("mysql.sys", "%", False),
            ("admin_role", "%", True)]
    assert accounts_to_dump(rows) == [("admin_role", "%"), ("reader", "%"), ("app", "%"), ("mysql.sys", "%"),
                                      ("root", "localhost")]


def test_the_script_creates_every_account_before_any_grant_and_ends_with_the_completion_line():
    script = accounts_script([("r", "%"), ("app", "10.%")], hex_hashes=True).splitlines()
    assert script[0] == "SET print_identified_with_as_hex = ON;"
    assert script[4:8] == ["SHOW CREATE USER `r`@`%`;", "SHOW CREATE USER `app`@`10.%`;",
                           "SHOW GRANTS FOR `r`@`%`;", "SHOW GRANTS FOR `app`@`10.%`;"]
    assert script[-1].startswith("SELECT CONCAT('-- Dump completed on '")
    without_hex = accounts_script([("app", "%")], hex_hashes=False)
    assert "print_identified_with_as_hex" not in without_hex  # MariaDB and MySQL before 8.0.17 lack it


def test_roles_are_found_where_the_server_keeps_them():
    mysql8 = ServerFacts("mysql", "8.0.36", has_role_edges=True, has_is_role=False, hex_hashes=True)
    assert "mysql.role_edges" in accounts_query(mysql8) and "is_role" not in accounts_query(mysql8)
    maria = ServerFacts("mariadb", "10.11.19-MariaDB", has_role_edges=False, has_is_role=True, hex_hashes=False)
    assert accounts_query(maria) == "SELECT u.user, u.host, 0 FROM mysql.user u WHERE u.is_role <> 'Y'"


@pytest.mark.parametrize("printed, value", [
    ("plain", "plain"), ("a\\tb", "a\tb"), ("line\\nnext", "line\nnext"), ("back\\\\slash", "back\\slash"),
    ("nul\\0", "nul\0"), ("\\\\n", "\\n"), ("50\\%", "50\\%"),
])
def test_a_batch_field_is_unescaped_as_the_client_escaped_it(printed, value):
    assert unescape_field(printed) == value


def filter_rows(rows: bytes, exit_code: int = 0, tmp_path=None) -> subprocess.CompletedProcess:
    """Run the rows-to-statements filter over a stand-in client that prints `rows` and exits `exit_code`."""
    script = tmp_path / "script.sql"
    script.write_text("SHOW GRANTS FOR `app`@`%`;\n")
    client = [sys.executable, "-c", f"import sys; sys.stdin.read(); sys.stdout.buffer.write({rows!r}); "
                                    f"sys.exit({exit_code})"]
    return subprocess.run([sys.executable, "-I", "-c", ROWS_TO_STATEMENTS, str(script), *client],
                          capture_output=True)


def test_each_row_becomes_one_statement_and_create_user_does_not_fail_on_an_existing_account(tmp_path):
    rows = (b"-- MySQL dump of users and grants\n-- Server version\\t8.0.36\n"
            b"CREATE USER `app`@`%` IDENTIFIED WITH 'caching_sha2_password' AS 0x2441 REQUIRE NONE\n"
            b"CREATE USER IF NOT EXISTS `b`@`%`\n"
            b"GRANT USAGE ON *.* TO `app`@`%`\nGRANT SELECT ON `shop\\\\_db`.* TO `app`@`%`\n"
            b"-- Dump completed on 2026-12-07 02:00:00\n")
    done = filter_rows(rows, tmp_path=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.decode().splitlines() == [
        "-- MySQL dump of users and grants", "-- Server version\t8.0.36",
        "CREATE USER IF NOT EXISTS `app`@`%` IDENTIFIED WITH 'caching_sha2_password' AS 0x2441 REQUIRE NONE;",
        "CREATE USER IF NOT EXISTS `b`@`%`;",
        "GRANT USAGE ON *.* TO `app`@`%`;", "GRANT SELECT ON `shop\\_db`.* TO `app`@`%`;",
        "-- Dump completed on 2026-12-07 02:00:00"]
    assert dump_problem(done.stdout, done.stdout) is None


def test_the_filter_exits_as_the_client_did(tmp_path):
    done = filter_rows(b"CREATE USER `app`@`%`\n", exit_code=1, tmp_path=tmp_path)
    assert done.returncode == 1 and done.stdout == b"CREATE USER IF NOT EXISTS `app`@`%`;\n"
    assert dump_problem(done.stdout, done.stdout) is not None  # no completion line: not a whole dump


def test_the_mariadb_way_is_mariadb_dump_of_the_system_users(tmp_path):
    with MysqlSource("_globals", "mysql://u:Secret-Pw-5@h/", tmp_path, globals_only=True) as source:
        argv = source.dump_argv()
    assert argv[0] == "mariadb-dump" and argv[1].startswith("--defaults-extra-file=")
    assert "--system=users" in argv and "--insert-ignore" in argv
    assert "Secret-Pw-5" not in " ".join(argv) and list(tmp_path.iterdir()) == []


def test_a_target_that_is_not_empty_gets_the_hint_its_engine_can_keep():
    assert mysql.ENGINE.not_empty_hint("plain", create=False).startswith(
        "name a database that does not exist yet in --target-url and add --create, or add --clean to restore "
        "over it: the dump drops and recreates each table")
    assert "custom-format" not in mysql.ENGINE.not_empty_hint("plain", create=True)
    assert postgres.ENGINE.not_empty_hint("plain", create=True) == (
        "name a database that does not exist yet in --target-url (--clean needs a custom-format archive; this "
        "backup is plain SQL)")
    assert postgres.ENGINE.not_empty_hint("custom", create=False).endswith(
        "and add --create, or add --clean to replace the objects the backup contains")
