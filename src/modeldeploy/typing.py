"""Protocols for the duck types modeldeploy accepts, and shared type aliases.

A model never inherits from a modeldeploy class: anything with ``predict(X)`` is a model, and
``predict_proba(X)`` is used where present.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol, TypeAlias, runtime_checkable

import numpy as np
import numpy.typing as npt

__all__ = [
    "ArrayLike",
    "Clock",
    "FloatArray",
    "Model",
    "MonitorSink",
    "SupportsPredict",
    "SupportsPredictProba",
    "Waitable",
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


class Waitable(Protocol):
    """Something a thread can wait on with a timeout: a ``threading.Event``, or a
    ``threading.Condition`` whose lock the caller holds."""

    def wait(self, timeout: float | None = None, /) -> bool:
        """Block until set or notified, or until ``timeout`` seconds pass; True unless timed
        out."""


@runtime_checkable
class Clock(Protocol):
    """Where every modeldeploy class reads time (``clock=``).

    ``now()`` stamps what is stored or shown (registry events, alerts, outcomes, windows);
    ``monotonic()`` measures intervals (cooldowns, breaker pauses, flush timers, polling);
    ``wait(waitable, timeout)`` is how background loops wait, so they move when a
    :class:`~modeldeploy.testing.FakeClock` is advanced. The default is the system clock.
    """

    def now(self) -> datetime:
        """The current time as an aware UTC ``datetime``."""

    def monotonic(self) -> float:
        """Seconds from an arbitrary origin; never goes back."""

    def sleep(self, seconds: float) -> None:
        """Return once ``seconds`` have passed on this clock."""

    def wait(self, waitable: Waitable, timeout: float | None) -> bool:
        """Wait on ``waitable`` until it is set or notified (True) or until ``timeout`` seconds
        pass on this clock (False); ``None`` waits without a bound."""
