"""Windowed streaming metrics from per-bucket counts, never raw rows.

A window is a ring of buckets. Each bucket holds a confusion matrix (classification) or a few
sums (regression: count, mean and sum of squared deviations of the labels, sums of absolute and
squared errors), so adding a row is O(1) and reading the window's metrics costs one sum over the
buckets. The metrics are computed exactly as `sklearn.metrics` computes them on the same rows
(``zero_division=0``), so they agree to floating point rounding.

Count-based windows put row ``i`` (counting from the first row logged) in bucket
``i // bucket_size``; time-based windows put a row logged at time ``t`` in bucket
``floor(t / bucket_seconds)``. The window is the current bucket and the ``buckets - 1`` before it,
so a count-based window of ``window`` rows split in ``buckets`` buckets covers between
``window - bucket_size + 1`` and ``window`` rows.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "AVERAGES",
    "CLASS_METRICS",
    "BucketRing",
    "LATENCY_EDGES",
    "classification_metrics",
    "latency_percentiles",
    "merge_regression",
    "regression_metrics",
    "regression_stats",
    "window_metrics",
]

AVERAGES = ("binary", "macro", "weighted", "micro")
#: The classification metrics, each also reported per average (``f1_macro``, ...).
CLASS_METRICS = ("accuracy", "precision", "recall", "f1")
#: Latency histogram edges in seconds: 20 log-spaced bins per decade from 1 us to 1000 s, so a
#: percentile is read within about 6% of its value.
LATENCY_EDGES = np.logspace(-6, 3, 181)


class BucketRing:
    """A ring of ``n_buckets`` slots, each keyed by an integer bucket key and holding arrays.

    Examples
    --------
    >>> ring = BucketRing(3)
    >>> ring.add_array("n", (), np.int64)
    >>> for key in (0, 1, 2, 3):
    ...     ring.arrays["n"][ring.slot(key)] += 10
    >>> int(ring.total("n", current=3))
    30
    """

    def __init__(self, n_buckets: int) -> None:
        self.n_buckets = n_buckets
        self.keys = np.full(n_buckets, -1, dtype=np.int64)
        self.arrays: dict[str, np.ndarray] = {}

    def add_array(self, name: str, tail: tuple[int, ...], dtype: Any) -> None:
        """Add one array of shape ``(n_buckets, *tail)``, zeroed."""
        self.arrays[name] = np.zeros((self.n_buckets, *tail), dtype=dtype)

    def slot(self, key: int) -> int | None:
        """The slot of ``key``, emptied first when it held an older bucket.

        ``None`` when ``key`` is older than the bucket now in its slot (it left the window).
        """
        s = key % self.n_buckets
        held = int(self.keys[s])
        if held == key:
            return s
        if held > key:
            return None
        for arr in self.arrays.values():
            arr[s] = 0
        self.keys[s] = key
        return s

    def lookup(self, key: int) -> int | None:
        """The slot holding ``key``, or ``None`` when that bucket is gone."""
        s = key % self.n_buckets
        return s if int(self.keys[s]) == key else None

    def active(self, current: int) -> npt.NDArray[np.bool_]:
        """Mask of the slots inside the window that ends with bucket ``current``."""
        return (self.keys > current - self.n_buckets) & (self.keys <= current) & (self.keys >= 0)

    def total(self, name: str, current: int) -> np.ndarray:
        """Sum of one array over the window's slots."""
        arr = self.arrays[name]
        return np.asarray(arr[self.active(current)].sum(axis=0))

    def resize(self, name: str, tail: tuple[int, ...]) -> None:
        """Grow an array's trailing dimensions, keeping its values in the leading corner."""
        old = self.arrays[name]
        new = np.zeros((self.n_buckets, *tail), dtype=old.dtype)
        new[tuple(slice(0, n) for n in old.shape)] = old
        self.arrays[name] = new


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    out = np.zeros_like(num, dtype=np.float64)
    np.divide(num, den, out=out, where=den > 0)
    return out


def classification_metrics(
    confusion: npt.ArrayLike, *, average: str = "macro", pos_index: int | None = None
) -> dict[str, float]:
    """Accuracy, precision, recall and F1 from a confusion matrix, as scikit-learn computes them.

    Parameters
    ----------
    confusion
        ``(k, k)`` counts, rows the true class and columns the predicted class. Classes with an
        empty row and column are absent from the window and take no part in averages, as with
        ``sklearn.metrics.precision_score(..., labels=None)``.
    average
        What ``precision``, ``recall`` and ``f1`` report: ``"binary"`` (the class at
        ``pos_index``), ``"macro"``, ``"weighted"`` or ``"micro"``. The ``_macro``,
        ``_weighted`` and ``_micro`` variants are always included.
    pos_index
        Index of the positive class, for ``average="binary"``.

    Returns
    -------
    dict
        ``accuracy``, ``precision``, ``recall``, ``f1`` and their averaged variants; ``nan``
        when the matrix is empty. A zero denominator gives 0 (``zero_division=0``).

    Examples
    --------
    >>> m = classification_metrics([[5, 1], [2, 2]], average="binary", pos_index=1)
    >>> m["accuracy"], round(m["f1"], 4)
    (0.7, 0.5714)
    """
    cm = np.asarray(confusion, dtype=np.float64)
    total = cm.sum()
    keys = ["accuracy", "precision", "recall", "f1"]
    keys += [f"{m}_{a}" for a in ("macro", "weighted", "micro") for m in keys[1:]]
    if total <= 0:
        return dict.fromkeys(keys, math.nan)
    tp = np.diag(cm)
    true_sum = cm.sum(axis=1)
    pred_sum = cm.sum(axis=0)
    present = (true_sum > 0) | (pred_sum > 0)
    precision = _safe_div(tp, pred_sum)
    recall = _safe_div(tp, true_sum)
    f1 = _safe_div(2 * tp, true_sum + pred_sum)
    out: dict[str, float] = {"accuracy": float(tp.sum() / total)}
    weights = true_sum[present]
    for name, per_class in (("precision", precision), ("recall", recall), ("f1", f1)):
        out[f"{name}_macro"] = float(per_class[present].mean())
        out[f"{name}_weighted"] = (
            float(np.average(per_class[present], weights=weights)) if weights.sum() > 0 else 0.0
        )
        out[f"{name}_micro"] = out["accuracy"]
    for name, per_class in (("precision", precision), ("recall", recall), ("f1", f1)):
        if average == "binary":
            out[name] = float(per_class[pos_index]) if pos_index is not None else math.nan
        else:
            out[name] = out[f"{name}_{average}"]
    return {k: out[k] for k in keys}


def merge_regression(a: npt.ArrayLike, b: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Merge two regression accumulators ``[n, mean, m2, sum_abs, sum_sq]`` (Chan et al.).

    Examples
    --------
    >>> merge_regression([2, 1.0, 2.0, 2.0, 4.0], [1, 4.0, 0.0, 1.0, 1.0]).tolist()
    [3.0, 2.0, 8.0, 3.0, 5.0]
    """
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    n = x[0] + y[0]
    if n == 0:
        return np.zeros(5)
    delta = y[1] - x[1]
    mean = x[1] + delta * y[0] / n
    m2 = x[2] + y[2] + delta * delta * x[0] * y[0] / n
    return np.asarray([n, mean, m2, x[3] + y[3], x[4] + y[4]], dtype=np.float64)


def regression_stats(y_true: np.ndarray, y_pred: np.ndarray) -> npt.NDArray[np.float64]:
    """The accumulator ``[n, mean, m2, sum_abs, sum_sq]`` of one batch."""
    if y_true.size == 0:
        return np.zeros(5)
    err = y_true - y_pred
    mean = float(y_true.mean())
    dev = y_true - mean
    return np.asarray(
        [y_true.size, mean, float(dev @ dev), float(np.abs(err).sum()), float(err @ err)]
    )


def regression_metrics(acc: npt.ArrayLike) -> dict[str, float]:
    """MAE, MSE, RMSE and R² from an accumulator, as scikit-learn computes them.

    R² follows ``sklearn.metrics.r2_score``: ``nan`` below two rows; with constant labels 1.0
    for a perfect fit and 0.0 otherwise.

    Examples
    --------
    >>> regression_metrics([4, 2.5, 5.0, 2.0, 1.5])
    {'mae': 0.5, 'mse': 0.375, 'rmse': 0.6123724356957945, 'r2': 0.7}
    """
    n, _, m2, sum_abs, sum_sq = (float(v) for v in np.asarray(acc, dtype=np.float64))
    if n <= 0:
        return dict.fromkeys(("mae", "mse", "rmse", "r2"), math.nan)
    if n < 2:
        r2 = math.nan
    elif m2 > 0:
        r2 = 1.0 - sum_sq / m2
    else:
        r2 = 1.0 if sum_sq == 0 else 0.0
    mse = sum_sq / n
    return {"mae": sum_abs / n, "mse": mse, "rmse": math.sqrt(mse), "r2": r2}


def latency_percentiles(
    counts: npt.ArrayLike, quantiles: Mapping[str, float] | None = None
) -> dict[str, float]:
    """Percentiles read from a latency histogram over `LATENCY_EDGES`.

    Each percentile is the geometric middle of the bin holding it (within about 6%).

    Examples
    --------
    >>> counts = np.zeros(LATENCY_EDGES.size + 1)
    >>> counts[np.searchsorted(LATENCY_EDGES, 0.010, side="right")] = 10
    >>> round(latency_percentiles(counts)["latency_p50"], 4)
    0.0106
    """
    q = quantiles or {"latency_p50": 0.5, "latency_p95": 0.95, "latency_p99": 0.99}
    c = np.asarray(counts, dtype=np.float64)
    total = c.sum()
    if total <= 0:
        return dict.fromkeys(q, math.nan)
    cum = np.cumsum(c)
    lows = np.concatenate([[LATENCY_EDGES[0]], LATENCY_EDGES])
    highs = np.concatenate([LATENCY_EDGES, [LATENCY_EDGES[-1]]])
    out = {}
    for name, level in q.items():
        k = int(np.searchsorted(cum, level * total, side="left"))
        out[name] = float(math.sqrt(lows[k] * highs[k]))
    return out


def window_metrics(
    ring: BucketRing,
    current: int,
    task: str | None,
    average_and_pos: Callable[[], tuple[str, int | None]],
) -> dict[str, float | None]:
    """Every metric of the window of ``ring`` that ends with bucket ``current``.

    ``average_and_pos`` gives the average and the positive class's index of a classifier
    (called only when there are class counts). A metric without data is ``None`` (never
    ``nan``, so the result is valid JSON); the counts are ints.
    """
    n_pred = int(ring.total("n_pred", current))
    n_err = int(ring.total("n_err", current))
    out: dict[str, float] = {}
    n_labelled = 0
    if task == "classification" and "conf" in ring.arrays:
        cm = ring.total("conf", current)
        n_labelled = int(cm.sum())
        average, pos = average_and_pos()
        out.update(classification_metrics(cm, average=average, pos_index=pos))
        if int(ring.total("n_proba", current)):
            est = classification_metrics(
                ring.total("expected", current), average=average, pos_index=pos
            )
            out.update({f"estimated_{m}": est[m] for m in CLASS_METRICS})
    elif task == "regression" and "reg" in ring.arrays:
        acc = np.zeros(5)
        for row in ring.arrays["reg"][ring.active(current)]:
            acc = merge_regression(acc, row)
        n_labelled = int(acc[0])
        out.update(regression_metrics(acc))
    out["n_predictions"] = n_pred
    out["n_labelled"] = n_labelled
    out["nan_prediction_rate"] = (
        int(ring.total("n_nan_pred", current)) / n_pred if n_pred else math.nan
    )
    out["error_rate"] = n_err / (n_pred + n_err) if n_pred + n_err else math.nan
    out.update(latency_percentiles(ring.total("latency", current)))
    return {k: None if v != v else v for k, v in out.items()}  # v != v: nan
