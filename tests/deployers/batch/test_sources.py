"""Batch sources and outputs: chunking, row ranges, ids, lazy reads, errors."""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from modeldeploy.deployers.sources import (
    Chunk,
    ChunkRef,
    LoadedRef,
    Source,
    open_output,
    open_source,
    output_columns,
)
from modeldeploy.exceptions import InvalidParameterError, SchemaError


def _collect(source: Any, chunk_size: int, *, lazy: bool = False) -> list[Any]:
    return [ref.load() for ref in source.refs(chunk_size, lazy=lazy)]


@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("dtype", [np.float32, np.int16, ">f8"])
def test_npy_chunks_are_read_without_loading_the_file(
    tmp_path: Path, order: Any, dtype: Any
) -> None:
    X = np.array(np.arange(1_037 * 3).reshape(1_037, 3) * 1.5, dtype=np.dtype(dtype), order=order)
    np.save(tmp_path / "X.npy", X)
    source = open_source(tmp_path / "X.npy")
    assert source.n_rows == 1_037
    refs = list(source.refs(100, lazy=True))
    # A chunk handle is a path and a row range, whatever the size of the chunk.
    assert all(len(pickle.dumps(ref)) < 1_000 for ref in refs)
    chunks = [ref.load() for ref in refs]
    assert [(c.index, c.start, c.stop) for c in chunks][-2:] == [(9, 900, 1000), (10, 1000, 1037)]
    np.testing.assert_array_equal(np.concatenate([c.X for c in chunks]), X)
    assert chunks[0].X.dtype == np.dtype(dtype)


def test_npy_version_2_header_and_1d_arrays(tmp_path: Path) -> None:
    X = np.arange(50, dtype=np.float64)
    with open(tmp_path / "v2.npy", "wb") as f:
        np.lib.format.write_array(f, X, version=(2, 0))
    chunks = _collect(open_source(tmp_path / "v2.npy"), 16)
    assert [c.X.shape for c in chunks] == [(16, 1), (16, 1), (16, 1), (2, 1)]
    np.testing.assert_array_equal(np.concatenate([c.X for c in chunks])[:, 0], X)


def test_truncated_npy_names_the_rows(tmp_path: Path) -> None:
    np.save(tmp_path / "X.npy", np.ones((100, 4)))
    source = open_source(tmp_path / "X.npy")
    with open(tmp_path / "X.npy", "r+b") as f:
        f.truncate(f.seek(0, 2) - 8 * 4 * 30)  # drop the last 30 rows
    refs = list(source.refs(40, lazy=True))
    refs[0].load()
    with pytest.raises(SchemaError, match=r"ended early: expected rows 40\.\.79"):
        refs[1].load()


def test_object_npy_is_refused(tmp_path: Path) -> None:
    np.save(tmp_path / "o.npy", np.array([[1, "a"]], dtype=object), allow_pickle=True)
    with pytest.raises(InvalidParameterError, match="holds Python objects"):
        open_source(tmp_path / "o.npy")


def _frame(n: int) -> Any:
    rng = np.random.default_rng(0)
    df = pd.DataFrame(rng.normal(size=(n, 3)), columns=["a", "b", "c"])
    df.insert(1, "key", [f"k{i}" for i in range(n)])
    return df


def test_parquet_streamed_and_lazy_chunks_agree(tmp_path: Path) -> None:
    df = _frame(2_050)
    df.to_parquet(tmp_path / "X.parquet", row_group_size=700)
    source = open_source(tmp_path / "X.parquet", ["key"])
    assert source.n_rows == 2_050
    streamed = _collect(source, 300)
    lazy_refs = list(source.refs(300, lazy=True))
    assert all(len(pickle.dumps(ref)) < 1_000 for ref in lazy_refs)
    lazy = [ref.load() for ref in lazy_refs]
    assert [(c.start, c.stop) for c in streamed] == [(c.start, c.stop) for c in lazy]
    assert streamed[-1].stop == 2_050 and len(streamed) == 7
    for a, b in zip(streamed, lazy, strict=True):
        pd.testing.assert_frame_equal(a.X.reset_index(drop=True), b.X.reset_index(drop=True))
        assert a.ids is not None and b.ids is not None
        np.testing.assert_array_equal(a.ids["key"], b.ids["key"])
        assert list(a.X.columns) == ["a", "b", "c"]
    keys = np.concatenate([c.ids["key"] for c in lazy if c.ids is not None])
    np.testing.assert_array_equal(keys, df["key"].to_numpy())


def test_csv_chunks_carry_ids_and_global_rows(tmp_path: Path) -> None:
    df = _frame(1_001)
    df.to_csv(tmp_path / "X.csv", index=False)
    chunks = _collect(open_source(str(tmp_path / "X.csv"), ["key"]), 250)
    assert [(c.start, c.stop) for c in chunks] == [
        (0, 250),
        (250, 500),
        (500, 750),
        (750, 1000),
        (1000, 1001),
    ]
    np.testing.assert_allclose(pd.concat([c.X for c in chunks]).to_numpy(), df[["a", "b", "c"]])
    assert chunks[-1].ids is not None and chunks[-1].ids["key"].tolist() == ["k1000"]


def test_missing_id_column_names_it(tmp_path: Path) -> None:
    df = _frame(10)
    with pytest.raises(SchemaError, match="'order_id' is not in the DataFrame") as info:
        open_source(df, ["order_id"])
    assert info.value.column == "order_id"
    df.to_csv(tmp_path / "X.csv", index=False)
    with pytest.raises(SchemaError, match="'order_id'"):
        _collect(open_source(tmp_path / "X.csv", ["order_id"]), 5)


def test_iterable_chunks_keep_their_own_boundaries() -> None:
    parts = [np.ones((3, 2)), np.empty((0, 2)), np.zeros((5, 2)), np.arange(4.0)]
    chunks = _collect(open_source(iter(parts)), 1_000)
    assert [(c.start, c.stop) for c in chunks] == [(0, 3), (3, 3), (3, 8), (8, 12)]
    assert chunks[-1].X.shape == (4, 1)
    assert open_source(iter(parts)).n_rows is None


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (42, "must be a numpy array, a pandas DataFrame"),
        ("missing.parquet", "does not exist"),
        ({"a": 1}, "must be a numpy array"),
    ],
)
def test_unknown_sources_are_refused(data: Any, match: str) -> None:
    with pytest.raises(InvalidParameterError, match=match):
        open_source(data)


def test_unknown_file_suffix_is_refused(tmp_path: Path) -> None:
    (tmp_path / "X.xlsx").write_bytes(b"")
    with pytest.raises(InvalidParameterError, match="Cannot tell the format"):
        open_source(tmp_path / "X.xlsx")
    with pytest.raises(InvalidParameterError, match="must be a path ending in .npy"):
        open_output(tmp_path / "scores.json")


def test_output_column_names() -> None:
    assert output_columns(np.zeros(3), "predict", None) == ["prediction"]
    assert output_columns(np.zeros((3, 2)), "predict", None) == ["prediction_0", "prediction_1"]
    assert output_columns(np.zeros((3, 2)), "predict_proba", ["no", "yes"]) == [
        "proba_no",
        "proba_yes",
    ]
    assert output_columns(np.zeros((3, 3)), "predict_proba", None) == [
        "proba_0",
        "proba_1",
        "proba_2",
    ]


def test_id_column_clashing_with_a_score_column_is_refused(tmp_path: Path) -> None:
    out = open_output(tmp_path / "s.csv")
    with pytest.raises(InvalidParameterError, match="'prediction' has the name of a score"):
        out.write_part(tmp_path / "p.csv", np.zeros(2), {"prediction": np.ones(2)}, ["prediction"])


class _Squares(Source):
    """A source of the user's own: rows computed on the fly, in chunks."""

    def __init__(self, n: int) -> None:
        self.n_rows = n

    def refs(self, chunk_size: int, *, lazy: bool) -> Iterator[ChunkRef]:
        assert self.n_rows is not None
        for index, start in enumerate(range(0, self.n_rows, chunk_size)):
            rows = np.arange(start, min(start + chunk_size, self.n_rows), dtype=np.float64)
            yield LoadedRef(Chunk(index, start, np.column_stack([rows, rows**2])))

    def describe(self) -> dict[str, Any]:
        return {"kind": "squares", "rows": self.n_rows}


def test_a_custom_source_is_scored_and_resumable(tmp_path: Path) -> None:
    from sklearn.linear_model import LinearRegression

    from modeldeploy.deployers.batch import BatchDeployer

    grid = np.column_stack([np.arange(50.0), np.arange(50.0) ** 2])
    model = LinearRegression().fit(grid, grid @ [1.0, -0.5])
    assert open_source(_Squares(10)).n_rows == 10
    seen: list[tuple[int, int | None]] = []
    with BatchDeployer(model, chunk_size=7, n_jobs=1) as job:
        result = job.run(
            _Squares(30), tmp_path / "s.npy", callback=lambda d, t: seen.append((d, t))
        )
    assert result.chunks == 5 and seen[-1] == (30, 30)
    rows = np.arange(30.0)
    np.testing.assert_allclose(np.load(tmp_path / "s.npy"), rows - 0.5 * rows**2, atol=1e-9)
