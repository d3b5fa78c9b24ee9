"""BatchDeployer with real registered versions: signature validation, DataFrame-trained models."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder

from modeldeploy import ModelRegistry
from modeldeploy.deployers.batch import BatchDeployer
from modeldeploy.exceptions import InvalidParameterError, SchemaError

N_ROWS = 1_500


def _customers(n: int, seed: int) -> Any:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "tenure": rng.integers(0, 72, size=n),
            "monthly": rng.normal(60, 20, size=n).round(2),
            "plan": rng.choice(["basic", "plus", "pro"], size=n),
            "tickets": rng.poisson(1.5, size=n).astype(np.int64),
        }
    )


@pytest.fixture
def churn(registry: ModelRegistry) -> dict[str, Any]:
    train = _customers(600, 0)
    y = ((train["tickets"] > 2) | (train["plan"] == "basic") & (train["tenure"] < 12)).astype(int)
    model = make_pipeline(
        ColumnTransformer(
            [("plan", OneHotEncoder(handle_unknown="ignore"), ["plan"])],
            remainder="passthrough",
        ),
        RandomForestClassifier(n_estimators=10, max_depth=5, random_state=0),
    ).fit(train, y)
    version = registry.register("churn", model, sample=train)
    return {"version": version, "model": model}


def test_dataframe_trained_version_scores_parquet_and_csv_with_ids(
    churn: dict[str, Any], tmp_path: Path
) -> None:
    version, model = churn["version"], churn["model"]
    assert version.signature is not None and version.signature.input_type == "dataframe"
    df = _customers(N_ROWS, 1)
    expected = model.predict_proba(df)
    # Columns in another order than at training, plus an id: the signature puts them right.
    stored = df[["plan", "tickets", "monthly", "tenure"]].copy()
    stored.insert(0, "customer_id", [f"c{i:05d}" for i in range(N_ROWS)])
    stored.to_parquet(tmp_path / "customers.parquet", row_group_size=500)
    stored.to_csv(tmp_path / "customers.csv", index=False)
    for source, out in (("customers.parquet", "scores.parquet"), ("customers.csv", "s.csv")):
        with BatchDeployer(version, chunk_size=400, method="predict_proba") as job:
            result = job.run(tmp_path / source, tmp_path / out, id_columns=["customer_id"])
        assert result.rows == N_ROWS and not result.skipped
        scores = (
            pd.read_parquet(tmp_path / out)
            if out.endswith(".parquet")
            else pd.read_csv(tmp_path / out)
        )
        assert list(scores.columns) == ["customer_id", "proba_0", "proba_1"]
        assert scores["customer_id"].tolist() == stored["customer_id"].tolist()
        np.testing.assert_allclose(scores[["proba_0", "proba_1"]].to_numpy(), expected)


def test_version_signature_validates_every_chunk(churn: dict[str, Any], tmp_path: Path) -> None:
    version, model = churn["version"], churn["model"]
    df = _customers(N_ROWS, 2)
    df["monthly"] = df["monthly"].astype(object)
    df.loc[987, "monthly"] = "n/a"
    with pytest.raises(SchemaError) as info:
        BatchDeployer(version, chunk_size=400).run(df)
    assert "Chunk 2 (rows 800..1199)" in str(info.value)
    assert info.value.row == 987 and info.value.column == "monthly"

    monitor = _Monitor()
    job = BatchDeployer(version, chunk_size=400, on_error="skip", monitor=monitor)
    scores = job.run(df)
    job.close()
    assert job.last_result is not None
    assert [(s.chunk, s.rows) for s in job.last_result.skipped] == [(2, range(800, 1200))]
    keep = np.r_[0:800, 1200:N_ROWS]
    clean = df.iloc[keep].astype({"monthly": np.float64})
    np.testing.assert_array_equal(scores[keep], model.predict(clean))
    assert monitor.versions == {"churn:1"}


def test_resume_refuses_a_checkpoint_of_another_version(
    churn: dict[str, Any], registry: ModelRegistry, tmp_path: Path
) -> None:
    version = churn["version"]
    df = _customers(N_ROWS, 3)
    out = tmp_path / "scores.parquet"
    calls = 0

    def stop_half_way(done: int, total: int | None) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        BatchDeployer(version, chunk_size=400, n_jobs=1).run(df, out, callback=stop_half_way)
    assert not out.exists() and out.with_name("scores.parquet.partial").is_dir()
    other = registry.register("churn", churn["model"], sample=df)
    with pytest.raises(InvalidParameterError, match="another run"):
        BatchDeployer(other, chunk_size=400).run(df, out, resume=True)
    result = BatchDeployer(version, chunk_size=400).run(df, out, resume=True)
    assert result.resumed_chunks == 2 and result.rows == N_ROWS
    np.testing.assert_array_equal(pd.read_parquet(out)["prediction"], churn["model"].predict(df))


class _Monitor:
    def __init__(self) -> None:
        self.versions: set[str | None] = set()

    def log_predictions(self, X: Any, y_pred: Any, **kwargs: Any) -> None:
        self.versions.add(kwargs.get("version"))

    def log_error(self, error: BaseException, *, version: str | None = None) -> None:
        self.versions.add(version)
