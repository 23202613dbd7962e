"""Monitoring (DESIGN.md, "Monitoring"): the health state, the Prometheus metrics, the HTTP endpoints that serve
them, the cached connectivity checks, and the observer that feeds them from worker events."""

from easybackup.monitoring.connectivity import ConnectivityChecker
from easybackup.monitoring.metrics import Metrics
from easybackup.monitoring.observer import MonitoringObserver
from easybackup.monitoring.server import MonitoringServer
from easybackup.monitoring.state import MonitorState

__all__ = ["ConnectivityChecker", "Metrics", "MonitorState", "MonitoringObserver", "MonitoringServer"]
