"""modeldeploy: from a trained model to a healthy production deployment, in your own process."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

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

if TYPE_CHECKING:
    from modeldeploy.deployers import (
        BatchDeployer,
        BatchResult,
        Deployer,
        FunctionDeployer,
        OnlineDeployer,
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


#: Public names and the module each comes from: imported on first use (PEP 562), so
#: ``import modeldeploy`` costs little and a program pays only for the parts it uses.
_LAZY = {
    "Alert": "modeldeploy.monitoring",
    "BatchDeployer": "modeldeploy.deployers",
    "BatchResult": "modeldeploy.deployers",
    "Deployer": "modeldeploy.deployers",
    "Event": "modeldeploy.registry",
    "FunctionDeployer": "modeldeploy.deployers",
    "HybridRouter": "modeldeploy.routing",
    "LabelCapture": "modeldeploy.monitoring",
    "LabelJoin": "modeldeploy.monitoring",
    "ModelRegistry": "modeldeploy.registry",
    "ModelVersion": "modeldeploy.registry",
    "Monitor": "modeldeploy.monitoring",
    "MonitorPublisher": "modeldeploy.monitoring",
    "OnlineDeployer": "modeldeploy.deployers",
    "PredictionCapture": "modeldeploy.monitoring",
    "RetrainPolicy": "modeldeploy.retraining",
    "Signature": "modeldeploy.registry",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is not None:
        import importlib

        value = getattr(importlib.import_module(module), name)
        globals()[name] = value  # the next access is a plain attribute
        return value
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


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
