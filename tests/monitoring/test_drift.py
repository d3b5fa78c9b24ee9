"""Drift statistics against the sketch equal numpy / scipy computed on the same data."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from modeldeploy.exceptions import DriftWarning
from modeldeploy.monitoring.drift import ReferenceProfile, compare_categories, psi
from modeldeploy.monitoring.monitor import Monitor
from modeldeploy.registry.signature import Feature, Signature


def _numpy_psi(ref: np.ndarray, cur: np.ndarray, bins: int = 10) -> float:
    """The textbook PSI: decile edges of the reference, open outer bins, 1e-4 floor."""
    interior = np.unique(np.quantile(ref, np.linspace(0, 1, bins + 1)))[1:-1]
    r = np.bincount(np.searchsorted(interior, ref, side="right"), minlength=interior.size + 1)
    c = np.bincount(np.searchsorted(interior, cur, side="right"), minlength=interior.size + 1)
    rp = np.maximum(r / r.sum(), 1e-4)
    cp = np.maximum(c / c.sum(), 1e-4)
    return float(np.sum((cp - rp) * np.log(cp / rp)))


@pytest.mark.parametrize("shift", [0.0, 0.05, 0.3, 1.0])
def test_psi_and_ks_equal_numpy_and_scipy_on_raw_reference(shift: float) -> None:
    rng = np.random.default_rng(7)
    ref = np.column_stack([rng.normal(size=20_000), rng.exponential(size=20_000)])
    cur = np.column_stack([rng.normal(shift, 1, 5_000), rng.exponential(1 + shift, 5_000)])
    mon = Monitor(reference=ref, window=5_000, sketch_bins=1000, thresholds={"drift": "ks"})
    mon.log_predictions(cur, np.zeros(5_000))
    result = mon.drift()
    for j, name in enumerate(["x0", "x1"]):
        got = result[name]
        assert got.psi == pytest.approx(_numpy_psi(ref[:, j], cur[:, j]), rel=1e-9, abs=1e-12)
        exact = stats.ks_2samp(ref[:, j], cur[:, j], method="asymp")
        # Evaluated at 1,000 reference quantile edges: a lower bound within a bin's mass.
        assert exact.statistic - 0.004 <= got.statistic <= exact.statistic + 1e-12
        assert got.n_reference == 20_000
        assert got.n_current == 5_000
        if exact.pvalue > 1e-6:
            assert got.p_value == pytest.approx(exact.pvalue, rel=0.5)


@settings(max_examples=40, deadline=None)
@given(
    ref=st.lists(st.integers(-5, 5), min_size=5, max_size=300),
    cur=st.lists(st.integers(-8, 8), min_size=5, max_size=300),
)
def test_ks_on_discrete_data_equals_scipy_exactly(ref: list[int], cur: list[int]) -> None:
    # With at most 11 distinct values every value is an edge of the sketch, so no bin hides a
    # gap and the statistic (and the asymptotic p-value) must equal scipy's.
    r = np.asarray(ref, dtype=np.float64).reshape(-1, 1)
    c = np.asarray(cur, dtype=np.float64).reshape(-1, 1)
    profile = ReferenceProfile.from_data(r, Signature.infer(r), bins=200)
    got = profile.compare(profile.bin(c), method="ks")["x0"]
    exact = stats.ks_2samp(r[:, 0], c[:, 0], method="asymp")
    assert got.statistic == pytest.approx(exact.statistic, abs=1e-12)
    if exact.pvalue > 2e-3:
        assert got.p_value == pytest.approx(exact.pvalue, rel=1e-9)
    else:  # the far tail uses the limiting distribution (see ks_pvalue)
        assert got.p_value == pytest.approx(exact.pvalue, rel=0.5, abs=1e-12)


def test_chi2_for_categorical_features_equals_scipy() -> None:
    rng = np.random.default_rng(1)
    ref = rng.choice(["a", "b", "c"], size=3_000, p=[0.5, 0.3, 0.2]).astype(object)
    cur = rng.choice(["a", "b", "c", "d"], size=1_000, p=[0.4, 0.3, 0.2, 0.1]).astype(object)
    X_ref = ref.reshape(-1, 1)
    profile = ReferenceProfile.from_data(X_ref, Signature.infer(X_ref))
    got = profile.compare(profile.bin(cur.reshape(-1, 1)), method="ks")["x0"]
    table = np.array(
        [[np.sum(ref == k) for k in "abcd"], [np.sum(cur == k) for k in "abcd"]], dtype=float
    )
    expected = stats.chi2_contingency(table, correction=False)
    assert got.test == "chi2"
    assert got.statistic == pytest.approx(expected.statistic, rel=1e-9)
    assert got.p_value == pytest.approx(expected.pvalue, rel=1e-6, abs=1e-300)
    assert got.drifted  # a new category "d" at 10% is real drift


def test_psi_function_matches_formula() -> None:
    r, c = np.array([10.0, 30.0, 60.0]), np.array([20.0, 30.0, 50.0])
    rp, cp = r / r.sum(), c / c.sum()
    assert psi(r, c) == pytest.approx(float(np.sum((cp - rp) * np.log(cp / rp))))


def test_signature_profile_catches_a_shift_and_ignores_noise() -> None:
    rng = np.random.default_rng(2)
    sig = Signature.infer(rng.normal(size=(50_000, 3)))
    mon = Monitor(signature=sig, window=10_000, thresholds={"drift": "ks"})
    same = rng.normal(size=(10_000, 3))
    mon.log_predictions(same, np.zeros(10_000))
    assert mon.drift().drifted == []
    shifted = rng.normal(size=(10_000, 3))
    shifted[:, 2] += 0.2
    mon.log_predictions(shifted, np.zeros(10_000))
    result = mon.drift()
    assert result.drifted == ["x2"]
    assert result["x2"].n_reference == 50_000


def test_psi_alerting_misses_a_small_shift_that_ks_catches() -> None:
    rng = np.random.default_rng(4)
    ref = rng.normal(size=(50_000, 1))
    cur = rng.normal(0.1, 1, size=(50_000, 1))
    by_psi = Monitor(reference=ref, window=50_000, thresholds={"drift": "psi"})
    by_ks = Monitor(reference=ref, window=50_000, thresholds={"drift": "ks"})
    for mon in (by_psi, by_ks):
        mon.log_predictions(cur, np.zeros(50_000))
    assert by_psi.drift().drifted == []
    assert by_ks.drift().drifted == ["x0"]


def test_prediction_drift_uses_reference_predictions_or_the_first_window() -> None:
    rng = np.random.default_rng(5)
    first = rng.integers(0, 2, 1_000)
    mon = Monitor(window=1_000, thresholds={"drift": "ks"})
    mon.log_predictions(None, first)
    before = mon.drift().prediction
    assert before is not None and before.n_current == 0  # the first window is the reference
    mon.log_predictions(None, (rng.random(1_000) < 0.8).astype(int))
    pred = mon.drift().prediction
    assert pred is not None and pred.test == "chi2" and pred.drifted
    counts = np.bincount(first, minlength=2)
    assert pred.n_reference == counts.sum()

    reg = Monitor(reference_predictions=rng.normal(size=5_000), window=2_000, task="regression")
    reg.log_predictions(None, rng.normal(0.5, 1, 2_000))
    pred = reg.drift().prediction
    assert pred is not None and pred.test == "ks" and pred.drifted


def test_compare_categories_equals_scipy_chi2() -> None:
    got = compare_categories("p", [300, 700], [420, 580], method="ks")
    expected = stats.chi2_contingency(np.array([[300, 700], [420, 580]]), correction=False)
    assert got.statistic == pytest.approx(expected.statistic)
    assert got.p_value == pytest.approx(expected.pvalue)


def test_signature_without_profile_warns_with_drift_warning() -> None:
    sig = Signature([Feature("a", "float64", "numeric")])
    with pytest.warns(DriftWarning, match="no reference profile"):
        Monitor(signature=sig)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Monitor(signature=Signature.infer(np.ones((3, 1))))  # a profile: no warning
