"""Job kinds: the spec carries one (a spec without one is a backup), and the pool's rule says which jobs of one
strategy may run at the same time — checked here for every pair of kinds."""

from __future__ import annotations

import itertools
import json
from datetime import datetime, timezone

import pytest

from easybackup.config.model import DatabaseTarget, S3Settings, Strategy
from easybackup.jobspec import BACKUP, DRILL, KINDS, VERIFY, JobSpec, new_job
from easybackup.supervision.aborts import UploadAborter
from easybackup.supervision.pool import SAME_STRATEGY_BESIDE, RunHandle, may_run_beside

NOW = datetime(2025, 6, 17, 3, tzinfo=timezone.utc)
STRATEGY = Strategy(name="nightly", databases=(DatabaseTarget("app", "postgresql://u@db/app"),),
                    s3=S3Settings(bucket="b"))


def test_a_job_keeps_its_kind_through_json():
    for kind in KINDS:
        job = new_job(STRATEGY, "/tmp", NOW, kind=kind)
        assert json.loads(job.to_json())["kind"] == kind
        assert JobSpec.from_json(job.to_json()) == job
        assert job.key == ("nightly", kind)


def test_a_spec_without_a_kind_reads_as_a_backup():
    data = json.loads(new_job(STRATEGY, "/tmp", NOW, kind=DRILL).to_json())
    del data["kind"]
    assert JobSpec.from_json(json.dumps(data)).kind == BACKUP
    assert new_job(STRATEGY, "/tmp", NOW).kind == BACKUP


@pytest.mark.parametrize("kind", [None, "", 3, ["backup"]])
def test_a_kind_that_is_not_a_name_is_not_a_spec(kind):
    data = json.loads(new_job(STRATEGY, "/tmp", NOW).to_json())
    data["kind"] = kind
    with pytest.raises(ValueError, match="job kind"):
        JobSpec.from_json(json.dumps(data))


def test_a_kind_the_spec_does_not_know_still_reads_so_the_worker_can_name_it():
    data = json.loads(new_job(STRATEGY, "/tmp", NOW).to_json())
    data["kind"] = "compact"
    assert JobSpec.from_json(json.dumps(data)).kind == "compact"


def test_the_table_names_every_pair_of_kinds_once():
    pairs = {tuple(sorted(pair, key=KINDS.index)) for pair in itertools.combinations_with_replacement(KINDS, 2)}
    assert set(SAME_STRATEGY_BESIDE) == pairs


@pytest.mark.parametrize("kind,other", list(itertools.product(KINDS + ("compact",), repeat=2)))
def test_jobs_of_two_strategies_always_run_beside_each_other(kind, other):
    assert may_run_beside(("a", kind), ("b", other))


@pytest.mark.parametrize("kind,other", list(itertools.product(KINDS, repeat=2)))
def test_the_rule_for_one_strategy_is_symmetric_and_never_allows_two_of_a_kind(kind, other):
    allowed = may_run_beside(("a", kind), ("a", other))
    assert allowed == may_run_beside(("a", other), ("a", kind))
    if kind == other:
        assert not allowed


EXPECTED_BESIDE = {  # the decision, written out: checks never wait for a backup, two of a kind never run at once
    (BACKUP, BACKUP): False, (BACKUP, VERIFY): True, (BACKUP, DRILL): True,
    (VERIFY, VERIFY): False, (VERIFY, DRILL): True, (DRILL, DRILL): False,
}


@pytest.mark.parametrize("pair", list(EXPECTED_BESIDE))
def test_what_may_run_beside_what_within_one_strategy(pair):
    kind, other = pair
    assert may_run_beside(("a", kind), ("a", other)) is EXPECTED_BESIDE[pair]


@pytest.mark.parametrize("kind", KINDS + ("compact",))
def test_a_kind_the_table_does_not_name_runs_beside_nothing_of_its_strategy(kind):
    assert not may_run_beside(("a", "compact"), ("a", kind))
    assert not may_run_beside(("a", kind), ("a", "compact"))


# A drill's is a drill record, never a backup run record (tests/integration/test_restore_drill.py reads it).
@pytest.mark.parametrize("kind,written", [(BACKUP, True), (DRILL, True), (VERIFY, False)])
def test_a_backup_or_a_drill_that_sent_no_result_gets_its_record_written_for_it(kind, written, monkeypatch):
    aborter = UploadAborter()
    started = []
    monkeypatch.setattr(aborter, "_start", lambda work, name: started.append(name))
    job = new_job(STRATEGY, "/tmp", NOW, kind=kind)
    handle = RunHandle(job=job, process=None, pid=1, started_at=0.0, last_event_at=0.0,
                       result={"status": "failed", "synthetic": True})
    aborter.record_unreported(handle)
    assert started == ([f"record-{job.run_id}"] if written else [])
