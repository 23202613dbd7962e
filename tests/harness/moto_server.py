"""moto's S3 server over HTTP on a free loopback port."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile

import boto3
from botocore.config import Config

from tests.harness.net import free_port, wait_for_port

ACCESS_KEY = "harness-access-key"
SECRET_KEY = "harness-S3-secret-9902"
REGION = "us-east-1"


class MotoServer:
    """A moto S3 server subprocess; `endpoint` is its http:// URL."""

    def __init__(self) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._log = tempfile.NamedTemporaryFile(prefix="easybackup-moto-", suffix=".log", delete=False)
        self.process: subprocess.Popen | None = None

    def start(self) -> MotoServer:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_for_port("127.0.0.1", self.port, timeout=30)
        return self

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        os.unlink(self._log.name)

    def client(self, endpoint: str | None = None):
        """Return a boto3 S3 client for this server (or for `endpoint`, e.g. a fault proxy in front of it)."""
        return boto3.client(
            "s3", endpoint_url=endpoint or self.endpoint, region_name=REGION,
            aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
            config=Config(retries={"max_attempts": 1, "mode": "standard"}, s3={"addressing_style": "path"}))

    def create_bucket(self, name: str) -> str:
        """Create bucket `name` (if missing) and return its name."""
        client = self.client()
        existing = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
        if name not in existing:
            client.create_bucket(Bucket=name)
        return name

    def list_keys(self, bucket: str, prefix: str = "") -> list[str]:
        """Return every key under `prefix` in `bucket`."""
        paginator = self.client().get_paginator("list_objects_v2")
        return [obj["Key"] for page in paginator.paginate(Bucket=bucket, Prefix=prefix)
                for obj in page.get("Contents", [])]

    def open_uploads(self, bucket: str) -> list[dict]:
        """Return the multipart uploads still open in `bucket`."""
        return self.client().list_multipart_uploads(Bucket=bucket).get("Uploads", [])
