"""Plays a worker for the pool tests: `fake_worker.py PLAN_DIR`, job spec as JSON on stdin.

It takes over stdout and writes events exactly as the real worker does (easybackup.wire), following the plan in
PLAN_DIR/<strategy>.<kind>.json, else PLAN_DIR/<strategy>.json — a list of steps, each a one-key-ish object:

  {"emit": "progress", "database": "db1", ...fields}   an event through EventWriter
  {"raw": "text", "repeat": 1}                          raw text on the event stream (garbage, oversized lines)
  {"stderr": "text"}                                    one line on stderr
  {"print": "text"}                                     a stray print() (must land on stderr)
  {"sleep": 0.5}
  {"spawn_sleep": 60}                                   a `sleep` child in this worker's process group; its pid
                                                        is announced in a log event (field child_pid)
  {"ignore_sigterm": true}
  {"close_output": true}                                close the event stream and stderr (the worker lives on)
  {"exit": 70}

Without a plan file it sends `started` and a successful `result`, then exits 0.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from easybackup.jobspec import JobSpec
from easybackup.wire import EventWriter, take_over_stdout

DEFAULT_PLAN = [{"emit": "started", "pid": 0, "databases": []}, {"emit": "result", "status": "success"}]


def run_step(step: dict, writer: EventWriter, events) -> None:
    if "emit" in step:
        fields = {k: v for k, v in step.items() if k not in ("emit", "database")}
        writer.emit(step["emit"], step.get("database"), **fields)
    elif "raw" in step:
        events.write((step["raw"] * step.get("repeat", 1)).encode("utf-8"))
    elif "stderr" in step:
        sys.stderr.write(step["stderr"] + "\n")
        sys.stderr.flush()
    elif "print" in step:
        print(step["print"], flush=True)
    elif "sleep" in step:
        time.sleep(step["sleep"])
    elif "spawn_sleep" in step:
        child = subprocess.Popen(["sleep", str(step["spawn_sleep"])], stdin=subprocess.DEVNULL)
        writer.emit("log", stream="fake", level="info", line=f"child {child.pid}", child_pid=child.pid)
    elif "ignore_sigterm" in step:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    elif "close_output" in step:
        events.close()
        os.close(1)  # take_over_stdout pointed it at stderr
        os.close(2)
    elif "exit" in step:
        os._exit(step["exit"])
    else:
        raise ValueError(f"unknown step {step}")


def main() -> int:
    job = JobSpec.from_json(sys.stdin.read())
    events = take_over_stdout()
    writer = EventWriter(events, job.run_id, job.strategy.name)
    plan_dir = Path(sys.argv[1])
    plan_file = plan_dir / f"{job.strategy.name}.{job.kind}.json"
    plan_file = plan_file if plan_file.exists() else plan_dir / f"{job.strategy.name}.json"
    plan = json.loads(plan_file.read_text()) if plan_file.exists() else DEFAULT_PLAN
    for step in plan:
        run_step(step, writer, events)
    return 0


if __name__ == "__main__":
    sys.exit(main())
