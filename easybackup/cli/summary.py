"""The end-of-run summary table of `easybackup once`: one row per database."""

from __future__ import annotations

from easybackup.humanize import format_bytes
from easybackup.scheduling.durations import format_duration

HEADERS = ("STRATEGY", "DATABASE", "STATUS", "SIZE", "DURATION", "KEY / ERROR")


def summary_rows(results: dict[str, dict]) -> list[tuple[str, ...]]:
    """Given {strategy: result fields}, return one row per database (or per strategy when none ran)."""
    rows = []
    for strategy, result in results.items():
        databases = result.get("databases") or []
        if not databases:
            rows.append((strategy, "-", str(result.get("status", "failed")), "-", "-",
                         _error_text(result.get("error"))))
        for db in databases:
            detail = db.get("key") if db.get("status") == "success" else _error_text(db.get("error"))
            duration = db.get("duration_s")
            rows.append((strategy, str(db.get("database")), str(db.get("status")), format_bytes(db.get("size")),
                         format_duration(duration) if duration is not None else "-", detail or "-"))
    return rows


def _error_text(error: dict | None) -> str:
    if not error:
        return "-"
    text = f"[{error.get('kind')}] {error.get('message')}"
    if error.get("detail"):
        text += f": {error['detail']}"
    if error.get("hint"):
        text += f" (hint: {error['hint']})"
    return " ".join(text.split())


def render_table(rows: list[tuple[str, ...]], headers: tuple[str, ...] = HEADERS) -> str:
    """Given rows of text cells, return an aligned plain-text table (the last column is not padded)."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=False)]
    lines = []
    for row in (headers, *rows):
        cells = [str(cell).ljust(width) for cell, width in zip(row[:-1], widths, strict=False)]
        lines.append("  ".join([*cells, str(row[-1])]))
    return "\n".join(lines)
