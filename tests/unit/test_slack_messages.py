"""Slack messages are mrkdwn within Slack's limits, human in sizes, durations and local times, and never carry a
secret."""

from __future__ import annotations

import json
from datetime import datetime, timezone

from easybackup.notifications import messages
from easybackup.secrets import register_secret

RUN = messages.RunInfo(strategy="main", run_id="abc123def456", databases=("shop", "crm"),
                       destination="s3://bucket/backups/main/", timezone="Europe/Paris",
                       started_at=datetime(2024, 6, 17, 3, 0, tzinfo=timezone.utc))
KEY = "backups/main/shop/2024-06-17T030000Z.dump.gz"


def ok_db(name: str = "shop", size: int = 5 * 1024 * 1024, seconds: float = 252.0) -> dict:
    return {"database": name, "status": "success", "key": KEY.replace("shop", name), "size": size,
            "duration_s": seconds, "error": None}


def failed_db(name: str = "crm", last_lines=(), message: str = "pg_dump of database crm failed") -> dict:
    return {"database": name, "status": "failed", "key": None, "size": None, "duration_s": 1.5,
            "error": {"kind": "dump_failed", "message": message, "detail": "pg_dump exited with code 1",
                      "hint": "look at pg_dump's output", "last_lines": list(last_lines)}}


def all_text(message: dict) -> str:
    return json.dumps(message, ensure_ascii=False)


def sections(message: dict) -> list[str]:
    return [b["text"]["text"] for b in message["blocks"] if b["type"] == "section" and "text" in b]


def assert_within_slack_limits(message: dict) -> None:
    assert len(message["blocks"]) <= messages.BLOCKS_MAX
    assert len(message["text"]) <= messages.TEXT_MAX
    for block in message["blocks"]:
        if "text" in block:
            assert len(block["text"]["text"]) <= messages.SECTION_MAX
        assert len(block.get("fields", [])) <= messages.FIELDS_MAX
        for item in block.get("fields", []) + block.get("elements", []):
            assert len(item["text"]) <= messages.FIELD_MAX


def test_the_parent_names_strategy_databases_destination_and_local_start_time():
    message = messages.started(RUN)
    assert message["text"] == ("Backup started: *main* — 2 databases → s3://bucket/backups/main/, "
                               "started at 2024-06-17 05:00:00 CEST")
    assert message["blocks"][0]["text"]["type"] == "mrkdwn"
    assert "`abc123def456`" in all_text(message)


def test_the_parent_of_an_all_databases_run_says_every_database_not_zero():
    run = messages.RunInfo(strategy="server", run_id="abc123def456", databases=(), destination="s3://b/server/",
                           timezone="UTC", started_at=datetime(2024, 6, 17, 3, 0, tzinfo=timezone.utc),
                           every_database=True)
    assert messages.started(run)["text"].startswith("Backup started: *server* — every database on the server → ")
    assert messages.drill_started(run)["text"].startswith("Restore drill started: *server* — every database on the "
                                                          "server, ")
    both = messages.RunInfo(**{**run.__dict__, "databases": ("extra",)})
    assert "every database on the server (and 1 configured one) → " in messages.started(both)["text"]


def test_a_finished_database_reply_has_human_size_duration_and_key():
    text = messages.db_finished({"type": "db_finished", **ok_db()})["text"]
    assert text == f"✅ *shop*: 5.0 MiB in 4m 12s → `{KEY}`"


def test_a_progress_reply_has_bytes_so_far_and_the_rate():
    text = messages.progress("shop", 120 * 1024 * 1024, 60.0, 3)["text"]
    assert text == "⏳ *shop*: 120 MiB stored (2.0 MiB/s), 3 parts, 1m so far"


def test_a_retry_reply_has_the_attempt_the_reason_and_the_delay():
    text = messages.retry("shop", 1, 3, "S3 upload failed:\nslow down", 12.4)["text"]
    assert text == "🔁 *shop*: attempt 1/3 failed: S3 upload failed: slow down — retrying in 12s"


def test_the_edited_parent_of_a_success_states_status_size_duration_and_key():
    result = {"status": "success", "duration_s": 260.0, "databases": [ok_db(), ok_db("crm", 1024, 3.0)]}
    message = messages.finished_parent(RUN, result)
    assert message["text"] == "✅ Backup succeeded: *main* — 5.0 MiB stored from 2/2 databases in 4m 20s"
    fields = {f["text"].split("\n")[0]: f["text"].split("\n")[1] for f in message["blocks"][1]["fields"]}
    assert fields["*Status*"] == "succeeded" and fields["*Duration*"] == "4m 20s" and fields["*Size*"] == "5.0 MiB"
    assert fields["*shop*"] == f"`{KEY}`"
    assert_within_slack_limits(message)


def test_the_edited_parent_of_a_failure_has_the_error_in_one_line_and_the_last_lines():
    lines = [f"pg_dump: line {n}" for n in range(40)]
    result = {"status": "failed", "duration_s": 5.0, "databases": [ok_db(), failed_db(last_lines=lines)]}
    message = messages.finished_parent(RUN, result)
    assert message["text"].startswith("❌ Backup failed: *main* — 1 of 2 databases failed: [dump_failed] pg_dump "
                                      "of database crm failed — 5.0 MiB stored from 1/2 databases in 5s")
    assert "\n" not in message["text"]
    output = next(s for s in sections(message) if "```" in s)
    assert "pg_dump: line 39" in output and "pg_dump: line 34" not in output  # only the last few lines
    assert_within_slack_limits(message)


def test_the_final_report_lists_every_database_and_the_failed_ones_output():
    result = {"status": "failed", "duration_s": 5.0,
              "databases": [ok_db(), failed_db(last_lines=["pg_dump: error: boom"])]}
    message = messages.report(RUN, result)
    body = "\n".join(sections(message))
    assert f"✅ *shop* — 5.0 MiB in 4m 12s → `{KEY}`" in body
    assert "❌ *crm* — failed after 2s: [dump_failed] pg_dump of database crm failed: pg_dump exited with code 1 " \
           "(hint: look at pg_dump's output)" in body
    assert "Last lines of output from *crm*:\n```\npg_dump: error: boom\n```" in body


def test_the_report_falls_back_on_the_collected_output_when_the_error_has_no_lines():
    result = {"status": "failed", "duration_s": 1.0, "databases": [failed_db()]}
    message = messages.report(RUN, result, {"crm": ["ssh: connect to host bastion port 22: refused"]})
    assert "ssh: connect to host bastion port 22: refused" in all_text(message)


def test_a_report_of_hundreds_of_databases_stays_within_slack_limits():
    databases = [failed_db(f"db{n:03}", last_lines=["x" * 500] * 30, message="m" * 400) for n in range(300)]
    message = messages.report(RUN, {"status": "failed", "duration_s": 9.0, "databases": databases})
    assert_within_slack_limits(message)
    assert message["blocks"][-1]["type"] == "context" and "more blocks not shown" in all_text(message)
    parent = messages.finished_parent(RUN, {"status": "failed", "duration_s": 9.0,
                                            "databases": [ok_db(f"ok{n}") for n in range(30)] + databases})
    assert_within_slack_limits(parent)
    assert "More" in all_text(parent)


def test_a_code_block_keeps_the_newest_lines_that_fit_and_cannot_be_closed_early():
    lines = [f"{n:04} " + "y" * 200 for n in range(100)] + ["evil ``` outside"]
    block = messages.code_block(lines, 25, 3000)
    assert len(block) <= 3000 and block.startswith("```\n…\n") and block.endswith("\n```")
    assert block.count("```") == 2 and "evil" in block and "0099" in block and "0075" not in block
    assert messages.code_block(["", "  "], 25) == ""


def test_outside_text_cannot_mention_everyone_or_forge_links():
    text = messages.db_finished({**failed_db(message="<!channel> see <http://evil|here> & more")})["text"]
    assert "<!channel>" not in text and "&lt;!channel&gt;" in text and "&amp; more" in text


def test_no_secret_reaches_a_message():
    register_secret("S3cr3t-Key-Value")
    error_message = "connect postgres://backup:hunter2pw@db:5432/crm failed token xoxb-1234-abcd S3cr3t-Key-Value"
    result = {"status": "failed", "duration_s": 1.0,
              "databases": [failed_db(message=error_message, last_lines=["password=hunter2pw rejected"])]}
    produced = [messages.report(RUN, result), messages.finished_parent(RUN, result),
                messages.summary(RUN, result, None), messages.retry("crm", 1, 2, error_message, 1.0),
                messages.db_finished(result["databases"][0])]
    for message in produced:
        text = all_text(message)
        assert "hunter2pw" not in text and "xoxb-1234" not in text and "S3cr3t-Key-Value" not in text
        assert "***" in text


def test_the_summary_links_to_the_thread():
    link = messages.thread_link("C0123456789", "1718600000.000100")
    assert link == "<https://slack.com/archives/C0123456789/p1718600000000100|thread>"
    result = {"status": "success", "duration_s": 3.0, "databases": [ok_db()]}
    assert messages.summary(RUN, result, link)["text"] == (f"✅ *main*: backup succeeded — 5.0 MiB stored from 1/1 "
                                                           f"databases in 3s · {link}")


def test_a_reply_whose_thread_is_gone_names_the_strategy_at_top_level():
    message = messages.standalone(messages.report(RUN, {"status": "success", "duration_s": 1.0,
                                                        "databases": [ok_db()]}), "main")
    assert message["text"].startswith("*main* (thread unavailable): Final report for main")
    assert_within_slack_limits(message)


def test_a_long_section_is_cut_to_slacks_limit():
    block = messages.section("z" * 5000)
    assert len(block["text"]["text"]) == messages.SECTION_MAX and block["text"]["text"].endswith("…")
    assert len(messages.fields_section([(str(n), "v") for n in range(15)])["fields"]) == messages.FIELDS_MAX
