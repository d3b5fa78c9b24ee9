"""Change points in the error stream: *when* a model's errors changed, from mergeable counts.

Two parts. [`ErrorHistory`][modeldeploy.monitoring.ErrorHistory] is state: per window bucket, the
number of labelled predictions, the sum of their losses (0/1 for a classifier, the absolute error
for a regressor), the sum of squared losses and when the bucket's first prediction was served.
Counts add, so the histories of many replicas merge exactly
([`ErrorHistory.merge`][modeldeploy.monitoring.ErrorHistory.merge]), and a fleet view detects
changes the way one monitor does. [`ChangeDetector`][modeldeploy.monitoring.ChangeDetector] is the
test, run over a history when it is read: ADWIN's cut test (Bifet & Gavaldà, "Learning from
time-changing data with adaptive windowing", SDM 2007) at the bucket boundaries. ADWIN keeps a
window of the stream and drops its older part while some cut splits it into two parts whose means
differ by more than

    eps = sqrt(2 / m * var * ln(2 / d)) + 2 / (3 m) * ln(2 / d),

with ``m`` the harmonic mean of the two parts' sizes, ``var`` the variance over the window
and ``d = delta / ln(n)``. What is left starts at the change: the
[`ChangePoint`][modeldeploy.monitoring.ChangePoint] says when that was, the error rate before and
after, and over how many labelled rows.

The bucket boundaries are the only cuts, so the change is dated to the bucket it began in
(a tenth of the monitor's window by default), and the test costs microseconds per read.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import numpy as np

from modeldeploy import _validation as val

__all__ = ["ChangeDetector", "ChangePoint", "ErrorHistory"]

_OWNER = "ChangeDetector"


@dataclass(frozen=True)
class ChangePoint:
    """What a [`ChangeDetector`][modeldeploy.monitoring.ChangeDetector] found: the start of the
    current regime of the errors.

    Attributes
    ----------
    detected
        Whether a change was found in the history.
    start
        When the first prediction of the bucket the change began in was served (UTC), or
        ``None``.
    increase
        Whether the errors rose (the model got worse) at the change.
    before, after
        The mean loss (the error rate of a classifier) before and since the change; with no
        change, ``after`` is the mean over the whole history and ``before`` is ``None``.
    n_before, n_after
        Labelled predictions before and since the change (in the history).
    bound
        The smallest difference the cut test would call a change at that cut (``eps``).
    previous
        When the last bucket *before* the change began (``None`` if unknown): the errors were
        still at their old level for the predictions served from then until ``start``.
    """

    detected: bool
    start: datetime | None = None
    increase: bool = False
    before: float | None = None
    after: float | None = None
    n_before: int = 0
    n_after: int = 0
    bound: float | None = None
    previous: datetime | None = None

    def __bool__(self) -> bool:
        return self.detected

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict."""
        return {
            "detected": self.detected,
            "start": None if self.start is None else self.start.isoformat(),
            "increase": self.increase,
            "before": self.before,
            "after": self.after,
            "n_before": self.n_before,
            "n_after": self.n_after,
            "bound": self.bound,
            "previous": None if self.previous is None else self.previous.isoformat(),
        }

    def __repr__(self) -> str:
        if not self.detected:
            return f"ChangePoint(none over {self.n_after:,} labelled rows)"
        assert self.start is not None
        return (
            f"ChangePoint({'rise' if self.increase else 'fall'} {self.before:.4g} -> "
            f"{self.after:.4g} since {self.start:%Y-%m-%d %H:%M:%S}Z, {self.n_after:,} rows after)"
        )


class ErrorHistory:
    """Per-bucket loss counts of labelled predictions: the state a
    [`ChangeDetector`][modeldeploy.monitoring.ChangeDetector] reads. Bounded to the ``max_buckets``
    most recent buckets; counts add, so histories merge.

    Examples
    --------
    >>> import numpy as np
    >>> h = ErrorHistory(max_buckets=4)
    >>> h.open(0, 0.0); h.open(1, 60.0)
    >>> h.add(np.array([0, 0, 1]), np.array([0.0, 1.0, 1.0]))
    >>> h.totals()
    (3, 2.0)
    """

    def __init__(self, max_buckets: int = 64) -> None:
        self.max_buckets = val.check_int(max_buckets, "max_buckets", "ErrorHistory", min_value=2)
        # key -> [first served (epoch s, nan when unknown), n, sum of losses, sum of squares]
        self._buckets: dict[int, list[float]] = {}

    def __len__(self) -> int:
        return len(self._buckets)

    def __repr__(self) -> str:
        n, total = self.totals()
        mean = total / max(n, 1)
        return f"ErrorHistory({len(self)} buckets, {n:,} labelled rows, mean loss {mean:.4g})"

    def open(self, key: int, served: float) -> None:
        """Note that bucket ``key`` got a prediction served at ``served`` (epoch seconds)."""
        row = self._row(key)
        if row is not None and not served >= row[0]:  # nan compares False: take the time
            row[0] = served

    def add(self, keys: np.ndarray, losses: np.ndarray) -> None:
        """Count labelled predictions: ``losses[i]`` of a prediction in bucket ``keys[i]``."""
        if keys.size == 0:
            return
        lo, hi = int(keys.min()), int(keys.max())
        if lo == hi:  # the usual batch: one bucket, no sort
            losses = np.asarray(losses, dtype=np.float64)
            row = self._row(lo)
            if row is not None:
                row[1] += keys.size
                row[2] += float(np.add.reduce(losses))
                row[3] += float(np.add.reduce(losses * losses))
            return
        order = np.argsort(keys, kind="stable")
        keys, losses = keys[order], np.asarray(losses, dtype=np.float64)[order]
        uniq, starts = np.unique(keys, return_index=True)
        n = np.diff(np.append(starts, keys.size))
        s = np.add.reduceat(losses, starts)
        ss = np.add.reduceat(losses * losses, starts)
        for k, c, a, b in zip(uniq.tolist(), n.tolist(), s.tolist(), ss.tolist(), strict=True):
            row = self._row(int(k))
            if row is not None:
                row[1] += c
                row[2] += a
                row[3] += b

    def _row(self, key: int) -> list[float] | None:
        row = self._buckets.get(key)
        if row is not None:
            return row
        if len(self._buckets) >= self.max_buckets and key < min(self._buckets):
            return None  # older than everything kept: it would be dropped at once
        row = self._buckets[key] = [math.nan, 0.0, 0.0, 0.0]
        while len(self._buckets) > self.max_buckets:
            del self._buckets[min(self._buckets)]
        return row

    def merge(self, other: ErrorHistory) -> ErrorHistory:
        """A new history holding both (counts added per bucket, the earliest serving time)."""
        out = ErrorHistory(max(self.max_buckets, other.max_buckets))
        for source in (self, other):
            for key, (t, n, s, ss) in sorted(source._buckets.items()):
                row = out._row(key)
                if row is None:
                    continue
                if not t >= row[0]:
                    row[0] = t if not math.isnan(t) else row[0]
                row[1] += n
                row[2] += s
                row[3] += ss
        return out

    def totals(self) -> tuple[int, float]:
        """Labelled rows and the sum of their losses, over the history."""
        n = sum(r[1] for r in self._buckets.values())
        return int(n), float(sum(r[2] for r in self._buckets.values()))

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(served, n, sum, sum_sq)`` of the buckets with labels, oldest first."""
        rows = [self._buckets[k] for k in sorted(self._buckets) if self._buckets[k][1] > 0]
        if not rows:
            empty = np.zeros(0)
            return empty, empty, empty, empty
        a = np.asarray(rows, dtype=np.float64)
        return a[:, 0], a[:, 1], a[:, 2], a[:, 3]

    def to_state(self) -> dict[str, Any]:
        """JSON-friendly state (see
        [`from_state`][modeldeploy.monitoring.ErrorHistory.from_state])."""
        return {
            "max_buckets": self.max_buckets,
            "buckets": [[k, *v] for k, v in sorted(self._buckets.items())],
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> ErrorHistory:
        """Rebuild a history saved with
        [`to_state`][modeldeploy.monitoring.ErrorHistory.to_state]."""
        out = cls(int(state["max_buckets"]))
        for k, t, n, s, ss in state["buckets"]:
            out._buckets[int(k)] = [
                math.nan if t is None else float(t),
                float(n),
                float(s),
                float(ss),
            ]
        return out


@dataclass(frozen=True)
class ChangeDetector:
    """ADWIN's cut test over the bucketed error counts of an
    [`ErrorHistory`][modeldeploy.monitoring.ErrorHistory].

    Parameters
    ----------
    delta
        Confidence of the test: the smaller, the fewer false alarms and the later the
        detection (ADWIN's ``delta``; river's default is 0.002).
    min_samples
        Labelled rows each side of a cut needs before the cut is tested.
    max_buckets
        Buckets of history the monitor keeps for the test (each a window bucket of the
        monitor: with the default window of 5,000 rows in 10 buckets, 64 buckets are 32,000
        labelled rows).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> h = ErrorHistory()
    >>> for key in range(20):  # 500 labelled rows a minute; errors rise from 10% to 25%
    ...     h.open(key, 60.0 * key)
    ...     h.add(np.full(500, key), rng.random(500) < (0.10 if key < 12 else 0.25))
    >>> change = ChangeDetector().detect(h)
    >>> change.increase, change.start.minute, change.n_after
    (True, 12, 4000)
    """

    delta: float = 0.002
    min_samples: int = 100
    max_buckets: int = 64

    def __post_init__(self) -> None:
        val.check_float(
            self.delta, "delta", _OWNER, min_value=0.0, max_value=1.0, min_inclusive=False
        )
        val.check_int(self.min_samples, "min_samples", _OWNER, min_value=1)
        val.check_int(self.max_buckets, "max_buckets", _OWNER, min_value=2)

    def history(self) -> ErrorHistory:
        """An empty history of the size this detector reads."""
        return ErrorHistory(self.max_buckets)

    def detect(self, history: ErrorHistory) -> ChangePoint:
        """The most recent change in the history, found as ADWIN finds it: drop the older part
        at the most significant cut while one is significant; what is left is the current
        regime."""
        served, n, s, ss = history.arrays()
        found: tuple[int, int, float] | None = None  # (start index, cut index, bound)
        lo = 0
        before: tuple[float, float] = (math.nan, 0.0)
        while n.size - lo >= 2:
            cut = self._best_cut(n[lo:], s[lo:], ss[lo:])
            if cut is None:
                break
            index, bound = cut
            index += lo
            before = (float(s[lo:index].sum() / n[lo:index].sum()), float(n[lo:index].sum()))
            found = (lo, index, bound)
            lo = index
        n_after = float(n[lo:].sum())
        after = float(s[lo:].sum() / n_after) if n_after else None
        if found is None:
            return ChangePoint(False, after=after, n_after=int(n_after))
        _, index, bound = found
        t = served[index]
        if math.isnan(t):  # labels of a bucket whose predictions were never seen here
            known = served[index:][~np.isnan(served[index:])]
            t = float(known[0]) if known.size else math.nan
        start = None if math.isnan(t) else datetime.fromtimestamp(t, tz=timezone.utc)
        p = served[index - 1]
        previous = None if math.isnan(p) else datetime.fromtimestamp(p, tz=timezone.utc)
        assert after is not None
        return ChangePoint(
            True,
            start,
            increase=after > before[0],
            before=before[0],
            after=after,
            n_before=int(before[1]),
            n_after=int(n_after),
            bound=bound,
            previous=previous,
        )

    def _best_cut(self, n: np.ndarray, s: np.ndarray, ss: np.ndarray) -> tuple[int, float] | None:
        """The cut (index of the first bucket after it) whose two sides differ most beyond
        ADWIN's bound, with that bound; ``None`` when no cut does."""
        total = n.sum()
        if total < 2 * self.min_samples:
            return None
        mean = s.sum() / total
        var = max(ss.sum() / total - mean * mean, 0.0)
        n0 = np.cumsum(n)[:-1]
        s0 = np.cumsum(s)[:-1]
        n1 = total - n0
        ok = (n0 >= self.min_samples) & (n1 >= self.min_samples)
        if not ok.any():
            return None
        n0, n1, s0 = n0[ok], n1[ok], s0[ok]
        diff = np.abs(s0 / n0 - (s.sum() - s0) / n1)
        m = 1.0 / (1.0 / n0 + 1.0 / n1)
        log = math.log(2.0 * math.log(total) / self.delta)
        bound = np.sqrt(2.0 / m * var * log) + 2.0 / (3.0 * m) * log
        excess = diff - bound
        best = int(np.argmax(excess))
        if excess[best] <= 0:
            return None
        return int(np.flatnonzero(ok)[best]) + 1, float(bound[best])
