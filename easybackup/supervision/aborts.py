"""Aborting the multipart uploads of workers that died, off the caller's thread: the loop never waits on S3."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from easybackup.errors import EasybackupError
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

        thread = threading.Thread(target=work, name=f"abort-{handle.run_id}", daemon=True)
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
