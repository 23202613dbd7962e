"""What the supervisor learns from S3 at start, and the stale uploads it cleans up (DESIGN.md, "Objects in S3").

S3 is the state store: each strategy's newest manifest says when it last ran and succeeded. Multipart uploads
under a strategy's prefix that began before this supervisor started and are older than `timeout.backup` belong
to no live worker (a crashed host, a killed supervisor): they are aborted, since they cost storage forever.

All of it runs on one daemon thread, so a slow or unreachable S3 never delays the loop or the HTTP endpoints.
The thread only does I/O: it hands each strategy's `Restored` to a queue that the supervisor loop drains, so
health, metrics and the scheduler are only ever changed from the loop. Failures are logged, never fatal.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone

from botocore.exceptions import BotoCoreError, ClientError

from easybackup.config.model import Strategy
from easybackup.errors import EasybackupError
from easybackup.logs import log
from easybackup.scheduling import format_duration
from easybackup.storage.layout import strategy_prefix
from easybackup.storage.manifest import Manifest, newest_manifest
from easybackup.storage.multipart import OpenUpload, abort_upload, list_open_uploads
from easybackup.storage.s3 import classify_s3_error, make_client


@dataclass(frozen=True)
class Restored:
    """What S3 says about one strategy: its newest backup (None when it has none)."""

    strategy: str
    last_run: datetime | None = None  # when the newest backup started
    last_success: datetime | None = None  # when it finished
    size_bytes: int | None = None


def _parse_utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(timezone.utc)


def restored_from(strategy: str, manifest: Manifest | None) -> Restored:
    """Given a strategy name and its newest manifest (or None), return what it tells about the strategy."""
    if manifest is None:
        return Restored(strategy)
    return Restored(strategy, last_run=_parse_utc(manifest.started_at), last_success=_parse_utc(manifest.finished_at),
                    size_bytes=manifest.stored_bytes)


def read_newest(strategy: Strategy, client) -> Restored:
    """Given a strategy and an S3 client, return what its newest manifest says; raise EasybackupError on S3
    errors."""
    prefix = strategy_prefix(strategy.s3.base_path, strategy.name)
    return restored_from(strategy.name, newest_manifest(client, strategy.s3.bucket, prefix))


def stale_uploads(uploads: list[OpenUpload], started_at: datetime, max_age_s: float, now: datetime) -> list[OpenUpload]:
    """Given open uploads, the supervisor's start, `timeout.backup` and now, return those no worker can own:
    begun before the start and older than `max_age_s`."""
    return [upload for upload in uploads
            if upload.initiated < started_at and (now - upload.initiated).total_seconds() > max_age_s]


def abort_stale_uploads(strategy: Strategy, client, started_at: datetime, now: datetime) -> list[OpenUpload]:
    """Given a strategy, a client, the supervisor's start and now, abort the stale uploads under the
    strategy's prefix, warning for each with its key and age; return them. Raise EasybackupError on S3 errors."""
    prefix = strategy_prefix(strategy.s3.base_path, strategy.name)
    found = list_open_uploads(client, strategy.s3.bucket, prefix)
    stale = stale_uploads(found, started_at, strategy.timeout.backup, now)
    logger = log.bind(strategy=strategy.name)
    for upload in stale:
        age = format_duration((now - upload.initiated).total_seconds())
        logger.warning(f"aborting a stale multipart upload of {upload.key} begun {age} ago "
                       f"(older than timeout.backup, before this supervisor started)")
        abort_upload(client, strategy.s3.bucket, upload.key, upload.upload_id)
    return stale


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
            restored = read_newest(strategy, client)
            self._answers.put(restored)
            logger.info("newest backup in S3: " + (f"finished {restored.last_success:%Y-%m-%dT%H:%M:%SZ}"
                                                    if restored.last_success else "none"))
            if self.clean_uploads:
                abort_stale_uploads(strategy, client, self.started_at, self._clock())
        except EasybackupError as error:
            logger.error(f"could not read the state from S3 at start: {error}")
        except (BotoCoreError, ClientError, ValueError) as exc:  # client construction or an odd manifest date
            logger.error(f"could not read the state from S3 at start: {classify_s3_error(exc, strategy.s3.bucket)}")
