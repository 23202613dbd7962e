"""Safe by default: private 0600 files in a 0700 directory that are gone afterwards (passfiles, the --jobs
download), a warning for a config that others can read and that holds secrets, and health and metrics listening
only where `bind` says.

The files are caught while they exist: wrappers of pg_dump and pg_restore on PATH stat them (and their directory)
before they exec the real tool. Everything runs with umask 000, so the modes come from easybackup, not the umask.
"""

from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
from pathlib import Path

import pytest

from tests.harness.configs import EASYBACKUP, cli_env, restore_target, run_cli, write_config
from tests.harness.net import free_port

READABLE_WARNING = "is readable by other users"


def stat_wrapper(directory: Path, tool: str, path_expression: str) -> tuple[str, Path]:
    """Put a `tool` wrapper on a PATH that records `mode owner path` of the file `path_expression` names (shell
    syntax, evaluated in the wrapper) and of its directory, then execs the real tool. Return (PATH, records)."""
    bin_dir, records = directory / "wrappers", directory / "records"
    bin_dir.mkdir(exist_ok=True)
    records.mkdir(exist_ok=True)
    real = shutil.which(tool)
    assert real, f"{tool} is not installed"
    file = f'"{path_expression}"'
    (bin_dir / tool).write_text(
        "#!/bin/sh\n"
        f'if [ -n {file} ] && [ -e {file} ]; then\n'
        f'  stat -c "%a %U %n" {file} "$(dirname {file})" > "{records}/{tool}.$$"\n'
        "fi\n"
        f'exec "{real}" "$@"\n')
    (bin_dir / tool).chmod(0o755)
    return f"{bin_dir}:{os.environ['PATH']}", records


def recorded(records: Path) -> list[list[tuple[str, str, Path]]]:
    """Return, per wrapper call, [(mode, owner, path) of the file, ... of its directory]."""
    calls = []
    for record in sorted(records.iterdir()):
        rows = [line.split(" ", 2) for line in record.read_text().splitlines()]
        calls.append([(mode, owner, Path(path)) for mode, owner, path in rows])
    return calls


def run_permissive(*args: str, env: dict, timeout: float = 180) -> subprocess.CompletedProcess:
    """Run the CLI as run_cli does, but with umask 000: a careless operator's shell."""
    return subprocess.run([*EASYBACKUP, *args], env=env, capture_output=True, text=True, timeout=timeout, umask=0)


@pytest.fixture(scope="module")
def small_db(pg) -> str:
    pg.create_database("security_defaults")
    pg.psql("CREATE TABLE t AS SELECT g AS id, md5(g::text) AS h FROM generate_series(1, 3000) g",
            "security_defaults")
    return "security_defaults"


def test_the_passfile_is_0600_in_a_private_0700_directory_and_both_are_gone_afterwards(pg, moto, bucket, tmp_path,
                                                                                     small_db):
    path, records = stat_wrapper(tmp_path, "pg_dump", "$PGPASSFILE")
    temp_dir = tmp_path / "tmp"
    config = write_config(tmp_path, bucket=bucket, endpoint=moto.endpoint,
                          strategies=[{"name": "main", "database_url": pg.url(small_db)}])
    result = run_permissive("once", "-c", str(config), env=cli_env(PATH=path))
    assert result.returncode == 0, result.stdout + result.stderr

    calls = recorded(records)
    assert calls, "pg_dump never ran with a PGPASSFILE"
    for (file_mode, file_owner, passfile), (dir_mode, dir_owner, directory) in calls:
        assert (file_mode, dir_mode) == ("600", "700"), calls
        assert file_owner == dir_owner == Path(temp_dir).owner()
        assert directory.parent == temp_dir, "the passfile lives in a private directory inside temp_dir"
        assert not passfile.exists() and not directory.exists(), "left behind after the run"
    assert oct(temp_dir.stat().st_mode & 0o777) == "0o700"
    assert list(temp_dir.iterdir()) == [], "temp_dir must be empty after the run"


def test_restore_with_jobs_downloads_into_a_0600_file_in_a_0700_directory_and_removes_both(pg, moto, bucket,
                                                                                         tmp_path, small_db):
    config = write_config(tmp_path, bucket=bucket, endpoint=moto.endpoint,
                          strategies=[{"name": "main", "database_url": pg.url(small_db)}])
    assert run_cli("once", "-c", str(config)).returncode == 0
    # pg_restore --jobs reads the downloaded archive: its last argument.
    path, records = stat_wrapper(tmp_path, "pg_restore", '$(eval echo \\"\\${$#}\\")')
    pg.psql("DROP DATABASE IF EXISTS security_restored WITH (FORCE)")
    url, env = restore_target(pg.url("security_restored"), PATH=path)
    result = run_permissive("restore", "-c", str(config), "--jobs", "2", "--create", "-y", "--target-url", url,
                            env=env)
    assert result.returncode == 0, result.stdout + result.stderr

    [[(file_mode, _owner, archive), (dir_mode, _dir_owner, directory)]] = recorded(records)
    assert (file_mode, dir_mode) == ("600", "700")
    assert directory.parent == tmp_path / "tmp"
    assert not archive.exists() and not directory.exists()
    assert pg.table_fingerprints("security_restored") == pg.table_fingerprints(small_db)


@pytest.mark.parametrize(("mode", "secret_in_file", "warned"), [
    (0o644, True, True), (0o640, True, True), (0o600, True, False), (0o644, False, False)],
    ids=["0644-with-secrets", "0640-with-secrets", "0600-with-secrets", "0644-secrets-from-env"])
def test_a_config_others_can_read_draws_a_warning_only_when_it_holds_secrets_itself(tmp_path, mode, secret_in_file,
                                                                                    warned):
    password = "hunter2-literal" if secret_in_file else "${DB_PASSWORD}"
    config = write_config(tmp_path, bucket="my-backup-bucket", endpoint="http://127.0.0.1:9",
                          strategies=[{"name": "main", "database_url": f"postgres://u:{password}@db/app"}])
    config.chmod(mode)
    result = run_cli("validate", "-c", str(config), env=cli_env(DB_PASSWORD="from-the-environment"))
    assert result.returncode == 0, result.stderr
    assert (READABLE_WARNING in result.stderr) is warned, result.stderr
    if warned:
        assert f"mode {mode:04o}" in result.stderr and "chmod 600" in result.stderr
    assert "hunter2-literal" not in result.stderr


def can_connect(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(2)
        return sock.connect_ex((host, port)) == 0


def test_health_bound_to_127_0_0_1_is_not_reachable_on_another_local_address_while_0_0_0_0_is(
        pg, moto, bucket, tmp_path, small_db, start_daemon):
    local_port, open_port = free_port(), free_port()
    config = write_config(tmp_path, bucket=bucket, endpoint=moto.endpoint,
                          strategies=[{"name": "main", "database_url": pg.url(small_db)}],
                          monitoring={"health_check": {"port": local_port, "bind": "127.0.0.1"},
                                      "metrics": {"port": open_port, "bind": "0.0.0.0"}})
    daemon = start_daemon(config, local_port)
    daemon.wait_health(lambda document: document["strategies"]["total"] == 1)
    assert can_connect("127.0.0.1", local_port)
    assert not can_connect("127.0.0.2", local_port), "health answers on an address it was not bound to"
    assert can_connect("127.0.0.2", open_port), "the 0.0.0.0 endpoint should answer on every local address"
    assert daemon.stop() == 0


@pytest.mark.parametrize(("mode", "owner", "safe"), [
    (0o700, "self", True),
    (0o1777, "self", True),  # sticky, like /tmp: others cannot rename what we create
    (0o777, "self", False),
    (0o770, "self", False),
    (0o700, "nobody", False),
])
def test_a_temp_dir_others_could_tamper_with_is_refused(tmp_path, mode, owner, safe):
    import pwd

    from easybackup.errors import EasybackupError
    from easybackup.private_dirs import make_private_dir

    base = tmp_path / "shared"
    base.mkdir()
    base.chmod(mode)
    if owner == "nobody":
        os.chown(base, pwd.getpwnam("nobody").pw_uid, -1)
    if safe:
        private = make_private_dir(str(base), "run-")
        assert stat.S_IMODE(private.stat().st_mode) == 0o700
    else:
        with pytest.raises(EasybackupError, match="is not safe for passfiles") as refused:
            make_private_dir(str(base), "run-")
        assert refused.value.kind == "config" and list(base.iterdir()) == []


def test_once_refuses_an_unsafe_temp_dir_before_touching_any_database(pg, moto, bucket, tmp_path):
    shared = tmp_path / "shared-tmp"
    shared.mkdir()
    shared.chmod(0o777)
    config = write_config(tmp_path, bucket=bucket, endpoint=moto.endpoint, temp_dir=str(shared),
                          strategies=[{"name": "main", "database_url": pg.url("postgres")}])
    result = run_cli("once", "-c", str(config))
    assert result.returncode == 1
    assert "[config] temp_dir" in result.stdout and "not safe for passfiles" in result.stdout
    assert moto.list_keys(bucket) == [] and list(shared.iterdir()) == []
