"""Monitor behaviour: delayed labels, alerts, thread safety, bounded memory, save/load."""

from __future__ import annotations

import datetime as dt
import gc
import logging
import math
import threading
from pathlib import Path

import numpy as np
import pytest
from sklearn import metrics as skm

from modeldeploy.exceptions import InvalidParameterError, SchemaError
from modeldeploy.monitoring.monitor import Alert, Monitor
from modeldeploy.testing import FakeClock
from modeldeploy.typing import MonitorSink


def test_monitor_is_a_monitor_sink() -> None:
    assert isinstance(Monitor(), MonitorSink)


def test_labels_arriving_out_of_order_land_in_their_prediction_window() -> None:
    rng = np.random.default_rng(0)
    y_pred = rng.integers(0, 2, 400)
    y_true = rng.integers(0, 2, 400)
    ids = [f"req-{i}" for i in range(400)]
    mon = Monitor(window=400, buckets=4, thresholds={})
    for a in range(0, 400, 50):
        mon.log_predictions(None, y_pred[a : a + 50], ids=ids[a : a + 50])
    order = rng.permutation(400)
    for chunk in np.array_split(order, 7):
        mon.log_labels([ids[i] for i in chunk], y_true[chunk])
    got = mon.metrics()
    assert got["n_labelled"] == 400
    assert got["f1"] == pytest.approx(skm.f1_score(y_true, y_pred))
    assert mon.label_stats()["labels_matched"] == 400
    assert mon.label_stats()["pending"] == 0


def test_duplicate_unknown_expired_evicted_and_late_labels_are_counted() -> None:
    clock = FakeClock()
    mon = Monitor(window=100, buckets=2, max_pending=5, label_ttl_s=60, thresholds={}, clock=clock)
    mon.log_predictions(None, np.array([1, 1, 0]), ids=["a", "b", "c"])
    clock.advance(120)  # a, b, c expire
    mon.log_predictions(None, np.array([1, 0, 1, 1, 0, 1, 0]), ids=list("defghij"))
    # d and e are evicted: only 5 may wait
    out = mon.log_labels(["a", "d", "f", "f", "zz", "g"], [1, 1, 1, 1, 1, 1])
    assert out == {
        "matched": 2,
        "late": 0,
        "duplicate": 1,
        "unknown": 0,  # "zz" was never seen: it waits for its prediction (see below)
        "expired": 1,
        "evicted": 1,
        "waiting": 1,
        "missing": 0,
    }
    stats = mon.label_stats()
    assert stats["predictions_expired"] == 3
    assert stats["predictions_evicted"] == 2
    assert stats["pending"] == 3
    assert mon.metrics()["n_labelled"] == 2
    # h's bucket leaves the window after 100 more rows: its label is late and not counted
    mon.log_predictions(None, np.zeros(150, dtype=int))
    assert mon.log_labels(["h"], [1])["late"] == 1
    assert mon.metrics()["n_labelled"] == 0


def test_repeated_prediction_id_replaces_the_older_one() -> None:
    mon = Monitor(window=100, thresholds={})
    mon.log_predictions(None, np.array([0]), ids=["x"])
    mon.log_predictions(None, np.array([1]), ids=["x"])
    mon.log_labels(["x"], [1])
    assert mon.label_stats()["predictions_duplicate_id"] == 1
    assert mon.metrics()["accuracy"] == 1.0


def test_labels_given_with_predictions_make_later_labels_duplicates() -> None:
    mon = Monitor(window=100, thresholds={})
    mon.log_predictions(None, np.array([1, 0]), ids=[1, 2], y_true=np.array([1, 1]))
    assert mon.log_labels([1], [1])["duplicate"] == 1
    assert mon.metrics()["n_labelled"] == 2


def test_alert_fires_once_per_sustained_breach_and_rearms_after_recovery() -> None:
    received: list[Alert] = []
    mon = Monitor(
        window=1_000,
        buckets=10,
        min_samples=200,
        thresholds={"accuracy": 0.9, "drift": None},
        on_alert=received.append,
    )
    good = np.ones(100, dtype=int)
    bad = np.zeros(100, dtype=int)
    for _ in range(10):
        mon.log_predictions(None, good, y_true=good)
    assert received == []
    for _ in range(15):  # a long breach: one alert
        mon.log_predictions(None, bad, y_true=good)
    assert len(received) == 1
    alert = received[0]
    assert (alert.kind, alert.name, alert.threshold) == ("metric", "accuracy", 0.9)
    assert alert.value < 0.9 and alert.n_samples >= 200
    for _ in range(15):  # recovery re-arms
        mon.log_predictions(None, good, y_true=good)
    for _ in range(15):
        mon.log_predictions(None, bad, y_true=good)
    assert len(received) == 2
    assert mon.alerts == received


def test_min_samples_holds_back_alerts_on_small_windows() -> None:
    received: list[Alert] = []
    mon = Monitor(window=100, min_samples=50, thresholds={"f1": 0.9}, on_alert=received.append)
    mon.log_predictions(None, np.zeros(40, dtype=int), y_true=np.ones(40, dtype=int))
    assert mon.check() == []
    assert received == []
    mon.log_predictions(None, np.zeros(20, dtype=int), y_true=np.ones(20, dtype=int))
    assert [a.name for a in received] == ["f1"]
    assert received[0].n_samples == 60
    assert mon.check() == []  # still breached: debounced


def test_drift_alert_and_log_record(caplog: pytest.LogCaptureFixture) -> None:
    rng = np.random.default_rng(3)
    received: list[Alert] = []
    mon = Monitor(
        reference=rng.normal(size=(5_000, 2)),
        window=2_000,
        thresholds={"drift": "ks", "p_value": 0.001},
        on_alert=received.append,
        name="churn:3",
    )
    with caplog.at_level(logging.WARNING, logger="modeldeploy.monitoring"):
        shifted = rng.normal(size=(2_000, 2)) + np.array([0.0, 1.0])
        mon.log_predictions(shifted, np.zeros(2_000, dtype=int))
    assert [(a.kind, a.name) for a in received] == [("drift", "x1")]
    assert received[0].monitor == "churn:3" and received[0].value < 0.001
    assert any("x1" in r.getMessage() for r in caplog.records)


def test_a_failing_callback_does_not_break_logging(caplog: pytest.LogCaptureFixture) -> None:
    def boom(alert: Alert) -> None:
        raise RuntimeError("pager down")

    mon = Monitor(window=100, min_samples=10, thresholds={"accuracy": 0.5}, on_alert=boom)
    with caplog.at_level(logging.ERROR, logger="modeldeploy.monitoring"):
        mon.log_predictions(None, np.zeros(100, dtype=int), y_true=np.ones(100, dtype=int))
    assert mon.alerts and "pager down" in caplog.text


def test_latency_percentiles_and_error_rate() -> None:
    mon = Monitor(window=10_000, thresholds={"error_rate": 0.05})
    for latency in np.linspace(0.001, 0.100, 100):
        mon.log_predictions(None, np.zeros(10, dtype=int), latency_s=float(latency))
    for _ in range(10):
        mon.log_error(TimeoutError("slow"), version="m:1")
    got = mon.metrics()
    assert got["error_rate"] == pytest.approx(10 / 1010)
    assert got["latency_p50"] == pytest.approx(0.050, rel=0.07)
    assert got["latency_p99"] == pytest.approx(0.099, rel=0.07)
    assert mon.report().to_dict()["errors"]["by_type"] == {"TimeoutError": 10}


def test_one_row_calls_are_buffered_but_reads_see_them() -> None:
    rng = np.random.default_rng(9)
    y_pred, y_true = rng.integers(0, 3, 700), rng.integers(0, 3, 700)
    X = rng.normal(size=(700, 2))
    single = Monitor(reference=X, window=1_000, average="weighted", thresholds={})
    batch = Monitor(reference=X, window=1_000, average="weighted", thresholds={})
    for i in range(700):
        single.log_predictions(X[i], y_pred[i], y_true=y_true[i], ids=i)
    batch.log_predictions(X, y_pred, y_true=y_true, ids=np.arange(700))
    assert single.metrics() == batch.metrics()
    assert single.drift().to_dict() == batch.drift().to_dict()
    assert single.metrics()["f1"] == pytest.approx(skm.f1_score(y_true, y_pred, average="weighted"))


def test_many_threads_logging_into_one_monitor_lose_nothing() -> None:
    rng = np.random.default_rng(11)
    y_pred, y_true = rng.integers(0, 2, 80_000), rng.integers(0, 2, 80_000)
    mon = Monitor(window=100_000, thresholds={"f1": 0.99}, min_samples=1)
    parts = np.array_split(np.arange(80_000), 8)

    def work(idx: np.ndarray) -> None:
        for chunk in np.array_split(idx, 100):
            if chunk.size % 2:
                for i in chunk:  # some single-row calls through the buffer, some batches
                    mon.log_predictions(None, y_pred[i], ids=int(i))
                mon.log_labels(chunk.tolist(), y_true[chunk])
            else:
                mon.log_predictions(None, y_pred[chunk], y_true=y_true[chunk])

    threads = [threading.Thread(target=work, args=(p,)) for p in parts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    got = mon.metrics()
    assert got["n_predictions"] == 80_000
    assert got["n_labelled"] == 80_000
    assert got["f1"] == pytest.approx(skm.f1_score(y_true, y_pred))
    assert len(mon.alerts) == 1  # debounced across threads


def _rss_bytes() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")  # pragma: no cover


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads RSS from /proc")
def test_ten_million_predictions_keep_memory_bounded() -> None:
    rng = np.random.default_rng(12)
    batch = 250_000
    X = rng.normal(size=(batch, 4))
    y_pred = rng.integers(0, 2, batch)
    y_true = rng.integers(0, 2, batch)
    ids = np.arange(batch)
    mon = Monitor(reference=X[:5_000], window=100_000, max_pending=50_000, thresholds={})
    rss = []
    for k in range(40):  # 10,000,000 predictions
        if k % 2:
            mon.log_predictions(X, y_pred, ids=ids + k * batch, latency_s=0.01)
            mon.log_labels((ids[:1_000] + k * batch).tolist(), y_true[:1_000])
        else:
            mon.log_predictions(X, y_pred, y_true=y_true, latency_s=0.01)
        if k == 5:
            gc.collect()
            rss.append(_rss_bytes())
    gc.collect()
    rss.append(_rss_bytes())
    assert mon.metrics()["n_predictions"] == 100_000
    assert mon.label_stats()["pending"] <= 50_000
    assert mon.report().to_dict()["rows_logged"] == 10_000_000
    growth = rss[-1] - rss[0]
    assert growth < 30 * 2**20, f"RSS grew by {growth / 2**20:.1f} MB"


def test_save_and_load_keep_windows_sketches_and_pending_labels(tmp_path: Path) -> None:
    rng = np.random.default_rng(13)
    X = rng.normal(size=(3_000, 3))
    mon = Monitor(reference=X, window=2_000, thresholds={"f1": 0.5, "drift": "ks"}, name="m:1")
    mon.log_predictions(X[:1_500] + 0.3, rng.integers(0, 2, 1_500), ids=np.arange(1_500))
    mon.log_labels(np.arange(700), rng.integers(0, 2, 700))
    path = mon.save(tmp_path / "monitor.npz")
    back = Monitor.load(path)
    assert back.metrics() == pytest.approx(mon.metrics(), nan_ok=True)
    assert back.drift().to_dict() == mon.drift().to_dict()
    assert back.label_stats() == mon.label_stats()
    more = rng.integers(0, 2, 1_000)
    for m in (mon, back):  # the prediction reference (the first window) carries over too
        m.log_predictions(X[:1_000], more, ids=np.arange(1_500, 2_500))
    assert back.drift().to_dict() == mon.drift().to_dict()
    labels = rng.integers(0, 2, 800)
    for m in (mon, back):
        m.log_labels(np.arange(700, 1_500), labels)
    assert mon.drift().prediction is not None
    assert back.metrics() == pytest.approx(mon.metrics(), nan_ok=True)
    assert back.name == "m:1" and back.thresholds == mon.thresholds
    history = [
        [
            {k: v for k, v in point.items() if k != "time"}
            for point in m.report().to_dict()["history"]
        ]
        for m in (mon, back)
    ]
    assert history[0] == history[1]


def test_regression_monitor_with_delayed_labels() -> None:
    rng = np.random.default_rng(14)
    y_pred = rng.normal(10, 2, 500)
    y_true = y_pred + rng.normal(0, 1, 500)
    mon = Monitor(window=1_000, thresholds={"rmse": 0.5}, min_samples=100)
    mon.log_predictions(None, y_pred, ids=np.arange(500))
    assert mon.metrics()["rmse"] is None
    mon.log_labels(np.arange(500)[::-1], y_true[::-1])
    got = mon.metrics()
    assert got["rmse"] == pytest.approx(math.sqrt(skm.mean_squared_error(y_true, y_pred)))
    assert got["r2"] == pytest.approx(skm.r2_score(y_true, y_pred))
    assert [a.name for a in mon.alerts] == ["rmse"]


def test_estimated_performance_tracks_realized_on_calibrated_probabilities() -> None:
    rng = np.random.default_rng(15)
    n = 20_000
    p = rng.random(n)
    y_true = (rng.random(n) < p).astype(int)  # calibrated by construction
    y_pred = (p > 0.5).astype(int)
    proba = np.column_stack([1 - p, p])
    mon = Monitor(window=n, classes=[0, 1], thresholds={})
    mon.log_predictions(None, y_pred, y_proba=proba)
    got = mon.metrics()
    assert got["n_labelled"] == 0 and got["f1"] is None
    assert got["estimated_accuracy"] == pytest.approx(skm.accuracy_score(y_true, y_pred), abs=0.02)
    assert got["estimated_f1"] == pytest.approx(skm.f1_score(y_true, y_pred), abs=0.02)


def test_calibration_on_reference_labels_corrects_an_overconfident_model() -> None:
    rng = np.random.default_rng(16)

    def sample(n: int) -> tuple[np.ndarray, np.ndarray]:
        p = rng.random(n)
        return p, (rng.random(n) < p**3).astype(int)  # true rate p**3: over-confident

    p_ref, y_ref = sample(20_000)
    p, y_true = sample(20_000)
    y_pred = (p > 0.5).astype(int)
    proba = np.column_stack([1 - p, p])
    raw = Monitor(window=20_000, classes=[0, 1], thresholds={})
    cal = Monitor(
        window=20_000,
        classes=[0, 1],
        reference_proba=np.column_stack([1 - p_ref, p_ref]),
        reference_labels=y_ref,
        thresholds={},
    )
    for m in (raw, cal):
        m.log_predictions(None, y_pred, y_proba=proba)
    realized = skm.f1_score(y_true, y_pred)
    assert abs(cal.metrics()["estimated_f1"] - realized) < 0.02
    assert abs(raw.metrics()["estimated_f1"] - realized) > 0.08


def test_bad_arguments_and_inputs_raise_clear_errors() -> None:
    with pytest.raises(InvalidParameterError, match="'buckets' parameter of Monitor"):
        Monitor(buckets=0)
    with pytest.raises(InvalidParameterError, match="unknown keys"):
        Monitor(thresholds={"f2": 0.5})
    with pytest.raises(InvalidParameterError, match="thresholds\\['drift'\\]"):
        Monitor(thresholds={"drift": "wasserstein"})
    mon = Monitor(reference=np.ones((10, 2)))
    with pytest.raises(SchemaError, match="3 ids"):
        mon.log_predictions(np.ones((2, 2)), np.array([0, 1]), ids=[1, 2, 3])
    with pytest.raises(SchemaError, match="features"):
        mon.log_predictions(np.ones((20, 3)), np.zeros(20))
    with pytest.raises(SchemaError, match="one label per id"):
        mon.log_labels([1, 2], [0])


def test_repr_and_html() -> None:
    mon = Monitor(window=100, name="churn:2", thresholds={})
    mon.log_predictions(None, np.array([0, 1, 1]), y_true=np.array([0, 1, 0]))
    assert (
        repr(mon)
        == "Monitor('churn:2', classification, window=100 rows in 10 buckets, 3 rows logged)"
    )
    assert "<table>" in mon._repr_html_()


def test_time_window_state_survives_a_restart(tmp_path: Path) -> None:
    clock = FakeClock()
    mon = Monitor(window=dt.timedelta(minutes=10), thresholds={}, clock=clock)
    mon.log_predictions(None, np.array([1, 0, 1]), ids=["a", "b", "c"])
    back = Monitor.load(mon.save(tmp_path / "m.npz"), clock=clock)
    clock.advance(60)
    assert back.log_labels(["a", "b"], [1, 1])["matched"] == 2
    assert back.metrics()["accuracy"] == 0.5
    clock.advance(600)  # the predictions' buckets have left the 10-minute window
    assert back.log_labels(["c"], [1])["late"] == 1
    assert back.metrics()["n_labelled"] == 0


def test_dataframe_reference_with_a_categorical_column() -> None:
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(17)
    ref = pd.DataFrame(
        {"age": rng.normal(40, 10, 3_000), "plan": rng.choice(["a", "b", "c"], 3_000)}
    )
    mon = Monitor(reference=ref, window=2_000, thresholds={"drift": "ks"})
    cur = ref.sample(2_000, random_state=1).reset_index(drop=True)
    cur.loc[:599, "plan"] = "new"  # a category never seen in training
    mon.log_predictions(cur, np.zeros(2_000, dtype=int))
    drift = mon.drift()
    assert drift.drifted == ["plan"]
    assert drift["plan"].test == "chi2" and drift["age"].test == "ks"


def test_undefined_metrics_are_none_valid_json_and_not_judged() -> None:
    import json

    from modeldeploy.retraining import TriggerContext, metric_below

    clock = FakeClock()
    alerts: list[Alert] = []
    mon = Monitor(
        window=dt.timedelta(minutes=10),
        thresholds={"f1": 0.9, "latency_p99": 0.5, "error_rate": 0.1},
        min_samples=1,
        on_alert=alerts.append,
        clock=clock,
    )
    empty = mon.metrics()
    assert empty["n_predictions"] == 0 and empty["n_labelled"] == 0
    undefined = {k for k, v in empty.items() if v is None}
    assert {"error_rate", "latency_p50", "latency_p99"} <= undefined  # no task known yet
    assert not any(isinstance(v, float) and math.isnan(v) for v in empty.values())
    json.dumps(mon.report().to_dict(), allow_nan=False)  # raises on nan
    assert mon.check() == [] and alerts == []
    fired = metric_below("f1", 0.8, min_samples=0)(TriggerContext(mon, clock.now()))
    assert not fired.fired and "not judged" in fired.reason
    # predictions without labels or latency: quality and latency stay None, error rate is 0.0
    mon.log_predictions(None, [1, 0, 1], ids=["a", "b", "c"])
    got = mon.metrics()
    assert got["f1"] is None and got["accuracy"] is None and got["latency_p99"] is None
    assert got["error_rate"] == 0.0
    json.dumps(mon.report().to_dict(), allow_nan=False)
    assert mon.check() == []
    mon.log_predictions(None, [1], ids=["d"], latency_s=0.002)
    p99 = mon.metrics()["latency_p99"]
    assert p99 is not None and 0.0019 < p99 < 0.0022  # seconds, within the 6% bin width


def test_log_predictions_at_puts_rows_in_the_buckets_of_their_own_times() -> None:
    from datetime import datetime, timedelta, timezone

    from modeldeploy.testing import FakeClock

    clock = FakeClock(datetime(2026, 3, 1, 12, tzinfo=timezone.utc))
    now = clock.now()
    times = [now - timedelta(hours=3), now - timedelta(minutes=20), now - timedelta(minutes=5)]
    forms = [
        times,  # aware datetimes
        np.array([t.replace(tzinfo=None) for t in times], dtype="datetime64[us]"),
        np.array([t.timestamp() for t in times]),  # epoch seconds
    ]
    for at in forms:
        mon = Monitor(window=timedelta(hours=1), buckets=6, thresholds={}, clock=clock)
        mon.log_predictions(None, np.array([1, 1, 0]), y_true=[0, 1, 1], at=at)
        m = mon.metrics()
        # The first row is three hours old: outside the one-hour window, it is not counted.
        assert m["n_labelled"] == 2 and m["accuracy"] == 0.5
    mon = Monitor(window=timedelta(hours=1), thresholds={}, clock=clock)
    with pytest.raises(SchemaError, match="1 times"):
        mon.log_predictions(None, np.array([1, 0]), y_true=[1, 1], at=[now])
    with pytest.raises(SchemaError, match="'at' argument"):
        mon.log_predictions(None, np.array([1, 0]), at=["noon", "one"])
    assert mon.metrics()["n_labelled"] == 0  # refused calls change nothing
