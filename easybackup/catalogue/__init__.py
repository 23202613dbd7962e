"""The backup catalogue in S3: listing, restore, verification and retention (all read manifests; S3 is the state
store, nothing is kept on local disk)."""

from easybackup.catalogue.listing import Catalogue, read_backups, read_catalogue, select_backup
from easybackup.catalogue.retention import RetentionResult, apply_retention, plan_retention
from easybackup.catalogue.verify import VerifyResult, verify_archive

__all__ = [
    "Catalogue", "RetentionResult", "VerifyResult", "apply_retention", "plan_retention", "read_backups",
    "read_catalogue", "select_backup", "verify_archive",
]
