"""An HTTP server in the test process that speaks the parts of Slack's Web API easybackup uses, with Slack's rules.

Methods: auth.test, conversations.info, chat.postMessage, chat.update (POST only, under `/api/`).
Rules: `Authorization: Bearer <token>` (missing -> not_authed, unknown -> invalid_auth); JSON or form bodies;
`channel` must be a configured channel (channel_not_found); `thread_ts` must name a top-level message of that
channel (thread_not_found); chat.update must name an existing message (message_not_found); text or blocks (no_text).
Every call is recorded in `.calls`; faults (429/500, ok:false, slowness, closed connections) are injected on demand.
"""

from __future__ import annotations

import copy
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

DEFAULT_TOKEN = "xoxb-test-token"
DEFAULT_CHANNELS = ("C0123456789", "C9876543210", "CSUCCESS001", "CFAILURE001")
FIRST_TS_MICROS = 1718600000_000100
TS_STEP_MICROS = 100
BOT = {"user": "U0EASYBKP01", "bot_id": "B0EASYBKP01", "team": "T0EASYBKP01"}
METHODS = ("auth.test", "conversations.info", "chat.postMessage", "chat.update")


@dataclass
class SlackCall:
    """One HTTP request to the server: `response` is the JSON answer, None when there was none (5xx, closed)."""

    method: str
    http_method: str
    headers: dict[str, str]
    body: dict
    status: int | None
    response: dict | None
    time: float = field(default_factory=time.time)


@dataclass
class _Answer:
    status: int | None  # None: close the connection without answering
    payload: dict | None = None
    headers: dict[str, str] = field(default_factory=dict)
    text: str = ""


class _BadRequest(Exception):
    """A Slack `ok: false` answer raised from deep inside a method."""

    def __init__(self, error: str):
        super().__init__(error)
        self.error = error


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as requests.Session expects from Slack
    timeout = 30  # an idle keep-alive connection must not pin a handler thread forever

    def do_POST(self) -> None:
        self.server.slack.handle(self)

    do_GET = do_POST
    do_PUT = do_POST

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the base class names it so
        """Stay quiet: `.calls` is the record, stderr noise would only hide test output."""


class _Server(ThreadingHTTPServer):
    daemon_threads = False  # server_close() then joins every handler thread: nothing is left behind
    block_on_close = True

    def __init__(self, address, slack: SlackServer):
        super().__init__(address, _Handler)
        self.slack = slack
        self.open_sockets: set[socket.socket] = set()
        self.sockets_lock = threading.Lock()

    def process_request(self, request, client_address):
        with self.sockets_lock:
            self.open_sockets.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request):
        with self.sockets_lock:
            self.open_sockets.discard(request)
        super().shutdown_request(request)


class SlackServer:
    """Slack's Web API on a free loopback port; `api_url` is the base URL (`http://127.0.0.1:PORT/api`)."""

    def __init__(self, tokens=(DEFAULT_TOKEN,), channels=DEFAULT_CHANNELS, host: str = "127.0.0.1"):
        self._default_tokens = tuple(tokens)
        self._default_channels = tuple(channels)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server = _Server((host, 0), self)
        self.host, self.port = self._server.server_address[:2]
        self.url = f"http://{self.host}:{self.port}"
        self.api_url = f"{self.url}/api"
        self._thread: threading.Thread | None = None
        self.reset()

    # -- life cycle -------------------------------------------------------------------------------------------

    def start(self) -> SlackServer:
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="slack-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close every open connection and join every thread."""
        self._stopping.set()
        if self._thread:
            self._server.shutdown()  # only a running serve_forever() can answer shutdown(); it would wait forever
        with self._server.sockets_lock:
            for sock in list(self._server.open_sockets):
                _wake(sock)
        self._server.server_close()
        if self._thread:
            self._thread.join()
            self._thread = None

    def reset(self) -> None:
        """Forget every call, message and fault; restore the configured tokens and channels."""
        with self._lock:
            self.tokens = set(self._default_tokens)
            self.channels = set(self._default_channels)
            self.calls: list[SlackCall] = []
            self._messages: dict[str, dict] = {}  # ts -> message, in post order (dicts keep insertion order)
            self._updates: dict[str, list[dict]] = {}
            self._next_ts = FIRST_TS_MICROS
            self._faults: list[_Answer] = []
            self._errors: dict[str, list] = {}  # method -> [error code, remaining count or None]
            self._delay = 0.0
            self._down = False

    # -- fault controls (thread-safe) -------------------------------------------------------------------------

    def fail_next(self, n: int = 1, status: int = 429, retry_after: int | None = None) -> None:
        """Answer the next `n` calls with HTTP `status`; a 429 carries `Retry-After` (default 1 s), others only
        when `retry_after` is given."""
        if status == 429 and retry_after is None:
            retry_after = 1
        headers = {} if retry_after is None else {"Retry-After": str(int(retry_after))}
        if status == 429:
            answer = _Answer(429, {"ok": False, "error": "ratelimited"}, headers)
        else:
            answer = _Answer(status, None, headers, text=f"{status} server error (injected by the test)\n")
        with self._lock:
            self._faults.extend(copy.deepcopy(answer) for _ in range(n))

    def respond_error(self, method: str, error_code: str, count: int | None = None) -> None:
        """Answer calls to `method` with HTTP 200 `{"ok": false, "error": error_code}` — `count` times, or until
        reset() when count is None."""
        with self._lock:
            self._errors[method] = [error_code, count]

    def slow(self, seconds: float) -> None:
        """Delay every answer by `seconds` (0 restores normal speed)."""
        with self._lock:
            self._delay = float(seconds)

    def set_down(self, down: bool = True) -> None:
        """While down, every request is read and its connection closed without an answer."""
        with self._lock:
            self._down = bool(down)

    # -- what was said ----------------------------------------------------------------------------------------

    def messages(self, channel: str | None = None) -> list[dict]:
        """Return every message posted (parents and replies, in post order, as they are now after updates),
        only those in `channel` when given."""
        with self._lock:
            return [copy.deepcopy(m) for m in self._messages.values() if channel in (None, m["channel"])]

    def thread(self, parent_ts: str) -> list[dict]:
        """Return the replies in the thread of `parent_ts`, oldest first (the parent itself is not included)."""
        with self._lock:
            return [copy.deepcopy(m) for m in self._messages.values() if m.get("thread_ts") == parent_ts]

    def updates(self, ts: str) -> list[dict]:
        """Return the bodies of the successful chat.update calls on message `ts`, oldest first."""
        with self._lock:
            return copy.deepcopy(self._updates.get(ts, []))

    def calls_to(self, method: str) -> list[SlackCall]:
        """Return the recorded calls to API method `method` (e.g. "chat.postMessage"), oldest first."""
        with self._lock:
            return [call for call in self.calls if call.method == method]

    # -- serving ----------------------------------------------------------------------------------------------

    def handle(self, request: _Handler) -> None:
        """Given one HTTP request, answer it (or close it when down) and record the call."""
        length = int(request.headers.get("Content-Length") or 0)
        raw = request.rfile.read(length) if length else b""
        headers = {name.lower(): value for name, value in request.headers.items()}
        method = urlsplit(request.path).path.removeprefix("/api/")
        with self._lock:
            body, parse_error = _parse_body(headers.get("content-type", ""), raw)
            answer = self._answer(request.command, method, headers, body, parse_error)
            delay = self._delay
            self.calls.append(SlackCall(method, request.command, headers, body, answer.status,
                                        copy.deepcopy(answer.payload)))
        if delay and self._stopping.wait(delay):
            answer = _Answer(None)
        _send(request, answer)

    def _answer(self, http_method: str, method: str, headers: dict, body: dict, parse_error: str | None) -> _Answer:
        if self._down:
            return _Answer(None)
        if self._faults:
            return self._faults.pop(0)
        if method not in METHODS:
            return _Answer(404, {"ok": False, "error": "unknown_method", "req_method": method})
        if http_method != "POST":
            return _Answer(405, {"ok": False, "error": "invalid_request", "detail": "use POST"})
        auth = headers.get("authorization", "")
        if not auth.startswith("Bearer ") or not auth.removeprefix("Bearer ").strip():
            return _Answer(200, {"ok": False, "error": "not_authed"})
        if auth.removeprefix("Bearer ").strip() not in self.tokens:
            return _Answer(200, {"ok": False, "error": "invalid_auth"})
        if parse_error:
            return _Answer(200, {"ok": False, "error": parse_error})
        injected = self._injected_error(method)
        if injected:
            return _Answer(200, {"ok": False, "error": injected})
        try:
            payload = {"ok": True, **getattr(self, "_" + method.replace(".", "_"))(body)}
        except _BadRequest as failure:
            return _Answer(200, {"ok": False, "error": failure.error})
        if "charset" not in headers.get("content-type", "") and "json" in headers.get("content-type", ""):
            # Slack accepts JSON without a charset but says so; a careful client sends charset=utf-8.
            payload.update(warning="missing_charset", response_metadata={"warnings": ["missing_charset"]})
        return _Answer(200, payload)

    def _injected_error(self, method: str) -> str | None:
        rule = self._errors.get(method)
        if not rule:
            return None
        code, remaining = rule
        if remaining is not None:
            rule[1] = remaining - 1
            if rule[1] <= 0:
                del self._errors[method]
        return code

    # -- the API methods (called with self._lock held) --------------------------------------------------------

    def _auth_test(self, body: dict) -> dict:
        return {"url": "https://easybackup-test.slack.com/", "team": "easybackup-test", "user": "easybackup",
                "team_id": BOT["team"], "user_id": BOT["user"], "bot_id": BOT["bot_id"]}

    def _conversations_info(self, body: dict) -> dict:
        channel = self._channel(body)
        return {"channel": {"id": channel, "name": channel.lower(), "is_channel": True, "is_member": True,
                            "is_archived": False}}

    def _chat_postMessage(self, body: dict) -> dict:  # noqa: N802 - named after the Slack method
        channel = self._channel(body)
        text, blocks = _content(body)
        thread_ts = str(body["thread_ts"]) if body.get("thread_ts") else None
        if thread_ts is not None:
            parent = self._messages.get(thread_ts)
            if parent is None or parent["channel"] != channel or "thread_ts" in parent:
                raise _BadRequest("thread_not_found")
        ts = f"{self._next_ts // 1_000_000}.{self._next_ts % 1_000_000:06d}"
        self._next_ts += TS_STEP_MICROS
        message = {"type": "message", "channel": channel, "ts": ts, "text": text or "", "blocks": blocks or [],
                   "user": BOT["user"], "bot_id": BOT["bot_id"]}
        if thread_ts is not None:
            message["thread_ts"] = thread_ts
        self._messages[ts] = message
        return {"channel": channel, "ts": ts, "message": _public(message)}

    def _chat_update(self, body: dict) -> dict:
        channel = self._channel(body)
        ts = str(body.get("ts") or "")
        message = self._messages.get(ts)
        if message is None or message["channel"] != channel:
            raise _BadRequest("message_not_found")
        text, blocks = _content(body)
        # As in Slack: a field left out keeps its previous value.
        if text is not None:
            message["text"] = text
        if blocks is not None:
            message["blocks"] = blocks
        message["edited"] = {"user": BOT["user"], "ts": f"{time.time():.6f}"}
        self._updates.setdefault(ts, []).append(copy.deepcopy(body))
        return {"channel": channel, "ts": ts, "text": message["text"], "message": _public(message)}

    def _channel(self, body: dict) -> str:
        channel = str(body.get("channel") or "")
        if channel not in self.channels:
            raise _BadRequest("channel_not_found")
        return channel


def _parse_body(content_type: str, raw: bytes) -> tuple[dict, str | None]:
    """Given a request's Content-Type and bytes, return (fields, None) or ({}, Slack error code)."""
    if not raw:
        return {}, None
    if content_type.split(";")[0].strip().lower() == "application/json":
        try:
            body = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            return {}, "invalid_json"
        return (body, None) if isinstance(body, dict) else ({}, "invalid_json")
    try:
        return dict(parse_qsl(raw.decode("utf-8"), keep_blank_values=True, strict_parsing=True)), None
    except (UnicodeDecodeError, ValueError):
        return {}, "invalid_form_data"


def _content(body: dict) -> tuple[str | None, list | None]:
    """Given a message body, return (text, blocks) with form-encoded blocks decoded; raise _BadRequest when there
    is neither (no_text) or the blocks are not a JSON list (invalid_blocks)."""
    text = body.get("text")
    blocks = body.get("blocks")
    if isinstance(blocks, str):
        try:
            blocks = json.loads(blocks)
        except json.JSONDecodeError:
            raise _BadRequest("invalid_blocks") from None
    if blocks is not None and not isinstance(blocks, list):
        raise _BadRequest("invalid_blocks")
    if not text and not blocks:
        raise _BadRequest("no_text")
    return (str(text) if text is not None else None), blocks


def _public(message: dict) -> dict:
    """Return `message` as Slack shows it in an answer (without our bookkeeping `channel`)."""
    shown = copy.deepcopy(message)
    shown.pop("channel")
    return shown


def _send(request: _Handler, answer: _Answer) -> None:
    """Write `answer` on `request`'s connection, or close the connection without a word when its status is None."""
    if answer.status is None:
        request.close_connection = True
        return
    if answer.payload is not None:
        data, content_type = json.dumps(answer.payload).encode(), "application/json; charset=utf-8"
    else:
        data, content_type = answer.text.encode(), "text/plain; charset=utf-8"
    request.send_response(answer.status)
    request.send_header("Content-Type", content_type)
    request.send_header("Content-Length", str(len(data)))
    for name, value in answer.headers.items():
        request.send_header(name, value)
    request.end_headers()
    request.wfile.write(data)


def _wake(sock: socket.socket) -> None:
    """Shut `sock` down so the handler thread blocked reading it returns; it may already be gone."""
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # the peer or the handler closed it first: nothing left to wake
