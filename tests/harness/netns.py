"""A network namespace the test creates, joined to the root namespace by a veth pair on a private /30.

Inside it run the parts that must NOT be reachable directly (PostgreSQL on the namespace's own loopback) and
the ones that may (sshd, microsocks, tinyproxy on the namespace's veth address). Traffic only ever flows between
loopback and the test's own namespaces: nothing is routed anywhere else.

    with network_namespace() as ns:
        ns.address        # "10.231.N.2", the namespace's side of the veth
        ns.host_address   # "10.231.N.1", the root namespace's side
        ns.popen([...])   # a process inside it (killed when the namespace is destroyed)
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from tests.harness.postgres import PostgresCluster

# An unusual private range, only ever used between the test's own namespaces.
SUPERNET = ipaddress.ip_network("10.231.0.0/16")


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True)


def _used_networks() -> list[ipaddress.IPv4Network]:
    """Return every IPv4 network of an address or route in the root namespace."""
    found = []
    for line in _ip("-4", "-o", "addr", "show").stdout.splitlines():
        found.append(ipaddress.ip_interface(line.split()[3]).network)
    for line in _ip("-4", "route", "show").stdout.splitlines():
        first = line.split()[0]
        if first != "default":
            found.append(ipaddress.ip_network(first, strict=False))
    return found


def _free_slash30() -> ipaddress.IPv4Network:
    """Return a /30 in SUPERNET that overlaps nothing in the root namespace (per-pid start: parallel runs differ)."""
    used = _used_networks()
    subnets = list(SUPERNET.subnets(new_prefix=30))
    start = (os.getpid() * 97) % len(subnets)
    for candidate in subnets[start:] + subnets[:start]:
        if not any(candidate.overlaps(net) for net in used):
            return candidate
    raise RuntimeError(f"no free /30 left in {SUPERNET}")


class Namespace:
    """One namespace with lo up and a veth pair: host side .1 in the root namespace, .2 inside."""

    def __init__(self, tag: str = "a"):
        suffix = f"{os.getpid() % 100000}{tag}"
        self.name = f"easybackup-test-{suffix}"
        self.host_if = f"ebh{suffix}"[:15]
        self.ns_if = f"ebn{suffix}"[:15]
        self.network = _free_slash30()
        hosts = list(self.network.hosts())
        self.host_address, self.address = str(hosts[0]), str(hosts[1])
        self._procs: list[subprocess.Popen] = []

    def create(self) -> Namespace:
        try:
            _ip("netns", "add", self.name)
            _ip("link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if)
            _ip("link", "set", self.ns_if, "netns", self.name)
            _ip("addr", "add", f"{self.host_address}/30", "dev", self.host_if)
            _ip("link", "set", self.host_if, "up")
            self.run(["ip", "addr", "add", f"{self.address}/30", "dev", self.ns_if])
            self.run(["ip", "link", "set", self.ns_if, "up"])
            self.run(["ip", "link", "set", "lo", "up"])
        except BaseException:
            self.destroy()
            raise
        return self

    def argv(self, argv: list[str]) -> list[str]:
        """Given a command, return the argv that runs it inside this namespace."""
        return ["ip", "netns", "exec", self.name, *argv]

    def run(self, argv: list[str], check: bool = True, **kwargs) -> subprocess.CompletedProcess:
        """Run `argv` inside the namespace; raise CalledProcessError (with its output) if it fails and `check`."""
        kwargs.setdefault("capture_output", True)
        kwargs.setdefault("text", True)
        return subprocess.run(self.argv(argv), check=check, **kwargs)

    def popen(self, argv: list[str], **kwargs) -> subprocess.Popen:
        """Start `argv` inside the namespace; it is killed when the namespace is destroyed."""
        proc = subprocess.Popen(self.argv(argv), **kwargs)
        self._procs.append(proc)
        return proc

    def pids(self) -> list[int]:
        """Return the pids of every process inside the namespace."""
        done = _ip("netns", "pids", self.name, check=False)
        return [int(pid) for pid in done.stdout.split()] if done.returncode == 0 else []

    def throttle(self, rate: str) -> None:
        """Limit what leaves the namespace through the veth to `rate` (tc syntax: "8mbit")."""
        self.run(["tc", "qdisc", "replace", "dev", self.ns_if, "root", "tbf", "rate", rate, "burst", "32kbit",
                  "latency", "400ms"])

    def unthrottle(self) -> None:
        self.run(["tc", "qdisc", "del", "dev", self.ns_if, "root"], check=False)

    def host_rx_bytes(self) -> int:
        """Return the bytes the root namespace has received from this namespace so far."""
        return int(Path(f"/sys/class/net/{self.host_if}/statistics/rx_bytes").read_text())

    def destroy(self) -> None:
        """Kill every process inside, remove the veth pair and the namespace (idempotent)."""
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for proc in self._procs:
            proc.kill()
            proc.wait()
        deadline = time.monotonic() + 10
        while self.pids() and time.monotonic() < deadline:
            time.sleep(0.05)
        # Deleting the host end removes its peer at once; `netns del` alone frees the pair only later.
        _ip("link", "del", self.host_if, check=False)
        _ip("netns", "del", self.name, check=False)

    def exists(self) -> bool:
        return self.name in _ip("netns", "list").stdout.split()


@contextlib.contextmanager
def network_namespace(tag: str = "a") -> Iterator[Namespace]:
    """Yield a fresh namespace; always destroy it (and everything running in it) afterwards."""
    ns = Namespace(tag)
    ns.create()
    try:
        yield ns
    finally:
        ns.destroy()
        if ns.exists():
            raise RuntimeError(f"network namespace {ns.name} is still there after the test")


class NamespacedPostgres(PostgresCluster):
    """A PostgresCluster that runs inside `ns` and listens only on the namespace's own 127.0.0.1.

    From the root namespace it is unreachable (its port there has no listener); psql helpers run inside the
    namespace. The port is free in the root namespace too, so a direct attempt finds nothing at all.
    """

    def __init__(self, ns: Namespace):
        super().__init__()
        self.ns = ns

    def _cmd(self, argv: list[str]) -> subprocess.CompletedProcess:
        as_user = ["runuser", "-u", self.user, "--"] if self._run_as else []
        return subprocess.run(self.ns.argv([*as_user, *argv]), check=True, capture_output=True, text=True,
                              cwd=self.root)

    def client_argv(self, argv: list[str]) -> list[str]:
        """psql runs inside the namespace: only there does the cluster listen."""
        return self.ns.argv(argv)
