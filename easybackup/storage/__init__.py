"""Storage: the S3 client and its errors, object keys, streaming multipart uploads, manifests."""
