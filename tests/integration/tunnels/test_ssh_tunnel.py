"""Dumps through a real OpenSSH tunnel to a PostgreSQL that only the bastion can reach."""

from __future__ import annotations

import os
import subprocess
import threading

import pytest

from easybackup.config.model import DatabaseTarget, TunnelSettings
from easybackup.errors import EasybackupError
from easybackup.network.routes import describe_route, local_target, open_route
from tests.harness.configs import EASYBACKUP, cli_env, restore_target, run_cli, write_config
from tests.harness.net import free_port
from tests.harness.restore import archive_keys, decompress, download, manifest_keys
from tests.harness.sshd import make_key
from tests.integration.tunnels.conftest import (
    EventLog,
    dump_through_route,
    restores_identically,
    ssh_pids,
    strategy_with,
    wait_until,
)


def tunnel_to(server, key, known_hosts, **extra) -> TunnelSettings:
    return TunnelSettings(host=server.host, port=server.port, user="root", identity_file=str(key.private),
                          known_hosts_file=str(known_hosts), **extra)


def write_known_hosts(workdir, *lines: str):
    path = workdir / "known_hosts"
    path.write_text("".join(lines))
    return path


def test_the_database_is_unreachable_without_a_route(island):
    done = subprocess.run(["pg_dump", "--no-password", "-Fc", "--dbname", island.url()], capture_output=True,
                          text=True, env={**island.pg.env(), "PGCONNECT_TIMEOUT": "5"}, timeout=30)
    assert done.returncode != 0
    assert "Connection refused" in done.stderr


def test_a_dump_through_an_ssh_tunnel_restores_to_identical_tables(island, sshd, client_key, workdir, pg):
    server = sshd(keys=[client_key.public])
    known_hosts = write_known_hosts(workdir, server.known_hosts_line())
    strategy = strategy_with(island.target(), tunnel=tunnel_to(server, client_key, known_hosts))
    events = EventLog()
    seen_while_open: set[int] = set()
    dump = dump_through_route(strategy, workdir, events, on_chunk=lambda total: seen_while_open.update(
        ssh_pids(workdir)))
    assert restores_identically(pg, island, dump, "restored_via_ssh")
    assert seen_while_open, "ssh was not seen while the tunnel carried the dump"
    assert not ssh_pids(workdir), "the ssh child must be stopped when the route closes"
    assert not list(workdir.glob("ssh_config*")), "the private ssh_config must be removed"
    assert any("is open on 127.0.0.1:" in line for line in events.lines("worker"))
    assert describe_route(strategy) == f"via ssh tunnel root@{server.host}:22"


def test_a_chain_through_a_jump_host_reaches_a_bastion_only_the_jump_host_can_reach(
        island, sshd, client_key, workdir, pg):
    jump = sshd(keys=[client_key.public])
    # The bastion listens on the namespace's loopback: from here only the jump host reaches it.
    bastion = sshd(host="127.0.0.1", port=free_port(), keys=[client_key.public])
    known_hosts = write_known_hosts(workdir, jump.known_hosts_line(), bastion.known_hosts_line())
    tunnel = tunnel_to(bastion, client_key, known_hosts, jump_hosts=(f"root@{jump.host}:22",))
    strategy = strategy_with(island.target(), tunnel=tunnel)
    dump = dump_through_route(strategy, workdir, EventLog())
    assert restores_identically(pg, island, dump, "restored_via_jump")
    assert describe_route(strategy) == f"via ssh tunnel root@127.0.0.1:{bastion.port} (jump: root@{jump.host}:22)"


def test_a_jump_host_missing_from_known_hosts_is_refused_by_name(island, sshd, client_key, workdir):
    jump = sshd(keys=[client_key.public])
    bastion = sshd(host="127.0.0.1", port=free_port(), keys=[client_key.public])
    known_hosts = write_known_hosts(workdir, bastion.known_hosts_line())
    tunnel = tunnel_to(bastion, client_key, known_hosts, jump_hosts=(f"root@{jump.host}:22",))
    with pytest.raises(EasybackupError) as caught:
        dump_through_route(strategy_with(island.target(), tunnel=tunnel), workdir, EventLog())
    assert caught.value.kind == "authentication"
    assert caught.value.message == f"ssh tunnel: host key of jump host {jump.host} is unknown (not in {known_hosts})"


def test_a_changed_host_key_fails_with_a_host_key_error(island, sshd, client_key, workdir):
    server = sshd(keys=[client_key.public])
    impostor = make_key(workdir, "old_host_key")
    known_hosts = write_known_hosts(workdir, server.known_hosts_line(impostor))
    events = EventLog()
    with pytest.raises(EasybackupError) as caught:
        dump_through_route(strategy_with(island.target(), tunnel=tunnel_to(server, client_key, known_hosts)),
                           workdir, events)
    assert caught.value.kind == "authentication" and not caught.value.transient
    assert caught.value.message == f"ssh tunnel: host key of bastion {server.host} changed"
    assert any("REMOTE HOST IDENTIFICATION HAS CHANGED" in line for line in events.lines("ssh"))
    assert not ssh_pids(workdir)


def test_a_key_the_bastion_does_not_accept_is_reported_as_refused(island, sshd, client_key, workdir):
    server = sshd(keys=[make_key(workdir, "someone_else").public])
    known_hosts = write_known_hosts(workdir, server.known_hosts_line())
    with pytest.raises(EasybackupError) as caught:
        dump_through_route(strategy_with(island.target(), tunnel=tunnel_to(server, client_key, known_hosts)),
                           workdir, EventLog())
    assert caught.value.kind == "authentication"
    assert caught.value.message == f"ssh tunnel: bastion {server.host} refused the key {client_key.private}"


def test_an_identity_file_others_can_read_is_reported_as_such(island, sshd, client_key, workdir):
    server = sshd(keys=[client_key.public])
    known_hosts = write_known_hosts(workdir, server.known_hosts_line())
    client_key.private.chmod(0o644)
    with pytest.raises(EasybackupError) as caught:
        dump_through_route(strategy_with(island.target(), tunnel=tunnel_to(server, client_key, known_hosts)),
                           workdir, EventLog())
    assert caught.value.kind == "authentication"
    assert caught.value.message == (f"ssh tunnel: ssh refuses the identity file {client_key.private}: "
                                    "other users can read it")

def test_an_unreachable_bastion_is_reported_as_unreachable(island, client_key, workdir):
    tunnel = TunnelSettings(host=island.ns.address, port=free_port(), user="root",
                            identity_file=str(client_key.private), known_hosts_file=str(workdir / "known_hosts"))
    with pytest.raises(EasybackupError) as caught:
        dump_through_route(strategy_with(island.target(), tunnel=tunnel), workdir, EventLog())
    assert caught.value.kind == "connection" and caught.value.transient
    assert caught.value.message == f"ssh tunnel: bastion {island.ns.address} is unreachable"


def test_a_target_the_bastion_cannot_reach_is_reported_as_a_refused_forward(island, sshd, client_key, workdir):
    server = sshd(keys=[client_key.public])
    known_hosts = write_known_hosts(workdir, server.known_hosts_line())
    nothing_there = free_port()
    strategy = strategy_with(island.target(port=nothing_there), tunnel=tunnel_to(server, client_key, known_hosts))
    with pytest.raises(EasybackupError) as caught:
        dump_through_route(strategy, workdir, EventLog())
    assert caught.value.kind == "connection"
    assert caught.value.message == (f"ssh tunnel: bastion {server.host} could not open a connection to "
                                    f"127.0.0.1:{nothing_there}")


def test_a_bastion_killed_mid_dump_fails_cleanly_and_leaves_no_ssh(island, sshd, client_key, workdir):
    server = sshd(keys=[client_key.public])
    known_hosts = write_known_hosts(workdir, server.known_hosts_line())
    strategy = strategy_with(island.target("bulk"), tunnel=tunnel_to(server, client_key, known_hosts))
    killed = threading.Event()

    def kill_the_bastion_once_data_flows(total: int) -> None:
        if total > 1_000_000 and not killed.is_set():
            killed.set()
            server.kill_all()

    island.ns.throttle("8mbit")
    try:
        with pytest.raises(EasybackupError) as caught:
            dump_through_route(strategy, workdir, EventLog(), on_chunk=kill_the_bastion_once_data_flows)
    finally:
        island.ns.unthrottle()
    assert killed.is_set(), "the dump ended before the bastion could be killed"
    assert caught.value.kind == "connection" and caught.value.transient
    assert caught.value.message == f"ssh tunnel: the connection to bastion {server.host} was lost"
    assert wait_until(lambda: not ssh_pids(workdir), timeout=5), "an ssh process was left behind"


def test_a_run_cancelled_while_the_tunnel_opens_stops_ssh(island, sshd, client_key, workdir):
    server = sshd(keys=[client_key.public])
    known_hosts = write_known_hosts(workdir, server.known_hosts_line())
    strategy = strategy_with(island.target(), tunnel=tunnel_to(server, client_key, known_hosts))
    cancel = threading.Event()
    cancel.set()  # SIGTERM arrived: the worker's handler sets this flag
    with pytest.raises(EasybackupError) as caught:
        with open_route(strategy, strategy.databases[0], workdir, EventLog(), cancel=cancel):
            pytest.fail("the route must not open once the run is cancelled")
    assert caught.value.kind == "cancelled"
    assert not ssh_pids(workdir) and not list(workdir.glob("ssh_config*"))


def test_the_local_target_keeps_user_password_database_host_and_query_and_connects_to_the_local_end():
    target = DatabaseTarget("app", "postgresql://u%40x:p%3Aw@db.internal:6432/app%20db?sslmode=require")
    assert local_target(target, 40001) == DatabaseTarget(
        "app", "postgresql://u%40x:p%3Aw@db.internal:40001/app%20db?sslmode=require&hostaddr=127.0.0.1")


@pytest.mark.parametrize(("url", "routed"), [
    ("postgres://u@[fd00::5]:5432/d", "postgres://u@[fd00::5]:40001/d?hostaddr=127.0.0.1"),
    ("postgres:///d", "postgres://localhost:40001/d?hostaddr=127.0.0.1"),
    ("postgres://db/d?hostaddr=10.0.0.9&application_name=a%20b+c",
     "postgres://db:40001/d?application_name=a%20b+c&hostaddr=127.0.0.1"),
])
def test_the_local_target_replaces_any_hostaddr_and_keeps_the_query_text_as_it_is(url, routed):
    assert local_target(DatabaseTarget("d", url), 40001).url == routed


@pytest.fixture
def island_tls(island, workdir):
    """TLS on the island's PostgreSQL with a certificate for `localhost` from a CA of the test's; yield the CA file.
    TLS is switched off again afterwards."""
    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=workdir)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=easybackup test CA",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    openssl("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost")
    (workdir / "san.ext").write_text("subjectAltName=DNS:localhost\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "server.crt", "-days", "2", "-extfile", "san.ext")
    pg = island.pg
    for name in ("server.crt", "server.key"):
        target = pg.datadir / name
        target.write_bytes((workdir / name).read_bytes())
        target.chmod(0o600)
        if pg._run_as:
            os.chown(target, pg._run_as.pw_uid, pg._run_as.pw_gid)
    pg.psql("ALTER SYSTEM SET ssl = on")
    pg.psql("SELECT pg_reload_conf()")
    assert wait_until(lambda: pg.psql("SHOW ssl") == "on")
    try:
        yield workdir / "ca.crt"
    finally:
        pg.psql("ALTER SYSTEM RESET ssl")
        pg.psql("SELECT pg_reload_conf()")


def test_sslmode_verify_full_checks_the_certificate_against_the_database_host_through_the_tunnel(
        island, island_tls, sshd, client_key, workdir, pg):
    server = sshd(keys=[client_key.public])
    tunnel = tunnel_to(server, client_key, write_known_hosts(workdir, server.known_hosts_line()))
    verify = f"sslmode=verify-full&sslrootcert={island_tls}"
    good = DatabaseTarget("island", f"{island.pg.url('island', host='localhost')}?{verify}")
    dump = dump_through_route(strategy_with(good, tunnel=tunnel), workdir, EventLog())
    assert restores_identically(pg, island, dump, "restored_via_verified_tls")
    # The certificate names localhost only: the same server under its address must be refused, so the check ran.
    wrong_name = DatabaseTarget("island", f"{island.pg.url('island', host='127.0.0.1')}?{verify}")
    with pytest.raises(EasybackupError) as refused:
        dump_through_route(strategy_with(wrong_name, tunnel=tunnel), workdir, EventLog())
    assert 'does not match host name "127.0.0.1"' in str(refused.value.to_dict())


# -- end to end, through `easybackup once` exactly as an operator runs it --------------------------------------

def once_config(tmp_path, moto, bucket, island, database: str, tunnel: TunnelSettings):
    route = {"host": tunnel.host, "port": tunnel.port, "user": tunnel.user, "identity_file": tunnel.identity_file,
             "known_hosts_file": tunnel.known_hosts_file}
    return write_config(tmp_path, bucket=bucket, endpoint=moto.endpoint,
                        strategies=[{"name": "island", "database_url": island.url(database), "tunnel": route}])


def test_once_backs_up_and_restore_restores_through_an_ssh_tunnel(island, sshd, client_key, workdir, pg, moto,
                                                                 bucket, tmp_path):
    server = sshd(keys=[client_key.public])
    known_hosts = write_known_hosts(workdir, server.known_hosts_line())
    config = once_config(tmp_path, moto, bucket, island, "island", tunnel_to(server, client_key, known_hosts))
    result = run_cli("once", "-c", str(config), timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    [key] = archive_keys(moto, bucket)
    assert restores_identically(pg, island, decompress(download(moto, bucket, key), "gzip"), "restored_once_ssh")
    assert island.pg.password not in result.stdout + result.stderr

    # restore takes the same path back: into a new database behind the bastion, which only the tunnel reaches
    target, env = restore_target(island.url("island_restored_via_tunnel"))
    direct = run_cli("restore", "-c", str(config), "--target-url", target, "--create", "--yes", "--direct",
                     env=env, timeout=120)
    assert direct.returncode != 0 and "accepting TCP/IP connections" in direct.stderr
    restored = run_cli("restore", "-c", str(config), "--target-url", target, "--create", "--yes", env=env,
                       timeout=120)
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert "connecting via ssh tunnel root@" in restored.stderr
    assert island.pg.table_fingerprints("island_restored_via_tunnel") == island.fingerprints


def test_validate_checks_connectivity_through_the_tunnel_and_says_how_it_connects(island, sshd, client_key,
                                                                                  workdir, moto, bucket, tmp_path):
    server = sshd(keys=[client_key.public])
    known_hosts = write_known_hosts(workdir, server.known_hosts_line())
    config = once_config(tmp_path, moto, bucket, island, "island", tunnel_to(server, client_key, known_hosts))
    result = run_cli("validate", "-c", str(config), "--check-connectivity", timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"connects     via ssh tunnel root@{server.host}:{server.port}" in result.stdout
    assert "island: database island (via ssh tunnel" in result.stdout and ": ok" in result.stdout
    assert island.pg.password not in result.stdout + result.stderr


def test_once_fails_cleanly_when_the_bastion_dies_mid_dump(island, sshd, client_key, workdir, moto, bucket, tmp_path):
    server = sshd(keys=[client_key.public])
    known_hosts = write_known_hosts(workdir, server.known_hosts_line())
    config = once_config(tmp_path, moto, bucket, island, "bulk", tunnel_to(server, client_key, known_hosts))
    island.ns.throttle("8mbit")
    try:
        start = island.ns.host_rx_bytes()
        once = subprocess.Popen([*EASYBACKUP, "once", "-c", str(config)], env=cli_env(), text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            streaming = wait_until(lambda: island.ns.host_rx_bytes() - start > 2_000_000, timeout=60)
            server.kill_all()
            stdout, stderr = once.communicate(timeout=60)
        finally:
            once.kill()
            once.wait()
    finally:
        island.ns.unthrottle()
    assert streaming, "the dump never streamed through the tunnel"
    assert once.returncode == 1, stdout + stderr
    assert f"ssh tunnel: the connection to bastion {server.host} was lost" in stdout
    assert archive_keys(moto, bucket) == [] and manifest_keys(moto, bucket) == []
    assert moto.open_uploads(bucket) == []
    assert wait_until(lambda: not ssh_pids(tmp_path), timeout=5), "an ssh process was left behind"
