"""Observers of worker runs. The pool's callbacks fan out to them: logging, the terminal, Slack, metrics and
health. An observer's failure is logged and never changes a backup's result. Here, below every package that
observes, so monitoring and notifications need not import the supervisor that calls them."""

from __future__ import annotations

from easybackup.logs import log


class RunObserver:
    """Base observer: every hook does nothing."""

    name = "observer"

    def run_started(self, handle) -> None: ...

    def event(self, handle, event: dict) -> None: ...

    def stderr(self, handle, line: str) -> None: ...

    def run_finished(self, handle) -> None: ...


class Observers(RunObserver):
    """Given observers, call each for every hook; one that raises is logged as a warning and skipped."""

    def __init__(self, observers: list[RunObserver]):
        self.observers = list(observers)

    def _each(self, method: str, *args) -> None:
        for observer in self.observers:
            try:
                getattr(observer, method)(*args)
            except Exception as exc:  # noqa: BLE001 — a side channel never changes a backup's result
                log.warning("{} failed in {}: {}: {}", observer.name, method, type(exc).__name__, exc)

    def run_started(self, handle) -> None:
        self._each("run_started", handle)

    def event(self, handle, event: dict) -> None:
        self._each("event", handle, event)

    def stderr(self, handle, line: str) -> None:
        self._each("stderr", handle, line)

    def run_finished(self, handle) -> None:
        self._each("run_finished", handle)
