"""The harness's Slack Web API server keeps Slack's rules, records every call, and serves faults on demand."""

from __future__ import annotations

import json
import time

import pytest
import requests

TOKEN = "xoxb-test-token"
CHANNEL = "C0123456789"


def call(slack, method: str, body: dict | None = None, token: str | None = TOKEN, form: bool = False):
    """POST `body` to `method` as Slack clients do (JSON with charset, or form-encoded); return the response."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if form:
        return requests.post(f"{slack.api_url}/{method}", data=body or {}, headers=headers, timeout=10)
    headers["Content-Type"] = "application/json; charset=utf-8"
    return requests.post(f"{slack.api_url}/{method}", data=json.dumps(body or {}), headers=headers, timeout=10)


def post(slack, **body) -> dict:
    return call(slack, "chat.postMessage", {"channel": CHANNEL, **body}).json()


def test_a_call_without_a_bearer_token_is_not_authed(slack):
    answer = call(slack, "chat.postMessage", {"channel": CHANNEL, "text": "hi"}, token=None)
    assert answer.status_code == 200
    assert answer.json() == {"ok": False, "error": "not_authed"}
    assert slack.messages() == []


def test_an_unknown_token_is_invalid_auth(slack):
    assert call(slack, "auth.test", token="xoxb-wrong").json() == {"ok": False, "error": "invalid_auth"}


def test_auth_test_and_conversations_info_answer_for_the_default_token(slack):
    assert call(slack, "auth.test").json()["ok"] is True
    info = call(slack, "conversations.info", {"channel": "CSUCCESS001"}, form=True).json()
    assert info["ok"] is True and info["channel"]["id"] == "CSUCCESS001"


def test_a_message_to_an_unknown_or_missing_channel_is_channel_not_found(slack):
    assert post(slack, channel="CNOSUCHONE1", text="hi") == {"ok": False, "error": "channel_not_found"}
    assert call(slack, "chat.postMessage", {"text": "hi"}).json()["error"] == "channel_not_found"
    assert call(slack, "conversations.info", {"channel": "CNOSUCHONE1"}).json()["error"] == "channel_not_found"


def test_a_message_without_text_or_blocks_is_no_text(slack):
    assert post(slack, text="") == {"ok": False, "error": "no_text"}


def test_a_reply_to_a_message_that_does_not_exist_is_thread_not_found(slack):
    assert post(slack, text="reply", thread_ts="1718600000.999900") == {"ok": False, "error": "thread_not_found"}
    parent = post(slack, text="parent")
    elsewhere = call(slack, "chat.postMessage", {"channel": "C9876543210", "text": "x", "thread_ts": parent["ts"]})
    assert elsewhere.json()["error"] == "thread_not_found"


def test_updating_a_message_that_does_not_exist_is_message_not_found(slack):
    answer = call(slack, "chat.update", {"channel": CHANNEL, "ts": "1718600000.999900", "text": "new"}).json()
    assert answer == {"ok": False, "error": "message_not_found"}
    assert slack.updates("1718600000.999900") == []


def test_post_message_returns_unique_increasing_timestamps(slack):
    first = post(slack, text="one")
    second = post(slack, text="two")
    assert first["ok"] and first["channel"] == CHANNEL and first["ts"] == "1718600000.000100"
    assert first["message"]["text"] == "one"
    assert float(second["ts"]) > float(first["ts"])


def test_form_encoded_messages_with_json_blocks_are_accepted(slack):
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*done*"}}]
    answer = call(slack, "chat.postMessage", {"channel": CHANNEL, "blocks": json.dumps(blocks)}, form=True).json()
    assert answer["ok"] is True
    assert slack.messages()[0]["blocks"] == blocks


def test_json_without_a_charset_is_accepted_with_slacks_warning(slack):
    answer = requests.post(f"{slack.api_url}/chat.postMessage", json={"channel": CHANNEL, "text": "hi"},
                           headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10).json()
    assert answer["ok"] is True and answer["warning"] == "missing_charset"


def test_every_call_is_recorded_with_its_headers_body_and_answer(slack):
    post(slack, text="hello")
    call(slack, "auth.test", token="xoxb-wrong")
    first, second = slack.calls
    assert (first.method, first.http_method, first.status) == ("chat.postMessage", "POST", 200)
    assert first.headers["authorization"] == f"Bearer {TOKEN}"
    assert first.body == {"channel": CHANNEL, "text": "hello"}
    assert first.response["ts"] == "1718600000.000100"
    assert abs(first.time - time.time()) < 10
    assert [c.response["error"] for c in slack.calls_to("auth.test")] == ["invalid_auth"]


def test_fail_next_serves_429_with_retry_after_then_answers_again(slack):
    slack.fail_next(2, status=429, retry_after=3)
    for _ in range(2):
        limited = call(slack, "chat.postMessage", {"channel": CHANNEL, "text": "hi"})
        assert limited.status_code == 429
        assert limited.headers["Retry-After"] == "3"
        assert limited.json() == {"ok": False, "error": "ratelimited"}
    assert post(slack, text="hi")["ok"] is True
    assert [c.status for c in slack.calls] == [429, 429, 200]
    assert len(slack.messages()) == 1


def test_fail_next_serves_500(slack):
    slack.fail_next(1, status=500)
    failed = call(slack, "chat.postMessage", {"channel": CHANNEL, "text": "hi"})
    assert failed.status_code == 500
    assert "Retry-After" not in failed.headers
    assert slack.messages() == []
    assert post(slack, text="hi")["ok"] is True


def test_respond_error_answers_ok_false_for_that_method_only(slack):
    slack.respond_error("chat.update", "cant_update_message")
    parent = post(slack, text="parent")
    answer = call(slack, "chat.update", {"channel": CHANNEL, "ts": parent["ts"], "text": "x"})
    assert answer.status_code == 200
    assert answer.json() == {"ok": False, "error": "cant_update_message"}
    assert slack.messages()[0]["text"] == "parent"


def test_slow_delays_every_answer(slack):
    slack.slow(0.5)
    started = time.monotonic()
    assert call(slack, "auth.test").json()["ok"] is True
    assert time.monotonic() - started >= 0.5


def test_a_server_that_is_down_closes_connections_without_answering(slack):
    slack.set_down(True)
    with pytest.raises(requests.ConnectionError):
        call(slack, "auth.test")
    assert slack.calls[0].status is None and slack.calls[0].response is None
    slack.set_down(False)
    assert call(slack, "auth.test").json()["ok"] is True


def test_a_thread_conversation_reads_back_through_the_helpers(slack):
    with requests.Session() as session:
        session.headers["Authorization"] = f"Bearer {TOKEN}"

        def send(method: str, **body) -> dict:
            return session.post(f"{slack.api_url}/{method}", json={"channel": CHANNEL, **body}, timeout=10).json()

        parent = send("chat.postMessage", text="backup of db1 running")
        send("chat.postMessage", text="dumped 10 MB", thread_ts=parent["ts"])
        send("chat.postMessage", text="backup of db1 succeeded", thread_ts=parent["ts"])
        updated = send("chat.update", ts=parent["ts"], text="db1: success, 12 MB in 4s")
    assert updated["ok"] is True and updated["ts"] == parent["ts"]
    assert [m["text"] for m in slack.thread(parent["ts"])] == ["dumped 10 MB", "backup of db1 succeeded"]
    assert [m["text"] for m in slack.messages(CHANNEL)][0] == "db1: success, 12 MB in 4s"
    assert [u["text"] for u in slack.updates(parent["ts"])] == ["db1: success, 12 MB in 4s"]
    assert slack.messages("C9876543210") == []
    assert len(slack.calls_to("chat.postMessage")) == 3


def test_reset_forgets_calls_messages_and_faults(slack):
    post(slack, text="old")
    slack.fail_next(1, status=500)
    slack.reset()
    assert slack.calls == [] and slack.messages() == []
    assert post(slack, text="new")["ts"] == "1718600000.000100"
