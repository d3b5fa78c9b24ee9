"""Labels that arrive before their predictions (a deployer hands predictions over off the hot
path, so ``predict`` followed at once by ``log_labels`` races it)."""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
from pathlib import Path

import numpy as np
import pytest
from sklearn import metrics as skm
from sklearn.linear_model import LogisticRegression

from modeldeploy.exceptions import InvalidParameterError
from modeldeploy.monitoring.alerts import Alert
from modeldeploy.monitoring.monitor import Monitor
from modeldeploy.registry.signature import Signature


class FakeClock:
    def __init__(self, t: float = 1_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def _two_versions(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, 2, n)
    y_pred = np.where(rng.random(n) < 0.8, y_true, 1 - y_true)
    which = rng.random(n) < 0.4  # the canary's rows
    return y_pred, y_true, which


def _assert_classification_equals_sklearn(
    mon: Monitor, y_true: np.ndarray, y_pred: np.ndarray, which: np.ndarray
) -> None:
    for version, rows in (("m:1", ~which), ("m:2", which), (None, np.ones_like(which))):
        got = mon.metrics(version=version)
        assert got["n_labelled"] == rows.sum()
        assert got["accuracy"] == pytest.approx(skm.accuracy_score(y_true[rows], y_pred[rows]))
        assert got["f1"] == pytest.approx(skm.f1_score(y_true[rows], y_pred[rows]))
        assert got["precision"] == pytest.approx(skm.precision_score(y_true[rows], y_pred[rows]))
        assert got["recall"] == pytest.approx(skm.recall_score(y_true[rows], y_pred[rows]))


def test_labels_logged_before_batched_predictions_give_sklearn_metrics_per_version() -> None:
    n = 3_000
    y_pred, y_true, which = _two_versions(n, seed=1)
    ids = [f"req-{i}" for i in range(n)]
    mon = Monitor(window=10_000, thresholds={})
    rng = np.random.default_rng(2)
    for chunk in np.array_split(rng.permutation(n), 9):  # every label first, in any order
        out = mon.log_labels([ids[i] for i in chunk], y_true[chunk])
        assert (out["waiting"], out["matched"], out["unknown"]) == (chunk.size, 0, 0)
    assert mon.label_stats()["labels_waiting"] == n
    assert mon.metrics()["n_labelled"] == 0
    for seg in np.array_split(np.arange(n), 12):
        for flag, version in ((False, "m:1"), (True, "m:2")):
            rows = seg[which[seg] == flag]
            mon.log_predictions(None, y_pred[rows], ids=[ids[i] for i in rows], version=version)
    _assert_classification_equals_sklearn(mon, y_true, y_pred, which)
    stats = mon.label_stats()
    assert stats["labels_waiting"] == stats["pending"] == 0
    assert stats["labels_early"] == stats["labels_matched"] == stats["labels_total"] == n
    assert stats["labels_unknown"] == stats["labels_duplicate"] == 0


def test_labels_logged_before_one_row_predictions_give_sklearn_metrics_per_version() -> None:
    n = 2_500  # more than the one-row buffer holds, so it is folded in more than once
    y_pred, y_true, which = _two_versions(n, seed=3)
    mon = Monitor(window=10_000, thresholds={})
    early = np.random.default_rng(4).random(n) < 0.7  # the others come after
    rows = np.flatnonzero(early)
    mon.log_labels(rows.tolist(), y_true[rows])
    for i in range(n):
        version = "m:2" if which[i] else "m:1"
        mon.log_predictions(None, int(y_pred[i]), ids=i, version=version, latency_s=0.001)
    rest = np.flatnonzero(~early)
    out = mon.log_labels(rest.tolist(), y_true[rest])
    assert (out["matched"], out["waiting"]) == (rest.size, 0)
    _assert_classification_equals_sklearn(mon, y_true, y_pred, which)
    stats = mon.label_stats()
    assert (stats["labels_early"], stats["labels_matched"]) == (early.sum(), n)
    assert stats["labels_waiting"] == stats["labels_unknown"] == 0


def test_early_regression_labels_give_sklearn_metrics() -> None:
    rng = np.random.default_rng(5)
    y_true = rng.normal(size=800)
    y_pred = y_true + rng.normal(scale=0.3, size=800)
    mon = Monitor(window=5_000, task="regression", thresholds={})
    mon.log_labels(list(range(800)), y_true)
    for seg in np.array_split(np.arange(800), 5):
        mon.log_predictions(None, y_pred[seg], ids=seg.tolist(), version="r:1")
    got = mon.metrics(version="r:1")
    assert got["mae"] == pytest.approx(skm.mean_absolute_error(y_true, y_pred))
    assert got["rmse"] == pytest.approx(np.sqrt(skm.mean_squared_error(y_true, y_pred)))
    assert got["r2"] == pytest.approx(skm.r2_score(y_true, y_pred))


def test_an_early_label_lands_in_the_bucket_of_its_prediction_and_leaves_with_it() -> None:
    clock = FakeClock(6_000.0)  # a bucket boundary of the one-minute buckets below
    mon = Monitor(window=dt.timedelta(minutes=10), buckets=10, thresholds={}, clock=clock)
    mon.log_labels(["old", "new"], [1, 0])
    mon.log_predictions(None, 1, ids="old")  # one-row call: buffered, folded in later
    clock.t += 5 * 60
    mon.log_predictions(None, 1, ids="new")
    clock.t += 6 * 60  # the first prediction's bucket has left the window, the second's not
    got = mon.metrics()
    assert (got["n_predictions"], got["n_labelled"]) == (1, 1)
    assert got["accuracy"] == 0.0  # only "new" (predicted 1, label 0) is left
    assert mon.label_stats()["labels_early"] == 2


def test_early_labels_expire_into_unknown_after_their_ttl() -> None:
    clock = FakeClock()
    mon = Monitor(window=100, early_label_ttl_s=60, thresholds={}, clock=clock)
    assert mon.log_labels(["a", "b"], [1, 1])["waiting"] == 2
    clock.t += 30
    assert mon.log_labels(["c"], [0])["waiting"] == 1
    clock.t += 31  # a and b have waited 61 s, c 31 s
    stats = mon.label_stats()
    assert (stats["labels_waiting"], stats["labels_unknown"]) == (1, 2)
    mon.log_predictions(None, np.array([1, 1, 0]), ids=["a", "b", "c"])
    assert mon.metrics()["n_labelled"] == 1  # only c met its prediction
    stats = mon.label_stats()
    assert (stats["labels_matched"], stats["labels_early"], stats["labels_unknown"]) == (1, 1, 2)
    assert stats["pending"] == 2  # a and b still wait for a label, which now matches
    assert mon.log_labels(["a"], [1])["matched"] == 1
    assert mon.metrics()["n_labelled"] == 2


def test_a_label_meets_a_one_row_prediction_logged_within_its_ttl_even_if_read_later() -> None:
    clock = FakeClock()
    mon = Monitor(window=100, early_label_ttl_s=60, thresholds={}, clock=clock)
    mon.log_labels(["a"], [1])
    clock.t += 50
    mon.log_predictions(None, 1, ids="a")  # buffered: folded in only at the next read
    clock.t += 50
    assert mon.metrics()["n_labelled"] == 1
    assert mon.label_stats()["labels_unknown"] == 0


def test_early_labels_are_bounded_and_the_oldest_are_dropped_as_unknown() -> None:
    mon = Monitor(window=1_000, max_pending=100, thresholds={})
    out = mon.log_labels([f"a{i}" for i in range(250)], np.ones(250, dtype=int))
    assert (out["waiting"], out["unknown"]) == (100, 150)  # only the newest 100 stay
    out = mon.log_labels([f"b{i}" for i in range(50)], np.ones(50, dtype=int))
    assert (out["waiting"], out["unknown"]) == (50, 0)  # this call's labels all wait ...
    stats = mon.label_stats()
    assert (stats["labels_waiting"], stats["labels_unknown"]) == (100, 200)  # ... 50 older not
    everything = [f"a{i}" for i in range(250)] + [f"b{i}" for i in range(50)]
    mon.log_predictions(None, np.ones(300, dtype=int), ids=everything)
    assert mon.metrics()["n_labelled"] == 100  # a200..a249 and b0..b49
    assert mon.label_stats()["labels_early"] == 100
    for k in range(20):  # a long stream of labels for ids never logged stays bounded
        mon.log_labels([f"z{k}-{i}" for i in range(90)], np.zeros(90, dtype=int))
        assert mon.label_stats()["labels_waiting"] <= 100


def test_repeated_early_labels_keep_the_first_and_count_the_others_as_duplicates() -> None:
    clock = FakeClock()
    mon = Monitor(window=100, thresholds={}, clock=clock)
    mon.log_labels(["x", "y"], [0, 1])
    mon.log_labels(["x", "y"], [1, 0])  # the first label wins, as for labels after predictions
    mon.log_predictions(None, np.array([0]), ids=["x"])
    assert mon.metrics()["accuracy"] == 1.0
    stats = mon.label_stats()
    assert (stats["labels_matched"], stats["labels_duplicate"]) == (1, 1)
    clock.t += 3_600  # y never meets a prediction: both its labels are unknown
    stats = mon.label_stats()
    assert (stats["labels_unknown"], stats["labels_waiting"]) == (2, 0)


def test_an_early_label_for_a_prediction_logged_with_its_label_is_a_duplicate() -> None:
    mon = Monitor(window=100, thresholds={})
    mon.log_labels(["x"], [0])
    mon.log_predictions(None, np.array([1]), ids=["x"], y_true=np.array([1]))
    assert mon.metrics()["accuracy"] == 1.0
    stats = mon.label_stats()
    assert (stats["labels_duplicate"], stats["labels_early"], stats["labels_total"]) == (1, 0, 1)


def test_early_labels_of_mixed_types_keep_their_classes() -> None:
    mon = Monitor(window=100, thresholds={})
    mon.log_labels(["p"], ["cat"])
    mon.log_labels(["q"], [1])  # an int label, held beside a string one
    mon.log_predictions(None, np.array(["cat", 1, "dog"], dtype=object), ids=["p", "q", "r"])
    mon.log_labels(["r"], ["cat"])
    got = mon.metrics()
    assert got["n_labelled"] == 3
    assert got["accuracy"] == pytest.approx(2 / 3)


def test_an_early_label_that_cannot_apply_is_logged_and_the_predictions_stay(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The task is not known when the labels come (so they wait); the float predictions make
    # it a regression, whose labels must be numbers. (With task="regression" given up front,
    # log_labels refuses such labels at once: see test_monitor_hardening.py.)
    mon = Monitor(window=100, thresholds={})
    mon.log_labels(["a", "b"], ["not a number", "nor this"])
    with caplog.at_level(logging.ERROR, logger="modeldeploy.monitoring"):
        mon.log_predictions(None, np.array([0.5, 1.5]), ids=["a", "b"])
    assert "dropped 2 labels that came before their predictions" in caplog.text
    got = mon.metrics()
    assert (got["n_predictions"], got["n_labelled"]) == (2, 0)
    stats = mon.label_stats()
    assert (stats["labels_matched"], stats["labels_early"], stats["labels_waiting"]) == (0, 0, 0)


def test_early_label_ttl_zero_counts_labels_of_unseen_ids_as_unknown_at_once() -> None:
    mon = Monitor(window=100, early_label_ttl_s=0, thresholds={})
    out = mon.log_labels(["a", "b"], [1, 0])
    assert (out["unknown"], out["waiting"]) == (2, 0)
    mon.log_predictions(None, np.array([1, 0]), ids=["a", "b"])
    assert mon.metrics()["n_labelled"] == 0
    with pytest.raises(InvalidParameterError, match="early_label_ttl_s"):
        Monitor(early_label_ttl_s=-1)


def test_early_labels_take_part_in_alert_checks() -> None:
    received: list[Alert] = []
    mon = Monitor(
        window=1_000,
        min_samples=100,
        thresholds={"accuracy": 0.9, "drift": None},
        on_alert=received.append,
    )
    mon.log_labels(list(range(500)), np.zeros(500, dtype=int))
    mon.log_predictions(None, np.ones(500, dtype=int), ids=list(range(500)))
    assert [(a.name, a.n_samples) for a in received] == [("accuracy", 500)]


def test_early_labels_survive_save_and_load(tmp_path: Path) -> None:
    clock = FakeClock()
    mon = Monitor(window=100, early_label_ttl_s=30, thresholds={}, clock=clock)
    mon.log_labels(["a", "b", 7], ["yes", "no", "no"])
    back = Monitor.load(mon.save(tmp_path / "m.npz"), clock=clock)
    assert back.early_label_ttl_s == 30
    assert back.label_stats() == mon.label_stats()
    for m in (mon, back):
        m.log_predictions(None, np.array(["yes", "yes"]), ids=["a", 7])
    assert back.metrics() == mon.metrics()
    assert back.metrics()["accuracy"] == 0.5
    clock.t += 31  # b waited too long, in both
    assert back.label_stats() == mon.label_stats()
    assert back.label_stats()["labels_unknown"] == 1


def test_a_file_saved_before_early_labels_existed_still_loads(tmp_path: Path) -> None:
    mon = Monitor(window=100, thresholds={})
    mon.log_predictions(None, np.array([1, 0]), ids=["a", "b"])
    path = mon.save(tmp_path / "m.npz")
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    meta = json.loads(arrays["meta"].tobytes().decode())
    del meta["early"], meta["params"]["early_label_ttl_s"]  # as an older version wrote it
    meta["label_counts"].pop("labels_early")
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    np.savez_compressed(path, **arrays)
    back = Monitor.load(path)
    assert back.label_stats()["labels_waiting"] == back.label_stats()["labels_early"] == 0
    assert back.log_labels(["a", "c"], [1, 1]) == {
        "matched": 1,
        "late": 0,
        "duplicate": 0,
        "unknown": 0,
        "expired": 0,
        "evicted": 0,
        "waiting": 1,
        "missing": 0,
    }


def test_threads_logging_labels_and_predictions_in_either_order_lose_nothing() -> None:
    n = 24_000
    y_pred, y_true, which = _two_versions(n, seed=6)
    mon = Monitor(window=100_000, thresholds={})
    parts = np.array_split(np.arange(n), 6)

    def work(t: int, idx: np.ndarray) -> None:
        for chunk in np.array_split(idx, 40):
            ids = chunk.tolist()
            if t % 2:  # half the threads log labels first
                mon.log_labels(ids, y_true[chunk])
            for flag, version in ((False, "m:1"), (True, "m:2")):
                rows = chunk[which[chunk] == flag]
                mon.log_predictions(None, y_pred[rows], ids=rows.tolist(), version=version)
            if not t % 2:
                mon.log_labels(ids, y_true[chunk])

    threads = [threading.Thread(target=work, args=(t, p)) for t, p in enumerate(parts)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    _assert_classification_equals_sklearn(mon, y_true, y_pred, which)
    stats = mon.label_stats()
    assert stats["labels_early"] == sum(p.size for t, p in enumerate(parts) if t % 2)
    assert stats["labels_unknown"] == stats["labels_waiting"] == 0


def test_labels_logged_right_after_predict_on_many_threads_all_match_once_flushed(
    data: tuple[np.ndarray, np.ndarray], model: LogisticRegression
) -> None:
    from modeldeploy.deployers.online import OnlineDeployer

    X, y = data
    n_threads, rounds = 8, 25
    X = np.tile(X, (rounds, 1))[: 300 * rounds]  # 7,500 rows
    y = np.tile(y, rounds)[: X.shape[0]]
    mon = Monitor(window=100_000, thresholds={})
    parts = np.array_split(np.arange(X.shape[0]), n_threads)
    failures: list[BaseException] = []

    def work(t: int, idx: np.ndarray) -> None:
        try:
            for k, chunk in enumerate(np.array_split(idx, 60)):
                ids = [f"t{t}-{i}" for i in chunk.tolist()]
                ones = 4 if k % 3 == 0 else 0  # some one-row requests too
                for i, rid in zip(chunk[:ones].tolist(), ids[:ones], strict=True):
                    dep.predict(X[i], ids=rid)
                dep.predict(X[chunk[ones:]], ids=ids[ones:])
                mon.log_labels(ids, y[chunk])  # at once, no dep.flush()
        except BaseException as exc:  # pragma: no cover - reported below
            failures.append(exc)

    with OnlineDeployer(model, signature=Signature.infer(X), monitor=mon) as dep:
        threads = [threading.Thread(target=work, args=(t, p)) for t, p in enumerate(parts)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert dep.flush(timeout=30.0)
        assert failures == []
        got = mon.metrics()
        stats = mon.label_stats()
    assert got["n_predictions"] == got["n_labelled"] == X.shape[0]
    assert got["f1"] == pytest.approx(skm.f1_score(y, model.predict(X)))
    assert stats["labels_matched"] == stats["labels_total"] == X.shape[0]
    assert stats["labels_unknown"] == stats["labels_waiting"] == stats["pending"] == 0
