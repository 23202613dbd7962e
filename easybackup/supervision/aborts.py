"""Cleaning up after workers that died, off the caller's thread (the loop never waits on S3): aborting their
multipart uploads, and writing the run record a worker that sent no result could not write itself."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone

from easybackup.errors import EasybackupError
from easybackup.jobspec import BACKUP, DRILL
from easybackup.logs import log


class UploadAborter:
    """Given a handle's announced upload, abort it on a thread; `join()` waits for all of them (bounded)."""

    def __init__(self):
        self._threads: list[threading.Thread] = []

    def __call__(self, handle, key: str, upload_id: str) -> None:
        s3 = handle.job.strategy.s3
        logger = log.bind(strategy=handle.strategy, run_id=handle.run_id)

        def work() -> None:
            # Imported here, on the rare path: boto3 would add ~0.15 s to the start of every `once`.
            from easybackup.storage.multipart import abort_upload
            from easybackup.storage.s3 import make_client

            try:
                abort_upload(make_client(s3), s3.bucket, key, upload_id)
                logger.info(f"aborted the multipart upload of {key} left by the worker")
            except EasybackupError as error:
                logger.error(f"could not abort the multipart upload {upload_id} of {key}: {error}")

        self._start(work, f"abort-{handle.run_id}")

    def record_unreported(self, handle) -> None:
        """Given a finished run, write its run record if its worker could not: it sent no result (killed,
        crashed, stopped at shutdown), so the pool made one up (`synthetic`). Health after a restart then shows
        this run, not the one before it. Run records are backups' (storage/runrecord.py): a job of another kind
        that died is not a backup run of its strategy; a restore drill that died gets its drill record instead
        (storage/drillrecord.py), so health after a restart shows that drill as failed, not the one before it."""
        result = handle.result if isinstance(handle.result, dict) else {}
        if not result.get("synthetic") or handle.job.kind not in (BACKUP, DRILL):
            return
        job = handle.job
        logger = log.bind(strategy=handle.strategy, run_id=handle.run_id)

        def work() -> None:
            from easybackup.storage.drillrecord import store_drill_record
            from easybackup.storage.runrecord import store_run_record
            from easybackup.storage.s3 import classify_s3_error, make_client

            finished = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
            try:
                client = make_client(job.strategy.s3)
                if job.kind == DRILL:
                    store_drill_record(client, job.strategy, job.run_id, job.run_timestamp, job.started_at, result)
                    return
                store_run_record(client, job.strategy, job.run_id, job.run_timestamp, job.started_at, finished,
                                 result)
            except Exception as exc:  # noqa: BLE001 — logged; the run's outcome is already known
                logger.error("could not write the run record of the worker that sent no result: "
                             f"{classify_s3_error(exc, job.strategy.s3.bucket)}")

        self._start(work, f"record-{handle.run_id}")

    def _start(self, work: Callable[[], None], name: str) -> None:
        thread = threading.Thread(target=work, name=name, daemon=True)
        self._threads.append(thread)
        thread.start()

    def join(self, timeout: float = 30.0, on_tick: Callable[[], None] | None = None) -> None:
        """Wait up to `timeout` seconds for each abort; call `on_tick` about every 0.5 s meanwhile (a heartbeat)."""
        for thread in self._threads:
            deadline = time.monotonic() + timeout
            while thread.is_alive() and (left := deadline - time.monotonic()) > 0:
                thread.join(min(0.5, left))
                if on_tick is not None:
                    on_tick()
