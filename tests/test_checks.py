from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np
import pytest
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression

from modeldeploy.checks import check_deployer
from modeldeploy.deployers.base import Deployer, FunctionDeployer
from modeldeploy.deployers.online import OnlineDeployer
from modeldeploy.exceptions import InvalidParameterError
from modeldeploy.registry.signature import Signature

X, y = make_classification(n_samples=120, n_features=4, random_state=3)
SIG = Signature.infer(X)


def test_built_in_deployers_pass() -> None:
    model = LogisticRegression(max_iter=300).fit(X, y)
    for dep in (OnlineDeployer(model, signature=SIG), FunctionDeployer(model.predict)):
        assert check_deployer(dep, X[:30]) == [
            "answers", "threads", "validation", "stats", "async", "close",
        ]  # fmt: skip
        assert dep.closed


def test_close_can_be_left_out() -> None:
    dep = FunctionDeployer(lambda batch: batch[:, 0], signature=SIG)
    assert "close" not in check_deployer(dep, X[:10], close=False)
    assert not dep.closed


class SharedScratch(Deployer):
    """Not thread-safe: keeps the batch in an attribute while it 'computes'."""

    def predict_batch(self, batch: np.ndarray) -> Any:
        self.scratch = batch
        time.sleep(0.001)
        return self.scratch[:, 0].copy()


class NoValidation(Deployer):
    """Skips the signature: wrong input gets an answer instead of a SchemaError."""

    def validate(self, batch: Any) -> np.ndarray:
        return np.atleast_2d(np.asarray(batch, dtype=float))

    def predict_batch(self, batch: np.ndarray) -> Any:
        return batch[:, 0]


class NeverCloses(Deployer):
    def predict_batch(self, batch: np.ndarray) -> Any:
        return batch[:, 0]

    def close(self) -> None:
        pass


class CountsNothing(Deployer):
    def predict_batch(self, batch: np.ndarray) -> Any:
        return batch[:, 0]

    def predict(self, batch: Any, *, ids: Any = None) -> np.ndarray:
        return np.asarray(self.predict_batch(self.validate(batch)))


class BatchDependent(Deployer):
    """Answers depend on the batch: normalises by the batch mean."""

    def predict_batch(self, batch: np.ndarray) -> Any:
        return batch[:, 0] - batch[:, 0].mean()


@pytest.mark.parametrize(
    ("deployer", "failed"),
    [
        (SharedScratch, "threads"),
        (NoValidation, "validation"),
        (NeverCloses, "close"),
        (CountsNothing, "stats"),
        (BatchDependent, "answers"),
    ],
)
def test_broken_deployers_are_caught(deployer: type[Deployer], failed: str) -> None:
    with pytest.raises(AssertionError, match=f"failed check '{failed}'"):
        check_deployer(deployer(signature=SIG), X[:40], threads=8)


def test_arguments_are_checked() -> None:
    with pytest.raises(InvalidParameterError, match="must be a Deployer"):
        check_deployer(object(), X)  # type: ignore[arg-type]
    with pytest.raises(InvalidParameterError, match="at least 2 rows"):
        check_deployer(FunctionDeployer(lambda batch: batch[:, 0]), X[:1])


def test_threads_check_reports_exceptions() -> None:
    lock = threading.Lock()
    calls = [0]

    def flaky(batch: np.ndarray) -> np.ndarray:
        with lock:
            calls[0] += 1
            if calls[0] == 40:
                raise RuntimeError("one in a while")
        return batch[:, 0]

    with pytest.raises(AssertionError, match="one in a while"):
        check_deployer(FunctionDeployer(flaky, signature=SIG), X[:20])
