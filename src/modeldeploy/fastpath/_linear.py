"""Exact numpy predictors for linear models and pipelines of standard preprocessing.

Each compiled step repeats the arithmetic scikit-learn performs, with the same operations in the
same order and the same dtypes (``X -= mean_.astype(X.dtype)`` where scikit-learn casts, in-place
float64 operands where it does not), so the results are bit-identical to the model's own
``predict`` for dense numeric input (for a DataFrame-trained model, starting from an ``X`` with
the column-major layout scikit-learn gets from pandas: see
`frame_input`). The parity check in `.fastpath`
verifies that claim before anything serves. Estimators are matched by exact type, so a user
subclass that overrides ``predict`` is never compiled; it is served by its own ``predict``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["LinearProgram", "compile_linear", "linear_boundary_rows"]

Transform = Callable[[np.ndarray], np.ndarray]


class NotCompilableError(Exception):
    """The model (or one of its steps) has no exact numpy path; the message says why."""


class LinearProgram:
    """A compiled linear model: preprocessing steps, then ``X @ coef.T + intercept``."""

    def __init__(
        self,
        steps: tuple[Transform, ...],
        coef: np.ndarray,
        intercept: np.ndarray | float,
        classes: np.ndarray | None,
        proba: str | None,
        description: str,
        has_imputer: bool,
    ) -> None:
        self.steps = steps
        self.coef = coef
        self.intercept = intercept
        self.classes = classes
        self.proba = proba  # "binary-expit", "softmax", "ovr", "modified-huber" or None
        self.description = description
        self.has_imputer = has_imputer
        # Set for DataFrame-trained models: builds, from the validated rows, the array
        # scikit-learn gets from the DataFrame (its values and its column-major layout).
        self.prepare: Transform | None = None
        # The same operand scikit-learn multiplies by (a transposed view of coef_).
        self._coef_t = coef.T if coef.ndim == 2 else coef

    def transform(self, X: np.ndarray) -> np.ndarray:
        if self.steps:
            X = X.astype(X.dtype if X.dtype in (np.float32, np.float64) else np.float64)
            for step in self.steps:
                X = step(X)
        return X

    def model_input(self, X: np.ndarray) -> np.ndarray:
        """``X`` as the final estimator receives it: converted like the model's input, scaled."""
        if self.prepare is None:
            return self.transform(X)
        X = self.prepare(X)  # a new float64 array: the steps may work in place
        for step in self.steps:
            X = step(X)
        return X

    def scores(self, X: np.ndarray) -> np.ndarray:
        # Same expression as LinearClassifierMixin.decision_function / LinearModel.predict.
        # The operand's memory layout matters: BLAS sums a row-major and a column-major X in
        # different orders, so a score on the decision boundary can round to either side.
        out: np.ndarray = self.model_input(X) @ self._coef_t + self.intercept
        return out

    def predict(self, X: np.ndarray) -> np.ndarray:
        if self.steps or self.prepare is not None:
            X = self.model_input(X)
        scores: np.ndarray = X @ self._coef_t + self.intercept
        classes = self.classes
        if classes is None:
            return scores
        if scores.ndim == 2 and scores.shape[1] == 1:
            scores = scores.reshape(-1)
        index = (scores > 0).astype(np.intp) if scores.ndim == 1 else np.argmax(scores, axis=1)
        labels: np.ndarray = classes.take(index, axis=0)
        return labels

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        scores = self.scores(X)
        if scores.ndim == 2 and scores.shape[1] == 1:
            scores = scores.reshape(-1)
        if self.proba == "softmax":
            # sklearn.utils.extmath.softmax, in place like LogisticRegression calls it.
            scores -= scores.max(axis=1).reshape(-1, 1)
            np.exp(scores, out=scores)
            scores /= scores.sum(axis=1).reshape(-1, 1)
            return scores
        if self.proba == "modified-huber":
            return _modified_huber(scores)
        # scipy.special costs a tenth of a second to import: imported at the first binary
        # probability, not with the package (a cached import is a dict lookup).
        from scipy.special import expit

        prob: np.ndarray = expit(scores, out=scores)
        if prob.ndim == 1:
            return np.stack([1 - prob, prob], axis=1)
        prob_sum = prob.sum(axis=1)
        all_zero = prob_sum == 0
        if np.any(all_zero):
            prob[all_zero, :] = 1
            prob_sum[all_zero] = prob.shape[1]
        prob /= prob_sum.reshape(prob.shape[0], -1)
        return prob


def _modified_huber(scores: np.ndarray) -> np.ndarray:
    # SGDClassifier.predict_proba for loss="modified_huber", step by step.
    binary = scores.ndim == 1
    if binary:
        prob2 = np.ones((scores.shape[0], 2))
        prob = prob2[:, 1]
    else:
        prob = scores
    np.clip(scores, -1, 1, prob)
    prob += 1.0
    prob /= 2.0
    if binary:
        prob2[:, 0] -= prob
        return prob2
    prob_sum = prob.sum(axis=1)
    all_zero = prob_sum == 0
    if np.any(all_zero):
        prob[all_zero, :] = 1
        prob_sum[all_zero] = len(prob[0])
    prob /= prob_sum[:, np.newaxis]
    return prob


# ---------------------------------------------------------------------- preprocessing steps


def _standard_scaler(step: Any) -> Transform:
    mean = step.mean_ if step.with_mean else None
    scale = step.scale_ if step.with_std else None

    def transform(X: np.ndarray) -> np.ndarray:
        if mean is not None:
            X -= mean.astype(X.dtype)
        if scale is not None:
            X /= scale.astype(X.dtype)
        return X

    return transform


def _minmax_scaler(step: Any) -> Transform:
    scale, low = step.scale_, step.min_
    lo, hi = step.feature_range
    clip = bool(step.clip)

    def transform(X: np.ndarray) -> np.ndarray:
        X *= scale
        X += low
        if clip:
            np.clip(X, np.asarray(lo, dtype=X.dtype), np.asarray(hi, dtype=X.dtype), out=X)
        return X

    return transform


def _maxabs_scaler(step: Any) -> Transform:
    scale = step.scale_
    clip = bool(getattr(step, "clip", False))

    def transform(X: np.ndarray) -> np.ndarray:
        X /= scale
        if clip:
            np.clip(X, np.asarray(-1.0, dtype=X.dtype), np.asarray(1.0, dtype=X.dtype), out=X)
        return X

    return transform


def _robust_scaler(step: Any) -> Transform:
    center = step.center_ if step.with_centering else None
    scale = step.scale_ if step.with_scaling else None

    def transform(X: np.ndarray) -> np.ndarray:
        if center is not None:
            X -= center
        if scale is not None:
            X /= scale
        return X

    return transform


def _simple_imputer(step: Any) -> Transform:
    missing = step.missing_values
    if not (isinstance(missing, float) and np.isnan(missing)):
        raise NotCompilableError(
            f"SimpleImputer(missing_values={missing!r}) (only NaN is compiled)"
        )
    if step.add_indicator:
        raise NotCompilableError("SimpleImputer(add_indicator=True)")
    try:  # strategy="constant" keeps its fill values in an object array
        stats = np.asarray(step.statistics_).astype(np.float64)
    except (TypeError, ValueError):
        raise NotCompilableError("SimpleImputer with non-numeric fill values") from None
    if np.isnan(stats).any():
        raise NotCompilableError("SimpleImputer with an empty (all-missing) feature")

    def transform(X: np.ndarray) -> np.ndarray:
        np.copyto(X, stats.astype(X.dtype), where=np.isnan(X))
        return X

    return transform


_STEPS: dict[str, Callable[[Any], Transform]] = {
    "sklearn.preprocessing._data.StandardScaler": _standard_scaler,
    "sklearn.preprocessing._data.MinMaxScaler": _minmax_scaler,
    "sklearn.preprocessing._data.MaxAbsScaler": _maxabs_scaler,
    "sklearn.preprocessing._data.RobustScaler": _robust_scaler,
    "sklearn.impute._base.SimpleImputer": _simple_imputer,
}

# Estimator -> how its probabilities are computed ("none" when it has no predict_proba).
_CLASSIFIERS = {
    "sklearn.linear_model._logistic.LogisticRegression": "logistic",
    "sklearn.linear_model._logistic.LogisticRegressionCV": "logistic",
    "sklearn.linear_model._stochastic_gradient.SGDClassifier": "sgd",
    "sklearn.linear_model._ridge.RidgeClassifier": "none",
    "sklearn.linear_model._ridge.RidgeClassifierCV": "none",
    "sklearn.linear_model._perceptron.Perceptron": "none",
    "sklearn.linear_model._passive_aggressive.PassiveAggressiveClassifier": "none",
    "sklearn.svm._classes.LinearSVC": "none",
}
_REGRESSORS = {
    "sklearn.linear_model._base.LinearRegression": "plain",
    "sklearn.linear_model._ridge.Ridge": "plain",
    "sklearn.linear_model._ridge.RidgeCV": "plain",
    "sklearn.linear_model._coordinate_descent.Lasso": "plain",
    "sklearn.linear_model._coordinate_descent.ElasticNet": "plain",
    "sklearn.linear_model._bayes.BayesianRidge": "bayes",
    "sklearn.linear_model._stochastic_gradient.SGDRegressor": "plain",
    "sklearn.svm._classes.LinearSVR": "plain",
}


def _is_imputer(step: Any) -> bool:
    return qualname(step) == "sklearn.impute._base.SimpleImputer"


def qualname(obj: Any) -> str:
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def is_linear(model: Any) -> bool:
    """Whether ``model`` (or the last step of a Pipeline) is a linear model we compile."""
    final = model.steps[-1][1] if qualname(model) == "sklearn.pipeline.Pipeline" else model
    return qualname(final) in _CLASSIFIERS or qualname(final) in _REGRESSORS


def compile_linear(model: Any) -> LinearProgram:
    """Compile a linear model or a Pipeline of supported steps ending in one.

    Raises
    ------
    NotCompilableError
        Naming the step that has no exact numpy path.
    """
    steps: list[Transform] = []
    names: list[str] = []
    has_imputer = False
    final = model
    if qualname(model) == "sklearn.pipeline.Pipeline":
        *pre, (_, final) = model.steps
        for _, step in pre:
            if step is None or step == "passthrough":
                continue
            build = _STEPS.get(qualname(step))
            if build is None:
                raise NotCompilableError(
                    f"pipeline step {type(step).__name__} has no exact numpy path"
                )
            steps.append(build(step))
            names.append(type(step).__name__)
            has_imputer = has_imputer or _is_imputer(step)
    name = qualname(final)
    if not hasattr(final, "coef_"):
        raise NotCompilableError(f"{type(final).__name__} is not fitted (it has no coef_)")
    coef = np.asarray(final.coef_)
    if coef.dtype.kind != "f":
        raise NotCompilableError(f"{type(final).__name__} has no dense float coef_")
    intercept = final.intercept_
    classes: np.ndarray | None = None
    proba: str | None = None
    if name in _CLASSIFIERS:
        classes = np.asarray(final.classes_)
        kind = _CLASSIFIERS[name]
        if kind == "logistic":
            proba = "binary-expit" if classes.size <= 2 else "softmax"
        elif kind == "sgd" and final.loss == "log_loss":
            proba = "ovr"
        elif kind == "sgd" and final.loss == "modified_huber":
            proba = "modified-huber"
    elif name in _REGRESSORS:
        if _REGRESSORS[name] == "bayes":
            raise NotCompilableError("BayesianRidge centres X before the product (not compiled)")
    else:
        raise NotCompilableError(f"{type(final).__name__} is not a known linear model")
    description = " -> ".join([*names, type(final).__name__])
    return LinearProgram(tuple(steps), coef, intercept, classes, proba, description, has_imputer)


def linear_boundary_rows(model: Any, program: LinearProgram, X_ref: np.ndarray) -> np.ndarray:
    """Rows on (and one ulp either side of) the decision boundary: where a label can flip.

    Each reference row is projected, in the model's input space after preprocessing, onto the
    hyperplane between its two highest-scoring classes, then mapped back through the scalers'
    ``inverse_transform``. Regressors get their reference rows unchanged.
    """
    if program.classes is None or X_ref.shape[0] == 0:
        return X_ref[:0]
    Z = program.transform(np.asarray(X_ref, dtype=np.float64))
    coef = np.atleast_2d(program.coef)
    intercept = np.atleast_1d(np.asarray(program.intercept, dtype=np.float64))
    if coef.shape[0] == 1:
        w = np.repeat(coef, Z.shape[0], axis=0)
        b = np.repeat(intercept, Z.shape[0])
    else:
        scores = Z @ coef.T + intercept
        top = np.argsort(scores, axis=1)[:, -2:]
        w = coef[top[:, 1]] - coef[top[:, 0]]
        b = intercept[top[:, 1]] - intercept[top[:, 0]]
    norm = np.einsum("ij,ij->i", w, w)
    norm[norm == 0] = 1.0
    dist = (np.einsum("ij,ij->i", Z, w) + b) / norm
    on = Z - dist[:, None] * w
    if qualname(model) == "sklearn.pipeline.Pipeline":
        for _, step in reversed(model.steps[:-1]):
            invertible = hasattr(step, "inverse_transform") and not _is_imputer(step)
            if step is not None and step != "passthrough" and invertible:
                on = step.inverse_transform(on)
    up = np.nextafter(on, np.inf)
    down = np.nextafter(on, -np.inf)
    return np.concatenate([on, up, down])
