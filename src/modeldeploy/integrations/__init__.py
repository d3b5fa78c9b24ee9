"""Bridges to the tools services already run: Prometheus metrics and a FastAPI front.

Each module needs its extra (``modeldeploy[prometheus]``, ``modeldeploy[fastapi]``) and is imported
by name; importing ``modeldeploy`` never imports them.
"""

from __future__ import annotations
