"""The worker's process pipeline, with small real programs: data flows, failures are named, nothing leaks."""

from __future__ import annotations

import os
import sys
import threading
import time

import pytest

from easybackup.pipeline.stages import (
    LAST_LINES,
    MAX_LINE_BYTES,
    Pipeline,
    StageFailed,
    StageSpec,
    StageStartError,
    base_env,
    describe_returncode,
)

pytestmark = pytest.mark.timeout(30)


def py(name: str, code: str) -> StageSpec:
    return StageSpec(name, [sys.executable, "-c", code])


def read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    return b"".join(chunks)


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def is_gone(pid: int) -> bool:
    """True when `pid` no longer exists — not even as a zombie waiting to be reaped."""
    return not os.path.exists(f"/proc/{pid}")


@pytest.fixture
def no_leaks():
    """Fail the test if it leaves an fd, a thread or a process behind."""
    fds, threads = open_fds(), threading.active_count()
    pids: list[int] = []
    yield pids
    assert open_fds() == fds
    assert threading.active_count() == threads
    assert [pid for pid in pids if not is_gone(pid)] == []


GENERATE = "import sys\nfor i in range(100000): sys.stdout.write(f'line {i}\\n')"


def test_output_flows_through_every_stage_and_all_exit_codes_are_zero(no_leaks):
    stages = [py("generate", GENERATE), StageSpec("cat", ["cat"]),
              py("upper", "import sys; sys.stdout.write(sys.stdin.read().upper())")]
    with Pipeline(stages) as pipeline:
        no_leaks.extend(pipeline.pids().values())
        output = read_all(pipeline.output_fd)
        assert pipeline.wait() == {"generate": 0, "cat": 0, "upper": 0}
    expected = "".join(f"LINE {i}\n" for i in range(100000)).encode()
    assert output == expected


def test_a_failing_last_stage_is_named_although_the_first_succeeded(no_leaks):
    stages = [py("generate", "print('small')"), py("sink", "import sys; sys.stdin.read(); sys.exit(3)")]
    with Pipeline(stages) as pipeline:
        no_leaks.extend(pipeline.pids().values())
        read_all(pipeline.output_fd)
        with pytest.raises(StageFailed) as failed:
            pipeline.wait()
    assert failed.value.stage == "sink"
    assert failed.value.message == "sink exited with code 3"
    assert failed.value.exit_codes == {"generate": 0, "sink": 3}


def test_a_failing_first_stage_is_named_although_the_rest_succeeded(no_leaks):
    stages = [py("dump", "import sys; print('partial'); sys.stderr.write('dump: disk on fire\\n'); sys.exit(4)"),
              StageSpec("cat", ["cat"])]
    with Pipeline(stages) as pipeline:
        no_leaks.extend(pipeline.pids().values())
        assert read_all(pipeline.output_fd) == b"partial\n"
        with pytest.raises(StageFailed) as failed:
            pipeline.wait()
    assert failed.value.stage == "dump"
    assert failed.value.kind == "dump_failed"
    assert failed.value.detail == "dump: disk on fire"
    assert failed.value.last_lines == ["dump: disk on fire"]
    assert failed.value.exit_codes == {"dump": 4, "cat": 0}


def test_a_failing_middle_stage_is_named_and_its_broken_pipe_victim_is_not(no_leaks):
    stages = [py("generate", GENERATE),
              py("middle", "import sys; sys.stdin.buffer.read(100); sys.stderr.write('middle gives up\\n'); "
                           "sys.exit(5)"),
              StageSpec("cat", ["cat"], failure_kind="compressor_failed")]
    with Pipeline(stages) as pipeline:
        no_leaks.extend(pipeline.pids().values())
        read_all(pipeline.output_fd)
        with pytest.raises(StageFailed) as failed:
            pipeline.wait()
    assert failed.value.stage == "middle"
    assert failed.value.message == "middle exited with code 5"
    codes = failed.value.exit_codes
    assert codes["middle"] == 5 and codes["cat"] == 0
    assert codes["generate"] != 0  # Python ignores SIGPIPE: BrokenPipeError, exit 1 — yet it is not blamed


def test_a_stage_killed_by_sigpipe_is_not_blamed_for_its_dead_reader(no_leaks):
    stages = [StageSpec("cat", ["cat", "/dev/zero"]),
              py("reader", "import os, sys; sys.stdin.buffer.read(1000); os._exit(7)")]
    with Pipeline(stages) as pipeline:
        no_leaks.extend(pipeline.pids().values())
        read_all(pipeline.output_fd)
        with pytest.raises(StageFailed) as failed:
            pipeline.wait()
    assert failed.value.exit_codes == {"cat": -13, "reader": 7}
    assert failed.value.stage == "reader"


def test_a_stage_whose_own_reader_stopped_reading_is_reported_as_sigpipe(no_leaks):
    with Pipeline([StageSpec("cat", ["cat", "/dev/zero"])]) as pipeline:
        no_leaks.extend(pipeline.pids().values())
        os.read(pipeline.output_fd, 10)
        pipeline.close_output()  # as an uploader that gave up would
        with pytest.raises(StageFailed) as failed:
            pipeline.wait()
    assert failed.value.message == "cat killed by signal 13 (SIGPIPE — its reader stopped reading)"


def test_a_stage_killed_by_signal_9_is_reported_as_such_with_its_last_lines(no_leaks):
    stages = [py("dump", "import os, sys; print('about to die', file=sys.stderr, flush=True); "
                         "os.kill(os.getpid(), 9)"),
              StageSpec("cat", ["cat"])]
    with Pipeline(stages) as pipeline:
        no_leaks.extend(pipeline.pids().values())
        read_all(pipeline.output_fd)
        with pytest.raises(StageFailed) as failed:
            pipeline.wait()
    assert failed.value.message == "dump killed by signal 9 (SIGKILL — perhaps out of memory?)"
    assert failed.value.signal == 9
    assert failed.value.last_lines == ["about to die"]
    assert failed.value.exit_codes == {"dump": -9, "cat": 0}


def test_exit_statuses_are_decoded_by_cause():
    assert describe_returncode(0) == "exited with code 0"
    assert describe_returncode(2) == "exited with code 2"
    assert describe_returncode(-15) == "killed by signal 15 (SIGTERM)"
    assert describe_returncode(-9) == "killed by signal 9 (SIGKILL — perhaps out of memory?)"


def test_kill_stops_every_stage_within_the_grace(no_leaks):
    stages = [StageSpec("sleep", ["sleep", "30"]), StageSpec("cat", ["cat"])]
    with Pipeline(stages) as pipeline:
        pids = list(pipeline.pids().values())
        no_leaks.extend(pids)
        started = time.monotonic()
        pipeline.kill(grace=2.0)
        assert time.monotonic() - started < 1.5  # both obey SIGTERM at once, well before the grace
        assert pipeline.exit_codes() == {"sleep": -15, "cat": -15}
        assert all(is_gone(pid) for pid in pids)


def test_kill_sigkills_a_stage_that_ignores_sigterm_once_the_grace_is_over(no_leaks):
    stubborn = py("stubborn", "import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                              "print('ready', file=sys.stderr, flush=True); time.sleep(30)")
    lines = []
    with Pipeline([stubborn], on_line=lambda stage, line: lines.append(line)) as pipeline:
        no_leaks.extend(pipeline.pids().values())
        while not lines:  # SIGTERM must arrive after the handler is set, or it kills at once
            time.sleep(0.02)
        started = time.monotonic()
        pipeline.kill(grace=1.0)
        elapsed = time.monotonic() - started
        assert 0.9 <= elapsed < 3.0
        assert pipeline.exit_codes() == {"stubborn": -9}


def test_leaving_the_block_early_stops_and_reaps_everything_and_closes_every_fd(no_leaks):
    with pytest.raises(RuntimeError, match="uploader broke"):
        with Pipeline([py("generate", GENERATE), StageSpec("sleep", ["sleep", "30"])]) as pipeline:
            no_leaks.extend(pipeline.pids().values())
            raise RuntimeError("uploader broke")


def test_stderr_lines_reach_on_line_with_partial_lines_joined(no_leaks):
    code = ("import sys, time\n"
            "err = sys.stderr.buffer\n"
            "err.write(b'hel'); err.flush(); time.sleep(0.3)\n"
            "err.write(b'lo\\r\\nwor'); err.flush(); time.sleep(0.3)\n"
            "err.write(b'ld\\n\\xff bad byte\\n'); err.flush()\n"
            "err.write(b'no newline at the end')\n")
    seen = []
    with Pipeline([py("talker", code)], on_line=lambda stage, line: seen.append((stage, line))) as pipeline:
        no_leaks.extend(pipeline.pids().values())
        read_all(pipeline.output_fd)
        pipeline.wait()
        assert pipeline.last_lines("talker") == ["hello", "world", "\ufffd bad byte", "no newline at the end"]
    assert seen == [("talker", "hello"), ("talker", "world"), ("talker", "\ufffd bad byte"),
                    ("talker", "no newline at the end")]


def test_very_long_stderr_lines_are_cut_and_only_the_last_lines_are_kept(no_leaks):
    code = ("import sys\n"
            "sys.stderr.write('x' * 100000 + '\\n')\n"
            "for i in range(100): sys.stderr.write(f'line {i}\\n')\n")
    with Pipeline([py("noisy", code)]) as pipeline:
        no_leaks.extend(pipeline.pids().values())
        read_all(pipeline.output_fd)
        pipeline.wait()
        lines = pipeline.last_lines("noisy")
    assert len(lines) == LAST_LINES
    assert lines[-1] == "line 99" and lines[0] == f"line {100 - LAST_LINES}"


def test_a_cut_line_keeps_its_first_bytes_and_says_it_was_cut(no_leaks):
    seen = []
    code = "import sys; sys.stderr.write('y' * 10000 + '\\nafter\\n')"
    with Pipeline([py("noisy", code)], on_line=lambda stage, line: seen.append(line)) as pipeline:
        no_leaks.extend(pipeline.pids().values())
        read_all(pipeline.output_fd)
        pipeline.wait()
    assert seen == ["y" * MAX_LINE_BYTES + " …[line cut]", "after"]


def test_a_missing_program_is_named_and_the_started_stages_are_stopped(no_leaks):
    pipeline = Pipeline([StageSpec("sleep", ["sleep", "30"]), StageSpec("zstd", ["/nonexistent/bin/zstd", "-c"])])
    with pytest.raises(StageStartError) as failed:
        pipeline.start()
    no_leaks.extend(pipeline.pids().values())
    assert list(pipeline.pids()) == ["sleep"]
    assert "cannot start zstd" in failed.value.message
    assert failed.value.program == "/nonexistent/bin/zstd"
    assert "install /nonexistent/bin/zstd" in failed.value.hint


def test_wait_with_a_timeout_says_which_stage_still_runs(no_leaks):
    from easybackup.pipeline.stages import PipelineTimeout

    with Pipeline([StageSpec("sleep", ["sleep", "30"])]) as pipeline:
        no_leaks.extend(pipeline.pids().values())
        with pytest.raises(PipelineTimeout, match="sleep still running after 0.2s"):
            pipeline.wait(timeout=0.2)


def test_an_error_in_on_line_does_not_stop_the_draining_and_is_raised_by_wait(no_leaks):
    def broken(stage, line):
        raise BrokenPipeError("supervisor gone")

    code = "import sys\nfor i in range(20000): sys.stderr.write(f'noise {i}\\n')"  # far beyond a pipe buffer
    with Pipeline([py("noisy", code)], on_line=broken) as pipeline:
        no_leaks.extend(pipeline.pids().values())
        read_all(pipeline.output_fd)
        with pytest.raises(BrokenPipeError):
            pipeline.wait(timeout=10)
        assert pipeline.exit_codes() == {"noisy": 0}


def test_stdin_feeds_the_first_stage(no_leaks, tmp_path):
    source = tmp_path / "input"
    source.write_bytes(b"from a file\n")
    with open(source, "rb") as handle:
        with Pipeline([StageSpec("cat", ["cat"])], stdin=handle) as pipeline:
            no_leaks.extend(pipeline.pids().values())
            assert read_all(pipeline.output_fd) == b"from a file\n"
            pipeline.wait()


def test_stage_environment_is_exactly_the_one_given(no_leaks):
    stage = StageSpec("env", [sys.executable, "-c", "import os; print(sorted(os.environ))"],
                      env={"ONLY": "this", "PATH": os.environ["PATH"]})
    with Pipeline([stage]) as pipeline:
        no_leaks.extend(pipeline.pids().values())
        output = read_all(pipeline.output_fd).decode()
        pipeline.wait()
    assert "'ONLY'" in output and "HOME" not in output


def test_base_env_keeps_the_basics_and_asked_prefixes_but_no_secrets(monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-secret")
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-1")
    monkeypatch.setenv("PGSSLROOTCERT", "/etc/ca.pem")
    monkeypatch.setenv("PGPASSWORD", "pg-secret")
    monkeypatch.setenv("LC_ALL", "C.UTF-8")
    env = base_env(keep_prefixes=("PG",), drop=("PGPASSWORD",), PGPASSFILE="/private/pgpass")
    assert env["PATH"] == os.environ["PATH"] and env["LC_ALL"] == "C.UTF-8"
    assert env["PGSSLROOTCERT"] == "/etc/ca.pem" and env["PGPASSFILE"] == "/private/pgpass"
    assert not {"AWS_SECRET_ACCESS_KEY", "SLACK_BOT_TOKEN", "PGPASSWORD"} & set(env)
    assert "PGSSLROOTCERT" not in base_env()
