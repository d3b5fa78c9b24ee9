"""Judging a challenger against the champion on the same holdout, before it may serve."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from modeldeploy import _validation as val
from modeldeploy._metrics_direction import gain
from modeldeploy.exceptions import InvalidParameterError

__all__ = ["Gate", "GateResult", "score"]

Scorer = Callable[[np.ndarray, np.ndarray], float]


def _scorers(task: str, average: str) -> dict[str, Scorer]:
    # sklearn.metrics pulls in scipy.stats: imported when scoring, not with modeldeploy.
    from sklearn import metrics as skm

    if task == "regression":
        return {
            "mae": lambda y, p: float(skm.mean_absolute_error(y, p)),
            "mse": lambda y, p: float(skm.mean_squared_error(y, p)),
            "rmse": lambda y, p: float(np.sqrt(skm.mean_squared_error(y, p))),
            "r2": lambda y, p: float(skm.r2_score(y, p)),
        }
    return {
        "accuracy": lambda y, p: float(skm.accuracy_score(y, p)),
        "precision": lambda y, p: float(
            skm.precision_score(y, p, average=average, zero_division=0)
        ),
        "recall": lambda y, p: float(skm.recall_score(y, p, average=average, zero_division=0)),
        "f1": lambda y, p: float(skm.f1_score(y, p, average=average, zero_division=0)),
    }


def score(model: Any, X: Any, y: Any, *, task: str = "auto") -> dict[str, float]:
    """Score a model on labelled rows with scikit-learn's metrics.

    Classification: accuracy, precision, recall, f1 (binary for two classes, macro otherwise).
    Regression: mae, mse, rmse, r2. With ``task="auto"`` a model with ``classes_`` or
    ``predict_proba`` is a classifier, and otherwise float labels mean regression.
    """
    y_true = np.asarray(y)
    y_pred = np.asarray(model.predict(X))
    if task == "auto":
        classifier = hasattr(model, "classes_") or hasattr(model, "predict_proba")
        task = "regression" if not classifier and y_true.dtype.kind == "f" else "classification"
    if task == "regression":
        return {k: f(y_true, y_pred) for k, f in _scorers(task, "").items()}
    labels = np.unique(np.concatenate([y_true, y_pred]))
    average = "binary" if len(labels) <= 2 and set(labels.tolist()) <= {0, 1} else "macro"
    return {k: f(y_true, y_pred) for k, f in _scorers(task, average).items()}


@dataclass(frozen=True)
class GateResult:
    """The verdict of a [`Gate`][modeldeploy.retraining.Gate], with both models' scores on the same
    holdout."""

    passed: bool
    metric: str
    champion: Mapping[str, float]
    challenger: Mapping[str, float]
    reasons: tuple[str, ...]
    n_holdout: int = 0

    def __bool__(self) -> bool:
        return self.passed

    @property
    def improvement(self) -> float:
        """How much better the challenger is on the gate metric (positive is better)."""
        return gain(self.metric, self.champion[self.metric], self.challenger[self.metric])

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict."""
        return {
            "passed": self.passed,
            "metric": self.metric,
            "champion": dict(self.champion),
            "challenger": dict(self.challenger),
            "reasons": list(self.reasons),
            "n_holdout": self.n_holdout,
        }

    def __repr__(self) -> str:
        verdict = "passed" if self.passed else "refused"
        return (
            f"GateResult({verdict}: {self.metric} {self.champion[self.metric]:.4g} -> "
            f"{self.challenger[self.metric]:.4g} on {self.n_holdout} rows)"
        )


@dataclass(frozen=True)
class Gate:
    """The challenger must beat the champion by ``min_improvement`` on ``metric`` and lose no
    more than ``guard`` allows on the others (the "blessing" TFX's Evaluator gives).

    Parameters
    ----------
    metric
        The metric that decides: ``f1``, ``accuracy``, ``precision``, ``recall`` (classifiers),
        ``r2``, ``mae``, ``rmse``, ``mse`` (regressors). Lower is better for the errors.
    min_improvement
        How much better the challenger must be, in the metric's units (``0.01`` = one point of
        F1). Zero accepts a tie.
    guard
        Largest allowed change of other metrics, signed in the "better" direction:
        ``{"recall": -0.02}`` lets recall drop by at most 0.02.

    Examples
    --------
    >>> gate = Gate(metric="f1", min_improvement=0.01, guard={"recall": -0.02})
    >>> gate.judge({"f1": 0.80, "recall": 0.70}, {"f1": 0.83, "recall": 0.69}).passed
    True
    >>> gate.judge({"f1": 0.80, "recall": 0.70}, {"f1": 0.83, "recall": 0.60}).reasons[-1]
    'recall fell by 0.1 (allowed: 0.02)'
    """

    metric: str = "f1"
    min_improvement: float = 0.0
    guard: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        val.check_float(self.min_improvement, "min_improvement", "Gate")
        for name, allowed in self.guard.items():
            if not isinstance(allowed, (int, float)) or allowed > 0:
                raise InvalidParameterError(
                    f"The 'guard' parameter of Gate must map metric names to changes <= 0 (the "
                    f"largest allowed loss). Got {name!r}: {allowed!r} instead."
                )

    def judge(
        self, champion: Mapping[str, float], challenger: Mapping[str, float], n_holdout: int = 0
    ) -> GateResult:
        """Compare two sets of scores."""
        for scores, who in ((champion, "champion"), (challenger, "challenger")):
            if self.metric not in scores:
                raise InvalidParameterError(
                    f"The gate metric {self.metric!r} is not among the {who}'s scores "
                    f"({sorted(scores)}). Use one of those."
                )
        reasons = []

        improvement = gain(self.metric, champion[self.metric], challenger[self.metric])
        ok = not math.isnan(improvement) and improvement >= self.min_improvement
        reasons.append(
            f"{self.metric} {champion[self.metric]:.4g} -> {challenger[self.metric]:.4g} "
            f"({'+' if improvement >= 0 else ''}{improvement:.4g}; needed "
            f"+{self.min_improvement:g})"
        )
        for name, allowed in self.guard.items():
            if name not in champion or name not in challenger:
                continue
            change = gain(name, champion[name], challenger[name])
            if change < allowed - 1e-12:
                ok = False
                reasons.append(f"{name} fell by {-change:.4g} (allowed: {-allowed:g})")
        return GateResult(
            ok, self.metric, dict(champion), dict(challenger), tuple(reasons), n_holdout
        )

    def evaluate(self, champion: Any, challenger: Any, X: Any, y: Any) -> GateResult:
        """Score both models on the same holdout rows and judge them."""
        return self.judge(score(champion, X, y), score(challenger, X, y), n_holdout=len(y))
