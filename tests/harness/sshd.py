"""A real OpenSSH server for tests: its own host key, config and authorized_keys in a temp dir, run in a namespace.

    server = SshServer(ns, "10.231.N.2", 22, authorized_keys=[client.public]).start()
    server.known_hosts_line()      # "10.231.N.2 ssh-ed25519 AAAA..." for the client's known_hosts
    server.kill_all()              # SIGKILL the listener and every session (a bastion that dies)
    server.stop()
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tests.harness.netns import Namespace

SSHD = "/usr/sbin/sshd"  # sshd re-executes itself and insists on an absolute path
PRIVSEP_DIR = Path("/run/sshd")  # sshd refuses to start without it (the Debian service creates it at boot)


@dataclass(frozen=True)
class KeyPair:
    private: Path
    public: str  # "ssh-ed25519 AAAA... comment"


def make_key(directory: Path, name: str) -> KeyPair:
    """Generate an ed25519 key pair without a passphrase in `directory`; return it."""
    path = directory / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(path)], check=True,
                   capture_output=True)
    return KeyPair(path, (directory / f"{name}.pub").read_text().strip())


def known_hosts_name(host: str, port: int) -> str:
    return host if port == 22 else f"[{host}]:{port}"


def descendants(pid: int) -> list[int]:
    """Return the pids of every process below `pid` (children, grandchildren, ...)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


class SshServer:
    """sshd in `ns` on host:port, accepting root with the given public keys; forwarding allowed."""

    def __init__(self, ns: Namespace, host: str, port: int = 22, authorized_keys: list[str] = (),
                 permit_open: str = "any"):
        self.ns = ns
        self.host = host
        self.port = port
        self.root = Path(tempfile.mkdtemp(prefix="easybackup-sshd-"))
        self.authorized_keys = list(authorized_keys)
        self.permit_open = permit_open
        self.host_key = make_key(self.root, "host_key")
        self.log = self.root / "sshd.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 10.0) -> SshServer:
        PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)
        (self.root / "authorized_keys").write_text("".join(f"{key}\n" for key in self.authorized_keys))
        config = self.root / "sshd_config"
        config.write_text("\n".join([
            f"ListenAddress {self.host}:{self.port}", f"HostKey {self.host_key.private}", "PidFile none",
            f"AuthorizedKeysFile {self.root / 'authorized_keys'}", "StrictModes no", "UsePAM no",
            "PubkeyAuthentication yes", "PasswordAuthentication no", "KbdInteractiveAuthentication no",
            "PermitRootLogin prohibit-password", "AllowTcpForwarding yes", f"PermitOpen {self.permit_open}",
            "LogLevel VERBOSE", ""]))
        self.proc = self.ns.popen([SSHD, "-D", "-f", str(config), "-E", str(self.log)],
                                  stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while "Server listening on" not in self._log_text():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"sshd did not start on {self.host}:{self.port}: {self._log_text()}")
            time.sleep(0.05)
        return self

    def known_hosts_line(self, key: KeyPair | None = None) -> str:
        """Return this server's known_hosts line (or one that claims `key` is its host key)."""
        return f"{known_hosts_name(self.host, self.port)} {(key or self.host_key).public}\n"

    def kill_all(self) -> None:
        """SIGKILL the listener and every session process: the bastion dies with connections open."""
        if self.proc is None:
            return
        for pid in [self.proc.pid, *descendants(self.proc.pid)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        """Stop sshd and its sessions and remove the temp dir (idempotent)."""
        try:
            self.kill_all()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def _log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""
