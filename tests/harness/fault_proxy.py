"""A fault-injecting proxy for the tests, on threads in the test process.

In front of PostgreSQL (mode "tcp") or moto's S3 server (mode "http") it forwards every byte and, on command,
cuts, stalls, throttles, answers S3-style 5xx errors or corrupts a download — real network failures, while the
server behind it keeps its state (killing moto would wipe its memory and prove nothing).
"""

from __future__ import annotations

import select
import socket
import struct
import threading
import time
import uuid
from dataclasses import dataclass
from email.utils import formatdate
from http import HTTPStatus
from xml.sax.saxutils import escape

CHUNK = 64 * 1024
MAX_HEAD = 64 * 1024
LINGER_SECONDS = 2.0
S3_ERRORS = {
    400: ("BadRequest", "Bad Request"),
    403: ("AccessDenied", "Access Denied"),
    404: ("NoSuchKey", "The specified key does not exist."),
    500: ("InternalError", "We encountered an internal error. Please try again."),
    501: ("NotImplemented", "A header you provided implies functionality that is not implemented."),
    503: ("SlowDown", "Please reduce your request rate."),
}


class _Closed(Exception):
    """The link was cut, or a peer went away mid-message: stop serving it."""


@dataclass
class ProxiedRequest:
    """One HTTP request seen by the proxy: `status` is what the client got (None: nothing), `forwarded` whether
    it reached the server. Header names are lower-case."""

    method: str
    path: str
    headers: dict[str, str]
    time: float
    status: int | None = None
    forwarded: bool = False


@dataclass
class _FailRule:
    status: int
    remaining: int | None
    methods: frozenset[str] | None
    retry_after: int | None


class _Link:
    """One client connection and its upstream connection."""

    def __init__(self, client: socket.socket):
        self.client = client
        self.upstream: socket.socket | None = None
        self.upstream_reader: _Reader | None = None
        self.closed = False
        self.killed = False
        self._lock = threading.Lock()

    def replace_upstream(self, sock: socket.socket) -> None:
        """Use `sock` as the upstream connection from now on; raise _Closed if the link was killed meanwhile."""
        with self._lock:
            old, dead = self.upstream, self.closed
            if not dead:
                self.upstream, self.upstream_reader = sock, _Reader(sock)
        if dead:
            sock.close()
            raise _Closed
        if old is not None:
            old.close()

    def kill(self) -> None:
        """Abort both connections with a reset and wake every thread blocked on them."""
        with self._lock:
            if self.closed:
                return
            self.closed = self.killed = True
            socks = [sock for sock in (self.client, self.upstream) if sock is not None]
        for sock in socks:
            _reset(sock)

    def close(self) -> None:
        """Close both connections (gracefully unless the link was killed: unsent bytes would be dropped)."""
        with self._lock:
            self.closed = True
        for sock in (self.client, self.upstream):
            if sock is not None:
                sock.close()


class _Reader:
    """Buffered reads from a socket, for parsing HTTP messages."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.buffer = bytearray()

    def _fill(self) -> bool:
        data = self.sock.recv(CHUNK)
        self.buffer += data
        return bool(data)

    def _take(self, size: int) -> bytes:
        data = bytes(self.buffer[:size])
        del self.buffer[:size]
        return data

    def read_head(self) -> bytes | None:
        """Return the next message head (through the blank line), None at a clean EOF; raise _Closed if the
        stream ends inside a head or the head is absurdly long."""
        while (end := self.buffer.find(b"\r\n\r\n")) < 0:
            if len(self.buffer) > MAX_HEAD:
                raise _Closed
            if not self._fill():
                if self.buffer:
                    raise _Closed
                return None
        return self._take(end + 4)

    def readline(self) -> bytes:
        """Return the next line with its line end; raise _Closed at EOF."""
        while (end := self.buffer.find(b"\n")) < 0:
            if len(self.buffer) > MAX_HEAD or not self._fill():
                raise _Closed
        return self._take(end + 1)

    def read_some(self, limit: int) -> bytes:
        """Return between 1 and `limit` bytes, b"" at EOF."""
        if not self.buffer and not self._fill():
            return b""
        return self._take(min(limit, len(self.buffer)))


class FaultProxy:
    """A TCP (or HTTP/1.1) proxy from a free loopback port to `target_host:target_port` that injects faults.

    Byte faults (both modes): cut(), cut_after(n_bytes, direction), stall(), throttle(bytes_per_second).
    HTTP faults (mode "http"): fail_http(...), corrupt_next_get(offset), stall_after_requests(n),
    refuse_deletes(access_key_id).
    heal() clears every fault. Counters: bytes_up (to the server), bytes_down (to the client), connections
    (accepted), requests (ProxiedRequest, mode "http").
    """

    def __init__(self, target_host: str, target_port: int, mode: str = "tcp", host: str = "127.0.0.1"):
        if mode not in ("tcp", "http"):
            raise ValueError(f"mode must be 'tcp' or 'http', not {mode!r}")
        self.target = (target_host, int(target_port))
        self.mode = mode
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((host, 0))
        self._listener.listen(64)
        self._listener.settimeout(0.1)  # the accept loop wakes up to notice stop()
        self.host, self.port = self._listener.getsockname()[:2]
        self.url = f"http://{self.host}:{self.port}" if mode == "http" else None
        self._cond = threading.Condition()
        self._stop_event = threading.Event()
        self._links: set[_Link] = set()
        self._threads: list[threading.Thread] = []
        self._acceptor: threading.Thread | None = None
        self.bytes_up = self.bytes_down = self.connections = 0
        self.requests: list[ProxiedRequest] = []
        self.deletes_refused = 0
        self._clear_faults()

    # -- life cycle -------------------------------------------------------------------------------------------

    def start(self) -> FaultProxy:
        self._acceptor = self._spawn(self._accept_loop)
        return self

    def stop(self) -> None:
        """Close every connection and the listener, and join every thread; raise RuntimeError if one hangs."""
        with self._cond:
            self._stop_event.set()
            self._cond.notify_all()
        if self._acceptor is not None:
            self._acceptor.join(10)  # first, so that no new link or thread appears behind our back
        self._listener.close()
        with self._cond:
            links = list(self._links)
        for link in links:
            link.kill()
        for thread in list(self._threads):
            thread.join(10)
        hanging = [thread.name for thread in self._threads if thread.is_alive()]
        if hanging:
            raise RuntimeError(f"fault proxy threads did not stop: {hanging}")

    @property
    def open_connections(self) -> int:
        """The number of client connections being served right now."""
        with self._cond:
            return len(self._links)

    # -- byte faults ------------------------------------------------------------------------------------------

    def cut(self) -> None:
        """Reset every open connection now and refuse (reset) new ones until heal()."""
        with self._cond:
            self._refusing = True
            links = list(self._links)
            self._cond.notify_all()
        for link in links:
            link.kill()

    def cut_after(self, n_bytes: int, direction: str = "up", refuse: bool = False) -> None:
        """Forward `n_bytes` more in `direction` ("up": to the server, "down": to the client), counted over all
        connections, then reset the connection that carried the last of them — once: a client's retry on a new
        connection works. With `refuse`, it is then cut() instead: every connection reset, new ones refused."""
        if direction not in ("up", "down"):
            raise ValueError(f"direction must be 'up' or 'down', not {direction!r}")
        with self._cond:
            self._cut_after[direction] = int(n_bytes)
            self._refuse_after_cut = refuse

    def stall(self) -> None:
        """Keep accepting and reading, but forward nothing until heal()."""
        with self._cond:
            self._stalled = True

    def throttle(self, bytes_per_second: int | None) -> None:
        """Limit each direction of each connection to `bytes_per_second` (None or 0: no limit)."""
        with self._cond:
            self._throttle = int(bytes_per_second) if bytes_per_second else None

    def heal(self) -> None:
        """Clear every fault: forward normally again."""
        with self._cond:
            self._clear_faults()
            self._cond.notify_all()

    def heal_later(self, *, after_bytes_up: int, delay: float) -> threading.Thread:
        """Heal `delay` seconds after `after_bytes_up` bytes went up through the proxy (an outage that ends: the
        abort of the cut upload, or the next attempt, then gets through); return the started daemon thread."""
        def heal_after_the_cut() -> None:
            while self.bytes_up < after_bytes_up:
                time.sleep(0.05)
            time.sleep(delay)
            self.heal()

        thread = threading.Thread(target=heal_after_the_cut, name="fault-proxy-heal", daemon=True)
        thread.start()
        return thread

    def _clear_faults(self) -> None:
        self._refusing = self._stalled = self._refuse_after_cut = False
        self._throttle: int | None = None
        self._cut_after: dict[str, int] = {}
        self._fail: _FailRule | None = None
        self._corrupt_at: int | None = None
        self._requests_before_stall: int | None = None
        self._refuse_deletes_by: str | None = None

    # -- HTTP faults ------------------------------------------------------------------------------------------

    def fail_http(self, status: int, count: int | None = None, methods=None, retry_after: int | None = None) -> None:
        """Answer the next `count` requests (all until heal() when None) whose method is in `methods` (all when
        None) with `status` and an S3-style XML error, without forwarding them."""
        self._require_http("fail_http")
        wanted = frozenset(m.upper() for m in methods) if methods else None
        with self._cond:
            self._fail = _FailRule(int(status), count, wanted, retry_after)

    def corrupt_next_get(self, offset: int) -> None:
        """Flip the body byte at `offset` of the next successful GET response whose body reaches that far."""
        self._require_http("corrupt_next_get")
        with self._cond:
            self._corrupt_at = int(offset)

    def stall_after_requests(self, n: int) -> None:
        """Let `n` more requests through, then hold every further request (unanswered) until heal()."""
        self._require_http("stall_after_requests")
        with self._cond:
            self._requests_before_stall = int(n)

    def refuse_deletes(self, access_key_id: str | None) -> None:
        """Answer 403 AccessDenied, unforwarded, to every delete signed with `access_key_id` (DeleteObject and
        DeleteObjects; not AbortMultipartUpload, which IAM grants apart), as S3 does for a key whose policy lacks
        s3:DeleteObject; None: stop. `deletes_refused` counts them."""
        self._require_http("refuse_deletes")
        with self._cond:
            self._refuse_deletes_by = access_key_id

    def _refuses(self, record: ProxiedRequest) -> bool:
        """Whether `record` is a delete signed with the key refuse_deletes() names (counted if so)."""
        query = record.path.partition("?")[2].split("&")
        is_delete = (record.method == "DELETE" and not any(item.startswith("uploadId=") for item in query)) or (
            record.method == "POST" and any(item in ("delete", "delete=") for item in query))
        signer = record.headers.get("authorization", "").partition("Credential=")[2].partition("/")[0]
        with self._cond:
            refused = is_delete and self._refuse_deletes_by is not None and signer == self._refuse_deletes_by
            self.deletes_refused += refused
        return refused

    def _require_http(self, fault: str) -> None:
        # A fault a TCP proxy cannot inject must fail the test, not be silently ignored.
        if self.mode != "http":
            raise ValueError(f"{fault}() needs a proxy in mode 'http', this one is in mode {self.mode!r}")

    # -- serving ----------------------------------------------------------------------------------------------

    def _spawn(self, target, *args) -> threading.Thread:
        thread = threading.Thread(target=target, args=args, name=f"fault-proxy-{self.port}-{target.__name__}",
                                  daemon=True)
        with self._cond:
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)
        thread.start()
        return thread

    def _accept_loop(self) -> None:
        while not self._stop_event.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            client.settimeout(None)
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._cond:
                refused = self._refusing or self._stop_event.is_set()
                if not refused:
                    self.connections += 1
                    link = _Link(client)
                    self._links.add(link)
            if refused:
                _reset(client)
                client.close()
            else:
                self._spawn(self._serve, link)

    def _serve(self, link: _Link) -> None:
        try:
            if self.mode == "tcp":
                self._serve_tcp(link)
            else:
                self._serve_http(link)
        except _Closed:
            pass  # cut on purpose, or a peer left mid-message: the link ends either way
        except OSError:
            link.kill()  # a peer reset its side: pass the failure on to the other side
        finally:
            link.close()
            with self._cond:
                self._links.discard(link)

    def _connect(self) -> socket.socket:
        sock = socket.create_connection(self.target, timeout=10)
        sock.settimeout(None)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def _serve_tcp(self, link: _Link) -> None:
        link.replace_upstream(self._connect())
        down = self._spawn(self._pump, link, "down")
        self._pump(link, "up")
        down.join()

    def _pump(self, link: _Link, direction: str) -> None:
        source, target = (link.client, link.upstream) if direction == "up" else (link.upstream, link.client)
        try:
            while data := source.recv(CHUNK):
                self._deliver(link, direction, data)
            target.shutdown(socket.SHUT_WR)  # pass the EOF on; the other direction may still be talking
        except (_Closed, OSError):
            link.kill()

    def _deliver(self, link: _Link, direction: str, data: bytes) -> None:
        """Given bytes read from one side of `link`, send them to the other side under the current byte faults;
        raise _Closed if the link is (or gets) cut."""
        sock = link.upstream if direction == "up" else link.client
        view = memoryview(data)
        while len(view):
            size, cut, refuse, rate = self._admit(link, direction, len(view))
            if size:
                sock.sendall(view[:size])
                with self._cond:
                    if direction == "up":
                        self.bytes_up += size
                    else:
                        self.bytes_down += size
            if cut and refuse:
                self.cut()
            if cut:
                link.kill()
                raise _Closed
            if rate:
                self._stop_event.wait(size / rate)
            view = view[size:]

    def _admit(self, link: _Link, direction: str, wanted: int) -> tuple[int, bool, bool, int | None]:
        """Wait while stalled; return (bytes to send now, whether to cut after them, whether that cut refuses
        new connections too, the throttle rate)."""
        with self._cond:
            while self._stalled and not link.closed and not self._stop_event.is_set():
                self._cond.wait(0.1)
            if link.closed or self._stop_event.is_set():
                raise _Closed
            size = min(wanted, CHUNK)
            if self._throttle:
                size = min(size, max(1, self._throttle // 20))  # small slices keep the rate smooth
            budget = self._cut_after.get(direction)
            if budget is None:
                return size, False, False, self._throttle
            size = min(size, budget)
            if budget - size > 0:
                self._cut_after[direction] = budget - size
                return size, False, False, self._throttle
            del self._cut_after[direction]
            return size, True, self._refuse_after_cut, self._throttle

    # -- HTTP mode --------------------------------------------------------------------------------------------

    def _serve_http(self, link: _Link) -> None:
        client = _Reader(link.client)
        while (head := client.read_head()) is not None:
            start_line, headers = _parse_head(head)
            method, path, version = (start_line.split(" ", 2) + ["", ""])[:3]
            record = ProxiedRequest(method, path, _header_dict(headers), time.time())
            with self._cond:
                self.requests.append(record)
            rule = self._admit_request(link, method)
            if rule is None and self._refuses(record):
                rule = _FailRule(403, None, None, None)
            framing = _request_framing(headers)
            expects = record.headers.get("expect", "").lower() == "100-continue"
            if rule is not None:
                if not self._answer_failure(link, client, record, rule, framing, expects):
                    return
                continue
            if expects:
                # Answer the expectation here (as nginx does) and forward the request without it: the decision
                # to fail was taken above, before the body, exactly when S3 would take it.
                self._deliver(link, "down", b"HTTP/1.1 100 Continue\r\n\r\n")
            upstream = self._upstream(link)
            kept = [(name, value) for name, value in headers if name.lower() != "expect"]
            self._deliver(link, "up", _serialize(start_line, kept))
            _copy_body(client, framing, lambda data: self._deliver(link, "up", data))
            record.forwarded = True
            if not self._relay_response(link, upstream, record) or _wants_close(record.headers, version):
                return

    def _admit_request(self, link: _Link, method: str) -> _FailRule | None:
        """Hold the request while stall_after_requests() says so; return the fail rule it matches, if any."""
        with self._cond:
            while self._requests_before_stall == 0:
                if link.closed or self._stop_event.is_set():
                    raise _Closed
                self._cond.wait(0.1)
            if self._requests_before_stall is not None:
                self._requests_before_stall -= 1
            rule = self._fail
            if rule is None or (rule.methods is not None and method.upper() not in rule.methods):
                return None
            if rule.remaining is not None:
                rule.remaining -= 1
                if rule.remaining <= 0:
                    self._fail = None
            return rule

    def _answer_failure(self, link, client: _Reader, record: ProxiedRequest, rule: _FailRule, framing,
                        expects: bool) -> bool:
        """Answer `record` with the rule's error without forwarding it; return whether the connection stays open."""
        if not expects:
            _copy_body(client, framing, lambda data: None)  # it is coming anyway; read it to keep the connection
        record.status = rule.status
        self._deliver(link, "down", _s3_error(rule.status, record.method, record.path, rule.retry_after, expects))
        if expects:
            # The client may have sent its body with the head (botocore does for small bodies). Read it off
            # before closing, or the kernel answers the unread bytes with a reset that can overtake our answer.
            _linger(link.client, client.buffer)
        return not expects

    def _upstream(self, link: _Link) -> _Reader:
        """Return a reader on a usable upstream connection, reconnecting if the server closed the idle one."""
        if link.upstream_reader is None or link.upstream_reader.buffer or _readable(link.upstream):
            link.replace_upstream(self._connect())
        return link.upstream_reader

    def _relay_response(self, link: _Link, upstream: _Reader, record: ProxiedRequest) -> bool:
        """Pass the server's answer to the client; return whether the connection may be reused."""
        while True:
            head = upstream.read_head()
            if head is None:
                raise _Closed
            start_line, headers = _parse_head(head)
            version, status = (start_line.split(" ", 2) + [""])[:2]
            record.status = int(status)  # before the client can see it, so a test never reads a stale record
            self._deliver(link, "down", head)
            if not (100 <= record.status < 200):
                break  # interim answers (100 Continue) are passed on; the final one follows them
        framing = _response_framing(record.method, record.status, headers)
        corrupt_at = self._take_corruption(record)
        flipped = _copy_body(upstream, framing, lambda data: self._deliver(link, "down", data), corrupt_at)
        if corrupt_at is not None and not flipped:
            with self._cond:  # the body was too short: leave the fault for the next GET
                if self._corrupt_at is None:
                    self._corrupt_at = corrupt_at
        return framing[0] != "close" and not _wants_close(_header_dict(headers), version)

    def _take_corruption(self, record: ProxiedRequest) -> int | None:
        with self._cond:
            if record.method != "GET" or not 200 <= (record.status or 0) < 300 or self._corrupt_at is None:
                return None
            offset, self._corrupt_at = self._corrupt_at, None
            return offset


# -- HTTP/1.1 message helpers ---------------------------------------------------------------------------------

def _parse_head(head: bytes) -> tuple[str, list[tuple[str, str]]]:
    """Given a message head, return its start line and its header fields in order."""
    lines = head.decode("latin-1").split("\r\n")
    fields = []
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            fields.append((name.strip(), value.strip()))
    return lines[0], fields


def _serialize(start_line: str, headers: list[tuple[str, str]]) -> bytes:
    return "".join([start_line + "\r\n", *(f"{name}: {value}\r\n" for name, value in headers), "\r\n"]).encode(
        "latin-1")


def _header_dict(headers: list[tuple[str, str]]) -> dict[str, str]:
    result: dict[str, str] = {}
    for name, value in headers:
        key = name.lower()
        result[key] = f"{result[key]}, {value}" if key in result else value
    return result


def _request_framing(headers: list[tuple[str, str]]) -> tuple[str, int]:
    fields = _header_dict(headers)
    if "chunked" in fields.get("transfer-encoding", "").lower():
        return "chunked", 0
    return "length", int(fields.get("content-length") or 0)


def _response_framing(method: str, status: int, headers: list[tuple[str, str]]) -> tuple[str, int]:
    fields = _header_dict(headers)
    if method == "HEAD" or 100 <= status < 200 or status in (204, 304):
        return "length", 0
    if "chunked" in fields.get("transfer-encoding", "").lower():
        return "chunked", 0
    if "content-length" in fields:
        return "length", int(fields["content-length"])
    return "close", 0


def _wants_close(headers: dict[str, str], version: str) -> bool:
    connection = headers.get("connection", "").lower()
    return "close" in connection or (version == "HTTP/1.0" and "keep-alive" not in connection)


def _copy_body(reader: _Reader, framing: tuple[str, int], sink, corrupt_at: int | None = None) -> bool:
    """Given a reader at the start of a body and its framing, pass the body (chunk framing included) to `sink`,
    flipping the payload byte at `corrupt_at`; return whether it was flipped; raise _Closed at an early EOF."""
    kind, length = framing
    position = 0
    flipped = False

    def payload(size: int | None) -> None:
        nonlocal position, flipped
        while size is None or size > 0:
            data = reader.read_some(CHUNK if size is None else min(size, CHUNK))
            if not data:
                if size is None:
                    return
                raise _Closed
            if corrupt_at is not None and position <= corrupt_at < position + len(data):
                data = bytearray(data)
                data[corrupt_at - position] ^= 0xFF
                flipped = True
            position += len(data)
            size = None if size is None else size - len(data)
            sink(bytes(data))

    if kind == "length":
        payload(length)
    elif kind == "close":
        payload(None)
    else:
        while True:
            line = reader.readline()
            sink(line)
            size = int(line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                break
            payload(size)
            sink(reader.readline())  # the CRLF after the chunk
        while True:  # trailer fields, then the blank line
            line = reader.readline()
            sink(line)
            if line in (b"\r\n", b"\n"):
                break
    return flipped


def _s3_error(status: int, method: str, resource: str, retry_after: int | None, close: bool) -> bytes:
    """Return a whole HTTP response carrying S3's XML error for `status` (no body for HEAD, as S3 does)."""
    phrase = HTTPStatus(status).phrase
    code, message = S3_ERRORS.get(status, (phrase.replace(" ", ""), phrase))
    request_id = uuid.uuid4().hex[:16].upper()
    body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}</Message>'
            f"<Resource>{escape(resource)}</Resource><RequestId>{request_id}</RequestId></Error>").encode()
    lines = [f"HTTP/1.1 {status} {phrase}", "Content-Type: application/xml", f"Content-Length: {len(body)}",
             f"x-amz-request-id: {request_id}", f"Date: {formatdate(usegmt=True)}", "Server: AmazonS3",
             "Connection: close" if close else "Connection: keep-alive"]
    if retry_after is not None:
        lines.append(f"Retry-After: {retry_after}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + (b"" if method == "HEAD" else body)


# -- sockets --------------------------------------------------------------------------------------------------

def _readable(sock: socket.socket) -> bool:
    """Return whether `sock` has something to read now: on an idle keep-alive connection that means it closed."""
    readable, _, _ = select.select([sock], [], [], 0)
    return bool(readable)


def _linger(sock: socket.socket, buffered: bytearray) -> None:
    """Half-close `sock` and read (and drop) what the client still sends, until it closes or LINGER_SECONDS."""
    buffered.clear()
    try:
        sock.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + LINGER_SECONDS
        while (left := deadline - time.monotonic()) > 0:
            if select.select([sock], [], [], min(left, 0.1))[0] and not sock.recv(CHUNK):
                return
    except OSError:
        return  # the client reset or closed first: nothing left to drain


def _reset(sock: socket.socket) -> None:
    """Make `sock` end with a TCP reset when closed, and wake every thread blocked on it."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already shut down, or reset by its peer: nothing left to wake
