"""The Monitor: windowed quality metrics, delayed labels, drift, latency, errors and alerts.

The monitor is a facade over its parts: :mod:`~modeldeploy.monitoring._windows` (the bucketed
counts and reading them), :mod:`~modeldeploy.monitoring._ingest` (folding logged batches in),
:mod:`~modeldeploy.monitoring.alerts` (thresholds and debouncing) and
:mod:`~modeldeploy.monitoring._state` (save and load).
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import os
import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

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
from modeldeploy.exceptions import InvalidParameterError, SchemaError
from modeldeploy.monitoring._ingest import BUFFER_ROWS, SCALARS, Ingestion, as_list
from modeldeploy.monitoring._state import load_monitor, save_monitor
from modeldeploy.monitoring.alerts import Alert, AlertBook, AlertCallback, Thresholds
from modeldeploy.monitoring.drift import DriftResult
from modeldeploy.monitoring.metrics import AVERAGES
from modeldeploy.monitoring.report import Report
from modeldeploy.registry.signature import Signature
from modeldeploy.typing import Clock

__all__ = ["Alert", "Monitor"]  # Alert lives in alerts.py; re-exported here for old imports

logger = logging.getLogger("modeldeploy.monitoring")

_OWNER = "Monitor"
#: The counters ``log_labels`` reports for its own call (besides ``waiting``).
_CALL_COUNTS = tuple(
    f"labels_{k}" for k in ("matched", "late", "duplicate", "unknown", "expired", "evicted")
)


class Monitor(Ingestion):
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
        Model versions whose rows get a window of their own (see :meth:`metrics`); when a new
        one arrives past this bound, the least recently seen is dropped.
    name
        A name for logs, alerts and reports (``Monitor.for_version`` uses the version's ``ref``).
    clock
        Where the monitor reads time (a :class:`~modeldeploy.typing.Clock`, e.g.
        :class:`~modeldeploy.testing.FakeClock`): time windows, label TTLs, alert and report
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
        self._latest = -math.inf  # the latest time read (see _epoch)
        self._clock = self._epoch
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
        self._thresholds = Thresholds.parse(thresholds, _OWNER)
        self.thresholds = self._thresholds.to_dict()
        if on_alert is None:
            callbacks: list[AlertCallback] = []
        elif callable(on_alert):
            callbacks = [on_alert]
        else:
            callbacks = list(on_alert)

        self._lock = threading.RLock()
        self._alerts = AlertBook(callbacks, name, clock=self.clock)
        self._history: deque[dict[str, float]] = deque(maxlen=DEFAULT_MONITOR_HISTORY)
        self._buffer = []
        self._since_check = 0
        self._n_errors_total = 0
        self._error_types: dict[str, int] = {}
        self._init_windows()
        self._init_references(reference, reference_predictions, reference_proba, reference_labels)

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
        kind = type(y_pred)
        if kind in SCALARS or (kind is np.ndarray and y_pred.size == 1):
            with self._lock:
                t = self._clock()
                buf = self._buffer
                buf.append((X, y_pred, ids, y_proba, y_true, version, latency_s, t))
                if len(buf) < BUFFER_ROWS:
                    return
                self._flush()
        else:
            with self._lock:
                self._flush()
                t = self._clock()
                self._ingest(X, y_pred, ids, y_proba, y_true, version, [latency_s], [t], None)
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
            waiting for their prediction). See :meth:`label_stats` for the running totals.

        Examples
        --------
        >>> mon = Monitor(window=100, thresholds={})
        >>> mon.log_labels(["a", "b"], [1, 0])["waiting"]  # before their predictions
        2
        >>> mon.log_predictions(None, [1, 1], ids=["a", "b"])
        >>> mon.metrics()["accuracy"], mon.label_stats()["labels_early"]
        (0.5, 2)
        """
        id_list = as_list(ids)
        values = np.asarray(y_true).ravel()
        if len(id_list) != values.shape[0]:
            raise SchemaError(
                f"log_labels got {len(id_list)} ids but {values.shape[0]} labels; pass one label "
                "per id."
            )
        with self._lock:
            self._flush()
            now = self._clock()
            labels = self._labels
            labels.expire(now)
            labels.expire_early(now)
            # Converted (or refused with a SchemaError) before anything changes.
            values, missing = self._prepare_labels(values)
            n_missing = 0
            if missing is not None:  # no label for these ids yet: their predictions wait on
                n_missing = int(missing.sum())
                keep = np.flatnonzero(~missing)
                id_list = [id_list[i] for i in keep.tolist()]
                values = values[keep]
            before = dict(labels.counts)
            unseen: list[int] = []
            found = labels.take(id_list, unseen)
            self._apply_labels(found, values)
            labels.counts["labels_missing"] += n_missing
            after = labels.counts
            out = {k.removeprefix("labels_"): after[k] - before[k] for k in _CALL_COUNTS}
            dropped = 0
            if unseen:
                held = values.tolist()  # Python scalars, as JSON keeps them
                dropped = labels.hold([id_list[p] for p in unseen], [held[p] for p in unseen], now)
            out["unknown"] += dropped
            out["waiting"] = len(unseen) - dropped
            out["missing"] = n_missing
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
            if version is not None:
                vring = self._version_window(version)[1]
                vslot = vring.slot(key)
                if vslot is not None:
                    vring.arrays["n_err"][vslot] += 1
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

    def metrics(self, version: str | None = None) -> dict[str, float]:
        """The current window's metrics, over every version or over one.

        Classification: ``accuracy``, ``precision``, ``recall``, ``f1`` (per ``average``) and
        their ``_macro`` / ``_weighted`` / ``_micro`` variants; regression: ``mae``, ``mse``,
        ``rmse``, ``r2``. Always: ``n_predictions``, ``n_labelled``, ``error_rate``,
        ``latency_p50`` / ``_p95`` / ``_p99`` (seconds). With probabilities: ``estimated_*``,
        the performance estimated before labels (see :mod:`modeldeploy.monitoring.estimation`).
        A metric without data is ``nan``.

        Parameters
        ----------
        version
            A version label as logged with ``version=`` (``"churn:9"``): the same metrics over
            only that version's rows of the window (its labels, errors and latencies), as when
            judging a canary. A version not seen, or no longer tracked (see ``max_versions``),
            has ``n_predictions`` 0 and ``nan`` metrics. ``None``: all rows.

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
            if version is None:
                out = self._metrics(self._ring)
            else:
                tag = self._version_tags.get(version)
                ring = self._new_ring() if tag is None else self._version_rings[tag]
                self._sync_arrays(ring)
                out = self._metrics(ring)
        self._dispatch()
        return out

    def versions(self) -> list[str]:
        """The versions whose rows have a window of their own, least recently seen first."""
        with self._lock:
            self._flush()
            return list(self._version_tags)

    def drift(self) -> DriftResult:
        """Drift of each feature and of the predictions in the current window."""
        with self._lock:
            self._flush()
            out = self._drift()
        self._dispatch()
        return out

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
            now = self._clock()
            self._labels.expire(now)
            self._labels.expire_early(now)
            return self._label_counts()

    def _label_counts(self) -> dict[str, int]:
        labels = self._labels
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
            now = self._clock()
            self._labels.expire(now)
            self._labels.expire_early(now)
            metrics = self._metrics(self._ring)
            drift = self._drift()
            data = {
                "name": self.name,
                "generated_at": self.clock.now().isoformat(),
                "task": self._task,
                "window": self._window_description(),
                "metrics": metrics,
                "drift": drift.to_dict(),
                "thresholds": dict(self.thresholds),
                "labels": self._label_counts(),
                "errors": {"total": self._n_errors_total, "by_type": dict(self._error_types)},
                "versions": dict(self._versions),
                "version_metrics": self._version_metrics(),
                "rows_logged": self._seq,
                "alerts": [a.to_dict() for a in self._alerts.recent],
                "history": [dict(p) for p in self._history],
            }
        self._dispatch()
        return Report(data)

    def _epoch(self) -> float:
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

    # ------------------------------------------------------------------ alerts

    def _check(self) -> None:
        """Evaluate thresholds; never let a failure here break the logging that triggered it."""
        self._since_check = 0
        try:
            self._evaluate()
        except Exception:
            logger.exception("%scould not evaluate the alert thresholds", self._label())

    def _evaluate(self) -> None:
        m = self._metrics(self._ring)
        point = {"time": self._clock(), "rows": float(self._seq)}
        point.update({k: v for k, v in m.items() if isinstance(v, float) and math.isfinite(v)})
        samples = {
            "labelled": int(m["n_labelled"]),
            "predictions": int(m["n_predictions"]),
            "estimated": int(self._ring.total("n_proba", self._current_key())),
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

    # ------------------------------------------------------------------ persistence

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Save the monitor's state (windows, sketches, waiting labels) to one ``.npz`` file.

        Predictions waiting for a label and labels waiting for their prediction are saved with
        their ids when those (and the labels) are strings, numbers or booleans.

        The file holds counts and sketches, never raw rows; it is written atomically. Callbacks
        are not saved: pass ``on_alert=`` to :meth:`load`.
        """
        return save_monitor(self, path)

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        *,
        on_alert: AlertCallback | Sequence[AlertCallback] | None = None,
        clock: Clock | Callable[[], float] | None = None,
    ) -> Monitor:
        """Rebuild a monitor saved with :meth:`save`, with its windows and pending labels."""
        return load_monitor(cls, path, on_alert=on_alert, clock=clock)
