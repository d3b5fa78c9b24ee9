from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np
import pytest
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.tree import DecisionTreeClassifier

from modeldeploy.deployers.online import OnlineDeployer
from modeldeploy.exceptions import (
    DeploymentError,
    InvalidParameterError,
    PredictionTimeoutError,
)
from modeldeploy.registry.signature import Signature
from modeldeploy.testing import FakeClock

X, y = make_classification(n_samples=300, n_features=5, random_state=1)
SIG = Signature.infer(X)
LR = LogisticRegression(max_iter=500).fit(X, y)
TREE = DecisionTreeClassifier(max_depth=3, random_state=0).fit(X, y)


class Flaky:
    """Raises while ``broken`` is set; counts its calls."""

    def __init__(self, broken: bool = True) -> None:
        self.broken = broken
        self.calls = 0

    def predict(self, batch: np.ndarray) -> np.ndarray:
        self.calls += 1
        if self.broken:
            raise ArithmeticError("model exploded")
        return np.asarray(LR.predict(batch))

    def predict_proba(self, batch: np.ndarray) -> np.ndarray:
        self.calls += 1
        if self.broken:
            raise ArithmeticError("model exploded")
        return np.asarray(LR.predict_proba(batch))


class Hangs:
    def __init__(self) -> None:
        self.release = threading.Event()

    def predict(self, batch: np.ndarray) -> np.ndarray:
        self.release.wait(30)
        return np.zeros(batch.shape[0])


def test_raising_model_is_answered_by_the_fallback_and_counted() -> None:
    dep = OnlineDeployer(Flaky(), signature=SIG, warm=False, fallback=TREE, name="flaky",
                         breaker_threshold=1000)  # fmt: skip
    for i in range(10):
        np.testing.assert_array_equal(dep.predict(X[i : i + 3]), TREE.predict(X[i : i + 3]))
    np.testing.assert_allclose(dep.predict_proba(X[:2]), TREE.predict_proba(X[:2]))
    stats = dep.stats()
    flaky = stats["flaky"]
    assert (flaky.errors, flaky.fallbacks, flaky.requests) == (11, 11, 0)
    assert stats["fallback DecisionTreeClassifier"].requests == 11


def test_raising_model_without_fallback_raises_deployment_error_with_cause() -> None:
    dep = OnlineDeployer(Flaky(), signature=SIG, warm=False, name="flaky")
    with pytest.raises(DeploymentError, match="flaky failed on a batch of 1 rows") as info:
        dep.predict(X[0])
    assert isinstance(info.value.__cause__, ArithmeticError)
    assert dep.stats().primary.errors == 1


def test_hanging_model_gets_the_fallback_within_the_timeout() -> None:
    model = Hangs()
    dep = OnlineDeployer(model, signature=SIG, warm=False, timeout_ms=100, fallback=-1,
                         breaker_threshold=1000)  # fmt: skip
    results = [dep.predict(X[i]) for i in range(3)]
    assert [r.tolist() for r in results] == [[-1], [-1], [-1]]
    stats = dep.stats().primary
    assert (stats.timeouts, stats.fallbacks, stats.errors) == (3, 3, 3)
    model.release.set()
    dep.close()


def test_hanging_model_without_fallback_raises_timeout_within_the_timeout() -> None:
    model = Hangs()
    dep = OnlineDeployer(model, signature=SIG, warm=False, timeout_ms=100, name="stuck")
    t0 = time.perf_counter()
    with pytest.raises(PredictionTimeoutError, match="stuck did not answer within timeout_ms=100"):
        dep.predict(X[0])
    # 100 ms asked; a generous bound that a caller stuck with the model would never meet.
    assert time.perf_counter() - t0 < 5
    assert isinstance(dep.stats().primary, object) and dep.stats().primary.timeouts == 1
    model.release.set()
    dep.close()


def test_concurrent_callers_of_a_hung_model_all_get_the_fallback() -> None:
    model = Hangs()
    dep = OnlineDeployer(model, signature=SIG, warm=False, timeout_ms=100, fallback=7.0)
    results: list[Any] = [None] * 16

    def call(k: int) -> None:
        results[k] = dep.predict(X[k])

    threads = [threading.Thread(target=call, args=(k,)) for k in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert [r.tolist() for r in results] == [[7.0]] * 16
    model.release.set()
    dep.close()


@pytest.mark.parametrize(
    ("fallback", "expected"),
    [
        (lambda batch: np.full(batch.shape[0], 3), [3, 3]),
        (lambda batch: 5, [5, 5]),
        ("unknown", ["unknown", "unknown"]),
    ],
)
def test_fallback_can_be_a_callable_or_a_constant(fallback: Any, expected: list[Any]) -> None:
    dep = OnlineDeployer(Flaky(), signature=SIG, warm=False, fallback=fallback)
    assert dep.predict(X[:2]).tolist() == expected


def test_constant_probability_row_answers_predict_proba() -> None:
    dep = OnlineDeployer(Flaky(), signature=SIG, warm=False, fallback=[0.5, 0.5])
    np.testing.assert_array_equal(dep.predict_proba(X[:3]), np.full((3, 2), 0.5))
    with pytest.raises(DeploymentError, match=r"fallback \[0.5, 0.5\] failed too") as info:
        dep.predict(X[:1])  # a row of probabilities cannot answer predict
    assert "cannot answer predict" in str(info.value.__cause__)


def test_two_dimensional_constant_fallback_is_refused() -> None:
    with pytest.raises(InvalidParameterError, match="fallback"):
        OnlineDeployer(LR, signature=SIG, fallback=np.zeros((2, 2)))


def test_circuit_breaker_stops_calling_a_failing_model_and_retries_after_cooldown() -> None:
    model = Flaky()
    clock = FakeClock()
    dep = OnlineDeployer(model, signature=SIG, warm=False, fallback=0, breaker_threshold=3,
                         breaker_cooldown_s=30, name="flaky", clock=clock)  # fmt: skip
    for i in range(10):
        dep.predict(X[i])
    assert model.calls == 3  # then the breaker opened
    stats = dep.stats()["flaky"]
    assert (stats.short_circuited, stats.fallbacks) == (7, 10)
    model.broken = False
    clock.advance(29.9)
    dep.predict(X[0])
    assert model.calls == 3  # still open: 29.9 s of a 30 s cool-down
    clock.advance(0.1)
    np.testing.assert_array_equal(dep.predict(X[0]), LR.predict(X[:1]))
    assert model.calls == 4
    dep.predict(X[1])
    assert model.calls == 5  # closed again: the model is called every time


def test_open_breaker_without_fallback_says_so() -> None:
    dep = OnlineDeployer(Flaky(), signature=SIG, warm=False, breaker_threshold=1, name="flaky")
    with pytest.raises(DeploymentError, match="exploded"):
        dep.predict(X[0])
    with pytest.raises(DeploymentError, match="circuit breaker skips it"):
        dep.predict(X[0])


def test_failing_warm_up_keeps_the_current_model_serving() -> None:
    dep = OnlineDeployer(LR, signature=SIG, name="lr")
    with pytest.raises(DeploymentError, match="failed its warm-up"):
        dep.swap(Flaky())
    assert dep.version == "lr"
    np.testing.assert_array_equal(dep.predict(X[:5]), LR.predict(X[:5]))


def test_model_returning_wrong_row_count_is_an_error_not_a_wrong_answer() -> None:
    class Short:
        def predict(self, batch: np.ndarray) -> np.ndarray:
            return np.zeros(1)

    dep = OnlineDeployer(Short(), signature=SIG, warm=False)
    with pytest.raises(DeploymentError, match="one answer per row"):
        dep.predict(X[:4])


def test_monitor_hears_about_errors() -> None:
    seen: list[tuple[str, str | None]] = []

    class Monitor:
        def log_predictions(self, X: Any, y_pred: Any, **kw: Any) -> None:
            seen.append(("pred", kw["version"]))

        def log_error(self, error: BaseException, *, version: str | None = None) -> None:
            seen.append((type(error).__name__, version))

    dep = OnlineDeployer(Flaky(), signature=SIG, warm=False, fallback=1, monitor=Monitor(),
                         name="flaky")  # fmt: skip
    dep.predict(X[0])
    dep.close()
    assert seen == [("ArithmeticError", "flaky"), ("pred", "fallback")]
