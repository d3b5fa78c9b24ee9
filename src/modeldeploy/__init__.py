"""modeldeploy: from a trained model to a healthy production deployment, in your own process."""

from __future__ import annotations

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
from modeldeploy.monitoring import (
    Alert,
    LabelCapture,
    LabelJoin,
    Monitor,
    MonitorPublisher,
    PredictionCapture,
)
from modeldeploy.registry import Event, ModelRegistry, ModelVersion, Signature
from modeldeploy.retraining import RetrainPolicy
from modeldeploy.routing import HybridRouter

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
    "MonitorPublisher",
    "OnlineDeployer",
    "PredictionCapture",
    "PredictionTimeoutError",
    "RetrainPolicy",
    "SchemaError",
    "Signature",
    "VersionNotFoundError",
    "__version__",
]


def __getattr__(name: str) -> str:
    # __version__ is read from the package metadata when asked for: importlib.metadata takes
    # tens of milliseconds to import, which every `import modeldeploy` would pay (structlog
    # does the same).
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("modeldeploy")
        except PackageNotFoundError:  # pragma: no cover - a source tree, not installed
            return "0.0.0+unknown"
    raise AttributeError(f"module 'modeldeploy' has no attribute {name!r}")
