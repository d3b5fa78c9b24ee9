"""Protocols for the duck types modeldeploy accepts, and shared type aliases.

A model never inherits from a modeldeploy class: anything with ``predict(X)`` is a model, and
``predict_proba(X)`` is used where present.
"""

from __future__ import annotations

from typing import Any, Protocol, TypeAlias, runtime_checkable

import numpy as np
import numpy.typing as npt

__all__ = [
    "ArrayLike",
    "FloatArray",
    "Model",
    "MonitorSink",
    "SupportsPredict",
    "SupportsPredictProba",
]

#: Anything ``Signature.validate`` accepts: arrays, DataFrames, dicts, lists of dicts or rows.
ArrayLike: TypeAlias = Any
#: A numpy array of floating point values.
FloatArray: TypeAlias = npt.NDArray[np.floating[Any]]


@runtime_checkable
class SupportsPredict(Protocol):
    """A model: any object with ``predict(X)``."""

    def predict(self, X: Any, /) -> Any:
        """Return one prediction per row of ``X``."""


@runtime_checkable
class SupportsPredictProba(SupportsPredict, Protocol):
    """A classifier that also returns class probabilities."""

    def predict_proba(self, X: Any, /) -> Any:
        """Return an ``(n_rows, n_classes)`` array of class probabilities."""


#: What the registry stores and deployers serve.
Model: TypeAlias = SupportsPredict


@runtime_checkable
class MonitorSink(Protocol):
    """What a deployer hands its scored batches to (``monitor=``); :class:`~modeldeploy.Monitor`
    is one.

    Deployers call these off the hot path; an exception raised here never fails a prediction.
    """

    def log_predictions(
        self,
        X: Any,
        y_pred: Any,
        *,
        ids: Any = None,
        y_proba: Any = None,
        version: str | None = None,
        latency_s: float | None = None,
    ) -> None:
        """Record one scored batch: features, predictions and what is known about them."""

    def log_error(self, error: BaseException, *, version: str | None = None) -> None:
        """Record one failed request."""
