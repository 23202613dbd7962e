"""`easybackup once` tells Slack about each run in one thread: parent, replies, final report, edited parent —
through the harness's Slack server, with PostgreSQL and moto's S3, exactly as an operator runs it."""

from __future__ import annotations

import time

import pytest

from tests.harness.configs import cli_env, run_cli, write_config
from tests.harness.net import free_port
from tests.harness.slack_server import DEFAULT_TOKEN

CHANNEL = "C0123456789"
FAILURE_CHANNEL = "CFAILURE001"


@pytest.fixture(scope="module")
def small_db(pg) -> str:
    """A small database with one table."""
    pg.create_database("slack_sample")
    pg.psql("CREATE TABLE IF NOT EXISTS t (id int, note text); INSERT INTO t SELECT g, 'row ' || g "
            "FROM generate_series(1, 2000) g", "slack_sample")
    return "slack_sample"


def slack_settings(api_url: str, **extra) -> dict:
    return {"bot_token": DEFAULT_TOKEN, "channel_id": CHANNEL, "api_url": api_url, **extra}


def run_once(tmp_path, moto, bucket, url: str, slack: dict, **env) -> tuple:
    config = write_config(tmp_path, bucket=bucket, endpoint=moto.endpoint,
                          strategies=[{"name": "main", "database_url": url}], slack=slack)
    started = time.monotonic()
    result = run_cli("once", "-c", str(config), env=cli_env(**env), timeout=120)
    return result, time.monotonic() - started


def the_parent(slack) -> dict:
    parents = [m for m in slack.messages(CHANNEL) if "thread_ts" not in m]
    assert len(parents) == 1, parents
    return parents[0]


def block_text(message: dict) -> str:
    """All the text a person sees in a message: its fallback text and its blocks."""
    parts = [message.get("text", "")]
    for block in message.get("blocks") or []:
        parts.append((block.get("text") or {}).get("text", ""))
        parts += [f.get("text", "") for f in block.get("fields") or []]
        parts += [e.get("text", "") for e in block.get("elements") or []]
    return "\n".join(parts)


def test_a_successful_run_is_one_thread_and_an_edited_parent(pg, moto, bucket, tmp_path, small_db, slack):
    result, _ = run_once(tmp_path, moto, bucket, pg.url(small_db), slack_settings(slack.api_url))
    assert result.returncode == 0, result.stderr
    posts = [c for c in slack.calls_to("chat.postMessage") if c.response and c.response["ok"]]
    parent = the_parent(slack)
    assert posts[0].response["ts"] == parent["ts"] and "thread_ts" not in posts[0].body
    assert "Backup started: *main* — 1 database → s3://" in posts[0].body["text"]
    replies = slack.thread(parent["ts"])
    assert len(replies) >= 2 and len(posts) == 1 + len(replies)
    assert all(r["thread_ts"] == parent["ts"] for r in replies)
    assert "Final report" in replies[-1]["text"] and "backups/main/slack_sample/" in block_text(replies[-1])
    [update] = slack.updates(parent["ts"])
    final = block_text(parent)
    assert update["text"].startswith("✅ Backup succeeded: *main*")
    assert "stored from 1/1 databases in" in final and "KiB" in final and "backups/main/slack_sample/" in final
    assert all(DEFAULT_TOKEN not in str(call.body) for call in slack.calls)
    assert DEFAULT_TOKEN not in result.stderr + result.stdout


def test_a_failed_run_edits_the_parent_to_failed_and_tells_the_failure_channel(pg, moto, bucket, tmp_path, slack):
    slack_cfg = slack_settings(slack.api_url, channels={"failure": FAILURE_CHANNEL})
    result, _ = run_once(tmp_path, moto, bucket, pg.url("no_such_database"), slack_cfg)
    assert result.returncode == 1, result.stderr
    parent = the_parent(slack)
    assert parent["text"].startswith("❌ Backup failed: *main*") and "does not exist" in parent["text"]
    thread = "\n".join(block_text(m) for m in slack.thread(parent["ts"]))
    assert "❌ *no_such_database*" in thread
    assert "```" in thread and 'database "no_such_database" does not exist' in thread  # pg_dump's own output
    [summary] = slack.messages(FAILURE_CHANNEL)
    link = f"<https://slack.com/archives/{CHANNEL}/p{parent['ts'].replace('.', '')}|thread>"
    assert "❌ *main*: backup failed" in summary["text"] and link in summary["text"]


def test_slack_answering_429_then_500_still_gets_every_message_in_order(pg, moto, bucket, tmp_path, small_db,
                                                                      slack):
    # The start-up check takes the first two faults; the parent then meets a 429 and two 500s.
    slack.fail_next(3, status=429, retry_after=1)
    slack.fail_next(2, status=500)
    result, _ = run_once(tmp_path, moto, bucket, pg.url(small_db), slack_settings(slack.api_url))
    assert result.returncode == 0, result.stderr
    statuses = [c.status for c in slack.calls_to("chat.postMessage")]
    assert statuses[:3] == [429, 500, 500] and set(statuses[3:]) == {200}
    parent = the_parent(slack)
    replies = slack.thread(parent["ts"])
    kinds = [("started" if "backup started" in r["text"] else "finished" if r["text"].startswith("✅") else
              "report" if "Final report" in r["text"] else "progress") for r in replies]
    assert kinds[0] == "started" and kinds[-2:] == ["finished", "report"], kinds
    [update] = slack.updates(parent["ts"])  # the last message: `once` waited for the drain
    assert update["text"].startswith("✅ Backup succeeded")


def test_an_unreachable_slack_never_fails_the_backup(pg, moto, bucket, tmp_path, small_db):
    closed = f"http://127.0.0.1:{free_port()}/api"
    result, elapsed = run_once(tmp_path, moto, bucket, pg.url(small_db), slack_settings(closed),
                               EASYBACKUP_SLACK_DEADLINE="3s")
    assert result.returncode == 0, result.stderr
    assert "Slack chat.postMessage failed: cannot reach" in result.stderr
    assert "Slack is misconfigured or unreachable" in result.stderr
    assert "main" in result.stdout and "success" in result.stdout
    assert elapsed < 30


def test_a_dead_slack_that_never_answers_is_given_up_after_the_drain(pg, moto, bucket, tmp_path, small_db, slack):
    slack.set_down(True)
    result, elapsed = run_once(tmp_path, moto, bucket, pg.url(small_db), slack_settings(slack.api_url),
                               EASYBACKUP_SLACK_DEADLINE="2s")
    assert result.returncode == 0, result.stderr
    assert slack.messages() == [] and slack.calls_to("chat.postMessage")
    assert elapsed < 30


def test_a_wrong_token_is_a_clear_warning_and_the_backup_still_succeeds(pg, moto, bucket, tmp_path, small_db, slack):
    result, _ = run_once(tmp_path, moto, bucket, pg.url(small_db),
                         {**slack_settings(slack.api_url), "bot_token": "xoxb-revoked-token"})
    assert result.returncode == 0, result.stderr
    assert "Slack is misconfigured or unreachable: Slack auth.test failed: invalid_auth" in result.stderr
    assert "hint: check the bot token and its scopes" in result.stderr
    assert "xoxb-revoked-token" not in result.stderr and slack.messages() == []
