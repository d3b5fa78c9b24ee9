"""Protocols for the duck types modeldeploy accepts, and shared type aliases.

A model never inherits from a modeldeploy class: anything with ``predict(X)`` is a model, and
``predict_proba(X)`` is used where present.
"""

from __future__ import annotations

import concurrent.futures as cf
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Protocol, TypeAlias, runtime_checkable

import numpy as np
import numpy.typing as npt

__all__ = [
    "ArrayLike",
    "BatchQueue",
    "CanaryTarget",
    "CaptureSink",
    "ChangeMonitorView",
    "Clock",
    "FloatArray",
    "Model",
    "MonitorSink",
    "MonitorView",
    "OnlinePath",
    "SupportsFlush",
    "SupportsPredict",
    "SupportsPredictProba",
    "SupportsValidate",
    "SwapTarget",
    "VersionedMonitorView",
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
    """What a deployer hands its scored batches to (``monitor=``); [`Monitor`][modeldeploy.Monitor]
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


@runtime_checkable
class CaptureSink(Protocol):
    """Where a deployer writes what it served (``capture=``);
    [`PredictionCapture`][modeldeploy.monitoring.PredictionCapture] is one.

    ``record`` is called on the hot path: it must queue and return at once, and never raise.
    """

    def new_ids(self, n: int, /) -> Any:
        """``n`` fresh request ids, for a request that came without ids."""

    def record(
        self,
        X: Any,
        y_pred: Any = None,
        *,
        ids: Any = None,
        y_proba: Any = None,
        version: str | None = None,
        classes: Any = None,
    ) -> bool:
        """Queue one scored request (``y_pred`` None: ``classes[argmax(y_proba)]``); False when
        it was dropped."""


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
    [`FakeClock`][modeldeploy.testing.FakeClock] is advanced. The default is the system clock.
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


# ---------------------------------------------------------------------- what the parts ask of
# each other: the router of its two paths, a rollout of the deployer, a trigger of the monitor


@runtime_checkable
class OnlinePath(Protocol):
    """What [`HybridRouter`][modeldeploy.HybridRouter] asks of its online path;
    [`OnlineDeployer`][modeldeploy.OnlineDeployer] and every [`Deployer`][modeldeploy.Deployer] are
    one.

    The router also passes ``key=`` when a request has one (which
    [`OnlineDeployer`][modeldeploy.OnlineDeployer] takes), calls ``predict_proba`` instead of
    ``predict`` when its batch path scores probabilities, validates with
    [`SupportsValidate`][modeldeploy.typing.SupportsValidate] when the path has it, and reads a
    ``version`` attribute (``"name:version"``) when there is one.
    """

    def predict(self, X: Any, /, *, ids: Any = None) -> Any:
        """Answer the rows of ``X`` now."""

    def close(self) -> None:
        """Release what the path holds (called only with ``close_deployers=True``)."""


@runtime_checkable
class SupportsValidate(Protocol):
    """A path that checks input against its signature before it is routed."""

    def validate(self, X: Any, /) -> Any:
        """Return the validated rows, or raise
        [`SchemaError`][modeldeploy.exceptions.SchemaError]."""


@runtime_checkable
class BatchQueue(Protocol):
    """The queue [`HybridRouter`][modeldeploy.HybridRouter] feeds its batch requests to;
    [`BatchDeployer`][modeldeploy.BatchDeployer] is one.

    The router never changes the queue's own settings: it calls
    [`flush`][modeldeploy.typing.BatchQueue.flush] itself, on its own size and time thresholds. It
    reads ``method`` (``"predict"`` or ``"predict_proba"``) and ``version`` attributes when there
    are.
    """

    def submit(self, X: Any, /, *, ids: Any = None) -> cf.Future[Any]:
        """Queue rows; the future resolves with their scores once their batch runs (a request
        the queue refuses, e.g. with a ``SchemaError``, comes back already failed)."""

    def flush(self) -> int:
        """Score everything queued now; return the number of rows scored."""

    def close(self) -> None:
        """Score what waits and stop (called only with ``close_deployers=True``)."""


@runtime_checkable
class SwapTarget(Protocol):
    """What a retraining rollout needs of a deployer to promote or roll back: a hot swap.
    [`OnlineDeployer`][modeldeploy.OnlineDeployer] is one."""

    def swap(self, version: Any, /) -> Any:
        """Serve ``version`` (a [`ModelVersion`][modeldeploy.ModelVersion]) from now on."""


@runtime_checkable
class CanaryTarget(SwapTarget, Protocol):
    """What a canary rollout needs of a deployer: a traffic share for the challenger, then
    promote it or withdraw it. [`OnlineDeployer`][modeldeploy.OnlineDeployer] is one."""

    def set_canary(self, version: Any, /, fraction: float) -> Any:
        """Send ``fraction`` of the traffic to ``version``."""

    def promote_canary(self) -> Any:
        """Make the canary the primary."""

    def clear_canary(self) -> Any:
        """Withdraw the canary; the primary answers everything again."""


@runtime_checkable
class MonitorView(Protocol):
    """What retraining triggers read from a monitor; [`Monitor`][modeldeploy.Monitor] is one."""

    def metrics(self) -> Mapping[str, float | None]:
        """The current windowed metrics, with ``n_labelled`` among them."""

    def drift(self) -> Any:
        """The current drift result: a mapping of feature name to a result with ``drifted``,
        with ``n_current`` and ``method`` attributes."""

    def label_stats(self) -> Mapping[str, int]:
        """Label counters, with ``labels_total`` (or ``labels_matched``) among them."""


@runtime_checkable
class VersionedMonitorView(MonitorView, Protocol):
    """A monitor that also keeps metrics per served version, which a canary rollout and the
    guard after a promotion compare; [`Monitor`][modeldeploy.Monitor] is one."""

    def metrics(self, version: str | None = None) -> Mapping[str, float | None]:
        """The current metrics, of one version (``"name:version"``) when given."""


@runtime_checkable
class ChangeMonitorView(MonitorView, Protocol):
    """A monitor that also says when its errors last changed, which
    [`change_detected`][modeldeploy.retraining.triggers.change_detected] reads;
    [`Monitor`][modeldeploy.Monitor] is one.
    """

    def change(self) -> Any:
        """The start of the errors' current regime: a
        [`ChangePoint`][modeldeploy.monitoring.ChangePoint] (``detected``, ``start``,
        ``increase``, ``n_after``, ...)."""


@runtime_checkable
class SupportsFlush(Protocol):
    """Something that hands over what it holds when asked: a deployer's queue to its monitor,
    a monitor's buffered calls. [`RetrainPolicy`][modeldeploy.RetrainPolicy] flushes the
    deployer and the monitor it is given before it decides, so it decides on everything served.
    """

    def flush(self) -> Any:
        """Hand over what waits now."""
