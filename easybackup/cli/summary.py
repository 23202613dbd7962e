"""The end-of-run summary of `easybackup once`: one row per database, then each failure in full.

    STRATEGY  DATABASE  STATUS     ATTEMPTS  SIZE    DURATION  KEY / ERROR
    main      app       success    1         1.2 MB  3s        backups/main/app/2024-05-01T020000Z.dump.gz
    main      billing   failed     1         -       0s        [not_found] pg_dump of database billing failed: ...

    main/billing failed after 1 attempt: [not_found] pg_dump of database billing failed: ...
      detail: pg_dump exited with code 1
      hint: check the database name billing in the strategy's database URL, or create it
      last lines:
        pg_dump: error: connection to server ... failed: FATAL:  database "billing" does not exist
"""

from __future__ import annotations

from easybackup.humanize import format_bytes
from easybackup.scheduling.durations import format_duration

HEADERS = ("STRATEGY", "DATABASE", "STATUS", "ATTEMPTS", "SIZE", "DURATION", "KEY / ERROR")
SHOWN_LAST_LINES = 5


def summary_rows(results: dict[str, dict]) -> list[tuple[str, ...]]:
    """Given {strategy: result fields}, return one row per database (or per strategy when none ran)."""
    rows = []
    for strategy, result in results.items():
        databases = result.get("databases") or []
        if not databases:
            rows.append((strategy, "-", str(result.get("status", "failed")), "-", "-", "-",
                         _error_text(result.get("error"))))
        for db in databases:
            detail = db.get("key") if db.get("status") == "success" else _error_text(db.get("error"))
            duration = db.get("duration_s")
            attempts = db.get("attempts")
            rows.append((strategy, str(db.get("database")), str(db.get("status")),
                         str(attempts) if attempts is not None else "-", format_bytes(db.get("size")),
                         format_duration(duration) if duration is not None else "-", detail or "-"))
    return rows


def failure_details(results: dict[str, dict]) -> str:
    """Given {strategy: result fields}, return each failed database (or failed run without databases) in full:
    kind and message, attempts, detail, hint and its last lines; '' when nothing failed."""
    blocks = []
    for strategy, result in results.items():
        databases = result.get("databases") or []
        if not databases and result.get("status") != "success" and result.get("error"):
            blocks.append(_failure_block(f"{strategy}", str(result.get("status", "failed")), None,
                                         result["error"]))
        for db in databases:
            if db.get("status") != "success" and db.get("error"):
                blocks.append(_failure_block(f"{strategy}/{db.get('database')}", str(db.get("status")),
                                             db.get("attempts"), db["error"]))
    return "\n\n".join(blocks)


def _failure_block(where: str, status: str, attempts: int | None, error: dict) -> str:
    after = f" after {attempts} attempt{'s' if attempts != 1 else ''}" if attempts else ""
    lines = [f"{where} {status}{after}: [{error.get('kind')}] {_one_line(error.get('message'))}"]
    if error.get("detail"):
        lines.append(f"  detail: {_one_line(error['detail'])}")
    if error.get("hint"):
        lines.append(f"  hint: {_one_line(error['hint'])}")
    last = [line for line in error.get("last_lines") or [] if str(line).strip()][-SHOWN_LAST_LINES:]
    if last:
        lines.append("  last lines:")
        lines.extend(f"    {line}" for line in last)
    return "\n".join(lines)


def _one_line(text) -> str:
    return " ".join(str(text or "").split())


def _error_text(error: dict | None) -> str:
    if not error:
        return "-"
    text = f"[{error.get('kind')}] {error.get('message')}"
    if error.get("detail"):
        text += f": {error['detail']}"
    if error.get("hint"):
        text += f" (hint: {error['hint']})"
    return _one_line(text)


def printable(cell) -> str:
    """Given a table cell, return its text with control characters escaped: a database name holding a newline
    or a terminal escape sequence must not break a row or drive the operator's terminal."""
    text = str(cell)
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


def render_table(rows: list[tuple[str, ...]], headers: tuple[str, ...] = HEADERS) -> str:
    """Given rows of text cells, return an aligned plain-text table (the last column is not padded)."""
    rows = [tuple(printable(cell) for cell in row) for row in rows]
    widths = [max(len(cell) for cell in column) for column in zip(headers, *rows, strict=False)]
    lines = []
    for row in (headers, *rows):
        cells = [cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=False)]
        lines.append("  ".join([*cells, row[-1]]))
    return "\n".join(lines)


def render_summary(results: dict[str, dict]) -> str:
    """Given {strategy: result fields}, return the table and, below it, every failure in full."""
    details = failure_details(results)
    table = render_table(summary_rows(results))
    return f"{table}\n\n{details}" if details else table
