"""Secrets never leak: a database password, an AWS secret key and a Slack token, given only in the config file
(mode 0600), appear in no log line, no Slack call, no health or metrics body, no manifest or run record in S3,
and in the argv or environment of no process easybackup starts — through `easybackup once` and `easybackup run`,
in a run that succeeds and in one that fails (a database missing, S3 throttled at first), for a PostgreSQL and a
MariaDB database alike.

Every process the command starts is watched two ways: /proc/*/cmdline and /proc/*/environ of each descendant
are polled while it runs, and the tools it starts (pg_dump, psql, mariadb-dump, mariadb, the compressors) are
wrappers on PATH that
record their own argv and environment before they exec the real tool. The test process passes no secret in
the environment, so a hit in any environment is a real leak.

Long secrets (8 characters or more) must appear nowhere, as any substring. Short ones (a database password
`backup`, an S3 secret key `test`) are everyday words that legitimately appear in the output ("pwdb: backup
started", `auth.test`), so for them the sweep checks every place a secret stands (README, "Logging"): a URL's
user-info (`://user:backup@`), the value after `=` (`PGPASSWORD=backup`, `--password=backup`), the value of a
secret-named field or option (`"secret_key": "test"`, `--password backup`), a whole argv element or environment
value, and an HTTP header's value.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from tests.harness.configs import EASYBACKUP, cli_env, run_cli, write_config
from tests.harness.daemon import monitoring
from tests.harness.net import free_port

DB_PASSWORD = "Pw-Zq9-secret-7781"
AWS_SECRET = "AwsSecret-XY42-9911"
SLACK_TOKEN = "xoxb-4242-SLACKSECRET"
PRUNE_SECRET = "PruneSecret-QW77-3141"  # s3.prune_credentials: the worker's retention deletes with it
SECRETS = (DB_PASSWORD, AWS_SECRET, SLACK_TOKEN, PRUNE_SECRET)
SHORT_DB_PASSWORD = "backup"  # too short to mask in free text: `validate` warns about both
SHORT_AWS_SECRET = "test"
SHORT_SECRETS = (SHORT_DB_PASSWORD, SHORT_AWS_SECRET)
ROLE = "secretive"
SHORT_ROLE = "shortpw"
SHORT_DATABASE = "secrets_short"
DATABASE = "secrets_app"
CHANNEL = "C0123456789"
MYSQL_DATABASE = "secrets_shop"
WRAPPED_TOOLS = ("pg_dump", "psql", "mariadb-dump", "mariadb", "pigz", "gzip", "zstd")


def hits(text: str | bytes, where: str) -> list[str]:
    """Given any text and where it came from, return a description of each secret found in it: a long secret
    anywhere, a short one where a secret stands (`short_hits`)."""
    data = text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass")
    return [f"{secret!r} in {where}" for secret in SECRETS if secret.encode() in data] + short_hits(data, where)


def _standing(secret: str) -> re.Pattern:
    """Where a short secret stands: URL user-info, after `=`, as a secret-named field's or option's value."""
    s = re.escape(secret)
    end = r"(?![\w\-/+%~]|\.\w)"
    return re.compile(
        rf"://[^\s/@:]*:{s}@|={s}{end}"
        rf"|(?<![\w-])[\w-]*(?i:password|passwd|secret|token|key)[\"']?[ \t]*[:=,]?[ \t]*[\"']?[ \t]*{s}{end}".encode())


_STANDING = {secret: _standing(secret) for secret in SHORT_SECRETS}


def short_hits(data: bytes, where: str) -> list[str]:
    """Given bytes and where they came from, return each short secret found where a secret stands; in NUL-separated
    /proc records (argv, environment) also as a whole element or a whole `NAME=value` value."""
    found = []
    for secret, pattern in _STANDING.items():
        elements = data.split(b"\0") if b"\0" in data else []
        match = pattern.search(data)
        if match or any(e == secret.encode() or e.endswith(b"=" + secret.encode()) for e in elements):
            context = data[max(0, match.start() - 60):match.end() + 20] if match else b""
            found.append(f"{secret!r} (short) where it stands in {where}: {context!r}")
    return found


# ------------------------------------------------------------------------------------------ watching processes


def _parent_of(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


class ProcessWatcher:
    """Polls /proc every few ms while a command runs: the argv and environment of every process descended from
    `root` (the supervisor, its workers and their children), every version of them (after an exec too)."""

    def __init__(self, root: int):
        self.root = root
        self.seen: dict[tuple[int, str], bytes] = {}  # (pid, what) -> content, one entry per distinct content
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="process-watcher", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.poll()
            time.sleep(0.005)

    def poll(self) -> None:
        family = {self.root}
        parents = {int(entry): _parent_of(int(entry)) for entry in os.listdir("/proc") if entry.isdigit()}
        grew = True
        while grew:  # descendants: children of anything already in the family
            before = len(family)
            family |= {pid for pid, parent in parents.items() if parent in family}
            grew = len(family) > before
        for pid in family:
            for what in ("cmdline", "environ"):
                try:
                    content = Path(f"/proc/{pid}/{what}").read_bytes()
                except OSError:  # gone already
                    continue
                self.seen.setdefault((pid, what + ":" + str(hash(content))), content)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def commands(self) -> list[bytes]:
        return [content for (_pid, what), content in self.seen.items() if what.startswith("cmdline")]

    def leaks(self) -> list[str]:
        return [hit for (pid, what), content in self.seen.items()
                for hit in hits(content, f"/proc/{pid}/{what.split(':')[0]}")]


def run_watched(args: list[str], env: dict, **popen) -> tuple[subprocess.Popen, str, str, ProcessWatcher]:
    """Run `easybackup ARGS` to its end while a ProcessWatcher watches it; return (process, stdout, stderr,
    watcher)."""
    process = subprocess.Popen([*EASYBACKUP, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, **popen)
    watcher = ProcessWatcher(process.pid)
    try:
        stdout, stderr = process.communicate(timeout=180)
    finally:
        watcher.stop()
        if process.poll() is None:
            process.kill()
            process.wait()
    return process, stdout, stderr, watcher


def install_wrappers(directory: Path, tools: tuple[str, ...] = WRAPPED_TOOLS) -> tuple[str, Path]:
    """Put wrappers of the tools easybackup starts on a PATH; each records its argv and environment in
    `records/` and execs the real tool. Return (PATH, records directory)."""
    bin_dir, records = directory / "wrappers", directory / "records"
    bin_dir.mkdir()
    records.mkdir()
    for tool in tools:
        real = shutil.which(tool)
        if real is None:
            continue  # a tool that is not installed (zstd without the codec) is not started either
        wrapper = bin_dir / tool
        wrapper.write_text(f"#!/bin/sh\ncat /proc/$$/cmdline > \"{records}/{tool}.$$.argv\"\n"
                           f"cat /proc/$$/environ > \"{records}/{tool}.$$.env\"\nexec '{real}' \"$@\"\n")
        wrapper.chmod(0o755)
    return f"{bin_dir}:{os.environ['PATH']}", records


def environment_without_secrets(path: str) -> dict:
    """The CLI's environment: no AWS keys (they come from the config file), the wrappers first on PATH."""
    env = {key: value for key, value in cli_env().items() if not key.startswith("AWS_")}
    env["PATH"] = path
    return env


# ------------------------------------------------------------------------------------------ the setup


@pytest.fixture(scope="module")
def secret_db(pg) -> str:
    """A role with a distinctive password and a database it owns."""
    pg.psql(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
    pg.psql(f"DROP ROLE IF EXISTS {ROLE}")
    pg.psql(f"CREATE ROLE {ROLE} LOGIN PASSWORD '{DB_PASSWORD}'")
    pg.psql(f"CREATE DATABASE {DATABASE} OWNER {ROLE}")
    pg.psql(f"SET ROLE {ROLE}; CREATE TABLE t AS SELECT g AS id, md5(g::text) AS h FROM generate_series(1, 5000) g",
            DATABASE)
    pg.psql(f"DROP DATABASE IF EXISTS {SHORT_DATABASE} WITH (FORCE)")
    pg.psql(f"DROP ROLE IF EXISTS {SHORT_ROLE}")
    pg.psql(f"CREATE ROLE {SHORT_ROLE} LOGIN PASSWORD '{SHORT_DB_PASSWORD}'")
    pg.psql(f"CREATE DATABASE {SHORT_DATABASE} OWNER {SHORT_ROLE}")
    pg.psql(f"SET ROLE {SHORT_ROLE}; CREATE TABLE t AS SELECT g AS id FROM generate_series(1, 100) g", SHORT_DATABASE)
    return DATABASE


@pytest.fixture(scope="module")
def secret_mysql(mariadb) -> str:
    """A MariaDB user with the same distinctive password and the grants a backup user needs; return its URL."""
    mariadb.create_database(MYSQL_DATABASE)
    mariadb.sql(f"DROP USER IF EXISTS '{ROLE}'@'%'; CREATE USER '{ROLE}'@'%' IDENTIFIED BY '{DB_PASSWORD}';"
                f"GRANT SELECT, SHOW VIEW, TRIGGER, EVENT, LOCK TABLES ON `{MYSQL_DATABASE}`.* TO '{ROLE}'@'%'")
    mariadb.sql("CREATE TABLE t (id INT PRIMARY KEY, h CHAR(32)); "
                "INSERT INTO t SELECT seq, MD5(seq) FROM seq_1_to_5000", MYSQL_DATABASE)
    return mariadb.url(MYSQL_DATABASE, user=ROLE, password=DB_PASSWORD)


@pytest.fixture
def secret_slack(slack):
    slack.tokens.add(SLACK_TOKEN)
    return slack


def secret_url(pg, database: str) -> str:
    return pg.url(database, user=ROLE, password=DB_PASSWORD)


def strategies(pg, mysql_url: str, throttled_endpoint: str) -> list[dict]:
    """`good` succeeds; `flaky` backs up one database, misses another, through an S3 that answers 503 at first;
    `short` succeeds with the short database password and S3 secret key; `shop` backs up a MariaDB database."""
    return [{"name": "good", "database_url": secret_url(pg, DATABASE)},
            {"name": "shop", "database_url": mysql_url},
            {"name": "flaky", "database_urls": [secret_url(pg, DATABASE), secret_url(pg, "no_such_db")],
             "s3": {"endpoint_url": throttled_endpoint}},
            {"name": "short", "database_url": pg.url(SHORT_DATABASE, user=SHORT_ROLE, password=SHORT_DB_PASSWORD),
             "s3": {"credentials": {"access_key": "AKIASHORTSECRET", "secret_key": SHORT_AWS_SECRET}}}]


def secret_config(directory: Path, pg, mysql_url: str, moto, bucket: str, slack, throttled_endpoint: str,
                  **extra) -> Path:
    return write_config(
        directory, bucket=bucket, endpoint=moto.endpoint, strategies=strategies(pg, mysql_url, throttled_endpoint),
        retry={"max_attempts": 3, "initial_delay": "1s", "max_delay": "2s"},
        s3={"credentials": {"access_key": "AKIAEASYBACKUPTEST", "secret_key": AWS_SECRET},
            "prune_credentials": {"access_key": "AKIAEASYBACKUPPRUNE", "secret_key": PRUNE_SECRET}},
        slack={"bot_token": SLACK_TOKEN, "channel_id": CHANNEL, "api_url": slack.api_url}, **extra)


def stored_leaks(moto, bucket: str) -> list[str]:
    """Every manifest and run record in the bucket (and every key) searched for the secrets."""
    client = moto.client()
    keys = moto.list_keys(bucket)
    found = hits("\n".join(keys), "object keys")
    for key in keys:
        if key.endswith(".json"):
            found += hits(client.get_object(Bucket=bucket, Key=key)["Body"].read(), key)
    return found


def slack_leaks(slack) -> list[str]:
    found = []
    for number, call in enumerate(slack.calls):
        headers = {name: value for name, value in call.headers.items() if name != "authorization"}
        found += hits(json.dumps(call.body, ensure_ascii=False), f"Slack call {number} ({call.method}) body")
        found += hits(json.dumps(headers), f"Slack call {number} headers")
    return found


def record_leaks(records: Path) -> list[str]:
    return [hit for path in sorted(records.iterdir()) for hit in hits(path.read_bytes(), f"wrapper record {path.name}")]


def assert_the_watch_saw_everything(watcher: ProcessWatcher, records: Path) -> None:
    """The checks could fail: the watcher saw the workers, and pg_dump, mariadb-dump and a compressor ran through
    the wrappers."""
    assert any(b"-m\0easybackup.worker\0" in cmdline for cmdline in watcher.commands()), "no worker seen"
    names = {path.name.split(".")[0] for path in records.iterdir()}
    assert {"pg_dump", "mariadb-dump"} <= names and names & {"pigz", "gzip"}, names


# ------------------------------------------------------------------------------------------ the tests


def test_the_watcher_and_the_wrappers_find_a_secret_in_a_grandchilds_argv_and_environment(tmp_path):
    path, records = install_wrappers(tmp_path)
    env = {**os.environ, "PATH": path, "LEAKY": AWS_SECRET}
    # The grandchild (`|| true` keeps sh from exec'ing it) waits on stdin until the watcher has seen it: a
    # short-lived one (`sleep 0.3 PASSWORD` exits at once, refusing its argument) could finish unseen under load.
    script = f"gzip -c /dev/null > /dev/null; sh -c 'read line' sh {DB_PASSWORD} || true"
    process = subprocess.Popen(["sh", "-c", script], env=env, stdin=subprocess.PIPE, stderr=subprocess.DEVNULL)
    watcher = ProcessWatcher(process.pid)
    deadline = time.monotonic() + 10
    while not any(DB_PASSWORD in hit for hit in watcher.leaks()) and time.monotonic() < deadline:
        watcher.poll()
    process.stdin.close()
    process.wait(10)
    watcher.stop()
    assert f"{AWS_SECRET!r} in wrapper record gzip.{list(records.iterdir())[0].name.split('.')[1]}.env" in \
        record_leaks(records)
    found = watcher.leaks()
    assert any(DB_PASSWORD in hit and "cmdline" in hit for hit in found), found
    assert any(AWS_SECRET in hit and "environ" in hit for hit in found), found


def test_the_watcher_finds_a_short_secret_where_it_stands_in_a_childs_argv_and_environment():
    import subprocess

    env = {**os.environ, "PGPASSWORD": SHORT_DB_PASSWORD}
    # The child waits on stdin until the watcher has looked at it once: no race with a short-lived process.
    process = subprocess.Popen(["sh", "-c", "read line", "sh", f"postgres://u:{SHORT_AWS_SECRET}@h/db"], env=env,
                               stdin=subprocess.PIPE)
    watcher = ProcessWatcher(process.pid)
    watcher.poll()
    process.stdin.close()
    process.wait(10)
    watcher.stop()
    found = watcher.leaks()
    assert any(repr(SHORT_AWS_SECRET) in hit and "cmdline" in hit for hit in found), found
    assert any(repr(SHORT_DB_PASSWORD) in hit and "environ" in hit for hit in found), found


@pytest.mark.parametrize("text,leaked", [
    ("pwdb: backup started; Slack auth.test failed; db-backups/test-main/x.dump; a test backup", False),
    ("secrets_app: backup started; key: test-main/x.dump", False),
    (f"postgres://{SHORT_ROLE}:backup@db:5432/app", True), ("PGPASSWORD=backup psql", True),
    ("--password backup", True), ("['--password', 'backup']", True), ('{"secret_key": "test"}', True),
    ("AWS_SECRET_ACCESS_KEY=test", True), ("\0pg_dump\0backup\0", True), ("secret_key: test.", True),
])
def test_the_sweep_finds_a_short_secret_where_it_stands_and_not_in_ordinary_words(text, leaked):
    assert bool(hits(text, "text")) is leaked


@pytest.mark.slow
def test_once_with_a_good_and_a_failing_run_leaks_no_secret_anywhere(pg, moto, bucket, tmp_path, secret_db,
                                                                    secret_mysql, secret_slack, fault_proxy):

    proxy = fault_proxy("127.0.0.1", moto.port, "http")
    proxy.fail_http(503, count=3)
    config = secret_config(tmp_path, pg, secret_mysql, moto, bucket, secret_slack, proxy.url)
    path, records = install_wrappers(tmp_path)
    metrics_file = tmp_path / "easybackup.prom"
    process, stdout, stderr, watcher = run_watched(
        ["once", "-c", str(config), "--metrics-file", str(metrics_file)], environment_without_secrets(path))
    assert process.returncode == 1, stdout + stderr
    assert "no_such_db" in stdout and "[not_found]" in stdout, stdout
    assert any(line.split()[:3] == ["short", SHORT_DATABASE, "success"] for line in stdout.splitlines()), stdout
    assert any(line.split()[:3] == ["shop", MYSQL_DATABASE, "success"] for line in stdout.splitlines()), stdout
    assert any(request.status == 503 for request in proxy.requests), "S3 was never throttled"
    assert secret_slack.calls_to("chat.update"), "Slack was not told"
    assert_the_watch_saw_everything(watcher, records)

    leaks = hits(stdout, "stdout") + hits(stderr, "stderr (the log)") + hits(metrics_file.read_text(), "metrics")
    leaks += slack_leaks(secret_slack) + stored_leaks(moto, bucket) + watcher.leaks() + record_leaks(records)
    assert leaks == []


@pytest.mark.slow
def test_the_daemon_with_a_good_and_a_failing_run_leaks_no_secret_anywhere(pg, moto, bucket, tmp_path, secret_db,
                                                                          secret_mysql, secret_slack, fault_proxy,
                                                                          start_daemon):
    proxy = fault_proxy("127.0.0.1", moto.port, "http")
    proxy.fail_http(503, count=3)
    port = free_port()
    config = secret_config(tmp_path, pg, secret_mysql, moto, bucket, secret_slack, proxy.url, run_on_start=True,
                           monitoring=monitoring(port))
    path, records = install_wrappers(tmp_path)
    daemon = start_daemon(config, port, env=environment_without_secrets(path))
    watcher = ProcessWatcher(daemon.pid)
    try:
        document = daemon.wait_health(lambda doc: len(doc["strategies"]["last_backup_status"]) == 4 and {
            s["status"] for s in doc["strategies"]["last_backup_status"].values()} == {"success", "failed"},
            timeout=120, what="every run finished")
        deadline = time.monotonic() + 30
        while len(secret_slack.calls_to("chat.update")) < 4 and time.monotonic() < deadline:
            time.sleep(0.1)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            metrics = response.read().decode()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as response:
            health = response.read().decode()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
            page = response.read().decode()
    finally:
        watcher.stop()
        code = daemon.stop()
    assert code == 0
    assert "no_such_db" in json.dumps(document), document
    assert document["strategies"]["last_backup_status"]["short"]["status"] == "success", document
    assert document["strategies"]["last_backup_status"]["shop"]["status"] == "success", document
    assert 'strategy="shop"' in metrics and "shop" in page
    assert any(request.status == 503 for request in proxy.requests), "S3 was never throttled"
    assert len(secret_slack.calls_to("chat.update")) >= 4, "Slack was not told about every run"
    assert_the_watch_saw_everything(watcher, records)

    assert "no_such_db" in page, "the status page shows the failure"
    leaks = hits(daemon.log_text(), "the supervisor's log") + hits(health, "health") + hits(metrics, "metrics")
    leaks += hits(page, "the status page")
    leaks += slack_leaks(secret_slack) + stored_leaks(moto, bucket) + watcher.leaks() + record_leaks(records)
    assert leaks == []


def test_a_rejected_config_does_not_echo_the_secrets_it_holds(tmp_path, moto, bucket):
    config = write_config(tmp_path, bucket=bucket, endpoint=moto.endpoint, strategies=[
        {"name": "bad", "database_url": f"mongodb://{ROLE}:{DB_PASSWORD}@db/app",
         "slack": {"bot_token": SLACK_TOKEN}, "s3": {"credentials": {"secret_key": AWS_SECRET}}, "schedule": "6x"}])
    result = run_cli("validate", "-c", str(config), env=environment_without_secrets(os.environ["PATH"]))
    assert result.returncode == 2, result.stderr
    assert "strategies[0] (bad).database_url" in result.stderr
    assert "strategies[0] (bad).slack.channel_id" in result.stderr
    assert hits(result.stdout + result.stderr, "validate's output") == []
