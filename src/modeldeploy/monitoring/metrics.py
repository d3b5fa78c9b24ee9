"""Windowed streaming metrics from per-bucket counts, never raw rows.

A window is a ring of buckets. Each bucket holds a confusion matrix (classification) or a few
sums (regression: count, mean and sum of squared deviations of the labels, sums of absolute and
squared errors), so adding a row is O(1) and reading the window's metrics costs one sum over the
buckets. The metrics are computed exactly as :mod:`sklearn.metrics` computes them on the same rows
(``zero_division=0``), so they agree to floating point rounding.

Count-based windows put row ``i`` (counting from the first row logged) in bucket
``i // bucket_size``; time-based windows put a row logged at time ``t`` in bucket
``floor(t / bucket_seconds)``. The window is the current bucket and the ``buckets - 1`` before it,
so a count-based window of ``window`` rows split in ``buckets`` buckets covers between
``window - bucket_size + 1`` and ``window`` rows.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "AVERAGES",
    "CLASS_METRICS",
    "BucketRing",
    "LATENCY_EDGES",
    "PendingLabels",
    "classification_metrics",
    "latency_percentiles",
    "merge_regression",
    "regression_metrics",
    "regression_stats",
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
    """Percentiles read from a latency histogram over :data:`LATENCY_EDGES`.

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


LABELLED, EXPIRED, EVICTED = 0, 1, 2
LABEL_COUNTERS = (
    "labels_total",
    "predictions_duplicate_id",
    "predictions_evicted",
    "predictions_expired",
    "labels_matched",
    "labels_early",
    "labels_late",
    "labels_duplicate",
    "labels_unknown",
    "labels_expired",
    "labels_evicted",
    "labels_missing",
)


class PendingLabels:
    """Predictions waiting for their label, and labels waiting for their prediction, by id.

    Each pending id remembers its bucket key, its encoded prediction, when it was logged and
    the source it came from (an integer tag: the monitor's per-version window, ``-1`` for none).
    When more than ``max_pending`` wait, the oldest are evicted; those older than ``ttl_s``
    expire. A bounded memory of recently resolved ids (labelled, expired, evicted) tells a
    duplicate or a too-late label from an id never seen.

    A label whose id was never seen may have overtaken its prediction (a deployer hands
    predictions to the monitor from a background thread). :meth:`hold` keeps such *early*
    labels, at most ``max_pending`` of them for at most ``early_ttl_s`` seconds, and
    :meth:`pop_early` gives them back when the prediction is logged. A repeated early label
    for the same id is remembered as a repeat of the first (the first wins, as for labels that
    come after their prediction). An early label that expires or is pushed out counts as
    ``labels_unknown``, with its repeats.

    Examples
    --------
    >>> p = PendingLabels(max_pending=2, ttl_s=None)
    >>> p.add(["a", "b", "c"], np.array([0, 0, 0]), np.array([1.0, 0.0, 1.0]), np.zeros(3))
    >>> [i for i, _, _, _ in p.take(["a", "c", "c", "zz"])]
    [1]
    >>> p.counts["labels_evicted"], p.counts["labels_duplicate"], p.counts["labels_unknown"]
    (1, 1, 1)
    >>> p.hold(["x", "x", "y"], [1, 0, 0], now=0.0)
    0
    >>> p.pop_early(["x", "q"])
    (['x'], [1], 1)
    >>> p.expire_early(now=1_000.0)
    >>> p.counts["labels_unknown"], len(p.early)
    (2, 0)
    """

    def __init__(self, max_pending: int, ttl_s: float | None, early_ttl_s: float = 60.0) -> None:
        self.max_pending = max_pending
        self.ttl_s = ttl_s
        self.early_ttl_s = early_ttl_s
        self.pending: dict[Any, tuple[int, float, float, int]] = {}
        self.resolved: dict[Any, int] = {}
        # id -> (label, when it arrived, repeated labels for the id since), oldest first
        self.early: dict[Any, tuple[Any, float, int]] = {}
        self.counts: dict[str, int] = dict.fromkeys(LABEL_COUNTERS, 0)

    def __len__(self) -> int:
        return len(self.pending)

    def add(
        self,
        ids: list[Any],
        keys: np.ndarray,
        codes: np.ndarray,
        times: np.ndarray,
        source: int = -1,
    ) -> None:
        """Remember predictions by id (a repeated id replaces the older prediction)."""
        skip = max(0, len(ids) - self.max_pending)
        if skip:  # only the newest max_pending of a huge batch could ever stay
            self.counts["predictions_evicted"] += skip
            self._resolve(ids[skip - min(skip, self.max_pending) : skip], EVICTED)
        pending = self.pending
        dup = 0
        for i, key, code, t in zip(
            ids[skip:],
            keys[skip:].tolist(),
            codes[skip:].tolist(),
            times[skip:].tolist(),
            strict=True,
        ):
            if i in pending:
                dup += 1
                del pending[i]  # re-inserted last, so eviction order stays by age
            pending[i] = (key, code, t, source)
        self.counts["predictions_duplicate_id"] += dup
        overflow = len(pending) - self.max_pending
        if overflow > 0:
            old = list(itertools.islice(pending, overflow))
            for i in old:
                del pending[i]
            self.counts["predictions_evicted"] += overflow
            self._resolve(old, EVICTED)

    def expire(self, now: float) -> None:
        """Forget predictions older than the time-to-live."""
        if self.ttl_s is None or not self.pending:
            return
        cutoff = now - self.ttl_s
        old = []
        for i, (_, _, t, _) in self.pending.items():
            if t >= cutoff:
                break
            old.append(i)
        for i in old:
            del self.pending[i]
        self.counts["predictions_expired"] += len(old)
        self._resolve(old, EXPIRED)

    def take(
        self, ids: list[Any], unseen: list[int] | None = None
    ) -> list[tuple[int, int, float, int]]:
        """Pop the pending predictions of ``ids``: ``(position, key, code, source)`` of matches.

        Positions of ids never seen go to ``unseen`` when it is given (to be held as early
        labels); otherwise they count as ``labels_unknown``.
        """
        found = []
        pending, resolved, counts = self.pending, self.resolved, self.counts
        for pos, i in enumerate(ids):
            hit = pending.pop(i, None)
            if hit is not None:
                found.append((pos, hit[0], hit[1], hit[3]))
                resolved.pop(i, None)
                resolved[i] = LABELLED
                continue
            reason = resolved.get(i)
            if reason == LABELLED:
                counts["labels_duplicate"] += 1
            elif reason == EXPIRED:
                counts["labels_expired"] += 1
            elif reason == EVICTED:
                counts["labels_evicted"] += 1
            elif unseen is not None:
                unseen.append(pos)
            else:
                counts["labels_unknown"] += 1
        self._resolve([], LABELLED)  # trims the memory of resolved ids to its bound
        return found

    def hold(self, ids: list[Any], labels: list[Any], now: float) -> int:
        """Keep labels that came before their prediction; return how many of them were dropped.

        Past ``max_pending`` early labels the oldest are dropped, and counted as
        ``labels_unknown`` (those of earlier calls too; only this call's are returned).
        """
        early, counts = self.early, self.counts
        if self.early_ttl_s <= 0:  # no early buffer: unknown at once
            counts["labels_unknown"] += len(ids)
            return len(ids)
        n_old = len(early)
        for i, label in zip(ids, labels, strict=True):
            held = early.get(i)
            if held is None:
                early[i] = (label, now, 0)  # new ids go last; a repeat keeps its place
            else:
                early[i] = (held[0], held[1], held[2] + 1)
        overflow = len(early) - self.max_pending
        if overflow <= 0:
            return 0
        for i in list(itertools.islice(early, overflow)):
            counts["labels_unknown"] += 1 + early.pop(i)[2]
        return max(0, overflow - n_old)  # the oldest go first: this call's past the older

    def expire_early(self, now: float) -> None:
        """Count early labels that waited longer than ``early_ttl_s`` as ``labels_unknown``."""
        early = self.early
        if not early:
            return
        cutoff = now - self.early_ttl_s
        old = []
        for i, (_, t, _) in early.items():
            if t >= cutoff:
                break
            old.append(i)
        for i in old:
            self.counts["labels_unknown"] += 1 + early.pop(i)[2]

    def pop_early(self, ids: list[Any]) -> tuple[list[Any], list[Any], int]:
        """The early labels of ``ids``, removed: their ids, their labels, and their repeats."""
        early = self.early
        hits: list[Any] = []
        labels: list[Any] = []
        repeats = 0
        if not early:
            return hits, labels, repeats
        for i in ids:
            held = early.pop(i, None)
            if held is not None:
                hits.append(i)
                labels.append(held[0])
                repeats += held[2]
        return hits, labels, repeats

    def mark_labelled(self, ids: list[Any]) -> None:
        """Remember ids whose label came with the prediction (a later label is a duplicate)."""
        self._resolve(ids[-self.max_pending :], LABELLED)

    def _resolve(self, ids: list[Any], reason: int) -> None:
        resolved = self.resolved
        for i in ids:
            resolved.pop(i, None)
            resolved[i] = reason
        overflow = len(resolved) - self.max_pending
        if overflow > 0:
            for i in list(itertools.islice(resolved, overflow)):
                del resolved[i]
