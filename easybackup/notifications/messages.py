"""Slack messages of a backup run, as pure functions of what happened: parent, progress replies, final report,
the parent's final state and the outcome summary (DESIGN.md, "Slack").

Every message is `{"text": fallback, "blocks": [...]}` in Slack mrkdwn within Slack's limits (a section's text
≤ 3000 characters, ≤ 10 fields, ≤ 50 blocks). Every string goes through `secrets.mask`, and text that came from
outside (errors, pg_dump's output) is escaped so it cannot inject links or mentions.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from easybackup.humanize import format_bytes, format_rate
from easybackup.scheduling.durations import format_duration
from easybackup.secrets import mask
from easybackup.storage.drillrecord import SUPERSEDED, no_failure

SECTION_MAX = 3000
FIELD_MAX = 2000
FIELDS_MAX = 10
BLOCKS_MAX = 50
TEXT_MAX = 3000  # the fallback text: Slack allows more but truncates notifications long before 40k
LINE_MAX = 300  # one line of pg_dump output, or one error, in a message
SHORT_ERROR_MAX = 200  # the error on the parent and in the summary
PARENT_LINES = 5  # last output lines on the edited parent
THREAD_LINES = 25  # last output lines in the thread
ELLIPSIS = "…"


@dataclass(frozen=True)
class RunInfo:
    """What a message needs to know about a run."""

    strategy: str
    run_id: str
    databases: tuple[str, ...]
    destination: str  # s3://bucket/prefix/
    timezone: str
    started_at: datetime  # aware
    every_database: bool = False  # all_databases: the worker lists them once the run starts

    def database_count(self) -> str:
        """`2 databases`, or what an all_databases run backs up before the worker has listed them."""
        if self.every_database:
            return "every database on the server" if not self.databases else \
                f"every database on the server (and {plural(len(self.databases), 'configured one')})"
        return plural(len(self.databases), "database")


# -- building blocks ------------------------------------------------------------------------------------------

def escape(text: str) -> str:
    """Given text from outside (an error, a line of output), return it masked and safe in mrkdwn: Slack's three
    control characters escaped, so `<!channel>` or `<http://x|y>` stay literal."""
    return mask(str(text)).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def clip(text: str, limit: int) -> str:
    """Given text and a length, return the text cut to at most `limit` characters, ending with … when cut."""
    return text if len(text) <= limit else text[: limit - 1] + ELLIPSIS


def one_line(text: str, limit: int = LINE_MAX) -> str:
    """Given any text, return it on one line (whitespace collapsed), cut to `limit`."""
    return clip(" ".join(str(text).split()), limit)


def section(text: str) -> dict:
    """Given mrkdwn text, return a section block (text cut to Slack's 3000 characters)."""
    return {"type": "section", "text": {"type": "mrkdwn", "text": clip(text, SECTION_MAX)}}


def fields_section(pairs: list[tuple[str, str]]) -> dict:
    """Given (label, value) pairs, return a section of `*label*\\nvalue` fields (at most 10, each cut)."""
    return {"type": "section", "fields": [{"type": "mrkdwn", "text": clip(f"*{label}*\n{value}", FIELD_MAX)}
                                          for label, value in pairs[:FIELDS_MAX]]}


def context(text: str) -> dict:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": clip(text, SECTION_MAX)}]}


def code_block(lines: list[str], max_lines: int, limit: int = SECTION_MAX) -> str:
    """Given output lines, return the last `max_lines` of them (each cut to one line) as a ``` code block of at
    most `limit` characters, dropping the oldest lines first; "" when there are none."""
    kept: list[str] = []
    size = len("```\n```") + len("…\n")
    for line in reversed([ln for ln in lines if ln.strip()][-max_lines:]):
        line = clip(escape(line.rstrip()).replace("```", "`\u200b``"), LINE_MAX)
        if size + len(line) + 1 > limit:
            break
        kept.insert(0, line)
        size += len(line) + 1
    if not kept:
        return ""
    cut = "…\n" if len(kept) < len([ln for ln in lines if ln.strip()]) else ""
    return "```\n" + cut + "\n".join(kept) + "\n```"


def payload(text: str, blocks: list[dict]) -> dict:
    """Given the fallback text and blocks, return a message body within Slack's limits, masked."""
    if len(blocks) > BLOCKS_MAX:
        hidden = len(blocks) - (BLOCKS_MAX - 1)
        blocks = blocks[: BLOCKS_MAX - 1] + [context(f"{ELLIPSIS} {hidden} more blocks not shown")]
    return {"text": clip(mask(text), TEXT_MAX), "blocks": _mask_blocks(blocks)}


def _mask_blocks(value):
    if isinstance(value, str):
        return mask(value)
    if isinstance(value, list):
        return [_mask_blocks(item) for item in value]
    if isinstance(value, dict):
        return {key: _mask_blocks(item) for key, item in value.items()}
    return value


def local_time(moment: datetime, timezone: str) -> str:
    """Given an aware instant and a timezone name, return `2024-06-17 05:00:00 CEST` in that timezone."""
    return moment.astimezone(ZoneInfo(timezone)).strftime("%Y-%m-%d %H:%M:%S %Z")


def duration(seconds: float | None) -> str:
    return "-" if seconds is None else format_duration(float(seconds))


def error_text(error: dict | None, full: bool = True) -> str:
    """Given an error dict (kind, message, detail, hint), return it escaped on one line: all of it, or (not
    `full`) only `[kind] message`, for the parent and the summary."""
    if not error:
        return "unknown error"
    text = f"[{error.get('kind') or 'error'}] {error.get('message') or 'failed'}"
    if full and error.get("detail"):
        text += f": {error['detail']}"
    if full and error.get("hint"):
        text += f" (hint: {error['hint']})"
    return escape(one_line(text, LINE_MAX if full else SHORT_ERROR_MAX))


def plural(count: int, word: str) -> str:
    return f"{count} {word}" + ("" if count == 1 else "s")


def thread_link(channel: str, ts: str, label: str = "thread") -> str:
    """Given a channel id and a message ts, return a mrkdwn link to that message (its thread)."""
    return f"<https://slack.com/archives/{channel}/p{ts.replace('.', '')}|{label}>"


# -- the messages of a run ------------------------------------------------------------------------------------

def started(run: RunInfo) -> dict:
    """The parent message: `Backup started: <strategy> — N databases → s3://…, started at <local time>`."""
    text = (f"Backup started: *{escape(run.strategy)}* — {run.database_count()} → "
            f"{escape(run.destination)}, started at {local_time(run.started_at, run.timezone)}")
    blocks = [section(f"⏳ {text}"), context(f"run `{escape(run.run_id)}` · " + ", ".join(
        f"`{escape(name)}`" for name in run.databases))]
    return payload(text, blocks)


def db_started(database: str) -> dict:
    return _reply(f"▶️ *{escape(database)}*: backup started")


def progress(database: str, stored: int, elapsed_s: float, parts: int | None) -> dict:
    """A progress reply: bytes stored so far and the rate since the database started."""
    rate = format_rate(stored / elapsed_s) if elapsed_s > 0 else "-"
    parts_text = f", {plural(parts, 'part')}" if parts else ""
    return _reply(f"⏳ *{escape(database)}*: {format_bytes(stored)} stored ({rate}){parts_text}, "
                  f"{duration(elapsed_s)} so far")


def retry(database: str, attempt, max_attempts, reason: str | None, delay_s) -> dict:
    return _reply(f"🔁 *{escape(database)}*: attempt {attempt}/{max_attempts} failed: "
                  f"{escape(one_line(reason or 'unknown reason'))} — retrying in {duration(delay_s)}")


def verified_text(outcome: dict) -> str:
    """Given a database's outcome, say which check verify.after_backup made: read back whole, or — encrypted, no
    identity on the host — only the ciphertext (sha256 and age header); nothing without verification."""
    level = outcome.get("verify_level")
    return {"full": " · verified", "ciphertext": " · verified: ciphertext only (no identity on this host)"}.get(
        level, "") if isinstance(level, str) else ""


def db_finished(event: dict) -> dict:
    """A reply for one database's outcome: size, duration and key, or the error."""
    name = escape(event.get("database") or "-")
    if event.get("status") == "success":
        warning = (f"\n⚠️ *{name}*: suspicious backup — {escape(one_line(event['suspicious']))}"
                   if isinstance(event.get("suspicious"), str) else "")
        return _reply(f"✅ *{name}*: {format_bytes(event.get('size'))} in {duration(event.get('duration_s'))} → "
                      f"`{escape(event.get('key') or '-')}`{verified_text(event)}{warning}")
    return _reply(f"❌ *{name}*: {escape(event.get('status') or 'failed')} after "
                  f"{duration(event.get('duration_s'))} — {error_text(event.get('error'))}")


def report(run: RunInfo, result: dict, output: dict[str, list[str]] | None = None) -> dict:
    """The final report reply: one line per database (status, size, duration, key or error), then on failure
    the last lines of output per failed database (from the error's last_lines, else `output[database]`)."""
    databases = result.get("databases") or []
    head = f"*Final report* — {_status_word(result)}, {_totals(result)}"
    lines = [_report_line(db) for db in databases] or [f"❌ {error_text(result.get('error'))}"]
    blocks = [section(head)] + [section(chunk) for chunk in _chunks(lines, SECTION_MAX)]
    for db, tail in _failed_output(result, output or {}):
        block = code_block(tail, THREAD_LINES, SECTION_MAX - 100)
        if block:
            blocks.append(section(f"Last lines of output from *{escape(db)}*:\n{block}"))
    return payload(f"Final report for {run.strategy}: {_status_word(result)}, {_totals(result)}", blocks)


def finished_parent(run: RunInfo, result: dict, output: dict[str, list[str]] | None = None) -> dict:
    """The parent's final state (chat.update): ✅/❌, the strategy, size, duration, key(s); on failure the error
    in one line and the last few lines of output."""
    ok = result.get("status") == "success"
    databases = result.get("databases") or []
    if ok:
        text = f"✅ Backup succeeded: *{escape(run.strategy)}* — {_totals(result)}"
    else:
        failed = [db for db in databases if db.get("status") != "success"]
        count = f"{len(failed)} of {plural(len(databases), 'database')} failed: " if databases else ""
        text = (f"❌ Backup failed: *{escape(run.strategy)}* — {count}{error_text(_first_error(result), False)} "
                f"— {_totals(result)}")
    blocks = [section(text), fields_section(_parent_fields(run, result))]
    if not ok:
        for db, tail in _failed_output(result, output or {})[:1]:
            block = code_block(tail, PARENT_LINES, 1500)
            if block:
                blocks.append(section(f"Last lines of output from *{escape(db)}*:\n{block}"))
    blocks.append(context(f"run `{escape(run.run_id)}` · started at {local_time(run.started_at, run.timezone)}"))
    return payload(text, blocks)


def summary(run: RunInfo, result: dict, link: str | None) -> dict:
    """The short top-level outcome summary for slack.channels.success/failure, linking to the thread."""
    ok = result.get("status") == "success"
    outcome = "succeeded" if ok else f"failed: {error_text(_first_error(result), False)}"
    text = f"{'✅' if ok else '❌'} *{escape(run.strategy)}*: backup {outcome} — {_totals(result)}"
    if link:
        text += f" · {link}"
    return payload(text, [section(text)])


def standalone(message: dict, strategy: str) -> dict:
    """Given a thread reply whose parent could not be posted, return it as a top-level message naming the
    strategy."""
    prefix = f"*{escape(strategy)}* (thread unavailable): "
    blocks = [dict(block) for block in message.get("blocks") or []]
    blocks.insert(0, context(prefix.rstrip(": ")))
    return payload(prefix + message.get("text", ""), blocks)


# -- the messages of a restore drill (issue 18) -----------------------------------------------------------------

def drill_started(run: RunInfo) -> dict:
    """The parent message of a drill: `Restore drill started: <strategy> — N databases, started at <local time>`."""
    text = (f"Restore drill started: *{escape(run.strategy)}* — {run.database_count()}, "
            f"started at {local_time(run.started_at, run.timezone)}")
    return payload(text, [section(f"🧪 {text}"), context(f"run `{escape(run.run_id)}`")])


def drill_db_started(database: str) -> dict:
    return _reply(f"▶️ *{escape(database)}*: restore drill started")


def drill_line(db: dict) -> str:
    """One database's drill outcome: restore time, tables, rows and size, why it was superseded, or the error."""
    name = escape(db.get("database") or "-")
    if db.get("status") == "success":
        return (f"✅ *{name}*: restored in {duration(db.get('restore_s'))} — {plural(db.get('tables') or 0, 'table')}, "
                f"{plural(db.get('rows') or 0, 'row')}, {format_bytes(db.get('restored_bytes'))} from "
                f"`{escape(db.get('key') or '-')}`")
    if db.get("status") == SUPERSEDED:
        return f"⏭️ *{name}*: superseded — {_why(db.get('error'))}"
    return f"❌ *{name}*: {escape(db.get('status') or 'failed')} — {error_text(db.get('error'))}"


def drill_reply(event: dict) -> dict:
    return _reply(drill_line(event))


def drill_report(run: RunInfo, result: dict) -> dict:
    """The drill's final report reply: one line per database, or the error that kept it from any."""
    word = _drill_word(result)
    head = f"*Restore drill {word}* in {duration(result.get('duration_s'))}"
    lines = [drill_line(db) for db in result.get("databases") or []] or [f"❌ {error_text(result.get('error'))}"]
    blocks = [section(head)] + [section(chunk) for chunk in _chunks(lines, SECTION_MAX)]
    return payload(f"Restore drill of {run.strategy}: {word}", blocks)


def drill_finished_parent(run: RunInfo, result: dict) -> dict:
    """The drill parent's final state (chat.update): passed, superseded or failed, the duration, the first error."""
    text = f"{_DRILL_ICONS[_drill_word(result)]} Restore drill {_drill_word(result)}: *{escape(run.strategy)}* — " \
        + _drill_outcome(result)
    return payload(text, [section(text), context(f"run `{escape(run.run_id)}` · started at "
                                                 f"{local_time(run.started_at, run.timezone)}")])


def drill_summary(run: RunInfo, result: dict, link: str | None) -> dict:
    """The short top-level outcome of a restore drill for slack.channels.success (passed, superseded) or
    .failure (failed), linking to its thread."""
    word = _drill_word(result)
    text = f"{_DRILL_ICONS[word]} *{escape(run.strategy)}*: restore drill {word} — {_drill_outcome(result)}"
    if link:
        text += f" · {link}"
    return payload(text, [section(text)])


_DRILL_ICONS = {"passed": "✅", "superseded": "⏭️", "failed": "❌"}


def _drill_word(result: dict) -> str:
    return {"success": "passed", SUPERSEDED: "superseded"}.get(result.get("status"), "failed")


def _drill_outcome(result: dict) -> str:
    """`1 database, 1003 rows in 4s`; superseded: how many passed and why one was not checked; failed: the first
    failure (a superseded database's reason only when nothing else failed)."""
    databases = result.get("databases") or []
    word = _drill_word(result)
    rows = sum(db.get("rows") or 0 for db in databases if db.get("status") == "success")
    if word == "passed":
        return f"{plural(len(databases), 'database')}, {plural(rows, 'row')} in {duration(result.get('duration_s'))}"
    if word == "superseded":
        passed = sum(1 for db in databases if db.get("status") == "success")
        first = next((db for db in databases if db.get("status") == SUPERSEDED), {})
        return (f"{passed}/{plural(len(databases), 'database')} passed, {escape(first.get('database') or '-')} "
                f"superseded: {_why(first.get('error'))}")
    failed = [db for db in databases if not no_failure(db.get("status")) and db.get("error")]
    return error_text(failed[0]["error"] if failed else result.get("error"), False)


def _why(error: dict | None) -> str:
    """A superseded database's reason on one line: `<key> was deleted while it was drilled: a newer backup…`."""
    parts = [str(error[key]) for key in ("message", "detail") if (error or {}).get(key)]
    return escape(one_line(": ".join(parts) or "its backup was deleted while it was drilled", SHORT_ERROR_MAX * 2))


# -- helpers --------------------------------------------------------------------------------------------------

def _reply(text: str) -> dict:
    return payload(text, [section(text)])


def _status_word(result: dict) -> str:
    return "succeeded" if result.get("status") == "success" else str(result.get("status") or "failed")


def _totals(result: dict) -> str:
    """`217 KiB stored from 1/2 databases in 4m 12s`."""
    databases = result.get("databases") or []
    size = sum(db.get("size") or 0 for db in databases if db.get("status") == "success")
    ok = sum(1 for db in databases if db.get("status") == "success")
    stored = f"{format_bytes(size)} stored" + (f" from {ok}/{len(databases)} databases" if databases else "")
    return f"{stored} in {duration(result.get('duration_s'))}"


def _first_error(result: dict) -> dict | None:
    for db in result.get("databases") or []:
        if db.get("status") != "success" and db.get("error"):
            return db["error"]
    return result.get("error")


def _report_line(db: dict) -> str:
    name = escape(db.get("database") or "-")
    if db.get("status") == "success":
        return (f"✅ *{name}* — {format_bytes(db.get('size'))} in {duration(db.get('duration_s'))} → "
                f"`{escape(db.get('key') or '-')}`{verified_text(db)}")
    return (f"❌ *{name}* — {escape(db.get('status') or 'failed')} after {duration(db.get('duration_s'))}: "
            f"{error_text(db.get('error'))}")


def _parent_fields(run: RunInfo, result: dict) -> list[tuple[str, str]]:
    databases = result.get("databases") or []
    fields = [("Status", _status_word(result)), ("Duration", duration(result.get("duration_s"))),
              ("Size", format_bytes(sum(db.get("size") or 0 for db in databases if db.get("status") == "success")))]
    keys = [db for db in databases if db.get("key")]
    room = FIELDS_MAX - len(fields)
    for db in keys[:room]:
        fields.append((escape(db.get("database") or "-"), f"`{escape(db['key'])}`"))
    if len(keys) > room:
        fields[-1] = ("More", f"{len(keys) - room + 1} more archives under {escape(run.destination)}")
    return fields


def _failed_output(result: dict, output: dict[str, list[str]]) -> list[tuple[str, list[str]]]:
    """Return (database, last lines) for each failed database that has any output to show."""
    found = []
    for db in result.get("databases") or []:
        if db.get("status") == "success":
            continue
        name = db.get("database") or "-"
        lines = list((db.get("error") or {}).get("last_lines") or []) or list(output.get(name) or [])
        if lines:
            found.append((name, lines))
    if not result.get("databases") and (result.get("error") or {}).get("last_lines"):
        found.append(("worker", list(result["error"]["last_lines"])))
    return found


def _chunks(lines: list[str], limit: int) -> list[str]:
    """Given lines, return them joined into texts of at most `limit` characters (a line longer is cut)."""
    chunks, current = [], ""
    for line in lines:
        line = clip(line, limit)
        if current and len(current) + 1 + len(line) > limit:
            chunks.append(current)
            current = line
        else:
            current = f"{current}\n{line}" if current else line
    if current:
        chunks.append(current)
    return chunks
