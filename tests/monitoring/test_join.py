"""LabelJoin: labels from anywhere matched to captured predictions, in memory and on Dask."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score

from modeldeploy import Monitor
from modeldeploy.exceptions import InvalidParameterError, SchemaError
from modeldeploy.monitoring.capture import LabelCapture, PredictionCapture
from modeldeploy.monitoring.join import LabelJoin
from modeldeploy.testing import FakeClock

T0 = datetime(2026, 3, 1, tzinfo=timezone.utc)


def _stream(seed: int, n_pred: int = 3000, n_lab: int = 2500, dup: float = 0.05) -> tuple[
    pd.DataFrame, pd.DataFrame
]:  # fmt: skip
    """Random captured predictions and labels, with repeated ids on both sides."""
    rng = np.random.default_rng(seed)
    pool = n_pred + n_lab // 2
    pred_ids = rng.choice(pool, size=n_pred, replace=rng.random() < dup * 4)
    pred_times = T0 + pd.to_timedelta(np.sort(rng.integers(0, 3600, n_pred)), unit="s")
    preds = pd.DataFrame(
        {
            "id": pred_ids.astype(np.int64),
            "time": pred_times,
            "version": rng.choice(["m:1", "m:2"], n_pred),
            "prediction": rng.integers(0, 2, n_pred),
        }
    )
    lab_ids = rng.choice(pool, size=n_lab, replace=True)
    lab_times = T0 + pd.to_timedelta(np.sort(rng.integers(0, 7200, n_lab)), unit="s")
    labels = pd.DataFrame({"id": lab_ids.astype(np.int64), "label": rng.integers(0, 2, n_lab),
                           "time": lab_times})  # fmt: skip
    return preds, labels


def _reference(preds: pd.DataFrame, labels: pd.DataFrame, ttl_s: float | None) -> pd.DataFrame:
    """The documented rules, written with pandas sorts and merges."""
    p = preds.assign(_seq=np.arange(len(preds)))
    p = p.sort_values(["time", "_seq"], kind="stable").drop_duplicates("id", keep="first")
    lab = labels.assign(_seq=np.arange(len(labels)))
    lab = lab.sort_values(["time", "_seq"], kind="stable").drop_duplicates("id", keep="last")
    m = p.merge(lab.rename(columns={"time": "label_time"}), on="id", how="inner")
    if ttl_s is not None:
        m = m[(m["label_time"] - m["time"]).dt.total_seconds() <= ttl_s]
    out: pd.DataFrame = m[["id", "version", "prediction", "label"]]
    ordered: pd.DataFrame = out.sort_values("id").reset_index(drop=True)
    return ordered


def _pairs(result: Any) -> pd.DataFrame:
    frame: pd.DataFrame = result.table.to_pandas()
    out = frame[["id", "version", "prediction", "label"]]
    ordered: pd.DataFrame = out.sort_values("id").reset_index(drop=True)
    return ordered


@pytest.mark.parametrize("ttl_s", [None, 600.0])
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("ids", ["dense", "sparse", "text"])
def test_join_follows_the_documented_rules(seed: int, ttl_s: float | None, ids: str) -> None:
    preds, labels = _stream(seed)
    # Compact integer ids take the direct-address path, others Arrow's hash lookup.
    if ids == "sparse":
        preds["id"] = preds["id"] * 1_000_003 + 2**40
        labels["id"] = labels["id"] * 1_000_003 + 2**40
    elif ids == "text":
        preds["id"] = "req-" + preds["id"].astype(str)
        labels["id"] = "req-" + labels["id"].astype(str)
    result = LabelJoin(ttl=ttl_s).join(preds, labels)
    expected = _reference(preds, labels, ttl_s)
    pd.testing.assert_frame_equal(_pairs(result), expected, check_dtype=False)
    c = result.counts
    assert c["matched"] == len(expected)
    assert c["predictions"] == len(preds) and c["labels"] == len(labels)
    assert c["duplicate_predictions"] + c["matched"] + c["expired"] + c[
        "unmatched_predictions"] == len(preds)  # fmt: skip
    assert c["unmatched_labels"] == len(labels) - len(expected)


@settings(max_examples=40, deadline=None)
@given(
    pred_ids=st.lists(st.integers(0, 20), max_size=40),
    lab_ids=st.lists(st.integers(0, 20), max_size=40),
    ttl=st.one_of(st.none(), st.integers(0, 30)),
    seed=st.integers(0, 2**16),
)
def test_join_equals_the_reference_on_any_ids(
    pred_ids: list[int], lab_ids: list[int], ttl: int | None, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    preds = pd.DataFrame({
        "id": np.array(pred_ids, dtype=np.int64),
        "time": T0 + pd.to_timedelta(rng.integers(0, 20, len(pred_ids)), unit="s"),
        "version": "m:1",
        "prediction": rng.integers(0, 3, len(pred_ids)),
    })  # fmt: skip
    labels = pd.DataFrame({
        "id": np.array(lab_ids, dtype=np.int64),
        "label": rng.integers(0, 3, len(lab_ids)),
        "time": T0 + pd.to_timedelta(rng.integers(0, 40, len(lab_ids)), unit="s"),
    })  # fmt: skip
    result = LabelJoin(ttl=ttl).join(preds, labels)
    expected = _reference(preds, labels, ttl)
    pd.testing.assert_frame_equal(_pairs(result), expected, check_dtype=False)


def test_labels_from_anywhere_give_the_same_join(tmp_path: Path) -> None:
    clock = FakeClock(T0)
    with PredictionCapture(tmp_path, clock=clock, segment_rows=50) as cap:
        for k in range(10):
            ids = [f"req-{k * 20 + i}" for i in range(20)]
            cap.record(None, np.arange(20) % 2, ids=ids, version="m:1")
            clock.advance(1)
    rng = np.random.default_rng(3)
    chosen = rng.permutation(200)[:120]
    ids = [f"req-{i}" for i in chosen]
    values = rng.integers(0, 2, 120)
    frame = pd.DataFrame({"request": ids, "truth": values})
    frame.to_parquet(tmp_path / "labels.parquet")
    frame.to_csv(tmp_path / "labels.csv", index=False)
    with LabelCapture(tmp_path, clock=clock) as labels:
        labels.log_labels(ids[:60], values[:60])
        labels.log_labels(ids[60:], values[60:])
    named = LabelJoin(id_column="request", label_column="truth", clock=clock)
    plain = LabelJoin(clock=clock)
    results = [
        named.join(cap, frame),
        named.join(cap, pa.Table.from_pandas(frame)),
        named.join(cap, tmp_path / "labels.parquet"),
        named.join(cap, str(tmp_path / "labels.csv")),
        plain.join(cap, (ids, values)),
        plain.join(cap, labels),
        plain.join(tmp_path / "capture", LabelCapture(tmp_path)),  # read from the folders
        plain.join(tmp_path, str(tmp_path)),  # the captures' location, for both sides
    ]
    expected = dict(zip(ids, values.tolist(), strict=True))
    for result in results:
        got = dict(zip(result.table["id"].to_pylist(), result.table["label"].to_pylist(),
                       strict=True))  # fmt: skip
        assert got == expected
        assert result.counts["matched"] == 120 and result.counts["unmatched_predictions"] == 80


def test_numeric_ids_given_as_text_still_match() -> None:
    preds = pa.table({"id": [1, 2, 3], "time": [T0] * 3, "prediction": [1, 0, 1]})
    result = LabelJoin().join(preds, (["3", "1"], [1, 1]))
    assert sorted(result.table["id"].to_pylist()) == [1, 3]


def test_join_refuses_what_it_cannot_compare() -> None:
    preds = pa.table({"id": [1, 2], "time": [T0] * 2, "prediction": [1, 0]})
    with pytest.raises(SchemaError, match="cannot be compared"):
        LabelJoin().join(preds, (["a", "b"], [1, 0]))
    with pytest.raises(SchemaError, match="'label' column"):
        LabelJoin().join(preds, pd.DataFrame({"id": [1], "y": [1]}))
    with pytest.raises(SchemaError, match="'time' column"):
        LabelJoin().join(pa.table({"id": [1]}), ([1], [1]))
    with pytest.raises(SchemaError, match="one label per id"):
        LabelJoin().join(preds, ([1, 2], [1]))
    with pytest.raises(InvalidParameterError, match="'ttl' parameter"):
        LabelJoin(ttl=-1)
    with pytest.raises(InvalidParameterError, match="'labels' argument"):
        LabelJoin().join(preds, {1: 1})


def test_feeding_a_monitor_gives_sklearn_metrics_on_the_pairs() -> None:
    preds, labels = _stream(5, n_pred=5000, n_lab=4000)
    clock = FakeClock(T0 + timedelta(hours=2))
    monitor = Monitor(window=timedelta(days=1), thresholds={}, clock=clock)
    result = LabelJoin(clock=clock).feed(monitor, preds, labels)
    pairs = result.to_pandas()
    y_true, y_pred = pairs["label"].to_numpy(), pairs["prediction"].to_numpy()
    m = monitor.metrics()
    assert m["n_labelled"] == len(pairs) == result.counts["matched"]
    assert m["accuracy"] == pytest.approx(accuracy_score(y_true, y_pred), abs=1e-12)
    assert m["f1"] == pytest.approx(f1_score(y_true, y_pred), abs=1e-12)
    assert m["precision"] == pytest.approx(precision_score(y_true, y_pred), abs=1e-12)
    assert m["recall"] == pytest.approx(recall_score(y_true, y_pred), abs=1e-12)
    for version in ("m:1", "m:2"):
        part = pairs[pairs["version"] == version]
        got = monitor.metrics(version)
        assert got["accuracy"] == pytest.approx(accuracy_score(part["label"], part["prediction"]))


def test_fed_rows_land_in_the_buckets_of_their_prediction_time() -> None:
    clock = FakeClock(T0 + timedelta(hours=3))
    monitor = Monitor(window=timedelta(hours=1), buckets=4, thresholds={}, clock=clock)
    old = T0  # three hours before now: outside the window
    new = T0 + timedelta(hours=2, minutes=50)
    preds = pa.table({"id": [1, 2, 3], "time": [old, new, new], "prediction": [1, 1, 0]})
    LabelJoin(clock=clock).feed(monitor, preds, ([1, 2, 3], [0, 1, 1]))
    m = monitor.metrics()
    assert m["n_labelled"] == 2 and m["accuracy"] == 0.5  # the old row left with its bucket


# ---------------------------------------------------------------------- dask


@pytest.fixture(scope="module")
def dask_client() -> Iterator[Any]:
    distributed = pytest.importorskip("distributed")
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=False, dashboard_address=":0"
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield client


@pytest.mark.slow
@pytest.mark.parametrize("ttl_s", [None, 900.0])
def test_dask_join_equals_the_in_memory_join(
    dask_client: Any, tmp_path: Path, ttl_s: float | None
) -> None:
    preds, labels = _stream(7, n_pred=20_000, n_lab=15_000)
    clock = FakeClock(T0)
    # Captured through segments, so the Dask side reads them partition by partition.
    cap = PredictionCapture(tmp_path, clock=clock, segment_rows=3000, max_queue=100_000)
    for lo in range(0, len(preds), 500):
        part = preds.iloc[lo : lo + 500]
        clock.set(part["time"].iloc[0].to_pydatetime())
        cap.record(None, part["prediction"].to_numpy(), ids=part["id"].to_numpy(),
                   y_proba=np.column_stack([1 - part["prediction"], part["prediction"]]) * 1.0,
                   version="m:1")  # fmt: skip
    assert cap.close()
    memory = LabelJoin(ttl=ttl_s, engine="memory").join(cap, labels)
    on_dask = LabelJoin(ttl=ttl_s, engine="dask", npartitions=4).join(cap, labels)
    assert memory.counts == on_dask.counts
    a = memory.table.sort_by("id")
    b = on_dask.table.sort_by("id")
    assert a.column_names == b.column_names
    for name in a.column_names:
        assert a.column(name).combine_chunks().equals(b.column(name).combine_chunks()), name


def test_labels_written_and_read_back_keep_their_order_rules(tmp_path: Path) -> None:
    """A label corrected later (same id, later time) replaces the first one."""
    clock = FakeClock(T0)
    with LabelCapture(tmp_path, clock=clock) as labels:
        labels.log_labels([1, 2], [0, 0])
        clock.advance(10)
        labels.log_labels([1], [1])
    preds = pa.table({"id": [1, 2], "time": [T0, T0], "prediction": [1, 1]})
    result = LabelJoin(clock=clock).join(preds, labels)
    got = dict(zip(result.table["id"].to_pylist(), result.table["label"].to_pylist(), strict=True))
    assert got == {1: 1, 2: 0}
    assert result.counts["unmatched_labels"] == 1  # the superseded one
    assert pq.read_table(str(tmp_path / "labels" / labels.segments()[0])).num_rows == 3


@pytest.mark.slow
def test_dask_join_matches_ids_given_as_text_like_the_in_memory_join(dask_client: Any) -> None:
    preds, labels = _stream(11, n_pred=4000, n_lab=3000)
    text_labels = labels.assign(id=labels["id"].astype(str))
    memory = LabelJoin(engine="memory").join(preds, text_labels)
    on_dask = LabelJoin(engine="dask", npartitions=3).join(preds, text_labels)
    assert memory.counts == on_dask.counts and memory.counts["matched"] > 1000
    assert _pairs(memory).equals(_pairs(on_dask))


@pytest.mark.slow
def test_dask_join_on_worker_processes_reads_segments_from_s3(s3_url: str) -> None:
    """Worker processes read the segments from the object store themselves."""
    distributed = pytest.importorskip("distributed")
    from modeldeploy.registry.stores import S3ArtifactStore

    preds, labels = _stream(13, n_pred=6000, n_lab=5000)
    clock = FakeClock(T0)
    cap = PredictionCapture(S3ArtifactStore(s3_url), clock=clock, segment_rows=1500)
    for lo in range(0, len(preds), 500):
        part = preds.iloc[lo : lo + 500]
        clock.set(part["time"].iloc[0].to_pydatetime())
        cap.record(None, part["prediction"].to_numpy(), ids=part["id"].to_numpy(), version="m:1")
    assert cap.close()
    assert len(cap.segments()) == 4
    memory = LabelJoin(engine="memory").join(cap, labels)
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cluster,
        distributed.Client(cluster),
    ):
        on_dask = LabelJoin(engine="dask", npartitions=3).join(cap, labels)
    assert memory.counts == on_dask.counts and memory.counts["matched"] > 2000
    assert _pairs(memory).equals(_pairs(on_dask))
