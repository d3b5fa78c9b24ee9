"""What drift is measured against: the features' reference profile and the predictions' baseline.

`DriftReference` holds the reference sketches (fitted once from ``reference=`` rows, or
read from a [`Signature`][modeldeploy.Signature]), bins production rows into the same bins, and
compares the window's binned counts (kept per bucket by the monitor's windows) with them. The
predictions' baseline is given (``reference_predictions=``) or collected from the first
predictions logged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from modeldeploy.exceptions import SchemaError
from modeldeploy.monitoring.alerts import Thresholds
from modeldeploy.monitoring.drift import (
    DriftResult,
    FeatureDrift,
    ReferenceProfile,
    compare_categories,
)
from modeldeploy.registry.signature import Signature

__all__ = ["DriftReference"]

logger = logging.getLogger("modeldeploy.monitoring")


class DriftReference:
    """The drift baselines of one monitor.

    Parameters
    ----------
    sketch_bins, psi_bins
        Resolution of sketches fitted from rows: quantile bins for KS, and for PSI.
    collect_rows
        Predictions collected as the baseline of prediction drift when none was given.
    name
        The monitor's name, for logs.

    Examples
    --------
    >>> ref = DriftReference(collect_rows=4)
    >>> ref.collect(np.array([1.0, 2.0])) is None  # two of four
    True
    >>> ref.collect(np.array([3.0, 4.0])).tolist()  # complete: the baseline to set
    [1.0, 2.0, 3.0, 4.0]
    """

    def __init__(
        self,
        *,
        sketch_bins: int = 200,
        psi_bins: int = 10,
        collect_rows: int = 5_000,
        name: str | None = None,
    ) -> None:
        self.sketch_bins = sketch_bins
        self.psi_bins = psi_bins
        self.collect_rows = collect_rows
        self.name = name
        self.profile: ReferenceProfile | None = None
        self.pred_profile: ReferenceProfile | None = None
        self.pred_counts = np.zeros(0, dtype=np.float64)  # class predictions, by class code
        self.ready = False  # whether the predictions' baseline is set
        # whether that baseline was learned from the monitor's own first predictions (then
        # replicas each have their own, and their monitors cannot be merged)
        self.learned = False
        self._rows: list[np.ndarray] = []

    # ------------------------------------------------------------------ baselines

    def fit_features(self, reference: Any, signature: Signature | None) -> Signature:
        """Fit the features' sketch from reference rows; return the signature to validate with.

        Raises
        ------
        SchemaError
            When the rows are a DataFrame whose columns differ from ``signature``'s.
        """
        ref_sig = Signature.infer(reference, allow_nan=True)
        if signature is None:
            signature = ref_sig
        elif signature.names != ref_sig.names and ref_sig.input_type == "dataframe":
            raise SchemaError(
                f"The 'reference' columns {ref_sig.names} differ from the signature's "
                f"{signature.names}. Pass reference rows with the registered columns."
            )
        self.profile = ReferenceProfile.from_data(
            ref_sig.validate(reference), ref_sig, bins=self.sketch_bins, psi_bins=self.psi_bins
        )
        return signature

    def use_signature(self, signature: Signature) -> list[str]:
        """Take the features' sketch from a signature's profile; return the features without.

        Drift of a feature without a profile compares against nothing and never alerts.
        """
        self.profile = ReferenceProfile.from_signature(signature)
        return [f.name for f in signature.features if not f.profile.get("count")]

    def collect(self, rows: np.ndarray) -> np.ndarray | None:
        """Keep predictions for the baseline; all of them once there are enough, else ``None``."""
        self._rows.append(rows)
        have = sum(p.shape[0] for p in self._rows)
        if have < self.collect_rows:
            return None
        out = np.concatenate(self._rows)
        self._rows = []
        self.learned = True
        logger.info(
            "%s: the first %d predictions are the reference for prediction drift",
            self.name or "monitor",
            out.shape[0],
        )
        return out

    def set_classes(self, codes: np.ndarray) -> None:
        """Set the baseline of class predictions from their codes."""
        counts = np.bincount(codes)
        grown = np.zeros(max(self.pred_counts.size, counts.size))
        grown[: counts.size] = counts
        self.pred_counts = grown
        self.ready = True

    def set_numbers(self, rows: np.ndarray) -> int:
        """Set the baseline of numeric predictions; return the width of their bin counts."""
        self.pred_profile = ReferenceProfile.from_predictions(
            rows, numeric=True, bins=self.sketch_bins, psi_bins=self.psi_bins
        )
        self.ready = True
        return self.pred_profile.width

    def fit_classes(self, cap: int) -> None:
        """Make room for ``cap`` classes in the class baseline."""
        if self.pred_counts.size < cap:
            grown = np.zeros(cap)
            grown[: self.pred_counts.size] = self.pred_counts
            self.pred_counts = grown

    # ------------------------------------------------------------------ binning and comparing

    @property
    def width(self) -> tuple[int, int] | None:
        """``(features, bins)`` of the features' bin counts, without a profile ``None``."""
        if self.profile is None:
            return None
        return len(self.profile.sketches), self.profile.width

    def bin_features(self, X: np.ndarray) -> np.ndarray | None:
        """Validated feature rows as counts per feature and bin (``None`` without a profile)."""
        return None if self.profile is None else self.profile.bin(X)

    def bin_predictions(self, values: np.ndarray) -> np.ndarray | None:
        """Numeric predictions as counts per bin (``None`` without their baseline)."""
        if self.pred_profile is None:
            return None
        counts: np.ndarray = self.pred_profile.bin(values.reshape(-1, 1))[0]
        return counts

    def compare(
        self,
        total: Callable[[str], np.ndarray],
        *,
        n_classes: int | None,
        thresholds: Thresholds,
        min_samples: int,
    ) -> DriftResult:
        """Drift of the window's counts against the baselines.

        ``total(name)`` gives the window's sum of one counts array (``features``, ``pred``,
        ``pred_hist``, ``n_pred``); ``n_classes`` is the number of classes of a classifier
        (``None`` for a regressor or before the task is known).
        """
        method = thresholds.drift or "psi"
        psi_t, p_t = thresholds.psi, thresholds.p_value
        if self.profile is not None:
            result = self.profile.compare(
                total("features"),
                method=method,
                psi_threshold=psi_t,
                p_threshold=p_t,
                min_samples=min_samples,
            )
        else:
            result = DriftResult([], None, method=method, n_current=0)
        prediction: FeatureDrift | None = None
        if n_classes is not None and self.ready:
            k = n_classes
            prediction = compare_categories(
                "prediction",
                self.pred_counts[:k],
                total("pred")[:k],
                method=method,
                psi_threshold=psi_t,
                p_threshold=p_t,
                min_samples=min_samples,
            )
        elif self.pred_profile is not None:
            prediction = self.pred_profile.compare(
                total("pred_hist").reshape(1, -1),
                method=method,
                psi_threshold=psi_t,
                p_threshold=p_t,
                min_samples=min_samples,
            )["prediction"]
        result.prediction = prediction
        if not result.n_current:
            result.n_current = int(total("n_pred"))
        return result

    @property
    def collecting(self) -> bool:
        """Whether predictions are being collected as the baseline (some are held already)."""
        return bool(self._rows)

    def same_features(self, other: DriftReference) -> bool:
        """Whether both compare features against the same reference profile."""
        a, b = self.profile, other.profile
        return (a is None and b is None) or (
            a is not None and b is not None and a.to_dict() == b.to_dict()
        )

    def remapped(self, codes: np.ndarray, cap: int) -> DriftReference:
        """A copy whose class baseline is in new class codes (``codes[old] = new``)."""
        out = DriftReference(
            sketch_bins=self.sketch_bins,
            psi_bins=self.psi_bins,
            collect_rows=self.collect_rows,
            name=self.name,
        )
        out.profile, out.pred_profile = self.profile, self.pred_profile
        out.ready, out.learned = self.ready, self.learned
        counts = np.zeros(max(cap, self.pred_counts.size))
        n = min(self.pred_counts.size, codes.size)
        np.add.at(counts, codes[:n], self.pred_counts[:n])
        out.pred_counts = counts
        return out

    # ------------------------------------------------------------------ persistence

    def to_state(self) -> dict[str, Any]:
        """The sketches as dicts, the collected predictions as lists, ``ref_pred_counts``."""
        return {
            "profile": None if self.profile is None else self.profile.to_dict(),
            "pred_profile": None if self.pred_profile is None else self.pred_profile.to_dict(),
            "pred_reference_rows": [r.tolist() for r in self._rows],
            "pred_reference_ready": self.ready,
            "pred_reference_learned": self.learned or bool(self._rows),
            "ref_pred_counts": self.pred_counts,
        }

    @classmethod
    def from_state(
        cls,
        state: Mapping[str, Any],
        *,
        sketch_bins: int = 200,
        psi_bins: int = 10,
        collect_rows: int = 5_000,
        name: str | None = None,
    ) -> DriftReference:
        """Rebuild what `to_state` gave."""
        out = cls(sketch_bins=sketch_bins, psi_bins=psi_bins, collect_rows=collect_rows, name=name)
        if state["profile"] is not None:
            out.profile = ReferenceProfile.from_dict(state["profile"])
        if state["pred_profile"] is not None:
            out.pred_profile = ReferenceProfile.from_dict(state["pred_profile"])
        out._rows = [np.asarray(r) for r in state["pred_reference_rows"]]
        out.ready = bool(state["pred_reference_ready"])
        # files saved before the flag: a baseline set then may have been learned
        out.learned = bool(state.get("pred_reference_learned", out.ready))
        out.pred_counts = np.asarray(state["ref_pred_counts"]).astype(np.float64)
        return out
