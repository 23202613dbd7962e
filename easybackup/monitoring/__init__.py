"""Monitoring (DESIGN.md, "Monitoring"): the health state, the Prometheus metrics, the HTTP endpoints that serve
them, the cached connectivity checks, and the observer that feeds them from worker events."""
