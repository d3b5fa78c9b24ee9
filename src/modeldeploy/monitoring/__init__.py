"""Watching a deployed model: windowed quality metrics, drift, latency and errors, alerts.

Reports render as dicts, DataFrames, notebook HTML, plots and self-contained HTML files.
"""

from __future__ import annotations
