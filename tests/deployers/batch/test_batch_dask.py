"""The Dask backend on a LocalCluster: same output as the local backends, data read on workers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import RandomForestClassifier

from modeldeploy.deployers.batch import BatchDeployer, _pools
from modeldeploy.exceptions import SchemaError
from modeldeploy.registry.signature import Signature

distributed = pytest.importorskip("distributed")

N_ROWS = 3_000
CHUNK = 400


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    # In-process workers: a real scheduler and two single-threaded workers, started in ~0.1 s.
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as c,
    ):
        yield c


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("dask")
    rng = np.random.default_rng(11)
    X = rng.normal(size=(N_ROWS, 5)).astype(np.float32)
    y = (X[:, 0] * X[:, 1] + X[:, 2] > 0).astype(np.int64)
    model = RandomForestClassifier(n_estimators=8, max_depth=5, random_state=0).fit(X, y)
    np.save(root / "X.npy", X)
    df = pd.DataFrame(X, columns=[f"f{j}" for j in range(5)])
    df.insert(0, "id", np.arange(N_ROWS) + 10_000)
    df.to_parquet(root / "X.parquet", row_group_size=1_000)
    return {"root": root, "X": X, "df": df, "model": model}


def test_dask_backend_gives_the_same_output_as_local_backends(
    client: Any, setup: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, X, model = setup["root"], setup["X"], setup["model"]
    submitted: list[Any] = []
    original = _pools._DaskPool.submit

    def spy(self: Any, ref: Any, *args: Any) -> Any:
        submitted.append(ref)
        return original(self, ref, *args)

    monkeypatch.setattr(_pools._DaskPool, "submit", spy)
    scattered: list[dict[str, Any]] = []
    real_scatter = client.scatter

    def scatter_spy(data: Any, **kwargs: Any) -> Any:
        scattered.append({"type": type(data).__name__, **kwargs})
        return real_scatter(data, **kwargs)

    monkeypatch.setattr(client, "scatter", scatter_spy)

    for method in ("predict", "predict_proba"):
        local = tmp_path / f"local-{method}.npy"
        remote = tmp_path / f"dask-{method}.npy"
        with BatchDeployer(model, chunk_size=CHUNK, backend="threads", method=method) as job:
            job.run(root / "X.npy", local)
        with BatchDeployer(model, chunk_size=CHUNK, client=client, method=method) as job:
            result = job.run(root / "X.npy", remote)
        assert result.rows == N_ROWS and result.chunks == 8
        assert remote.read_bytes() == local.read_bytes()
    np.testing.assert_array_equal(np.load(tmp_path / "dask-predict.npy"), model.predict(X))
    # Workers read the file: each task carries a path and a row range, never the rows.
    assert {type(ref).__name__ for ref in submitted} == {"_NpyRange"}
    # The model went out once per run, to every worker.
    assert scattered == [{"type": "_Scorer", "broadcast": True, "hash": False}] * 2

    submitted.clear()
    with BatchDeployer(model, chunk_size=CHUNK, backend="threads") as job:
        job.run(root / "X.parquet", tmp_path / "local.parquet", id_columns=["id"])
    with BatchDeployer(model, chunk_size=CHUNK, backend="dask", client=client) as job:
        job.run(root / "X.parquet", tmp_path / "dask.parquet", id_columns=["id"])
        in_memory = job.run(setup["df"].drop(columns="id"))
    assert {type(ref).__name__ for ref in submitted} == {"_ParquetRange", "LoadedRef"}
    assert (tmp_path / "dask.parquet").read_bytes() == (tmp_path / "local.parquet").read_bytes()
    out = pd.read_parquet(tmp_path / "dask.parquet")
    np.testing.assert_array_equal(out["id"], setup["df"]["id"])
    np.testing.assert_array_equal(out["prediction"], model.predict(X))
    np.testing.assert_array_equal(in_memory, model.predict(X))


def test_dask_bad_chunk_names_rows_and_skip_reports_it(client: Any, setup: dict[str, Any]) -> None:
    X, model = setup["X"].copy(), setup["model"]
    X[2_345, 3] = np.nan
    signature = Signature.infer(setup["X"])
    with pytest.raises(SchemaError, match=r"Chunk 5 \(rows 2000\.\.2399\).*row 2345"):
        BatchDeployer(model, chunk_size=CHUNK, client=client, signature=signature).run(X)
    job = BatchDeployer(
        model, chunk_size=CHUNK, client=client, signature=signature, on_error="skip"
    )
    scores = job.run(X)
    assert job.last_result is not None
    assert [(s.chunk, s.rows) for s in job.last_result.skipped] == [(5, range(2000, 2400))]
    keep = np.r_[0:2000, 2400:N_ROWS]
    np.testing.assert_array_equal(scores[keep], model.predict(X[keep]))
    assert np.isnan(scores[2000:2400]).all()
