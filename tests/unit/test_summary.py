"""The summary tables `once` and `list` print."""

from __future__ import annotations

from easybackup.cli.summary import render_table


def test_a_summary_table_escapes_control_characters_in_names():
    table = render_table([("main", "evil\nname\x1b[31m", "success", "1 KiB", "1s", "key")])
    assert len(table.splitlines()) == 2
    assert "\\n" in table and "\\x1b" in table and "\x1b" not in table
