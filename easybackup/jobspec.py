"""The job spec: what the supervisor tells a worker to do, sent as one JSON document on the worker's stdin.

It travels on stdin (never argv or the environment) because it carries the strategy's secrets.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone

from easybackup.config.model import Strategy

SPEC_VERSION = 1

# What a job does. A spec without a kind is a backup (specs written before kinds existed). The pool says which
# kinds may run beside which (supervision/pool.py, may_run_beside); the worker says which it can run
# (worker/main.py, KIND_RUNNERS): verify and drill are named here before any worker runs them (issue 18).
BACKUP, VERIFY, DRILL = "backup", "verify", "drill"
KINDS = (BACKUP, VERIFY, DRILL)


def run_timestamp(moment: datetime) -> str:
    """Given an aware datetime, return the run timestamp used in S3 keys: UTC `YYYY-mm-ddTHHMMSSZ`."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H%M%SZ")


def new_run_id() -> str:
    """Return a short unique run id (12 hex digits)."""
    return uuid.uuid4().hex[:12]


@dataclass(frozen=True)
class JobSpec:
    run_id: str
    run_timestamp: str
    started_at: str  # ISO 8601 UTC with Z
    strategy: Strategy
    temp_dir: str
    kind: str = BACKUP

    @property
    def key(self) -> tuple[str, str]:
        """(strategy name, kind): what the pool tracks queued and running work by."""
        return self.strategy.name, self.kind

    def to_json(self) -> str:
        return json.dumps({
            "v": SPEC_VERSION,
            "kind": self.kind,
            "run_id": self.run_id,
            "run_timestamp": self.run_timestamp,
            "started_at": self.started_at,
            "temp_dir": self.temp_dir,
            "strategy": self.strategy.to_dict(),
        })

    @classmethod
    def from_json(cls, text: str) -> JobSpec:
        """Given the JSON text of a job spec, return it; raise ValueError if it is not one."""
        data = json.loads(text)
        if not isinstance(data, dict) or data.get("v") != SPEC_VERSION:
            raise ValueError(f"not a version {SPEC_VERSION} job spec")
        kind = data.get("kind", BACKUP)
        if not isinstance(kind, str) or not kind:
            raise ValueError(f"the job kind must be a name, not {kind!r}")
        return cls(run_id=str(data["run_id"]), run_timestamp=str(data["run_timestamp"]),
                   started_at=str(data["started_at"]), temp_dir=str(data["temp_dir"]),
                   strategy=Strategy.from_dict(data["strategy"]), kind=kind)


def new_job(strategy: Strategy, temp_dir: str, now: datetime, kind: str = BACKUP) -> JobSpec:
    """Given a strategy, the temp dir, the current time (aware) and the job's kind, return a new job with a
    fresh run id."""
    return JobSpec(run_id=new_run_id(), run_timestamp=run_timestamp(now),
                   started_at=now.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                   strategy=strategy, temp_dir=temp_dir, kind=kind)
