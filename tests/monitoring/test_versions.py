"""Per-version windows (canary traffic into one monitor), the running label total, import cost."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn import metrics as skm

from modeldeploy.monitoring.monitor import Monitor

_QUALITY = ("accuracy", "precision", "recall", "f1", "f1_macro", "f1_weighted")


def _sklearn(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    return {
        "accuracy": skm.accuracy_score(y_true, y_pred),
        "precision": skm.precision_score(y_true, y_pred, zero_division=0),
        "recall": skm.recall_score(y_true, y_pred, zero_division=0),
        "f1": skm.f1_score(y_true, y_pred, zero_division=0),
        "f1_macro": skm.f1_score(y_true, y_pred, average="macro", zero_division=0),
        "f1_weighted": skm.f1_score(y_true, y_pred, average="weighted", zero_division=0),
    }


def _canary(seed: int, n: int, window: int, buckets: int) -> tuple[Monitor, dict[str, np.ndarray]]:
    """Two versions' batches interleaved, labels by id later in shuffled chunks."""
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, 2, n)
    which = np.where(rng.random(n) < 0.3, 1, 0)  # 30% canary traffic, row by row
    # the canary is worse: it flips 30% of the labels, the champion 10%
    flip = rng.random(n) < np.where(which == 1, 0.3, 0.1)
    y_pred = np.where(flip, 1 - y_true, y_true)
    mon = Monitor(window=window, buckets=buckets, thresholds={})
    cuts = np.flatnonzero(np.diff(which)) + 1
    for seg in np.split(np.arange(n), cuts):  # each run of one version is one batch
        version = "churn:9" if which[seg[0]] else "churn:8"
        mon.log_predictions(None, y_pred[seg], ids=[f"r{i}" for i in seg], version=version)
    order = rng.permutation(n)
    for chunk in np.array_split(order, 9):
        mon.log_labels([f"r{i}" for i in chunk], y_true[chunk])
    return mon, {"y_true": y_true, "y_pred": y_pred, "which": which}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_each_version_metrics_equal_sklearn_on_its_own_rows(seed: int) -> None:
    mon, d = _canary(seed, 3_000, window=10_000, buckets=10)
    assert sorted(mon.versions()) == ["churn:8", "churn:9"]
    overall = mon.metrics()
    expected = _sklearn(d["y_true"], d["y_pred"])
    for key in _QUALITY:
        assert overall[key] == pytest.approx(expected[key])
    assert overall["n_labelled"] == 3_000
    for version, flag in (("churn:8", 0), ("churn:9", 1)):
        rows = d["which"] == flag
        got = mon.metrics(version=version)
        assert set(got) == set(overall)
        assert got["n_predictions"] == rows.sum()
        assert got["n_labelled"] == rows.sum()
        expected = _sklearn(d["y_true"][rows], d["y_pred"][rows])
        for key in _QUALITY:
            assert got[key] == pytest.approx(expected[key])
    # the two versions really differ, so a mix-up would show
    worse, better = (mon.metrics(version=f"churn:{v}")["accuracy"] for v in (9, 8))
    assert worse is not None and better is not None and worse < better


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(1, 1_500),
    window=st.integers(20, 800),
    buckets=st.integers(1, 10),
)
def test_version_windows_slide_with_the_main_window(
    seed: int, n: int, window: int, buckets: int
) -> None:
    buckets = min(buckets, window)
    mon, d = _canary(seed, n, window=window, buckets=buckets)
    size = window // buckets
    key = np.arange(n) // size
    inside = key > key[-1] - buckets
    labelled_in = inside  # labels for rows outside the window are late and dropped
    for version, flag in (("churn:8", 0), ("churn:9", 1)):
        rows = (d["which"] == flag) & inside
        got = mon.metrics(version=version)
        assert got["n_predictions"] == rows.sum()
        assert got["n_labelled"] == (rows & labelled_in).sum()
        if rows.sum():
            expected = _sklearn(d["y_true"][rows], d["y_pred"][rows])
            for k in _QUALITY:
                assert got[k] == pytest.approx(expected[k])
        else:
            assert got["accuracy"] is None
    all_rows = mon.metrics()
    assert all_rows["n_predictions"] == inside.sum()
    assert all_rows["accuracy"] == pytest.approx(
        skm.accuracy_score(d["y_true"][inside], d["y_pred"][inside])
    )


def test_errors_and_latency_are_counted_per_version() -> None:
    mon = Monitor(window=10_000, thresholds={})
    for _ in range(50):
        mon.log_predictions(None, np.zeros(10, dtype=int), version="m:1", latency_s=0.010)
        mon.log_predictions(None, np.zeros(10, dtype=int), version="m:2", latency_s=0.200)
    for _ in range(5):
        mon.log_error(TimeoutError("slow"), version="m:2")
    mon.log_error(ValueError("bad row"), version="m:1")
    one, two, both = mon.metrics(version="m:1"), mon.metrics(version="m:2"), mon.metrics()
    assert one["error_rate"] == pytest.approx(1 / 501)
    assert two["error_rate"] == pytest.approx(5 / 505)
    assert both["error_rate"] == pytest.approx(6 / 1006)
    assert one["latency_p99"] == pytest.approx(0.010, rel=0.07)
    assert two["latency_p50"] == pytest.approx(0.200, rel=0.07)
    assert both["latency_p99"] == pytest.approx(0.200, rel=0.07)


def test_single_row_calls_of_two_versions_keep_their_versions() -> None:
    rng = np.random.default_rng(4)
    y_pred, y_true = rng.integers(0, 2, 600), rng.integers(0, 2, 600)
    versions = np.where(rng.random(600) < 0.5, "a:1", "a:2")
    mon = Monitor(window=1_000, thresholds={})
    for i in range(600):
        mon.log_predictions(None, int(y_pred[i]), ids=i, version=str(versions[i]))
    mon.log_labels(list(range(600)), y_true)
    for v in ("a:1", "a:2"):
        rows = versions == v
        got = mon.metrics(version=v)
        assert got["n_labelled"] == rows.sum()
        assert got["f1"] == pytest.approx(skm.f1_score(y_true[rows], y_pred[rows]))


def test_an_unknown_version_has_no_rows_and_the_same_keys() -> None:
    mon = Monitor(window=100, thresholds={})
    mon.log_predictions(None, np.array([0, 1]), y_true=np.array([0, 1]), version="m:1")
    got = mon.metrics(version="m:404")
    assert set(got) == set(mon.metrics())
    assert got["n_predictions"] == 0 and got["n_labelled"] == 0
    assert got["f1"] is None and got["error_rate"] is None
    assert mon.versions() == ["m:1"]


def test_at_most_max_versions_are_tracked_least_recently_seen_dropped() -> None:
    mon = Monitor(window=1_000, max_versions=2, thresholds={})
    mon.log_predictions(None, np.array([1, 1]), ids=["a1", "a2"], version="v:1")
    mon.log_predictions(None, np.array([1]), ids=["b1"], version="v:2")
    mon.log_predictions(None, np.array([0]), ids=["a3"], version="v:1")  # v:1 seen again
    mon.log_predictions(None, np.array([1]), ids=["c1"], version="v:3")  # drops v:2
    assert mon.versions() == ["v:1", "v:3"]
    mon.log_predictions(None, np.array([0]), ids=["b2"], version="v:2")  # drops v:1, v:2 anew
    assert mon.versions() == ["v:3", "v:2"]
    mon.log_labels(["a1", "b1", "b2", "c1"], [1, 1, 0, 1])
    # b1 was logged under the dropped window of v:2: it counts overall, not in the new one
    assert mon.metrics()["n_labelled"] == 4
    assert mon.metrics(version="v:2")["n_labelled"] == 1
    assert mon.metrics(version="v:2")["accuracy"] == 1.0
    assert mon.metrics(version="v:1")["n_predictions"] == 0
    assert mon.report().to_dict()["versions"] == {"v:1": 3, "v:2": 2, "v:3": 1}


def test_version_windows_hold_bounded_memory() -> None:
    mon = Monitor(window=1_000, max_versions=3, thresholds={})
    for i in range(200):
        mon.log_predictions(None, np.array([0, 1]), ids=[i, -i - 1], version=f"m:{i}")
    assert len(mon.versions()) == 3
    assert len(mon._windows.tracked()) == 3  # the rings of older versions were dropped


def test_report_lists_each_version_when_more_than_one_was_seen() -> None:
    mon, _ = _canary(5, 1_000, window=2_000, buckets=4)
    data = mon.report().to_dict()
    per_version = data["version_metrics"]
    assert set(per_version) == {"churn:8", "churn:9"}
    assert per_version["churn:9"] == mon.metrics(version="churn:9")
    json.dumps(data)
    html = mon.report()._repr_html_()
    assert "Per version" in html and "churn:9" in html
    single = Monitor(window=100, thresholds={})
    single.log_predictions(None, np.array([1]), y_true=np.array([1]), version="only:1")
    assert single.report().to_dict()["version_metrics"] == {}
    assert "Per version" not in single.report()._repr_html_()


def test_regression_metrics_per_version_equal_sklearn() -> None:
    rng = np.random.default_rng(8)
    y = rng.normal(size=2_000)
    which = rng.random(2_000) < 0.5
    pred = y + np.where(which, rng.normal(0, 0.5, 2_000), rng.normal(0, 0.1, 2_000))
    mon = Monitor(window=5_000, task="regression", thresholds={})
    for seg in np.array_split(np.arange(2_000), 40):
        for flag, v in ((True, "r:2"), (False, "r:1")):
            rows = seg[which[seg] == flag]
            mon.log_predictions(None, pred[rows], ids=rows.tolist(), version=v)
    mon.log_labels(list(range(2_000)), y)
    for flag, v in ((True, "r:2"), (False, "r:1")):
        got = mon.metrics(version=v)
        assert got["mae"] == pytest.approx(
            skm.mean_absolute_error(y[which == flag], pred[which == flag])
        )
        assert got["r2"] == pytest.approx(skm.r2_score(y[which == flag], pred[which == flag]))


def test_save_and_load_keep_version_windows_and_where_pending_labels_go(tmp_path: Path) -> None:
    mon, d = _canary(6, 1_500, window=5_000, buckets=5)
    mon.log_predictions(None, np.array([1, 0]), ids=["late-a", "late-b"], version="churn:9")
    mon.log_predictions(None, np.array([1]), ids=["late-c"], version="churn:8")
    back = Monitor.load(mon.save(tmp_path / "mon.npz"))
    assert back.versions() == mon.versions()
    for m in (mon, back):
        m.log_labels(["late-a", "late-b", "late-c"], [1, 1, 1])
    for v in ("churn:8", "churn:9", None):
        assert back.metrics(version=v) == mon.metrics(version=v)
    assert back.metrics(version="churn:9")["n_labelled"] == (d["which"] == 1).sum() + 2


def test_many_threads_logging_two_versions_lose_nothing() -> None:
    rng = np.random.default_rng(12)
    y_pred, y_true = rng.integers(0, 2, 40_000), rng.integers(0, 2, 40_000)
    mon = Monitor(window=100_000, thresholds={})
    parts = np.array_split(np.arange(40_000), 8)

    def work(t: int, idx: np.ndarray) -> None:
        version = f"m:{t % 2}"
        for chunk in np.array_split(idx, 50):
            mon.log_predictions(None, y_pred[chunk], ids=chunk.tolist(), version=version)
            mon.log_labels(chunk.tolist(), y_true[chunk])

    threads = [threading.Thread(target=work, args=(t, p)) for t, p in enumerate(parts)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    for v in (0, 1):
        rows = np.concatenate([p for t, p in enumerate(parts) if t % 2 == v])
        got = mon.metrics(version=f"m:{v}")
        assert got["n_labelled"] == rows.size
        assert got["f1"] == pytest.approx(skm.f1_score(y_true[rows], y_pred[rows]))


# ---------------------------------------------------------------------- labels_total


def test_labels_total_counts_every_attached_label_and_survives_the_window_sliding() -> None:
    mon = Monitor(window=100, buckets=2, thresholds={})
    mon.log_predictions(None, np.zeros(30, dtype=int), y_true=np.ones(30, dtype=int))
    mon.log_predictions(None, np.zeros(20, dtype=int), ids=list(range(20)))
    assert mon.label_stats()["labels_total"] == 30
    out = mon.log_labels([0, 1, 2, 2, "nope"], [1, 1, 1, 1, 1])
    assert "total" not in out
    assert mon.label_stats()["labels_total"] == 33  # the duplicate and the unknown do not count
    mon.log_predictions(None, np.zeros(500, dtype=int))  # the window slides past all of it
    assert mon.metrics()["n_labelled"] == 0
    mon.log_labels([3, 4], [0, 0])  # late: their bucket is gone, but they were attached
    stats = mon.label_stats()
    assert stats["labels_late"] == 2
    assert stats["labels_total"] == 35
    mon.log_predictions(None, np.zeros(5, dtype=int), y_true=np.zeros(5, dtype=int))
    assert mon.label_stats()["labels_total"] == 40


def test_labels_total_survives_save_and_load(tmp_path: Path) -> None:
    mon = Monitor(window=100, thresholds={})
    mon.log_predictions(None, np.zeros(7, dtype=int), y_true=np.ones(7, dtype=int))
    assert Monitor.load(mon.save(tmp_path / "m.npz")).label_stats()["labels_total"] == 7


# ---------------------------------------------------------------------- import cost


def test_importing_modeldeploy_does_not_import_scipy_stats() -> None:
    out = subprocess.run(
        [sys.executable, "-c", "import modeldeploy, sys; print('scipy.stats' in sys.modules)"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert out.stdout.strip() == "False"


def test_time_window_per_version_drops_buckets_that_left_the_window() -> None:
    t = [1_000_000.0]
    mon = Monitor(window=dt.timedelta(minutes=10), buckets=10, thresholds={}, clock=lambda: t[0])
    mon.log_predictions(None, np.array([1, 1, 1]), y_true=np.array([1, 1, 1]), version="v:1")
    mon.log_predictions(None, np.array([0, 0]), y_true=np.array([1, 1]), version="v:2")
    t[0] += 8 * 60
    mon.log_predictions(None, np.array([0]), y_true=np.array([0]), version="v:1")
    assert mon.metrics(version="v:1")["n_labelled"] == 4
    t[0] += 5 * 60  # the first bucket has left the window
    assert mon.metrics(version="v:1")["n_labelled"] == 1
    assert mon.metrics(version="v:2")["n_predictions"] == 0
    assert mon.metrics()["n_predictions"] == 1


def test_estimated_performance_is_reported_per_version() -> None:
    rng = np.random.default_rng(13)
    p1 = rng.uniform(0, 1, 1_200)
    proba = np.column_stack([1 - p1, p1])
    y_pred = (p1 > 0.5).astype(int)
    which = rng.random(1_200) < 0.5
    mon = Monitor(window=5_000, classes=[0, 1], thresholds={})
    for seg in np.array_split(np.arange(1_200), 12):
        for flag, v in ((True, "p:2"), (False, "p:1")):
            rows = seg[which[seg] == flag]
            mon.log_predictions(None, y_pred[rows], y_proba=proba[rows], version=v)
    for flag, v in ((True, "p:2"), (False, "p:1")):
        rows = which == flag
        # expected accuracy: the mean probability of the predicted class
        expected = proba[rows].max(axis=1).mean()
        assert mon.metrics(version=v)["estimated_accuracy"] == pytest.approx(expected)
