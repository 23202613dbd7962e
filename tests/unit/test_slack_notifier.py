"""The Slack client retries as Slack asks, the notifier sends in order without ever blocking its caller, and the
observer throttles progress replies."""

from __future__ import annotations

import json
import threading
import time
from types import SimpleNamespace

import pytest
import requests

from easybackup.config.model import DatabaseTarget, S3Settings, SlackSettings, Strategy
from easybackup.jobspec import new_job
from easybackup.notifications import slack_api
from easybackup.notifications.notifier import Notifier
from easybackup.notifications.observer import SlackObserver, build_slack, slack_deadline
from easybackup.notifications.slack_api import SlackApi, SlackError, SlackUnavailable

TOKEN = "xoxb-test-token"
SLACK = SlackSettings(bot_token=TOKEN, channel_id="C0123456789", api_url="http://slack.invalid/api",
                      progress_interval=60.0)


# -- the client: retries with a fake clock ----------------------------------------------------------------------

class FakeTime:
    """A clock that only moves when someone waits."""

    def __init__(self):
        self.now = 1000.0
        self.waits: list[float] = []

    def clock(self) -> float:
        return self.now

    def wait(self, seconds: float) -> bool:
        self.waits.append(seconds)
        self.now += seconds
        return False


def response(status: int, body: dict | None = None, headers: dict | None = None) -> requests.Response:
    answer = requests.Response()
    answer.status_code = status
    answer.headers.update(headers or {})
    answer._content = json.dumps(body).encode() if body is not None else b"oops"
    return answer


@pytest.fixture
def scripted(monkeypatch):
    """Replace HTTP with a script of answers (responses, or exceptions to raise); record each request."""
    script: list = []
    sent: list[dict] = []

    def post(url, json=None, headers=None, timeout=None):
        sent.append({"url": url, "json": json, "headers": headers, "timeout": timeout})
        answer = script.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    monkeypatch.setattr(slack_api.requests, "post", post)
    return SimpleNamespace(script=script, sent=sent)


def make_api(fake: FakeTime, errors: list | None = None, deadline: float = 600.0) -> SlackApi:
    return SlackApi(TOKEN, "http://slack.invalid/api/", timeout=7, deadline=deadline, clock=fake.clock,
                    wait=fake.wait, on_error=None if errors is None else errors.append)


def test_a_call_sends_json_with_a_bearer_token_and_a_timeout(scripted):
    scripted.script.append(response(200, {"ok": True, "ts": "1.2"}))
    assert make_api(FakeTime()).call("chat.postMessage", channel="C1", text="hi")["ts"] == "1.2"
    [sent] = scripted.sent
    assert sent["url"] == "http://slack.invalid/api/chat.postMessage" and sent["timeout"] == 7
    assert sent["headers"] == {"Authorization": f"Bearer {TOKEN}",
                               "Content-Type": "application/json; charset=utf-8"}
    assert sent["json"] == {"channel": "C1", "text": "hi"}


def test_a_429_waits_exactly_retry_after(scripted):
    fake = FakeTime()
    scripted.script += [response(429, {"ok": False, "error": "ratelimited"}, {"Retry-After": "7"}),
                        response(429, {"ok": False, "error": "ratelimited"}, {"Retry-After": "2"}),
                        response(200, {"ok": True, "ts": "1.2"})]
    assert make_api(fake).call_with_retry("chat.postMessage", {"channel": "C1", "text": "x"})["ts"] == "1.2"
    assert fake.waits == [7.0, 2.0]


def test_5xx_and_network_errors_back_off_until_the_deadline_then_fail_once(scripted):
    fake, errors = FakeTime(), []
    scripted.script += [response(500), requests.ConnectionError("refused"), response(503)] * 10
    with pytest.raises(SlackUnavailable):
        make_api(fake, errors, deadline=20.0).call_with_retry("chat.postMessage", {"channel": "C1", "text": "x"})
    assert fake.waits == [1.0, 2.0, 4.0, 8.0]  # the next (16 s) would pass the 20 s deadline
    assert errors == ["network"]  # counted once, by the kind of the last failure (attempt 5: refused)


def test_ok_false_fails_at_once_with_slacks_code(scripted):
    fake, errors = FakeTime(), []
    scripted.script.append(response(200, {"ok": False, "error": "channel_not_found"}))
    with pytest.raises(SlackError) as failure:
        make_api(fake, errors).call_with_retry("chat.postMessage", {"channel": "CX", "text": "x"})
    assert failure.value.code == "channel_not_found" and "channel ID" in failure.value.hint
    assert fake.waits == [] and errors == ["api"]


def test_the_token_never_shows_in_errors_or_repr(scripted):
    scripted.script.append(requests.ConnectionError(f"refused with header Bearer {TOKEN}"))
    api = make_api(FakeTime())
    with pytest.raises(SlackUnavailable) as failure:
        api.call("auth.test")
    assert TOKEN not in str(failure.value) and TOKEN not in repr(api)


# -- the notifier: order, dependencies, never blocking ----------------------------------------------------------

class FakeApi:
    """Records (method, body) in order; answers a ts for posts; `gate` holds every call while cleared;
    `refuse` names methods that fail with SlackError."""

    def __init__(self):
        self.calls: list[tuple[str, dict]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.refuse: set[str] = set()
        self._ts = 0

    def call_with_retry(self, method: str, body: dict, deadline: float | None = None) -> dict:
        self.gate.wait(10)
        self.calls.append((method, body))
        if method in self.refuse:
            raise SlackError(method, "channel_not_found")
        self._ts += 1
        return {"ok": True, "ts": f"1718600000.{self._ts:06d}"}


@pytest.fixture
def fake_api():
    return FakeApi()


def notifier_with(fake: FakeApi, **kwargs) -> Notifier:
    return Notifier([SLACK], api_factory=lambda settings: fake, **kwargs)


def msg(text: str) -> dict:
    return {"text": text, "blocks": []}


def test_replies_and_the_update_follow_their_parent_in_order(fake_api):
    notifier = notifier_with(fake_api).start(check=False)
    ref = notifier.post_parent(SLACK, "main", msg("parent"))
    for n in range(5):
        notifier.reply(SLACK, ref, msg(f"reply {n}"), progress=n % 2 == 0)
    notifier.update(SLACK, ref, msg("final"))
    notifier.post_summary(SLACK, "CFAILURE001", ref, lambda r: msg(f"see {r.channel}/{r.ts}"))
    assert notifier.drain(5) == 0
    parent_ts = "1718600000.000001"
    assert [body["text"] for _, body in fake_api.calls] == (["parent"] + [f"reply {n}" for n in range(5)] +
                                                            ["final", f"see C0123456789/{parent_ts}"])
    assert all(body["thread_ts"] == parent_ts for _, body in fake_api.calls[1:6])
    assert fake_api.calls[6] == ("chat.update", {"channel": "C0123456789", "ts": parent_ts, **msg("final")})
    assert fake_api.calls[7][1]["channel"] == "CFAILURE001" and "thread_ts" not in fake_api.calls[7][1]
    assert notifier.stats.sent == 8


def test_enqueueing_never_waits_for_a_stuck_slack_and_drops_old_progress_first(fake_api):
    fake_api.gate.clear()  # Slack hangs
    notifier = notifier_with(fake_api, max_queue=10).start(check=False)
    ref = notifier.post_parent(SLACK, "main", msg("parent"))
    started = time.monotonic()
    for n in range(1000):
        notifier.reply(SLACK, ref, msg(f"progress {n}"), progress=True)
    notifier.reply(SLACK, ref, msg("db finished"))
    assert time.monotonic() - started < 1.0
    assert notifier.pending() <= 11 and notifier.stats.dropped >= 990
    fake_api.gate.set()
    assert notifier.drain(5) == 0
    texts = [body["text"] for _, body in fake_api.calls]
    assert texts[0] == "parent" and texts[-1] == "db finished" and "progress 999" in texts


def test_replies_of_a_parent_that_failed_go_top_level_naming_the_strategy(fake_api):
    notifier = notifier_with(fake_api).start(check=False)
    fake_api.refuse.add("chat.postMessage")
    ref = notifier.post_parent(SLACK, "main", msg("parent"))
    notifier.reply(SLACK, ref, msg("progress"), progress=True)
    notifier.reply(SLACK, ref, {"text": "Final report", "blocks": []})
    notifier.update(SLACK, ref, msg("✅ Backup succeeded: main"))
    notifier.drain(5)
    assert ref.failed and ref.ts is None
    [parent, report, final] = fake_api.calls
    assert report[0] == "chat.postMessage" and "thread_ts" not in report[1]
    assert report[1]["text"] == "*main* (thread unavailable): Final report"
    assert final == ("chat.postMessage", {"channel": "C0123456789", **msg("✅ Backup succeeded: main")})
    assert notifier.stats.dropped == 1 and notifier.stats.failed == 3


def test_drain_gives_up_on_what_a_dead_slack_cannot_take_within_its_timeout(fake_api):
    fake_api.gate.clear()
    notifier = notifier_with(fake_api).start(check=False)
    ref = notifier.post_parent(SLACK, "main", msg("parent"))
    notifier.reply(SLACK, ref, msg("reply"))
    started = time.monotonic()
    assert notifier.drain(0.5) == 2
    assert time.monotonic() - started < 3.5
    fake_api.gate.set()


def test_a_retry_is_cut_short_when_the_notifier_stops(monkeypatch):
    monkeypatch.setattr(slack_api.requests, "post", lambda *a, **k: response(503))
    notifier = Notifier([SLACK], deadline=600).start(check=False)
    notifier.post_parent(SLACK, "main", msg("parent"))
    time.sleep(0.2)  # the thread is now waiting to retry
    started = time.monotonic()
    assert notifier.stop() == 1
    assert time.monotonic() - started < 1.0 and notifier.stats.failed == 1


# -- the observer: throttled progress ---------------------------------------------------------------------------

class RecordingNotifier:
    def __init__(self):
        self.sent: list[tuple[str, str]] = []

    def post_parent(self, slack, strategy, body):
        self.sent.append(("parent", body["text"]))
        return SimpleNamespace(channel=slack.channel_id, strategy=strategy, ts="1.1", failed=False)

    def reply(self, slack, ref, body, progress=False):
        self.sent.append(("progress" if progress else "reply", body["text"]))

    def update(self, slack, ref, body):
        self.sent.append(("update", body["text"]))

    def post_summary(self, slack, channel, ref, render):
        self.sent.append(("summary", channel, render(ref)["text"]))


def handle_for(slack: SlackSettings):
    from datetime import datetime, timezone

    strategy = Strategy(name="main", databases=(DatabaseTarget("shop", "postgresql://h/shop"),),
                        s3=S3Settings(bucket="b", base_path="backups"), slack=slack)
    job = new_job(strategy, "/tmp", datetime(2024, 6, 17, 3, tzinfo=timezone.utc))
    return SimpleNamespace(job=job, strategy="main", run_id=job.run_id, result=None)


def test_progress_replies_come_at_most_once_per_interval_but_milestones_always():
    now = [0.0]
    recorder = RecordingNotifier()
    observer = SlackObserver(recorder, clock=lambda: now[0])
    handle = handle_for(SLACK)
    observer.run_started(handle)

    def at(t: float, **event):
        now[0] = t
        observer.event(handle, {"database": "shop", **event})

    at(0.5, type="db_started")
    for t in (1, 30, 59, 61, 62, 100, 121.5):
        at(t, type="progress", bytes_out=int(t) * 1024 * 1024, parts=1)
    at(122, type="retry", attempt=1, max_attempts=3, reason="S3 slow down", delay_s=5)
    at(123, type="progress", bytes_out=1, parts=1)
    at(130, type="db_finished", status="success", key="k", size=10, duration_s=129.5)
    progress = [text for kind, text in recorder.sent if kind == "progress"]
    assert len(progress) == 2 and "61.0 MiB stored" in progress[0] and "121 MiB stored" in progress[1]
    kinds = [entry[0] for entry in recorder.sent]
    assert kinds == ["parent", "reply", "progress", "progress", "reply", "reply"]


def test_the_end_of_a_run_sends_report_then_update_then_the_outcome_summary():
    recorder = RecordingNotifier()
    slack = SlackSettings(bot_token=TOKEN, channel_id="C0123456789", success_channel="CSUCCESS001")
    observer = SlackObserver(recorder)
    handle = handle_for(slack)
    handle.result = {"status": "success", "duration_s": 3.0, "databases": [
        {"database": "shop", "status": "success", "key": "k", "size": 2048, "duration_s": 3.0}]}
    observer.run_finished(handle)  # a run seen only at its end still gets a parent
    assert [entry[0] for entry in recorder.sent] == ["parent", "reply", "update", "summary"]
    assert recorder.sent[-1][1] == "CSUCCESS001"
    assert "<https://slack.com/archives/C0123456789/p11|thread>" in recorder.sent[-1][2]


def test_a_strategy_without_slack_sends_nothing():
    recorder = RecordingNotifier()
    observer = SlackObserver(recorder)
    handle = handle_for(SlackSettings())
    observer.run_started(handle)
    observer.event(handle, {"type": "db_started", "database": "shop"})
    observer.run_finished(handle)
    assert recorder.sent == []


# -- set-up and health ------------------------------------------------------------------------------------------

def test_slack_is_off_without_a_token():
    strategy = handle_for(SlackSettings()).job.strategy
    assert build_slack(SimpleNamespace(strategies=(strategy,))) == (None, None)
    assert Notifier([]).check() == "disabled"


def test_the_deadline_can_be_shortened_by_the_environment():
    assert slack_deadline({}) == 600.0
    assert slack_deadline({"EASYBACKUP_SLACK_DEADLINE": "30s"}) == 30.0
    assert slack_deadline({"EASYBACKUP_SLACK_DEADLINE": "soon"}) == 600.0


def test_check_calls_auth_test_and_each_channel(slack):
    good = SlackSettings(bot_token=TOKEN, channel_id="C0123456789", api_url=slack.api_url,
                         failure_channel="CFAILURE001")
    assert Notifier([good]).check() == "ok"
    assert [call.body.get("channel") for call in slack.calls] == [None, "C0123456789", "CFAILURE001"]
    assert Notifier([SlackSettings(bot_token=TOKEN, channel_id="CNOSUCHONE1", api_url=slack.api_url)]).check() \
        == "error"
    assert Notifier([SlackSettings(bot_token="xoxb-wrong", channel_id="C0123456789",
                                   api_url=slack.api_url)]).check() == "error"


def test_a_check_repeated_every_interval_warns_once_until_a_message_gets_through(slack):
    from loguru import logger

    lines: list[tuple[str, str]] = []
    sink = logger.add(lambda message: lines.append((message.record["level"].name, message.record["message"])),
                      level="DEBUG")
    try:
        notifier = Notifier([SlackSettings(bot_token=TOKEN, channel_id="CNOSUCHONE1", api_url=slack.api_url)])
        assert [notifier.check() for _ in range(3)] == ["error"] * 3
        notifier.failures.reset()  # what a delivered message does: Slack works again, the next failure is news
        assert notifier.check() == "error"
    finally:
        logger.remove(sink)
    warned = [text for level, text in lines if level == "WARNING" and text.startswith("Slack check:")]
    assert len(warned) == 2 and "channel_not_found" in warned[0], lines
    assert len([text for level, text in lines if level == "DEBUG" and text.startswith("Slack check:")]) == 2
