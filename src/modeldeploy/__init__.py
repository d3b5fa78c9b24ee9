"""modeldeploy: from a trained model to a healthy production deployment, in your own process."""

from __future__ import annotations

import importlib.metadata
import logging

from modeldeploy.deployers import (
    BatchDeployer,
    BatchResult,
    Deployer,
    FunctionDeployer,
    OnlineDeployer,
)
from modeldeploy.exceptions import (
    AliasNotFoundError,
    DeploymentError,
    IntegrityError,
    ModelDeployError,
    ModelNotFoundError,
    PredictionTimeoutError,
    SchemaError,
    VersionNotFoundError,
)
from modeldeploy.monitoring import Alert, LabelCapture, LabelJoin, Monitor, PredictionCapture
from modeldeploy.registry import Event, ModelRegistry, ModelVersion, Signature
from modeldeploy.retraining import RetrainPolicy
from modeldeploy.routing import HybridRouter

try:
    __version__ = importlib.metadata.version("modeldeploy")
except importlib.metadata.PackageNotFoundError:  # pragma: no cover - a source tree, not installed
    __version__ = "0.0.0+unknown"

# A library leaves output to the application: without a logging set-up, nothing is printed.
logging.getLogger("modeldeploy").addHandler(logging.NullHandler())

__all__ = [
    "Alert",
    "AliasNotFoundError",
    "BatchDeployer",
    "BatchResult",
    "Deployer",
    "DeploymentError",
    "Event",
    "FunctionDeployer",
    "HybridRouter",
    "IntegrityError",
    "LabelCapture",
    "LabelJoin",
    "ModelDeployError",
    "ModelNotFoundError",
    "ModelRegistry",
    "ModelVersion",
    "Monitor",
    "OnlineDeployer",
    "PredictionCapture",
    "PredictionTimeoutError",
    "RetrainPolicy",
    "SchemaError",
    "Signature",
    "VersionNotFoundError",
    "__version__",
]
