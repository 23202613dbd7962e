"""Supervision: the worker pool that runs, reads, reaps and stops worker processes."""
