"""The harness's fault proxy forwards PostgreSQL (TCP) and moto (HTTP) faithfully and injects faults on command."""

from __future__ import annotations

import hashlib
import io
import os
import socket
import subprocess
import threading
import time

import boto3
import pytest
import requests
from boto3.exceptions import S3UploadFailedError
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, FlexibleChecksumError

from tests.harness.fault_proxy import FaultProxy
from tests.harness.moto_server import ACCESS_KEY, REGION, SECRET_KEY

MIB = 1024 * 1024
SMALL_DB = "harness_proxy_small"
LARGE_DB = "harness_proxy_large"
PARTS = TransferConfig(multipart_threshold=5 * MIB, multipart_chunksize=5 * MIB, max_concurrency=2)


@pytest.fixture(scope="module")
def databases(pg):
    """A small database (~400 KB dumped) and a large one (~8 MB dumped) on the session cluster."""
    for name, rows in ((SMALL_DB, 3000), (LARGE_DB, 60000)):
        pg.create_database(name)
        pg.psql(f"CREATE TABLE t AS SELECT g AS id, repeat(md5(g::text), 4) AS payload "
                f"FROM generate_series(1, {rows}) g", name)
    return pg


def env_through(pg, proxy) -> dict:
    """Return an environment in which psql/pg_dump reach `pg` through `proxy`."""
    env = pg.env()
    env["PGPORT"] = str(proxy.port)
    return env


def dump(env: dict, database: str) -> subprocess.CompletedProcess:
    return subprocess.run(["pg_dump", "-Fc", "-Z0", "-d", database], env=env, capture_output=True, timeout=60)


# -- TCP mode, in front of PostgreSQL -------------------------------------------------------------------------

def test_psql_works_through_the_tcp_proxy_and_is_counted(pg, fault_proxy):
    proxy = fault_proxy(pg.host, pg.port)
    out = subprocess.run(["psql", "-X", "-At", "-c", "select 40 + 2"], env=env_through(pg, proxy),
                         capture_output=True, text=True, timeout=30)
    assert out.stdout.strip() == "42", out.stderr
    assert proxy.connections == 1
    assert proxy.bytes_up > 0 and proxy.bytes_down > 0


def test_cut_makes_a_running_pg_dump_fail_and_refuses_connections_until_heal(databases, fault_proxy):
    pg = databases
    proxy = fault_proxy(pg.host, pg.port)
    proxy.throttle(300_000)  # ~8 MB at 300 kB/s: the dump is surely still running when we cut
    running = subprocess.Popen(["pg_dump", "-Fc", "-Z0", "-d", LARGE_DB], env=env_through(pg, proxy),
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while proxy.bytes_down < 200_000 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert running.poll() is None, "the dump ended before the cut"
        proxy.cut()
        _, stderr = running.communicate(timeout=20)
    finally:
        running.kill()
        running.wait()
    assert running.returncode != 0
    assert b"connection" in stderr.lower() or b"server closed" in stderr.lower(), stderr
    refused = subprocess.run(["psql", "-X", "-At", "-c", "select 1"], env=env_through(pg, proxy),
                             capture_output=True, timeout=30)
    assert refused.returncode != 0
    proxy.heal()
    assert dump(env_through(pg, proxy), SMALL_DB).returncode == 0


def test_cut_after_some_bytes_down_breaks_a_dump_once(databases, fault_proxy):
    pg = databases
    proxy = fault_proxy(pg.host, pg.port)
    proxy.cut_after(100_000, direction="down")
    assert dump(env_through(pg, proxy), LARGE_DB).returncode != 0
    assert proxy.bytes_down == 100_000
    assert dump(env_through(pg, proxy), SMALL_DB).returncode == 0


def test_throttle_slows_a_dump_measurably(databases, fault_proxy):
    pg = databases
    proxy = fault_proxy(pg.host, pg.port)
    started = time.monotonic()
    assert dump(env_through(pg, proxy), SMALL_DB).returncode == 0
    fast = time.monotonic() - started
    size = proxy.bytes_down
    proxy.throttle(int(size / 1.5))  # the whole dump now needs at least 1.5 s
    started = time.monotonic()
    assert dump(env_through(pg, proxy), SMALL_DB).returncode == 0
    slow = time.monotonic() - started
    assert slow >= 1.3 and slow - fast >= 0.8, (fast, slow)


def test_stall_blocks_until_heal(pg, fault_proxy):
    proxy = fault_proxy(pg.host, pg.port)
    proxy.stall()
    waiting = subprocess.Popen(["psql", "-X", "-At", "-c", "select 7"], env=env_through(pg, proxy),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1.0)
        assert waiting.poll() is None, "psql got through a stalled proxy"
        assert proxy.connections == 1 and proxy.bytes_up == 0
        proxy.heal()
        out, err = waiting.communicate(timeout=20)
    finally:
        waiting.kill()
        waiting.wait()
    assert out.strip() == "7", err


def test_stop_leaves_no_threads_and_no_listening_socket(pg):
    proxy = FaultProxy(pg.host, pg.port).start()
    idle = socket.create_connection(("127.0.0.1", proxy.port))  # an open connection must not keep it alive
    try:
        time.sleep(0.2)
        proxy.stop()
        assert not [t for t in threading.enumerate() if t.name.startswith(f"fault-proxy-{proxy.port}-")]
        assert proxy.open_connections == 0
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", proxy.port), timeout=2).close()
    finally:
        idle.close()


# -- HTTP mode, in front of moto's S3 server ------------------------------------------------------------------

@pytest.fixture
def s3_proxy(moto, fault_proxy):
    return fault_proxy("127.0.0.1", moto.port, "http")


def test_put_get_and_multipart_upload_work_through_the_http_proxy(moto, bucket, s3_proxy):
    client = moto.client(endpoint=s3_proxy.url)
    client.put_object(Bucket=bucket, Key="small", Body=b"hello")
    assert client.get_object(Bucket=bucket, Key="small")["Body"].read() == b"hello"
    data = os.urandom(11 * MIB)
    client.upload_fileobj(io.BytesIO(data), bucket, "large", Config=PARTS)
    assert moto.client().get_object(Bucket=bucket, Key="large")["Body"].read() == data
    parts = [r for r in s3_proxy.requests if "partNumber=" in r.path]
    assert len(parts) == 3 and all(r.status == 200 and r.forwarded for r in parts)
    assert all(r.headers.get("expect") == "100-continue" for r in parts)  # answered by the proxy, see its notes
    assert s3_proxy.bytes_up > len(data)


def test_fail_http_503_twice_fails_a_call_then_lets_requests_pass(moto, bucket, s3_proxy):
    client = moto.client(endpoint=s3_proxy.url)  # max_attempts 1: one retry, so one call meets both 503s
    s3_proxy.fail_http(503, count=2, retry_after=2)
    with pytest.raises(ClientError) as failure:
        client.put_object(Bucket=bucket, Key="k", Body=b"data")
    assert failure.value.response["Error"]["Code"] == "SlowDown"
    assert failure.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    assert failure.value.response["ResponseMetadata"]["HTTPHeaders"]["retry-after"] == "2"
    client.put_object(Bucket=bucket, Key="k", Body=b"data")
    assert [(r.status, r.forwarded) for r in s3_proxy.requests] == [(503, False), (503, False), (200, True)]


def test_fail_http_can_target_methods_and_answers_500_as_internal_error(moto, bucket, s3_proxy):
    client = moto.client(endpoint=s3_proxy.url)
    s3_proxy.fail_http(500, methods=["GET"])
    client.put_object(Bucket=bucket, Key="k", Body=b"data")
    for _ in range(2):
        with pytest.raises(ClientError) as failure:
            client.get_object(Bucket=bucket, Key="k")
        assert failure.value.response["Error"]["Code"] == "InternalError"
    s3_proxy.heal()
    assert client.get_object(Bucket=bucket, Key="k")["Body"].read() == b"data"


def test_a_one_shot_cut_during_a_part_is_retried_by_botocore(moto, bucket, s3_proxy):
    client = moto.client(endpoint=s3_proxy.url)
    upload_id = client.create_multipart_upload(Bucket=bucket, Key="k")["UploadId"]
    s3_proxy.cut_after(1 * MIB, direction="up")
    client.upload_part(Bucket=bucket, Key="k", UploadId=upload_id, PartNumber=1, Body=os.urandom(5 * MIB))
    attempts = [r for r in s3_proxy.requests if "partNumber=1" in r.path]
    assert [(r.status, r.forwarded) for r in attempts] == [(None, False), (200, True)]
    client.abort_multipart_upload(Bucket=bucket, Key="k", UploadId=upload_id)


def test_cut_after_during_a_multipart_upload_breaks_that_upload(moto, bucket, s3_proxy):
    client = moto.client(endpoint=s3_proxy.url)
    one_part_at_a_time = TransferConfig(multipart_threshold=5 * MIB, multipart_chunksize=5 * MIB, max_concurrency=1)
    s3_proxy.cut_after(7 * MIB, direction="up", refuse=True)  # in the middle of the second part, and stay down
    with pytest.raises((S3UploadFailedError, BotoCoreError)):
        client.upload_fileobj(io.BytesIO(os.urandom(12 * MIB)), bucket, "broken", Config=one_part_at_a_time)
    s3_proxy.heal()
    assert moto.list_keys(bucket) == []
    parts = {r.path.rsplit("partNumber=", 1)[1]: r.status for r in s3_proxy.requests if "partNumber=" in r.path}
    assert parts == {"1": 200, "2": None}


def test_corrupt_next_get_flips_one_byte_of_the_next_download(moto, bucket, s3_proxy):
    client = moto.client(endpoint=s3_proxy.url)
    data = os.urandom(1000)
    client.put_object(Bucket=bucket, Key="k", Body=data)
    url = client.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "k"})
    s3_proxy.corrupt_next_get(100)
    corrupted = requests.get(url, timeout=10).content
    assert [i for i in range(len(data)) if corrupted[i] != data[i]] == [100]
    assert corrupted[100] == data[100] ^ 0xFF
    assert requests.get(url, timeout=10).content == data
    s3_proxy.corrupt_next_get(999)
    with pytest.raises(FlexibleChecksumError):  # botocore checks the CRC32 moto returns
        client.get_object(Bucket=bucket, Key="k")["Body"].read()


def test_requests_are_recorded_with_their_headers(moto, bucket, s3_proxy):
    moto.client(endpoint=s3_proxy.url).put_object(Bucket=bucket, Key="default", Body=b"x")
    strict = boto3.client("s3", endpoint_url=s3_proxy.url, region_name=REGION, aws_access_key_id=ACCESS_KEY,
                          aws_secret_access_key=SECRET_KEY,
                          config=Config(request_checksum_calculation="when_required",
                                        s3={"addressing_style": "path"}))
    strict.put_object(Bucket=bucket, Key="strict", Body=b"x")
    default, when_required = s3_proxy.requests
    assert (default.method, default.path) == ("PUT", f"/{bucket}/default")
    assert default.headers["authorization"].startswith("AWS4-HMAC-SHA256 ")
    assert any(name.startswith("x-amz-checksum-") for name in default.headers)
    assert not any(name.startswith("x-amz-checksum-") for name in when_required.headers)


def test_stall_after_requests_holds_later_requests_until_heal(moto, bucket, s3_proxy):
    client = moto.client(endpoint=s3_proxy.url)
    s3_proxy.stall_after_requests(1)
    client.put_object(Bucket=bucket, Key="first", Body=b"1")
    held = threading.Thread(target=client.put_object, kwargs={"Bucket": bucket, "Key": "second", "Body": b"2"})
    held.start()
    time.sleep(1.0)
    assert held.is_alive()
    assert [r.forwarded for r in s3_proxy.requests] == [True, False]
    s3_proxy.heal()
    held.join(20)
    assert sorted(moto.list_keys(bucket)) == ["first", "second"]


# -- the whole path issue 2 needs -----------------------------------------------------------------------------

class HashingReader(io.RawIOBase):
    """A read-only stream over `source` that hashes every byte read through it."""

    def __init__(self, source):
        self.source = source
        self.sha256 = hashlib.sha256()
        self.size = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self.source.read(len(buffer))
        self.sha256.update(data)
        self.size += len(data)
        buffer[:len(data)] = data
        return len(data)


def test_a_dump_through_the_tcp_proxy_lands_in_moto_through_the_http_proxy_intact(databases, moto, bucket,
                                                                                   fault_proxy):
    pg = databases
    pg_proxy = fault_proxy(pg.host, pg.port, "tcp")
    s3_proxy = fault_proxy("127.0.0.1", moto.port, "http")
    dumping = subprocess.Popen(["pg_dump", "-Fc", "-Z0", "-d", LARGE_DB], env=env_through(pg, pg_proxy),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        stream = HashingReader(dumping.stdout)
        moto.client(endpoint=s3_proxy.url).upload_fileobj(stream, bucket, "large.dump", Config=PARTS)
        assert dumping.wait(30) == 0, dumping.stderr.read()
    finally:
        dumping.kill()
        dumping.wait()
        dumping.stdout.close()
        dumping.stderr.close()
    stored = moto.client(endpoint=s3_proxy.url).get_object(Bucket=bucket, Key="large.dump")["Body"].read()
    assert stream.size > 5 * MIB  # big enough to go up in parts
    assert hashlib.sha256(stored).hexdigest() == stream.sha256.hexdigest()
    assert pg_proxy.bytes_down >= stream.size and s3_proxy.bytes_up >= stream.size
    listing = subprocess.run(["pg_restore", "--list"], input=stored, capture_output=True, check=True).stdout
    assert b"TABLE public t" in listing
