"""The worker: one process per strategy run that dumps, compresses and uploads (see docs/architecture.md)."""
