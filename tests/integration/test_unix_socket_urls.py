"""A database URL may name a Unix-socket directory instead of a host: percent-encoded in the netloc
(`postgresql://u@%2Frun%2Fpostgresql/db`) or in the query (`postgresql://u@/db?host=/run/postgresql`). Backup,
verification and restore go through the test cluster's real socket, with the password from the passfile."""

from __future__ import annotations

import json
import subprocess
from urllib.parse import quote

import pytest

from tests.harness.configs import REPO, restore_target, run_cli, write_config
from tests.harness.restore import archive_keys, download, manifest_keys

SOURCE = "socket_src"


@pytest.fixture(scope="module")
def socket_source(pg) -> dict:
    pg.create_database(SOURCE)
    pg.psql_file(str(REPO / "examples" / "demo-data.sql"), SOURCE)
    return pg.table_fingerprints(SOURCE)


def netloc_socket_url(pg, database: str) -> str:
    return f"postgresql://{pg.user}:{pg.password}@{quote(str(pg.sockdir), safe='')}:{pg.port}/{database}"


def query_socket_url(pg, database: str) -> str:
    return f"postgresql://{pg.user}:{pg.password}@/{database}?host={pg.sockdir}&port={pg.port}"


@pytest.mark.parametrize("spelling", [netloc_socket_url, query_socket_url], ids=["netloc", "query"])
def test_backup_verify_and_restore_go_through_a_unix_socket(pg, moto, bucket, tmp_path, socket_source, spelling):
    # No TCP address anywhere in these URLs: libpq can reach the server only through its socket directory.
    target = f"socket_restored_{spelling.__name__.split('_')[0]}"
    source_url, target_url = spelling(pg, SOURCE), spelling(pg, target)
    assert "127.0.0.1" not in source_url + target_url
    config = write_config(tmp_path, bucket=bucket, endpoint=moto.endpoint, verify={"after_backup": True},
                          strategies=[{"name": "main", "database_url": source_url}])
    validated = run_cli("validate", "-c", str(config))
    assert validated.returncode == 0, validated.stdout + validated.stderr
    backed_up = run_cli("once", "-c", str(config))
    assert backed_up.returncode == 0, backed_up.stdout + backed_up.stderr
    [key] = archive_keys(moto, bucket)
    [manifest_key] = manifest_keys(moto, bucket)
    manifest = json.loads(download(moto, bucket, manifest_key))
    assert manifest["verified"] is True and manifest["server_version"] == pg.psql("show server_version")
    verified = run_cli("verify", "-c", str(config), "--backup", key, stdin=subprocess.DEVNULL)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    bare_target, with_password = restore_target(target_url)  # a password in --target-url is refused
    restored = run_cli("restore", "-c", str(config), "--strategy", "main", "--target-url", bare_target, "--create",
                       "--yes", env=with_password, stdin=subprocess.DEVNULL)
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert pg.table_fingerprints(target) == socket_source
