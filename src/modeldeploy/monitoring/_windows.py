"""The windows a Monitor keeps: bucket rings of counts, classes, per-version windows, reading.

Everything here holds counts and sketches, never rows. :class:`WindowState` is the part of
:class:`~modeldeploy.monitoring.monitor.Monitor` that owns them: the all-versions ring (quality,
latency, errors and drift counts per bucket), one smaller ring per recently seen model version
(quality, latency and errors only), the class encoding, the reference sketches, and turning all
of it into metrics and drift results. The monitor's lock is held around every method.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import numpy as np

from modeldeploy.exceptions import DriftWarning, InvalidParameterError, SchemaError
from modeldeploy.monitoring._coerce import class_kind, coerce_classes, missing_mask, to_numbers
from modeldeploy.monitoring.alerts import Thresholds
from modeldeploy.monitoring.drift import (
    DriftResult,
    FeatureDrift,
    ReferenceProfile,
    compare_categories,
)
from modeldeploy.monitoring.estimation import ProbabilityCalibrator
from modeldeploy.monitoring.metrics import (
    CLASS_METRICS,
    LATENCY_EDGES,
    BucketRing,
    PendingLabels,
    classification_metrics,
    latency_percentiles,
    merge_regression,
    regression_metrics,
    regression_stats,
)
from modeldeploy.registry.signature import Signature

__all__ = ["WindowState", "scalar"]

logger = logging.getLogger("modeldeploy.monitoring")

_LUT_LIMIT = 4096


def scalar(value: Any) -> Any:
    """A numpy scalar as the equal Python scalar (dict keys and JSON)."""
    return value.item() if isinstance(value, np.generic) else value


class WindowState:
    """The counts behind a monitor's metrics and drift (a base of ``Monitor``, not for users).

    The attributes below are the monitor's parameters that the windows read; ``Monitor``
    validates and sets them before calling :meth:`_init_windows`.
    """

    signature: Signature | None
    buckets: int
    classes: list[Any] | None
    pos_label: Any
    average: str | None
    min_drift_samples: int
    max_pending: int
    label_ttl_s: float | None
    early_label_ttl_s: float
    sketch_bins: int
    psi_bins: int
    max_classes: int
    max_versions: int
    name: str | None
    task: str
    _clock: Callable[[], float]
    _bucket_size: int
    _bucket_s: float
    _window_rows: int
    _thresholds: Thresholds

    def _init_windows(self) -> None:
        """Empty windows, before anything is logged."""
        self._ring = BucketRing(self.buckets)
        for arr, tail, dtype in (
            ("n_pred", (), np.int64),
            ("n_err", (), np.int64),
            ("n_proba", (), np.int64),
            ("n_nan_pred", (), np.int64),
            ("latency", (LATENCY_EDGES.size + 1,), np.int64),
        ):
            self._ring.add_array(arr, tail, dtype)
        self._labels = PendingLabels(self.max_pending, self.label_ttl_s, self.early_label_ttl_s)
        self._seq = 0
        self._last_key = -1
        self._versions: dict[str, int] = {}
        # Per-version windows: version -> tag (least recently seen first), tag -> its ring. A
        # pending prediction remembers its version's tag, so a dropped version's late labels
        # cannot land in a newer window of the same name.
        self._version_tags: OrderedDict[str, int] = OrderedDict()
        self._version_rings: dict[int, BucketRing] = {}
        self._next_tag = 0
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

    def _init_references(
        self,
        reference: Any,
        reference_predictions: Any,
        reference_proba: Any,
        reference_labels: Any,
    ) -> None:
        """The drift baselines and the calibration of the performance estimate."""
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
                    stacklevel=3,
                )
            self._profile = ReferenceProfile.from_signature(self.signature)
        if self._profile is not None:
            n_features = len(self._profile.sketches)
            self._ring.add_array("features", (n_features, self._profile.width), np.int64)
        if self.classes is not None:
            self._task = self._task or "classification"
            for c in self.classes:
                self._class_code(scalar(c))
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

    def _check(self) -> None:
        """Evaluate the alert thresholds (``Monitor`` does; the windows only call it)."""
        raise NotImplementedError

    def _label(self) -> str:
        return f"{self.name}: " if self.name else ""

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

    def _class_kind(self) -> str | None:
        """The type of the class labels (that of the first class seen), once there is one."""
        return class_kind(self._class_list[0]) if self._class_list else None

    def _prepare_labels(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Labels converted to the predictions' type (or refused), and where they are missing.

        Nothing is changed, so a :class:`SchemaError` here leaves the monitor as it was. Before
        the task is known the labels are returned as they are (they wait for their predictions,
        and are converted when those come).
        """
        if self._task == "regression":
            numbers = to_numbers(values, "y_true")
            bad = ~np.isfinite(numbers)
            return numbers, (bad if bad.any() else None)
        if self._task == "classification":
            return coerce_classes(values, self._class_kind() or class_kind(values), "y_true")
        return values, missing_mask(values)

    def _apply_labels(self, found: list[tuple[int, int, float, int]], values: np.ndarray) -> None:
        """Count labels (converted by :meth:`_prepare_labels`) in their predictions' buckets."""
        if not found:
            return
        pos = np.asarray([f[0] for f in found], dtype=np.int64)
        keys = np.asarray([f[1] for f in found], dtype=np.int64)
        preds = np.asarray([f[2] for f in found])
        tags = np.asarray([f[3] for f in found], dtype=np.int64)
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
            self._add_labels(self._ring, slot, truth[sel], preds[sel])
            for tag in np.unique(tags[sel]).tolist():
                vring = self._version_rings.get(tag)
                vslot = None if vring is None else vring.lookup(key)
                if vring is not None and vslot is not None:
                    self._sync_arrays(vring)
                    both = sel & (tags == tag)
                    self._add_labels(vring, vslot, truth[both], preds[both])
        self._labels.counts["labels_matched"] += matched
        self._labels.counts["labels_late"] += late
        self._labels.counts["labels_total"] += matched + late

    def _add_labels(
        self, ring: BucketRing, slot: int, truth: np.ndarray, preds: np.ndarray
    ) -> None:
        arrays = ring.arrays
        if self._task == "classification":
            k = arrays["conf"].shape[1]
            codes = preds.astype(np.int64)
            answered = codes >= 0  # a NaN prediction (code -1) is no answer to score
            flat = (truth.astype(np.int64) * k + codes)[answered]
            arrays["conf"][slot] += np.bincount(flat, minlength=k * k).reshape(k, k)
        else:
            p = preds.astype(np.float64)
            ok = np.isfinite(p)
            arrays["reg"][slot] = merge_regression(
                arrays["reg"][slot], regression_stats(truth[ok], p[ok])
            )

    def _encode_masked(self, values: np.ndarray, missing: np.ndarray | None) -> np.ndarray:
        """Class indices of ``values``, ``-1`` where a value is missing (no answer, no label)."""
        if missing is None:
            return self._encode(values)
        codes = np.full(values.shape[0], -1, dtype=np.int64)
        codes[~missing] = self._encode(values[~missing])
        return codes

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
            return np.asarray([self._class_code(scalar(v)) for v in values], dtype=np.int64)
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

    def _version_window(self, version: str) -> tuple[int, BucketRing]:
        """The tag and window of one version; a new version drops the least recently seen."""
        tag = self._version_tags.get(version)
        if tag is None:
            if len(self._version_tags) >= self.max_versions:
                dropped, old = self._version_tags.popitem(last=False)
                del self._version_rings[old]
                logger.info(
                    "%sstopped tracking version %r (max_versions=%d)",
                    self._label(),
                    dropped,
                    self.max_versions,
                )
            tag = self._next_tag
            self._next_tag += 1
            self._version_tags[version] = tag
            self._version_rings[tag] = self._new_ring()
        else:
            self._version_tags.move_to_end(version)
        ring = self._version_rings[tag]
        self._sync_arrays(ring)
        return tag, ring

    def _new_ring(self) -> BucketRing:
        """An empty ring with the arrays a version's metrics need."""
        ring = BucketRing(self.buckets)
        ring.add_array("n_pred", (), np.int64)
        ring.add_array("n_err", (), np.int64)
        ring.add_array("n_proba", (), np.int64)
        ring.add_array("n_nan_pred", (), np.int64)
        ring.add_array("latency", (LATENCY_EDGES.size + 1,), np.int64)
        self._sync_arrays(ring)
        return ring

    def _sync_arrays(self, ring: BucketRing) -> None:
        """Give a version's ring the quality arrays of the main ring, in the same shapes."""
        for name in ("conf", "expected", "reg"):
            main = self._ring.arrays.get(name)
            if main is None:
                continue
            mine = ring.arrays.get(name)
            if mine is None:
                ring.add_array(name, main.shape[1:], main.dtype)
            elif mine.shape != main.shape:
                ring.resize(name, main.shape[1:])

    def _version_metrics(self) -> dict[str, dict[str, float]]:
        """Each tracked version's metrics, when more than one version was seen."""
        if len(self._versions) < 2 and len(self._version_tags) < 2:
            return {}
        out = {}
        for version, tag in self._version_tags.items():
            ring = self._version_rings[tag]
            self._sync_arrays(ring)
            out[version] = self._metrics(ring)
        return out

    def _metrics(self, ring: BucketRing) -> dict[str, float]:
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
                out.update({f"estimated_{m}": est[m] for m in CLASS_METRICS})
        elif self._task == "regression" and "reg" in ring.arrays:
            acc = np.zeros(5)
            for row in ring.arrays["reg"][ring.active(cur)]:
                acc = merge_regression(acc, row)
            n_labelled = int(acc[0])
            out.update(regression_metrics(acc))
        out["n_predictions"] = n_pred
        out["n_labelled"] = n_labelled
        out["nan_prediction_rate"] = (
            int(ring.total("n_nan_pred", cur)) / n_pred if n_pred else math.nan
        )
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
        return "binary", self._class_code(scalar(label))

    def _drift(self) -> DriftResult:
        method = self._thresholds.drift or "psi"
        cur = self._current_key()
        psi_t, p_t = self._thresholds.psi, self._thresholds.p_value
        n_min = self.min_drift_samples
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
