"""Storage: the S3 client and its errors, object keys, streaming multipart uploads, manifests."""

from easybackup.storage.layout import (
    GLOBALS,
    ArchiveKey,
    archive_key,
    database_prefix,
    globals_key,
    globals_prefix,
    manifest_key,
    parse_archive_key,
    quote_segment,
    strategy_prefix,
    unquote_segment,
)
from easybackup.storage.manifest import (
    Manifest,
    list_manifests,
    newest_manifest,
    read_manifest,
    write_manifest,
)
from easybackup.storage.multipart import (
    OpenUpload,
    StreamingUpload,
    UploadResult,
    abort_upload,
    list_open_uploads,
    part_size,
)
from easybackup.storage.s3 import check_bucket, classify_s3_error, extra_put_args, make_client

__all__ = [
    "GLOBALS", "ArchiveKey", "archive_key", "database_prefix", "globals_key", "globals_prefix", "manifest_key",
    "parse_archive_key", "quote_segment", "strategy_prefix", "unquote_segment",
    "Manifest", "list_manifests", "newest_manifest", "read_manifest", "write_manifest",
    "OpenUpload", "StreamingUpload", "UploadResult", "abort_upload", "list_open_uploads", "part_size",
    "check_bucket", "classify_s3_error", "extra_put_args", "make_client",
]
