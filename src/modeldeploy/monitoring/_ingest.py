"""Folding logged batches into a Monitor's windows: validation, encoding, bucket keys.

Single-row calls (a deployer scoring one request at a time) are buffered and folded in as one
vectorized batch, because a Python call per row cannot afford numpy's per-call overhead.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Mapping
from typing import Any

import numpy as np

from modeldeploy.exceptions import SchemaError
from modeldeploy.monitoring._coerce import class_kind, coerce_classes, to_numbers
from modeldeploy.monitoring._windows import WindowState, scalar
from modeldeploy.monitoring.estimation import expected_confusion
from modeldeploy.monitoring.metrics import (
    LATENCY_EDGES,
    BucketRing,
    merge_regression,
    regression_stats,
)

__all__ = ["BUFFER_ROWS", "SCALARS", "Ingestion", "as_list", "label_array"]

logger = logging.getLogger("modeldeploy.monitoring")

#: Single-row calls buffered before they are folded in together.
BUFFER_ROWS = 1024
#: Types of a one-row prediction, buffered rather than folded in one by one.
SCALARS = frozenset(
    {int, float, bool, str, np.int64, np.int32, np.float64, np.float32, np.bool_, np.str_}
)


class Ingestion(WindowState):
    """How logged batches reach the windows (a base of ``Monitor``, not for users)."""

    _buffer: list[tuple[Any, ...]]
    _since_check: int

    def _flush(self) -> None:
        buf = self._buffer
        if not buf:
            return
        self._buffer = []
        patterns = [_pattern(entry) for entry in buf]
        start = 0
        for end in range(1, len(buf) + 1):
            if end < len(buf) and patterns[end] == patterns[start]:
                continue
            run = buf[start:end]
            start = end
            try:
                self._ingest_run(run)
            except Exception:
                # Find the bad call(s) so that one bad row does not lose the others.
                for entry in run:
                    try:
                        self._ingest_run([entry])
                    except Exception:
                        logger.exception("%s: dropped a one-row call", self.name or "monitor")

    def _ingest_run(self, run: list[tuple[Any, ...]]) -> None:
        """Fold in buffered one-row calls that agree on what they carry, as one batch."""
        n = len(run)
        X0, _, ids0, proba0, true0, version, _, _ = run[0]
        X: Any = None
        if X0 is not None:
            rows = [r[0] for r in run]
            if all(isinstance(r, Mapping) for r in rows):
                X = rows
            else:
                X = np.asarray(rows).reshape(n, -1)
        ids = None if ids0 is None else [_one(r[2]) for r in run]
        proba = None
        if proba0 is not None:
            proba = np.asarray([r[3] for r in run], dtype=np.float64).reshape(n, -1)
        y_true = None if true0 is None else _column([r[4] for r in run])
        times = np.asarray([r[7] for r in run], dtype=np.float64)
        self._ingest(
            X,
            _column([r[1] for r in run]),
            ids,
            proba,
            y_true,
            version,
            [r[6] for r in run],
            [r[7] for r in run],
            times,
        )

    def _ingest(
        self,
        X: Any,
        y_pred: Any,
        ids: Any,
        y_proba: Any,
        y_true: Any,
        version: str | None,
        latencies: list[float | None],
        call_times: list[float],
        times: np.ndarray | None,
    ) -> None:
        pred = np.asarray(y_pred)
        if pred.ndim == 2 and pred.shape[1] == 1:
            pred = pred[:, 0]
        pred = np.atleast_1d(pred)
        if pred.ndim != 1:
            raise SchemaError(
                f"y_pred must hold one prediction per row (1-D); got shape {pred.shape}. "
                "Monitor one output at a time."
            )
        n = pred.shape[0]
        id_list = None if ids is None else as_list(ids)
        proba = None if y_proba is None else np.asarray(y_proba, dtype=np.float64)
        if proba is not None and proba.ndim == 1:
            proba = np.column_stack([1.0 - proba, proba])
        truth = None if y_true is None else np.atleast_1d(np.asarray(y_true)).ravel()
        for what, length in (
            ("ids", None if id_list is None else len(id_list)),
            ("y_proba", None if proba is None else proba.shape[0]),
            ("y_true", None if truth is None else truth.shape[0]),
        ):
            if length is not None and length != n:
                raise SchemaError(
                    f"log_predictions got {n} predictions but {length} {what}; pass one per row."
                )
        Xv = None
        if X is not None and self._profile is not None and self.signature is not None:
            Xv = self.signature.validate(X)
            if Xv.shape[0] != n:
                raise SchemaError(
                    f"log_predictions got {Xv.shape[0]} rows of X but {n} predictions; pass one "
                    "prediction per row."
                )
        if self._task is None:
            self._task = (
                "regression" if pred.dtype.kind in "fc" and proba is None else ("classification")
            )
        classify = self._task == "classification"
        # Labels and predictions are converted (or refused) before anything changes, so a
        # SchemaError leaves the monitor as it was.
        truth_missing: np.ndarray | None = None
        if classify:
            kind = self._class_kind() or class_kind(pred)
            pred_vals, pred_missing = coerce_classes(pred, kind, "y_pred")
            if truth is not None:
                truth_vals, truth_missing = coerce_classes(truth, kind, "y_true")
            pred_codes = self._encode_masked(pred_vals, pred_missing)
            true_codes = None if truth is None else self._encode_masked(truth_vals, truth_missing)
            if proba is not None and self._calibrator is not None:
                proba = self._calibrator.transform(proba)
            reference_rows = pred_vals if pred_missing is None else pred_vals[~pred_missing]
        else:
            pred_codes = to_numbers(pred, "y_pred")
            true_codes = None if truth is None else to_numbers(truth, "y_true")
            if true_codes is not None:
                bad = ~np.isfinite(true_codes)
                truth_missing = bad if bad.any() else None
            reference_rows = pred_codes[np.isfinite(pred_codes)]
        if self._task == "regression" and "reg" not in self._ring.arrays:
            self._ring.add_array("reg", (5,), np.float64)
        if not self._pred_reference_ready:
            self._collect_prediction_reference(reference_rows)
            pred_drift_from = n  # these rows are the reference, not the current window
        else:
            pred_drift_from = 0
        tag, vring = (-1, None) if version is None else self._version_window(version)

        if self._bucket_size:
            keys = (self._seq + np.arange(n, dtype=np.int64)) // self._bucket_size
        else:
            raw = np.floor(
                (times if times is not None else np.full(n, call_times[-1])) / self._bucket_s
            ).astype(np.int64)
            keys = np.maximum.accumulate(np.maximum(raw, self._last_key))
        last = int(keys[-1]) if n else max(self._last_key, 0)
        rolled = last != self._last_key
        live_from = 0
        if n and int(keys[0]) <= last - self.buckets:
            live_from = int(np.searchsorted(keys, last - self.buckets, side="right"))
        if n:
            cuts = np.flatnonzero(np.diff(keys[live_from:])) + 1 + live_from
            bounds = [live_from, *cuts.tolist(), n]
            for a, b in itertools.pairwise(bounds):
                self._add_segment(
                    int(keys[a]), a, b, Xv, pred_codes, true_codes, proba, pred_drift_from, vring
                )
        lat = [v for v in latencies if v is not None]
        if lat:
            idx = np.searchsorted(LATENCY_EDGES, np.asarray(lat, dtype=np.float64), "right")
            for ring in (self._ring,) if vring is None else (self._ring, vring):
                slot = ring.slot(last)
                if slot is not None:
                    np.add.at(ring.arrays["latency"][slot], idx, 1)
        n_missing = 0 if truth_missing is None else int(truth_missing.sum())
        if truth is not None:
            self._labels.counts["labels_total"] += n - n_missing
            self._labels.counts["labels_missing"] += n_missing
        if id_list is not None:
            self._labels.expire(call_times[-1])
            row_times = times if times is not None else np.full(n, call_times[-1])
            if truth is None:
                self._labels.add(
                    id_list[live_from:],
                    keys[live_from:],
                    pred_codes[live_from:],
                    row_times[live_from:],
                    tag,
                )
                if live_from:
                    self._labels.counts["predictions_evicted"] += live_from
            else:
                if truth_missing is not None:  # rows whose label is missing wait for one by id
                    rows = np.flatnonzero(truth_missing)
                    kept = rows[rows >= live_from]
                    self._labels.add(
                        [id_list[i] for i in kept.tolist()],
                        keys[kept],
                        pred_codes[kept],
                        row_times[kept],
                        tag,
                    )
                    self._labels.counts["predictions_evicted"] += rows.size - kept.size
                    flags = truth_missing.tolist()
                    labelled = [i for i, m in zip(id_list, flags, strict=True) if not m]
                else:
                    labelled = id_list
                self._labels.mark_labelled(labelled)
        self._seq += n
        self._last_key = last
        if version is not None:
            self._count_version(version, n)
        self._since_check += n
        if id_list is not None and self._labels.early:
            self._since_check += self._meet_early_labels(id_list, call_times[0])
        if rolled or self._since_check >= self._check_every:
            self._check()

    def _meet_early_labels(self, ids: list[Any], now: float) -> int:
        """Attach the labels that came before these predictions, as if they came just after.

        Called once the predictions are in their buckets, so each label lands in its
        prediction's bucket and version window. Returns how many were attached.
        """
        labels = self._labels
        labels.expire_early(now)
        hits, values, repeats = labels.pop_early(ids)
        if not hits:
            return 0
        labels.counts["labels_duplicate"] += repeats
        try:
            prepared, _ = self._prepare_labels(label_array(values))
        except SchemaError:
            # A label log_labels would have refused (a string for a regressor, "yes" for int
            # classes): the predictions are in already, so drop only the labels, and say so.
            logger.exception(
                "%s: dropped %d labels that came before their predictions",
                self.name or "monitor",
                len(hits),
            )
            return 0
        found = labels.take(hits)  # counts what is not pending (labelled with y_true=, ...)
        try:
            self._apply_labels(found, prepared)
        except Exception:
            # A class past max_classes: the predictions are in already, so drop only the
            # labels, and say so.
            logger.exception(
                "%s: dropped %d labels that came before their predictions",
                self.name or "monitor",
                len(found),
            )
            return 0
        labels.counts["labels_early"] += len(found)
        return len(found)

    def _add_segment(
        self,
        key: int,
        a: int,
        b: int,
        Xv: np.ndarray | None,
        pred: np.ndarray,
        truth: np.ndarray | None,
        proba: np.ndarray | None,
        pred_drift_from: int,
        vring: BucketRing | None,
    ) -> None:
        ring = self._ring
        s = ring.slot(key)
        if s is None:  # pragma: no cover - keys only move forward
            return
        # Quality counts go to the all-versions window and to the version's own one; drift
        # counts only to the former.
        targets = [(ring.arrays, s)]
        vs = None if vring is None else vring.slot(key)
        if vring is not None and vs is not None:
            targets.append((vring.arrays, vs))
        arrays = ring.arrays
        for arrs, t in targets:
            arrs["n_pred"][t] += b - a
        if Xv is not None and self._profile is not None:
            arrays["features"][s] += self._profile.bin(Xv[a:b])
        if self._task == "classification":
            k = arrays["pred"].shape[1]
            codes = pred[a:b].astype(np.int64)
            t_codes = None if truth is None else truth[a:b].astype(np.int64)
            if b > a and (codes.min() < 0 or (t_codes is not None and t_codes.min() < 0)):
                self._add_masked_segment(targets, s, codes, t_codes, proba, a, b, pred_drift_from)
                return
            if b > pred_drift_from:
                arrays["pred"][s] += np.bincount(codes[max(0, pred_drift_from - a) :], minlength=k)
            if t_codes is not None:
                flat = t_codes * k + codes
                cm = np.bincount(flat, minlength=k * k).reshape(k, k)
                for arrs, t in targets:
                    arrs["conf"][t] += cm
            if proba is not None and self.classes is not None and proba.shape[1] <= k:
                expected = expected_confusion(codes, proba[a:b], k)
                for arrs, t in targets:
                    arrs["expected"][t] += expected
                    arrs["n_proba"][t] += b - a
        else:
            p = pred[a:b]
            finite = np.isfinite(p)
            n_bad = b - a - int(np.count_nonzero(finite))
            if n_bad:
                for arrs, t in targets:
                    arrs["n_nan_pred"][t] += n_bad
            if truth is not None:
                y = truth[a:b]
                ok = finite & np.isfinite(y)
                acc = regression_stats(y, p) if ok.all() else regression_stats(y[ok], p[ok])
                for arrs, t in targets:
                    arrs["reg"][t] = merge_regression(arrs["reg"][t], acc)
            if self._pred_profile is not None and b > pred_drift_from:
                values = pred[max(a, pred_drift_from) : b].reshape(-1, 1)
                arrays["pred_hist"][s] += self._pred_profile.bin(values)[0]

    def _add_masked_segment(
        self,
        targets: list[tuple[dict[str, np.ndarray], int]],
        s: int,
        codes: np.ndarray,
        t_codes: np.ndarray | None,
        proba: np.ndarray | None,
        a: int,
        b: int,
        pred_drift_from: int,
    ) -> None:
        """:meth:`_add_segment` of class codes where some are ``-1``: a missing prediction
        (no answer: counted in ``n_nan_pred``, never scored) or a missing label (not scored)."""
        arrays = self._ring.arrays
        k = arrays["pred"].shape[1]
        valid = codes >= 0
        n_bad = b - a - int(np.count_nonzero(valid))
        if n_bad:
            for arrs, t in targets:
                arrs["n_nan_pred"][t] += n_bad
        if b > pred_drift_from:
            tail = codes[max(0, pred_drift_from - a) :]
            arrays["pred"][s] += np.bincount(tail[tail >= 0], minlength=k)
        if t_codes is not None:
            both = valid & (t_codes >= 0)
            cm = np.bincount((t_codes * k + codes)[both], minlength=k * k).reshape(k, k)
            for arrs, t in targets:
                arrs["conf"][t] += cm
        if proba is not None and self.classes is not None and proba.shape[1] <= k:
            expected = expected_confusion(codes[valid], proba[a:b][valid], k)
            for arrs, t in targets:
                arrs["expected"][t] += expected
                arrs["n_proba"][t] += b - a - n_bad


def as_list(ids: Any) -> list[Any]:
    if isinstance(ids, np.ndarray):
        return list(ids.ravel().tolist())
    if isinstance(ids, (str, bytes, int, np.generic)):
        return [scalar(ids)]
    if hasattr(ids, "tolist"):  # pandas Series / Index
        return list(ids.tolist())
    return [scalar(i) for i in ids]


def label_array(values: list[Any]) -> np.ndarray:
    """Labels kept one by one as a 1-D array (an object array when their types are mixed)."""
    arr = np.asarray(values)
    if arr.ndim != 1 or (arr.dtype.kind in "US" and not all(isinstance(v, str) for v in values)):
        arr = np.empty(len(values), dtype=object)
        arr[:] = values
    return arr


def _pattern(entry: tuple[Any, ...]) -> tuple[Any, ...]:
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
