"""When to retrain: metric decay, drift, a schedule, new labels, and any/all of them.

A trigger is any callable that takes a
[`TriggerContext`][modeldeploy.retraining.triggers.TriggerContext] and returns a
[`TriggerResult`][modeldeploy.retraining.triggers.TriggerResult] (or a plain bool, which the policy
wraps). Each built-in trigger says why it fired, or why not, with the numbers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from modeldeploy import _validation as val
from modeldeploy.exceptions import InvalidParameterError
from modeldeploy.typing import ChangeMonitorView, MonitorView

__all__ = [
    "Trigger",
    "TriggerContext",
    "TriggerResult",
    "all_of",
    "any_of",
    "change_detected",
    "drift_detected",
    "every",
    "metric_above",
    "metric_below",
    "new_labels",
]


@dataclass(frozen=True)
class TriggerContext:
    """What a trigger sees: the monitor, the time, and what the policy remembers.

    Attributes
    ----------
    monitor
        The monitor of the deployed champion (a [`MonitorView`][modeldeploy.typing.MonitorView]).
    now
        The current time (UTC).
    last_retrain
        When the policy last retrained (``None`` if never).
    labels_at_last_retrain
        The monitor's running count of labelled predictions when the policy last retrained.
    regime_start
        The start of the change the policy last retrained for (``None`` if none): the data
        since then is the current concept's.
    labels_at_regime_start
        The monitor's running count of labelled predictions at ``regime_start``.
    """

    monitor: MonitorView
    now: datetime
    last_retrain: datetime | None = None
    labels_at_last_retrain: int = 0
    regime_start: datetime | None = None
    labels_at_regime_start: int = 0
    _cache: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def metrics(self) -> dict[str, Any]:
        """The monitor's current metrics, read once per evaluation (a metric not judged yet
        may be ``None`` or ``nan``)."""
        if "metrics" not in self._cache:
            self._cache["metrics"] = self.monitor.metrics()
        return dict(self._cache["metrics"])

    def change(self) -> Any:
        """The monitor's change point (see
        [`modeldeploy.Monitor.change`][modeldeploy.Monitor.change]), read once per
        evaluation; ``None`` when the monitor does not detect changes."""
        if "change" not in self._cache:
            monitor = self.monitor
            found = monitor.change() if isinstance(monitor, ChangeMonitorView) else None
            self._cache["change"] = found
        return self._cache["change"]

    def drift(self) -> Any:
        """The monitor's current drift result, computed once per evaluation."""
        if "drift" not in self._cache:
            self._cache["drift"] = self.monitor.drift()
        return self._cache["drift"]

    def labels_seen(self) -> int:
        """Running count of labels the monitor matched to predictions or got with them."""
        if "labels" not in self._cache:
            stats = self.monitor.label_stats()
            self._cache["labels"] = int(stats.get("labels_total", stats.get("labels_matched", 0)))
        return int(self._cache["labels"])


@dataclass(frozen=True)
class TriggerResult:
    """Whether a trigger fired, and why, with the numbers."""

    fired: bool
    trigger: str
    reason: str
    values: Mapping[str, Any] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return self.fired

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict."""
        return {
            "fired": self.fired,
            "trigger": self.trigger,
            "reason": self.reason,
            "values": dict(self.values),
        }


class Trigger(Protocol):
    """A callable deciding whether to retrain."""

    def __call__(self, context: TriggerContext, /) -> TriggerResult | bool: ...


def run_trigger(trigger: Callable[[TriggerContext], Any], context: TriggerContext) -> TriggerResult:
    """Call a trigger and normalize its answer (a user's lambda may return a bool)."""
    result = trigger(context)
    if isinstance(result, TriggerResult):
        return result
    name = getattr(trigger, "__name__", type(trigger).__name__)
    return TriggerResult(bool(result), name, f"{name} returned {bool(result)}")


@dataclass(frozen=True)
class _MetricBound:
    metric: str
    threshold: float
    min_samples: int
    below: bool

    @property
    def __name__(self) -> str:
        return f"metric_{'below' if self.below else 'above'}({self.metric!r}, {self.threshold})"

    def __call__(self, context: TriggerContext) -> TriggerResult:
        metrics = context.metrics()
        value = as_number(metrics.get(self.metric))
        samples = int(as_number(metrics.get("n_labelled"), 0.0))
        values = {
            "metric": self.metric,
            "value": value,
            "threshold": self.threshold,
            "n_labelled": samples,
            "min_samples": self.min_samples,
        }
        if samples < self.min_samples or math.isnan(value):
            return TriggerResult(
                False,
                self.__name__,
                f"{self.metric} not judged: {samples} labelled rows in the "
                f"window, {self.min_samples} needed",
                values,
            )
        crossed = value < self.threshold if self.below else value > self.threshold
        sign = "<" if self.below else ">"
        verdict = sign if crossed else ("≥" if self.below else "≤")
        return TriggerResult(
            crossed,
            self.__name__,
            f"{self.metric} {value:.4g} {verdict} {self.threshold:g} over "
            f"{samples:,} labelled rows",
            values,
        )


def as_number(value: Any, missing: float = math.nan) -> float:
    """A metric as a float; ``None`` (not judged yet) becomes ``missing``."""
    if value is None:
        return missing
    try:
        return float(value)
    except (TypeError, ValueError):
        return missing


def metric_below(metric: str, threshold: float, *, min_samples: int = 500) -> _MetricBound:
    """Fire when a monitored metric (``f1``, ``accuracy``, ``r2``, ...) drops below a bound.

    Not judged until the window has ``min_samples`` labelled rows.
    """
    return _MetricBound(
        metric,
        val.check_float(threshold, "threshold", "metric_below"),
        val.check_int(min_samples, "min_samples", "metric_below", min_value=0),
        below=True,
    )


def metric_above(metric: str, threshold: float, *, min_samples: int = 500) -> _MetricBound:
    """Fire when a monitored error metric (``mae``, ``rmse``, ``error_rate``, ...) rises above
    a bound."""
    return _MetricBound(
        metric,
        val.check_float(threshold, "threshold", "metric_above"),
        val.check_int(min_samples, "min_samples", "metric_above", min_value=0),
        below=False,
    )


@dataclass(frozen=True)
class _DriftShare:
    share: float
    features: tuple[str, ...] | None
    min_samples: int

    __name__ = "drift_detected"

    def __call__(self, context: TriggerContext) -> TriggerResult:
        result = context.drift()
        names = [n for n in result if self.features is None or n in self.features]
        drifted = [n for n in names if result[n].drifted]
        n_current = int(getattr(result, "n_current", 0))
        share = len(drifted) / len(names) if names else 0.0
        values = {
            "drifted": drifted,
            "features": len(names),
            "share": share,
            "threshold": self.share,
            "n_current": n_current,
            "method": getattr(result, "method", ""),
        }
        if n_current < self.min_samples:
            return TriggerResult(
                False,
                self.__name__,
                f"drift not judged: {n_current} rows in the window, {self.min_samples} needed",
                values,
            )
        fired = bool(names) and share >= self.share
        return TriggerResult(
            fired,
            self.__name__,
            f"{len(drifted)} of {len(names)} features drifted ({share:.0%}"
            f"{' ≥ ' if fired else ' < '}{self.share:.0%}"
            f"{', e.g. ' + ', '.join(drifted[:5]) if drifted else ''})",
            values,
        )


def drift_detected(
    share: float = 0.3, *, features: Sequence[str] | None = None, min_samples: int = 500
) -> _DriftShare:
    """Fire when at least ``share`` of the (named) features drifted in the monitor's window.

    Which statistic decides "drifted" (PSI or a test) is the monitor's ``thresholds["drift"]``.
    """
    return _DriftShare(
        val.check_float(share, "share", "drift_detected", min_value=0.0, max_value=1.0),
        tuple(features) if features is not None else None,
        val.check_int(min_samples, "min_samples", "drift_detected", min_value=0),
    )


@dataclass(frozen=True)
class _ChangeDetected:
    min_samples: int
    refresh: float | None

    __name__ = "change_detected"

    def __call__(self, context: TriggerContext) -> TriggerResult:
        change = context.change()
        if change is None:
            return TriggerResult(
                False,
                self.__name__,
                "change not judged: the monitor has no change() (use modeldeploy.Monitor)",
                {},
            )
        values: dict[str, Any] = {
            "change": change.to_dict(),
            "min_samples": self.min_samples,
            "refresh": self.refresh,
        }
        last = context.last_retrain
        if (
            change.detected
            and change.increase
            and (last is None or change.start is None or change.start >= last)
        ):
            if change.n_after < self.min_samples:
                return TriggerResult(
                    False,
                    self.__name__,
                    f"errors rose {change.before:.4g} -> {change.after:.4g} since "
                    f"{_when(change.start)}; {change.n_after:,} labelled rows since, "
                    f"{self.min_samples:,} needed",
                    values,
                )
            values["since"] = None if change.start is None else change.start.isoformat()
            values["labels_since"] = change.n_after
            values["kind"] = "change"
            return TriggerResult(
                True,
                self.__name__,
                f"errors rose {change.before:.4g} -> {change.after:.4g} since "
                f"{_when(change.start)} over {change.n_after:,} labelled rows "
                f"(change bound {change.bound:.3g})",
                values,
            )
        start = context.regime_start
        if self.refresh is not None and start is not None:
            now = context.labels_seen() - context.labels_at_regime_start
            then = max(context.labels_at_last_retrain - context.labels_at_regime_start, 1)
            due = self.refresh * then
            if now >= due:
                values["since"] = start.isoformat()
                values["labels_since"] = now
                values["kind"] = "refresh"
                return TriggerResult(
                    True,
                    self.__name__,
                    f"{now:,} labelled rows since the change of {_when(start)}, "
                    f"{self.refresh:g}x the {then:,} of the last retrain: retrain on them",
                    values,
                )
        if change.detected and change.increase:
            why = f"the rise since {_when(change.start)} was retrained for already"
        elif change.detected:
            why = (
                f"errors fell {change.before:.4g} -> {change.after:.4g} since {_when(change.start)}"
            )
        else:
            why = f"no change over {change.n_after:,} labelled rows"
        return TriggerResult(False, self.__name__, why, values)


def _when(moment: datetime | None) -> str:
    return "an unknown time" if moment is None else f"{moment:%Y-%m-%d %H:%M:%S}Z"


def change_detected(*, min_samples: int = 200, refresh: float | None = 2.0) -> _ChangeDetected:
    """Fire when the monitor's change detector finds the model's errors rose since the last
    retrain (see [`modeldeploy.Monitor.change`][modeldeploy.Monitor.change]), and say since when.

    The trigger's values carry ``kind`` (``"change"`` or ``"refresh"``), ``since`` (the
    change's start, ISO 8601) and ``labels_since``; the policy
    hands to a ``data`` that takes a context, so the challenger trains on the rows after the
    change. ``min_samples`` labelled rows after the change are needed. With ``refresh``, the
    trigger fires again each time the rows since the change the policy last retrained for have
    grown ``refresh``-fold (1,000, 2,000, 4,000, ... with ``2.0``), so the model keeps up as
    the new concept's data accumulates; each refresh passes the gate like any challenger and
    waits out the cooldown. ``None`` retrains once per change.
    """
    return _ChangeDetected(
        val.check_int(min_samples, "min_samples", "change_detected", min_value=1),
        None
        if refresh is None
        else val.check_float(
            refresh, "refresh", "change_detected", min_value=1.0, min_inclusive=False
        ),
    )


@dataclass(frozen=True)
class _Every:
    period: timedelta

    __name__ = "every"

    def __call__(self, context: TriggerContext) -> TriggerResult:
        values = {
            "period_s": self.period.total_seconds(),
            "last_retrain": context.last_retrain.isoformat() if context.last_retrain else None,
        }
        if context.last_retrain is None:
            return TriggerResult(
                True, self.__name__, f"never retrained; schedule is every {self.period}", values
            )
        due = context.last_retrain + self.period
        fired = context.now >= due
        return TriggerResult(
            fired,
            self.__name__,
            f"last retrain {context.last_retrain:%Y-%m-%d %H:%M}Z, every {self.period}: "
            f"{'due' if fired else 'next'} at {due:%Y-%m-%d %H:%M}Z",
            values,
        )


def every(*, days: float = 0, hours: float = 0, minutes: float = 0) -> _Every:
    """Fire on a schedule: when this long has passed since the last retrain (or never was)."""
    period = timedelta(days=days, hours=hours, minutes=minutes)
    if period <= timedelta(0):
        raise InvalidParameterError(
            f"The schedule of every() must be a positive duration. Got {period} instead."
        )
    return _Every(period)


@dataclass(frozen=True)
class _NewLabels:
    count: int

    __name__ = "new_labels"

    def __call__(self, context: TriggerContext) -> TriggerResult:
        new = context.labels_seen() - context.labels_at_last_retrain
        fired = new >= self.count
        return TriggerResult(
            fired,
            self.__name__,
            f"{new:,} new labels since the last retrain ({'≥' if fired else '<'} {self.count:,})",
            {"new_labels": new, "threshold": self.count},
        )


def new_labels(count: int) -> _NewLabels:
    """Fire when the monitor has received ``count`` labels since the last retrain."""
    return _NewLabels(val.check_int(count, "count", "new_labels", min_value=1))


@dataclass(frozen=True)
class _Combined:
    triggers: tuple[Callable[[TriggerContext], Any], ...]
    require_all: bool

    @property
    def __name__(self) -> str:
        return "all_of" if self.require_all else "any_of"

    def __call__(self, context: TriggerContext) -> TriggerResult:
        results = [run_trigger(t, context) for t in self.triggers]
        fired = (all if self.require_all else any)(r.fired for r in results)
        joined = "; ".join(f"{r.trigger}: {r.reason}" for r in results)
        return TriggerResult(
            fired, self.__name__, joined, {"results": [r.to_dict() for r in results]}
        )


def any_of(*triggers: Callable[[TriggerContext], Any]) -> _Combined:
    """Fire when any of the triggers fires."""
    return _Combined(tuple(triggers), require_all=False)


def all_of(*triggers: Callable[[TriggerContext], Any]) -> _Combined:
    """Fire only when every trigger fires (e.g. drift *and* enough new labels)."""
    return _Combined(tuple(triggers), require_all=True)
