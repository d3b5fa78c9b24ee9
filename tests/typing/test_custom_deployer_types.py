"""A custom deployer as a user writes it: ``mypy --strict`` checks this file (tests/ is in
mypy's files), so a change that breaks the typed extension API fails CI.

The lines marked ``type: ignore[...]`` must stay errors: with ``warn_unused_ignores`` (part of
``--strict``) an ignore that is no longer needed fails mypy, so each is a check that a misuse is
still caught.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.linear_model import LinearRegression

from modeldeploy import BatchDeployer, BatchResult, ModelRegistry, OnlineDeployer
from modeldeploy.deployers import Deployer, FunctionDeployer


class Doubler(Deployer):
    """Overrides the one abstract method; everything else comes from the base."""

    def predict_batch(self, X: np.ndarray) -> Any:
        return X[:, 0] * 2


def test_custom_deployer_is_typed_end_to_end(tmp_path: Any) -> None:
    with Doubler() as dep:
        out: np.ndarray = dep.predict(np.array([[1.0, 0.0]]))
        assert out.tolist() == [2.0]
    with OnlineDeployer(FunctionDeployer(lambda X: X[:, 0]), name="served") as online:
        assert online.predict(np.array([[3.0, 1.0]])).tolist() == [3.0]


def test_batch_run_return_type_follows_output(tmp_path: Any) -> None:
    X = np.arange(8.0).reshape(4, 2)
    with BatchDeployer(LinearRegression().fit(X, X[:, 0]), n_jobs=1) as job:
        scores: np.ndarray = job.run(X)
        result: BatchResult = job.run(X, tmp_path / "out.npy")
    assert scores.shape == (4,) and result.rows == 4


def misspelled_follow_option_fails_mypy(reg: ModelRegistry) -> None:
    """Not run: mypy checks that a misspelled option of follow() is an error."""
    OnlineDeployer.follow(reg, "churn", "production", max_batch_sise=8)  # type: ignore[call-arg]
    OnlineDeployer.follow(reg, "churn", max_wait_ms="1")  # type: ignore[arg-type]
