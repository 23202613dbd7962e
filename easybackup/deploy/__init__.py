"""Deployment manifests rendered from a loaded config (kubernetes.py: one CronJob per strategy)."""
