"""Bad input never crashes easybackup: fuzzed configs, schedules and durations, malformed worker output, and
hostile database names and object keys through real backups and restores.

Every config either loads or is rejected with ConfigError whose problems are one line each, starting with
a path; the CLI never prints a traceback. Schedules and durations parse or raise a one-line ValueError. A
worker that writes garbage never takes the pool down: its run ends failed, naming the problem. Databases
with slashes, dots, quotes, spaces, `%`, unicode or a newline in their names are backed up under their own
prefix and restore identical.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from loguru import logger

from easybackup.config import load_config
from easybackup.config.model import Config, DatabaseTarget, S3Settings, Strategy
from easybackup.config.schema import format_path, load_schema
from easybackup.errors import ConfigError
from easybackup.jobspec import new_job
from easybackup.scheduling import next_run, parse_duration, parse_schedule
from easybackup.storage.layout import database_prefix, strategy_prefix
from easybackup.supervision.pool import WorkerPool
from tests.harness.configs import cli_env, restore_target, run_cli, write_config
from tests.harness.restore import archive_keys, manifest_keys, run_record_keys


# Deterministic in CI: the same examples every run, no example database on disk.
def fuzz(examples: int) -> settings:
    return settings(max_examples=examples, derandomize=True, database=None, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much])

# -------------------------------------------------------------------------------------------- hostile values

HOSTILE_TEXT = [
    "", " ", "\n", "a\nb", "\r\n", "\t", "\x00", "nul\x00inside", "\x7f\x1b[31mred", "é", "日本語", "🦄", "\u202e",
    "..", "../..", "/", "//", "%", "%00", "%zz", "'", '"', "`", "\\", "$", "$$", "${", "${}", "${UNSET_VAR_X}",
    "${EMPTY:-fallback}", "${PORT}", "$${NOT}", "{a: b}", "[1, 2", "- item", "&anchor", "*alias", "!!python/object",
    "? complex", "#comment", "yes", "no", "null", "~", "0x1F", "1e309", "-0", "6x", "0h", "1d@", "1d@25:00",
    "* * * * *", "61 * * * *", "0 0 31 2 *", "@daily", "1w@sun-03:00", "postgres://", "postgres://u:p@/",
    "postgres://[::1/x", "postgres://u:p@h:99999/d", "postgres://u:p@h:0/d", "postgres://h/%2F..%2F", "http://",
    "socks5://u:p@h", "socks5://h:1080", "xoxb-", "xoxb-1 2", "C0", "Europe/Paris", "Mars/Olympus", "UTC\x00",
    "x" * 5000, "-oProxyCommand=x", "--file=/etc/passwd", "a" * 64 + "@" + "b" * 64,
]
PLAIN_INTS = st.integers(-3, 70) | st.sampled_from([0, 1, 65535, 65536, 2**31, 2**63, 10**30, -(10**30)])
HOSTILE_SCALARS = st.one_of(
    st.sampled_from(HOSTILE_TEXT), st.text(max_size=40), PLAIN_INTS, st.booleans(), st.none(),
    st.floats(allow_nan=True, allow_infinity=True), st.binary(max_size=8),
    st.dates(min_value=dt.date(1, 1, 1), max_value=dt.date(9999, 12, 31)))
HOSTILE_KEYS = st.one_of(st.sampled_from(["a\nb", "x: y", "", " ", "🦄", "globals", "schedual", "name\x00"]),
                         st.text(max_size=12), st.integers(-2, 2), st.none(), st.booleans())
HOSTILE = st.recursive(HOSTILE_SCALARS, lambda inner: st.lists(inner, max_size=3)
                       | st.dictionaries(HOSTILE_KEYS, inner, max_size=3), max_leaves=6)

# Values an operator would plausibly write, so that documents also get past the schema into the later checks.
PLAUSIBLE = {
    "schedule": ["1d", "6h", "1h", "15m", "1d@02:30", "1w@sun-03:00", "0 3 * * *", "*/15 * * * *", "7h", "2d@23:59"],
    "duration": ["30s", "10m", "2h", "1d", "7d", "30d", "12w", "0s", "1s"],
    "timezone": ["UTC", "Europe/Paris", "America/New_York", "Asia/Kolkata", "Etc/GMT+12"],
    "url": ["postgres://u:p@db:5432/app", "postgresql://u@db/app%2Fx", "postgres://u:p@127.0.0.1:1/..",
            "postgres://db/%5Fglobals", "postgres://u:p%40ss@[::1]:5432/app", "postgres://db/app?sslmode=require"],
    "name": ["app", "prod-db", "a.b", "A_1", "x" * 100, "_globals"],
    "bucket": ["my-backup-bucket", "b.c.d", "abc"],
    "channel": ["C0123456789", "CFAILURE001"],
    "token": ["xoxb-1-abc", "xoxp-2-def"],
}
DURATION_KEYS = {"retention", "initial_delay", "max_delay", "backup", "upload", "shutdown_grace", "progress_interval"}
ENV = {"PORT": "8080", "EMPTY": "", "MULTILINE": "a\nb", "S3_BUCKET": "env-bucket",
       "DATABASE_URL": "postgres://u:p@db/envdb", "SLACK_BOT_TOKEN": "xoxb-env-1", "SLACK_CHANNEL_ID": "#general",
       "AWS_SECRET_ACCESS_KEY": "env\nsecret", "SLACK_API_URL": "ftp://nope"}


def _resolve(node: dict) -> dict:
    while "$ref" in node:
        node = load_schema()["$defs"][node["$ref"].rsplit("/", 1)[1]]
    return node


def _plausible_strings(key: str | None, node: dict) -> st.SearchStrategy:
    choices = list(node.get("enum", [])) + [str(e) for e in node.get("examples", []) if isinstance(e, str)]
    if key == "schedule":
        choices += PLAUSIBLE["schedule"]
    elif key in DURATION_KEYS:
        choices += PLAUSIBLE["duration"]
    elif key in ("database_url", "url"):
        choices += PLAUSIBLE["url"]
    elif key in ("channel_id", "success", "failure"):
        choices += PLAUSIBLE["channel"]
    for name in ("timezone", "name", "bucket", "token"):
        if key == name or (name == "token" and key == "bot_token"):
            choices += PLAUSIBLE[name]
    return st.sampled_from(choices) if choices else st.text(max_size=20)


@st.composite
def schema_value(draw, node: dict, key: str | None = None, depth: int = 0):
    """Draw a value for the schema `node`: mostly of the right shape, sometimes hostile anywhere in the tree."""
    node = _resolve(node)
    if depth > 0 and draw(st.integers(0, 9)) == 0:
        return draw(HOSTILE)
    if "anyOf" in node:
        return draw(schema_value(draw(st.sampled_from(node["anyOf"])), key, depth))
    kind = node.get("type")
    if kind == "object":
        properties = node.get("properties", {})
        keys = draw(st.lists(st.sampled_from(sorted(properties)), unique=True, max_size=min(6, len(properties)))
                    ) if properties else []
        value = {name: draw(schema_value(properties[name], name, depth + 1)) for name in keys}
        if isinstance(node.get("additionalProperties"), dict):  # a map (node_selector): keys of its own choosing
            names = draw(st.lists(st.sampled_from(["pool", "zone", "kubernetes.io/os"]) | HOSTILE_KEYS, max_size=3))
            value.update({name: draw(schema_value(node["additionalProperties"], key, depth + 1)) for name in names})
        if draw(st.integers(0, 7)) == 0:
            value[draw(HOSTILE_KEYS)] = draw(HOSTILE)
        return value
    if kind == "array":
        return draw(st.lists(schema_value(node.get("items", {}), key, depth + 1), max_size=3))
    if kind == "string":
        return draw(_plausible_strings(key, node) | st.sampled_from(HOSTILE_TEXT))
    if kind == "integer":
        return draw(PLAIN_INTS)
    if kind == "boolean":
        return draw(st.booleans())
    return draw(HOSTILE)


@st.composite
def config_documents(draw):
    """A whole config document built from the schema's keys, with random and hostile values; half of them get
    what every config needs (a named strategy with a database, a bucket) so they reach the later checks too."""
    document = draw(schema_value(load_schema()))
    if draw(st.booleans()):
        _complete(document, draw(st.sampled_from(PLAUSIBLE["url"])))
    return document


def _complete(document: dict, url: str) -> None:
    """Given a drawn document (changed in place), add what a loadable config needs where it is missing."""
    if not isinstance(document.get("global"), dict):
        document["global"] = {}
    s3 = document["global"].setdefault("s3", {})
    if isinstance(s3, dict):
        s3.setdefault("bucket", "my-backup-bucket")
    strategies = document.get("strategies")
    if not isinstance(strategies, list) or not strategies:
        document["strategies"] = strategies = [{}]
    for index, strategy in enumerate(strategies):
        if isinstance(strategy, dict):
            strategy.setdefault("name", f"s{index}")
            if not {"database_url", "database_urls", "all_databases"} & set(strategy):
                strategy["database_url"] = url


def yaml_text(document) -> str:
    return yaml.safe_dump(document, allow_unicode=True, sort_keys=False)


YAMLISH_TEXT = st.lists(st.sampled_from([
    "global:", "strategies:", "  - name: app", "    database_url: postgres://u@db/app", "  s3: {bucket: b-b-b}",
    "  schedule: 6x", "- ", ": ", "&a [*a]", "a: &a [*a]", "b: *undefined", "\t", "  ", "'", '"', "{", "}", "[", "]",
    "%YAML 1.1", "---", "...", "!!binary aGk=", "!!python/name:os.system", "? [a]", "key: value: value",
    "x: |", "y: >-", "\x00", "\ufeff", "é: ü",
]) | st.text(max_size=10), max_size=12).map("\n".join)


def assert_rejected_properly(problems: list[str], config_path: Path, document) -> None:
    """Each problem is one line that starts with a path: the file's (`FILE:line:col:`) or a config path."""
    roots = {str(config_path), "global", "strategies"}
    if isinstance(document, dict):
        roots |= {format_path((key,)) for key in document}
    assert problems, "a ConfigError with no problem in it"
    for problem in problems:
        assert isinstance(problem, str) and problem.strip(), problems
        assert "\n" not in problem and "\r" not in problem, f"not one line: {problem!r}"
        assert any(problem.startswith(root) for root in roots), f"does not start with a path: {problem!r}"
        assert ": " in problem, f"no `path: message` shape: {problem!r}"


def load_or_reject(tmp_path: Path, text: str, document=None, environ=None, dotenv: str | None = None) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    path.chmod(0o600)
    env_file = tmp_path / ".env"
    if dotenv is None:
        env_file.unlink(missing_ok=True)
    else:
        env_file.write_text(dotenv, encoding="utf-8", errors="surrogatepass")
    try:
        config = load_config(path, environ=environ or {})
    except ConfigError as error:
        assert_rejected_properly(error.problems, path, document)
    else:
        assert isinstance(config, Config) and config.strategies


# ---------------------------------------------------------------------------------------- config fuzzing


@fuzz(800)
@given(document=config_documents(), environ=st.dictionaries(st.sampled_from(sorted(ENV)), st.just(""), max_size=4))
def test_any_config_document_loads_or_is_rejected_with_one_line_per_problem_each_naming_its_path(
        tmp_path_factory, document, environ):
    environ = {name: ENV[name] for name in environ}
    text = yaml_text(document)
    # The paths are those of the document as read back: YAML folds some characters in keys (U+2028 to a space).
    load_or_reject(tmp_path_factory.mktemp("fuzz"), text, yaml.safe_load(text), environ)


@fuzz(250)
@given(text=YAMLISH_TEXT | st.text(max_size=200), dotenv=st.none() | st.text(max_size=60))
def test_any_text_as_a_config_file_loads_or_is_rejected_with_one_line_per_problem(tmp_path_factory, text, dotenv):
    directory = tmp_path_factory.mktemp("text")
    try:
        document = yaml.safe_load(text)
    except (yaml.YAMLError, RecursionError):
        document = None
    load_or_reject(directory, text, document if isinstance(document, dict) else None, dotenv=dotenv)


def test_a_self_referencing_yaml_alias_is_rejected_not_a_recursion_error(tmp_path):
    load_or_reject(tmp_path, "global: &g {s3: {bucket: abc}, x: *g}\nstrategies: [{name: a}]\n")
    load_or_reject(tmp_path, "strategies: &s [*s]\n")


def test_a_billion_laughs_document_is_rejected_quickly(tmp_path):
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{n}: &a{n} [{', '.join([f'*a{n - 1}'] * 10)}]" for n in range(1, 9)]
    started = time.monotonic()
    with pytest.raises(ConfigError) as caught:
        load_config(_written(tmp_path, "\n".join(lines) + "\nstrategies: [{name: a}]\n"), environ={})
    assert time.monotonic() - started < 5
    assert_rejected_properly(caught.value.problems, tmp_path / "config.yaml", None)


def _written(directory: Path, text: str) -> Path:
    path = directory / "config.yaml"
    path.write_text(text)
    path.chmod(0o600)
    return path


@fuzz(6)
@given(document=config_documents())
def test_hostile_configs_through_the_real_cli_end_with_exit_2_or_0_and_no_traceback(tmp_path_factory, document):
    path = _written(tmp_path_factory.mktemp("cli"), yaml_text(document))
    result = run_cli("validate", "-c", str(path), env=cli_env(), timeout=60)
    assert result.returncode in (0, 2), result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    if result.returncode == 2:
        lines = result.stderr.splitlines()
        assert lines and all(line.startswith(("error: ", "hint: ")) for line in lines), result.stderr


@pytest.mark.parametrize("text", ["strategies: [{name: a, database_url: 'postgres://[::1/x'}]\n",
                                  "a: &a [*a]\nstrategies: [{name: a}]\n", "'a\nb': 1\nstrategies: [{name: a}]\n",
                                  "\"k\\nv\": 1\n", "\x00\x01\x02", "\ufeffglobal: {}\n"])
def test_known_hostile_configs_through_the_real_cli_are_one_line_errors(tmp_path, text):
    path = tmp_path / "config.yaml"
    path.write_bytes(text.encode("utf-8"))
    result = run_cli("validate", "-c", str(path), env=cli_env(), timeout=60)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert lines and all(line.startswith(("error: ", "hint: ")) for line in lines), result.stderr


# -------------------------------------------------------------------------------- schedules and durations

UNITS = st.sampled_from(["s", "m", "h", "d", "w", "x", "", "M", "ms", " ", "µ"])
OFFSETS = st.sampled_from(["", "@", "@02:30", "@25:00", "@sun-03:00", "@mon", "@xyz", "@-1:00", "@00:00:00", "@@"])
CRON_FIELD = st.sampled_from(["*", "*/15", "0", "59", "60", "1-5", "5-1", "mon-fri", "jan", "0,30", "*/0", "-", ",",
                              "L", "?", "7", "31", "2"])
SCHEDULE_TEXT = st.one_of(
    st.builds(lambda n, unit, offset: f"{n}{unit}{offset}", st.integers(-5, 10**22), UNITS, OFFSETS),
    st.lists(CRON_FIELD, min_size=3, max_size=7).map(" ".join),
    st.sampled_from(HOSTILE_TEXT), st.text(max_size=30))
ZONES = st.sampled_from(["UTC", "Europe/Paris", "America/New_York", "Australia/Lord_Howe", "Asia/Kathmandu"])


def assert_one_line_value_error(error: ValueError) -> None:
    message = str(error)
    assert message and "\n" not in message and "\r" not in message, repr(message)
    assert len(message) < 2000, len(message)


@fuzz(400)
@given(text=SCHEDULE_TEXT, zone=ZONES,
       after=st.datetimes(min_value=dt.datetime(1971, 1, 1), max_value=dt.datetime(2200, 1, 1),
                          timezones=st.just(dt.UTC)))
def test_any_schedule_text_parses_or_raises_a_one_line_value_error_and_a_parsed_one_has_a_next_run(text, zone,
                                                                                                  after):
    try:
        schedule = parse_schedule(text)
    except ValueError as error:
        assert_one_line_value_error(error)
        return
    following = next_run(schedule, zone, after)
    assert following > after and following.tzinfo is not None


@fuzz(300)
@given(text=st.one_of(st.builds(lambda n, unit: f"{n}{unit}", st.integers(-5, 10**22), UNITS),
                      st.sampled_from(HOSTILE_TEXT), st.text(max_size=30)))
def test_any_duration_text_parses_to_positive_seconds_or_raises_a_one_line_value_error(text):
    try:
        seconds = parse_duration(text)
    except ValueError as error:
        assert_one_line_value_error(error)
        return
    assert seconds > 0 and seconds < float("inf")


# ------------------------------------------------------------------------------------ malformed worker output

# A worker of our own that writes exactly the bytes a plan gives it on the event stream, then exits.
HOSTILE_WORKER = '''
import base64, json, os, sys
job = json.loads(sys.stdin.read())
plan = json.loads(open(sys.argv[1]).read())
out = os.fdopen(os.dup(1), "wb", buffering=0)
def envelope(fields, seq):
    return {"v": 1, "run_id": job["run_id"], "strategy": job["strategy"]["name"], "database": None, "seq": seq,
            "ts": "2024-05-01T02:30:00.000Z", **fields}
for seq, step in enumerate(plan["steps"], 1):
    if "event" in step:
        out.write(json.dumps(envelope(step["event"], seq)).encode() + b"\\n")
    elif "bytes" in step:
        out.write(base64.b64decode(step["bytes"]) * step.get("repeat", 1))
sys.exit(plan.get("exit", 0))
'''


class Runs:
    """Runs jobs through a real WorkerPool whose workers are HOSTILE_WORKER with a plan; records what it reports."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.script = directory / "hostile_worker.py"
        self.script.write_text(HOSTILE_WORKER)
        self.finished: list = []
        self.events: list[dict] = []

    def run(self, steps: list[dict], exit_code: int = 0, limit: float = 30.0):
        """Given the worker's plan, run one job to its end; return its handle."""
        plan = self.directory / f"plan-{len(self.finished)}.json"
        plan.write_text(json.dumps({"steps": steps, "exit": exit_code}))
        pool = WorkerPool(1, on_event=lambda h, e: self.events.append(e), on_stderr=lambda h, line: None,
                          on_finished=self.finished.append, worker_argv=[sys.executable, str(self.script), str(plan)])
        strategy = Strategy(name="hostile", databases=(DatabaseTarget("app", "postgres://u:pw@127.0.0.1/app"),),
                            s3=S3Settings(bucket="b"))
        before = len(self.finished)
        assert pool.submit(new_job(strategy, str(self.directory), dt.datetime.now(dt.UTC)))
        deadline = time.monotonic() + limit
        try:
            while not pool.idle:
                assert time.monotonic() < deadline, "the pool did not finish the run"
                pool.poll(0.05)
        finally:
            pool.stop(0)
            pool.close()
        assert len(self.finished) == before + 1, "on_finished must be called exactly once"
        return self.finished[-1]


def raw(data: bytes, repeat: int = 1) -> dict:
    import base64
    return {"bytes": base64.b64encode(data).decode(), "repeat": repeat}


@pytest.fixture
def runs(tmp_path):
    return Runs(tmp_path)


@pytest.fixture
def warnings():
    records = []
    handler = logger.add(lambda message: records.append(message.record["message"]), level="WARNING")
    yield records
    logger.remove(handler)


STARTED = {"event": {"type": "started", "pid": 1, "databases": ["app"]}}
MALFORMED = [
    ("garbage", [raw(b"this is not json at all\n" * 3)], "not JSON"),
    ("oversized-line", [raw(b"{" + b"x" * (70 * 1024) + b"}\n")], "longer than 65536 bytes"),
    ("oversized-without-newline", [raw(b"y" * (200 * 1024))], "longer than 65536 bytes"),
    ("truncated-json", [raw(b'{"v":1,"type":"result","status":"succ')], "truncated event at end of stream"),
    ("nul-bytes", [raw(b'\x00\x00{"v":1}\x00\n')], "not JSON"),
    ("invalid-utf8", [raw(b'{"v":1,"type":"\xff\xfe"}\n')], "not UTF-8"),
    ("wrong-version", [raw(b'{"v":2,"type":"result"}\n')], "unknown wire version"),
    ("another-run", [{"event": {"type": "result", "status": "success", "run_id": "someone-else"}}],
     "event for another run"),
    ("no-envelope", [raw(b'{"v":1,"type":"result","status":"success"}\n')], "event lacks"),
    ("not-an-object", [raw(b'["result"]\n')], "not a JSON object"),
]


@pytest.mark.parametrize(("steps", "problem"), [case[1:] for case in MALFORMED], ids=[case[0] for case in MALFORMED])
def test_malformed_worker_output_ends_the_run_failed_and_the_result_names_the_problem(runs, warnings, steps,
                                                                                       problem):
    handle = runs.run([STARTED, *steps])
    result = handle.result
    assert result["status"] == "failed" and result["synthetic"], result
    assert result["error"]["kind"] == "crashed"
    assert problem in json.dumps(result["error"]), result["error"]
    assert any(problem in line for line in warnings), warnings
    assert [event["type"] for event in runs.events] == ["started"]


def test_a_flood_of_garbage_lines_is_survived_quickly_and_logged_a_bounded_number_of_times(runs, warnings):
    started = time.monotonic()
    handle = runs.run([STARTED, raw(b"garbage garbage garbage\n", repeat=200_000)], limit=60)
    assert time.monotonic() - started < 30
    assert handle.result["status"] == "failed" and "200000 malformed" in handle.result["error"]["detail"]
    assert len(warnings) < 50, f"{len(warnings)} warnings for one flood"


def test_garbage_before_a_valid_result_keeps_the_result_and_reports_the_garbage(runs, warnings):
    handle = runs.run([STARTED, raw(b"\x00\xff garbage\n"), {"event": {"type": "result", "status": "success",
                                                                        "databases": []}}])
    assert handle.result["status"] == "success" and not handle.result.get("synthetic")
    assert any("not UTF-8" in line for line in warnings)


@fuzz(12)
@given(chunks=st.lists(st.binary(min_size=1, max_size=300) | st.sampled_from(
    [b"\n", b"{", b'{"v":1,', b'"type":"result"', b"}\n", b"\x00", b"\xff", b"\r\n"]), max_size=20),
    exit_code=st.sampled_from([0, 1, 70, 255]))
def test_any_bytes_on_the_event_stream_end_the_run_failed_with_exactly_one_result(tmp_path_factory, chunks,
                                                                                   exit_code):
    runs = Runs(tmp_path_factory.mktemp("bytes"))
    handle = runs.run([raw(b"".join(chunks))], exit_code)
    assert handle.result["type"] == "result" and handle.result["status"] == "failed"
    assert handle.exit_code == exit_code


MISTYPED = [
    {"type": "result", "status": 42, "databases": [], "error": None},
    {"type": "result", "status": "failed", "databases": "app", "error": None},
    {"type": "result", "status": "failed", "databases": [None, 1], "error": None},
    {"type": "result", "status": "failed", "databases": [{"database": "app", "size": "huge", "status": "failed"}]},
    {"type": "result", "status": "failed", "databases": [], "error": "it broke"},
    {"type": "result", "status": "failed", "databases": [], "error": {"kind": [], "message": {"a": 1}}},
    {"type": "result", "status": "failed", "databases": [], "error": {"kind": "x", "message": "m",
                                                                      "last_lines": [1, None]}},
]


@pytest.mark.parametrize("result", MISTYPED, ids=[f"mistyped-{n}" for n in range(len(MISTYPED))])
def test_a_result_with_mistyped_fields_is_malformed_and_once_still_prints_its_summary(tmp_path, result):
    from easybackup.cli.once import build_observers
    from easybackup.cli.summary import render_summary
    from easybackup.supervision.batch import Batch

    runs = Runs(tmp_path)
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"steps": [STARTED, {"event": result}]}))
    strategy = Strategy(name="hostile", databases=(DatabaseTarget("app", "postgres://u@h/app"),),
                        s3=S3Settings(bucket="b"))
    config = Config(strategies=(strategy,), temp_dir=str(tmp_path))
    outcome = Batch(config, config.strategies, build_observers(),
                    worker_argv=[sys.executable, str(runs.script), str(plan)]).run()
    assert not outcome.succeeded
    summary = render_summary(outcome.results)
    assert "[crashed]" in summary and "malformed" in summary, summary


# ------------------------------------------------------------------------ hostile database names and keys

HOSTILE_DATABASES = ["a/b", "..", "../../escape", "dots.and..more", "ünï-日本-🦄", "it's \"quoted\"", "with space",
                     "100%", "_leading", "new\nline"]
# {name, url} entries: the archive's name is the given one (the schema keeps it to [A-Za-z0-9_.-]).
ALIASES = {"_alias": "_leading", "x..y": ".."}
STRATEGY = "hostile-names"


def create_database(pg, name: str) -> None:
    """Create database `name`, however hostile (psql quotes it as an identifier), with a small table."""
    for sql, database in (('DROP DATABASE IF EXISTS :"name" WITH (FORCE); CREATE DATABASE :"name";', "postgres"),
                          ("CREATE TABLE t (id int PRIMARY KEY, note text); INSERT INTO t SELECT g, "
                           "'row ' || g || ' ünï \"q\" ''s' FROM generate_series(1, 300) g;", name)):
        subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-v", f"name={name}", "--dbname",
                        f"postgresql://{pg.user}@{pg.host}:{pg.port}/{quote(database, safe='')}"],
                       input=sql, text=True, check=True, capture_output=True, env=pg.env())


def fingerprint(pg, name: str) -> str:
    return subprocess.run(["psql", "-X", "-At", "--dbname", f"postgresql://{pg.user}@{pg.host}:{pg.port}/"
                           f"{quote(name, safe='')}", "-c", "SELECT count(*), md5(string_agg(t::text, '|' ORDER BY id))"
                           " FROM t"], text=True, check=True, capture_output=True, env=pg.env()).stdout.strip()


def test_hostile_database_names_stay_inside_their_prefix_and_restore_identical(pg, moto, bucket, tmp_path):
    for name in HOSTILE_DATABASES:
        create_database(pg, name)
    url = {name: pg.url(quote(name, safe="")) for name in HOSTILE_DATABASES}
    entries = [url[name] for name in HOSTILE_DATABASES] + [{"name": alias, "url": url[source]}
                                                          for alias, source in ALIASES.items()]
    config = write_config(tmp_path, bucket=bucket, endpoint=moto.endpoint,
                          strategies=[{"name": STRATEGY, "database_urls": entries}], s3={"base_path": "base/p"})
    result = run_cli("once", "-c", str(config), timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr

    backed_up = {**{name: name for name in HOSTILE_DATABASES}, **ALIASES}  # archive name -> source database
    prefix = strategy_prefix("base/p", STRATEGY)
    keys = [key for key in moto.list_keys(bucket) if key not in run_record_keys(moto, bucket)]  # `_runs/` is ours
    assert len(archive_keys(moto, bucket)) == len(manifest_keys(moto, bucket)) == len(backed_up)
    for key in keys:
        segments = key[len(prefix):].split("/")
        assert key.startswith(prefix) and len(segments) == 2, key
        assert segments[0] not in (".", "..", "") and not segments[0].startswith("_"), key
        assert "\n" not in key and "//" not in key, key
    for name in backed_up:
        assert sum(key.startswith(database_prefix("base/p", STRATEGY, name)) for key in keys) == 2, name

    listed = run_cli("list", "-c", str(config), "--json", timeout=60)
    assert listed.returncode == 0, listed.stderr
    [catalogue] = json.loads(listed.stdout)["strategies"]
    assert sorted(b["database"] for b in catalogue["backups"]) == sorted(backed_up)
    assert all(b["key"].startswith(prefix) for b in catalogue["backups"])

    for number, (name, source) in enumerate(backed_up.items()):
        target = f"restored {number} {source}"[:60]
        url, env = restore_target(pg.url(quote(target, safe="")))
        restored = run_cli("restore", "-c", str(config), "-d", name, "--create", "-y", "--target-url", url, env=env,
                           timeout=120)
        assert restored.returncode == 0, f"{name!r}: {restored.stdout}{restored.stderr}"
        assert fingerprint(pg, target) == fingerprint(pg, source), name
    assert "Traceback" not in result.stderr + listed.stderr


def test_a_database_named_globals_restores_its_own_backup_not_the_roles_dump(pg, moto, bucket, tmp_path):
    create_database(pg, "_globals")
    config = write_config(tmp_path, bucket=bucket, endpoint=moto.endpoint, strategies=[
        {"name": "reserved", "database_urls": [pg.url(quote("_globals", safe=""))]}])
    assert run_cli("once", "-c", str(config), timeout=120).returncode == 0
    assert [key.split("/")[2] for key in moto.list_keys(bucket)] == ["%5Fglobals", "%5Fglobals", "_runs"]
    url, env = restore_target(pg.url("restored_globals_db"))
    restored = run_cli("restore", "-c", str(config), "-d", "_globals", "--create", "-y", "--target-url", url,
                       env=env, timeout=120)
    assert restored.returncode == 0, restored.stderr
    assert fingerprint(pg, "restored_globals_db") == fingerprint(pg, "_globals")
