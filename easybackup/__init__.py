"""easybackup: streaming PostgreSQL backups to S3, with proof they restore."""

__version__ = "0.1.0"
