"""No password on a command line: not the source's (a `?password=` in the config's URL moves to the passfile), not
the restore target's (refused in --target-url; given by $EASYBACKUP_TARGET_PASSWORD, --target-password-file or a
prompt on a terminal).

Backup, verify and restore run as an operator types them, watched as tests/reliability/test_secrets.py watches:
/proc/*/cmdline and /proc/*/environ of every descendant polled while it runs, and pg_dump, pg_restore, psql and
the compressors replaced by wrappers on PATH that record their own argv and environment before they exec.
"""

from __future__ import annotations

import fcntl
import os
import select
import subprocess
import termios
import time
from pathlib import Path

import pytest

from tests.harness.configs import EASYBACKUP, cli_env, run_cli, write_config
from tests.reliability.test_secrets import WRAPPED_TOOLS, ProcessWatcher, install_wrappers, run_watched

SOURCE_ROLE, SOURCE_PASSWORD = "cmdline_source", "QueryPw-8kL2x-0571"
TARGET_ROLE, TARGET_PASSWORD = "cmdline_target", "TargetPw-Zr7q-3391"
PASSWORDS = (SOURCE_PASSWORD, TARGET_PASSWORD)
SOURCE = "cmdline_src"
TOOLS = (*WRAPPED_TOOLS, "pg_restore")


def found_in(data: str | bytes, where: str) -> list[str]:
    data = data if isinstance(data, bytes) else data.encode("utf-8", "surrogatepass")
    return [f"{secret!r} in {where}" for secret in PASSWORDS if secret.encode() in data]


@pytest.fixture(scope="module")
def source(pg) -> dict:
    """A role with a password, its database (the backup's source), and a target role that owns restore targets."""
    pg.psql(f"DROP DATABASE IF EXISTS {SOURCE} WITH (FORCE)")
    for role, password in ((SOURCE_ROLE, SOURCE_PASSWORD), (TARGET_ROLE, TARGET_PASSWORD)):
        pg.psql(f"DROP ROLE IF EXISTS {role}; CREATE ROLE {role} LOGIN PASSWORD '{password}'")
    pg.psql(f"CREATE DATABASE {SOURCE} OWNER {SOURCE_ROLE}")
    # Owned by the target role, readable by the source's: a restore as the target role may set that owner.
    pg.psql("CREATE TABLE t AS SELECT g AS id, md5(g::text) AS h FROM generate_series(1, 4000) g;"
            f"ALTER TABLE t OWNER TO {TARGET_ROLE}; GRANT SELECT ON t TO {SOURCE_ROLE}", SOURCE)
    return pg.table_fingerprints(SOURCE)


def target_db(pg, name: str) -> str:
    """Create an empty database owned by the target role; return its URL without a password."""
    pg.psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    pg.psql(f"CREATE DATABASE {name} OWNER {TARGET_ROLE}")
    return f"postgres://{TARGET_ROLE}@{pg.host}:{pg.port}/{name}"


def query_password_config(tmp_path: Path, pg, moto, bucket: str) -> Path:
    url = f"postgres://{SOURCE_ROLE}@{pg.host}:{pg.port}/{SOURCE}?sslmode=disable&password={SOURCE_PASSWORD}"
    return write_config(tmp_path, bucket=bucket, endpoint=moto.endpoint, verify={"after_backup": True},
                        strategies=[{"name": "main", "database_url": url}])


def watched(argv: list[str], env: dict, operator_environment: bool = False) -> tuple[subprocess.CompletedProcess,
                                                                                    list[str], ProcessWatcher]:
    """Run the CLI while watching every process it starts; return (result, leaks, watcher). With
    `operator_environment` the CLI's own environment (where the operator put the password) is not searched:
    only its children's."""
    process, stdout, stderr, watcher = run_watched(argv, env, stdin=subprocess.DEVNULL)
    leaks = found_in(stdout, "stdout") + found_in(stderr, "stderr")
    for (pid, what), content in watcher.seen.items():
        what = what.split(":")[0]
        if not (operator_environment and pid == process.pid and what == "environ"):
            leaks += found_in(content, f"/proc/{pid}/{what}")
    return subprocess.CompletedProcess(argv, process.returncode, stdout, stderr), leaks, watcher


def test_backup_verify_and_restore_put_no_password_in_any_argv_or_child_environment(pg, moto, bucket, tmp_path,
                                                                                    source):
    config = query_password_config(tmp_path, pg, moto, bucket)
    path, records = install_wrappers(tmp_path, TOOLS)
    env = cli_env(PATH=path)
    password_file = tmp_path / "target-password"
    password_file.write_text(TARGET_PASSWORD + "\n")
    password_file.chmod(0o600)

    backed_up, leaks, watcher = watched(["once", "-c", str(config)], env)
    assert backed_up.returncode == 0, backed_up.stdout + backed_up.stderr
    assert any(b"-m\0easybackup.worker\0" in cmdline for cmdline in watcher.commands()), "no worker seen"
    verified, more, _ = watched(["verify", "-c", str(config)], env)
    assert verified.returncode == 0 and "OK" in verified.stdout, verified.stdout + verified.stderr
    leaks += more
    from_file, more, _ = watched(["restore", "-c", str(config), "--yes", "--target-url",
                                  target_db(pg, "cmdline_from_file"), "--target-password-file", str(password_file)],
                                 env)
    assert from_file.returncode == 0, from_file.stdout + from_file.stderr
    leaks += more
    from_env, more, _ = watched(["restore", "-c", str(config), "--yes", "--target-url",
                                 target_db(pg, "cmdline_from_env")], {**env, "EASYBACKUP_TARGET_PASSWORD":
                                                                      TARGET_PASSWORD}, operator_environment=True)
    assert from_env.returncode == 0, from_env.stdout + from_env.stderr
    leaks += more

    assert pg.table_fingerprints("cmdline_from_file") == pg.table_fingerprints("cmdline_from_env") == source
    started = {record.name.split(".")[0] for record in records.iterdir()}
    assert {"pg_dump", "pg_restore", "psql"} <= started and started & {"pigz", "gzip"}, started
    leaks += [hit for record in sorted(records.iterdir()) for hit in found_in(record.read_bytes(), record.name)]
    assert leaks == []


@pytest.mark.parametrize("where", ["user-info", "query"])
def test_a_password_in_target_url_is_refused_with_a_hint_and_nothing_changes(pg, moto, bucket, tmp_path, source,
                                                                             where):
    config = write_config(tmp_path, bucket=bucket, endpoint=moto.endpoint,
                          strategies=[{"name": "main", "database_url": pg.url(SOURCE)}])
    url = target_db(pg, "cmdline_refused")
    pg.psql("CREATE TABLE kept AS SELECT 1 AS id", "cmdline_refused")
    before = pg.table_fingerprints("cmdline_refused")
    url = (url.replace(f"{TARGET_ROLE}@", f"{TARGET_ROLE}:{TARGET_PASSWORD}@") if where == "user-info"
           else f"{url}?password={TARGET_PASSWORD}")
    refused = run_cli("restore", "-c", str(config), "--target-url", url, "--clean", "--yes",
                      stdin=subprocess.DEVNULL)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    [line] = refused.stderr.strip().splitlines()
    assert line.startswith("error: --target-url holds a password, which shows in ps"), line
    assert "$EASYBACKUP_TARGET_PASSWORD" in line and "--target-password-file" in line
    assert TARGET_PASSWORD not in refused.stdout + refused.stderr
    assert pg.table_fingerprints("cmdline_refused") == before


def test_a_password_file_others_may_read_is_refused(pg, moto, bucket, tmp_path, source):
    config = write_config(tmp_path, bucket=bucket, endpoint=moto.endpoint,
                          strategies=[{"name": "main", "database_url": pg.url(SOURCE)}])
    password_file = tmp_path / "target-password"
    password_file.write_text(TARGET_PASSWORD + "\n")
    password_file.chmod(0o644)
    refused = run_cli("restore", "-c", str(config), "--target-url", target_db(pg, "cmdline_file_refused"),
                      "--target-password-file", str(password_file), "--yes", stdin=subprocess.DEVNULL)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    [line] = refused.stderr.strip().splitlines()
    assert "is readable or writable by other users (mode 0644)" in line and f"chmod 600 {password_file}" in line
    assert TARGET_PASSWORD not in refused.stderr


def _controlling_terminal() -> None:
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)  # after setsid (start_new_session): stdin's pty becomes /dev/tty


def test_restore_asks_for_the_password_on_a_terminal(pg, moto, bucket, tmp_path, source):
    config = query_password_config(tmp_path, pg, moto, bucket)
    assert run_cli("once", "-c", str(config)).returncode == 0
    url = target_db(pg, "cmdline_prompted")
    main, terminal = os.openpty()
    process = subprocess.Popen([*EASYBACKUP, "restore", "-c", str(config), "--yes", "--target-url", url],
                               env=cli_env(), stdin=terminal, stdout=terminal, stderr=terminal,
                               start_new_session=True, preexec_fn=_controlling_terminal)
    os.close(terminal)
    screen, answered = b"", False
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([main], [], [], 1)
            if not ready:
                continue
            try:
                chunk = os.read(main, 4096)
            except OSError:  # EIO: the restore exited and closed the terminal
                break
            if not chunk:
                break
            screen += chunk
            if not answered and f"password for user {TARGET_ROLE} at".encode() in screen:
                os.write(main, TARGET_PASSWORD.encode() + b"\n")
                answered = True
        code = process.wait(60)
    finally:
        os.close(main)
        if process.poll() is None:
            process.kill()
            process.wait()
    assert answered, screen.decode(errors="replace")
    assert code == 0, screen.decode(errors="replace")
    assert TARGET_PASSWORD.encode() not in screen  # getpass does not echo
    assert pg.table_fingerprints("cmdline_prompted") == source


def test_an_sslpassword_in_a_database_url_is_refused_saying_why(pg, moto, bucket, tmp_path):
    passphrase = "KeyPass-Wq81-zz"
    config = write_config(tmp_path, bucket=bucket, endpoint=moto.endpoint, strategies=[
        {"name": "main", "database_url": f"{pg.url(SOURCE)}?sslmode=require&sslpassword={passphrase}"}])
    result = run_cli("validate", "-c", str(config))
    assert result.returncode == 2, result.stdout + result.stderr
    assert "strategies[0] (main).database_url: sslpassword= in the URL would show on the command line" \
        in result.stderr
    assert "PGSERVICEFILE" in result.stderr
    assert passphrase not in result.stdout + result.stderr


def test_without_a_password_or_a_terminal_restore_says_where_to_give_it(pg, moto, bucket, tmp_path, source):
    config = query_password_config(tmp_path, pg, moto, bucket)
    assert run_cli("once", "-c", str(config)).returncode == 0
    failed = run_cli("restore", "-c", str(config), "--yes", "--target-url", target_db(pg, "cmdline_no_password"),
                     stdin=subprocess.DEVNULL)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "no password supplied" in failed.stderr and "$EASYBACKUP_TARGET_PASSWORD" in failed.stderr
    assert pg.table_fingerprints("cmdline_no_password") == {}
