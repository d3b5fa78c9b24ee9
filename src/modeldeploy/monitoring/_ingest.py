"""Buffering one-row calls: a Python call per row cannot afford numpy's per-call overhead.

A deployer scoring one request at a time hands the monitor one row per call. `OneRowBuffer`
keeps those calls and gives them back as `Batch` es of calls that agree on what they
carry, so the monitor folds them in as vectorized batches.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import numpy as np

from modeldeploy.monitoring._coerce import scalar

__all__ = ["BUFFER_ROWS", "SCALARS", "Batch", "OneRowBuffer", "as_list"]

logger = logging.getLogger("modeldeploy.monitoring")

#: Single-row calls buffered before they are folded in together.
BUFFER_ROWS = 1024
#: Types of a one-row prediction, buffered rather than folded in one by one.
SCALARS = frozenset(
    {int, float, bool, str, np.int64, np.int32, np.float64, np.float32, np.bool_, np.str_}
)

#: One buffered call: ``(X, y_pred, ids, y_proba, y_true, version, latency_s, time)``.
Entry = tuple[Any, Any, Any, Any, Any, "str | None", "float | None", float]


class Batch(NamedTuple):
    """Rows logged together, as [`Monitor.log_predictions`][modeldeploy.Monitor.log_predictions]
    takes them.

    ``latencies`` holds one observation per call, ``call_times`` the time of each call, and
    ``times`` each row's time when the rows came from calls at different times (else ``None``:
    every row at the last call's time).
    """

    X: Any
    y_pred: Any
    ids: Any
    y_proba: Any
    y_true: Any
    version: str | None
    latencies: list[float | None]
    call_times: list[float]
    times: np.ndarray | None


class OneRowBuffer:
    """One-row calls waiting to be folded in together.

    Examples
    --------
    >>> buf = OneRowBuffer(limit=2)
    >>> buf.add((None, 1, "a", None, None, None, None, 0.0))
    False
    >>> buf.add((None, 0, "b", None, None, None, 0.01, 1.0))  # full: time to drain
    True
    >>> batches = []
    >>> buf.drain(batches.append)
    >>> batches[0].y_pred.tolist(), batches[0].ids, len(buf)
    ([1, 0], ['a', 'b'], 0)
    """

    def __init__(self, limit: int = BUFFER_ROWS, name: str | None = None) -> None:
        self.limit = limit
        self.name = name
        self._rows: list[Entry] = []

    def __len__(self) -> int:
        return len(self._rows)

    def add(self, entry: Entry) -> bool:
        """Keep one call; True when the buffer is full and should be drained."""
        rows = self._rows
        rows.append(entry)
        return len(rows) >= self.limit

    def drain(self, fold: Callable[[Batch], None]) -> None:
        """Hand every call kept to ``fold``, batched, in order; the buffer is empty after.

        A batch that ``fold`` refuses is handed over again one call at a time, so that one bad
        row does not lose the others; the calls refused alone are logged and dropped.
        """
        buf = self._rows
        if not buf:
            return
        self._rows = []
        patterns = [_pattern(entry) for entry in buf]
        start = 0
        for end in range(1, len(buf) + 1):
            if end < len(buf) and patterns[end] == patterns[start]:
                continue
            run = buf[start:end]
            start = end
            try:
                fold(_batch(run))
            except Exception:
                for entry in run:
                    try:
                        fold(_batch([entry]))
                    except Exception:
                        logger.exception("%s: dropped a one-row call", self.name or "monitor")


def as_list(ids: Any) -> list[Any]:
    """Ids as a list of Python scalars (from an array, a Series, a list, or one id)."""
    if isinstance(ids, np.ndarray):
        return list(ids.ravel().tolist())
    if isinstance(ids, (str, bytes, int, np.generic)):
        return [scalar(ids)]
    if hasattr(ids, "tolist"):  # pandas Series / Index
        return list(ids.tolist())
    return [scalar(i) for i in ids]


def _batch(run: list[Entry]) -> Batch:
    """Buffered one-row calls that agree on what they carry, as one batch."""
    n = len(run)
    X0, _, ids0, proba0, true0, version, _, _ = run[0]
    X: Any = None
    if X0 is not None:
        rows = [r[0] for r in run]
        mappings = all(isinstance(r, Mapping) for r in rows)
        X = rows if mappings else np.asarray(rows).reshape(n, -1)
    ids = None if ids0 is None else [_one(r[2]) for r in run]
    proba = None
    if proba0 is not None:
        proba = np.asarray([r[3] for r in run], dtype=np.float64).reshape(n, -1)
    y_true = None if true0 is None else _column([r[4] for r in run])
    call_times = [r[7] for r in run]
    return Batch(
        X,
        _column([r[1] for r in run]),
        ids,
        proba,
        y_true,
        version,
        [r[6] for r in run],
        call_times,
        np.asarray(call_times, dtype=np.float64),
    )


def _pattern(entry: Entry) -> tuple[Any, ...]:
    """What must agree for buffered calls to be folded in together."""
    return (entry[0] is None, entry[2] is None, entry[3] is None, entry[4] is None, entry[5])


def _column(values: list[Any]) -> np.ndarray:
    """One-row values (scalars, or one-element arrays) as a 1-D array."""
    try:
        arr = np.asarray(values)
        if arr.size == len(values) and arr.dtype != object:
            return arr.reshape(len(values))
    except ValueError:  # scalars mixed with one-element arrays
        pass
    return np.asarray([_one(v) for v in values])


def _one(value: Any) -> Any:
    """The single value of a one-row argument (a scalar, or a one-element array or list)."""
    if isinstance(value, np.ndarray):
        return value.reshape(-1)[0].item()
    if isinstance(value, (list, tuple)):
        return scalar(value[0])
    return scalar(value)
