"""What the supervisor learns from S3 at start, and the stale uploads it cleans up (DESIGN.md, "Objects in S3").

S3 is the state store. Each strategy's newest run record (storage/runrecord.py) says how its last run ended —
failed, with which error, while its `_globals` dump succeeded — and how many runs failed in a row; the newest
manifest of each database says when that database last succeeded; the newest runs' manifests give the status
page's charts (their size and duration). Buckets written by versions before run records
have only manifests: then the newest manifest stands for the strategy, as it did. Multipart uploads under a
strategy's prefix that began before this supervisor started and are older than `timeout.backup` belong to no live
worker (a crashed host, a killed supervisor): they are aborted, since they cost storage forever. Archives without
a manifest older than the longest run the strategy allows (catalogue.retention.longest_run_s) are deleted.

All of it runs on one daemon thread, so a slow or unreachable S3 never delays the loop or the HTTP endpoints.
The thread only does I/O: it hands each strategy's `Restored` to a queue that the supervisor loop drains, so
health, metrics and the scheduler are only ever changed from the loop. Failures are logged, never fatal.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone

from botocore.exceptions import BotoCoreError, ClientError

from easybackup.config.model import Strategy
from easybackup.errors import EasybackupError
from easybackup.logs import log
from easybackup.monitoring.history import HistoryPoint, newest_run_keys, points_from_manifests
from easybackup.storage.drillrecord import newest_drill_record
from easybackup.storage.layout import strategy_prefix
from easybackup.storage.manifest import (
    READ_CONCURRENCY,
    Manifest,
    list_manifest_keys,
    newest_manifest_per_directory,
    read_manifest,
)
from easybackup.storage.locks import check_object_lock
from easybackup.storage.multipart import abort_stale_uploads
from easybackup.storage.runrecord import RunRecord, newest_run_records
from easybackup.storage.s3 import classify_s3_error, make_client, prune_settings

# Run records read at start, newest first, until a successful run: more failures in a row than this are shown as
# this many (retention keeps at least as many records: catalogue.retention.RUN_RECORDS_KEPT).
RECORDS_READ = 20


@dataclass(frozen=True)
class DatabaseRestored:
    """What S3 says about one database of a strategy: its newest backup, and how it ended in the last run."""

    last_success: datetime | None = None  # when its newest backup finished
    key: str | None = None  # that backup's archive
    status: str | None = None  # in the last run with a record: success, failed, timed_out, cancelled
    error: str | None = None


@dataclass(frozen=True)
class Restored:
    """What S3 says about one strategy (all None when it never ran)."""

    strategy: str
    last_run: datetime | None = None  # when the last run started
    last_success: datetime | None = None  # when the last run in which every database succeeded finished
    size_bytes: int | None = None
    status: str | None = None  # success | failed
    error: str | None = None  # the last run's error, masked, when it failed
    error_kind: str | None = None
    consecutive_failures: int = 0
    databases: dict[str, DatabaseRestored] = field(default_factory=dict)
    orphans_deleted: int = 0  # archives without a manifest deleted at start
    history: tuple[HistoryPoint, ...] = ()  # the newest runs' sizes and durations, for the status page
    last_drill: dict | None = None  # the newest restore drill record (storage/drillrecord.py), with drills only


def _parse_utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(timezone.utc)


def restored_from(strategy: str, records: list[RunRecord], manifests: list[Manifest]) -> Restored:
    """Given a strategy name, its newest run records (newest first) and the newest manifest of each database,
    return what they tell. Without records (versions before them), or when the newest manifest is newer than the
    newest record's run, the newest manifest stands for the strategy: a success. Pure."""
    newest = max(manifests, key=lambda m: (m.started_at, m.key), default=None)
    databases = {m.database: DatabaseRestored(last_success=_parse_utc(m.finished_at), key=m.key) for m in manifests}
    last = records[0] if records else None
    if last is None or (newest is not None and newest.started_at > last.finished_at):
        if newest is None:
            return Restored(strategy)
        return Restored(strategy, last_run=_parse_utc(newest.started_at), last_success=_parse_utc(newest.finished_at),
                        size_bytes=newest.stored_bytes, status="success", databases=databases)
    for outcome in last.databases:
        known = databases.get(outcome.database, DatabaseRestored())
        databases[outcome.database] = DatabaseRestored(last_success=known.last_success, key=known.key,
                                                       status=outcome.status, error=outcome.error)
    success = next((record for record in records if record.status == "success"), None)
    failures = next((index for index, record in enumerate(records) if record.status == "success"), len(records))
    sizes = [d.size for d in last.databases if d.status == "success" and d.size is not None]
    return Restored(strategy, last_run=_parse_utc(last.started_at),
                    last_success=_parse_utc(success.finished_at) if success else None,
                    size_bytes=sum(sizes) if sizes else None, status=last.status,
                    error=last.error if last.status != "success" else None,
                    error_kind=last.error_kind if last.status != "success" else None,
                    consecutive_failures=failures, databases=databases)


def restored_details(restored: Restored) -> dict:
    """Given what S3 said about a strategy, return the keyword arguments of MonitorState.restore_last beyond
    the times, status and size: the last error, failures in a row, and each database's view."""
    databases = {name: {"status": item.status, "error": item.error,
                        "last_success": f"{item.last_success:%Y-%m-%dT%H:%M:%SZ}" if item.last_success else None}
                 for name, item in restored.databases.items()}
    return {"error": restored.error, "error_kind": restored.error_kind,
            "consecutive_failures": restored.consecutive_failures, "databases": databases}


def read_state(strategy: Strategy, client) -> Restored:
    """Given a strategy and an S3 client, return what its run records and manifests say; raise EasybackupError on
    S3 errors."""
    s3 = strategy.s3
    records = newest_run_records(client, s3.bucket, s3.base_path, strategy.name, RECORDS_READ)
    manifests = newest_manifest_per_directory(client, s3.bucket, strategy_prefix(s3.base_path, strategy.name))
    return restored_from(strategy.name, records, [m for m in manifests if m.strategy == strategy.name])


def read_history(strategy: Strategy, client) -> tuple[HistoryPoint, ...]:
    """Given a strategy and an S3 client, return the size and duration of its newest runs from their manifests
    (one listing, then only the newest runs' manifests); raise EasybackupError on S3 errors. A manifest that
    cannot be read (gone to retention since the listing, or not one) is left out of a chart, not fatal."""
    s3 = strategy.s3
    keys = newest_run_keys(list_manifest_keys(client, s3.bucket, strategy_prefix(s3.base_path, strategy.name)))

    def read(key: str) -> Manifest | None:
        try:
            return read_manifest(client, s3.bucket, key)
        except (EasybackupError, ValueError) as exc:
            log.bind(strategy=strategy.name).warning(f"status page history: skipped {key}: {exc}")
            return None

    with concurrent.futures.ThreadPoolExecutor(READ_CONCURRENCY, thread_name_prefix="history") as pool:
        manifests = [m for m in pool.map(read, keys) if m is not None and m.strategy == strategy.name]
    return points_from_manifests(manifests)


class StartupReader:
    """Given the strategies, the supervisor's start and whether to clean stale uploads, read each strategy's
    state from S3 on a daemon thread; the loop takes the answers with `take()`."""

    def __init__(self, strategies: tuple[Strategy, ...], started_at: datetime, *, clean_uploads: bool = True,
                 client_factory: Callable = make_client, clock: Callable[[], datetime] | None = None):
        self.strategies = tuple(strategies)
        self.started_at = started_at
        self.clean_uploads = clean_uploads
        self.client_factory = client_factory
        self._clock = clock or (lambda: datetime.now(timezone.utc))
        self._answers: queue.SimpleQueue[Restored] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def start(self) -> StartupReader:
        self._thread = threading.Thread(target=self.read_all, name="startup-s3", daemon=True)
        self._thread.start()
        return self

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def done(self) -> bool:
        return self._thread is not None and not self._thread.is_alive()

    def take(self) -> list[Restored]:
        """Return the answers that arrived since the last call (never blocks)."""
        answers = []
        while True:
            try:
                answers.append(self._answers.get_nowait())
            except queue.Empty:
                return answers

    def read_all(self) -> None:
        """Read every strategy in turn; one that fails is logged and the others still get read."""
        for strategy in self.strategies:
            self._read_one(strategy)

    def _read_one(self, strategy: Strategy) -> None:
        logger = log.bind(strategy=strategy.name)
        try:
            client = self.client_factory(strategy.s3)
            self._check_lock(strategy, client)
            restored = read_state(strategy, client)
            restored = dataclasses.replace(restored, history=self._history(strategy, client),
                                           last_drill=self._last_drill(strategy, client))
            if self.clean_uploads:
                restored = dataclasses.replace(restored, orphans_deleted=self._delete_orphans(strategy, client))
            self._answers.put(restored)
            logger.info(f"last run in S3: {restored.status or 'none'}" + (
                f", last success finished {restored.last_success:%Y-%m-%dT%H:%M:%SZ}" if restored.last_success
                else ", no success"))
            if self.clean_uploads:
                abort_stale_uploads(strategy, client, self.started_at, self._clock())
        except EasybackupError as error:
            logger.error(f"could not read the state from S3 at start: {error}")
        except (BotoCoreError, ClientError, ValueError) as exc:  # client construction or an odd manifest date
            logger.error(f"could not read the state from S3 at start: {classify_s3_error(exc, strategy.s3.bucket)}")

    @staticmethod
    def _last_drill(strategy: Strategy, client) -> dict | None:
        """The last restore drill, so that health shows it after a restart; a failure to read it is a warning."""
        if strategy.restore_drill is None:
            return None
        try:
            return newest_drill_record(client, strategy.s3.bucket, strategy.s3.base_path, strategy.name)
        except (EasybackupError, ValueError) as error:
            log.bind(strategy=strategy.name).warning(f"could not read the last restore drill: {error}")
            return None

    @staticmethod
    def _history(strategy: Strategy, client) -> tuple[HistoryPoint, ...]:
        """The status page's charts are a side view: S3 failing to give them leaves them empty, nothing more."""
        try:
            return read_history(strategy, client)
        except EasybackupError as error:
            log.bind(strategy=strategy.name).warning(f"could not read the recent backups for the status page: {error}")
            return ()

    @staticmethod
    def _check_lock(strategy: Strategy, client) -> None:
        """With s3.object_lock, say at once (one error line) when the bucket cannot lock: every upload would fail."""
        if strategy.s3.object_lock is None:
            return
        try:
            check_object_lock(strategy.s3, client, strategy.name)
        except EasybackupError as error:
            log.bind(strategy=strategy.name).error(str(error))

    def _delete_orphans(self, strategy: Strategy, client) -> int:
        """Delete the strategy's archives that no run will commit any more (with the prune key, when one is set);
        return how many. A failure is logged: the state read before still counts."""
        from easybackup.catalogue.retention import delete_orphans

        if prune_settings(strategy.s3) is not strategy.s3:
            client = self.client_factory(prune_settings(strategy.s3))
        try:
            return len(delete_orphans(client, strategy, self._clock()))
        except EasybackupError as error:
            log.bind(strategy=strategy.name).error(f"could not delete archives without a manifest: {error}")
            return 0
