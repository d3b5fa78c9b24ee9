"""The Monitor: windowed quality metrics, delayed labels, drift, latency, errors and alerts."""

from __future__ import annotations

import datetime as dt
import io
import itertools
import json
import logging
import math
import os
import threading
import time
import warnings
from collections import deque
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from modeldeploy._config import (
    DEFAULT_DRIFT_P_VALUE,
    DEFAULT_LABEL_TTL_S,
    DEFAULT_MAX_CLASSES,
    DEFAULT_MAX_PENDING_LABELS,
    DEFAULT_MONITOR_BUCKETS,
    DEFAULT_MONITOR_HISTORY,
    DEFAULT_MONITOR_MIN_DRIFT_SAMPLES,
    DEFAULT_MONITOR_MIN_SAMPLES,
    DEFAULT_MONITOR_WINDOW,
    DEFAULT_PSI_BINS,
    DEFAULT_PSI_THRESHOLD,
    DEFAULT_SKETCH_BINS,
)
from modeldeploy._validation import check_choice, check_float, check_int
from modeldeploy.exceptions import DriftWarning, InvalidParameterError, SchemaError
from modeldeploy.monitoring.drift import (
    DriftResult,
    FeatureDrift,
    ReferenceProfile,
    compare_categories,
)
from modeldeploy.monitoring.estimation import ProbabilityCalibrator, expected_confusion
from modeldeploy.monitoring.metrics import (
    AVERAGES,
    LATENCY_EDGES,
    BucketRing,
    PendingLabels,
    classification_metrics,
    latency_percentiles,
    merge_regression,
    regression_metrics,
    regression_stats,
)
from modeldeploy.monitoring.report import Report
from modeldeploy.registry.signature import Signature

__all__ = ["Alert", "Monitor"]

logger = logging.getLogger("modeldeploy.monitoring")

_OWNER = "Monitor"
_STATE_FORMAT = 1
_BUFFER_ROWS = 1024  # single-row calls are buffered and folded in vectorized
# One-row calls (a scalar prediction) are buffered and folded in vectorized: a Python call per
# row cannot afford numpy's per-call overhead.
_SCALARS = frozenset(
    {int, float, bool, str, np.int64, np.int32, np.float64, np.float32, np.bool_, np.str_}
)
_LUT_LIMIT = 4096
_CLASS_METRICS = ("accuracy", "precision", "recall", "f1")
_AVERAGED = tuple(f"{m}_{a}" for a in ("macro", "weighted", "micro") for m in _CLASS_METRICS[1:])
_LOWER_IS_BETTER = frozenset(
    {"mae", "mse", "rmse", "error_rate", "latency_p50", "latency_p95", "latency_p99"}
)
_HIGHER_IS_BETTER = frozenset(
    {*_CLASS_METRICS, *_AVERAGED, "r2", *(f"estimated_{m}" for m in _CLASS_METRICS)}
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
    at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.timezone.utc))
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


class Monitor:
    """Watch a deployed model: windowed metrics, delayed labels, drift, latency, errors, alerts.

    Parameters
    ----------
    signature
        The model's input :class:`~modeldeploy.Signature`; its reference profile is the drift
        baseline (20 quantile bins per numeric feature, category counts otherwise).
    reference
        Raw reference rows (a training sample) to fit a finer drift sketch from, once; used
        instead of the signature's profile. The rows are not kept.
    reference_predictions
        Model outputs on reference rows, the baseline of prediction drift. Without it the first
        ``window`` predictions logged (at most 100,000) become that baseline.
    reference_proba, reference_labels
        Probabilities and true labels of reference rows, to calibrate the performance estimate.
    window
        Count-based window: the number of most recent predictions (an int). Time-based window: a
        :class:`datetime.timedelta`.
    buckets
        Buckets the window is split into; it slides one bucket at a time.
    task
        ``"classification"``, ``"regression"``, or ``"auto"``: regression when the first
        predictions are floats and no probabilities come with them.
    classes
        Class labels in the column order of ``y_proba`` (a classifier's ``classes_``). Needed for
        the performance estimate; otherwise classes are learned as they appear.
    pos_label
        Positive class of a binary task (default ``1``, or the largest label when 1 is not one).
    average
        What ``precision``, ``recall`` and ``f1`` report: ``"binary"`` (default for two
        classes), ``"macro"`` (default otherwise), ``"weighted"`` or ``"micro"``. Every variant
        is also reported under its own name (``f1_macro``, ...).
    thresholds
        Alert thresholds: a metric name to a bound (a minimum for quality metrics such as
        ``f1`` or ``r2``, a maximum for ``mae``, ``rmse``, ``error_rate`` and ``latency_p99``),
        and ``"drift"``: ``"psi"`` (the default), ``"ks"`` (test-based: KS for numeric
        features, chi-squared for categorical ones and class predictions) or ``None``, with
        ``"psi"`` (default 0.25) and ``"p_value"`` (default 0.01) as the drift thresholds.
    on_alert
        A callable, or a list of them, called with each :class:`Alert` (exceptions are logged).
    min_samples
        Rows a metric needs behind it before it may alert: labelled rows for quality metrics,
        rows for estimates, latency and error rate.
    min_drift_samples
        Rows the window needs before drift may alert (PSI over 10-20 bins is noisy below a
        thousand rows or so).
    max_pending, label_ttl_s
        Bounds on predictions waiting for a label: how many, and for how long (seconds, or
        ``None`` for no time limit).
    sketch_bins, psi_bins
        Resolution of the sketch fitted from ``reference``: quantile bins for KS, and for PSI.
    max_classes
        Most distinct class labels tracked.
    name
        A name for logs, alerts and reports (``Monitor.for_version`` uses the version's ``ref``).
    clock
        Returns the time in seconds since the epoch (for tests).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(1000, 2))
    >>> mon = Monitor(reference=X, window=1000, thresholds={"f1": 0.8, "drift": "ks"})
    >>> mon.log_predictions(X + [0.0, 0.5], X[:, 0] > 0, y_true=X[:, 0] > 0.1)
    >>> round(mon.metrics()["f1"], 3)
    0.977
    >>> mon.drift().drifted
    ['x1']
    """

    def __init__(
        self,
        *,
        signature: Signature | None = None,
        reference: Any = None,
        reference_predictions: Any = None,
        reference_proba: Any = None,
        reference_labels: Any = None,
        window: int | dt.timedelta = DEFAULT_MONITOR_WINDOW,
        buckets: int = DEFAULT_MONITOR_BUCKETS,
        task: str = "auto",
        classes: Sequence[Any] | None = None,
        pos_label: Any = None,
        average: str | None = None,
        thresholds: Mapping[str, Any] | None = None,
        on_alert: AlertCallback | Sequence[AlertCallback] | None = None,
        min_samples: int = DEFAULT_MONITOR_MIN_SAMPLES,
        min_drift_samples: int = DEFAULT_MONITOR_MIN_DRIFT_SAMPLES,
        max_pending: int = DEFAULT_MAX_PENDING_LABELS,
        label_ttl_s: float | None = DEFAULT_LABEL_TTL_S,
        sketch_bins: int = DEFAULT_SKETCH_BINS,
        psi_bins: int = DEFAULT_PSI_BINS,
        max_classes: int = DEFAULT_MAX_CLASSES,
        name: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.signature = signature
        self.window = window
        self.buckets = check_int(buckets, "buckets", _OWNER, min_value=1)
        self.task = check_choice(task, "task", _OWNER, ("auto", "classification", "regression"))
        self.classes = None if classes is None else list(classes)
        self.pos_label = pos_label
        self.average = (
            None if average is None else check_choice(average, "average", _OWNER, AVERAGES)
        )
        self.min_samples = check_int(min_samples, "min_samples", _OWNER, min_value=1)
        self.min_drift_samples = check_int(
            min_drift_samples, "min_drift_samples", _OWNER, min_value=1
        )
        self.max_pending = check_int(max_pending, "max_pending", _OWNER, min_value=1)
        self.label_ttl_s = (
            None
            if label_ttl_s is None
            else check_float(label_ttl_s, "label_ttl_s", _OWNER, min_value=0, min_inclusive=False)
        )
        self.sketch_bins = check_int(sketch_bins, "sketch_bins", _OWNER, min_value=2)
        self.psi_bins = check_int(psi_bins, "psi_bins", _OWNER, min_value=2)
        self.max_classes = check_int(max_classes, "max_classes", _OWNER, min_value=2)
        self.name = name
        self._clock = clock
        if isinstance(window, dt.timedelta):
            seconds = window.total_seconds()
            if seconds <= 0:
                raise InvalidParameterError(
                    f"The 'window' parameter of Monitor must be an int >= 1 or a positive "
                    f"timedelta. Got {window!r} instead."
                )
            self._bucket_size = 0
            self._bucket_s = seconds / self.buckets
            self._window_rows = DEFAULT_MONITOR_WINDOW
        else:
            rows = check_int(window, "window", _OWNER, min_value=1)
            if rows < self.buckets:
                raise InvalidParameterError(
                    f"The 'window' parameter of Monitor must be at least 'buckets' "
                    f"({self.buckets}). Got {rows!r} instead."
                )
            self._bucket_size = rows // self.buckets
            self._bucket_s = 0.0
            self._window_rows = rows
        self._parse_thresholds(thresholds)
        if on_alert is None:
            self._callbacks: list[AlertCallback] = []
        elif callable(on_alert):
            self._callbacks = [on_alert]
        else:
            self._callbacks = list(on_alert)

        self._lock = threading.RLock()
        self._ring = BucketRing(self.buckets)
        for arr, tail, dtype in (
            ("n_pred", (), np.int64),
            ("n_err", (), np.int64),
            ("n_proba", (), np.int64),
            ("latency", (LATENCY_EDGES.size + 1,), np.int64),
        ):
            self._ring.add_array(arr, tail, dtype)
        self._labels = PendingLabels(self.max_pending, self.label_ttl_s)
        self._seq = 0
        self._last_key = -1
        self._since_check = 0
        self._n_errors_total = 0
        self._error_types: dict[str, int] = {}
        self._versions: dict[str, int] = {}
        self._buffer: list[tuple[Any, ...]] = []
        self._outbox: list[Alert] = []
        self._breached: set[str] = set()
        self._history: deque[dict[str, float]] = deque(maxlen=DEFAULT_MONITOR_HISTORY)
        self._recent_alerts: deque[Alert] = deque(maxlen=100)
        self._task: str | None = None if self.task == "auto" else self.task
        self._class_list: list[Any] = []
        self._class_index: dict[Any, int] = {}
        self._lut = np.zeros(0, dtype=np.int64)
        self._ref_pred_counts = np.zeros(0, dtype=np.float64)
        self._pred_profile: ReferenceProfile | None = None
        self._pred_reference_rows: list[np.ndarray] = []
        self._pred_reference_ready = False
        self._calibrator: ProbabilityCalibrator | None = None

        self._profile: ReferenceProfile | None = None
        if reference is not None:
            ref_sig = Signature.infer(reference, allow_nan=True)
            if self.signature is None:
                self.signature = ref_sig
            elif self.signature.names != ref_sig.names and ref_sig.input_type == "dataframe":
                raise SchemaError(
                    f"The 'reference' columns {ref_sig.names} differ from the signature's "
                    f"{self.signature.names}. Pass reference rows with the registered columns."
                )
            self._profile = ReferenceProfile.from_data(
                ref_sig.validate(reference), ref_sig, bins=self.sketch_bins, psi_bins=self.psi_bins
            )
        elif self.signature is not None:
            empty = [f.name for f in self.signature.features if not f.profile.get("count")]
            if empty:
                warnings.warn(
                    f"The signature has no reference profile for {empty[:8]}; drift of those "
                    "features compares against nothing and never alerts. Register the model "
                    "with a sample, or pass reference=X_train.",
                    DriftWarning,
                    stacklevel=2,
                )
            self._profile = ReferenceProfile.from_signature(self.signature)
        if self._profile is not None:
            n_features = len(self._profile.sketches)
            self._ring.add_array("features", (n_features, self._profile.width), np.int64)
        if self.classes is not None:
            self._task = self._task or "classification"
            for c in self.classes:
                self._class_code(_scalar(c))
        if reference_predictions is not None:
            self._set_prediction_reference(np.asarray(reference_predictions).ravel())
        if reference_proba is not None:
            if reference_labels is None or self.classes is None:
                raise InvalidParameterError(
                    "The 'reference_proba' parameter of Monitor needs 'reference_labels' and "
                    "'classes' (the column order of the probabilities). Got "
                    f"reference_labels={'None' if reference_labels is None else '...'}, "
                    f"classes={self.classes!r} instead."
                )
            codes = self._encode(np.asarray(reference_labels).ravel())
            self._calibrator = ProbabilityCalibrator(np.asarray(reference_proba), codes)

    # ------------------------------------------------------------------ construction helpers

    @classmethod
    def for_version(cls, model_version: Any, **kwargs: Any) -> Monitor:
        """A monitor for a registered :class:`~modeldeploy.ModelVersion`.

        Drift is measured against the version's signature profile, the monitor is named after
        ``model_version.ref``, and a classifier's ``classes_`` (read from the loaded model) give
        the column order of ``y_proba``. Other keyword arguments go to :class:`Monitor`.

        Examples
        --------
        >>> import numpy as np
        >>> from types import SimpleNamespace
        >>> X = np.arange(20.0).reshape(10, 2)
        >>> v = SimpleNamespace(signature=Signature.infer(X), ref="demo:1", load=lambda: None)
        >>> Monitor.for_version(v, window=100).name
        'demo:1'
        """
        kwargs.setdefault("signature", getattr(model_version, "signature", None))
        kwargs.setdefault("name", getattr(model_version, "ref", None))
        if "classes" not in kwargs or "task" not in kwargs:
            try:
                model = model_version.load()
            except Exception:  # the monitor works without the model; it only reads metadata
                logger.debug("could not load %s to read its classes", kwargs["name"])
                model = None
            if model is not None:
                from sklearn.base import is_classifier, is_regressor

                if "task" not in kwargs and is_regressor(model):
                    kwargs["task"] = "regression"
                elif "classes" not in kwargs and is_classifier(model):
                    found = getattr(model, "classes_", None)
                    if found is not None:
                        kwargs["classes"] = list(np.asarray(found).tolist())
        return cls(**kwargs)

    def _parse_thresholds(self, thresholds: Mapping[str, Any] | None) -> None:
        given = dict(thresholds or {})
        known = sorted(_LOWER_IS_BETTER | _HIGHER_IS_BETTER | _DRIFT_KEYS)
        unknown = [k for k in given if k not in known]
        if unknown:
            raise InvalidParameterError(
                f"The 'thresholds' parameter of Monitor has unknown keys {unknown}. Known keys: "
                f"{known}."
            )
        method = given.pop("drift", "psi")
        if method is not None:
            check_choice(method, "thresholds['drift']", _OWNER, ("psi", "ks"))
        self._drift_method: str | None = method
        self._psi_threshold = check_float(
            given.pop("psi", DEFAULT_PSI_THRESHOLD), "thresholds['psi']", _OWNER, min_value=0
        )
        self._p_threshold = check_float(
            given.pop("p_value", DEFAULT_DRIFT_P_VALUE),
            "thresholds['p_value']",
            _OWNER,
            min_value=0,
            max_value=1,
        )
        self._metric_thresholds = {
            k: check_float(v, f"thresholds[{k!r}]", _OWNER) for k, v in given.items()
        }
        self.thresholds = {
            **self._metric_thresholds,
            "drift": method,
            "psi": self._psi_threshold,
            "p_value": self._p_threshold,
        }

    # ------------------------------------------------------------------ logging

    def log_predictions(
        self,
        X: Any,
        y_pred: Any,
        *,
        ids: Any = None,
        y_proba: Any = None,
        y_true: Any = None,
        version: str | None = None,
        latency_s: float | None = None,
    ) -> None:
        """Record one scored batch (this is what a deployer given ``monitor=`` calls).

        Parameters
        ----------
        X
            The features (validated against the signature when there is one), or ``None``.
        y_pred
            The predictions, one per row.
        ids
            Request ids, to match labels given later to :meth:`log_labels`.
        y_proba
            ``(n_rows, n_classes)`` class probabilities, for the performance estimate.
        y_true
            Labels known at prediction time.
        version
            The model version that answered (``"churn:3"``).
        latency_s
            How long the batch took, in seconds (one observation per call).

        Raises
        ------
        SchemaError
            When the lengths disagree or ``X`` does not match the signature.
        """
        t = self._clock()
        kind = type(y_pred)
        if kind in _SCALARS or (kind is np.ndarray and y_pred.size == 1):
            with self._lock:
                buf = self._buffer
                buf.append((X, y_pred, ids, y_proba, y_true, version, latency_s, t))
                if len(buf) < _BUFFER_ROWS:
                    return
                self._flush()
        else:
            with self._lock:
                self._flush()
                self._ingest(X, y_pred, ids, y_proba, y_true, version, [latency_s], [t], None)
        self._dispatch()

    def log_labels(self, ids: Any, y_true: Any) -> dict[str, int]:
        """Attach labels that arrived later to the predictions logged with these ids.

        Each label lands in the window bucket of its prediction; one whose bucket has left the
        window is counted as late and dropped.

        Returns
        -------
        dict
            Counts for this call: ``matched``, ``late``, ``duplicate``, ``unknown``,
            ``expired`` and ``evicted`` (see :meth:`label_stats` for the running totals).
        """
        id_list = _as_list(ids)
        values = np.asarray(y_true).ravel()
        if len(id_list) != values.shape[0]:
            raise SchemaError(
                f"log_labels got {len(id_list)} ids but {values.shape[0]} labels; pass one label "
                "per id."
            )
        with self._lock:
            self._flush()
            self._labels.expire(self._clock())
            before = dict(self._labels.counts)
            found = self._labels.take(id_list)
            self._apply_labels(found, values)
            after = self._labels.counts
            out = {
                k.removeprefix("labels_"): after[k] - before[k]
                for k in after
                if k.startswith("labels_")
            }
            self._since_check += len(found)
            if self._since_check >= self._check_every:
                self._check()
        self._dispatch()
        return out

    def log_error(self, error: BaseException, *, version: str | None = None) -> None:
        """Record one failed request (counted in the window's ``error_rate``)."""
        with self._lock:
            self._flush()
            key = max(self._current_key(), 0)
            slot = self._ring.slot(key)
            if slot is not None:
                self._ring.arrays["n_err"][slot] += 1
            self._n_errors_total += 1
            kind = type(error).__name__
            if kind in self._error_types or len(self._error_types) < 50:
                self._error_types[kind] = self._error_types.get(kind, 0) + 1
            if version is not None:
                self._count_version(version, 0)
        logger.debug("%s: error logged (%s: %s)", self.name or "monitor", kind, error)

    def flush(self) -> None:
        """Fold buffered single-row calls in now (every read does this itself)."""
        with self._lock:
            self._flush()
        self._dispatch()

    # ------------------------------------------------------------------ reading

    def metrics(self) -> dict[str, float]:
        """The current window's metrics.

        Classification: ``accuracy``, ``precision``, ``recall``, ``f1`` (per ``average``) and
        their ``_macro`` / ``_weighted`` / ``_micro`` variants; regression: ``mae``, ``mse``,
        ``rmse``, ``r2``. Always: ``n_predictions``, ``n_labelled``, ``error_rate``,
        ``latency_p50`` / ``_p95`` / ``_p99`` (seconds). With probabilities: ``estimated_*``,
        the performance estimated before labels (see :mod:`modeldeploy.monitoring.estimation`).
        A metric without data is ``nan``.
        """
        with self._lock:
            self._flush()
            out = self._metrics()
        self._dispatch()
        return out

    def drift(self) -> DriftResult:
        """Drift of each feature and of the predictions in the current window."""
        with self._lock:
            self._flush()
            out = self._drift()
        self._dispatch()
        return out

    def label_stats(self) -> dict[str, int]:
        """Running counts of the delayed-label bookkeeping.

        ``pending`` (waiting now), ``predictions_duplicate_id``, ``predictions_evicted`` (over
        ``max_pending``), ``predictions_expired`` (older than ``label_ttl_s``),
        ``labels_matched``, ``labels_late`` (their bucket had left the window),
        ``labels_duplicate``, ``labels_unknown``, ``labels_expired``, ``labels_evicted``.
        """
        with self._lock:
            self._flush()
            self._labels.expire(self._clock())
            return {"pending": len(self._labels), **self._labels.counts}

    def check(self) -> list[Alert]:
        """Evaluate every threshold now; return the alerts this raised (also sent as usual).

        The monitor checks by itself each time its window slides by a bucket.
        """
        with self._lock:
            self._flush()
            self._check()
            fired = list(self._outbox)
        self._dispatch()
        return fired

    @property
    def alerts(self) -> list[Alert]:
        """The most recent alerts (at most 100), oldest first."""
        with self._lock:
            return list(self._recent_alerts)

    def report(self) -> Report:
        """A snapshot of the monitor's state: metrics, drift, labels, errors, history."""
        with self._lock:
            self._flush()
            metrics = self._metrics()
            drift = self._drift()
            data = {
                "name": self.name,
                "generated_at": dt.datetime.now(dt.timezone.utc).isoformat(),
                "task": self._task,
                "window": self._window_description(),
                "metrics": metrics,
                "drift": drift.to_dict(),
                "thresholds": dict(self.thresholds),
                "labels": {"pending": len(self._labels), **self._labels.counts},
                "errors": {"total": self._n_errors_total, "by_type": dict(self._error_types)},
                "versions": dict(self._versions),
                "rows_logged": self._seq,
                "alerts": [a.to_dict() for a in self._recent_alerts],
                "history": [dict(p) for p in self._history],
            }
        self._dispatch()
        return Report(data)

    def __repr__(self) -> str:
        with self._lock:
            self._flush()
            rows = self._seq
        name = f"{self.name!r}, " if self.name else ""
        return (
            f"Monitor({name}{self._task or 'task not known yet'}, window="
            f"{self._window_description()}, {rows} rows logged)"
        )

    def _repr_html_(self) -> str:
        return self.report()._repr_html_()

    # ------------------------------------------------------------------ internals: ingest

    @property
    def _check_every(self) -> int:
        return self._bucket_size or 1_000

    def _window_description(self) -> str:
        if self._bucket_size:
            return f"{self._window_rows} rows in {self.buckets} buckets"
        return f"{self._bucket_s * self.buckets:g} s in {self.buckets} buckets"

    def _current_key(self) -> int:
        if self._bucket_size:
            return (self._seq - 1) // self._bucket_size if self._seq else -1
        return max(int(self._clock() // self._bucket_s), self._last_key)

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
        id_list = None if ids is None else _as_list(ids)
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
        if classify:
            pred_codes = self._encode(pred)
            true_codes = None if truth is None else self._encode(truth)
            if proba is not None and self._calibrator is not None:
                proba = self._calibrator.transform(proba)
        else:
            pred_codes = pred.astype(np.float64)
            true_codes = None if truth is None else truth.astype(np.float64)
        if self._task == "regression" and "reg" not in self._ring.arrays:
            self._ring.add_array("reg", (5,), np.float64)
        if not self._pred_reference_ready:
            self._collect_prediction_reference(pred)
            pred_drift_from = n  # these rows are the reference, not the current window
        else:
            pred_drift_from = 0

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
                    int(keys[a]), a, b, Xv, pred_codes, true_codes, proba, pred_drift_from
                )
        slot = self._ring.slot(last)
        if slot is not None:
            lat = [v for v in latencies if v is not None]
            if lat:
                idx = np.searchsorted(LATENCY_EDGES, np.asarray(lat, dtype=np.float64), "right")
                np.add.at(self._ring.arrays["latency"][slot], idx, 1)
        if id_list is not None:
            self._labels.expire(call_times[-1])
            if truth is None:
                row_times = times if times is not None else np.full(n, call_times[-1])
                self._labels.add(
                    id_list[live_from:],
                    keys[live_from:],
                    pred_codes[live_from:],
                    row_times[live_from:],
                )
                if live_from:
                    self._labels.counts["predictions_evicted"] += live_from
            else:
                self._labels.mark_labelled(id_list)
        self._seq += n
        self._last_key = last
        if version is not None:
            self._count_version(version, n)
        self._since_check += n
        if rolled or self._since_check >= self._check_every:
            self._check()

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
    ) -> None:
        ring = self._ring
        s = ring.slot(key)
        if s is None:  # pragma: no cover - keys only move forward
            return
        arrays = ring.arrays
        arrays["n_pred"][s] += b - a
        if Xv is not None and self._profile is not None:
            arrays["features"][s] += self._profile.bin(Xv[a:b])
        if self._task == "classification":
            k = arrays["pred"].shape[1]
            codes = pred[a:b].astype(np.int64)
            if b > pred_drift_from:
                arrays["pred"][s] += np.bincount(codes[max(0, pred_drift_from - a) :], minlength=k)
            if truth is not None:
                flat = truth[a:b].astype(np.int64) * k + codes
                arrays["conf"][s] += np.bincount(flat, minlength=k * k).reshape(k, k)
            if proba is not None and self.classes is not None and proba.shape[1] <= k:
                arrays["expected"][s] += expected_confusion(codes, proba[a:b], k)
                arrays["n_proba"][s] += b - a
        else:
            if truth is not None:
                arrays["reg"][s] = merge_regression(
                    arrays["reg"][s], regression_stats(truth[a:b], pred[a:b])
                )
            if self._pred_profile is not None and b > pred_drift_from:
                values = pred[max(a, pred_drift_from) : b].reshape(-1, 1)
                arrays["pred_hist"][s] += self._pred_profile.bin(values)[0]

    def _apply_labels(self, found: list[tuple[int, int, float]], values: np.ndarray) -> None:
        if not found:
            return
        pos = np.asarray([f[0] for f in found], dtype=np.int64)
        keys = np.asarray([f[1] for f in found], dtype=np.int64)
        preds = np.asarray([f[2] for f in found])
        current = self._current_key()
        classify = self._task == "classification"
        truth = self._encode(values[pos]) if classify else values[pos].astype(np.float64)
        matched = late = 0
        for key in np.unique(keys).tolist():
            sel = keys == key
            slot = self._ring.lookup(key)
            if slot is None or key <= current - self.buckets:
                late += int(sel.sum())
                continue
            matched += int(sel.sum())
            arrays = self._ring.arrays
            if classify:
                k = arrays["conf"].shape[1]
                flat = truth[sel].astype(np.int64) * k + preds[sel].astype(np.int64)
                arrays["conf"][slot] += np.bincount(flat, minlength=k * k).reshape(k, k)
            else:
                arrays["reg"][slot] = merge_regression(
                    arrays["reg"][slot], regression_stats(truth[sel], preds[sel].astype(float))
                )
        self._labels.counts["labels_matched"] += matched
        self._labels.counts["labels_late"] += late

    def _encode(self, values: np.ndarray) -> np.ndarray:
        """Class labels to class indices, registering new classes."""
        if values.size == 0:
            return np.zeros(0, dtype=np.int64)
        if values.dtype.kind in "biu" and self._lut.size:
            ints = values.astype(np.int64, copy=False)
            if ints.min() >= 0 and ints.max() < self._lut.size:
                codes = self._lut[ints]
                if codes.min() >= 0:
                    return codes
        try:
            uniq, inverse = np.unique(values, return_inverse=True)
        except TypeError:  # mixed types that do not sort
            return np.asarray([self._class_code(_scalar(v)) for v in values], dtype=np.int64)
        codes = np.asarray([self._class_code(u) for u in uniq.tolist()], dtype=np.int64)
        return codes[inverse.ravel()]

    def _class_code(self, label: Any) -> int:
        code = self._class_index.get(label)
        if code is not None:
            return code
        if len(self._class_list) >= self.max_classes:
            raise SchemaError(
                f"More than max_classes={self.max_classes} distinct labels; the new one is "
                f"{label!r}. If the model is a regressor pass task='regression', else raise "
                "max_classes."
            )
        self._task = self._task or "classification"
        code = len(self._class_list)
        self._class_list.append(label)
        self._class_index[label] = code
        if isinstance(label, int) and 0 <= label < _LUT_LIMIT:
            # Small non-negative int labels (the common case) encode by table lookup.
            if label >= self._lut.size:
                table = np.full(max(label + 1, 2 * self._lut.size, 8), -1, dtype=np.int64)
                table[: self._lut.size] = self._lut
                self._lut = table
            self._lut[int(label)] = code  # int(): a bool index would mask, not index
        k = len(self._class_list)
        ring = self._ring
        if "conf" not in ring.arrays:
            cap = max(2, k)
            ring.add_array("conf", (cap, cap), np.int64)
            ring.add_array("expected", (cap, cap), np.float64)
            ring.add_array("pred", (cap,), np.int64)
        cap = ring.arrays["pred"].shape[1]
        if k > cap:
            cap = min(max(2 * cap, k), self.max_classes)
            ring.resize("conf", (cap, cap))
            ring.resize("expected", (cap, cap))
            ring.resize("pred", (cap,))
        if self._ref_pred_counts.size < cap:
            grown = np.zeros(cap)
            grown[: self._ref_pred_counts.size] = self._ref_pred_counts
            self._ref_pred_counts = grown
        return code

    def _collect_prediction_reference(self, pred: np.ndarray) -> None:
        self._pred_reference_rows.append(pred)
        have = sum(p.shape[0] for p in self._pred_reference_rows)
        if have >= min(self._window_rows, 100_000):
            rows = np.concatenate(self._pred_reference_rows)
            self._pred_reference_rows = []
            self._set_prediction_reference(rows)
            logger.info(
                "%s: the first %d predictions are the reference for prediction drift",
                self.name or "monitor",
                rows.shape[0],
            )

    def _set_prediction_reference(self, rows: np.ndarray) -> None:
        if self._task is None:
            self._task = "regression" if rows.dtype.kind in "fc" else "classification"
        if self._task == "classification":
            counts = np.bincount(self._encode(rows))
            grown = np.zeros(max(self._ref_pred_counts.size, counts.size))
            grown[: counts.size] = counts
            self._ref_pred_counts = grown
        else:
            self._pred_profile = ReferenceProfile.from_predictions(
                rows, numeric=True, bins=self.sketch_bins, psi_bins=self.psi_bins
            )
            self._ring.add_array("pred_hist", (self._pred_profile.width,), np.int64)
        self._pred_reference_ready = True

    def _count_version(self, version: str, n: int) -> None:
        if version in self._versions or len(self._versions) < 100:
            self._versions[version] = self._versions.get(version, 0) + n

    # ------------------------------------------------------------------ internals: reading

    def _metrics(self) -> dict[str, float]:
        ring = self._ring
        cur = self._current_key()
        n_pred = int(ring.total("n_pred", cur))
        n_err = int(ring.total("n_err", cur))
        out: dict[str, float] = {}
        n_labelled = 0
        if self._task == "classification" and "conf" in ring.arrays:
            cm = ring.total("conf", cur)
            n_labelled = int(cm.sum())
            average, pos = self._average_and_pos()
            out.update(classification_metrics(cm, average=average, pos_index=pos))
            n_proba = int(ring.total("n_proba", cur))
            if n_proba:
                est = classification_metrics(
                    ring.total("expected", cur), average=average, pos_index=pos
                )
                out.update({f"estimated_{m}": est[m] for m in _CLASS_METRICS})
        elif self._task == "regression" and "reg" in ring.arrays:
            acc = np.zeros(5)
            for row in ring.arrays["reg"][ring.active(cur)]:
                acc = merge_regression(acc, row)
            n_labelled = int(acc[0])
            out.update(regression_metrics(acc))
        out["n_predictions"] = n_pred
        out["n_labelled"] = n_labelled
        out["error_rate"] = n_err / (n_pred + n_err) if n_pred + n_err else math.nan
        out.update(latency_percentiles(ring.total("latency", cur)))
        return out

    def _average_and_pos(self) -> tuple[str, int | None]:
        k = len(self._class_list)
        average = self.average or ("binary" if k <= 2 else "macro")
        if average != "binary":
            return average, None
        if k > 2:
            raise InvalidParameterError(
                f"average='binary' needs at most two classes, but the monitor has seen {k}: "
                f"{self._class_list[:10]}. Use average='macro', 'weighted' or 'micro'."
            )
        label = self.pos_label
        if label is None:
            classes = self._class_list
            numeric = all(isinstance(c, (int, float)) for c in classes)
            if 1 in self._class_index or (numeric and len(classes) < 2):
                label = 1  # scikit-learn's default pos_label
            else:
                try:
                    label = sorted(classes)[-1]
                except TypeError:
                    label = classes[-1]
        return "binary", self._class_code(_scalar(label))

    def _drift(self) -> DriftResult:
        method = self._drift_method or "psi"
        cur = self._current_key()
        psi_t, p_t, n_min = self._psi_threshold, self._p_threshold, self.min_drift_samples
        if self._profile is not None:
            result = self._profile.compare(
                self._ring.total("features", cur),
                method=method,
                psi_threshold=psi_t,
                p_threshold=p_t,
                min_samples=n_min,
            )
        else:
            result = DriftResult([], None, method=method, n_current=0)
        prediction: FeatureDrift | None = None
        if self._task == "classification" and self._pred_reference_ready:
            k = len(self._class_list)
            current = self._ring.total("pred", cur)[:k]
            prediction = compare_categories(
                "prediction",
                self._ref_pred_counts[:k],
                current,
                method=method,
                psi_threshold=psi_t,
                p_threshold=p_t,
                min_samples=n_min,
            )
        elif self._pred_profile is not None:
            counts = self._ring.total("pred_hist", cur).reshape(1, -1)
            prediction = self._pred_profile.compare(
                counts, method=method, psi_threshold=psi_t, p_threshold=p_t, min_samples=n_min
            )["prediction"]
        result.prediction = prediction
        if not result.n_current:
            result.n_current = int(self._ring.total("n_pred", cur))
        return result

    # ------------------------------------------------------------------ internals: alerts

    def _check(self) -> None:
        """Evaluate thresholds; never let a failure here break the logging that triggered it."""
        self._since_check = 0
        try:
            self._evaluate()
        except Exception:
            logger.exception("%scould not evaluate the alert thresholds", self._label())

    def _evaluate(self) -> None:
        m = self._metrics()
        point = {"time": self._clock(), "rows": float(self._seq)}
        point.update({k: v for k, v in m.items() if isinstance(v, float) and math.isfinite(v)})
        samples = {
            "labelled": int(m["n_labelled"]),
            "predictions": int(m["n_predictions"]),
            "estimated": int(self._ring.total("n_proba", self._current_key())),
        }
        for key, bound in self._metric_thresholds.items():
            value = m.get(key, math.nan)
            if key.startswith("estimated_"):
                n = samples["estimated"]
            elif key in _LOWER_IS_BETTER:
                n = samples["predictions"]
            else:
                n = samples["labelled"]
            if not math.isfinite(value) or n < self.min_samples:
                continue
            higher = key in _HIGHER_IS_BETTER
            breached = value < bound if higher else value > bound
            verb = "fell to" if higher else "rose to"
            if self._transition(f"metric:{key}", breached):
                self._emit(
                    Alert(
                        "metric",
                        key,
                        value,
                        bound,
                        n,
                        f"{self._label()}{key} {verb} {value:.4g} over the last {n} rows "
                        f"(threshold {bound:g}).",
                        self.name,
                    )
                )
        if self._drift_method is not None:
            drift = self._drift()
            rows = list(drift.values())
            if drift.prediction is not None:
                rows.append(drift.prediction)
            point["drifted"] = float(sum(f.drifted for f in rows))
            psis = [f.psi for f in rows if math.isfinite(f.psi)]
            if psis:
                point["max_psi"] = max(psis)
            for f in rows:
                if f.n_current < self.min_drift_samples:
                    continue
                if self._transition(f"drift:{f.feature}", f.drifted):
                    self._emit(self._drift_alert(f))
        self._history.append(point)

    def _drift_alert(self, f: FeatureDrift) -> Alert:
        if f.method == "psi":
            value, bound = f.psi, self._psi_threshold
            what = f"PSI {f.psi:.3f} > {bound:g}"
        else:
            value, bound = f.p_value, self._p_threshold
            what = f"{f.test} p-value {f.p_value:.3g} < {bound:g} (statistic {f.statistic:.4g})"
        return Alert(
            "drift",
            f.feature,
            value,
            bound,
            f.n_current,
            f"{self._label()}{f.feature!r} drifted from its reference: {what} over "
            f"{f.n_current} rows.",
            self.name,
            details=f.to_dict(),
        )

    def _label(self) -> str:
        return f"{self.name}: " if self.name else ""

    def _transition(self, key: str, breached: bool) -> bool:
        """Debounce: True only when a breach starts; a recovery re-arms the alert."""
        if breached and key not in self._breached:
            self._breached.add(key)
            return True
        if not breached and key in self._breached:
            self._breached.discard(key)
            logger.info("%s%s recovered", self._label(), key)
        return False

    def _emit(self, alert: Alert) -> None:
        self._outbox.append(alert)
        self._recent_alerts.append(alert)

    def _dispatch(self) -> None:
        with self._lock:
            if not self._outbox:
                return
            alerts, self._outbox = self._outbox, []
        for alert in alerts:
            logger.warning("alert: %s", alert.message)
            for callback in self._callbacks:
                try:
                    callback(alert)
                except Exception:
                    logger.exception("on_alert callback %r failed", callback)

    # ------------------------------------------------------------------ persistence

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Save the monitor's state (windows, sketches, pending labels) to one ``.npz`` file.

        The file holds counts and sketches, never raw rows; it is written atomically. Callbacks
        are not saved: pass ``on_alert=`` to :meth:`load`.
        """
        with self._lock:
            self._flush()
            meta = self._state_meta()
            arrays = {f"ring_{k}": v for k, v in self._ring.arrays.items()}
            arrays["ring_keys"] = self._ring.keys
            arrays["ref_pred_counts"] = self._ref_pred_counts
            arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
            blob = io.BytesIO()
            np.savez_compressed(blob, allow_pickle=False, **arrays)
        target = Path(path)
        tmp = target.with_name(f".{target.name}.tmp")
        with open(tmp, "wb") as fh:
            fh.write(blob.getvalue())
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
        return target

    def _state_meta(self) -> dict[str, Any]:
        pending = [[i, k, c, t] for i, (k, c, t) in self._labels.pending.items() if _jsonable(i)]
        return {
            "format": _STATE_FORMAT,
            "params": {
                "window": (
                    {"seconds": self._bucket_s * self.buckets}
                    if not self._bucket_size
                    else {"rows": self._window_rows}
                ),
                "buckets": self.buckets,
                "task": self.task,
                "classes": self.classes,
                "pos_label": _scalar(self.pos_label),
                "average": self.average,
                "thresholds": self.thresholds,
                "min_samples": self.min_samples,
                "min_drift_samples": self.min_drift_samples,
                "max_pending": self.max_pending,
                "label_ttl_s": self.label_ttl_s,
                "sketch_bins": self.sketch_bins,
                "psi_bins": self.psi_bins,
                "max_classes": self.max_classes,
                "name": self.name,
            },
            "signature": None if self.signature is None else self.signature.to_dict(),
            "profile": None if self._profile is None else self._profile.to_dict(),
            "pred_profile": None if self._pred_profile is None else self._pred_profile.to_dict(),
            "pred_reference_rows": [r.tolist() for r in self._pred_reference_rows],
            "pred_reference_ready": self._pred_reference_ready,
            "calibrator": None if self._calibrator is None else self._calibrator.to_dict(),
            "task": self._task,
            "class_list": self._class_list,
            "seq": self._seq,
            "last_key": self._last_key,
            "errors": {"total": self._n_errors_total, "by_type": self._error_types},
            "versions": self._versions,
            "breached": sorted(self._breached),
            "history": list(self._history),
            "alerts": [a.to_dict() for a in self._recent_alerts],
            "pending": pending,
            "resolved": [[i, r] for i, r in self._labels.resolved.items() if _jsonable(i)],
            "label_counts": self._labels.counts,
        }

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        *,
        on_alert: AlertCallback | Sequence[AlertCallback] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> Monitor:
        """Rebuild a monitor saved with :meth:`save`, with its windows and pending labels."""
        with np.load(Path(path), allow_pickle=False) as data:
            meta = json.loads(data["meta"].tobytes().decode())
            arrays = {k[5:]: data[k] for k in data.files if k.startswith("ring_")}
            ref_pred_counts = np.asarray(data["ref_pred_counts"])
        if meta.get("format") != _STATE_FORMAT:
            raise InvalidParameterError(
                f"{path} is not a Monitor state file of format {_STATE_FORMAT} (got "
                f"{meta.get('format')!r}). Save it again with Monitor.save."
            )
        p = dict(meta["params"])
        window = p.pop("window")
        p["window"] = (
            window["rows"] if "rows" in window else dt.timedelta(seconds=window["seconds"])
        )
        sig = None if meta["signature"] is None else Signature.from_dict(meta["signature"])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DriftWarning)  # it warned when first built
            mon = cls(signature=sig, on_alert=on_alert, clock=clock, **p)
        mon._profile = (
            None if meta["profile"] is None else ReferenceProfile.from_dict(meta["profile"])
        )
        if meta["pred_profile"] is not None:
            mon._pred_profile = ReferenceProfile.from_dict(meta["pred_profile"])
        mon._pred_reference_rows = [np.asarray(r) for r in meta["pred_reference_rows"]]
        mon._pred_reference_ready = bool(meta["pred_reference_ready"])
        if meta["calibrator"] is not None:
            mon._calibrator = ProbabilityCalibrator.from_dict(meta["calibrator"])
        mon._task = meta["task"]
        for c in (_scalar(c) for c in meta["class_list"]):
            mon._class_code(c)
        mon._ring.keys = np.asarray(arrays.pop("keys"), dtype=np.int64)
        mon._ring.arrays = {k: np.array(v) for k, v in arrays.items()}
        mon._ref_pred_counts = ref_pred_counts.astype(np.float64)
        mon._seq = int(meta["seq"])
        mon._last_key = int(meta["last_key"])
        mon._n_errors_total = int(meta["errors"]["total"])
        mon._error_types = dict(meta["errors"]["by_type"])
        mon._versions = dict(meta["versions"])
        mon._breached = set(meta["breached"])
        mon._history.extend(meta["history"])
        mon._labels.pending = {_key(i): (int(k), c, float(t)) for i, k, c, t in meta["pending"]}
        mon._labels.resolved = {_key(i): int(r) for i, r in meta["resolved"]}
        mon._labels.counts.update(meta["label_counts"])
        for a in meta["alerts"]:
            a = dict(a)
            a["at"] = dt.datetime.fromisoformat(a["at"])
            mon._recent_alerts.append(Alert(**a))
        return mon


# ---------------------------------------------------------------------- module helpers


def _scalar(value: Any) -> Any:
    """A numpy scalar as the equal Python scalar (dict keys and JSON)."""
    return value.item() if isinstance(value, np.generic) else value


def _key(value: Any) -> Hashable:
    return tuple(value) if isinstance(value, list) else value


def _jsonable(value: Any) -> bool:
    return isinstance(value, (str, int, float, bool)) or value is None


def _as_list(ids: Any) -> list[Any]:
    if isinstance(ids, np.ndarray):
        return list(ids.ravel().tolist())
    if isinstance(ids, (str, bytes, int, np.generic)):
        return [_scalar(ids)]
    if hasattr(ids, "tolist"):  # pandas Series / Index
        return list(ids.tolist())
    return [_scalar(i) for i in ids]


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
        return _scalar(value[0])
    return _scalar(value)
