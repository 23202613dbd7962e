"""Streaming multipart uploads through moto's S3 over HTTP: whole objects arrive, failures leave nothing behind."""

import base64
import hashlib
import os
import re
import threading
import time
import zlib

import pytest
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
    ResponseStreamingError,
)

from easybackup.config.model import S3Settings
from easybackup.errors import EasybackupError
from easybackup.storage.multipart import (
    StreamingUpload,
    abort_upload,
    list_open_uploads,
    part_size,
)
from easybackup.storage.s3 import check_bucket, classify_s3_error, extra_put_args, make_client
from tests.harness.moto_server import ACCESS_KEY, SECRET_KEY
from tests.harness.net import free_port

MiB = 1024 * 1024
KEY = "base/nightly/shop/2024-03-05T023000Z.dump.gz"


def settings(moto, bucket, **overrides) -> S3Settings:
    values = {"bucket": bucket, "endpoint_url": moto.endpoint, "access_key": ACCESS_KEY, "secret_key": SECRET_KEY,
              "force_path_style": True}
    values.update(overrides)
    return S3Settings(**values)


class PipeWriter(threading.Thread):
    """Writes `data` into a new pipe in uneven chunks, then closes it; `fail_after` bytes raises instead."""

    def __init__(self, data: bytes, fail_after: int | None = None, stall_after: int | None = None):
        super().__init__(daemon=True)
        self.read_fd, self.write_fd = os.pipe()
        self.data, self.fail_after, self.stall_after = data, fail_after, stall_after
        self.error: BaseException | None = None
        self.release = threading.Event()

    def run(self) -> None:
        try:
            view, offset, step = memoryview(self.data), 0, 100_003
            while offset < len(view):
                if self.fail_after is not None and offset >= self.fail_after:
                    raise RuntimeError("pg_dump died")
                if self.stall_after is not None and offset >= self.stall_after:
                    self.release.wait(30)
                    return
                offset += os.write(self.write_fd, view[offset:offset + step])
        except BaseException as exc:  # the test's stand-in for a failed pipeline stage
            self.error = exc
        finally:
            os.close(self.write_fd)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        # Close our end first: a writer blocked on a full pipe then fails with EPIPE instead of hanging.
        self.release.set()
        os.close(self.read_fd)
        self.join(10)
        assert not self.is_alive()


def upload_stream(client, bucket, data: bytes, **kwargs):
    with PipeWriter(data) as writer, StreamingUpload(client, bucket, KEY, **kwargs) as upload:
        upload.upload_fd(writer.read_fd)
        writer.join(10)
        assert writer.error is None
        return upload.complete()


def download(client, bucket, key=KEY) -> bytes:
    return client.get_object(Bucket=bucket, Key=key)["Body"].read()


def assert_nothing_left(moto, bucket):
    assert moto.list_keys(bucket) == []
    assert moto.open_uploads(bucket) == []


def test_a_40_mib_stream_through_a_pipe_arrives_whole(moto, bucket):
    client = make_client(settings(moto, bucket))
    data = os.urandom(40 * MiB)
    started, progress = [], []
    result = upload_stream(client, bucket, data, on_started=started.append,
                           on_progress=lambda *values: progress.append(values))
    stored = download(client, bucket)
    assert stored == data
    assert result.sha256 == hashlib.sha256(data).hexdigest() == hashlib.sha256(stored).hexdigest()
    assert (result.key, result.size, result.parts) == (KEY, len(data), 3)
    assert len(started) == 1 and started[0]
    assert progress[-1] == (len(data), len(data), 3)
    assert moto.open_uploads(bucket) == []


def test_an_empty_stream_becomes_an_empty_object(moto, bucket):
    client = make_client(settings(moto, bucket))
    result = upload_stream(client, bucket, b"")
    assert download(client, bucket) == b""
    assert (result.size, result.sha256) == (0, hashlib.sha256(b"").hexdigest())
    assert moto.open_uploads(bucket) == []


class SlowToCreate:
    """A client whose CreateMultipartUpload takes a second, as one still being built (or a slow S3) would."""

    def __init__(self, client):
        self._client = client

    def create_multipart_upload(self, **kwargs):
        time.sleep(1.0)
        return self._client.create_multipart_upload(**kwargs)

    def __getattr__(self, name):
        return getattr(self._client, name)


def test_an_upload_started_in_the_background_reads_past_its_first_part_while_s3_creates_it(moto, bucket):
    client = make_client(settings(moto, bucket))
    data = os.urandom(40 * MiB)
    read_when_started = []
    with PipeWriter(data) as writer, StreamingUpload(SlowToCreate(client), bucket, KEY, start_in_background=True,
                                                     on_started=lambda _: read_when_started.append(
                                                         upload.bytes_read)) as upload:
        upload.upload_fd(writer.read_fd)
        result = upload.complete()
    assert len(read_when_started) == 1 and read_when_started[0] > part_size(1)
    assert download(client, bucket) == data and result.parts == 3
    assert moto.open_uploads(bucket) == []


def test_reading_ahead_of_a_slow_background_start_stays_within_the_memory_bound(moto, bucket):
    client = make_client(settings(moto, bucket))
    data = os.urandom(100 * MiB)
    read_when_started = []
    with PipeWriter(data) as writer, StreamingUpload(SlowToCreate(client), bucket, KEY, start_in_background=True,
                                                     concurrency=2, on_started=lambda _: read_when_started.append(
                                                         upload.bytes_read)) as upload:
        upload.upload_fd(writer.read_fd)
        result = upload.complete()
    # Two parts wait for the upload, the third fills and waits for a slot: no more is read.
    assert read_when_started == [3 * part_size(1)]
    assert download(client, bucket) == data and result.parts == 7


def test_an_empty_stream_with_a_background_start_becomes_an_empty_object(moto, bucket):
    client = make_client(settings(moto, bucket))
    result = upload_stream(client, bucket, b"", start_in_background=True)
    assert download(client, bucket) == b"" and result.size == 0
    assert moto.open_uploads(bucket) == []


def test_a_background_start_that_fails_is_raised_by_the_reader_classified(moto, bucket):
    client = make_client(settings(moto, bucket))
    with pytest.raises(EasybackupError) as failure:
        with PipeWriter(os.urandom(20 * MiB)) as writer, \
                StreamingUpload(client, "no-such-bucket-here", KEY, start_in_background=True) as upload:
            upload.upload_fd(writer.read_fd)
    assert (failure.value.kind, failure.value.transient) == ("storage", False)
    assert "no-such-bucket-here" in failure.value.hint


def test_an_abort_while_the_upload_is_created_in_the_background_aborts_what_s3_creates(moto, bucket):
    client = make_client(settings(moto, bucket))
    started = []
    with pytest.raises(EasybackupError) as failure:
        with PipeWriter(os.urandom(40 * MiB)) as writer, \
                StreamingUpload(SlowToCreate(client), bucket, KEY, start_in_background=True,
                                on_started=started.append) as upload:
            threading.Timer(0.3, upload.abort).start()  # a timeout, from another thread
            upload.upload_fd(writer.read_fd)
            upload.complete()
    assert failure.value.kind == "cancelled" and started == []
    assert_nothing_left(moto, bucket)


def test_a_stream_stopped_while_its_upload_is_created_in_the_background_leaves_nothing(moto, bucket):
    client = make_client(settings(moto, bucket))
    stop = threading.Event()
    threading.Timer(0.3, stop.set).start()
    with pytest.raises(EasybackupError) as failure:
        with PipeWriter(os.urandom(4 * MiB), stall_after=1 * MiB) as writer, \
                StreamingUpload(SlowToCreate(client), bucket, KEY, start_in_background=True) as upload:
            upload.upload_fd(writer.read_fd, stop_event=stop)
    assert failure.value.kind == "cancelled"
    assert_nothing_left(moto, bucket)  # created after the stop, aborted on the way out


def test_a_stream_of_exactly_one_part_size_is_one_part(moto, bucket):
    client = make_client(settings(moto, bucket))
    data = os.urandom(part_size(1))
    result = upload_stream(client, bucket, data)
    assert result.parts == 1
    assert download(client, bucket) == data
    assert result.sha256 == hashlib.sha256(data).hexdigest()


def test_a_failed_writer_leaves_no_object_and_no_open_upload(moto, bucket):
    client = make_client(settings(moto, bucket))
    with pytest.raises(RuntimeError, match="pg_dump died"):
        with PipeWriter(os.urandom(40 * MiB), fail_after=20 * MiB) as writer, \
                StreamingUpload(client, bucket, KEY) as upload:
            upload.upload_fd(writer.read_fd)
            writer.join(10)
            if writer.error:  # what the worker does when a pipeline stage did not exit 0
                raise writer.error
            upload.complete()
    assert_nothing_left(moto, bucket)


def test_an_announcement_that_fails_aborts_the_new_upload(moto, bucket):
    def supervisor_gone(upload_id):
        raise BrokenPipeError("supervisor gone")

    with pytest.raises(BrokenPipeError):
        StreamingUpload(make_client(settings(moto, bucket)), bucket, KEY, on_started=supervisor_gone).start()
    assert_nothing_left(moto, bucket)


def test_an_explicit_abort_leaves_nothing_and_can_be_repeated(moto, bucket):
    client = make_client(settings(moto, bucket))
    with PipeWriter(os.urandom(20 * MiB)) as writer, StreamingUpload(client, bucket, KEY) as upload:
        upload.upload_fd(writer.read_fd)
        upload.abort()
        upload.abort()
    assert_nothing_left(moto, bucket)


def test_a_failing_part_upload_is_raised_classified_not_swallowed(moto, bucket):
    client = make_client(settings(moto, bucket))
    with pytest.raises(EasybackupError) as failure:
        with PipeWriter(os.urandom(40 * MiB)) as writer, StreamingUpload(client, bucket, KEY) as upload:
            # Someone else (the supervisor's cleanup) aborts the upload under our feet.
            abort_upload(moto.client(), bucket, KEY, upload.upload_id)
            upload.upload_fd(writer.read_fd)
            upload.complete()
    # Real S3 answers NoSuchUpload (not transient); moto answers 500 (transient). Either way: raised, storage.
    assert failure.value.kind == "storage"
    assert re.match(r"part \d+ of .*UploadPart", failure.value.detail)
    assert_nothing_left(moto, bucket)


def test_a_bucket_deleted_mid_stream_fails_the_upload_and_abort_does_not_raise(moto, bucket):
    client = make_client(settings(moto, bucket))
    with pytest.raises(EasybackupError) as failure:
        with PipeWriter(os.urandom(40 * MiB)) as writer, StreamingUpload(client, bucket, KEY) as upload:
            client.delete_bucket(Bucket=bucket)
            upload.upload_fd(writer.read_fd)
    assert (failure.value.kind, failure.value.transient) == ("storage", False)
    assert bucket in failure.value.hint
    assert bucket not in {b["Name"] for b in client.list_buckets()["Buckets"]}


def test_a_stop_event_cancels_a_stalled_stream(moto, bucket):
    client = make_client(settings(moto, bucket))
    stop = threading.Event()
    threading.Timer(0.3, stop.set).start()
    began = time.monotonic()
    with pytest.raises(EasybackupError) as failure:
        with PipeWriter(os.urandom(4 * MiB), stall_after=1 * MiB) as writer, \
                StreamingUpload(client, bucket, KEY) as upload:
            upload.upload_fd(writer.read_fd, stop_event=stop)
    assert failure.value.kind == "cancelled"
    assert time.monotonic() - began < 5
    assert_nothing_left(moto, bucket)


def test_extra_put_args_reach_the_stored_object(moto, bucket):
    s3 = settings(moto, bucket, storage_class="STANDARD_IA", server_side_encryption="AES256")
    assert extra_put_args(s3) == {"StorageClass": "STANDARD_IA", "ServerSideEncryption": "AES256",
                                  "ChecksumAlgorithm": "CRC32"}
    assert extra_put_args(s3, storage_class=False) == {"ServerSideEncryption": "AES256", "ChecksumAlgorithm": "CRC32"}
    assert extra_put_args(settings(moto, bucket, checksum_mode="when_required")) == {}
    client = make_client(s3)
    upload_stream(client, bucket, b"x" * 1000, extra_args=extra_put_args(s3))
    head = client.head_object(Bucket=bucket, Key=KEY)
    assert head["StorageClass"] == "STANDARD_IA"
    assert head["ServerSideEncryption"] == "AES256"


def test_open_uploads_under_a_prefix_are_listed_and_aborted(moto, bucket):
    client = make_client(settings(moto, bucket))
    mine = [client.create_multipart_upload(Bucket=bucket, Key=f"base/nightly/db{i}/x.dump")["UploadId"]
            for i in range(3)]
    client.create_multipart_upload(Bucket=bucket, Key="other/x.dump")
    found = list_open_uploads(client, bucket, "base/nightly/")
    assert sorted(upload.upload_id for upload in found) == sorted(mine)
    assert all(upload.initiated.tzinfo is not None for upload in found)
    for upload in found:
        assert abort_upload(client, bucket, upload.key, upload.upload_id) is True
        assert abort_upload(client, bucket, upload.key, upload.upload_id) is False
    assert list_open_uploads(client, bucket, "base/nightly/") == []
    assert len(list_open_uploads(client, bucket, "")) == 1


# -- the client ------------------------------------------------------------------------------------------

def captured_headers(client) -> list[tuple[str, str, dict]]:
    """Record (operation, url, headers) of every request the client really sends."""
    seen = []

    def record(request, event_name, **_):
        seen.append((event_name.rsplit(".", 1)[-1], request.url,
                     {name.lower(): value for name, value in request.headers.items()}))

    client.meta.events.register("before-send.s3.*", record)
    return seen


def checksum_headers(headers: dict) -> set[str]:
    return {name for name in headers if "checksum" in name or name == "x-amz-trailer"}


def send_put_and_parts(moto, bucket, mode):
    client = make_client(settings(moto, bucket, checksum_mode=mode))
    seen = captured_headers(client)
    client.put_object(Bucket=bucket, Key="plain-put", Body=b"hello")
    upload_stream(client, bucket, os.urandom(17 * MiB))
    return {(operation, frozenset(checksum_headers(headers))) for operation, _url, headers in seen
            if operation in ("PutObject", "UploadPart")}


def test_when_required_sends_no_checksum_headers(moto, bucket):
    sent = send_put_and_parts(moto, bucket, "when_required")
    assert {operation for operation, _ in sent} == {"PutObject", "UploadPart"}
    assert all(headers == frozenset() for _, headers in sent)


def test_when_supported_sends_checksum_headers(moto, bucket):
    sent = send_put_and_parts(moto, bucket, "when_supported")
    assert {operation for operation, _ in sent} == {"PutObject", "UploadPart"}
    assert all(any(name.startswith("x-amz-checksum-") for name in headers) for _, headers in sent)


def completion_request(moto, bucket, mode) -> bytes:
    """Upload two parts with checksum_mode `mode`; return the body of the CompleteMultipartUpload request."""
    client = make_client(settings(moto, bucket, checksum_mode=mode))
    bodies = []
    client.meta.events.register("before-send.s3.CompleteMultipartUpload",
                                lambda request, **_: bodies.append(bytes(request.body)))
    upload_stream(client, bucket, os.urandom(17 * MiB))
    return bodies[0]


def test_completing_an_upload_lists_each_parts_checksum_for_the_store_to_check(moto, bucket):
    # Without them moto (and stores like it) re-reads the whole object to compute its own: ~1 s per GiB.
    body = completion_request(moto, bucket, "when_supported")
    assert body.count(b"<ChecksumCRC32>") == 2 and body.count(b"<ETag>") == 2


def test_an_archive_is_stored_with_a_crc32_checksum_of_its_parts(moto, bucket):
    s3 = settings(moto, bucket)
    client = make_client(s3)
    data = os.urandom(17 * MiB)
    upload_stream(client, bucket, data, extra_args=extra_put_args(s3))
    head = client.head_object(Bucket=bucket, Key=KEY, ChecksumMode="ENABLED")
    # Composite: the CRC32 of the parts' CRC32s (real S3 appends "-2", the part count; moto does not).
    parts = [data[:part_size(1)], data[part_size(1):]]
    expected = zlib.crc32(b"".join(zlib.crc32(part).to_bytes(4, "big") for part in parts))
    assert head["ChecksumCRC32"].split("-")[0] == base64.b64encode(expected.to_bytes(4, "big")).decode()


def test_with_when_required_the_completion_lists_no_checksums(moto, bucket):
    body = completion_request(moto, bucket, "when_required")
    assert b"Checksum" not in body and body.count(b"<ETag>") == 2


def test_force_path_style_puts_the_bucket_in_the_path(moto, bucket):
    client = make_client(settings(moto, bucket))
    seen = captured_headers(client)
    client.put_object(Bucket=bucket, Key="k", Body=b"")
    assert seen[-1][1] == f"{moto.endpoint}/{bucket}/k"


def test_aws_endpoint_url_s3_is_honoured_without_endpoint_url(aws_env, bucket):
    # aws_env sets AWS_ENDPOINT_URL_S3 and the key pair in the environment: boto3's chain finds both.
    client = make_client(S3Settings(bucket=bucket))
    assert client.meta.endpoint_url == aws_env.endpoint
    client.put_object(Bucket=bucket, Key="via-env", Body=b"found")
    assert aws_env.client().get_object(Bucket=bucket, Key="via-env")["Body"].read() == b"found"


def test_an_explicit_endpoint_url_beats_the_environment(moto, bucket, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", f"http://127.0.0.1:{free_port()}")
    client = make_client(settings(moto, bucket))
    assert client.meta.endpoint_url == moto.endpoint
    check_bucket(settings(moto, bucket), client)


def test_the_region_defaults_to_us_east_1_and_follows_settings(moto, bucket):
    assert make_client(settings(moto, bucket)).meta.region_name == "us-east-1"
    assert make_client(settings(moto, bucket, region="eu-west-3")).meta.region_name == "eu-west-3"


# -- error classification --------------------------------------------------------------------------------

def test_a_missing_bucket_is_a_storage_error_that_names_the_bucket(moto):
    s3 = settings(moto, "no-such-bucket-here")
    with pytest.raises(EasybackupError) as failure:
        StreamingUpload(make_client(s3), s3.bucket, KEY).start()
    error = failure.value
    assert (error.kind, error.transient) == ("storage", False)
    assert "no-such-bucket-here" in error.hint


def test_check_bucket_reports_a_missing_bucket_the_same_way(moto):
    with pytest.raises(EasybackupError) as failure:
        check_bucket(settings(moto, "no-such-bucket-here"))
    assert (failure.value.kind, failure.value.transient) == ("storage", False)
    assert "no-such-bucket-here" in failure.value.hint


def test_check_bucket_passes_for_a_bucket_that_exists(moto, bucket):
    check_bucket(settings(moto, bucket))


def test_an_unreachable_endpoint_is_a_transient_storage_error(moto, bucket):
    with pytest.raises(EasybackupError) as failure:
        check_bucket(settings(moto, bucket, endpoint_url=f"http://127.0.0.1:{free_port()}"))
    assert (failure.value.kind, failure.value.transient) == ("storage", True)


def client_error(code: str, status: int) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}},
                       "UploadPart")


@pytest.mark.parametrize("exc, kind, transient", [
    (client_error("AccessDenied", 403), "permission", False),
    (client_error("InvalidAccessKeyId", 403), "authentication", False),
    (client_error("SignatureDoesNotMatch", 403), "authentication", False),
    (client_error("SlowDown", 503), "storage", True),
    (client_error("InternalError", 500), "storage", True),
    (client_error("BadGateway", 502), "storage", True),
    (client_error("Throttling", 400), "storage", True),
    (EndpointConnectionError(endpoint_url="http://s3"), "storage", True),
    (ReadTimeoutError(endpoint_url="http://s3"), "storage", True),
    (ConnectionClosedError(endpoint_url="http://s3"), "storage", True),
    (ResponseStreamingError(error="connection reset"), "storage", True),
    (NoCredentialsError(), "authentication", False),
])
def test_s3_errors_are_classified_for_the_retry_decision(exc, kind, transient):
    error = classify_s3_error(exc, "my-bucket")
    assert (error.kind, error.transient) == (kind, transient)
    assert error.message and error.detail
