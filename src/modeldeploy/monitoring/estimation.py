"""Performance estimated from predicted probabilities, before labels arrive.

Confidence-based performance estimation (CBPE, as NannyML names it): when a classifier's
probabilities are calibrated, the probability that a row predicted as class ``j`` truly belongs to
class ``i`` is the row's probability for ``i``. Summing those probabilities gives the *expected*
confusion matrix of the window, and the usual metrics of that matrix estimate the realized ones.
The estimate is only as good as the calibration: `ProbabilityCalibrator` recalibrates the
probabilities on reference rows whose labels are known (isotonic regression, one class against
the rest), and it cannot see a change in the relation between features and labels (concept drift).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["ProbabilityCalibrator", "expected_confusion"]


def expected_confusion(
    pred_codes: npt.NDArray[np.int64], proba: npt.NDArray[np.float64], n_classes: int
) -> npt.NDArray[np.float64]:
    """Expected ``(n_classes, n_classes)`` confusion matrix, rows true and columns predicted.

    Parameters
    ----------
    pred_codes
        Index of the predicted class of each row.
    proba
        ``(n_rows, n_classes)`` probabilities, columns in class-index order.
    n_classes
        Size of the matrix.

    Examples
    --------
    >>> expected_confusion(np.array([1, 0]), np.array([[0.2, 0.8], [0.9, 0.1]]), 2).tolist()
    [[0.9, 0.2], [0.1, 0.8]]
    """
    out = np.zeros((n_classes, n_classes))
    k = proba.shape[1]
    for j in np.unique(pred_codes):
        out[:k, j] = proba[pred_codes == j].sum(axis=0)
    return out


class ProbabilityCalibrator:
    """Isotonic recalibration of class probabilities, one class against the rest.

    Parameters
    ----------
    proba
        ``(n_rows, n_classes)`` reference probabilities.
    labels
        Index of the true class of each reference row.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> p = rng.random(2000)
    >>> y = (rng.random(2000) < p ** 2).astype(int)          # the model is over-confident
    >>> cal = ProbabilityCalibrator(np.column_stack([1 - p, p]), y)
    >>> round(float(cal.transform(np.array([[0.5, 0.5]]))[0, 1]), 1)
    0.3
    """

    def __init__(self, proba: npt.ArrayLike, labels: Sequence[int] | npt.NDArray[Any]) -> None:
        from sklearn.isotonic import IsotonicRegression

        p = np.asarray(proba, dtype=np.float64)
        y = np.asarray(labels)
        self.n_classes = p.shape[1]
        # Keep only the fitted step points: transform is np.interp over them (what
        # IsotonicRegression.predict does), and they save as plain lists.
        self.points: list[tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]] = []
        for k in range(self.n_classes):
            iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
            iso.fit(p[:, k], (y == k).astype(np.float64))
            self.points.append(
                (
                    np.asarray(iso.X_thresholds_, np.float64),
                    np.asarray(iso.y_thresholds_, np.float64),
                )
            )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict; `from_dict` reads it back."""
        return {"points": [[x.tolist(), y.tolist()] for x, y in self.points]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProbabilityCalibrator:
        """Rebuild a calibrator from `to_dict` output."""
        self = cls.__new__(cls)
        self.points = [
            (np.asarray(x, np.float64), np.asarray(y, np.float64)) for x, y in data["points"]
        ]
        self.n_classes = len(self.points)
        return self

    def transform(self, proba: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """Calibrated probabilities, renormalized so that each row sums to 1."""
        p = np.asarray(proba, dtype=np.float64)
        out = np.column_stack([np.interp(p[:, k], x, y) for k, (x, y) in enumerate(self.points)])
        sums = out.sum(axis=1, keepdims=True)
        # A row the calibrators map to all zeros keeps its raw probabilities.
        return np.where(sums > 0, out / np.where(sums > 0, sums, 1.0), p)
