"""Watching a deployed model: windowed quality metrics, drift, latency and errors, alerts.

Reports render as dicts, DataFrames, notebook HTML, plots and self-contained HTML files.
Predictions and labels are captured to Parquet segments and joined by id from any process.
"""

from __future__ import annotations

from modeldeploy.monitoring.alerts import Alert
from modeldeploy.monitoring.capture import LabelCapture, PredictionCapture
from modeldeploy.monitoring.detectors import ChangeDetector, ChangePoint, ErrorHistory
from modeldeploy.monitoring.drift import DriftResult, FeatureDrift
from modeldeploy.monitoring.fleet import MonitorPublisher
from modeldeploy.monitoring.join import JoinResult, LabelJoin
from modeldeploy.monitoring.monitor import Monitor
from modeldeploy.monitoring.report import Report

__all__ = [
    "Alert",
    "ChangeDetector",
    "ChangePoint",
    "DriftResult",
    "ErrorHistory",
    "FeatureDrift",
    "JoinResult",
    "LabelCapture",
    "LabelJoin",
    "Monitor",
    "MonitorPublisher",
    "PredictionCapture",
    "Report",
]
