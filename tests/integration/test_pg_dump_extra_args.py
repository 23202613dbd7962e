"""The option table of easybackup/config/pg_dump_args.py is the installed pg_dump 15's, asked of pg_dump itself,
and pg_dump really reads the abbreviated and combined spellings the check refuses as its --file option: it writes
the dump there and nothing to stdout, which easybackup would otherwise have stored as an empty archive."""

from __future__ import annotations

import re
import string
import subprocess

import pytest

from easybackup.config.pg_dump_args import LONG_OPTIONS, SHORT_OPTIONS, reserved_uses
from easybackup.engines.postgres import pg_dump_version


def stderr_of(*args: str) -> str:
    """pg_dump's complaint about its arguments (it never connects: no server listens on that socket dir)."""
    return subprocess.run(["pg_dump", "--no-password", *args], capture_output=True, text=True, timeout=30,
                          env={"PATH": "/usr/bin:/bin", "PGHOST": "/nonexistent", "LANG": "C"}).stderr


def installed_long_options() -> dict[str, bool]:
    """Every long option the installed pg_dump knows, and whether it takes a value. getopt_long names them:
    `--<letter>` is ambiguous (it lists the names), or it is one option that then needs a value (`requires an
    argument`) or takes none (`--<letter>=x`: `doesn't allow an argument`), or no option at all."""
    names = set()
    for letter in "abcdefghijklmnopqrstuvwxyz":
        err = stderr_of(f"--{letter}")
        listed = re.search(r"is ambiguous; possibilities: (.*)", err)
        if listed:
            names |= set(re.findall(r"'--([a-z-]+)'", listed.group(1)))
        elif "requires an argument" in err:
            names.add(re.search(r"option '--([a-z-]+)' requires", err).group(1))
        elif "unrecognized option" not in err:
            names.add(re.search(r"option '--([a-z-]+)' doesn't allow", stderr_of(f"--{letter}=x")).group(1))
    return {name: "requires an argument" in stderr_of(f"--{name}") for name in sorted(names)}


def test_the_option_table_is_the_installed_pg_dump_15s():
    assert pg_dump_version().split(".")[0] == "15", "the table is pg_dump 15's; check it against this pg_dump"
    assert installed_long_options() == {name: takes for name, (_what, takes) in sorted(LONG_OPTIONS.items())}
    help_text = subprocess.run(["pg_dump", "--help"], capture_output=True, text=True, timeout=30).stdout
    pairs = re.findall(r"^\s+-(\w), --([a-z-]+)", help_text, re.M)
    assert len(pairs) >= 25
    for letter, name in pairs:
        assert LONG_OPTIONS[name][0] == letter
        assert (f"{letter}:" in SHORT_OPTIONS) == LONG_OPTIONS[name][1], letter
    for letter in string.ascii_letters:  # -V and -? count only as the first argument, which is never ours
        err = stderr_of(f"-{letter}")
        assert ("invalid option" not in err) == (letter in SHORT_OPTIONS), letter
        assert ("requires an argument" in err) == (f"{letter}:" in SHORT_OPTIONS), letter


@pytest.mark.parametrize("spelling", [["--fi=OUT"], ["--fil", "OUT"], ["-vfOUT"], ["-vf", "OUT"]])
def test_pg_dump_really_reads_these_spellings_as_its_file_option(pg, tmp_path, spelling):
    out = tmp_path / "written-here.sql"
    args = [arg.replace("OUT", str(out)) for arg in spelling]
    assert reserved_uses(args), "refused by the check"
    done = subprocess.run(["pg_dump", "--no-password", "--format=plain", *args, "--dbname", "postgres"],
                          env=pg.env(), capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout == b"", "nothing on stdout: easybackup would have stored an empty archive"
    assert b"-- PostgreSQL database dump complete" in out.read_bytes()
