"""DriftReference: the drift baselines, alone, and their state."""

from __future__ import annotations

import numpy as np

from modeldeploy.monitoring._reference import DriftReference
from modeldeploy.monitoring.alerts import Thresholds


def test_features_binned_like_the_reference_do_not_drift() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(2000, 2))
    ref = DriftReference(sketch_bins=50, psi_bins=10)
    sig = ref.fit_features(X, None)
    counts = ref.bin_features(sig.validate(rng.normal(size=(2000, 2))))
    assert counts is not None
    totals = {"features": counts, "n_pred": np.asarray(2000)}
    result = ref.compare(
        totals.__getitem__, n_classes=None, thresholds=Thresholds.parse({}, "t"), min_samples=10
    )
    assert result.drifted == [] and result.n_current == 2000


def test_the_class_baseline_grows_with_the_classes() -> None:
    ref = DriftReference()
    ref.set_classes(np.array([0, 1, 1]))
    ref.fit_classes(4)
    assert ref.ready and ref.pred_counts.tolist() == [1.0, 2.0, 0.0, 0.0]


def test_state_round_trip_keeps_profiles_and_collected_rows() -> None:
    ref = DriftReference(collect_rows=10)
    ref.fit_features(np.arange(40.0).reshape(20, 2), None)
    assert ref.collect(np.array([1.0, 2.0])) is None
    back = DriftReference.from_state(ref.to_state(), collect_rows=10)
    assert back.width == ref.width and not back.ready
    assert back.collect(np.arange(8.0)) is not None  # the two kept rows count
