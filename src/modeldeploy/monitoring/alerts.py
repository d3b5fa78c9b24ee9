"""Alerts: thresholds on metrics and drift, debounced, sent to callbacks and to ``logging``.

A threshold is a bound on one metric of the window (a minimum for quality metrics, a maximum for
errors, latency and error rate) or the drift rule (PSI above a bound, or a test's p-value below
one). An `AlertBook` turns the start of a breach into one [`Alert`][modeldeploy.Alert]; a sustained
breach does not alert again until the value has recovered.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from modeldeploy._clock import SYSTEM_CLOCK
from modeldeploy._config import DEFAULT_DRIFT_P_VALUE, DEFAULT_PSI_THRESHOLD
from modeldeploy._metrics_direction import LOWER_IS_BETTER
from modeldeploy._validation import check_choice, check_float
from modeldeploy.exceptions import InvalidParameterError
from modeldeploy.monitoring.drift import FeatureDrift
from modeldeploy.monitoring.metrics import CLASS_METRICS
from modeldeploy.typing import Clock

__all__ = [
    "HIGHER_IS_BETTER",
    "Alert",
    "AlertBook",
    "AlertCallback",
    "Thresholds",
]

logger = logging.getLogger("modeldeploy.monitoring")

_AVERAGED = tuple(f"{m}_{a}" for a in ("macro", "weighted", "micro") for m in CLASS_METRICS[1:])
#: Metrics of labelled rows (their alerts wait for ``min_samples`` labelled rows).
_LABELLED = frozenset({"mae", "mse", "rmse", "log_loss"})
#: Metrics whose threshold is a minimum.
HIGHER_IS_BETTER = frozenset(
    {*CLASS_METRICS, *_AVERAGED, "r2", *(f"estimated_{m}" for m in CLASS_METRICS)}
)
_DRIFT_KEYS = frozenset({"drift", "psi", "p_value"})


@dataclass(frozen=True)
class Alert:
    """A threshold crossed by a metric or a drift statistic.

    Sent once to every ``on_alert`` callback and logged as a warning under
    ``modeldeploy.monitoring`` when the breach starts; a sustained breach does not alert again
    until the value has recovered.

    Attributes
    ----------
    kind
        ``"metric"`` (quality, latency, error rate) or ``"drift"``.
    name
        The metric name, or the drifted feature (``"prediction"`` for the outputs).
    value
        The value that crossed: the metric, the PSI, or the test's p-value.
    threshold
        The threshold it crossed.
    n_samples
        Rows behind the value.
    message
        One sentence saying what happened.
    monitor
        The monitor's name (a model version's ``ref``), when it has one.
    at
        When the alert was raised (UTC).
    details
        Anything else worth knowing (the drift test's statistics, for instance).

    Examples
    --------
    >>> a = Alert("metric", "f1", 0.71, 0.8, 500, "f1 fell to 0.71 (threshold 0.8)")
    >>> str(a)
    'f1 fell to 0.71 (threshold 0.8)'
    """

    kind: str
    name: str
    value: float
    threshold: float
    n_samples: int
    message: str
    monitor: str | None = None
    at: dt.datetime = field(default_factory=SYSTEM_CLOCK.now)
    details: Mapping[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.message

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict."""
        return {
            "kind": self.kind,
            "name": self.name,
            "value": self.value,
            "threshold": self.threshold,
            "n_samples": self.n_samples,
            "message": self.message,
            "monitor": self.monitor,
            "at": self.at.isoformat(),
            "details": dict(self.details),
        }


AlertCallback = Callable[[Alert], Any]


@dataclass(frozen=True)
class Thresholds:
    """A monitor's alert thresholds, parsed and validated.

    Attributes
    ----------
    metrics
        Metric name to bound.
    drift
        Which drift rule alerts: ``"psi"``, ``"ks"`` (the tests' p-values) or ``None``.
    psi, p_value
        The drift bounds.

    Examples
    --------
    >>> t = Thresholds.parse({"f1": 0.8, "drift": "ks"}, "Monitor")
    >>> t.to_dict()
    {'f1': 0.8, 'drift': 'ks', 'psi': 0.25, 'p_value': 0.01}
    """

    metrics: Mapping[str, float]
    drift: str | None
    psi: float
    p_value: float

    @classmethod
    def parse(cls, thresholds: Mapping[str, Any] | None, owner: str) -> Thresholds:
        """Validate a ``thresholds=`` mapping; ``owner`` names the class in error messages."""
        given = dict(thresholds or {})
        known = sorted(LOWER_IS_BETTER | HIGHER_IS_BETTER | _DRIFT_KEYS)
        unknown = [k for k in given if k not in known]
        if unknown:
            raise InvalidParameterError(
                f"The 'thresholds' parameter of {owner} has unknown keys {unknown}. Known keys: "
                f"{known}."
            )
        method = given.pop("drift", "psi")
        if method is not None:
            check_choice(method, "thresholds['drift']", owner, ("psi", "ks"))
        psi = check_float(
            given.pop("psi", DEFAULT_PSI_THRESHOLD), "thresholds['psi']", owner, min_value=0
        )
        p_value = check_float(
            given.pop("p_value", DEFAULT_DRIFT_P_VALUE),
            "thresholds['p_value']",
            owner,
            min_value=0,
            max_value=1,
        )
        metrics = {k: check_float(v, f"thresholds[{k!r}]", owner) for k, v in given.items()}
        return cls(metrics, method, psi, p_value)

    def to_dict(self) -> dict[str, Any]:
        """The thresholds as given, with the drift defaults filled in."""
        return {**self.metrics, "drift": self.drift, "psi": self.psi, "p_value": self.p_value}


class AlertBook:
    """Debounced alerts: what is breached now, alerts waiting to be sent, the recent ones.

    Checks run under the monitor's lock and only queue alerts; `send` delivers them to the
    callbacks and to ``logging`` outside it, so a slow callback never blocks logging.

    Parameters
    ----------
    callbacks
        Called with each alert; an exception is logged, never raised.
    name
        The monitor's name, for messages.
    keep
        Recent alerts kept for reports.
    clock
        Stamps each alert's ``at`` (the monitor's clock; default the system clock).

    Examples
    --------
    >>> book = AlertBook([], name="m:1")
    >>> t = Thresholds.parse({"f1": 0.8}, "Monitor")
    >>> for f1 in (0.7, 0.6, 0.9, 0.7):  # one breach, recovery, a new breach
    ...     book.check_metrics({"f1": f1, "n_labelled": 500}, {"labelled": 500}, t, 100)
    >>> [a.message for a in book.take()]  # doctest: +NORMALIZE_WHITESPACE
    ['m:1: f1 fell to 0.7 over the last 500 rows (threshold 0.8).',
     'm:1: f1 fell to 0.7 over the last 500 rows (threshold 0.8).']
    """

    def __init__(
        self,
        callbacks: Iterable[AlertCallback],
        name: str | None = None,
        keep: int = 100,
        clock: Clock | None = None,
    ) -> None:
        self.callbacks = list(callbacks)
        self.clock = SYSTEM_CLOCK if clock is None else clock
        self.name = name
        self.breached: set[str] = set()
        self.outbox: list[Alert] = []
        self.recent: deque[Alert] = deque(maxlen=keep)

    def label(self) -> str:
        """The prefix of messages: the monitor's name, when it has one."""
        return f"{self.name}: " if self.name else ""

    def transition(self, key: str, breached: bool) -> bool:
        """Debounce: True only when a breach starts; a recovery re-arms the alert."""
        if breached and key not in self.breached:
            self.breached.add(key)
            return True
        if not breached and key in self.breached:
            self.breached.discard(key)
            logger.info("%s%s recovered", self.label(), key)
        return False

    def emit(self, alert: Alert) -> None:
        """Queue an alert for `send` and remember it."""
        self.outbox.append(alert)
        self.recent.append(alert)

    def check_metrics(
        self,
        metrics: Mapping[str, float | None],
        samples: Mapping[str, int],
        thresholds: Thresholds,
        min_samples: int,
    ) -> None:
        """Alert on the metric thresholds crossed by enough rows.

        ``samples`` gives the rows behind each kind of metric: ``labelled`` (quality metrics,
        ``mae``, ``mse`` and ``rmse`` too), ``predictions`` (error rate,
        ``nan_prediction_rate``, latency) and ``estimated`` (estimates from probabilities).
        A metric that is ``None`` (or ``nan``) is not judged yet, as with too few rows.
        """
        for key, bound in thresholds.metrics.items():
            found = metrics.get(key)
            value = math.nan if found is None else float(found)
            if key.startswith("estimated_"):
                n = samples.get("estimated", 0)
            elif key in LOWER_IS_BETTER and key not in _LABELLED:
                n = samples.get("predictions", 0)
            else:
                n = samples.get("labelled", 0)
            if not math.isfinite(value) or n < min_samples:
                continue
            higher = key in HIGHER_IS_BETTER
            breached = value < bound if higher else value > bound
            verb = "fell to" if higher else "rose to"
            if self.transition(f"metric:{key}", breached):
                self.emit(
                    Alert(
                        "metric",
                        key,
                        value,
                        bound,
                        n,
                        f"{self.label()}{key} {verb} {value:.4g} over the last {n} rows "
                        f"(threshold {bound:g}).",
                        self.name,
                        at=self.clock.now(),
                    )
                )

    def check_drift(
        self, rows: Sequence[FeatureDrift], thresholds: Thresholds, min_samples: int
    ) -> None:
        """Alert on the features (and predictions) found drifted over enough rows."""
        for f in rows:
            if f.n_current < min_samples:
                continue
            if self.transition(f"drift:{f.feature}", f.drifted):
                self.emit(self.drift_alert(f, thresholds))

    def drift_alert(self, f: FeatureDrift, thresholds: Thresholds) -> Alert:
        """The alert of one drifted feature."""
        if f.method == "psi":
            value, bound = f.psi, thresholds.psi
            what = f"PSI {f.psi:.3f} > {bound:g}"
        else:
            value, bound = f.p_value, thresholds.p_value
            what = f"{f.test} p-value {f.p_value:.3g} < {bound:g} (statistic {f.statistic:.4g})"
        return Alert(
            "drift",
            f.feature,
            value,
            bound,
            f.n_current,
            f"{self.label()}{f.feature!r} drifted from its reference: {what} over "
            f"{f.n_current} rows.",
            self.name,
            at=self.clock.now(),
            details=f.to_dict(),
        )

    def to_state(self) -> dict[str, Any]:
        """What is breached now and the recent alerts, JSON-friendly (callbacks are not saved)."""
        return {"breached": sorted(self.breached), "alerts": [a.to_dict() for a in self.recent]}

    @classmethod
    def from_state(
        cls,
        state: Mapping[str, Any],
        callbacks: Iterable[AlertCallback],
        name: str | None = None,
        keep: int = 100,
        clock: Clock | None = None,
    ) -> AlertBook:
        """Rebuild what `to_state` gave, with these callbacks."""
        out = cls(callbacks, name, keep, clock)
        out.breached = set(state["breached"])
        for a in state["alerts"]:
            fields = dict(a)
            fields["at"] = dt.datetime.fromisoformat(fields["at"])
            out.recent.append(Alert(**fields))
        return out

    def take(self) -> list[Alert]:
        """The alerts waiting to be sent, removed from the queue (call under the lock)."""
        if not self.outbox:
            return []
        alerts, self.outbox = self.outbox, []
        return alerts

    def send(self, alerts: Iterable[Alert]) -> None:
        """Log each alert as a warning and call every callback with it (outside the lock)."""
        for alert in alerts:
            logger.warning("alert: %s", alert.message)
            for callback in self.callbacks:
                try:
                    callback(alert)
                except Exception:
                    logger.exception("on_alert callback %r failed", callback)
