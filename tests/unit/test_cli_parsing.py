"""The command line's pure parts: where the command word is among global options, and which broken pipe is the
reader of stdout going away (the rest runs as typed in tests/integration/test_command_line.py)."""

from __future__ import annotations

import os
import sys

import pytest

from easybackup import exitcodes
from easybackup.cli import _quiet_when_stdout_closes, with_default_command


@pytest.mark.parametrize(("argv", "expected", "command"), [
    ([], ["run"], "run"),
    (["validate"], ["validate"], "validate"),
    (["-c", "x.yaml", "validate"], ["-c", "x.yaml", "validate"], "validate"),
    (["-c", "validate", "list"], ["-c", "validate", "list"], "list"),  # a config file named like a command
    (["--config", "run"], ["run", "--config", "run"], "run"),
    (["--config=x.yaml", "once"], ["--config=x.yaml", "once"], "once"),
    (["-cx.yaml", "once"], ["-cx.yaml", "once"], "once"),
    (["--conf", "x.yaml", "prune"], ["--conf", "x.yaml", "prune"], "prune"),
    (["--log-format", "json", "run", "-c", "d.yaml"], ["--log-format", "json", "run", "-c", "d.yaml"], "run"),
    (["--log-level", "debug", "--env-file", "e", "verify"], ["--log-level", "debug", "--env-file", "e", "verify"],
     "verify"),
    (["-c", "x.yaml"], ["run", "-c", "x.yaml"], "run"),
    (["--log-format", "json"], ["run", "--log-format", "json"], "run"),
    (["valdate"], ["valdate"], "valdate"),  # not a command: argparse names it
    (["--help"], ["--help"], None),
    (["-c", "x.yaml", "--version"], ["-c", "x.yaml", "--version"], None),
])
def test_the_command_is_found_past_the_global_options_and_run_is_the_default(argv, expected, command):
    assert with_default_command(argv) == (expected, command)


def test_a_broken_pipe_to_stdout_with_its_reader_gone_ends_quietly_with_141(monkeypatch):
    reader, writer = os.pipe()
    os.close(reader)
    stream = os.fdopen(writer, "w")
    monkeypatch.setattr(sys, "stdout", stream)

    def prints() -> int:
        print("x" * 100_000)
        return exitcodes.OK

    try:
        assert _quiet_when_stdout_closes(prints) == exitcodes.OUTPUT_CLOSED
        print("later output goes nowhere", flush=True)
    finally:
        stream.close()


def test_a_broken_pipe_that_is_not_stdout_still_raises(monkeypatch, tmp_path):
    stream = open(tmp_path / "stdout", "w")  # noqa: SIM115 — closed below
    monkeypatch.setattr(sys, "stdout", stream)

    def writes_to_a_dead_child() -> int:
        raise BrokenPipeError(32, "Broken pipe")  # e.g. pg_restore's stdin after pg_restore exited

    try:
        with pytest.raises(BrokenPipeError):
            _quiet_when_stdout_closes(writes_to_a_dead_child)
    finally:
        stream.close()
