"""Windowed metrics equal sklearn.metrics on the rows of the same window."""

from __future__ import annotations

import datetime as dt
import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn import metrics as skm

from modeldeploy.monitoring.metrics import (
    BucketRing,
    classification_metrics,
    merge_regression,
    regression_metrics,
    regression_stats,
)
from modeldeploy.monitoring.monitor import Monitor


def _window_rows(n: int, window: int, buckets: int) -> slice:
    """The rows a count-based window holds after n rows were logged."""
    size = window // buckets
    last = (n - 1) // size
    return slice(max(0, (last - buckets + 1) * size), n)


def _log_in_batches(mon: Monitor, y_pred: np.ndarray, y_true: np.ndarray, cuts: list[int]) -> None:
    bounds = sorted({0, len(y_pred), *(c % (len(y_pred) + 1) for c in cuts)})
    for a, b in itertools.pairwise(bounds):
        if b > a:
            mon.log_predictions(None, y_pred[a:b], y_true=y_true[a:b])


labels_st = st.lists(st.tuples(st.integers(0, 1), st.integers(0, 1)), min_size=1, max_size=300)


@settings(max_examples=60, deadline=None)
@given(
    pairs=labels_st,
    window=st.integers(1, 120),
    buckets=st.integers(1, 6),
    cuts=st.lists(st.integers(0, 400), max_size=8),
)
def test_binary_window_metrics_equal_sklearn_on_same_rows(
    pairs: list[tuple[int, int]], window: int, buckets: int, cuts: list[int]
) -> None:
    buckets = min(buckets, window)
    y_true = np.array([p[0] for p in pairs])
    y_pred = np.array([p[1] for p in pairs])
    mon = Monitor(window=window, buckets=buckets, task="classification", thresholds={})
    _log_in_batches(mon, y_pred, y_true, cuts)
    rows = _window_rows(len(pairs), window, buckets)
    t, p = y_true[rows], y_pred[rows]
    got = mon.metrics()
    assert got["n_labelled"] == len(t)
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(t, p))
    assert got["precision"] == pytest.approx(skm.precision_score(t, p, zero_division=0))
    assert got["recall"] == pytest.approx(skm.recall_score(t, p, zero_division=0))
    assert got["f1"] == pytest.approx(skm.f1_score(t, p, zero_division=0))


@settings(max_examples=60, deadline=None)
@given(
    pairs=st.lists(st.tuples(st.integers(0, 4), st.integers(0, 4)), min_size=1, max_size=300),
    window=st.integers(5, 150),
    buckets=st.integers(1, 5),
    cuts=st.lists(st.integers(0, 400), max_size=8),
)
def test_multiclass_window_metrics_equal_sklearn_for_every_average(
    pairs: list[tuple[int, int]], window: int, buckets: int, cuts: list[int]
) -> None:
    y_true = np.array([p[0] for p in pairs])
    y_pred = np.array([p[1] for p in pairs])
    mon = Monitor(window=window, buckets=buckets, average="macro", thresholds={})
    _log_in_batches(mon, y_pred, y_true, cuts)
    rows = _window_rows(len(pairs), window, buckets)
    t, p = y_true[rows], y_pred[rows]
    got = mon.metrics()
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(t, p))
    for average in ("macro", "weighted", "micro"):
        for name, fn in (
            ("precision", skm.precision_score),
            ("recall", skm.recall_score),
            ("f1", skm.f1_score),
        ):
            expected = fn(t, p, average=average, zero_division=0)
            assert got[f"{name}_{average}"] == pytest.approx(expected), (name, average)
    assert got["f1"] == got["f1_macro"]


@settings(max_examples=60, deadline=None)
@given(
    pairs=st.lists(
        st.tuples(
            st.floats(-1e3, 1e3, allow_nan=False, allow_subnormal=False),
            st.floats(-1e3, 1e3, allow_nan=False, allow_subnormal=False),
        ),
        min_size=1,
        max_size=300,
    ),
    window=st.integers(1, 150),
    buckets=st.integers(1, 5),
    cuts=st.lists(st.integers(0, 400), max_size=8),
)
def test_regression_window_metrics_equal_sklearn(
    pairs: list[tuple[float, float]], window: int, buckets: int, cuts: list[int]
) -> None:
    buckets = min(buckets, window)
    y_true = np.array([p[0] for p in pairs])
    y_pred = np.array([p[1] for p in pairs])
    mon = Monitor(window=window, buckets=buckets, task="regression", thresholds={})
    _log_in_batches(mon, y_pred, y_true, cuts)
    rows = _window_rows(len(pairs), window, buckets)
    t, p = y_true[rows], y_pred[rows]
    got = mon.metrics()
    assert got["mae"] == pytest.approx(skm.mean_absolute_error(t, p), rel=1e-9, abs=1e-9)
    mse = skm.mean_squared_error(t, p)
    assert got["mse"] == pytest.approx(mse, rel=1e-9, abs=1e-9)
    assert got["rmse"] == pytest.approx(math.sqrt(mse), rel=1e-9, abs=1e-9)
    if len(t) >= 2 and np.var(t) > 1e-6:
        assert got["r2"] == pytest.approx(skm.r2_score(t, p), rel=1e-6, abs=1e-6)
    elif len(t) < 2:
        assert got["r2"] is None


def test_string_labels_use_the_largest_label_as_positive_by_default() -> None:
    y_true = np.array(["no", "yes", "yes", "no", "yes"])
    y_pred = np.array(["no", "yes", "no", "no", "yes"])
    mon = Monitor(window=100, thresholds={})
    mon.log_predictions(None, y_pred, y_true=y_true)
    assert mon.metrics()["recall"] == pytest.approx(
        skm.recall_score(y_true, y_pred, pos_label="yes")
    )
    mon2 = Monitor(window=100, pos_label="no", thresholds={})
    mon2.log_predictions(None, y_pred, y_true=y_true)
    assert mon2.metrics()["recall"] == pytest.approx(
        skm.recall_score(y_true, y_pred, pos_label="no")
    )


def test_time_window_keeps_only_recent_buckets() -> None:
    now = [1_000.0]
    mon = Monitor(window=dt.timedelta(seconds=100), buckets=10, thresholds={}, clock=lambda: now[0])
    mon.log_predictions(None, np.zeros(50, dtype=int), y_true=np.ones(50, dtype=int))
    now[0] += 50
    mon.log_predictions(None, np.ones(30, dtype=int), y_true=np.ones(30, dtype=int))
    assert mon.metrics()["accuracy"] == pytest.approx(30 / 80)
    now[0] += 60  # the first batch (110 s old) has left the 100 s window
    got = mon.metrics()
    assert got["n_labelled"] == 30
    assert got["accuracy"] == 1.0
    now[0] += 200
    assert mon.metrics()["n_labelled"] == 0
    assert mon.metrics()["accuracy"] is None


def test_classification_metrics_of_an_empty_window_are_nan() -> None:
    got = classification_metrics(np.zeros((2, 2)), average="binary", pos_index=1)
    assert all(math.isnan(v) for v in got.values())


def test_regression_accumulators_merge_like_one_pass() -> None:
    rng = np.random.default_rng(3)
    y, p = rng.normal(50, 2, 1000), rng.normal(50, 2, 1000)
    acc = np.zeros(5)
    for a in range(0, 1000, 37):
        acc = merge_regression(acc, regression_stats(y[a : a + 37], p[a : a + 37]))
    got = regression_metrics(acc)
    assert got["r2"] == pytest.approx(skm.r2_score(y, p), rel=1e-12)
    assert got["mae"] == pytest.approx(skm.mean_absolute_error(y, p), rel=1e-12)


def test_bucket_ring_drops_buckets_that_left_the_window() -> None:
    ring = BucketRing(2)
    ring.add_array("n", (), np.int64)
    for key in range(5):
        slot = ring.slot(key)
        assert slot is not None
        ring.arrays["n"][slot] += key
    assert int(ring.total("n", current=4)) == 3 + 4
    assert ring.slot(1) is None  # older than what its slot holds now


def test_bool_labels_equal_sklearn() -> None:
    rng = np.random.default_rng(8)
    x = rng.normal(size=500)
    y_true, y_pred = x > 0.1, x + rng.normal(0, 0.3, 500) > 0
    mon = Monitor(window=500, thresholds={})
    mon.log_predictions(None, y_pred, y_true=y_true)
    assert mon.metrics()["f1"] == pytest.approx(skm.f1_score(y_true, y_pred))
    assert mon.metrics()["precision"] == pytest.approx(skm.precision_score(y_true, y_pred))
