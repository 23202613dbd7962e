"""stderr shared by log lines and one status line: the status line is erased before a log line and drawn again
after it; nothing but log lines when stderr is not a terminal."""

from __future__ import annotations

import io

from easybackup.cli.restore import ProgressLine
from easybackup.logs import Console


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_log_line_erases_the_status_line_and_draws_it_again_below_itself():
    stream = Terminal()
    console = Console(stream)
    console.show("main/shop: 24.1 MiB stored, 8.8 MiB/s")
    console.write("2026-12-06T19:45:18.603+00:00 | INFO    | main | shop: backup succeeded\n")
    console.clear()
    console.write("after\n")
    assert stream.getvalue() == ("\r\x1b[Kmain/shop: 24.1 MiB stored, 8.8 MiB/s"
                                 "\r\x1b[K2026-12-06T19:45:18.603+00:00 | INFO    | main | shop: backup succeeded\n"
                                 "main/shop: 24.1 MiB stored, 8.8 MiB/s"
                                 "\r\x1b[Kafter\n")


def test_no_status_line_and_no_control_character_when_not_a_terminal():
    stream = io.StringIO()
    console = Console(stream)
    console.show("main/shop: 1 MiB stored")
    console.write("a log line\n")
    console.clear()
    progress = ProgressLine(100, stream=stream, interval=0)
    progress(50)
    progress.clear()
    assert stream.getvalue() == "a log line\n"


def test_restores_progress_line_is_the_consoles_status_line():
    stream = Terminal()
    progress = ProgressLine(1000, stream=stream, interval=0)
    progress(500)
    progress.console.write("a log line\n")
    progress.clear()
    shown = stream.getvalue()
    assert shown.startswith("\r\x1b[K500 B / 1000 B (50%)") and "\r\x1b[Ka log line\n500 B / 1000 B (50%)" in shown
    assert shown.endswith("\r\x1b[K")
