"""The command line as an operator types it (bin/easybackup, bin/easybackup-once): global options before or after
the command, output into a pipe whose reader goes away (`| head -1`), and the exit codes the README documents."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest
import yaml

from easybackup import exitcodes
from tests.harness.configs import EASYBACKUP, REPO, cli_env, restore_target, run_cli, write_config
from tests.harness.daemon import Daemon, monitoring
from tests.harness.net import free_port
from tests.harness.restore import archive_keys, manifest_keys

SOURCE = "cli_src"
EASYBACKUP_ONCE = [EASYBACKUP[0], str(REPO / "bin" / "easybackup-once")]


@pytest.fixture(scope="module")
def source_db(pg) -> str:
    pg.create_database(SOURCE)
    pg.psql("CREATE TABLE items AS SELECT g AS id, md5(g::text) AS digest FROM generate_series(1, 2000) g", SOURCE)
    return SOURCE


@pytest.fixture(scope="module")
def backed_up(pg, moto, source_db, tmp_path_factory) -> Path:
    """A config with one strategy `main` and one backup of SOURCE in its own bucket; returns the config's path."""
    bucket = moto.create_bucket("cli-typed")
    config = write_config(tmp_path_factory.mktemp("typed"), bucket=bucket, endpoint=moto.endpoint,
                          strategies=[{"name": "main", "database_url": pg.url(source_db)}])
    done = run_cli("once", "-c", str(config))
    assert done.returncode == 0, done.stdout + done.stderr
    return config


def offline_config(tmp_path: Path, strategies: int = 1, name: str = "config.yaml") -> Path:
    """Write a config `validate` accepts without reaching anything; return its path."""
    document = {"global": {"s3": {"bucket": "typed-bucket"}},
                "strategies": [{"name": f"s{index}", "database_url": f"postgres://u@db/app{index}"}
                               for index in range(strategies)]}
    path = tmp_path / name
    path.write_text(yaml.safe_dump(document))
    path.chmod(0o600)
    return path


def json_log_lines(stderr: str) -> list[dict]:
    """Given stderr, return its log lines parsed as JSON; fail on a line that is not one object."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert lines, "nothing was logged"
    for line in lines:
        assert line.startswith("{"), f"not a JSON log line: {line!r}\n{stderr[-3000:]}"
    return [json.loads(line) for line in lines]


# ---------------------------------------------------------------------------------- global options anywhere


@pytest.mark.parametrize("order", [
    ("-c", "{config}", "validate"),
    ("validate", "-c", "{config}"),
    ("--config", "{config}", "validate"),
    ("--config={config}", "validate"),
    ("--conf", "{config}", "validate"),  # an abbreviation, as argparse allows it after the command
    ("-c{config}", "validate"),
    ("--log-level", "debug", "-c", "{config}", "validate"),
    ("--log-level", "debug", "validate", "-c", "{config}", "--log-format", "json"),
])
def test_global_options_go_before_or_after_the_command(tmp_path, order):
    config = offline_config(tmp_path)
    done = run_cli(*(word.format(config=config) for word in order))

    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"{config}: valid, 1 strategy")


def test_help_shows_the_global_options_before_the_command():
    done = run_cli("--help")

    assert done.returncode == 0
    usage = " ".join(done.stdout.split("\n\n")[0].split())
    assert usage.startswith("usage: easybackup [-h] [-c CONFIG]") and usage.endswith("COMMAND ...")
    assert "before or after COMMAND" in " ".join(done.stdout.split())
    assert "SUPPRESS" not in done.stdout and "worker" not in done.stdout  # the internal command stays hidden


def test_a_global_option_given_before_and_after_the_command_takes_the_one_after(tmp_path):
    good, missing = offline_config(tmp_path), tmp_path / "missing.yaml"

    after_wins = run_cli("-c", str(missing), "validate", "-c", str(good))
    assert after_wins.returncode == 0, after_wins.stderr
    assert after_wins.stdout.startswith(f"{good}: valid")

    after_missing = run_cli("-c", str(good), "validate", "-c", str(missing))
    assert after_missing.returncode == 2
    assert f"error: {missing}: config file not found" in after_missing.stderr


def test_an_unknown_command_after_global_options_is_named(tmp_path):
    done = run_cli("-c", str(offline_config(tmp_path)), "valdate")

    assert done.returncode == 2
    assert "invalid choice: 'valdate'" in done.stderr and "Traceback" not in done.stderr


def test_global_options_before_once_and_with_easybackup_once_apply_to_the_run(pg, moto, bucket, tmp_path,
                                                                              source_db):
    config = write_config(tmp_path, bucket=bucket, endpoint=moto.endpoint, log_level="warning",
                          strategies=[{"name": "main", "database_url": pg.url(source_db)}])
    before = run_cli("--log-format", "json", "--log-level", "info", "-c", str(config), "once")
    assert before.returncode == 0, before.stdout + before.stderr
    assert any("started" in json.dumps(entry) for entry in json_log_lines(before.stderr))

    once = subprocess.run([*EASYBACKUP_ONCE, "--log-format", "json", "--log-level", "info", "-c", str(config),
                           "--strategy", "main"], env=cli_env(), capture_output=True, text=True, timeout=300)
    assert once.returncode == 0, once.stdout + once.stderr
    json_log_lines(once.stderr)
    assert len(manifest_keys(moto, bucket)) == 2


def test_options_before_run_apply_and_sigint_stops_an_idle_supervisor_with_130(moto, bucket, tmp_path):
    port = free_port()
    config = write_config(tmp_path, bucket=bucket, endpoint=moto.endpoint, log_level="warning",
                          monitoring=monitoring(port), schedule="1w", catch_up=False,
                          strategies=[{"name": "main", "database_url": "postgres://u:p@127.0.0.1:9/none"}])
    daemon = Daemon(config, port, tmp_path / "run.log",
                    args=("--log-format", "json", "--log-level", "info", "run", "-c", str(config)))
    try:
        daemon.wait_health(lambda doc: doc is not None, what="health to answer")
        daemon.wait_log("supervisor started")
        daemon.send(signal.SIGINT)
        assert daemon.process.wait(30) == 130, daemon.log_text()[-3000:]
    finally:
        daemon.kill()
    assert "received SIGINT" in daemon.log_text()
    json_log_lines(daemon.log_text())


# ------------------------------------------------------------------------------------------------- pipes


def run_into_closed_pipe(*args: str, command=EASYBACKUP, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the CLI with stdout a pipe whose reader has already gone (what `| head -1` leaves once head exits)."""
    reader, writer = os.pipe()
    os.close(reader)
    try:
        return subprocess.run([*command, *args], env=env or cli_env(), stdout=writer, stderr=subprocess.PIPE,
                              stdin=subprocess.DEVNULL, text=True, timeout=300)
    finally:
        os.close(writer)


def assert_quiet_141(done: subprocess.CompletedProcess) -> None:
    assert done.returncode == 141, done.stderr
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr and "Exception ignored" \
        not in done.stderr, done.stderr


@pytest.mark.parametrize("command", [
    ("validate",),
    ("list",),
    ("list", "--json"),
    ("verify",),
    ("prune", "--dry-run"),
])
def test_every_command_that_prints_exits_141_quietly_when_its_reader_is_gone(backed_up, command):
    assert_quiet_141(run_into_closed_pipe(command[0], "-c", str(backed_up), *command[1:]))


def test_once_and_restore_do_their_work_then_exit_141_quietly_when_their_reader_is_gone(pg, moto, backed_up):
    before = len(archive_keys(moto, "cli-typed"))
    assert_quiet_141(run_into_closed_pipe("-c", str(backed_up), command=EASYBACKUP_ONCE))
    assert len(archive_keys(moto, "cli-typed")) == before + 1

    pg.create_database("cli_restored")
    target, with_password = restore_target(pg.url("cli_restored"))
    assert_quiet_141(run_into_closed_pipe("restore", "-c", str(backed_up), "--target-url", target, env=with_password))
    assert pg.table_fingerprints("cli_restored") == pg.table_fingerprints(SOURCE)


def test_help_and_version_into_a_closed_pipe_print_no_traceback():
    for args in (("--help",), ("--version",), ("validate", "--help")):
        done = run_into_closed_pipe(*args)
        assert done.returncode in (0, 141) and "Traceback" not in done.stderr, done.stderr


def test_a_command_started_with_stdout_closed_still_succeeds(tmp_path):
    line = " ".join(f"'{word}'" for word in [*EASYBACKUP, "validate", "-c", str(offline_config(tmp_path))])
    done = subprocess.run(["bash", "-c", f"{line} >&-"], env=cli_env(), capture_output=True, text=True, timeout=60)

    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr


def head_1(*args: str) -> subprocess.CompletedProcess:
    """Run `easybackup ARGS | head -1` in bash with pipefail, so the exit code is easybackup's."""
    line = " ".join(f"'{word}'" for word in [*EASYBACKUP, *args])
    return subprocess.run(["bash", "-c", f"set -o pipefail; {line} | head -1"], env=cli_env(), capture_output=True,
                          text=True, timeout=300)


def test_validate_into_head_1_prints_one_line_and_exits_141_quietly(tmp_path):
    # Far more than a pipe holds (64 KiB): easybackup is still writing when head exits, every time.
    config = offline_config(tmp_path, strategies=400)
    done = head_1("validate", "-c", str(config))

    assert done.stdout == f"{config}: valid, 400 strategies\n"
    assert_quiet_141(done)


def test_list_json_into_head_1_prints_one_line_and_exits_141_quietly(moto, backed_up):
    # Copies of the one real backup's manifest under other run timestamps: `list --json` then prints ~250 kB.
    client = moto.client()
    [manifest] = manifest_keys(moto, "cli-typed")[:1]
    body = client.get_object(Bucket="cli-typed", Key=manifest)["Body"].read().decode()
    stamp = manifest.rsplit("/", 1)[1].split(".")[0]
    for day in range(300):
        other = f"2001-{1 + day // 28:02d}-{1 + day % 28:02d}T000000Z"
        client.put_object(Bucket="cli-typed", Key=manifest.replace(stamp, other), Body=body.replace(stamp, other))
    try:
        done = head_1("list", "-c", str(backed_up), "--json")
        assert done.stdout == "{\n"
        assert_quiet_141(done)
    finally:
        for key in manifest_keys(moto, "cli-typed"):
            if "/2001-" in key:
                client.delete_object(Bucket="cli-typed", Key=key)


# -------------------------------------------------------------------------------------- restore exit codes


@pytest.mark.parametrize("choice", ["2020-01-01", "2020-01-01T000000Z",
                                    "backups/main/cli_src/2020-01-01T000000Z.dump.gz"])
def test_restore_of_a_backup_that_does_not_exist_is_bad_usage_and_changes_nothing(pg, backed_up, choice):
    pg.create_database("cli_untouched")
    target, with_password = restore_target(pg.url("cli_untouched"))
    done = run_cli("restore", "-c", str(backed_up), "--target-url", target, "--backup", choice, env=with_password,
                   stdin=subprocess.DEVNULL)

    assert done.returncode == 2, done.stdout + done.stderr
    [line, *_] = [line for line in done.stderr.splitlines() if line.strip()]
    assert line.startswith("error: no ") and choice in line and "easybackup list" in line
    assert "Traceback" not in done.stderr
    assert pg.table_fingerprints("cli_untouched") == {}


def test_restore_with_create_into_a_non_empty_database_says_to_pick_a_new_name_or_clean(pg, backed_up):
    pg.create_database("cli_full")
    pg.psql("CREATE TABLE kept (id int); INSERT INTO kept VALUES (1)", "cli_full")
    before = pg.table_fingerprints("cli_full")
    target, with_password = restore_target(pg.url("cli_full"))
    done = run_cli("restore", "-c", str(backed_up), "--target-url", target, "--create", "--yes", env=with_password,
                   stdin=subprocess.DEVNULL)

    assert done.returncode == 2, done.stdout + done.stderr
    assert "database cli_full is not empty (1 user tables); nothing was changed" in done.stderr
    assert "name a database that does not exist yet in --target-url, or add --clean" in done.stderr
    assert "add --create" not in done.stderr and "with --create" not in done.stderr
    assert pg.table_fingerprints("cli_full") == before

    without = run_cli("restore", "-c", str(backed_up), "--target-url", target, env=with_password,
                      stdin=subprocess.DEVNULL)
    assert without.returncode == 2
    assert "name a database that does not exist yet in --target-url and add --create, or add --clean" \
        in without.stderr


# ---------------------------------------------------------------------------------- schedules people write


def test_validate_refuses_schedules_people_write_naming_the_strategy_the_field_and_the_nearest_schedule(tmp_path):
    phrases = {"nightly-app": "every day", "hourly-app": "hourly", "six-app": "every 6 hours", "one-app": "1 day"}
    document = {"global": {"s3": {"bucket": "typed-bucket"}, "schedule": "daily"},
                "strategies": [{"name": name, "database_url": f"postgres://u@db/{name}", "schedule": text}
                               for name, text in phrases.items()]}
    path = tmp_path / "phrases.yaml"
    path.write_text(yaml.safe_dump(document))
    path.chmod(0o600)
    done = run_cli("validate", "-c", str(path))

    assert done.returncode == 2, done.stdout + done.stderr
    forms = "(use <n><unit> with unit s, m, h, d or w and an optional @offset, e.g. 6h, 1d@02:30, 1w@sun-03:00, " \
            "or a 5-field cron expression such as 0 3 * * *)"
    assert done.stderr.splitlines() == [
        f"error: global.schedule: 'daily' is not a valid schedule; did you mean \"1d\"? {forms}",
        f"error: strategies[0] (nightly-app).schedule: 'every day' is not a valid schedule; did you mean "
        f"\"1d\"? {forms}",
        f"error: strategies[1] (hourly-app).schedule: 'hourly' is not a valid schedule; did you mean "
        f"\"1h\"? {forms}",
        f"error: strategies[2] (six-app).schedule: 'every 6 hours' is not a valid schedule; did you mean "
        f"\"6h\"? {forms}",
        f"error: strategies[3] (one-app).schedule: '1 day' is not a valid schedule; did you mean \"1d\"? "
        f"{forms}",
        "hint: see the Configuration reference in README.md",
    ]
    assert done.stdout == ""


def test_the_readme_lists_every_exit_code_a_command_returns():
    text = (REPO / "README.md").read_text()
    section = text.split("### The command line and exit codes", 1)[1].split("\n## ", 1)[0]
    listed = {int(line.split("`")[1]) for line in section.splitlines() if line.startswith("| `")}
    codes = {exitcodes.OK, exitcodes.FAILED, exitcodes.CONFIG_ERROR, exitcodes.INTERRUPTED, exitcodes.TERMINATED,
             exitcodes.OUTPUT_CLOSED}
    assert listed == codes
