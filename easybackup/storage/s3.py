"""The S3 client and what its errors mean for an operator.

Clients are created on call, never at import: workers start with fork+exec and build their own after exec,
because a boto3 client (its connection pool and threads) must not cross a fork.
"""

from __future__ import annotations

import dataclasses
import threading
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    HTTPClientError,
    NoCredentialsError,
    PartialCredentialsError,
    ReadTimeoutError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from easybackup.config.model import S3Settings
from easybackup.errors import EasybackupError

if TYPE_CHECKING:
    from botocore.config import Config as BotoConfig

DEFAULT_REGION = "us-east-1"
CONNECT_TIMEOUT_S = 10
READ_TIMEOUT_S = 120
CHECK_TIMEOUT_S = 5
# botocore's own retries multiply with the worker's tenacity attempts: keep them small.
# total_max_attempts counts the first try (max_attempts would count retries only): two tries per call, so
# botocore's retries do not multiply with the worker's own (retry.max_attempts).
BOTO_RETRIES = {"total_max_attempts": 2, "mode": "standard"}
# Enough connections for the part uploads in flight plus listing/manifest calls on the same client.
MAX_POOL_CONNECTIONS = 16

_AUTH_CODES = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken", "TokenRefreshRequired",
               "InvalidClientTokenId", "AuthorizationHeaderMalformed"}
_PERMISSION_CODES = {"AccessDenied", "AllAccessDisabled", "AccountProblem", "403", "Forbidden"}
_THROTTLE_CODES = {"SlowDown", "Throttling", "ThrottlingException", "RequestThrottled", "TooManyRequests",
                   "RequestTimeout", "RequestTimeTooSkewed", "InternalError", "ServiceUnavailable", "503", "500"}
_NOT_FOUND_CODES = {"NoSuchKey", "NotFound", "404"}
NO_OBJECT_LOCK_HINT = ("enable Object Lock on the bucket (`aws s3api create-bucket --object-lock-enabled-for-bucket`, "
                       "or `aws s3api put-object-lock-configuration` on a versioned bucket), or remove s3.object_lock")


def make_client(s3: S3Settings, *, read_timeout: float = READ_TIMEOUT_S, connect_timeout: float = CONNECT_TIMEOUT_S):
    """Given S3 settings, return a new boto3 S3 client.

    Without `endpoint_url`, boto3 itself honours AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL; without explicit
    keys, boto3's credential chain applies (environment, profile, instance role).
    """
    import boto3  # here, not at import: loading it takes ~0.2 s that a worker spends starting pg_dump instead

    kwargs: dict = {"region_name": s3.region or DEFAULT_REGION,
                    "config": _boto_config(s3, read_timeout=read_timeout, connect_timeout=connect_timeout)}
    if s3.endpoint_url:
        kwargs["endpoint_url"] = s3.endpoint_url
    if s3.access_key and s3.secret_key:
        kwargs["aws_access_key_id"] = s3.access_key
        kwargs["aws_secret_access_key"] = s3.secret_key
        if s3.session_token:
            kwargs["aws_session_token"] = s3.session_token
    # A fresh session per client: sessions are not thread-safe, and the env is read at call time.
    return boto3.session.Session().client("s3", **kwargs)


def prune_settings(s3: S3Settings) -> S3Settings:
    """Given S3 settings, return those to delete with: the prune key of `s3.prune_credentials` when one is set (the
    backup key then needs no s3:DeleteObject), else the same settings."""
    if not (s3.prune_access_key and s3.prune_secret_key):
        return s3
    return dataclasses.replace(s3, access_key=s3.prune_access_key, secret_key=s3.prune_secret_key, session_token=None)


def make_prune_client(s3: S3Settings, **timeouts):
    """Given S3 settings, return a new client that deletes: with the prune key when one is set (prune_settings)."""
    return make_client(prune_settings(s3), **timeouts)


def _boto_config(s3: S3Settings, *, read_timeout: float, connect_timeout: float) -> BotoConfig:
    from botocore.config import Config as BotoConfig

    checksum = s3.checksum_mode if s3.checksum_mode in ("when_supported", "when_required") else "when_supported"
    return BotoConfig(
        retries=dict(BOTO_RETRIES),
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        max_pool_connections=MAX_POOL_CONNECTIONS,
        tcp_keepalive=True,
        # `when_required` sends no x-amz-checksum-* headers on PutObject/UploadPart, for stores that reject them.
        request_checksum_calculation=checksum,
        # Every archive read back is checked against its manifest's sha256. botocore's own check of a GetObject
        # adds nothing to that, and fails on stores that report a per-part (composite) checksum as a whole one.
        response_checksum_validation="when_required",
        s3={"addressing_style": "path" if s3.force_path_style else "auto"},
    )


class BackgroundClient:
    """Given S3 settings, build the S3 client on a thread and hand it out on first use: a worker starts pg_dump
    meanwhile instead of after boto3's ~0.3 s of loading. Any attribute waits for the client, and raises on
    the caller's thread what building it raised."""

    def __init__(self, s3: S3Settings):
        self._built = threading.Event()
        self._client = None
        self._error: BaseException | None = None
        threading.Thread(target=self._build, args=(s3,), name="s3-client", daemon=True).start()

    def _build(self, s3: S3Settings) -> None:
        try:
            self._client = make_client(s3)
        except BaseException as exc:  # noqa: BLE001 — raised again, where the client is first used
            self._error = exc
        finally:
            self._built.set()

    def __getattr__(self, name: str):
        self._built.wait()
        if self._error is not None:
            raise self._error
        return getattr(self._client, name)


def extra_put_args(s3: S3Settings, *, storage_class: bool = True, lock: bool = True,
                   now: datetime | None = None) -> dict:
    """Given S3 settings, return the extra arguments for PutObject/CreateMultipartUpload.

    Pass `storage_class=False` for small objects that must stay readable at once (manifests): a manifest in
    GLACIER could not be listed back. Unless checksum_mode is `when_required`, objects get a CRC32 checksum,
    of each part for a multipart upload (as the AWS SDKs' transfer managers do): the store checks every part,
    and no store has to read a whole archive again to compute a checksum of its own choosing.
    With `s3.object_lock`, the object is locked for its days from `now` (the call); pass `lock=False` for objects
    that must stay deletable (pins, run records): a backup's lock is on its archive and manifest.
    """
    args = {} if s3.checksum_mode == "when_required" else {"ChecksumAlgorithm": "CRC32"}
    if storage_class and s3.storage_class:
        args["StorageClass"] = s3.storage_class
    if s3.server_side_encryption:
        args["ServerSideEncryption"] = s3.server_side_encryption
    if s3.kms_key_id:
        args["SSEKMSKeyId"] = s3.kms_key_id
    if lock and s3.object_lock is not None:
        args["ObjectLockMode"] = s3.object_lock.mode.upper()
        args["ObjectLockRetainUntilDate"] = retain_until(s3, now or datetime.now(timezone.utc))
    return args


def retain_until(s3: S3Settings, now: datetime) -> datetime:
    """Given S3 settings with object_lock and now (aware), return the lock's end, up to the next whole second."""
    until = now.astimezone(timezone.utc) + timedelta(days=s3.object_lock.days)
    return until.replace(microsecond=0) + (timedelta(seconds=1) if until.microsecond else timedelta())


def check_bucket(s3: S3Settings, client=None) -> None:
    """Given S3 settings, check the bucket answers (HeadBucket); raise the classified error if it does not."""
    # Short timeouts: a hanging S3 must show as an error in health and validate within seconds, not minutes.
    client = client or make_client(s3, read_timeout=CHECK_TIMEOUT_S, connect_timeout=CHECK_TIMEOUT_S)
    try:
        client.head_bucket(Bucket=s3.bucket)
    except (ClientError, BotoCoreError) as exc:
        raise classify_s3_error(exc, s3.bucket) from exc


def error_code(exc: BaseException) -> str:
    """Given an exception from botocore, return its S3 error code (`NoSuchBucket`, `404`), or ''."""
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""


def classify_s3_error(exc: BaseException, bucket: str | None = None) -> EasybackupError:
    """Given an exception raised by an S3 call, return an EasybackupError with kind, transient flag and hint."""
    if isinstance(exc, EasybackupError):
        return exc
    if isinstance(exc, ClientError):
        return _classify_client_error(exc, bucket)
    detail = str(exc)
    if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
        return EasybackupError("S3 credentials are missing", detail, kind="authentication", transient=False,
                               hint="set s3.credentials in the config, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, "
                                    "or give the machine an instance role")
    if isinstance(exc, (ReadTimeoutError, ConnectTimeoutError)):
        return EasybackupError("S3 did not answer in time", detail, kind="storage", transient=True,
                               hint="the store is slow or unreachable; the backup is retried")
    # Refused, reset, cut mid-body (ResponseStreamingError), proxy failures: the network, not the request.
    if isinstance(exc, (BotoConnectionError, HTTPClientError, ConnectionError)):
        return EasybackupError("cannot connect to S3", detail, kind="storage", transient=True,
                               hint="check s3.endpoint_url / AWS_ENDPOINT_URL_S3 and the network path to the store")
    if isinstance(exc, BotoCoreError):
        # Other botocore errors (parameter validation, bad config) will not get better by retrying.
        return EasybackupError("S3 request failed", detail, kind="storage", transient=False)
    return EasybackupError("S3 request failed", f"{type(exc).__name__}: {exc}", kind="internal", transient=False)


def _classify_client_error(exc: ClientError, bucket: str | None) -> EasybackupError:
    code = error_code(exc)
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    operation = getattr(exc, "operation_name", "") or "S3 call"
    message = exc.response.get("Error", {}).get("Message") or code
    detail = f"{operation}: {code} (HTTP {status}): {message}" if status else f"{operation}: {code}: {message}"
    where = f"bucket '{bucket}'" if bucket else "the bucket"
    if code == "NoSuchBucket" or (code in ("404", "NotFound") and operation == "HeadBucket"):
        return EasybackupError(f"S3 bucket '{bucket}' does not exist" if bucket else "S3 bucket does not exist",
                               detail, kind="storage", transient=False,
                               hint=f"create {where} or fix s3.bucket / S3_BUCKET (and the region or endpoint)")
    if code in _AUTH_CODES:
        return EasybackupError("S3 rejected the credentials", detail, kind="authentication", transient=False,
                               hint="check the access key, secret key and session token for " + where)
    if code in _PERMISSION_CODES:
        # A HEAD answer has no body: a bare 403 may also be a wrong key, so the hint names both.
        maybe_keys = "check the credentials, and " if code == "403" else ""
        return EasybackupError(f"S3 denied access to {where}", detail, kind="permission", transient=False,
                               hint=maybe_keys + "grant s3:PutObject, s3:GetObject, s3:ListBucket, s3:DeleteObject and "
                                    "s3:AbortMultipartUpload on " + where + " (and kms:GenerateDataKey with SSE-KMS)")
    if code == "InvalidRequest" and "objectlock" in message.lower().replace(" ", ""):
        return EasybackupError(f"{where} has no Object Lock, but s3.object_lock asks for locked backups", detail,
                               kind="storage", transient=False, hint=NO_OBJECT_LOCK_HINT)
    if code in ("PermanentRedirect", "301", "IllegalLocationConstraintException"):
        return EasybackupError(f"{where} is in another region", detail, kind="storage", transient=False,
                               hint="set s3.region to the bucket's region")
    if code in _THROTTLE_CODES or status >= 500 or status == 429:
        return EasybackupError("S3 is unavailable or throttling", detail, kind="storage", transient=True,
                               hint="the store answered with a server error or asked to slow down; retried")
    if code == "NoSuchUpload":
        return EasybackupError("the multipart upload no longer exists", detail, kind="storage", transient=False,
                               hint="it was aborted (by the supervisor's cleanup, a lifecycle rule or an operator)")
    if code in _NOT_FOUND_CODES:
        return EasybackupError("S3 object or upload not found", detail, kind="not_found", transient=False)
    return EasybackupError("S3 request failed", detail, kind="storage", transient=False)


# What a store says when it does not implement `If-None-Match` on PutObject (AWS has it since August 2024; MinIO,
# Ceph RGW and moto have it; some others answer 501 NotImplemented): then a HEAD and a plain PUT stand in.
_CONDITION_UNSUPPORTED_CODES = {"NotImplemented", "501"}
_PRECONDITION_CODES = {"PreconditionFailed", "412"}


class ObjectExists(EasybackupError):
    """Another object already holds the key a new object was meant for: nothing was written, and it is not ours."""


def put_new_object(client, bucket: str, key: str, body: bytes, **args) -> None:
    """Given a key and the bytes for it, store them only if no object is there yet (PutObject with
    `If-None-Match: *`; where the store does not implement that condition, a HEAD then a plain PUT — racy by a
    request's length, and the keys are per run anyway). An object already there with exactly these bytes counts as
    written: our own PUT landed and boto3 retried it after a lost answer. Raise ObjectExists if different bytes are
    there, and the classified S3 error for anything else."""
    try:
        client.put_object(Bucket=bucket, Key=key, Body=body, IfNoneMatch="*", **args)
        return
    except ClientError as exc:
        code = error_code(exc)
        if code in _PRECONDITION_CODES:
            _same_or_raise(client, bucket, key, body, read_object_or_none(client, bucket, key))
            return
        if code not in _CONDITION_UNSUPPORTED_CODES:
            raise classify_s3_error(exc, bucket) from exc
    except BotoCoreError as exc:
        raise classify_s3_error(exc, bucket) from exc
    existing = read_object_or_none(client, bucket, key)
    if existing is not None:
        _same_or_raise(client, bucket, key, body, existing)
        return
    try:
        client.put_object(Bucket=bucket, Key=key, Body=body, **args)
    except (ClientError, BotoCoreError) as exc:
        raise classify_s3_error(exc, bucket) from exc


def list_keys(client, bucket: str, prefix: str, keep) -> list[str]:
    """Given a prefix and a predicate on keys, return every key under the prefix it keeps (all pages), in the
    store's order; raise the classified S3 error."""
    keys = []
    try:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            keys.extend(item["Key"] for item in page.get("Contents", []) if keep(item["Key"]))
    except (ClientError, BotoCoreError) as exc:
        raise classify_s3_error(exc, bucket) from exc
    return keys


def read_object_or_none(client, bucket: str, key: str) -> bytes | None:
    """Return the object at `key`, or None if there is none; raise the classified S3 error otherwise."""
    try:
        return client.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as exc:
        if error_code(exc) in _NOT_FOUND_CODES:
            return None
        raise classify_s3_error(exc, bucket) from exc
    except BotoCoreError as exc:
        raise classify_s3_error(exc, bucket) from exc


def _same_or_raise(client, bucket: str, key: str, body: bytes, existing: bytes | None) -> None:
    if existing == body:
        return
    raise ObjectExists(f"s3://{bucket}/{key} already exists; it was not overwritten",
                       "another object holds this key (a run with the same run name, or a store that lost our "
                       "condition)" if existing is not None else "the key was taken and then removed meanwhile",
                       "run `easybackup list --all` to see what is there; nothing of the other object was touched",
                       kind="storage", transient=False)
