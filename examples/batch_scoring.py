"""Nightly batch scoring: a Parquet file of customers in, a Parquet file of scores out.

Registers a churn model, then scores 300,000 customers in chunks, in parallel, with the
customer id carried through; shows what a failing chunk does with on_error="skip", how a run
resumes, and scheduled batches with submit / flush.
Needs the [pandas] extra (pandas + pyarrow). Run: python examples/batch_scoring.py
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.ensemble import RandomForestClassifier

from modeldeploy import ModelRegistry
from modeldeploy.deployers.batch import BatchDeployer

FEATURES = ["tenure", "monthly", "tickets", "logins"]


def customers(n: int, seed: int) -> Any:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "customer_id": np.arange(n) + 1_000_000,
            "tenure": rng.integers(0, 72, n).astype(np.float64),
            "monthly": rng.normal(60, 20, n),
            "tickets": rng.poisson(1.5, n).astype(np.float64),
            "logins": rng.poisson(12, n).astype(np.float64),
        }
    )


def main() -> None:
    work = Path(tempfile.mkdtemp())
    reg = ModelRegistry(work / "model-registry")

    # 1. Train and register (the signature validates every chunk later on).
    train = customers(5_000, 0)
    y = ((train["tickets"] > 2) | (train["logins"] < 8)).astype(int)
    model = RandomForestClassifier(n_estimators=30, max_depth=8, random_state=0)
    model.fit(train[FEATURES], y)
    reg.register("churn", model, sample=train[FEATURES])
    reg.promote("churn", 1)
    version = reg.get("churn", alias="production")

    # 2. Score a Parquet file into a Parquet file, customer ids carried through.
    customers(300_000, 1).to_parquet(work / "customers.parquet", row_group_size=50_000)
    with BatchDeployer(version, chunk_size=50_000, method="predict_proba") as job:
        result = job.run(
            work / "customers.parquet",
            output=work / "scores.parquet",
            id_columns=["customer_id"],
            resume=True,  # a killed run picks up where it stopped
        )
    print(result)
    print(pd.read_parquet(work / "scores.parquet").head(3))

    # 3. In memory: an array in, an array out.
    X = customers(1_000, 2)[FEATURES].to_numpy(copy=True)
    with BatchDeployer(version, chunk_size=250) as job:
        labels = job.run(X)
    print("in memory:", labels.shape, "churners:", int(labels.sum()))

    # 4. A bad row: with on_error="skip" its chunk is left out and reported.
    X[620, 1] = np.nan
    with BatchDeployer(version, chunk_size=250, on_error="skip") as job:
        job.run(X)
        for skipped in job.last_result.skipped if job.last_result else ():
            print(f"skipped chunk {skipped.chunk}, rows {skipped.rows}: {skipped.reason[:70]}...")

    # 5. Scheduled batches: records accumulate and are scored together.
    with BatchDeployer(version, flush_rows=500, flush_interval_s=5.0) as job:
        futures = [job.submit(row) for row in customers(20, 3)[FEATURES].to_numpy()]
        job.flush()
        print("scheduled:", [int(f.result()[0]) for f in futures])


if __name__ == "__main__":
    main()
