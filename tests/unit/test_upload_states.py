"""The multipart upload's state machine (storage/multipart.py): every move the table lists is taken, every other
one is refused, and the public calls made out of turn are refused the same way. S3 is a recording stand-in here;
tests/integration/test_storage_upload.py drives the same class through moto over HTTP."""

from __future__ import annotations

import itertools
import os
import threading

import pytest

from easybackup.errors import EasybackupError
from easybackup.storage import multipart
from easybackup.storage.multipart import (
    ABORTED,
    COMPLETED,
    FAILED,
    NEW,
    OPEN,
    READ,
    STARTING,
    TRANSITIONS,
    StreamingUpload,
)

STATES = (NEW, STARTING, OPEN, READ, COMPLETED, ABORTED, FAILED)


class Recording:
    """Answers like S3 and records the calls: (operation, upload id)."""

    def __init__(self):
        self.calls = []
        self.lock = threading.Lock()

    def _record(self, name, **kwargs):
        with self.lock:
            self.calls.append((name, kwargs.get("UploadId")))

    def create_multipart_upload(self, **kwargs):
        self._record("create")
        return {"UploadId": "u1"}

    def upload_part(self, **kwargs):
        self._record("part", **kwargs)
        return {"ETag": f"e{kwargs['PartNumber']}"}

    def complete_multipart_upload(self, **kwargs):
        self._record("complete", **kwargs)
        return {"ETag": "whole"}

    def abort_multipart_upload(self, **kwargs):
        self._record("abort", **kwargs)

    def put_object(self, **kwargs):
        self._record("put")
        return {"ETag": "empty"}


def in_state(state: str) -> StreamingUpload:
    upload = StreamingUpload(Recording(), "bucket", "key")
    upload._state = state  # the one place a test sets it: to try every move from every state
    return upload


def test_the_table_names_every_state_and_leads_only_to_states():
    assert set(TRANSITIONS) == set(STATES)
    assert all(targets <= set(STATES) for targets in TRANSITIONS.values())
    assert {state for state, targets in TRANSITIONS.items() if not targets} == {COMPLETED, ABORTED, FAILED}


@pytest.mark.parametrize("before,after", [pair for pair in itertools.product(STATES, repeat=2)
                                          if pair[1] in TRANSITIONS[pair[0]]])
def test_every_move_the_table_lists_is_taken(before, after):
    upload = in_state(before)
    upload._move(after)
    assert upload.state == after


@pytest.mark.parametrize("before,after", [pair for pair in itertools.product(STATES, repeat=2)
                                          if pair[1] not in TRANSITIONS[pair[0]]])
def test_every_other_move_is_refused_and_changes_nothing(before, after):
    upload = in_state(before)
    with pytest.raises(EasybackupError) as refused:
        upload._move(after)
    # An abort from another thread (a timeout) is the one legitimate surprise: the caller sees `cancelled`.
    assert refused.value.kind == ("cancelled" if before == ABORTED else "internal")
    assert upload.state == before


def write_and_close(data: bytes) -> int:
    read_fd, write_fd = os.pipe()
    os.write(write_fd, data)
    os.close(write_fd)
    return read_fd


@pytest.mark.parametrize("background", [False, True])
def test_a_whole_upload_goes_new_open_read_completed(background):
    client = Recording()
    fd = write_and_close(b"x" * 1000)
    with StreamingUpload(client, "bucket", "key", start_in_background=background) as upload:
        assert upload.state in ((STARTING, OPEN) if background else (OPEN,))  # a stand-in S3 answers at once
        upload.upload_fd(fd)
        assert upload.state == READ
        result = upload.complete()
        assert upload.state == COMPLETED
    os.close(fd)
    assert (result.size, result.parts, result.etag) == (1000, 1, "whole")
    assert client.calls == [("create", None), ("part", "u1"), ("complete", "u1")]


def test_reading_twice_completing_early_and_starting_twice_are_refused():
    fd = write_and_close(b"x" * 10)
    with StreamingUpload(Recording(), "bucket", "key") as upload:
        with pytest.raises(EasybackupError, match="cannot complete an upload that is open"):
            upload.complete()
        with pytest.raises(EasybackupError, match="no move from open to starting"):
            upload.start()
        upload.upload_fd(fd)
        with pytest.raises(EasybackupError, match="cannot read into an upload that is read"):
            upload.upload_fd(fd)
        upload.complete()
        with pytest.raises(EasybackupError, match="cannot complete an upload that is completed"):
            upload.complete()
    os.close(fd)


def test_an_abort_before_the_start_leaves_nothing_to_start_and_nothing_in_s3():
    client = Recording()
    upload = StreamingUpload(client, "bucket", "key")
    upload.abort()
    with pytest.raises(EasybackupError) as refused:
        upload.start()
    assert refused.value.kind == "cancelled" and upload.state == ABORTED
    assert client.calls == []


@pytest.mark.parametrize("state", [COMPLETED, ABORTED, FAILED])
def test_abort_in_an_end_state_does_nothing(state):
    upload = in_state(state)
    upload.abort()
    upload.abort()
    assert upload.state == state and upload.client.calls == []


def test_an_abort_of_an_open_upload_aborts_it_in_s3_once_and_stops_the_reader():
    client = Recording()
    fd = write_and_close(b"x" * 10)
    with pytest.raises(EasybackupError) as stopped, StreamingUpload(client, "bucket", "key") as upload:
        upload.abort()
        upload.upload_fd(fd)
    os.close(fd)
    assert stopped.value.kind == "cancelled" and upload.state == ABORTED
    assert client.calls == [("create", None), ("abort", "u1")]


def test_a_start_that_fails_on_a_part_thread_ends_failed_and_the_reader_raises_its_error():
    class Refusing(Recording):
        def create_multipart_upload(self, **kwargs):
            raise EasybackupError("no bucket", kind="storage")

    fd = write_and_close(b"x" * 10)
    with pytest.raises(EasybackupError, match="no bucket"), \
            StreamingUpload(Refusing(), "bucket", "key", start_in_background=True) as upload:
        upload.upload_fd(fd)
    os.close(fd)
    assert upload.state == FAILED


def test_the_part_threads_are_the_only_threads_the_upload_starts(monkeypatch, tmp_path):
    started = []
    original = threading.Thread.start

    def recording_start(thread):
        started.append(thread.name)
        original(thread)

    monkeypatch.setattr(threading.Thread, "start", recording_start)
    stream = tmp_path / "stream"  # two parts: more than a pipe holds without a writer thread
    stream.write_bytes(b"x" * (multipart.FIRST_PART_SIZE + 10))
    fd = os.open(stream, os.O_RDONLY)
    with StreamingUpload(Recording(), "bucket", "key", start_in_background=True) as upload:
        upload.upload_fd(fd)
        upload.complete()
    os.close(fd)
    assert started and all(name.startswith("upload-part") for name in started), started


@pytest.mark.timeout(30)
def test_an_abort_that_cancels_a_queued_part_does_not_leave_the_reader_waiting_for_it():
    # One part thread, busy creating the upload: the part waits in the queue, and the abort's shutdown cancels it.
    # A cancelled future never counts as done for concurrent.futures.wait: the reader must not wait on it forever.
    release = threading.Event()

    class SlowToCreate(Recording):
        def create_multipart_upload(self, **kwargs):
            release.wait(10)
            return super().create_multipart_upload(**kwargs)

    client = SlowToCreate()
    fd = write_and_close(b"x" * 1000)
    with pytest.raises(EasybackupError) as stopped, \
            StreamingUpload(client, "bucket", "key", concurrency=1, start_in_background=True) as upload:
        threading.Timer(0.5, lambda: (upload.abort(), release.set())).start()
        upload.upload_fd(fd)
    os.close(fd)
    assert stopped.value.kind == "cancelled" and upload.state == ABORTED
    assert client.calls == [("create", None), ("abort", "u1")]
