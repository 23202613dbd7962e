"""An SSH tunnel owned by the worker: `ssh -N -L 127.0.0.1:<port>:<db host>:<db port>` through a bastion.

    tunnel = SshTunnel(settings, "db.internal", 5432, private_dir, on_line)
    port = tunnel.start(cancel=cancel)      # waits (bounded) until the forward accepts connections
    ...                                    # pg_dump connects to 127.0.0.1:port
    problem = tunnel.failure()             # what ssh said went wrong, if anything
    tunnel.stop()                          # always: SIGTERM, grace, SIGKILL, reap

OpenSSH runs as an ordinary stage of a `Pipeline` (argv list, `base_env()`, stderr drained on a thread, every
line logged). Its options live in a private ssh_config passed with `-F`: ProxyJump (`-J`) hands `-F` on to the
ssh it starts for each hop but not `-o` options, so this is the one way the known_hosts file, the identity and
BatchMode apply to every jump host as well as to the bastion. `-F` also keeps the service user's own
~/.ssh/config and /etc/ssh/ssh_config out of it: the tunnel behaves the same on every machine.
"""

from __future__ import annotations

import collections
import os
import re
import socket
import tempfile
import threading
import time
from pathlib import Path

from easybackup.config.model import TunnelSettings
from easybackup.error_rules import ErrorRule, first_match, rule
from easybackup.errors import EasybackupError
from easybackup.pipeline.stages import LineCallback, Pipeline, StageSpec, base_env

STAGE = "ssh"
READY_TIMEOUT_S = 15.0
CONNECT_TIMEOUT_S = 10  # per hop; ssh would wait for the kernel's TCP timeout (minutes) otherwise
PROBE_SETTLE_S = 0.3  # how long a probe connection is watched for ssh closing it (the bastion refused the target)
EXIT_SETTLE_S = 0.5  # after pg_dump failed: how long to let a dying ssh finish saying why
STOP_GRACE_S = 2.0
_KEPT_LINES = 100


# In priority order: a changed key also prints "Host key verification failed", and a refused forward also
# prints "Connection refused".
_RULES = (
    rule(r"REMOTE HOST IDENTIFICATION HAS CHANGED|Host key for \S+ has changed", "authentication", False,
         "if the key was rotated on purpose, replace its line in {known_hosts}; otherwise this may be an attack",
         "ssh tunnel: host key of {hop} changed"),
    rule(r"Host key verification failed|No \S+ host key is known for", "authentication", False,
         "add the host's key to {known_hosts} (ssh-keyscan, then check the fingerprint out of band)",
         "ssh tunnel: host key of {hop} is unknown (not in {known_hosts})"),
    rule(r"UNPROTECTED PRIVATE KEY FILE|bad permissions", "authentication", False,
         "chmod 600 {identity} (owned by the user easybackup runs as)",
         "ssh tunnel: ssh refuses the identity file {identity}: other users can read it"),
    rule(r"no such identity|Load key .*No such file", "authentication", False,
         "check tunnel.identity_file: the path as the worker's machine sees it",
         "ssh tunnel: identity file {identity} not found"),
    rule(r"Permission denied \(publickey|Too many authentication failures", "authentication", False,
         "add the public half of {identity} to ~{user}/.ssh/authorized_keys on that host",
         "ssh tunnel: {hop} refused the key {identity}"),
    rule(r"stdio forwarding failed", "connection", True,
         "check jump_hosts and that each jump host can reach the next one (and the bastion)",
         "ssh tunnel: a jump host could not reach the next hop"),
    rule(r"administratively prohibited|open failed|connect failed", "connection", True,
         "check that the bastion reaches the database at {target} (the URL's host and port as the bastion sees "
         "them), and that its sshd allows forwarding (AllowTcpForwarding, PermitOpen)",
         "ssh tunnel: bastion {bastion} could not open a connection to {target}"),
    rule(r"Connection refused|timed out|No route to host|Network is unreachable"
         r"|Could not resolve hostname|Name or service not known", "connection", True,
         "check that {hop} accepts SSH connections from this machine (host, port, firewall)",
         "ssh tunnel: {hop} is unreachable"),
    rule(r"closed by|Connection reset|Broken pipe|not responding", "connection", True,
         "check the bastion's health and the network between this machine and it; the next attempt reconnects",
         "ssh tunnel: the connection to {hop} was lost"),
)
_HOP_PATTERNS = (
    re.compile(r"host key is known for (\[[^\]]+\]:\d+|[^\s\]]+?)(?: and|\.?$)"),
    re.compile(r"Host key for (\S+) has changed"),
    re.compile(r"^(?:\S+@)?(\S+?): Permission denied"),
    re.compile(r"connect to host (\S+) port (\d+)"),
    re.compile(r"(?:Connection to|closed by|Connection closed by) (\S+) port (\d+)"),
    re.compile(r"Could not resolve hostname (\S+?):"),
)


def ssh_config_text(tunnel: TunnelSettings) -> str:
    """Given the tunnel settings, return the private ssh_config that applies to the bastion and every jump host."""
    lines = ["Host *", "  BatchMode yes", "  StrictHostKeyChecking yes", "  IdentitiesOnly yes",
             "  ExitOnForwardFailure yes", "  ServerAliveInterval 15", "  ServerAliveCountMax 3",
             f"  ConnectTimeout {CONNECT_TIMEOUT_S}", "  ControlMaster no", "  ControlPath none",
             "  ForwardAgent no", "  ClearAllForwardings no", "  PermitLocalCommand no", "  UpdateHostKeys no"]
    if tunnel.known_hosts_file:
        # Only this file: a key in the machine-wide file must not make a bastion trusted behind the operator's back.
        lines += [f"  UserKnownHostsFile {_quoted(tunnel.known_hosts_file)}", "  GlobalKnownHostsFile /dev/null"]
    if tunnel.user:
        lines.append(f"  User {tunnel.user}")  # jump hosts without their own user@ log in as this user too
    if tunnel.identity_file:
        lines.append(f"  IdentityFile {_quoted(tunnel.identity_file)}")
    return "\n".join(lines) + "\n"


def _quoted(path: str) -> str:
    if '"' in path or "\n" in path:
        raise EasybackupError(f"ssh tunnel: unusable path {path!r}", hint="use a path without quotes or newlines",
                              kind="config")
    return f'"{path}"'


def ssh_argv(tunnel: TunnelSettings, config_file: Path, local_port: int, dest_host: str, dest_port: int) -> list[str]:
    """Given the tunnel settings, the private ssh_config and both ends of the forward, return ssh's argv."""
    dest = f"[{dest_host}]" if ":" in dest_host else dest_host
    argv = ["ssh", "-F", str(config_file), "-N", "-L", f"127.0.0.1:{local_port}:{dest}:{dest_port}",
            "-p", str(tunnel.port)]
    if tunnel.jump_hosts:
        argv += ["-J", ",".join(tunnel.jump_hosts)]
    if tunnel.user:
        argv += ["-l", tunnel.user]
    return argv + ["--", tunnel.host]  # "--": a host can never be read as an option


def describe_tunnel(tunnel: TunnelSettings) -> str:
    """Given the tunnel settings, return "ssh tunnel user@host:port (jump: j1, j2)" — no secrets in it."""
    user = f"{tunnel.user}@" if tunnel.user else ""
    text = f"ssh tunnel {user}{tunnel.host}:{tunnel.port}"
    return text + (f" (jump: {', '.join(tunnel.jump_hosts)})" if tunnel.jump_hosts else "")


class SshTunnel:
    """One ssh child that forwards a free port on 127.0.0.1 to the database, as the bastion sees it."""

    def __init__(self, tunnel: TunnelSettings, dest_host: str, dest_port: int, private_dir: Path,
                 on_line: LineCallback | None = None):
        self.tunnel = tunnel
        self.dest_host = dest_host
        self.dest_port = dest_port
        self.private_dir = Path(private_dir)
        self.on_line = on_line
        self.local_port: int | None = None
        self.lines: collections.deque[str] = collections.deque(maxlen=_KEPT_LINES)
        self._lock = threading.Lock()
        self._pipeline: Pipeline | None = None
        self._exited_by_itself: int | None = None  # ssh's returncode when it ended before we stopped it
        self._config_file: Path | None = None
        self._timeout = READY_TIMEOUT_S

    # -- starting ------------------------------------------------------------------------------------------

    def start(self, timeout: float = READY_TIMEOUT_S, cancel: threading.Event | None = None) -> int:
        """Start ssh and wait until the forward accepts connections; return the local port.

        Raise EasybackupError (classified from ssh's stderr) if ssh exits, the forward is refused, `timeout`
        passes or `cancel` is set first; ssh is stopped then.
        """
        self._timeout = timeout
        fd, name = tempfile.mkstemp(prefix="ssh_config-", dir=self.private_dir)  # 0600, never shared
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(ssh_config_text(self.tunnel))
        self._config_file = Path(name)
        self.local_port = _free_local_port()
        argv = ssh_argv(self.tunnel, self._config_file, self.local_port, self.dest_host, self.dest_port)
        self._pipeline = Pipeline([StageSpec(STAGE, argv, env=base_env(), failure_kind="connection")],
                                  on_line=self._record)
        try:
            self._pipeline.start()
            self._wait_ready(time.monotonic() + timeout, cancel)
        except BaseException:
            self.stop()
            raise
        return self.local_port

    def _wait_ready(self, deadline: float, cancel: threading.Event | None) -> None:
        while True:
            if self._returncode() is not None:
                self._settle()
                raise self.failure() or self._ended_error()
            if cancel is not None and cancel.is_set():
                raise EasybackupError("cancelled", "stopped while the ssh tunnel was being opened", kind="cancelled")
            if self._probe():
                return
            if time.monotonic() > deadline:
                raise EasybackupError(
                    f"ssh tunnel: {self._bastion()} did not open the forward within {self._timeout:g}s",
                    detail=_last(self.lines), hint="check that the bastion and every jump host answer SSH quickly",
                    kind="timeout", transient=True, last_lines=list(self.lines))
            time.sleep(0.1)

    def _probe(self) -> bool:
        """Return True when the forward accepts a connection that ssh does not close at once.

        ssh accepts locally before asking the bastion for the target; a refused target shows as a close within
        moments, with "open failed" on ssh's stderr, which is raised here as the precise error.
        """
        try:
            probe = socket.create_connection(("127.0.0.1", self.local_port), timeout=0.5)
        except OSError:
            return False
        with probe:
            probe.settimeout(PROBE_SETTLE_S)
            try:
                closed = probe.recv(1) == b""
            except TimeoutError:
                return True  # open and quiet: PostgreSQL waits for the client to speak first
            except OSError:
                closed = True
        if closed:
            self._settle(wait_for_exit=False)
            error = self.failure()
            if error is not None:
                raise error
        return not closed

    # -- failures ------------------------------------------------------------------------------------------

    def failure(self) -> EasybackupError | None:
        """Return the precise error ssh reported (or its unexpected exit), or None when it reported nothing."""
        with self._lock:
            lines = list(self.lines)
        found = first_match(_RULES, lines)
        if found is not None:
            return self._error(*found, lines)
        if self._exited_by_itself is not None:
            return self._ended_error()
        return None

    def settle_after_failure(self) -> None:
        """After the database connection failed: let ssh finish printing (and exiting) why, briefly."""
        self._settle()

    def _error(self, rule: ErrorRule, line: str, lines: list[str]) -> EasybackupError:
        known_hosts = self.tunnel.known_hosts_file or "~/.ssh/known_hosts"
        identity = self.tunnel.identity_file or "(ssh's default key)"
        fields = {"hop": self._hop(line), "bastion": self.tunnel.host, "target": f"{self.dest_host}:{self.dest_port}",
                  "known_hosts": known_hosts, "identity": identity, "user": self.tunnel.user or ""}
        return EasybackupError(rule.message.format(**fields), detail=line.strip(), hint=rule.hint.format(**fields),
                               kind=rule.kind, transient=rule.transient, exit_codes=self._exit_codes(),
                               last_lines=lines[-25:])

    def _ended_error(self) -> EasybackupError:
        code = self._exited_by_itself
        lines = list(self.lines)
        return EasybackupError(f"ssh tunnel to {self._bastion()} ended: ssh exited with code {code}",
                               detail=_last(lines), hint="read ssh's last lines below", kind="connection",
                               transient=True, exit_codes=self._exit_codes(), last_lines=lines[-25:])

    def _hop(self, line: str) -> str:
        """Given an ssh error line, return "bastion H" or "jump host H" for the host it names."""
        for pattern in _HOP_PATTERNS:
            found = pattern.search(line.strip())
            if found:
                host = found.group(1).strip("[]").split("]:")[0]
                return self._name_host(host)
        return self._bastion()

    def _name_host(self, host: str) -> str:
        if host == self.tunnel.host:
            return self._bastion()
        if any(_jump_host_name(jump) == host for jump in self.tunnel.jump_hosts):
            return f"jump host {host}"
        return f"host {host}"

    def _bastion(self) -> str:
        return f"bastion {self.tunnel.host}"

    # -- stopping ------------------------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop ssh (SIGTERM, grace, SIGKILL), reap it, drain its stderr and remove the private ssh_config."""
        try:
            if self._pipeline is not None:
                self._note_exit()
                self._pipeline.close(STOP_GRACE_S)
        finally:
            if self._config_file is not None:
                self._config_file.unlink(missing_ok=True)

    def pid(self) -> int | None:
        """Return ssh's pid once started."""
        return self._pipeline.pids().get(STAGE) if self._pipeline is not None else None

    def _settle(self, wait_for_exit: bool = True) -> None:
        deadline = time.monotonic() + EXIT_SETTLE_S
        while wait_for_exit and self._returncode() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        self._note_exit()
        if self._returncode() is not None and self._pipeline is not None:
            self._pipeline.close(STOP_GRACE_S)  # reaps ssh and drains the rest of its stderr
        else:
            time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))  # let the reader pass on what is there

    def _note_exit(self) -> None:
        code = self._returncode()
        if code is not None and self._exited_by_itself is None:
            self._exited_by_itself = code

    def _returncode(self) -> int | None:
        return self._pipeline.exit_codes().get(STAGE) if self._pipeline is not None else None

    def _exit_codes(self) -> dict:
        return {STAGE: self._exited_by_itself} if self._exited_by_itself is not None else {}

    def _record(self, stage: str, line: str) -> None:
        with self._lock:
            self.lines.append(line)
        if self.on_line is not None:
            self.on_line(stage, line)


def _jump_host_name(jump: str) -> str:
    host = jump.rsplit("@", 1)[-1]
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.split(":", 1)[0]


def _free_local_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _last(lines) -> str | None:
    return next((line for line in reversed(list(lines)) if line.strip()), None)
