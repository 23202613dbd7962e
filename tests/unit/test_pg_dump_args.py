"""pg_dump.extra_args is read as pg_dump's getopt_long reads it: every spelling of an option easybackup sets
itself is refused, and nothing else is (tests/integration/test_pg_dump_extra_args.py checks the option table
against the installed pg_dump and shows that pg_dump itself reads these spellings so)."""

from __future__ import annotations

import pytest

from easybackup.config.pg_dump_args import reserved_uses

# (extra_args, index of the refused argument, what the reason names)
REFUSED = [
    (["--file=/tmp/x"], 0, "is pg_dump's --file"),
    (["--file", "/tmp/x"], 0, "is pg_dump's --file"),
    (["--fi=/tmp/x"], 0, "abbreviates pg_dump's --file"),
    (["--fil", "/tmp/x"], 0, "abbreviates pg_dump's --file"),
    (["-f/tmp/x"], 0, "-f (--file)"),
    (["-f", "/tmp/x"], 0, "-f (--file)"),
    (["-vf/tmp/x"], 0, "-f (--file)"),
    (["-vxf", "/tmp/x"], 0, "-f (--file)"),
    (["-Fp"], 0, "-F (--format)"),
    (["-vFp"], 0, "-F (--format)"),
    (["--fo=plain"], 0, "abbreviates pg_dump's --format"),
    (["--form", "plain"], 0, "abbreviates pg_dump's --format"),
    (["-Z9"], 0, "-Z (--compress)"),
    (["--comp=5"], 0, "abbreviates pg_dump's --compress"),
    (["--db", "other"], 0, "abbreviates pg_dump's --dbname"),
    (["-dother"], 0, "-d (--dbname)"),
    (["--ho=evil.example"], 0, "abbreviates pg_dump's --host"),
    (["-vhevil.example"], 0, "-h (--host)"),
    (["--po", "6432"], 0, "abbreviates pg_dump's --port"),
    (["--user=mallory"], 0, "abbreviates pg_dump's --username"),
    (["-Umallory"], 0, "-U (--username)"),
    (["--no-pass"], 0, "abbreviates pg_dump's --no-password"),
    (["--pas"], 0, "abbreviates pg_dump's --password"),
    (["-vW"], 0, "-W (--password)"),
    (["--f=/tmp/x"], 0, "is ambiguous to pg_dump (--file, --format) and may mean --file or --format"),
    (["--no-p"], 0, "may mean --no-password"),
    (["--no-owner", "mydb", "-f/tmp/x"], 2, "-f (--file)"),  # options after a non-option argument still count
    (["-t", "t1", "--file", "/tmp/x"], 2, "is pg_dump's --file"),
]

ALLOWED = [
    ["--no-owner", "--exclude-table=audit_log"],
    ["-t", "-f"],  # a table named -f: the value of -t, whatever it looks like
    ["--table", "--file=/tmp/x"],
    ["-t-f/tmp/x"],  # -t with the attached value `-f/tmp/x`
    ["-n", "public", "-vx", "-j", "4"],
    ["--exclude-table-data", "-Fp"],
    ["--schema=--format"],
    ["--", "-f"],  # after `--` nothing is an option (pg_dump refuses the extra argument itself)
    ["--no-owner", "--no-acl", "--no-comments", "--if-exists", "--clean"],
    ["--lock-wait-timeout=10s", "--no-sync", "--rows-per-insert", "100"],
    ["--role=-Z9"],
    ["--inserts", "--on-conflict-do-nothing", "--no-priv"],
]


@pytest.mark.parametrize("args,index,reason", REFUSED, ids=[" ".join(case[0]) for case in REFUSED])
def test_every_spelling_of_an_option_easybackup_sets_is_refused(args, index, reason):
    [use] = reserved_uses(args)
    assert use.index == index and use.argument == args[index]
    assert reason in use.why


@pytest.mark.parametrize("args", ALLOWED, ids=[" ".join(case) for case in ALLOWED])
def test_other_options_and_values_that_look_like_options_pass(args):
    assert reserved_uses(args) == []


def test_a_reserved_spelling_is_one_line_naming_its_path_through_the_config_loader(tmp_path):
    from easybackup.config import load_config
    from easybackup.errors import ConfigError

    config = tmp_path / "c.yaml"
    config.write_text("global:\n  s3: {bucket: my-bucket}\nstrategies:\n  - name: app\n"
                      "    database_url: postgres://u@db/app\n    pg_dump: {extra_args: [--no-owner, -vf/tmp/x]}\n")
    with pytest.raises(ConfigError) as refused:
        load_config(str(config), environ={})
    [problem] = refused.value.problems
    assert problem.startswith("strategies[0] (app).pg_dump.extra_args[1]: '-vf/tmp/x' passes pg_dump's -f (--file), "
                              "which is set by easybackup")
