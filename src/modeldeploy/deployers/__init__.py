"""Serving models: in real time (OnlineDeployer), in batches (BatchDeployer), or your own.

Custom deployers subclass [`Deployer`][modeldeploy.Deployer]; a plain function deploys with
``FunctionDeployer``.
"""

from __future__ import annotations

from modeldeploy.deployers._stats import DeployerStats, LatencyRecorder, VersionStats
from modeldeploy.deployers.base import Deployer, FunctionDeployer
from modeldeploy.deployers.batch import BatchDeployer, BatchResult, SkippedChunk
from modeldeploy.deployers.online import DeploymentEvent, MicroBatcher, OnlineDeployer
from modeldeploy.fastpath import FastPath, FastPathReport, compile_fast_path

__all__ = [
    "BatchDeployer",
    "BatchResult",
    "Deployer",
    "DeployerStats",
    "DeploymentEvent",
    "FastPath",
    "FastPathReport",
    "FunctionDeployer",
    "LatencyRecorder",
    "MicroBatcher",
    "OnlineDeployer",
    "SkippedChunk",
    "VersionStats",
    "compile_fast_path",
]
