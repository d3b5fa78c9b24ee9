"""Routing: one front door over an online and a batch deployer.

A rule sends each request online (answered now) or to batch (a handle that resolves later).
"""

from __future__ import annotations

from modeldeploy.routing.handles import RouteHandle, RouterStats
from modeldeploy.routing.router import HybridRouter
from modeldeploy.routing.rules import (
    Path,
    Request,
    Rule,
    by_deadline,
    by_meta,
    by_size,
    first_of,
)

__all__ = [
    "HybridRouter",
    "Path",
    "Request",
    "RouteHandle",
    "RouterStats",
    "Rule",
    "by_deadline",
    "by_meta",
    "by_size",
    "first_of",
]
