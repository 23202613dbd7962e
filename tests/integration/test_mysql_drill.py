"""`easybackup drill` of a MySQL/MariaDB strategy through real parts: a backup made by `once` from the `mariadb`
server (moto S3) is restored into a second throwaway MariaDB server, `mariadb_scratch`, checked, measured and
dropped (issue 18). The source's views, triggers, routines and events have a DEFINER that the scratch server does
not have, as production's would."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from easybackup.engines.mysql import ENGINE
from tests.harness.configs import EASYBACKUP, REPO, cli_env, run_cli, write_config
from tests.harness.daemon import workers_of

pytestmark = pytest.mark.timeout(300)

PREFIX = "easybackup_drill_"
DATASET = REPO / "tests" / "fixtures" / "mysql_dataset.sql"
OWNER, OWNER_PASSWORD = "shop_owner", "owner-Secret-4471"  # the definer: a user of the source server only
DRILL_USER, DRILL_PASSWORD = "drill", "drill-Secret-2093"
PLAIN_USER = "drill_plain"  # the same, without SET USER
# What README (Restore drills) tells an operator to grant the drill user.
DRILL_GRANTS = ("GRANT ALL PRIVILEGES ON `easybackup\\_drill\\_%`.* TO {user}@'%';"
                "GRANT SET USER, PROCESS, CONNECTION ADMIN ON *.* TO {user}@'%';")
PLAIN_GRANTS = ("GRANT ALL PRIVILEGES ON `easybackup\\_drill\\_%`.* TO {user}@'%';"
                "GRANT PROCESS, CONNECTION ADMIN ON *.* TO {user}@'%';")


@pytest.fixture(scope="module")
def scratch(mariadb_scratch):
    """The drill target, with the drill users README describes; none of the source's users."""
    for user, grants in ((DRILL_USER, DRILL_GRANTS), (PLAIN_USER, PLAIN_GRANTS)):
        mariadb_scratch.sql(f"DROP USER IF EXISTS {user}@'%'; CREATE USER {user}@'%' IDENTIFIED BY "
                            f"'{DRILL_PASSWORD}';" + grants.format(user=user))
    return mariadb_scratch


def target_url(scratch, user: str = DRILL_USER) -> str:
    return scratch.url("", user=user, password=DRILL_PASSWORD)


def owned_database(mariadb, name: str) -> str:
    """Create `name` on the source from the MySQL dataset, run as OWNER: its view, trigger, procedure, function and
    event have DEFINER=`shop_owner`@`%`. Return its URL."""
    mariadb.create_database(name)
    mariadb.sql(f"DROP USER IF EXISTS {OWNER}@'%'; CREATE USER {OWNER}@'%' IDENTIFIED BY '{OWNER_PASSWORD}';"
                f"GRANT ALL PRIVILEGES ON `{name}`.* TO {OWNER}@'%';")
    mariadb.sql_as(OWNER, OWNER_PASSWORD, DATASET.read_text(encoding="utf-8"), name)
    # A system-versioned table (MariaDB): 2 current rows, 1 historical one the dump leaves out.
    mariadb.sql("CREATE TABLE versioned (id INT PRIMARY KEY, v INT) WITH SYSTEM VERSIONING; "
                "INSERT INTO versioned VALUES (1, 1), (2, 2); UPDATE versioned SET v = 3 WHERE id = 1", name)
    return mariadb.url(name)


def prefixed(scratch) -> list[str]:
    return scratch.sql(f"SELECT schema_name FROM information_schema.schemata WHERE LEFT(schema_name, "
                       f"{len(PREFIX)}) = BINARY '{PREFIX}' ORDER BY 1").splitlines()


def backed_up(mariadb, moto, bucket, tmp_path, database: str, target: str, **drill) -> str:
    """Back `database` up with `once`; return the config (with restore_drill into `target`)."""
    config = write_config(tmp_path, bucket=bucket, endpoint=moto.endpoint,
                          strategies=[{"name": "main", "database_url": mariadb.url(database)}],
                          restore_drill={"schedule": "1w", "target_url": target, **drill},
                          timeout={"backup": "5m", "upload": "1m", "shutdown_grace": "1s"})
    result = run_cli("once", "-c", str(config))
    assert result.returncode == 0, result.stderr
    return str(config)


def drill_records(moto, bucket) -> list[dict]:
    client = moto.client()
    listed = client.list_objects_v2(Bucket=bucket, Prefix="backups/main/_drills/").get("Contents", [])
    return [json.loads(client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()) for item in listed]


@pytest.fixture(scope="module")
def shop(mariadb):
    owned_database(mariadb, "eb_drill_shop")
    return "eb_drill_shop"


def test_the_scratch_server_lacks_the_definer_of_the_sources_objects(mariadb, shop, scratch):
    assert mariadb.sql(f"SELECT DISTINCT definer FROM information_schema.views WHERE table_schema = '{shop}'") \
        == f"{OWNER}@%"
    assert mariadb.sql(f"SELECT COUNT(*) FROM information_schema.routines WHERE routine_schema = '{shop}' "
                       f"AND definer = '{OWNER}@%'") == "2"
    assert scratch.sql(f"SELECT COUNT(*) FROM mysql.user WHERE user = '{OWNER}'") == "0"


def test_a_drill_restores_a_mysql_backup_with_its_definers_and_reports_exact_rows_per_base_table(
        mariadb, shop, scratch, moto, bucket, tmp_path):
    config = backed_up(mariadb, moto, bucket, tmp_path, shop, target_url(scratch))
    result = run_cli("drill", "-c", config)
    assert result.returncode == 0, result.stdout + result.stderr
    expected = {table: rows for table, (rows, _checksum) in mariadb.table_fingerprints(shop).items()}
    expected["versioned"] = int(mariadb.sql("SELECT COUNT(*) FROM versioned", shop))
    assert expected == {"blobs": 3, "customers": 4, "order_log": 2000, "orders": 2000, "versioned": 2}
    assert f"main/{shop}: passed — 5 table(s), 4009 row(s)" in result.stdout  # the view is no table
    [record] = drill_records(moto, bucket)
    [database] = record["databases"]
    assert (record["status"], database["status"]) == ("success", "success")
    assert database["table_rows"] == expected
    assert database["toc_tables"] is None  # plain SQL: no table of contents, exact counts only
    assert database["restored_bytes"] > 0 and database["restore_s"] > 0
    assert database["key"].startswith(f"backups/main/{shop}/") and database["key"].endswith(".sql.gz")
    assert prefixed(scratch) == []


def test_a_drill_user_without_set_user_fails_at_the_first_definer_with_the_servers_error(
        mariadb, shop, scratch, moto, bucket, tmp_path):
    config = backed_up(mariadb, moto, bucket, tmp_path, shop, target_url(scratch, PLAIN_USER))
    result = run_cli("drill", "-c", config)
    assert result.returncode == 1, result.stdout
    [line] = [line for line in result.stdout.splitlines() if line.startswith(f"main/{shop}: ")]
    assert line.startswith(f"main/{shop}: failed — restore into database {PREFIX}{shop}_")
    assert "failed: mariadb exited with code 1: ERROR 1227 (42000) at line " in line and "SET USER" in line, line
    [record] = drill_records(moto, bucket)
    assert record["status"] == "failed" and record["databases"][0]["error_kind"] == "permission"
    assert prefixed(scratch) == []


def test_a_corrupted_archive_fails_the_drill_with_the_checksum_mismatch_and_leaves_no_database(
        mariadb, shop, scratch, moto, bucket, tmp_path):
    config = backed_up(mariadb, moto, bucket, tmp_path, shop, target_url(scratch))
    client = moto.client()
    [key] = [item["Key"] for item in client.list_objects_v2(Bucket=bucket)["Contents"]
             if item["Key"].endswith(".sql.gz")]
    stored = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    client.put_object(Bucket=bucket, Key=key, Body=stored + b"\x00" * 100)  # gunzip ignores it; sha256 does not
    result = run_cli("drill", "-c", config)
    assert result.returncode == 1, result.stdout
    assert f"main/{shop}: failed — checksum mismatch: {key} is not what was backed up" in result.stdout
    [record] = drill_records(moto, bucket)
    assert record["status"] == "failed" and record["databases"][0]["error_kind"] == "verification"
    assert prefixed(scratch) == []


def slow_config(mariadb, shop, scratch, moto, bucket, tmp_path, fault_proxy, **drill) -> str:
    """Return a config whose S3 is moto through a proxy that lets the archive trickle in (4 kB/s): a drill of it is
    mid-restore for many seconds."""
    slow_s3 = fault_proxy("127.0.0.1", moto.port, "http")
    slow_s3.throttle(4000)
    return str(write_config(tmp_path, bucket=bucket, endpoint=slow_s3.url, name="slow.yaml",
                            strategies=[{"name": "main", "database_url": mariadb.url(shop)}],
                            restore_drill={"schedule": "1w", "target_url": target_url(scratch), **drill}))


def test_a_drill_past_its_timeout_is_stopped_and_its_database_dropped(
        mariadb, shop, scratch, moto, bucket, tmp_path, fault_proxy):
    backed_up(mariadb, moto, bucket, tmp_path, shop, target_url(scratch))
    slowly = slow_config(mariadb, shop, scratch, moto, bucket, tmp_path, fault_proxy, timeout="3s")
    started = time.monotonic()
    result = run_cli("drill", "-c", slowly)
    assert result.returncode == 1, result.stderr
    assert f"main/{shop}: timed_out — the restore drill took longer than restore_drill.timeout (3s)" in result.stdout
    assert time.monotonic() - started < 30
    assert prefixed(scratch) == []


def restoring(config: str, scratch) -> subprocess.Popen:
    """Start `easybackup drill -c config`; return it once its drill database exists (or it ended, or 60 s)."""
    drill = subprocess.Popen([*EASYBACKUP, "drill", "-c", config], env=cli_env(), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not prefixed(scratch) and time.monotonic() < deadline and drill.poll() is None:
        time.sleep(0.1)
    return drill


def test_a_sigkilled_drill_leaves_its_database_and_the_next_drill_drops_it(
        mariadb, shop, scratch, moto, bucket, tmp_path, fault_proxy):
    config = backed_up(mariadb, moto, bucket, tmp_path, shop, target_url(scratch))
    slowly = slow_config(mariadb, shop, scratch, moto, bucket, tmp_path, fault_proxy)
    drill = restoring(slowly, scratch)
    [left] = prefixed(scratch)
    [worker] = workers_of(drill.pid)
    os.killpg(worker, signal.SIGKILL)  # the worker and its client: nothing runs to drop the database
    drill.communicate(timeout=60)
    assert drill.returncode == 1
    assert prefixed(scratch) == [left]
    result = run_cli("drill", "-c", config)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"dropped drill database {left}, left behind by a drill that did not finish" in result.stderr
    assert prefixed(scratch) == []


def test_sigterm_mid_drill_drops_the_drill_database(mariadb, shop, scratch, moto, bucket, tmp_path, fault_proxy):
    backed_up(mariadb, moto, bucket, tmp_path, shop, target_url(scratch))
    slowly = slow_config(mariadb, shop, scratch, moto, bucket, tmp_path, fault_proxy)
    drill = restoring(slowly, scratch)
    assert len(prefixed(scratch)) == 1, "the drill database was never created"
    drill.send_signal(signal.SIGTERM)
    out, err = drill.communicate(timeout=60)
    assert drill.returncode == 143, err
    assert f"main/{shop}: cancelled" in out
    assert prefixed(scratch) == []


def held_open(scratch, database: str) -> subprocess.Popen:
    """Open a session in `database` that holds a metadata lock on its table (an open transaction), as an operator's
    forgotten client would; return it once the lock is held. DROP DATABASE waits for it unless it is ended."""
    session = subprocess.Popen(scratch.client_argv() + ["--batch", "--unbuffered", database], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    session.stdin.write("BEGIN; SELECT COUNT(*) FROM t; SELECT 'held';\n")
    session.stdin.flush()
    while (line := session.stdout.readline()) and line.strip() != "held":
        pass
    assert line.strip() == "held", session.stderr.read()
    return session


def test_the_next_drill_drops_a_leftover_held_open_and_never_a_name_that_matches_only_with_wildcards(
        mariadb, scratch, moto, bucket, tmp_path):
    source = "eb_drill_left"
    mariadb.create_database(source)
    mariadb.sql("CREATE TABLE t (id INT PRIMARY KEY); INSERT INTO t VALUES (1), (2)", source)
    config = backed_up(mariadb, moto, bucket, tmp_path, source, target_url(scratch))
    leftover = f"{PREFIX}{source}_0123456789ab"  # as a SIGKILLed drill leaves it
    # `_` is a wildcard in LIKE: each of these would match `easybackup_drill_eb_drill_left_%` there (this drill
    # user does not even see them; test_drill_databases_are_found_by_their_exact_prefix… asks as root, who does).
    untouched = ["easybackupXdrillYshop", f"easybackupXdrillX{source}_0123456789ab",
                 f"easybackup_drillX{source}_0123456789ab", f"EASYBACKUP_DRILL_{source}_0123456789ab", source]
    for name in [leftover, *untouched]:
        scratch.sql(f"CREATE DATABASE IF NOT EXISTS `{name}`; CREATE TABLE IF NOT EXISTS `{name}`.t (a INT)")
    session = held_open(scratch, leftover)
    try:
        result = run_cli("drill", "-c", config)
        assert result.returncode == 0, result.stdout + result.stderr
        assert f"dropped drill database {leftover}, left behind by a drill that did not finish" in result.stderr
        names = scratch.sql("SHOW DATABASES").splitlines()
        assert leftover not in names and set(untouched) <= set(names)
    finally:
        session.kill()
        session.communicate()
        for name in untouched:
            scratch.drop_database(name)
    assert prefixed(scratch) == []


def test_drill_databases_are_found_by_their_exact_prefix_never_by_a_like_pattern(scratch, tmp_path):
    names = [f"{PREFIX}a_1", f"{PREFIX}b_2", "easybackupXdrillYa_1", "EASYBACKUP_DRILL_a_1", "easybackup_drill"]
    for name in names:
        scratch.sql(f"CREATE DATABASE `{name}`")
    # As root, who sees every database (the drill user of README sees only those its grant's pattern matches).
    target = ENGINE.restore_target(scratch.url(""), tmp_path, 5)
    try:
        assert target.databases_starting_with(PREFIX) == [f"{PREFIX}a_1", f"{PREFIX}b_2"]
    finally:
        target.cleanup()
        for name in names:
            scratch.drop_database(name)
