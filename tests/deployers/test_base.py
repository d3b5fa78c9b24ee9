from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest

from modeldeploy.checks import check_deployer
from modeldeploy.deployers.base import Deployer, FunctionDeployer
from modeldeploy.exceptions import DeploymentError, InvalidParameterError, SchemaError
from modeldeploy.registry.signature import Signature

X = np.random.default_rng(0).normal(size=(30, 3))
SIG = Signature.infer(X)


def total(batch: np.ndarray) -> np.ndarray:
    return np.asarray(batch.sum(axis=1))


def test_deployer_needs_its_one_abstract_method() -> None:
    assert Deployer.__abstractmethods__ == frozenset({"predict_batch"})

    class Incomplete(Deployer):
        pass

    with pytest.raises(TypeError, match="predict_batch"):
        Incomplete()  # type: ignore[abstract]


def test_subclass_gets_validation_stats_async_and_closing() -> None:
    class Scaled(Deployer):
        def predict_batch(self, batch: np.ndarray) -> Any:
            return batch[:, 0] * 10

    with Scaled(signature=SIG, name="scaled") as dep:
        np.testing.assert_array_equal(dep.predict(X[:4]), X[:4, 0] * 10)
        got = asyncio.run(dep.apredict(X[5]))
        np.testing.assert_array_equal(got, X[5:6, 0] * 10)
        with pytest.raises(SchemaError):
            dep.predict(X[:2, :2])
        stats = dep.stats().primary
        assert (stats.label, stats.requests, stats.rows, stats.rejected) == ("scaled", 2, 5, 1)
        with pytest.raises(DeploymentError, match="gives no probabilities"):
            dep.predict_proba(X[:1])
        assert repr(dep) == "Scaled(name='scaled')"
        assert "<table>" in dep._repr_html_()
    assert dep.closed
    with pytest.raises(DeploymentError, match="closed"):
        dep.predict(X[:1])


def test_function_deployer_wraps_failures_with_the_cause() -> None:
    def broken(batch: np.ndarray) -> np.ndarray:
        raise KeyError("feature store down")

    dep = FunctionDeployer(broken, signature=SIG)
    with pytest.raises(DeploymentError, match="broken failed on a batch of 2 rows") as info:
        dep.predict(X[:2])
    assert isinstance(info.value.__cause__, KeyError)
    assert dep.stats().primary.errors == 1


def test_function_deployer_refuses_a_wrong_number_of_answers() -> None:
    dep = FunctionDeployer(lambda batch: batch[:1, 0], signature=SIG)
    with pytest.raises(DeploymentError, match="one answer per row"):
        dep.predict(X[:3])


def test_function_deployer_probabilities_and_inferred_signature() -> None:
    dep = FunctionDeployer(
        total, proba_fn=lambda batch: np.column_stack([batch[:, 0], 1 - batch[:, 0]])
    )
    assert dep.name == "total" and dep.signature is None
    assert dep.predict({"x0": 1.0, "x1": 2.0}).tolist() == [3.0]
    signature: Signature | None = dep.signature
    assert signature is not None and signature.names == ["x0", "x1"]
    np.testing.assert_array_equal(dep.predict_proba([[0.25, 0.0]]), [[0.25, 0.75]])
    assert asyncio.run(dep.apredict_proba([[0.5, 0.0]])).tolist() == [[0.5, 0.5]]
    with pytest.raises(SchemaError):
        dep.predict([1.0, 2.0, 3.0])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"fn": 3}, "'fn' parameter"),
        ({"fn": total, "proba_fn": "no"}, "'proba_fn' parameter"),
        ({"fn": total, "signature": {"x0": "float64"}}, "'signature' parameter"),
    ],
)
def test_function_deployer_refuses_bad_arguments(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(InvalidParameterError, match=match):
        FunctionDeployer(**kwargs)


def test_function_deployer_passes_the_deployer_checks() -> None:
    assert check_deployer(FunctionDeployer(total, signature=SIG), X)[-1] == "close"
