"""Monitor under hostile input and faults: NaN predictions and labels, labels of another type,
a wall clock that steps back, damaged state files (issue 13)."""

from __future__ import annotations

import datetime as dt
import io
import itertools
import json
import math
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from sklearn import metrics as skm

from modeldeploy.exceptions import ModelDeployError, SchemaError, StateFileError
from modeldeploy.monitoring.monitor import Alert, Monitor
from modeldeploy.testing import FakeClock

# ---------------------------------------------------------------- NaN and inf predictions


def _sk_regression(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    ok = np.isfinite(p)
    y, p = y[ok], p[ok]
    mse = skm.mean_squared_error(y, p)
    return {
        "mae": skm.mean_absolute_error(y, p),
        "mse": mse,
        "rmse": math.sqrt(mse),
        "r2": skm.r2_score(y, p) if y.size >= 2 else math.nan,
    }


def test_a_nan_prediction_leaves_the_metrics_of_the_others_and_the_mae_alert_fires() -> None:
    rng = np.random.default_rng(0)
    y = rng.normal(size=400)
    p = y + rng.normal(scale=2.0, size=400)  # mae about 1.6
    p[[3, 50, 77]] = np.nan
    p[120] = np.inf
    fired: list[Alert] = []
    mon = Monitor(
        window=400,
        task="regression",
        thresholds={"mae": 1.0},
        min_samples=50,
        on_alert=fired.append,
    )
    mon.log_predictions(None, p, y_true=y)
    got = mon.metrics()
    for name, value in _sk_regression(y, p).items():
        assert got[name] == pytest.approx(value, rel=1e-9), name
    assert got["n_labelled"] == 396  # the labelled rows that have a finite prediction to score
    assert got["nan_prediction_rate"] == pytest.approx(4 / 400)
    assert [a.name for a in fired] == ["mae"]


def test_nan_predictions_with_labels_by_id_are_left_out_and_counted() -> None:
    y = np.array([1.0, 2.0, 3.0, 5.0, 8.0, 13.0])
    p = np.array([1.5, np.nan, 2.0, 5.0, -np.inf, 12.0])
    ids = [f"r{i}" for i in range(6)]
    mon = Monitor(window=100, task="regression", thresholds={})
    mon.log_predictions(None, p, ids=ids)
    assert mon.log_labels(ids, y)["matched"] == 6
    got = mon.metrics()
    assert got["mae"] == pytest.approx(skm.mean_absolute_error(y[[0, 2, 3, 5]], p[[0, 2, 3, 5]]))
    assert got["r2"] == pytest.approx(skm.r2_score(y[[0, 2, 3, 5]], p[[0, 2, 3, 5]]))
    assert got["nan_prediction_rate"] == pytest.approx(2 / 6)
    assert got["n_predictions"] == 6 and got["n_labelled"] == 4


def test_nan_prediction_rate_is_alertable_and_per_version() -> None:
    fired: list[Alert] = []
    mon = Monitor(
        window=1000,
        thresholds={"nan_prediction_rate": 0.05},
        min_samples=10,
        on_alert=fired.append,
        task="regression",
    )
    mon.log_predictions(None, np.arange(100.0), version="m:1")
    bad = np.arange(100.0)
    bad[:30] = np.nan
    mon.log_predictions(None, bad, version="m:2")
    mon.check()
    assert [a.name for a in fired] == ["nan_prediction_rate"]
    assert fired[0].value == pytest.approx(30 / 200)
    assert mon.metrics(version="m:1")["nan_prediction_rate"] == 0.0
    assert mon.metrics(version="m:2")["nan_prediction_rate"] == pytest.approx(0.3)


def test_a_nan_prediction_of_a_classifier_is_no_answer_not_a_new_class() -> None:
    # float class labels, as a model with classes_ = [0.0, 1.0] returns them
    p = np.array([0.0, 1.0, np.nan, 1.0] * 50)
    y = np.array([0.0, 1.0, 1.0, 0.0] * 50)
    mon = Monitor(window=1000, task="classification", max_classes=3, thresholds={})
    for _ in range(3):  # each NaN used to become a class of its own, up to max_classes
        mon.log_predictions(None, p, y_true=y)
    got = mon.metrics()
    ok = ~np.isnan(p)
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(y[ok], p[ok]))
    assert got["f1"] == pytest.approx(skm.f1_score(y[ok], p[ok]))
    assert got["nan_prediction_rate"] == pytest.approx(0.25)


# Rounded: labels 1e-159 apart make scikit-learn's own r2 overflow (a warning, an error here).
_values = st.floats(-1e3, 1e3).map(lambda v: round(v, 3))


@settings(max_examples=60, deadline=None)
@example(rows=[(86.102, 0.0)] * 3, n_calls=2)  # constant labels whose float mean is not exact
@example(rows=[(86.102, 86.102)] * 3, n_calls=1)
@given(
    st.lists(
        st.tuples(
            _values,
            st.one_of(_values, st.sampled_from([math.nan, math.inf, -math.inf])),
        ),
        min_size=1,
        max_size=60,
    ),
    st.integers(1, 4),
)
def test_regression_metrics_equal_sklearn_on_the_rows_with_a_finite_prediction(
    rows: list[tuple[float, float]], n_calls: int
) -> None:
    y = np.array([r[0] for r in rows])
    p = np.array([r[1] for r in rows])
    mon = Monitor(window=1000, task="regression", thresholds={})
    for part in np.array_split(np.arange(len(rows)), n_calls):
        mon.log_predictions(None, p[part], y_true=y[part])
    got = mon.metrics()
    ok = np.isfinite(p)
    assert got["nan_prediction_rate"] == pytest.approx(1 - ok.mean())
    assert got["n_labelled"] == ok.sum()
    if not ok.any():
        assert got["mae"] is None
        return
    expected = _sk_regression(y, p)
    if ok.sum() >= 2 and np.ptp(y[ok]) == 0:
        # Constant labels: r2 is 1.0 for perfect predictions, else 0.0 (scikit-learn's
        # force_finite rule), which is what the monitor gives; scikit-learn's own sum may miss
        # the zero variance by rounding (a mean of three 86.102s is not 86.102) and overflow.
        expected["r2"] = 1.0 if np.array_equal(p[ok], y[ok]) else 0.0
    for name, value in expected.items():
        if math.isnan(value):
            assert got[name] is None, name
        else:
            assert got[name] == pytest.approx(value, rel=1e-6, abs=1e-6), name


# ---------------------------------------------------------------- labels of another type


@pytest.mark.parametrize(
    ("preds", "labels"),
    [
        (np.array([0, 1, 1, 0, 1]), ["0", "1", "0", "0", "1"]),  # str labels, int predictions
        (np.array([0, 1, 1, 0, 1]), np.array([0.0, 1.0, 0.0, 0.0, 1.0])),  # float labels
        (np.array([0, 1, 1, 0, 1]), np.array([False, True, False, False, True])),
        (np.array(["0", "1", "1", "0", "1"]), [0, 1, 0, 0, 1]),  # int labels, str predictions
        (np.array(["no", "yes", "yes", "no", "yes"]), np.array(["no", "yes", "no", "no", "yes"])),
        (np.array([False, True, True, False, True]), [0, 1, 0, 0, 1]),
        (np.array([False, True, True, False, True]), ["False", "True", "False", "False", "True"]),
        (np.array([0.0, 1.0, 1.0, 0.0, 1.0]), ["0", "1", "0", "0", "1"]),
        (np.array([0, 1, 1, 0, 1]), [b"0", b"1", b"0", b"0", b"1"]),
    ],
)
def test_labels_of_another_type_are_converted_when_nothing_is_lost(preds: Any, labels: Any) -> None:
    ids = list("abcde")
    mon = Monitor(window=100, task="classification", thresholds={})
    mon.log_predictions(None, preds, ids=ids)
    assert mon.log_labels(ids, labels)["matched"] == 5
    assert mon.metrics()["accuracy"] == pytest.approx(0.8)  # one wrong row of five
    assert len(mon._targets.classes) == 2  # no class of another type was added
    # the same through y_true= at prediction time
    with_truth = Monitor(window=100, task="classification", thresholds={})
    with_truth.log_predictions(None, preds, y_true=np.asarray(labels))
    assert with_truth.metrics()["accuracy"] == pytest.approx(0.8)


def _state(mon: Monitor) -> tuple[Any, ...]:
    m = mon.metrics()
    return (
        mon.label_stats(),
        {k: v for k, v in m.items() if v is not None},
        list(mon._targets.classes),
    )


@pytest.mark.parametrize(
    ("preds", "labels", "kind"),
    [
        (np.array([0, 1, 1]), ["no", "yes", "yes"], "int"),
        (np.array([0, 1, 1]), [0.5, 1.0, 1.0], "int"),
        (np.array([False, True, True]), [0, 2, 1], "bool"),
        (np.array(["0", "1", "1"]), [0.5, 1.0, 1.0], "str"),
        (np.array([0, 1, 1]), np.array([0, "x", 1], dtype=object), "int"),
    ],
)
def test_labels_that_cannot_be_converted_raise_and_change_nothing(
    preds: Any, labels: Any, kind: str
) -> None:
    ids = ["a", "b", "c"]
    mon = Monitor(window=100, thresholds={})
    mon.log_predictions(None, preds, ids=ids)
    before = _state(mon)
    with pytest.raises(SchemaError, match=f"class labels are {kind}") as info:
        mon.log_labels(ids, labels)
    assert "y_true" in str(info.value) and "Pass y_true as" in str(info.value)
    assert _state(mon) == before  # the predictions still wait; no class was added
    with pytest.raises(SchemaError, match=f"class labels are {kind}"):
        mon.log_predictions(None, preds, ids=["d", "e", "f"], y_true=labels)
    assert _state(mon) == before
    mon.log_labels(ids, preds)  # the right labels still find their predictions
    assert mon.metrics()["accuracy"] == 1.0


def test_a_regression_label_that_is_not_a_number_is_refused_at_once() -> None:
    mon = Monitor(window=100, task="regression", thresholds={})
    mon.log_predictions(None, np.array([0.5, 1.5]), ids=["a", "b"])
    before = _state(mon)
    with pytest.raises(SchemaError, match="must hold numbers"):
        mon.log_labels(["a", "b"], ["1.0", "n/a"])
    assert _state(mon) == before
    mon.log_labels(["a", "b"], ["1.0", "2.0"])  # numbers written as text are numbers
    assert mon.metrics()["mae"] == pytest.approx(0.5)


# ---------------------------------------------------------------- NaN labels


def test_nan_and_none_labels_are_missing_and_their_predictions_keep_waiting() -> None:
    mon = Monitor(window=100, thresholds={})
    mon.log_predictions(None, np.array([1, 0, 1, 0]), ids=list("abcd"))
    out = mon.log_labels(list("abcd"), np.array([1.0, np.nan, 1.0, np.nan]))
    assert (out["matched"], out["missing"]) == (2, 2)
    out = mon.log_labels(["d"], np.array([None], dtype=object))
    assert (out["matched"], out["missing"]) == (0, 1)
    got, stats = mon.metrics(), mon.label_stats()
    assert (got["accuracy"], got["n_labelled"]) == (1.0, 2)  # a NaN is not a wrong answer
    assert (stats["labels_missing"], stats["pending"], stats["labels_total"]) == (3, 2, 2)
    assert mon.log_labels(["b", "d"], [1, 0])["matched"] == 2  # the real labels come later
    assert mon.metrics()["accuracy"] == pytest.approx(
        skm.accuracy_score([1, 1, 1, 0], [1, 0, 1, 0])
    )


def test_missing_labels_given_with_the_predictions_are_counted_not_scored() -> None:
    y = np.array([1.0, np.nan, 3.0, np.inf])
    p = np.array([1.5, 2.0, 2.0, 4.0])
    mon = Monitor(window=100, task="regression", thresholds={})
    mon.log_predictions(None, p, y_true=y, ids=list("abcd"))
    assert mon.metrics()["mae"] == pytest.approx(0.75)
    stats = mon.label_stats()
    assert (stats["labels_missing"], stats["labels_total"], stats["pending"]) == (2, 2, 2)
    assert mon.log_labels(["b", "d"], [2.0, 5.0])["matched"] == 2  # b and d still wait
    assert mon.metrics()["mae"] == pytest.approx(
        skm.mean_absolute_error([1, 3, 2, 5], p[[0, 2, 1, 3]])
    )


# ---------------------------------------------------------------- the clock steps back


@pytest.mark.parametrize("look", ["label_stats", "report", "metrics"])
def test_expired_predictions_stay_expired_when_the_clock_steps_back(look: str) -> None:
    clock = FakeClock()
    start = clock.now()
    mon = Monitor(window=dt.timedelta(hours=1), label_ttl_s=60, thresholds={}, clock=clock)
    mon.log_predictions(None, np.array([0, 1]), ids=["a", "b"])
    clock.advance(120)
    if look == "label_stats":
        assert mon.label_stats()["pending"] == 0
    elif look == "report":
        assert mon.report().to_dict()["labels"]["pending"] == 0
    else:
        mon.metrics()  # the monitor saw the time: a and b are past their TTL
    clock.set(start)  # an NTP step back
    out = mon.log_labels(["a", "b"], [0, 1])
    assert (out["matched"], out["expired"]) == (0, 2)
    after = mon.label_stats()
    assert after["predictions_expired"] == 2 and after["pending"] == 0
    assert mon.metrics()["n_labelled"] == 0


def test_one_row_calls_buffered_across_a_step_back_do_not_resurrect_expired_ones() -> None:
    clock = FakeClock()
    start = clock.now()
    mon = Monitor(window=100, label_ttl_s=60, thresholds={}, clock=clock)
    mon.log_predictions(None, np.array([0, 1]), ids=["a", "b"])
    clock.advance(120)
    mon.log_predictions(None, 0, ids="c")  # one-row calls wait in a buffer; this one expires a, b
    clock.set(start)
    mon.log_predictions(None, 1, ids="d")
    out = mon.log_labels(["a", "b", "c", "d"], [0, 1, 0, 1])
    assert (out["matched"], out["expired"]) == (2, 2)
    stats = mon.label_stats()
    assert (stats["predictions_expired"], stats["labels_matched"]) == (2, 2)


def test_a_time_window_survives_the_clock_stepping_back_and_forth() -> None:
    clock = FakeClock()
    start = clock.now()
    mon = Monitor(
        window=dt.timedelta(minutes=10), buckets=10, label_ttl_s=300, thresholds={}, clock=clock
    )
    totals: list[dict[str, int]] = []
    for step in range(40):
        mon.log_predictions(None, np.array([step % 2, 1]), ids=[f"x{step}", f"y{step}"])
        mon.log_labels([f"x{step}"], [step % 2])
        clock.advance(60)
        if step == 12:
            clock.set(start)  # back by 13 minutes, in the middle of the run
        totals.append(mon.label_stats())
        got = mon.metrics()
        assert got["n_predictions"] is not None
        assert 0 < got["n_predictions"] <= 2 * (step + 1)
        assert got["accuracy"] == 1.0
    for earlier, later in itertools.pairwise(totals):
        for key, value in earlier.items():
            if key not in ("pending", "labels_waiting"):
                assert later[key] >= value, key  # running counts never go back
    assert totals[-1]["labels_matched"] == 40
    # The monitor's time stood still until the clock caught up (step 25); since then the
    # window slides again and holds the last ten minutes.
    n_predictions = mon.metrics()["n_predictions"]
    assert n_predictions is not None and n_predictions <= 2 * 11


def test_the_latest_time_seen_survives_save_and_load(tmp_path: Path) -> None:
    clock = FakeClock()
    start = clock.now()
    mon = Monitor(window=dt.timedelta(hours=1), label_ttl_s=60, thresholds={}, clock=clock)
    mon.log_predictions(None, np.array([0, 1]), ids=["a", "b"])
    clock.advance(30)
    mon.log_predictions(None, np.array([0, 1]), ids=["c", "d"])
    clock.advance(45)
    mon.metrics()  # seen at 75 s: a and b (75 s old) are past their TTL, c and d (45 s) not
    path = mon.save(tmp_path / "m.npz")
    back = Monitor.load(path, clock=FakeClock(start))  # a restart on a clock that is behind
    out = back.log_labels(["a", "c"], [0, 0])
    assert (out["matched"], out["expired"]) == (1, 1)


# ---------------------------------------------------------------- damaged state files


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    mon = Monitor(window=100, thresholds={})
    mon.log_predictions(None, np.array([1, 0] * 40), ids=[f"i{i}" for i in range(80)])
    mon.log_labels([f"i{i}" for i in range(30)], [1, 0] * 15)
    return mon.save(tmp_path / "monitor.npz")


def _rewrite(path: Path, change: Any) -> None:
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    change(arrays)
    np.savez_compressed(path, **arrays)


def _meta(arrays: dict[str, np.ndarray], text: str) -> None:
    arrays["meta"] = np.frombuffer(text.encode(), dtype=np.uint8)


def _bad_meta_json(a: dict[str, np.ndarray]) -> None:
    _meta(a, '{"format": 2, "params": ')


def _meta_a_list(a: dict[str, np.ndarray]) -> None:
    _meta(a, "[1, 2]")


def _meta_not_utf8(a: dict[str, np.ndarray]) -> None:
    a["meta"] = np.frombuffer(b"\xff\xfe\x00", dtype=np.uint8)


def _no_keys(a: dict[str, np.ndarray]) -> None:
    del a["ring_keys"]


def _no_meta(a: dict[str, np.ndarray]) -> None:
    del a["meta"]


def _short_ring(a: dict[str, np.ndarray]) -> None:
    a["ring_conf"] = a["ring_conf"][:3]


def _conf_not_square(a: dict[str, np.ndarray]) -> None:
    a["ring_conf"] = np.zeros((10, 2, 5), dtype=np.int64)


def _conf_too_small(a: dict[str, np.ndarray]) -> None:
    a["ring_pred"] = np.zeros((10, 1), dtype=np.int64)


def _text_array(a: dict[str, np.ndarray]) -> None:
    a["ring_n_pred"] = np.array(["x"] * 10)


def _bad_params(a: dict[str, np.ndarray]) -> None:
    meta = json.loads(a["meta"].tobytes().decode())
    meta["params"]["buckets"] = -3
    _meta(a, json.dumps(meta))


def _bad_pending(a: dict[str, np.ndarray]) -> None:
    meta = json.loads(a["meta"].tobytes().decode())
    meta["pending"] = [["i1", "not an int"]]
    _meta(a, json.dumps(meta))


@pytest.mark.parametrize(
    "change",
    [
        _bad_meta_json,
        _meta_a_list,
        _meta_not_utf8,
        _no_keys,
        _no_meta,
        _short_ring,
        _conf_not_square,
        _conf_too_small,
        _text_array,
        _bad_params,
        _bad_pending,
    ],
)
def test_a_state_file_with_wrong_contents_raises_a_state_file_error(
    saved: Path, change: Any
) -> None:
    _rewrite(saved, change)
    with pytest.raises(StateFileError, match="Monitor.save") as info:
        Monitor.load(saved)
    assert str(saved) in str(info.value) and info.value.path == str(saved)


@pytest.mark.parametrize(
    "damage",
    [
        lambda b: b[: len(b) // 2],  # truncated: BadZipFile
        lambda b: b[:10],
        lambda b: b"",  # EOFError
        lambda b: b"not a zip file at all",
        lambda b: b"PK\x03\x04" + b"\x00" * 100,
    ],
)
def test_a_truncated_or_foreign_file_raises_a_state_file_error(saved: Path, damage: Any) -> None:
    saved.write_bytes(damage(saved.read_bytes()))
    with pytest.raises(StateFileError, match=str(saved.name)):
        Monitor.load(saved)


def test_any_flipped_byte_loads_or_raises_a_state_file_error(saved: Path) -> None:
    good = saved.read_bytes()
    causes: set[type[BaseException]] = set()
    for offset in range(0, len(good), 7):
        damaged = bytearray(good)
        damaged[offset] ^= 0xFF
        saved.write_bytes(bytes(damaged))
        try:
            mon = Monitor.load(saved)
        except StateFileError as exc:
            cause = exc.__cause__  # each names what went wrong underneath
            assert cause is not None
            causes.add(type(cause))
        else:  # a flip in zip metadata that nothing reads
            assert mon.metrics()["n_predictions"] == 80
    assert zipfile.BadZipFile in causes
    assert any(c.__module__ == "zlib" for c in causes)  # zlib.error: a damaged deflate stream


def test_a_missing_file_is_still_a_file_not_found_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        Monitor.load(tmp_path / "nope.npz")
    assert issubclass(StateFileError, ModelDeployError) and issubclass(StateFileError, ValueError)


def test_a_zip_without_the_monitor_arrays_raises_a_state_file_error(tmp_path: Path) -> None:
    path = tmp_path / "other.npz"
    buf = io.BytesIO()
    np.savez(buf, x=np.arange(3))
    path.write_bytes(buf.getvalue())
    with pytest.raises(StateFileError, match="not a file written by Monitor.save"):
        Monitor.load(path)
