"""MySQL/MariaDB in the config: mysql:// and mariadb:// URLs load (mixed with PostgreSQL), `mysqldump.extra_args`
refuses what easybackup sets in every spelling the dump program reads, and each engine's settings key is refused on
a strategy that has no database of that engine."""

from __future__ import annotations

from pathlib import Path

import pytest

from easybackup.config import load_config
from easybackup.config.model import MysqldumpSettings, Strategy
from easybackup.config.mysqldump_args import reserved_uses
from easybackup.errors import ConfigError

CONFIG = """\
global:
  s3: {bucket: my-backup-bucket}
strategies:
  - name: shop
"""


def load(tmp_path: Path, *lines: str):
    path = tmp_path / "config.yaml"
    path.write_text(CONFIG + "".join(f"    {line}\n" for line in lines))
    path.chmod(0o600)
    return load_config(path)


def problems(tmp_path: Path, *lines: str) -> str:
    with pytest.raises(ConfigError) as refused:
        load(tmp_path, *lines)
    return str(refused.value)


def test_mysql_and_mariadb_urls_load_beside_postgres_with_their_settings(tmp_path):
    config = load(tmp_path, "database_urls:", "  - mysql://backup:pw@shop-db:3306/shop",
                  "  - mariadb://backup:pw@shop-db/orders", "  - postgres://u@pg/app",
                  "mysqldump: {extra_args: ['--ignore-table=shop.audit_log', '--no-tablespaces']}",
                  "pg_dump: {extra_args: ['--no-owner']}")
    strategy = config.strategies[0]
    assert [target.name for target in strategy.databases] == ["shop", "orders", "app"]
    assert strategy.mysqldump == MysqldumpSettings(("--ignore-table=shop.audit_log", "--no-tablespaces"))
    assert Strategy.from_dict(strategy.to_dict()) == strategy  # as the worker receives it


def test_a_mysql_socket_url_names_its_host_in_the_query(tmp_path):
    config = load(tmp_path, "database_url: mysql://backup@/shop?socket=/run/mysqld/mysqld.sock")
    assert config.strategies[0].databases[0].name == "shop"


def test_all_databases_on_a_mysql_server_needs_no_database_in_the_url(tmp_path):
    config = load(tmp_path, "database_url: mariadb://backup:pw@db2:3306/", "all_databases: true")
    assert config.strategies[0].all_databases
    assert "the URL names no database" in problems(tmp_path, "database_url: mariadb://backup:pw@db2:3306/")


def test_pg_dump_settings_on_a_strategy_of_mysql_databases_are_refused(tmp_path):
    text = problems(tmp_path, "database_url: mysql://backup@shop-db/shop", "pg_dump: {extra_args: ['--no-owner']}")
    assert "strategies[0] (shop).pg_dump: applies to PostgreSQL databases, and this strategy has none (its " \
           "databases are mysql://); use mysqldump: for them, or remove pg_dump" in text


def test_mysqldump_settings_on_a_strategy_of_postgres_databases_are_refused(tmp_path):
    text = problems(tmp_path, "database_url: postgres://u@pg/app", "mysqldump: {extra_args: ['--quick']}")
    assert "strategies[0] (shop).mysqldump: applies to MySQL/MariaDB databases" in text


def test_a_reserved_mysqldump_argument_is_refused_with_its_path(tmp_path):
    text = problems(tmp_path, "database_url: mysql://backup@shop-db/shop",
                    "mysqldump: {extra_args: ['--no-tablespaces', '--result-file=/tmp/x']}")
    assert "strategies[0] (shop).mysqldump.extra_args[1]: '--result-file=/tmp/x' is the dump program's " \
           "--result-file, which is set by easybackup" in text


@pytest.mark.parametrize("argument", [
    "--host=db2", "--port=3307", "--user=root", "--password=x", "--password", "-px", "-p", "-uroot", "-h", "-P3307",
    "--socket=/tmp/s", "--defaults-file=/x", "--defaults-extra-file=/x", "--no-defaults", "--login-path=prod",
    "--result-file=/tmp/x", "--res=/tmp/x", "-r/tmp/x", "-vr/tmp/x", "--tab=/tmp", "-T/tmp", "--xml", "-X",
    "--compact", "--skip-comments", "--disable-comments", "--comments=0", "--loose-host=db2", "--loose-skip-comments",
    "--databases", "-B", "--all-databases", "-A", "--system=users", "--set-gtid-purged=ON", "--ho=db2",
])
def test_every_spelling_of_an_option_easybackup_sets_is_refused(argument):
    [use] = reserved_uses(["--quick", argument])
    assert use.index == 1 and use.argument == argument


@pytest.mark.parametrize("argument", [
    "--ignore-table=shop.audit_log", "--no-tablespaces", "--skip-lock-tables", "--disable-keys", "-K", "--tables",
    "--where=id>5", "-wid>5", "--comments", "--skip-add-drop-table", "--hex-blob", "--compress", "-v",
    "--max-allowed-packet=1G", "--ssl-cert=/c.pem", "--no-data", "-d", "--skip-extended-insert",
])
def test_other_options_pass(argument):
    assert reserved_uses([argument]) == []


def test_a_short_options_value_may_be_the_next_argument():
    assert reserved_uses(["-w", "id > 5", "-vw", "id < 9"]) == []


@pytest.mark.parametrize("args", [["shop_table"], ["--", "--host"], ["--where", "id>5"], ["-"]])
def test_a_word_that_would_be_read_as_the_database_or_a_table_is_refused(args):
    uses = reserved_uses(args)
    assert uses and "is no option" in uses[0].why

