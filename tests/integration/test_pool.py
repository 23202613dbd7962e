"""The worker pool through real processes: tests/integration/fake_worker.py plays the worker."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import pytest
from loguru import logger

from easybackup import exitcodes
from easybackup.config.model import DatabaseTarget, S3Settings, Strategy
from easybackup.jobspec import new_job
from easybackup.supervision.pool import WorkerPool
from easybackup.supervision.spawn import SpareWorker

FAKE_WORKER = str(Path(__file__).with_name("fake_worker.py"))


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """Given a pid, return (state, ppid) from /proc, or None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = text[text.rindex(")") + 2:].split()
    return fields[0], int(fields[1])


def _children_of_this_process() -> dict[int, str]:
    """Return {pid: state} of every child of the test process, zombies included."""
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (stat := _proc_stat(int(entry))) and stat[1] == os.getpid():
            children[int(entry)] = stat[0]
    return children


def _live_fake_workers() -> list[int]:
    live = []
    for pid, state in _children_of_this_process().items():
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except FileNotFoundError:
            continue
        if state != "Z" and FAKE_WORKER.encode() in cmdline:
            live.append(pid)
    return live


def _is_alive(pid: int) -> bool:
    stat = _proc_stat(pid)
    return stat is not None and stat[0] != "Z"


def _job(name: str, kind: str = "backup"):
    strategy = Strategy(name=name, databases=(DatabaseTarget("app", "postgresql://u:pw@127.0.0.1/app"),),
                        s3=S3Settings(bucket="b"))
    return new_job(strategy, "/tmp", datetime.now(timezone.utc), kind=kind)


class Recorder:
    """Collects what the pool reports, and builds pools that run the fake worker with plans from a directory."""

    def __init__(self, plan_dir: Path):
        self.plan_dir = plan_dir
        self.events: list[tuple[str, dict]] = []
        self.stderr: list[tuple[str, str]] = []
        self.finished: list = []
        self.aborted: list[tuple[str, str, str]] = []
        self.pools: list[WorkerPool] = []
        self.event_hook = None

    def plan(self, strategy: str, steps: list[dict], kind: str | None = None) -> None:
        """Given a strategy, the fake worker's steps and a kind of job (None: every kind), write its plan."""
        (self.plan_dir / f"{strategy}{'.' + kind if kind else ''}.json").write_text(json.dumps(steps))

    def pool(self, max_parallel: int = 2, **options) -> WorkerPool:
        pool = WorkerPool(max_parallel, on_event=self._event, on_stderr=self._stderr, on_finished=self._finished,
                          worker_argv=[sys.executable, FAKE_WORKER, str(self.plan_dir)],
                          abort_upload=self._abort, **options)
        self.pools.append(pool)
        return pool

    def _event(self, handle, event):
        self.events.append((handle.strategy, event))
        if self.event_hook:
            self.event_hook(handle, event)

    def _stderr(self, handle, line):
        self.stderr.append((handle.strategy, line))

    def _finished(self, handle):
        self.finished.append(handle)

    def _abort(self, handle, key, upload_id):
        self.aborted.append((handle.strategy, key, upload_id))

    def result_of(self, strategy: str) -> dict:
        (handle,) = [h for h in self.finished if h.strategy == strategy]
        return handle.result


def run_until_idle(pool: WorkerPool, limit: float = 15.0, each_poll=None) -> None:
    deadline = time.monotonic() + limit
    while not pool.idle:
        assert time.monotonic() < deadline, f"pool still busy after {limit} s: {pool.running()}"
        pool.poll(0.05)
        if each_poll:
            each_poll()


def wait_for(condition, pool: WorkerPool, limit: float = 10.0) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        pool.poll(0.05)


@pytest.fixture
def rec(tmp_path):
    recorder = Recorder(tmp_path)
    yield recorder
    for pool in recorder.pools:
        pool.stop(0)
        pool.close()
    # Every worker and every child of a worker is reaped: no zombies, nothing left running.
    assert [pid for pid, state in _children_of_this_process().items() if state == "Z"] == []
    assert _live_fake_workers() == []


@pytest.fixture
def warnings():
    records = []
    handler = logger.add(lambda message: records.append(message.record), level="WARNING")
    yield records
    logger.remove(handler)


def test_two_parallel_slots_never_run_more_than_two_workers_and_all_five_finish(rec):
    pool = rec.pool(max_parallel=2)
    for number in range(5):
        rec.plan(f"s{number}", [{"emit": "started", "pid": 0, "databases": ["app"]}, {"sleep": 0.4},
                                {"emit": "result", "status": "success", "databases": []}])
        assert pool.submit(_job(f"s{number}"))
    seen = []

    def count():
        live = _live_fake_workers()
        assert len(pool.running()) <= 2
        seen.append(len(live))

    run_until_idle(pool, each_poll=count)
    assert max(seen) == 2, seen
    assert sorted(h.strategy for h in rec.finished) == [f"s{n}" for n in range(5)]
    assert all(h.result["status"] == "success" and h.exit_code == 0 for h in rec.finished)
    by_start = sorted(rec.finished, key=lambda h: h.started_at)
    assert [h.strategy for h in by_start] == [f"s{n}" for n in range(5)]  # first in, first started


def test_a_worker_that_exits_is_reaped_at_once_not_when_a_long_poll_times_out(rec):
    # Its pipes close before it exits, as a real worker's do while the kernel tears it down: the pool has no
    # output left to wake it, only the exit itself.
    rec.plan("quick", [{"emit": "started", "pid": 0, "databases": []}, {"emit": "result", "status": "success"},
                       {"close_output": True}, {"sleep": 0.5}, {"exit": 0}])
    pool = rec.pool()
    pool.submit(_job("quick"))
    started = time.monotonic()
    while not pool.idle:
        pool.poll(20.0)
        assert time.monotonic() - started < 10.0, "the exit went unnoticed until a poll timed out"
    (handle,) = rec.finished
    assert handle.exit_code == 0 and handle.result["status"] == "success"


def test_a_spare_worker_started_before_the_pool_runs_the_first_job(rec):
    spare = SpareWorker([sys.executable, FAKE_WORKER, str(rec.plan_dir)])
    spare_pid = spare.pid
    pool = rec.pool(spare=spare)
    pool.submit(_job("first"))
    pool.submit(_job("second"))
    run_until_idle(pool)
    by_strategy = {handle.strategy: handle for handle in rec.finished}
    assert by_strategy["first"].pid == spare_pid and by_strategy["second"].pid != spare_pid
    assert all(handle.result["status"] == "success" for handle in rec.finished)
    assert spare.pid is None, "taken: the pool owns it now"


def test_a_spare_running_another_program_is_not_taken_and_close_kills_it(rec, tmp_path):
    spare = SpareWorker([sys.executable, FAKE_WORKER, str(tmp_path / "elsewhere")])
    spare_pid = spare.pid
    pool = rec.pool(spare=spare)
    pool.submit(_job("main"))
    run_until_idle(pool)
    (handle,) = rec.finished
    assert handle.pid != spare_pid and _is_alive(spare_pid)
    pool.close()
    assert _proc_stat(spare_pid) is None, "killed and reaped"


def test_a_spare_that_died_before_its_job_is_reaped_and_a_new_worker_runs_the_job(rec):
    spare = SpareWorker([sys.executable, FAKE_WORKER, str(rec.plan_dir)])
    spare_pid = spare.pid
    os.kill(spare_pid, signal.SIGKILL)
    while _proc_stat(spare_pid)[0] != "Z":
        time.sleep(0.01)
    pool = rec.pool(spare=spare)
    pool.submit(_job("main"))
    run_until_idle(pool)
    (handle,) = rec.finished
    assert handle.pid != spare_pid and handle.result["status"] == "success"
    assert _proc_stat(spare_pid) is None


def test_a_strategy_submitted_twice_while_queued_or_running_is_rejected(rec):
    rec.plan("nightly", [{"emit": "started", "pid": 0, "databases": []}, {"sleep": 0.5},
                         {"emit": "result", "status": "success"}])
    pool = rec.pool()
    assert pool.submit(_job("nightly"))
    assert not pool.submit(_job("nightly"))
    assert len(pool.queued()) == 1
    pool.poll(0)
    assert pool.is_busy("nightly") and len(pool.running()) == 1
    assert not pool.submit(_job("nightly"))
    assert pool.queued() == []
    run_until_idle(pool)
    assert len(rec.finished) == 1
    assert pool.submit(_job("nightly"))  # free again once it finished


def test_a_drill_runs_beside_its_strategys_backup_but_never_beside_another_drill(rec):
    slow = [{"emit": "started", "pid": 0, "databases": []}, {"sleep": 0.8}, {"emit": "result", "status": "success"}]
    rec.plan("nightly", slow)
    pool = rec.pool(max_parallel=3)
    assert pool.submit(_job("nightly", "backup")) and pool.submit(_job("nightly", "drill"))
    assert not pool.submit(_job("nightly", "drill")) and not pool.submit(_job("nightly", "backup"))
    pool.poll(0)
    assert sorted(h.kind for h in pool.running()) == ["backup", "drill"]
    assert pool.is_busy("nightly") and pool.is_busy("nightly", "drill") and not pool.is_busy("nightly", "verify")
    assert not pool.submit(_job("nightly", "drill")), "running counts as busy as queued does"
    run_until_idle(pool)
    assert sorted((h.kind, h.result["status"]) for h in rec.finished) == [("backup", "success"), ("drill", "success")]
    assert pool.submit(_job("nightly", "drill"))  # free again once it finished


def test_a_job_that_may_not_run_beside_a_running_one_waits_and_the_jobs_behind_it_start(rec):
    # "compact" stands for a kind the rule does not name: it runs beside nothing of its own strategy.
    rec.plan("main", [{"emit": "started", "pid": 0, "databases": []}, {"sleep": 0.8},
                      {"emit": "result", "status": "success"}], kind="backup")
    pool = rec.pool(max_parallel=2)
    for job in (_job("main", "backup"), _job("main", "compact"), _job("other", "backup")):
        assert pool.submit(job)
    started = []

    def watch():
        keys = [h.job.key for h in pool.running()]
        assert [k for k in keys if k[0] == "main"] in ([], [("main", "backup")], [("main", "compact")]), keys
        started.extend(k for k in keys if k not in started)

    pool.poll(0)
    watch()
    assert [j.key for j in pool.queued()] == [("main", "compact")], "it waits; the job behind it started"
    run_until_idle(pool, each_poll=watch)
    assert started == [("main", "backup"), ("other", "backup"), ("main", "compact")]
    assert all(h.result["status"] == "success" for h in rec.finished)


def test_the_worker_refuses_a_kind_it_cannot_run_with_the_bad_spec_code():
    job = _job("nightly", "verify")  # named in jobspec.KINDS, run by no worker yet
    done = subprocess.run([sys.executable, "-m", "easybackup.worker"], input=job.to_json().encode(),
                          capture_output=True, timeout=60)
    assert done.returncode == exitcodes.WORKER_BAD_SPEC, done
    assert "cannot run a job of kind 'verify': this worker runs backup, drill" in done.stderr.decode()
    assert done.stdout == b""  # no events: the pool reports it as a crash with this stderr line


def test_a_worker_that_exits_without_a_result_is_recorded_as_crashed_with_its_last_lines(rec):
    rec.plan("broken", [{"emit": "started", "pid": 0, "databases": ["app"]},
                        {"stderr": "pg_dump: connecting to postgresql://app:hunter22@db/app"},
                        {"stderr": "Traceback: something broke"}, {"exit": 70}])
    pool = rec.pool()
    pool.submit(_job("broken"))
    run_until_idle(pool)
    (handle,) = rec.finished
    result = handle.result
    assert result["type"] == "result" and result["status"] == "failed" and result["synthetic"]
    assert result["error"]["kind"] == "crashed"
    assert result["error"]["message"] == "worker exited with code 70 (internal error)"
    assert result["error"]["last_lines"][-1] == "Traceback: something broke"
    assert "hunter22" not in json.dumps(result) and "hunter22" not in str(rec.stderr)
    assert handle.exit_code == 70 and handle.events_seen == 1
    assert rec.aborted == []  # it never announced an upload


def test_a_worker_killed_with_sigkill_is_crashed_and_its_announced_upload_is_aborted(rec):
    rec.plan("oom", [{"emit": "started", "pid": 0, "databases": ["app"]}, {"emit": "db_started", "database": "app"},
                     {"emit": "upload_started", "database": "app", "key": "p/oom/app/x.dump.gz", "upload_id": "U1"},
                     {"sleep": 30}])

    def kill_on_upload(handle, event):
        if event["type"] == "upload_started":
            os.kill(handle.pid, signal.SIGKILL)

    rec.event_hook = kill_on_upload
    pool = rec.pool()
    pool.submit(_job("oom"))
    run_until_idle(pool)
    error = rec.result_of("oom")["error"]
    assert error["kind"] == "crashed"
    assert error["message"] == "worker killed by signal 9 (SIGKILL — perhaps out of memory?)"
    assert rec.aborted == [("oom", "p/oom/app/x.dump.gz", "U1")]


def test_a_finished_database_clears_the_announced_upload(rec):
    rec.plan("partial", [{"emit": "upload_started", "database": "a", "key": "k-a", "upload_id": "U-a"},
                         {"emit": "db_finished", "database": "a", "status": "success", "key": "k-a"},
                         {"exit": 1}])
    pool = rec.pool()
    pool.submit(_job("partial"))
    run_until_idle(pool)
    assert rec.aborted == []
    assert [d["database"] for d in rec.result_of("partial")["databases"]] == ["a"]


def test_garbage_oversized_and_truncated_lines_on_stdout_do_not_crash_the_pool(rec, warnings):
    rec.plan("noisy", [{"raw": "this is not json\n"}, {"raw": '{"v": 1, "type": "log"}\n'},
                       {"raw": "x", "repeat": 70 * 1024}, {"raw": "\n"},
                       {"print": "a stray print"},
                       {"emit": "log", "stream": "worker", "level": "info", "line": "still talking"},
                       {"emit": "result", "status": "success"},
                       {"raw": '{"v":1,"type":"progress","bytes_in":'}])
    pool = rec.pool()
    pool.submit(_job("noisy"))
    run_until_idle(pool)
    assert [e["type"] for _s, e in rec.events] == ["log", "result"]
    assert rec.result_of("noisy")["status"] == "success"
    assert ("noisy", "a stray print") in rec.stderr
    problems = [r["message"] for r in warnings if r["extra"].get("strategy") == "noisy"]
    assert len(problems) == 4, problems
    assert any("not JSON" in p for p in problems) and any("lacks" in p for p in problems)
    assert any("longer than 65536" in p for p in problems) and any("truncated event" in p for p in problems)


def test_a_silent_worker_is_killed_after_the_heartbeat_timeout(rec):
    rec.plan("hung", [{"emit": "started", "pid": 0, "databases": []}, {"sleep": 30}])
    pool = rec.pool(heartbeat_timeout=0.5)
    pool.submit(_job("hung"))
    started = time.monotonic()
    run_until_idle(pool)
    assert time.monotonic() - started < 5
    error = rec.result_of("hung")["error"]
    assert error["kind"] == "crashed"
    assert error["message"] == "worker sent no event for 0.5 s and was killed"
    assert "killed by signal 9" in error["detail"]


def test_a_worker_that_beats_its_heartbeat_outlives_the_silence_limit_and_the_observers_never_see_the_beats(rec):
    # 4 s of nothing but heartbeats, the limit 1.5 s: a limit under a second was tight for a fake worker's start-up
    # on a loaded machine.
    beats = [{"emit": "heartbeat"}, {"sleep": 0.2}] * 20
    rec.plan("waiting", [{"emit": "started", "pid": 0, "databases": []}, *beats,
                         {"emit": "result", "status": "success"}])
    pool = rec.pool(heartbeat_timeout=1.5)
    pool.submit(_job("waiting"))
    run_until_idle(pool)
    assert rec.result_of("waiting")["status"] == "success"
    assert [e["type"] for _s, e in rec.events] == ["started", "result"]


def test_stop_kills_a_worker_that_ignores_sigterm_and_its_child_after_the_grace_and_the_cancel_wait(rec):
    rec.plan("stubborn", [{"ignore_sigterm": True}, {"spawn_sleep": 60},
                          {"emit": "upload_started", "database": "app", "key": "k", "upload_id": "U9"},
                          {"sleep": 60}])
    rec.plan("queued", [])
    pool = rec.pool(max_parallel=1, cancel_wait=0.5)
    pool.submit(_job("stubborn"))
    pool.submit(_job("queued"))
    wait_for(lambda: any(e["type"] == "upload_started" for _s, e in rec.events), pool)
    (child_pid,) = [e["child_pid"] for _s, e in rec.events if "child_pid" in e]
    assert _is_alive(child_pid)
    started = time.monotonic()
    dropped = pool.stop(grace=1.0)
    assert 1.5 <= time.monotonic() - started < 2.5, "the grace (1 s), then the cancel wait (0.5 s), then SIGKILL"
    assert [job.strategy.name for job in dropped] == ["queued"]
    (handle,) = rec.finished
    assert handle.result["error"]["kind"] == "cancelled"
    assert "killed by signal 9" in handle.result["error"]["message"]
    assert rec.aborted == [("stubborn", "k", "U9")]
    deadline = time.monotonic() + 2
    while _is_alive(child_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _is_alive(child_pid)
    assert pool.idle


def test_stop_lets_a_running_worker_finish_within_its_grace_without_signalling_it(rec):
    rec.plan("finishing", [{"emit": "started", "pid": 0, "databases": []}, {"sleep": 1.0},
                           {"emit": "result", "status": "success"}])
    pool = rec.pool()
    pool.submit(_job("finishing"))
    wait_for(lambda: rec.events, pool)
    started = time.monotonic()
    pool.stop(grace=30.0)
    assert time.monotonic() - started < 5.0, "stopped as soon as the worker finished, not at the end of the grace"
    (handle,) = rec.finished
    assert handle.result["status"] == "success" and handle.exit_code == 0, "never signalled"


def test_stop_cancels_a_worker_still_running_at_the_end_of_its_grace_with_sigterm(rec):
    rec.plan("polite", [{"emit": "started", "pid": 0, "databases": []}, {"sleep": 60}])
    pool = rec.pool()
    pool.submit(_job("polite"))
    wait_for(lambda: rec.events, pool)
    started = time.monotonic()
    pool.stop(grace=1.0)
    assert 1.0 <= time.monotonic() - started < 3.0
    error = rec.result_of("polite")["error"]
    assert error["kind"] == "cancelled" and "killed by signal 15 (SIGTERM)" in error["message"]


def test_a_second_signal_while_stopping_cancels_the_workers_at_once(rec):
    rec.plan("polite", [{"emit": "started", "pid": 0, "databases": []}, {"sleep": 60}])
    pool = rec.pool()
    pool.submit(_job("polite"))
    wait_for(lambda: rec.events, pool)
    started = time.monotonic()
    pool.stop(grace=60.0, on_tick=pool.cancel_all)  # the caller's tick sees the second SIGTERM at once
    assert time.monotonic() - started < 3.0, "cancelled at once, not after the 60 s grace"
    error = rec.result_of("polite")["error"]
    assert error["kind"] == "cancelled" and "killed by signal 15 (SIGTERM)" in error["message"]


def test_each_worker_gets_its_own_strategys_shutdown_grace(rec):
    for name in ("short", "long"):
        rec.plan(name, [{"emit": "started", "pid": 0, "databases": []}, {"sleep": 3.0},
                        {"emit": "result", "status": "success"}])
    pool = rec.pool()
    for name, grace in (("short", 0.5), ("long", 30.0)):
        job = _job(name)
        strategy = replace(job.strategy, timeout=replace(job.strategy.timeout, shutdown_grace=grace))
        pool.submit(replace(job, strategy=strategy))
    wait_for(lambda: len(rec.events) == 2, pool)
    pool.stop()
    assert rec.result_of("short")["error"]["kind"] == "cancelled"
    assert rec.result_of("long")["status"] == "success"


def test_a_worker_that_cannot_be_started_is_reported_as_failed(rec):
    pool = WorkerPool(1, on_event=None, on_stderr=None, on_finished=rec.finished.append,
                      worker_argv=["/nonexistent/easybackup-worker"])
    pool.submit(_job("ghost"))
    pool.poll(0)
    (handle,) = rec.finished
    assert handle.result["status"] == "failed" and handle.result["error"]["kind"] == "internal"
    assert "could not start the worker" in handle.result["error"]["message"]
    assert pool.idle


def test_a_crashed_workers_leftover_child_is_killed_and_does_not_hold_up_the_pool(rec):
    rec.plan("leaky", [{"spawn_sleep": 60}, {"stderr": "about to die"}, {"exit": 70}])
    pool = rec.pool()
    pool.submit(_job("leaky"))
    started = time.monotonic()
    run_until_idle(pool)
    assert time.monotonic() - started < 3  # the child still held the stderr pipe: EOF was not waited for
    (child_pid,) = [e["child_pid"] for _s, e in rec.events if "child_pid" in e]
    deadline = time.monotonic() + 2
    while _is_alive(child_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _is_alive(child_pid)
    assert rec.result_of("leaky")["error"]["last_lines"] == ["about to die"]


def test_stopping_calls_on_tick_while_it_waits_for_a_worker_that_ignores_sigterm(rec):
    rec.plan("stubborn", [{"ignore_sigterm": True}, {"emit": "started", "pid": 0, "databases": []}, {"sleep": 30}])
    pool = rec.pool(cancel_wait=0.5)
    pool.submit(_job("stubborn"))
    wait_for(lambda: any(handle.events_seen for handle in pool.running()), pool)
    ticks: list[float] = []
    started = time.monotonic()
    pool.stop(1.5, on_tick=lambda: ticks.append(time.monotonic()))
    assert time.monotonic() - started >= 2.0, "the worker ignored SIGTERM: the whole grace and cancel wait passed"
    assert len(ticks) >= 10 and max(b - a for a, b in zip([started, *ticks], ticks, strict=False)) < 0.5
    (handle,) = rec.finished
    assert handle.exit_code == -signal.SIGKILL


def _supervisor_of_fake_workers(rec, tmp_path, name: str, grace: str, stall_after: float = 30.0):
    """Return a Supervisor whose workers are the fake worker, with one strategy `name`, its job already running."""
    from easybackup.config import load_config
    from easybackup.monitoring.metrics import Metrics
    from easybackup.monitoring.state import MonitorState
    from easybackup.supervision.supervisor import Supervisor
    from tests.harness.configs import write_config

    config = load_config(write_config(tmp_path, bucket="unused-bucket", endpoint="http://127.0.0.1:9", strategies=[
        {"name": name, "database_url": "postgres://u@127.0.0.1:9/db"}],
        timeout={"backup": "5m", "upload": "1m", "shutdown_grace": grace}))
    supervisor = Supervisor(config, MonitorState(config.strategies, stall_after=stall_after), Metrics(),
                            worker_argv=[sys.executable, FAKE_WORKER, str(rec.plan_dir)], read_s3_at_start=False)
    supervisor.pool.submit(new_job(config.strategies[0], config.temp_dir, datetime.now(timezone.utc)))
    wait_for(lambda: any(handle.events_seen for handle in supervisor.pool.running()), supervisor.pool)
    return supervisor


def test_the_supervisor_stays_healthy_while_a_long_shutdown_waits_for_its_workers(rec, tmp_path):
    rec.plan("stubborn", [{"ignore_sigterm": True}, {"emit": "started", "pid": 0, "databases": []}, {"sleep": 30}])
    # Stuck after 1.5 s here, well inside the 2.5 s the shutdown waits (grace, then cancel_wait): a shutdown that did
    # not beat would show. The pool beats every 0.1 s while it waits; 0.5 s was too tight on a loaded machine.
    supervisor = _supervisor_of_fake_workers(rec, tmp_path, "stubborn", "2s", stall_after=1.5)
    state = supervisor.state
    supervisor.pool.cancel_wait = 0.5  # it ignores SIGTERM: killed 0.5 s after its grace
    statuses: list[str] = []
    sampling = True

    def sample() -> None:
        while sampling:
            statuses.append(state.snapshot()[1]["status"])
            time.sleep(0.05)

    sampler = threading.Thread(target=sample)
    state.loop_heartbeat()  # the loop's last beat, just before it handles SIGTERM
    sampler.start()
    started = time.monotonic()
    try:
        supervisor._shutdown()
    finally:
        sampling = False
        sampler.join()
        supervisor.pool.close()
    assert time.monotonic() - started >= 2.0
    assert len(statuses) >= 20 and "unhealthy" not in statuses, statuses


def test_sigint_stops_the_supervisor_as_sigterm_does_and_a_second_one_cancels_at_once(rec, tmp_path):
    rec.plan("long", [{"emit": "started", "pid": 0, "databases": []}, {"sleep": 60}])
    supervisor = _supervisor_of_fake_workers(rec, tmp_path, "long", "30s")
    finished, report = [], supervisor.pool.on_finished
    supervisor.pool.on_finished = lambda handle: (finished.append(handle), report(handle))
    supervisor._enqueue_signal(signal.SIGINT, None)  # what the handler does; the loop dispatches it
    supervisor.step()
    assert supervisor._stopping and supervisor.pool.running(), "stopping, but the running backup goes on"
    for delay, signum in ((0.3, signal.SIGHUP), (0.6, signal.SIGINT)):  # a reload is ignored while stopping
        threading.Timer(delay, supervisor._enqueue_signal, (signum, None)).start()
    started = time.monotonic()
    try:
        supervisor._shutdown()
    finally:
        supervisor.pool.close()
    assert 0.6 <= time.monotonic() - started < 3.0, "cancelled by the second SIGINT, not after the 30 s grace"
    (handle,) = finished
    assert handle.result["error"]["kind"] == "cancelled" and handle.exit_code == -signal.SIGTERM


def test_the_silence_limit_is_60_s_unless_the_environment_sets_a_valid_duration(warnings):
    from easybackup.supervision.pool import silence_limit

    assert silence_limit({}) == 60.0
    assert silence_limit({"EASYBACKUP_WORKER_SILENCE_LIMIT": "5s"}) == 5.0
    assert silence_limit({"EASYBACKUP_WORKER_SILENCE_LIMIT": "2m"}) == 120.0
    assert warnings == []
    assert silence_limit({"EASYBACKUP_WORKER_SILENCE_LIMIT": "soon"}) == 60.0
    assert silence_limit({"EASYBACKUP_WORKER_SILENCE_LIMIT": "0s"}) == 60.0
    assert [r["message"].split(":")[0] for r in warnings] == ["EASYBACKUP_WORKER_SILENCE_LIMIT"] * 2
