"""The harness's MariaDB server: it wants its password, loads the corpus, and its table comparison sees a change."""

import subprocess

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.timeout(120)

DATASET = REPO / "tests" / "fixtures" / "mysql_dataset.sql"


def test_the_server_refuses_a_wrong_password(mariadb):
    done = subprocess.run(["mariadb", "--no-defaults", "-h", mariadb.host, "-P", str(mariadb.port), "-u", "root",
                           "-pwrong-password", "-e", "select 1"], capture_output=True, text=True)
    assert done.returncode != 0
    assert "1045" in done.stderr


def test_the_server_answers_over_tcp_with_the_password(mariadb):
    assert mariadb.sql("SELECT 40 + 2") == "42"


def test_the_corpus_loads_with_everything_a_dump_must_carry(mariadb):
    mariadb.create_database("harness_corpus")
    mariadb.sql_file(DATASET, "harness_corpus")
    fingerprints = mariadb.table_fingerprints("harness_corpus")
    assert sorted(fingerprints) == ["blobs", "customers", "order_log", "orders"]
    assert fingerprints["orders"][0] == 2000 and fingerprints["order_log"][0] == 2000  # the trigger ran
    assert mariadb.routines("harness_corpus") == {"views": ["customer_totals"], "triggers": ["orders_logged"],
                                                  "routines": ["add_orders", "order_total"],
                                                  "events": ["nightly_cleanup"]}
    assert mariadb.sql("SELECT name FROM customers WHERE id = 1", "harness_corpus") == "Zoë 😀"
    assert mariadb.sql("SELECT LENGTH(data) FROM blobs WHERE id = 1", "harness_corpus") == "256"
    assert mariadb.sql("SELECT COUNT(*) FROM orders WHERE attributes IS NULL", "harness_corpus") == "400"


def test_the_fingerprints_change_with_one_byte(mariadb):
    mariadb.create_database("harness_change")
    mariadb.sql_file(DATASET, "harness_change")
    before = mariadb.table_fingerprints("harness_change")
    mariadb.sql("UPDATE blobs SET data = CONCAT(LEFT(data, 10), 'x', SUBSTRING(data, 12)) WHERE id = 1",
                "harness_change")
    after = mariadb.table_fingerprints("harness_change")
    assert after["blobs"][0] == before["blobs"][0] and after["blobs"][1] != before["blobs"][1]
    assert {name: value for name, value in after.items() if name != "blobs"} == \
        {name: value for name, value in before.items() if name != "blobs"}
