"""Supervision: the worker pool that runs, reads, reaps and stops worker processes."""

from easybackup.supervision.pool import RunHandle, WorkerPool, describe_exit

__all__ = ["RunHandle", "WorkerPool", "describe_exit"]
