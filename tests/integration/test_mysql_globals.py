"""Users and grants of a MySQL server (`include_globals`), the SHOW CREATE USER / SHOW GRANTS way, run against a
real MariaDB (the only server here; it answers the same SHOW statements): the worker's backup of the globals with
that way chosen, `restore --globals` into a fresh server where the accounts then log in and hold the same grants,
`verify` refusing a cut dump, and no password hash in any log line. And `restore`'s hint for a MySQL target that
is not empty, through the CLI."""

from __future__ import annotations

import json
import subprocess
import threading

import pytest

from easybackup.config import load_config
from easybackup.engines.mysql_globals import MysqlGlobalsSource
from easybackup.pipeline.codecs import chain_of_settings
from easybackup.storage.layout import GLOBALS, globals_key
from easybackup.storage.s3 import make_client
from easybackup.worker.backup import AttemptContext, DumpPlan, backup_source_once
from easybackup.worker.globals_backup import globals_target
from tests.harness.configs import REPO, restore_target, run_cli, write_config
from tests.harness.moto_server import ACCESS_KEY, SECRET_KEY
from tests.harness.restore import decompress, download, manifest_keys
from tests.integration.test_verify import replace_archive

pytestmark = pytest.mark.timeout(300)

SHOP = "eb_glob_shop"
APP_PASSWORD = "glob-App-Secret-3141"
APP = "eb_glob_app@'127.0.0.1'"  # host-limited, with a password: it logs in over TCP from here
REPORT = "eb_glob_report@'%'"  # no password


@pytest.fixture(scope="module")
def accounts(mariadb):
    mariadb.create_database(SHOP)
    mariadb.sql_file(REPO / "tests" / "fixtures" / "mysql_dataset.sql", SHOP)
    mariadb.sql(f"DROP USER IF EXISTS {APP}; DROP USER IF EXISTS {REPORT};"
                f"CREATE USER {APP} IDENTIFIED BY '{APP_PASSWORD}';"
                f"GRANT SELECT, INSERT, UPDATE ON `{SHOP}`.* TO {APP};"
                f"CREATE USER {REPORT}; GRANT PROCESS ON *.* TO {REPORT};"
                "GRANT SELECT ON `eb\\_glob\\_shop`.* TO " + REPORT)  # a backslash in the grant's text
    return mariadb


@pytest.fixture
def fresh(mariadb_scratch):
    """A second throwaway MariaDB server that has never seen the accounts."""
    return mariadb_scratch


def config_for(server, moto, bucket, tmp_path):
    return write_config(tmp_path, bucket=bucket, endpoint=moto.endpoint, s3={"compression": "zstd"},
                        verify={"after_backup": True},
                        strategies=[{"name": "server", "database_url": server.url(SHOP), "include_globals": True}])


def back_up_globals_the_mysql_way(config, tmp_path) -> tuple[str, list[str]]:
    """Run the worker's backup of the globals (what `once` runs for include_globals) with the SHOW way chosen;
    return the archive's key and every line the run logged."""
    strategy = load_config(config, environ={"AWS_ACCESS_KEY_ID": ACCESS_KEY,
                                            "AWS_SECRET_ACCESS_KEY": SECRET_KEY}).strategies[0]
    logged: list[str] = []

    def emit(*args, **fields):
        logged.append(json.dumps({"args": args, **fields}, default=str))

    private = tmp_path / "private"
    private.mkdir()
    ctx = AttemptContext(strategy=strategy, run_id="glob", run_timestamp="2026-12-07T020000Z", private_dir=private,
                         client=make_client(strategy.s3), emit=emit, cancel=threading.Event())
    key = globals_key(strategy.s3.base_path, strategy.name, ctx.run_name, chain_of_settings(strategy))
    outcome = backup_source_once(ctx, globals_target(strategy.databases[0].url), DumpPlan(
        database=GLOBALS, key=key, fmt="plain", engine="mysql",
        make_source=lambda routed: MysqlGlobalsSource(routed.name, routed.url, private, flavour="mysql")))
    assert list(private.iterdir()) == [], "the option file and the script are removed"
    return outcome.key, logged


def restore_globals(config, server):
    bare, env = restore_target(server.url(""))
    return run_cli("restore", "-c", str(config), "--strategy", "server", "--target-url", bare, "--yes", "--globals",
                   env=env)


def test_users_and_grants_restore_into_a_fresh_server_and_log_in_there(accounts, fresh, moto, bucket, tmp_path):
    config = config_for(accounts, moto, bucket, tmp_path)
    key, logged = back_up_globals_the_mysql_way(config, tmp_path)
    assert "/_globals/" in key
    [manifest_key] = manifest_keys(moto, bucket)
    manifest = json.loads(download(moto, bucket, manifest_key))
    assert manifest["verified"] is True and manifest["server_version"] == accounts.sql("SELECT VERSION()")
    assert "(SHOW CREATE USER, SHOW GRANTS)" in manifest["pg_dump_version"]
    dump = decompress(download(moto, bucket, key), "zstd").decode()
    assert dump.startswith("-- MySQL dump of users and grants") and "\n-- Dump completed on " in dump
    assert "CREATE USER IF NOT EXISTS `eb_glob_app`@`127.0.0.1` IDENTIFIED BY PASSWORD '*" in dump
    assert "GRANT SELECT ON `eb\\_glob\\_shop`.* TO `eb_glob_report`@`%`;" in dump
    assert "`mariadb.sys`" not in dump and "`mysql.sys`" not in dump  # the server's own accounts
    assert dump.index("CREATE USER IF NOT EXISTS `eb_glob_report`") < dump.index("GRANT ")
    password_hash = accounts.sql("SELECT authentication_string FROM mysql.user WHERE user = 'eb_glob_app'")
    assert password_hash.startswith("*") and password_hash in dump  # stored: a restore needs it
    assert not [line for line in logged if password_hash in line or APP_PASSWORD in line]

    restored = restore_globals(config, fresh)
    assert restored.returncode == 0, restored.stdout + restored.stderr
    for account in (APP, REPORT):
        assert fresh.sql(f"SHOW GRANTS FOR {account}") == accounts.sql(f"SHOW GRANTS FOR {account}")
    assert password_hash not in restored.stdout + restored.stderr
    cnf = tmp_path / "app.cnf"
    cnf.write_text(f"[client]\nuser=eb_glob_app\npassword={APP_PASSWORD}\nhost={fresh.host}\nport={fresh.port}\n")
    cnf.chmod(0o600)
    logged_in = subprocess.run(["mariadb", f"--defaults-file={cnf}", "--batch", "--skip-column-names",
                                "--execute", "SELECT CURRENT_USER()"], capture_output=True, text=True)
    assert logged_in.stdout.strip() == "eb_glob_app@127.0.0.1", logged_in.stderr

    again = restore_globals(config, fresh)  # the accounts exist now: CREATE USER IF NOT EXISTS passes them
    assert again.returncode == 0, again.stdout + again.stderr


def test_verify_refuses_a_globals_dump_cut_before_its_completion_line(accounts, moto, bucket, tmp_path):
    config = config_for(accounts, moto, bucket, tmp_path)
    key, _logged = back_up_globals_the_mysql_way(config, tmp_path)
    dump = decompress(download(moto, bucket, key), "zstd")
    cut = dump[: dump.rindex(b"-- Dump completed")]
    recompressed = subprocess.run(["zstd", "-c", "-q"], input=cut, capture_output=True, check=True).stdout
    replace_archive(moto, bucket, key, recompressed, update_manifest=True)  # the manifest agrees: only the end tells
    failed = run_cli("verify", "-c", str(config), "--backup", key)
    assert failed.returncode == 1 and "-- Dump completed" in failed.stdout, failed.stdout + failed.stderr


def test_a_mariadb_server_takes_the_mariadb_dump_way_when_asked(accounts, tmp_path):
    with MysqlGlobalsSource(GLOBALS, accounts.url(""), tmp_path) as source:
        stage = source.dump_stage()
        assert source.facts.flavour == "mariadb" and "--system=users" in stage.argv
    assert list(tmp_path.iterdir()) == []


def test_a_target_that_is_not_empty_is_refused_with_what_works_for_a_mysql_dump(accounts, moto, bucket, tmp_path):
    config = write_config(tmp_path, bucket=bucket, endpoint=moto.endpoint,
                          strategies=[{"name": "shop", "database_url": accounts.url(SHOP)}])
    assert run_cli("once", "-c", str(config)).returncode == 0
    target = "eb_glob_not_empty"
    accounts.create_database(target)
    accounts.sql("CREATE TABLE keep_me (id INT PRIMARY KEY); INSERT INTO keep_me VALUES (7)", target)
    bare, env = restore_target(accounts.url(target))
    refused = run_cli("restore", "-c", str(config), "--target-url", bare, "--yes", env=env)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert f"database {target} is not empty (1 user tables); nothing was changed" in refused.stderr
    assert ("hint: name a database that does not exist yet in --target-url and add --create, or add --clean to "
            "restore over it: the dump drops and recreates each table, view, routine and event it holds and leaves "
            "the others; it is not one transaction, so a failed restore leaves the database half replaced"
            ) in refused.stderr
    assert "custom-format" not in refused.stderr
    over = run_cli("restore", "-c", str(config), "--target-url", bare, "--yes", "--clean", env=env)
    assert over.returncode == 0, over.stdout + over.stderr  # what the hint says works does
    fingerprints = accounts.table_fingerprints(target)
    assert accounts.sql("SELECT id FROM keep_me", target) == "7"  # not in the dump: left as it was
    del fingerprints["keep_me"]
    assert fingerprints == accounts.table_fingerprints(SHOP)
