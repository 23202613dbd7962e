"""The backup catalogue in S3: listing, restore, verification and retention (all read manifests; S3 is the state
store, nothing is kept on local disk)."""
