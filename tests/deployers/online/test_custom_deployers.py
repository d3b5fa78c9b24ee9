"""OnlineDeployer serves any Deployer: a custom deployer gets each of its features.

One test per feature the custom-deployer guide promises: micro-batching, canary, shadow,
fallback, timeouts and ``monitor=``; and the ``supports_proba`` capability that decides whether
the served deployer is warmed up and offered ``predict_proba``.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np
import pytest

from modeldeploy.deployers import Deployer, FunctionDeployer
from modeldeploy.deployers.online import OnlineDeployer, key_fraction
from modeldeploy.exceptions import DeploymentError, PredictionTimeoutError
from modeldeploy.registry.signature import Signature
from modeldeploy.testing import RecordingMonitor, run_concurrently

X = np.random.default_rng(5).normal(size=(200, 3))
SIG = Signature.infer(X)
W1 = np.array([1.0, 2.0, 3.0])
W2 = W1 + 1000.0  # answers 1000s apart from W1's: an answer tells which deployer gave it


class Scorer(Deployer):
    """A custom deployer as a user writes it: a linear score of the validated rows."""

    def __init__(
        self,
        weights: np.ndarray,
        *,
        delay_s: float = 0.0,
        fail: bool = False,
        name: str | None = None,
    ) -> None:
        super().__init__(signature=SIG, name=name)
        self.weights = weights
        self.delay_s = delay_s
        self.fail = fail
        self.batch_sizes: list[int] = []
        self._calls_lock = threading.Lock()

    def predict_batch(self, X: np.ndarray) -> Any:
        with self._calls_lock:
            self.batch_sizes.append(X.shape[0])
        if self.delay_s:
            time.sleep(self.delay_s)
        if self.fail:
            raise RuntimeError("the scoring backend is down")
        return X @ self.weights


class ScorerWithProba(Scorer):
    def predict_proba_batch(self, X: np.ndarray) -> Any:
        p = 1.0 / (1.0 + np.exp(-(X @ self.weights)))
        return np.column_stack([1.0 - p, p])


def test_function_deployer_without_proba_fn_is_served() -> None:
    # Every Deployer has a predict_proba method; the warm-up must not call it when it has none.
    inner = FunctionDeployer(lambda batch: batch @ W1, signature=SIG)
    assert not inner.supports_proba
    with OnlineDeployer(inner) as dep:
        np.testing.assert_allclose(dep.predict(X[:4]), X[:4] @ W1)
        assert dep.signature is SIG  # the served deployer's signature is the default
        assert not dep.supports_proba
        with pytest.raises(DeploymentError, match="has no predict_proba"):
            dep.predict_proba(X[:2])


def test_function_deployer_with_proba_fn_serves_probabilities() -> None:
    def proba(batch: np.ndarray) -> np.ndarray:
        return np.tile([0.25, 0.75], (batch.shape[0], 1))

    inner = FunctionDeployer(lambda batch: batch @ W1, proba_fn=proba, signature=SIG)
    assert inner.supports_proba
    with OnlineDeployer(inner) as dep:
        assert dep.supports_proba
        assert dep.predict_proba(X[:3]).tolist() == [[0.25, 0.75]] * 3


def test_supports_proba_follows_the_override() -> None:
    assert not Scorer(W1).supports_proba
    assert ScorerWithProba(W1).supports_proba
    with OnlineDeployer(ScorerWithProba(W1)) as dep:
        out = dep.predict_proba(X[:5])
    assert out.shape == (5, 2)
    np.testing.assert_allclose(out.sum(axis=1), 1.0)


def test_concurrent_calls_to_a_custom_deployer_share_its_calls() -> None:
    inner = Scorer(W1, delay_s=0.005)
    with OnlineDeployer(inner, max_wait_ms=2) as dep:
        answers = run_concurrently(16, lambda k: dep.predict(X[k]))
        stats = dep.stats()
    for k, answer in enumerate(answers):
        np.testing.assert_allclose(answer, X[k : k + 1] @ W1)
    assert stats.primary.requests == 16
    assert stats.batches < 16 and max(inner.batch_sizes) > 1


def test_a_custom_deployer_can_be_the_canary() -> None:
    with OnlineDeployer(Scorer(W1), name="v1") as dep:
        dep.set_canary(Scorer(W2), fraction=0.5)
        for k in range(60):
            key = f"user-{k}"
            expected = W2 if key_fraction(key) < 0.5 else W1
            np.testing.assert_allclose(dep.predict(X[k], key=key), X[k : k + 1] @ expected)
        stats = dep.stats()
    assert stats.versions[1].role == "canary"
    assert stats.primary.requests + stats.versions[1].requests == 60
    assert 0 < stats.versions[1].requests < 60


def test_a_custom_deployer_can_be_the_shadow() -> None:
    with OnlineDeployer(Scorer(W1), name="v1") as dep:
        dep.set_shadow(Scorer(W1, name="candidate"))
        for k in range(20):
            dep.predict(X[k])
        assert dep.flush()
        shadow = dep.stats().versions[1]
    assert shadow.role == "shadow" and shadow.label == "candidate-1"  # known by its own name
    assert shadow.compared == 20 and shadow.agreement == 1.0


def test_a_failing_custom_deployer_gets_the_fallback() -> None:
    broken = Scorer(W1, fail=True)
    with OnlineDeployer(broken, fallback=-1.0, warm=False, breaker_threshold=100) as dep:
        assert dep.predict(X[:3]).tolist() == [-1.0, -1.0, -1.0]
        stats = dep.stats().primary
    assert stats.errors == 1 and stats.fallbacks == 1
    with OnlineDeployer(broken, warm=False) as dep, pytest.raises(DeploymentError, match="down"):
        dep.predict(X[:1])


def test_a_slow_custom_deployer_is_bounded_by_timeout_ms() -> None:
    slow = Scorer(W1, delay_s=0.5)
    with OnlineDeployer(slow, timeout_ms=50, warm=False) as dep:
        t0 = time.perf_counter()
        with pytest.raises(PredictionTimeoutError):
            dep.predict(X[0])
        assert time.perf_counter() - t0 < 0.4
        assert dep.stats().primary.timeouts == 1
    with OnlineDeployer(slow, timeout_ms=50, fallback=0.0, warm=False) as dep:
        assert dep.predict(X[0]).tolist() == [0.0]


def test_a_custom_deployer_feeds_the_monitor() -> None:
    monitor = RecordingMonitor()
    with OnlineDeployer(Scorer(W1), monitor=monitor, name="rules") as dep:
        dep.predict(X[:2], ids=["a", "b"])
        assert dep.flush()
    assert len(monitor.batches) == 1
    batch = monitor.batches[0]
    assert list(batch["ids"]) == ["a", "b"] and batch["version"] == "rules"
    np.testing.assert_allclose(batch["y"], X[:2] @ W1)
