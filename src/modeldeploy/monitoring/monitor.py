"""The Monitor: windowed quality metrics, delayed labels, drift, latency, errors and alerts.

The monitor is a facade over parts it holds, each owning its state: `Windows` (the
bucketed counts, over every version and per version), `Targets` (the task and the class
encoding), `PendingLabels` (the label join), `OneRowBuffer` (one-row calls
waiting to be folded in), `DriftReference` (the drift baselines) and `AlertBook`
(thresholds and debouncing). The monitor folds logged rows into them under one lock, and saves
and loads them through their ``to_state`` / ``from_state``.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import functools
import itertools
import logging
import math
import os
import threading
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from modeldeploy._clock import as_clock
from modeldeploy._config import (
    DEFAULT_EARLY_LABEL_TTL_S,
    DEFAULT_LABEL_TTL_S,
    DEFAULT_MAX_CLASSES,
    DEFAULT_MAX_PENDING_LABELS,
    DEFAULT_MONITOR_BUCKETS,
    DEFAULT_MONITOR_HISTORY,
    DEFAULT_MONITOR_MAX_VERSIONS,
    DEFAULT_MONITOR_MIN_DRIFT_SAMPLES,
    DEFAULT_MONITOR_MIN_SAMPLES,
    DEFAULT_MONITOR_WINDOW,
    DEFAULT_PSI_BINS,
    DEFAULT_SKETCH_BINS,
)
from modeldeploy._validation import check_choice, check_float, check_int
from modeldeploy.exceptions import DriftWarning, InvalidParameterError, MergeError, SchemaError
from modeldeploy.monitoring._coerce import class_kind, coerce_classes, scalar, to_numbers
from modeldeploy.monitoring._ingest import SCALARS, Batch, OneRowBuffer
from modeldeploy.monitoring._labels import PendingLabels, id_array, label_array
from modeldeploy.monitoring._persist import read_state, state_file_errors, write_state
from modeldeploy.monitoring._reference import DriftReference
from modeldeploy.monitoring._targets import Targets
from modeldeploy.monitoring._windows import Windows
from modeldeploy.monitoring.alerts import Alert, AlertBook, AlertCallback, Thresholds
from modeldeploy.monitoring.detectors import ChangeDetector, ChangePoint, ErrorHistory
from modeldeploy.monitoring.drift import DriftResult
from modeldeploy.monitoring.estimation import ProbabilityCalibrator
from modeldeploy.monitoring.metrics import AVERAGES, BucketRing, window_metrics
from modeldeploy.monitoring.report import Report
from modeldeploy.registry.signature import Signature
from modeldeploy.typing import Clock

# Alert is listed for examples/monitoring.py, which imports it from here; its home is alerts.py.
__all__ = ["Alert", "Monitor"]

logger = logging.getLogger("modeldeploy.monitoring")

_OWNER = "Monitor"
#: The counters ``log_labels`` reports for its own call (besides ``waiting``).
_CALL_COUNTS = tuple(
    f"labels_{k}" for k in ("matched", "late", "duplicate", "unknown", "expired", "evicted")
)
#: Predictions at most collected as the baseline of prediction drift.
_MAX_COLLECTED = 100_000


class _Snapshot(NamedTuple):
    """A copy of one monitor's state, taken under its lock, for
    [`Monitor.combine`][modeldeploy.Monitor.combine]."""

    params: dict[str, Any]
    signature: dict[str, Any] | None
    calibrator: dict[str, Any] | None
    latest: float
    task: str | None
    classes: list[Any]
    windows: Windows
    reference: DriftReference
    labels: PendingLabels
    detector: ChangeDetector
    errors: ErrorHistory


class Monitor:
    """Watch a deployed model: windowed metrics, delayed labels, drift, latency, errors, alerts.

    Parameters
    ----------
    signature
        The model's input [`Signature`][modeldeploy.Signature]; its reference profile is the drift
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
        `datetime.timedelta`.
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
        A callable, or a list of them, called with each [`Alert`][modeldeploy.Alert] (exceptions are
        logged).
    min_samples
        Rows a metric needs behind it before it may alert: labelled rows for quality metrics,
        rows for estimates, latency and error rate.
    min_drift_samples
        Rows the window needs before drift may alert (PSI over 10-20 bins is noisy below a
        thousand rows or so).
    max_pending, label_ttl_s
        Bounds on predictions waiting for a label: how many, and for how long (seconds, or
        ``None`` for no time limit). ``max_pending`` also bounds the labels waiting for their
        prediction (see ``early_label_ttl_s``).
    early_label_ttl_s
        How long a label whose id is not known yet waits for its prediction, in seconds
        (default 60). Deployers hand predictions over from a background thread, so a label
        logged right after ``predict`` may come first; when its prediction is logged within
        this time, the label is attached to it as if it had come after. Past it, the label
        counts as ``labels_unknown``. ``0`` counts such labels as unknown at once.
    sketch_bins, psi_bins
        Resolution of the sketch fitted from ``reference``: quantile bins for KS, and for PSI.
    max_classes
        Most distinct class labels tracked.
    max_versions
        Model versions whose rows get a window of their own (see
        [`metrics`][modeldeploy.Monitor.metrics]); when a new one arrives past this bound, the least
        recently seen is dropped.
    name
        A name for logs, alerts and reports (``Monitor.for_version`` uses the version's ``ref``).
    clock
        Where the monitor reads time (a [`Clock`][modeldeploy.typing.Clock], e.g.
        [`FakeClock`][modeldeploy.testing.FakeClock]): time windows, label TTLs, alert and report
        stamps. A bare callable returning epoch seconds (``time.time``) still works. Default:
        the system clock.

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
        early_label_ttl_s: float = DEFAULT_EARLY_LABEL_TTL_S,
        sketch_bins: int = DEFAULT_SKETCH_BINS,
        psi_bins: int = DEFAULT_PSI_BINS,
        max_classes: int = DEFAULT_MAX_CLASSES,
        max_versions: int = DEFAULT_MONITOR_MAX_VERSIONS,
        name: str | None = None,
        clock: Clock | Callable[[], float] | None = None,
        detector: ChangeDetector | None = None,
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
        self.early_label_ttl_s = check_float(
            early_label_ttl_s, "early_label_ttl_s", _OWNER, min_value=0
        )
        self.sketch_bins = check_int(sketch_bins, "sketch_bins", _OWNER, min_value=2)
        self.psi_bins = check_int(psi_bins, "psi_bins", _OWNER, min_value=2)
        self.max_classes = check_int(max_classes, "max_classes", _OWNER, min_value=2)
        self.max_versions = check_int(max_versions, "max_versions", _OWNER, min_value=1)
        self.name = name
        self.clock = as_clock(clock, _OWNER)
        if isinstance(window, dt.timedelta):
            seconds = window.total_seconds()
            if seconds <= 0:
                raise InvalidParameterError(
                    f"The 'window' parameter of Monitor must be an int >= 1 or a positive "
                    f"timedelta. Got {window!r} instead."
                )
            self._windows = Windows(
                buckets=self.buckets, seconds=seconds, max_versions=self.max_versions, name=name
            )
            collect_rows = DEFAULT_MONITOR_WINDOW
        else:
            rows = check_int(window, "window", _OWNER, min_value=1)
            if rows < self.buckets:
                raise InvalidParameterError(
                    f"The 'window' parameter of Monitor must be at least 'buckets' "
                    f"({self.buckets}). Got {rows!r} instead."
                )
            self._windows = Windows(
                buckets=self.buckets, rows=rows, max_versions=self.max_versions, name=name
            )
            collect_rows = rows
        self._thresholds = Thresholds.parse(thresholds, _OWNER)
        self.thresholds = self._thresholds.to_dict()
        if on_alert is None:
            callbacks: list[AlertCallback] = []
        elif callable(on_alert):
            callbacks = [on_alert]
        else:
            callbacks = list(on_alert)

        self._lock = threading.RLock()
        self._latest = -math.inf  # the latest time read (see _now)
        self._alerts = AlertBook(callbacks, name, clock=self.clock)
        self._history: deque[dict[str, float]] = deque(maxlen=DEFAULT_MONITOR_HISTORY)
        self._buffer = OneRowBuffer(name=name)
        self._since_check = 0
        self._labels = PendingLabels(self.max_pending, self.label_ttl_s, self.early_label_ttl_s)
        self._targets = Targets(
            None if self.task == "auto" else self.task, self.max_classes, self._fit_classes
        )
        self._reference = DriftReference(
            sketch_bins=self.sketch_bins,
            psi_bins=self.psi_bins,
            collect_rows=min(collect_rows, _MAX_COLLECTED),
            name=name,
        )
        self._calibrator: ProbabilityCalibrator | None = None
        self.detector = detector if detector is not None else ChangeDetector()
        self._errors = self.detector.history()
        self._init_references(reference, reference_predictions, reference_proba, reference_labels)

    def _init_references(
        self,
        reference: Any,
        reference_predictions: Any,
        reference_proba: Any,
        reference_labels: Any,
    ) -> None:
        """The drift baselines and the calibration of the performance estimate."""
        if reference is not None:
            self.signature = self._reference.fit_features(reference, self.signature)
        elif self.signature is not None:
            empty = self._reference.use_signature(self.signature)
            if empty:
                warnings.warn(
                    f"The signature has no reference profile for {empty[:8]}; drift of those "
                    "features compares against nothing and never alerts. Register the model "
                    "with a sample, or pass reference=X_train.",
                    DriftWarning,
                    stacklevel=3,
                )
        self._fit_features()
        if self.classes is not None:
            self._targets.settle("classification")
            for c in self.classes:
                self._targets.code(scalar(c))
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
            codes = self._targets.encode(np.asarray(reference_labels).ravel())
            self._calibrator = ProbabilityCalibrator(np.asarray(reference_proba), codes)

    # ------------------------------------------------------------------ construction helpers

    @classmethod
    def for_version(cls, model_version: Any, **kwargs: Any) -> Monitor:
        """A monitor for a registered [`ModelVersion`][modeldeploy.ModelVersion].

        Drift is measured against the version's signature profile, the monitor is named after
        ``model_version.ref``, and a classifier's ``classes_`` (read from the loaded model) give
        the column order of ``y_proba``. Other keyword arguments go to
        [`Monitor`][modeldeploy.Monitor].

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
        at: Any = None,
    ) -> None:
        """Record one scored batch (this is what a deployer given ``monitor=`` calls).

        Parameters
        ----------
        X
            The features (validated against the signature when there is one), or ``None``.
        y_pred
            The predictions, one per row.
        ids
            Request ids, to match labels given later to
            [`log_labels`][modeldeploy.Monitor.log_labels].
        y_proba
            ``(n_rows, n_classes)`` class probabilities, for the performance estimate.
        y_true
            Labels known at prediction time.
        version
            The model version that answered (``"churn:3"``).
        latency_s
            How long the batch took, in seconds (one observation per call).
        at
            Each row's time, for rows logged after the fact (captured predictions joined with
            their labels): aware datetimes, ``datetime64`` or epoch seconds, in time order. Rows
            go to the window buckets of their own times (never earlier than rows logged
            before). Default: now.

        Raises
        ------
        SchemaError
            When the lengths disagree or ``X`` does not match the signature.
        """
        times = None if at is None else _row_times(at)
        kind = type(y_pred)
        if times is None and (kind in SCALARS or (kind is np.ndarray and y_pred.size == 1)):
            with self._lock:
                entry = (X, y_pred, ids, y_proba, y_true, version, latency_s, self._now())
                if not self._buffer.add(entry):
                    return
                self._flush()
        else:
            with self._lock:
                self._flush()
                t = self._now()
                self._fold(Batch(X, y_pred, ids, y_proba, y_true, version, [latency_s], [t], times))
        self._dispatch()

    def log_labels(self, ids: Any, y_true: Any) -> dict[str, int]:
        """Attach labels that arrived later to the predictions logged with these ids.

        Each label lands in the window bucket of its prediction; one whose bucket has left the
        window is counted as late and dropped. A label whose id has not been logged yet waits
        up to ``early_label_ttl_s`` for its prediction (a deployer hands predictions over from
        a background thread, so they may come after the label) and is attached to it when it
        comes, in the same way.

        Returns
        -------
        dict
            Counts for this call: ``matched``, ``late``, ``duplicate``, ``unknown``,
            ``expired``, ``evicted``, and ``waiting`` (labels of ids not logged yet, now
            waiting for their prediction). See [`label_stats`][modeldeploy.Monitor.label_stats] for
            the running totals.

        Examples
        --------
        >>> mon = Monitor(window=100, thresholds={})
        >>> mon.log_labels(["a", "b"], [1, 0])["waiting"]  # before their predictions
        2
        >>> mon.log_predictions(None, [1, 1], ids=["a", "b"])
        >>> mon.metrics()["accuracy"], mon.label_stats()["labels_early"]
        (0.5, 2)
        """
        id_arr = id_array(ids)
        values = np.asarray(y_true).ravel()
        if id_arr.shape[0] != values.shape[0]:
            raise SchemaError(
                f"log_labels got {id_arr.shape[0]} ids but {values.shape[0]} labels; pass one "
                "label per id."
            )
        with self._lock:
            self._flush()
            now = self._now()
            labels = self._labels
            labels.expire(now)
            labels.expire_early(now)
            # Converted (or refused with a SchemaError) before anything changes.
            values, missing = self._targets.prepare_labels(values)
            n_missing = 0
            if missing is not None:  # no label for these ids yet: their predictions wait on
                n_missing = int(missing.sum())
                keep = np.flatnonzero(~missing)
                id_arr = id_arr[keep]
                values = values[keep]
            before = dict(labels.counts)
            pos, keys, preds, tags, unseen = labels.take_arrays(id_arr)
            self._apply_labels(pos, keys, preds, tags, values)
            labels.counts["labels_missing"] += n_missing
            after = labels.counts
            out = {k.removeprefix("labels_"): after[k] - before[k] for k in _CALL_COUNTS}
            dropped = 0
            if unseen.size:  # Python scalars, as JSON keeps them
                dropped = labels.hold(id_arr[unseen].tolist(), values[unseen].tolist(), now)
            out["unknown"] += dropped
            out["waiting"] = int(unseen.size) - dropped
            out["missing"] = n_missing
            self._since_check += int(pos.size)
            if self._since_check >= self._windows.check_every:
                self._check()
        self._dispatch()
        return out

    def log_error(self, error: BaseException, *, version: str | None = None) -> None:
        """Record one failed request (counted in the window's ``error_rate``)."""
        kind = type(error).__name__
        with self._lock:
            self._flush()
            key = max(self._current_key(), 0)
            self._windows.add_error(key, kind, version)
            if version is not None:
                self._windows.seen_at[version] = self._now()
        logger.debug("%s: error logged (%s: %s)", self.name or "monitor", kind, error)

    def flush(self) -> None:
        """Fold buffered single-row calls in now (every read does this itself)."""
        with self._lock:
            self._flush()
        self._dispatch()

    # ------------------------------------------------------------------ reading

    def metrics(self, version: str | None = None) -> dict[str, float | None]:
        """The current window's metrics, over every version or over one.

        Classification: ``accuracy``, ``precision``, ``recall``, ``f1`` (per ``average``) and
        their ``_macro`` / ``_weighted`` / ``_micro`` variants; regression: ``mae``, ``mse``,
        ``rmse``, ``r2``. Always: ``n_predictions``, ``n_labelled``, ``error_rate``,
        ``latency_p50`` / ``_p95`` / ``_p99`` (seconds). With probabilities: ``estimated_*``,
        the performance estimated before labels (see `modeldeploy.monitoring.estimation`).
        A metric without data (before labels, traffic or errors arrive) is ``None``, never
        ``nan``, so the dict is valid JSON; alerts and retraining triggers do not judge it.

        Parameters
        ----------
        version
            A version label as logged with ``version=`` (``"churn:9"``): the same metrics over
            only that version's rows of the window (its labels, errors and latencies), as when
            judging a canary. A version not seen, or no longer tracked (see ``max_versions``),
            has ``n_predictions`` 0 and ``None`` metrics. ``None``: all rows.

        Examples
        --------
        >>> mon = Monitor(window=100, thresholds={})
        >>> mon.log_predictions(None, [1, 0, 1], ids=["a", "b", "c"], version="m:1")
        >>> mon.log_predictions(None, [1, 1], ids=["d", "e"], version="m:2")
        >>> _ = mon.log_labels(["a", "b", "c", "d", "e"], [1, 0, 0, 1, 1])
        >>> mon.metrics()["accuracy"], mon.metrics(version="m:2")["accuracy"]
        (0.8, 1.0)
        """
        with self._lock:
            self._flush()
            out = self._metrics(self._windows.ring_of(version))
        self._dispatch()
        return out

    def versions(self) -> list[str]:
        """The versions whose rows have a window of their own, least recently seen first."""
        with self._lock:
            self._flush()
            return self._windows.tracked()

    def drift(self) -> DriftResult:
        """Drift of each feature and of the predictions in the current window."""
        with self._lock:
            self._flush()
            out = self._drift()
        self._dispatch()
        return out

    def change(self) -> ChangePoint:
        """When the model's errors last changed: the start of their current regime.

        The `detector` runs over the losses of the labelled predictions (0/1 for a
        classifier, absolute errors for a regressor), counted per window bucket over the last
        ``detector.max_buckets`` buckets (longer than the window), dated by when each bucket's
        first prediction was served. ``RetrainPolicy`` reads it through
        [`change_detected`][modeldeploy.retraining.triggers.change_detected].

        Examples
        --------
        >>> import numpy as np
        >>> mon = Monitor(window=1000, thresholds={})
        >>> rng = np.random.default_rng(0)
        >>> for i in range(20):  # 200 labelled rows per call; errors rise from 10% to 40%
        ...     y = rng.integers(0, 2, 200)
        ...     wrong = rng.random(200) < (0.1 if i < 10 else 0.4)
        ...     mon.log_predictions(None, np.where(wrong, 1 - y, y), y_true=y)
        >>> change = mon.change()
        >>> change.increase, change.n_after
        (True, 2000)
        """
        with self._lock:
            self._flush()
            return self.detector.detect(self._errors)

    def label_stats(self) -> dict[str, int]:
        """Running counts of the delayed-label bookkeeping.

        ``labels_total`` (every label attached to its prediction: given with it through
        ``y_true=``, or later by id, in the window or late; never reset as the window slides),
        ``pending`` (waiting now), ``predictions_duplicate_id``, ``predictions_evicted`` (over
        ``max_pending``), ``predictions_expired`` (older than ``label_ttl_s``),
        ``labels_matched``, ``labels_late`` (their bucket had left the window),
        ``labels_duplicate``, ``labels_unknown``, ``labels_expired``, ``labels_evicted``.

        Labels can come before their prediction. ``labels_waiting`` is how many wait for it
        now (their ids not logged yet; not counted anywhere else until resolved). When the
        prediction comes, each is counted as if it had just come: ``labels_matched`` (and
        ``labels_total``) as usual, and also ``labels_early``. One that waited longer than
        ``early_label_ttl_s``, or was pushed out by ``max_pending`` newer early labels, counts
        as ``labels_unknown``. Repeated labels for a waiting id: the first wins (as for labels
        after their prediction); the others count as ``labels_duplicate`` when it matches, as
        ``labels_unknown`` when it does not.
        """
        with self._lock:
            self._flush()
            now = self._now()
            self._labels.expire(now)
            self._labels.expire_early(now)
            return self._label_counts()

    def _label_counts(self) -> dict[str, int]:
        labels = self._labels
        labels.settle()
        return {"pending": len(labels), "labels_waiting": len(labels.early), **labels.counts}

    def check(self) -> list[Alert]:
        """Evaluate every threshold now; return the alerts this raised (also sent as usual).

        The monitor checks by itself each time its window slides by a bucket.
        """
        with self._lock:
            self._flush()
            self._check()
            fired = list(self._alerts.outbox)
        self._dispatch()
        return fired

    @property
    def alerts(self) -> list[Alert]:
        """The most recent alerts (at most 100), oldest first."""
        with self._lock:
            return list(self._alerts.recent)

    def report(self) -> Report:
        """A snapshot of the monitor's state: metrics, drift, labels, errors, history."""
        with self._lock:
            self._flush()
            now = self._now()
            self._labels.expire(now)
            self._labels.expire_early(now)
            windows = self._windows
            metrics = self._metrics(windows.ring)
            drift = self._drift()
            data = {
                "name": self.name,
                "generated_at": self.clock.now().isoformat(),
                "task": self._targets.task,
                "window": windows.description(),
                "metrics": metrics,
                "drift": drift.to_dict(),
                "thresholds": dict(self.thresholds),
                "labels": self._label_counts(),
                "errors": {"total": windows.errors_total, "by_type": dict(windows.error_types)},
                "versions": dict(windows.versions),
                "version_metrics": self._version_metrics(),
                "rows_logged": windows.seq,
                "alerts": [a.to_dict() for a in self._alerts.recent],
                "history": [dict(p) for p in self._history],
            }
        self._dispatch()
        return Report(data)

    def __repr__(self) -> str:
        with self._lock:
            self._flush()
            rows = self._windows.seq
        name = f"{self.name!r}, " if self.name else ""
        return (
            f"Monitor({name}{self._targets.task or 'task not known yet'}, window="
            f"{self._windows.description()}, {rows} rows logged)"
        )

    def _repr_html_(self) -> str:
        return self.report()._repr_html_()

    # ------------------------------------------------------------------ folding rows in

    def _now(self) -> float:
        """Now on the monitor's clock, in seconds since the epoch (the unit of its windows).

        Never earlier than a time read before: when the wall clock steps back (an NTP
        correction, ``FakeClock.set``), the monitor's time stands still until the clock has
        caught up. So a prediction that expired stays expired, a label's bucket never moves
        back, and stamps keep the order of the calls. Called under the lock.
        """
        t = self.clock.now().timestamp()
        if t < self._latest:
            return self._latest
        self._latest = t
        return t

    def _current_key(self) -> int:
        windows = self._windows
        # A count-based window does not read the clock (nor move the monitor's time).
        return windows.current_key(0.0 if windows.bucket_size else self._now())

    def _flush(self) -> None:
        self._buffer.drain(self._fold)

    def _fold(self, batch: Batch) -> None:
        """Fold one batch into the parts; a [`SchemaError`][modeldeploy.exceptions.SchemaError]
        leaves them as they were."""
        X, y_pred, ids, y_proba, y_true, version, latencies, call_times, times = batch
        pred = np.asarray(y_pred)
        if pred.ndim == 2 and pred.shape[1] == 1:
            pred = pred[:, 0]
        if pred.ndim == 0:
            pred = pred.reshape(1)
        if pred.ndim != 1:
            raise SchemaError(
                f"y_pred must hold one prediction per row (1-D); got shape {pred.shape}. "
                "Monitor one output at a time."
            )
        n = pred.shape[0]
        id_arr = None if ids is None else id_array(ids)
        proba = None if y_proba is None else np.asarray(y_proba, dtype=np.float64)
        if proba is not None and proba.ndim == 1:
            proba = np.column_stack([1.0 - proba, proba])
        truth = None if y_true is None else np.atleast_1d(np.asarray(y_true)).ravel()
        for what, given in (
            ("ids", id_arr),
            ("y_proba", proba),
            ("y_true", truth),
            ("times (at=)", times),
        ):
            if given is not None and given.shape[0] != n:
                raise SchemaError(
                    f"log_predictions got {n} predictions but {given.shape[0]} {what}; pass one "
                    "per row."
                )
        reference = self._reference
        Xv = None
        if X is not None and reference.profile is not None and self.signature is not None:
            Xv = self.signature.validate(X)
            if Xv.shape[0] != n:
                raise SchemaError(
                    f"log_predictions got {Xv.shape[0]} rows of X but {n} predictions; pass one "
                    "prediction per row."
                )
        targets = self._targets
        if targets.task is None:
            targets.settle(
                "regression" if pred.dtype.kind in "fc" and proba is None else "classification"
            )
        classify = targets.task == "classification"
        # Labels and predictions are converted (or refused) before anything changes, so a
        # SchemaError leaves the monitor as it was.
        truth_missing: np.ndarray | None = None
        if classify:
            kind = targets.kind() or class_kind(pred)
            pred_vals, pred_missing = coerce_classes(pred, kind, "y_pred")
            if truth is not None:
                truth_vals, truth_missing = coerce_classes(truth, kind, "y_true")
            pred_codes = (
                targets.encode(pred_vals)
                if pred_missing is None
                else targets.encode_masked(pred_vals, pred_missing)
            )
            true_codes = None if truth is None else targets.encode_masked(truth_vals, truth_missing)
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
        windows = self._windows
        if targets.task == "regression":
            windows.ensure_array("reg", (5,), np.float64)
        if not reference.ready:
            collected = reference.collect(reference_rows)
            if collected is not None:
                self._set_prediction_reference(collected)
            drift_from = n  # these rows are the reference, not the current window
        else:
            drift_from = 0
        tag, vring = (-1, None) if version is None else windows.version_window(version)
        if version is not None:
            windows.seen_at[version] = call_times[-1]

        keys, live_from, last = windows.keys(n, times, call_times[-1])
        if n:
            if keys[live_from] == keys[n - 1]:  # the usual batch: one bucket
                bounds = [live_from, n]
            else:
                cuts = np.flatnonzero(np.diff(keys[live_from:])) + 1 + live_from
                bounds = [live_from, *cuts.tolist(), n]
            for a, b in itertools.pairwise(bounds):
                self._add_segment(
                    int(keys[a]), a, b, Xv, pred_codes, true_codes, proba, drift_from, vring
                )
                self._errors.open(int(keys[a]), call_times[-1] if times is None else times[a])
            if true_codes is not None:
                live = np.arange(live_from, n)
                if truth_missing is not None:
                    live = live[~truth_missing[live_from:]]
                self._errors.add(keys[live], self._losses(pred_codes[live], true_codes[live]))
        lat = [v for v in latencies if v is not None]
        if lat:
            windows.add_latencies(last, lat, vring)
        labels = self._labels
        n_missing = 0 if truth_missing is None else int(truth_missing.sum())
        if truth is not None:
            labels.counts["labels_total"] += n - n_missing
            labels.counts["labels_missing"] += n_missing
        if id_arr is not None:
            labels.expire(call_times[-1])
            if truth is None:
                labels.add(
                    id_arr[live_from:],
                    keys[live_from:],
                    pred_codes[live_from:],
                    call_times[-1] if times is None else times[live_from:],
                    tag,
                )
                if live_from:
                    labels.counts["predictions_evicted"] += live_from
            else:
                if truth_missing is not None:  # rows whose label is missing wait for one by id
                    row_times = times if times is not None else np.full(n, call_times[-1])
                    rows = np.flatnonzero(truth_missing)
                    kept = rows[rows >= live_from]
                    labels.add(
                        id_arr[kept],
                        keys[kept],
                        pred_codes[kept],
                        row_times[kept],
                        tag,
                    )
                    labels.counts["predictions_evicted"] += rows.size - kept.size
                    labelled = id_arr[~truth_missing]
                else:
                    labelled = id_arr
                labels.mark_labelled(labelled)
        rolled = windows.advance(n, last, version)
        self._since_check += n
        if id_arr is not None and labels.early:
            self._since_check += self._meet_early_labels(id_arr.tolist(), call_times[0])
        if rolled or self._since_check >= windows.check_every:
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
        drift_from: int,
        vring: BucketRing | None,
    ) -> None:
        """Count rows ``a:b`` (all in bucket ``key``) in the windows."""
        classify = self._targets.task == "classification"
        reference = self._reference
        features = None if Xv is None else reference.bin_features(Xv[a:b])
        pred_hist = None
        if not classify and b > drift_from:
            pred_hist = reference.bin_predictions(pred[max(a, drift_from) : b])
        estimate = classify and proba is not None and self.classes is not None
        self._windows.add_segment(
            key,
            vring,
            classify=classify,
            pred=pred[a:b],
            truth=None if truth is None else truth[a:b],
            proba=proba[a:b] if estimate and proba is not None else None,
            drift_from=max(0, drift_from - a),
            features=features,
            pred_hist=pred_hist,
        )

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
            prepared, _ = self._targets.prepare_labels(label_array(values))
        except SchemaError:
            # A label log_labels would have refused (a string for a regressor, "yes" for int
            # classes): the predictions are in already, so drop only the labels, and say so.
            logger.exception(
                "%s: dropped %d labels that came before their predictions",
                self.name or "monitor",
                len(hits),
            )
            return 0
        # counts what is not pending (labelled with y_true=, ...)
        pos, keys, preds, tags, _ = labels.take_arrays(id_array(hits), hold_unseen=False)
        try:
            self._apply_labels(pos, keys, preds, tags, prepared)
        except Exception:
            # A class past max_classes: the predictions are in already, so drop only the
            # labels, and say so.
            logger.exception(
                "%s: dropped %d labels that came before their predictions",
                self.name or "monitor",
                int(pos.size),
            )
            return 0
        labels.counts["labels_early"] += int(pos.size)
        return int(pos.size)

    def _apply_labels(
        self,
        pos: np.ndarray,
        keys: np.ndarray,
        preds: np.ndarray,
        tags: np.ndarray,
        values: np.ndarray,
    ) -> None:
        """Count labels (converted by ``Targets.prepare_labels``) in their predictions' buckets:
        ``values[pos]`` are the labels of the predictions ``preds`` (encoded) logged in buckets
        ``keys`` by the versions ``tags``."""
        if not pos.size:
            return
        current = self._current_key()
        classify = self._targets.task == "classification"
        mine = values if pos.size == values.size else values[pos]  # (pos is then every row)
        truth = self._targets.encode(mine) if classify else mine.astype(np.float64)
        matched, late = self._windows.add_labels(
            keys, tags, truth, preds, current=current, classify=classify
        )
        self._errors.add(keys, self._losses(preds, truth))
        counts = self._labels.counts
        counts["labels_matched"] += matched
        counts["labels_late"] += late
        counts["labels_total"] += matched + late

    def _losses(self, pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
        """What the change detector reads: 0/1 errors of a classifier, absolute errors of a
        regressor."""
        if self._targets.task == "classification":
            wrong: np.ndarray = np.asarray(pred) != np.asarray(truth)
            return wrong.astype(np.float64)
        return np.abs(np.asarray(pred, dtype=np.float64) - np.asarray(truth, dtype=np.float64))

    def _fit_classes(self, k: int) -> None:
        """Make room for ``k`` classes (the class encoding calls this for each new class)."""
        cap = self._windows.fit_classes(k, self.max_classes)
        self._reference.fit_classes(cap)

    def _fit_features(self) -> None:
        width = self._reference.width
        if width is not None:
            self._windows.ensure_array("features", width, np.int64)

    def _set_prediction_reference(self, rows: np.ndarray) -> None:
        targets = self._targets
        targets.settle("regression" if rows.dtype.kind in "fc" else "classification")
        if targets.task == "classification":
            self._reference.set_classes(targets.encode(rows))
        else:
            width = self._reference.set_numbers(rows)
            self._windows.ring.add_array("pred_hist", (width,), np.int64)

    # ------------------------------------------------------------------ reading the parts

    def _metrics(self, ring: BucketRing) -> dict[str, float | None]:
        targets = self._targets
        return window_metrics(
            ring,
            self._current_key(),
            targets.task,
            lambda: targets.average_and_pos(self.average, self.pos_label),
        )

    def _version_metrics(self) -> dict[str, dict[str, float | None]]:
        """Each tracked version's metrics, when more than one version was seen."""
        windows = self._windows
        tracked = windows.tracked()
        if len(windows.versions) < 2 and len(tracked) < 2:
            return {}
        return {v: self._metrics(windows.ring_of(v)) for v in tracked}

    def _drift(self) -> DriftResult:
        cur = self._current_key()
        windows = self._windows
        classify = self._targets.task == "classification"
        return self._reference.compare(
            lambda name: windows.total(name, cur),
            n_classes=len(self._targets) if classify else None,
            thresholds=self._thresholds,
            min_samples=self.min_drift_samples,
        )

    # ------------------------------------------------------------------ alerts

    def _label(self) -> str:
        return f"{self.name}: " if self.name else ""

    def _check(self) -> None:
        """Evaluate thresholds; never let a failure here break the logging that triggered it."""
        self._since_check = 0
        try:
            self._evaluate()
        except Exception:
            logger.exception("%scould not evaluate the alert thresholds", self._label())

    def _evaluate(self) -> None:
        windows = self._windows
        m = self._metrics(windows.ring)
        point = {"time": self._now(), "rows": float(windows.seq)}
        point.update({k: v for k, v in m.items() if isinstance(v, float) and math.isfinite(v)})
        samples = {
            "labelled": int(m["n_labelled"] or 0),
            "predictions": int(m["n_predictions"] or 0),
            "estimated": int(windows.total("n_proba", self._current_key())),
        }
        self._alerts.check_metrics(m, samples, self._thresholds, self.min_samples)
        if self._thresholds.drift is not None:
            drift = self._drift()
            rows = list(drift.values())
            if drift.prediction is not None:
                rows.append(drift.prediction)
            point["drifted"] = float(sum(f.drifted for f in rows))
            psis = [f.psi for f in rows if math.isfinite(f.psi)]
            if psis:
                point["max_psi"] = max(psis)
            self._alerts.check_drift(rows, self._thresholds, self.min_drift_samples)
        self._history.append(point)

    def _dispatch(self) -> None:
        with self._lock:
            alerts = self._alerts.take()
        if alerts:
            self._alerts.send(alerts)

    # ------------------------------------------------------------------ merging

    @classmethod
    def combine(
        cls,
        monitors: Iterable[Monitor],
        *,
        name: str | None = None,
        on_alert: AlertCallback | Sequence[AlertCallback] | None = None,
        clock: Clock | Callable[[], float] | None = None,
    ) -> Monitor:
        """One monitor equal to a single monitor that saw the union of these monitors' streams.

        This is how replicas of one model (uvicorn workers, pods) become one view: every
        metric, drift statistic and count of the result (per version too; label counts,
        errors, latency percentiles) is what one monitor fed every replica's rows would give.
        The inputs are not changed; the result is a new monitor that can go on logging.

        The monitors must be able to merge exactly, else ` MergeError` says why and nothing is
        merged:

        - time-based windows (``window=`` a `timedelta`): buckets align by
          time across replicas; count-based windows depend on the order rows arrived in;
        - the same settings (window, buckets, thresholds, bounds, classes, ...), except
          ``name``;
        - the same drift reference: the registered signature's profile or the same
          ``reference=`` rows, and for prediction drift the same ``reference_predictions=``
          (a baseline each replica learned from its own first predictions is refused).

        Classes are put in one canonical order (``classes=`` first, then sorted). Alerts are
        evaluated afresh on the merged state (the result's alert history starts empty), and
        sent to ``on_alert``. Labels by id are joined in the replica that logged the
        prediction; predictions still waiting for their label wait in the result, so labels
        can be logged there too. Bounds (``max_pending``, ``max_versions``) apply to the
        result as to one monitor.

        Parameters
        ----------
        monitors
            The monitors to merge (at least one).
        name
            The result's name (default: ``None``).
        on_alert
            Callbacks of the result.
        clock
            The result's clock (default: that of the first monitor).

        Raises
        ------
        MergeError
            When the monitors cannot be merged exactly.

        Examples
        --------
        >>> import datetime as dt
        >>> fleet = dict(window=dt.timedelta(hours=1), reference_predictions=[0, 1], thresholds={})
        >>> a, b = Monitor(**fleet), Monitor(**fleet)
        >>> a.log_predictions(None, [1, 0, 1], y_true=[1, 0, 0])
        >>> b.log_predictions(None, [1, 1], y_true=[1, 1])
        >>> Monitor.combine([a, b]).metrics()["accuracy"]
        0.8
        """
        parts = list(monitors)
        if not parts or not all(isinstance(m, Monitor) for m in parts):
            raise InvalidParameterError(
                "The 'monitors' parameter of Monitor.combine must be a non-empty list of "
                f"Monitor. Got {[type(m).__name__ for m in parts]!r} instead."
            )
        snaps = [m._snapshot() for m in parts]
        first = snaps[0]
        _check_mergeable(snaps)
        params = dict(first.params)
        params["name"] = name
        window = params.pop("window")
        params["window"] = dt.timedelta(seconds=window["seconds"])
        sig = None if first.signature is None else Signature.from_dict(first.signature)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DriftWarning)  # the replicas warned already
            mon = cls(
                signature=sig,
                on_alert=on_alert,
                clock=parts[0].clock if clock is None else clock,
                detector=first.detector,
                **params,
            )
        with mon._lock:
            mon._absorb(snaps)
            mon._check()
        mon._dispatch()
        return mon

    def merge(self, other: Monitor, *, name: str | None = None) -> Monitor:
        """This monitor merged with another: ``Monitor.combine([self, other], name=name)``.

        A new monitor; neither input changes. See [`combine`][modeldeploy.Monitor.combine] for what
        must agree.

        Examples
        --------
        >>> import datetime as dt
        >>> fleet = dict(window=dt.timedelta(hours=1), reference_predictions=[0, 1], thresholds={})
        >>> a, b = Monitor(**fleet), Monitor(**fleet)
        >>> a.log_predictions(None, [1, 0], ids=["r1", "r2"])
        >>> b.log_predictions(None, [0], ids=["r3"])
        >>> both = a.merge(b)
        >>> both.log_labels(["r1", "r2", "r3"], [1, 1, 0])["matched"]  # waiting ids merge too
        3
        >>> both.metrics()["n_labelled"], a.metrics()["n_labelled"]
        (3, 0)
        """
        return Monitor.combine([self, other], name=name, clock=self.clock)

    def _snapshot(self) -> _Snapshot:
        """A copy of the state, for [`combine`][modeldeploy.Monitor.combine] (the buffered rows
        folded in first)."""
        with self._lock:
            self._flush()
            snap = _Snapshot(
                params=self._params(),
                signature=None if self.signature is None else self.signature.to_dict(),
                calibrator=None if self._calibrator is None else self._calibrator.to_dict(),
                latest=self._latest,
                task=self._targets.task,
                classes=list(self._targets.classes),
                windows=copy.deepcopy(self._windows),
                reference=copy.deepcopy(self._reference),
                labels=copy.deepcopy(self._labels),
                detector=self.detector,
                errors=self.detector.history().merge(self._errors),
            )
        self._dispatch()
        return snap

    def _absorb(self, snaps: list[_Snapshot]) -> None:
        """Fill this new monitor with the merged state of checked snapshots (under the lock)."""
        targets, windows = self._targets, self._windows
        tasks = {s.task for s in snaps if s.task is not None}
        if tasks:
            targets.settle(tasks.pop())
        classes = Targets.union([_targets_of(s) for s in snaps], self.classes)
        try:
            for c in classes:
                targets.code(c)
        except SchemaError as exc:
            raise MergeError(
                f"The monitors together saw {len(classes)} classes, more than "
                f"max_classes={self.max_classes}. Raise max_classes on every replica."
            ) from exc
        index = {c: i for i, c in enumerate(targets.classes)}
        maps = [np.asarray([index[c] for c in s.classes], dtype=np.int64) for s in snaps]
        classify = targets.task == "classification"
        if any("reg" in s.windows.ring.arrays for s in snaps):
            windows.ensure_array("reg", (5,), np.float64)
        cap = int(windows.ring.arrays["pred"].shape[1]) if "pred" in windows.ring.arrays else 0
        ready = [i for i, s in enumerate(snaps) if s.reference.ready]
        base = ready[0] if ready else 0
        self._reference = snaps[base].reference.remapped(maps[base], cap)
        pred_profile = self._reference.pred_profile
        if pred_profile is not None and "pred_hist" not in windows.ring.arrays:
            windows.ring.add_array("pred_hist", (pred_profile.width,), np.int64)
        width = self._reference.width
        features = windows.ring.arrays.get("features")
        if width is not None and (features is None or features.shape[1:] != width):
            # the replicas' sketch (fitted from reference= rows), finer than the signature's
            windows.ring.add_array("features", width, np.int64)
        if snaps[0].calibrator is not None:
            self._calibrator = ProbabilityCalibrator.from_dict(snaps[0].calibrator)
        newest = max(s.windows.newest_key() for s in snaps)
        seen: dict[str, float] = {}
        for s in snaps:
            for when, version in s.windows.recency():
                seen[version] = max(seen.get(version, -math.inf), when)
        order = sorted(seen.items(), key=lambda e: e[1])  # stable: input order on ties
        windows.track([(when, v) for v, when in order[-self.max_versions :]])
        for s, codes in zip(snaps, maps, strict=True):
            tags = windows.absorb(s.windows, codes, newest)
            self._labels.absorb(s.labels, codes if classify else None, tags)
        self._latest = max(s.latest for s in snaps)
        self._errors = functools.reduce(ErrorHistory.merge, (s.errors for s in snaps))
        self._join_across_replicas()

    def _join_across_replicas(self) -> None:
        """Join the labels that reached another replica than their prediction.

        Such a label waits in that replica as an early label (its id was never logged there).
        One monitor over both streams would have attached it to its prediction, or counted it
        as a duplicate (expired, evicted) when its prediction was labelled (expired, evicted)
        already; so does the merged monitor.
        A label that came after its prediction is not counted as ``labels_early``.
        """
        labels = self._labels
        if not labels.early:
            return
        waiting = labels.pending
        early = labels.early
        met = [i for i in early if i in waiting]
        resolved = labels.resolved
        done = [i for i in early if i not in waiting and i in resolved]
        if done:  # labelled, expired or evicted in its own replica: counted as one monitor would
            repeats = sum(early.pop(i)[2] for i in done)
            labels.take_arrays(id_array(done), hold_unseen=False)
            labels.counts["labels_duplicate"] += repeats
        if not met:
            return
        came_after = sum(1 for i in met if early[i][1] >= waiting[i][2])
        attached = self._meet_early_labels(met, self._now())
        labels.counts["labels_early"] -= min(came_after, attached)

    # ------------------------------------------------------------------ persistence

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Save the monitor's state (windows, sketches, waiting labels) to one ``.npz`` file.

        Predictions waiting for a label and labels waiting for their prediction are saved with
        their ids when those (and the labels) are strings, numbers or booleans.

        The file holds counts and sketches, never raw rows; it is written atomically. Callbacks
        are not saved: pass ``on_alert=`` to [`load`][modeldeploy.Monitor.load].
        """
        return write_state(path, self._state())

    def _state(self) -> dict[str, Any]:
        """Everything [`save`][modeldeploy.Monitor.save] writes (arrays copied, so writing needs no
        lock)."""
        with self._lock:
            self._flush()
            state = {
                "params": self._params(),
                "signature": None if self.signature is None else self.signature.to_dict(),
                "calibrator": None if self._calibrator is None else self._calibrator.to_dict(),
                "history": list(self._history),
                "latest_time": self._latest if math.isfinite(self._latest) else None,
                **self._windows.to_state(),
                **self._targets.to_state(),
                **self._reference.to_state(),
                **self._labels.to_state(),
                **self._alerts.to_state(),
                "detector": dataclasses.asdict(self.detector),
                "error_history": self._errors.to_state(),
            }
            return {k: v.copy() if isinstance(v, np.ndarray) else v for k, v in state.items()}

    # ------------------------------------------------------------------ fleets

    def publish(self, place: Any, *, replica: str | None = None, fleet: str = "default") -> str:
        """Publish a snapshot of this monitor where the fleet view reads it (see
        [`fleet`][modeldeploy.Monitor.fleet]).

        Each replica (a uvicorn worker, a pod) publishes its own snapshot under its own name,
        replacing the previous one atomically; ` MonitorPublisher` does it periodically from a
        background thread. A snapshot holds counts and sketches, never rows (the file
        [`save`][modeldeploy.Monitor.save] writes, stamped with the time).

        Parameters
        ----------
        place
            A shared folder, an [`ArtifactStore`][modeldeploy.registry.stores.ArtifactStore], or a
            [`ModelRegistry`][modeldeploy.ModelRegistry] (its artifact store, e.g. S3).
        replica
            This replica's name (letters, digits, ``.``, ``_``, ``-``); default: host name and
            process id, unique per process.
        fleet
            The fleet's name in an artifact store (a folder is one fleet).

        Returns
        -------
        str
            The replica name the snapshot was published under.
        """
        from modeldeploy.monitoring._snapshots import SnapshotPlace, default_replica

        snapshots = SnapshotPlace(place, fleet)
        name = default_replica() if replica is None else replica
        state = self._state()
        state["published_at"] = self.clock.now().timestamp()
        state["replica"] = name
        snapshots.put(name, state)
        return name

    @classmethod
    def fleet(
        cls,
        place: Any,
        *,
        fleet: str = "default",
        stale_after_s: float | None = None,
        name: str | None = None,
        on_alert: AlertCallback | Sequence[AlertCallback] | None = None,
        clock: Clock | Callable[[], float] | None = None,
    ) -> Monitor:
        """The fleet view: one monitor merged from every replica's latest published snapshot.

        It equals one monitor over every replica's rows, as of their last publish (see
        [`combine`][modeldeploy.Monitor.combine]), so [`RetrainPolicy`][modeldeploy.RetrainPolicy],
        reports and exporters read it as they read a monitor. Build it again to refresh it.

        A replica that stopped publishing (it died, or was scaled down) leaves its last
        snapshot behind. Its rows happened, so they count until they leave the window; a
        snapshot older than ``stale_after_s`` (default: the window's length, after which none
        of its rows can be in the window) is left out and logged. A snapshot that cannot be
        read is skipped and logged too.

        Parameters
        ----------
        place, fleet
            Where the replicas publish (see [`publish`][modeldeploy.Monitor.publish]).
        stale_after_s
            Age in seconds (on ``clock``) past which a snapshot is left out.
        name, on_alert
            The fleet view's name and alert callbacks (alerts are evaluated on the merged
            state when it is built).
        clock
            The fleet view's clock, also the one snapshot ages are read on.

        Raises
        ------
        MergeError
            When no fresh snapshot is found, or the snapshots cannot be merged exactly.

        Examples
        --------
        >>> import datetime as dt, tempfile
        >>> shared = tempfile.mkdtemp()
        >>> fleet = dict(window=dt.timedelta(hours=1), reference_predictions=[0, 1], thresholds={})
        >>> for worker, (pred, truth) in enumerate([([1, 0, 1], [1, 0, 0]), ([1, 1], [1, 1])]):
        ...     mon = Monitor(**fleet)
        ...     mon.log_predictions(None, pred, y_true=truth)
        ...     _ = mon.publish(shared, replica=f"worker-{worker}")
        >>> Monitor.fleet(shared).metrics()["accuracy"]
        0.8
        """
        from modeldeploy.monitoring._snapshots import SnapshotPlace

        clock = as_clock(clock, _OWNER)
        snapshots = SnapshotPlace(place, fleet)
        now = clock.now().timestamp()
        monitors = []
        for replica, state in snapshots.states():
            window = state["params"]["window"]
            limit = stale_after_s if stale_after_s is not None else window.get("seconds", math.inf)
            age = now - float(state.get("published_at", -math.inf))
            if age > limit:
                logger.info(
                    "left the snapshot of %r out of the fleet view: published %.0f s ago "
                    "(stale after %.0f s)",
                    replica,
                    age,
                    limit,
                )
                continue
            monitors.append(cls._from_state(state, on_alert=None, clock=clock))
        if not monitors:
            raise MergeError(
                f"No fresh monitor snapshot in {snapshots!r}: expected replicas to publish "
                "there (Monitor.publish or MonitorPublisher) within the last "
                f"{'window' if stale_after_s is None else f'{stale_after_s:g} s'}. Check "
                "the place and that the replicas' publishers run."
            )
        return cls.combine(monitors, name=name, on_alert=on_alert, clock=clock)

    def _params(self) -> dict[str, Any]:
        """The parameters that rebuild this monitor (JSON-friendly; not the callbacks)."""
        windows = self._windows
        return {
            "window": (
                {"rows": windows.window_rows}
                if windows.window_rows is not None
                else {"seconds": windows.bucket_s * self.buckets}
            ),
            "buckets": self.buckets,
            "task": self.task,
            "classes": self.classes,
            "pos_label": scalar(self.pos_label),
            "average": self.average,
            "thresholds": self.thresholds,
            "min_samples": self.min_samples,
            "min_drift_samples": self.min_drift_samples,
            "max_pending": self.max_pending,
            "label_ttl_s": self.label_ttl_s,
            "early_label_ttl_s": self.early_label_ttl_s,
            "sketch_bins": self.sketch_bins,
            "psi_bins": self.psi_bins,
            "max_classes": self.max_classes,
            "max_versions": self.max_versions,
            "name": self.name,
        }

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        *,
        on_alert: AlertCallback | Sequence[AlertCallback] | None = None,
        clock: Clock | Callable[[], float] | None = None,
    ) -> Monitor:
        """Rebuild a monitor saved with [`save`][modeldeploy.Monitor.save], with its windows and
        pending labels.

        Files of every earlier release load. A file that cannot be read as a monitor state
        (truncated, damaged, another kind of file) raises
        [`StateFileError`][modeldeploy.exceptions.StateFileError] naming it; a missing or unreadable
        file raises the ``FileNotFoundError`` or ``PermissionError`` the system gave.
        """
        clock = as_clock(clock, _OWNER)  # a bad clock is the caller's error, not the file's
        with state_file_errors(path):
            return cls._from_state(read_state(path), on_alert=on_alert, clock=clock)

    @classmethod
    def _from_state(
        cls,
        state: Mapping[str, Any],
        *,
        on_alert: AlertCallback | Sequence[AlertCallback] | None,
        clock: Clock,
    ) -> Monitor:
        p = dict(state["params"])
        window = p.pop("window")
        p["window"] = (
            window["rows"] if "rows" in window else dt.timedelta(seconds=window["seconds"])
        )
        sig = None if state["signature"] is None else Signature.from_dict(state["signature"])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DriftWarning)  # it warned when first built
            mon = cls(signature=sig, on_alert=on_alert, clock=clock, **p)
        # The classes first: they grow the empty windows to the shapes the saved ones must have.
        mon._targets = Targets.from_state(state, mon.max_classes, mon._fit_classes)
        reference = mon._reference
        mon._reference = DriftReference.from_state(
            state,
            sketch_bins=reference.sketch_bins,
            psi_bins=reference.psi_bins,
            collect_rows=reference.collect_rows,
            name=reference.name,
        )
        mon._fit_features()
        mon._windows = Windows.from_state(state, mon._windows)
        if state["calibrator"] is not None:
            mon._calibrator = ProbabilityCalibrator.from_dict(state["calibrator"])
        mon._labels = PendingLabels.from_state(
            state, mon.max_pending, mon.label_ttl_s, mon.early_label_ttl_s
        )
        mon._alerts = AlertBook.from_state(state, mon._alerts.callbacks, mon.name, clock=mon.clock)
        mon._history.extend(state["history"])
        if "error_history" in state:  # absent from files saved before change detection
            mon.detector = ChangeDetector(**state["detector"])
            mon._errors = ErrorHistory.from_state(state["error_history"])
        if state.get("latest_time") is not None:  # absent from files saved before it was kept
            mon._latest = max(mon._latest, float(state["latest_time"]))
        mon._verify()
        return mon

    def _verify(self) -> None:
        """Read everything once, so that parts that do not fit together fail when loaded."""
        arrays = self._windows.ring.arrays
        k = len(self._targets)
        if "conf" in arrays:
            caps = {arrays[name].shape[1] for name in ("conf", "expected", "pred")}
            if len(caps) != 1 or caps.pop() < k:
                raise ValueError(f"class arrays too small for {k} classes")
        self._metrics(self._windows.ring)
        for version in self._windows.tracked():
            self._metrics(self._windows.ring_of(version))
        self._drift()


def _targets_of(snap: _Snapshot) -> Targets:
    out = Targets(snap.task, max(len(snap.classes), 2))
    for c in snap.classes:
        out.code(c)
    return out


def _check_mergeable(snaps: list[_Snapshot]) -> None:
    """Refuse (``MergeError``) monitors whose states cannot be merged exactly."""
    first = snaps[0]
    for i, s in enumerate(snaps):
        what = f"monitor {i} ({s.params['name']!r})" if s.params["name"] else f"monitor {i}"
        window = s.params["window"]
        if "rows" in window:
            raise MergeError(
                f"{what} has a count-based window ({window['rows']} rows): such windows "
                "depend on the order rows arrived in, so monitors of replicas cannot be merged "
                "exactly. Give every replica a time-based window "
                "(window=datetime.timedelta(...))."
            )
        differ = sorted(k for k in s.params if k != "name" and s.params[k] != first.params[k])
        if differ:
            found = ", ".join(
                f"{k}={s.params[k]!r} (monitor 0: {first.params[k]!r})" for k in differ
            )
            raise MergeError(
                f"{what} is set up differently from monitor 0: {found}. Monitors merge only "
                "with the same settings; build every replica's Monitor with the same arguments."
            )
        if s.signature != first.signature or not s.reference.same_features(first.reference):
            raise MergeError(
                f"{what} measures drift against another reference than monitor 0. Monitors "
                "merge only over the same reference: the registered signature's profile "
                "(Monitor.for_version) or the same reference= rows on every replica."
            )
        if s.reference.learned or s.reference.collecting:
            raise MergeError(
                f"{what} learns its prediction-drift baseline from its own first predictions, "
                "so each replica has another baseline and their drift cannot be merged. Pass "
                "reference_predictions= (the model's predictions on the reference rows) to "
                "every replica's Monitor."
            )
        if s.detector != first.detector:
            raise MergeError(
                f"{what} detects changes with {s.detector!r}, monitor 0 with "
                f"{first.detector!r}. Pass the same detector= to every replica's Monitor."
            )
        if s.calibrator != first.calibrator:
            raise MergeError(
                f"{what} calibrates its performance estimate on other reference_proba / "
                "reference_labels than monitor 0. Pass the same ones to every replica."
            )
    tasks = {s.task for s in snaps if s.task is not None}
    if len(tasks) > 1:
        raise MergeError(
            f"The monitors watch different tasks ({sorted(tasks)}). Merge monitors of one "
            "model, or pass task= to each."
        )
    kinds = {(s.reference.pred_profile is None) for s in snaps if s.reference.ready}
    if len(kinds) > 1:
        raise MergeError(
            "The monitors' prediction-drift baselines differ. Pass the same "
            "reference_predictions= to every replica's Monitor."
        )
    ready = [s for s in snaps if s.reference.ready]
    if ready:
        base = ready[0]
        index = {c: i for i, c in enumerate(Targets.union([_targets_of(s) for s in ready], None))}
        width = len(index)

        def counts(s: _Snapshot) -> np.ndarray:
            codes = np.asarray([index[c] for c in s.classes], dtype=np.int64)
            return s.reference.remapped(codes, width).pred_counts[:width]

        for s in ready[1:]:
            a, b = base.reference.pred_profile, s.reference.pred_profile
            same = (
                a.to_dict() == b.to_dict()
                if a is not None and b is not None
                else np.array_equal(counts(base), counts(s))
            )
            if not same:
                raise MergeError(
                    "The monitors' prediction-drift baselines differ. Pass the same "
                    "reference_predictions= to every replica's Monitor."
                )


def _row_times(at: Any) -> np.ndarray:
    """``at=`` of [`Monitor.log_predictions`][modeldeploy.Monitor.log_predictions] as epoch seconds
    (float64)."""
    arr = np.atleast_1d(np.asarray(at))
    if arr.dtype.kind == "M":
        return arr.astype("datetime64[us]").astype(np.int64) / 1e6
    if arr.dtype.kind in "iuf":
        return arr.astype(np.float64)
    try:
        return np.array([t.timestamp() for t in arr.tolist()], dtype=np.float64)
    except AttributeError:
        raise SchemaError(
            "The 'at' argument of Monitor.log_predictions must hold one time per row: aware "
            f"datetimes, datetime64 or epoch seconds. Got {arr.dtype} values instead."
        ) from None
