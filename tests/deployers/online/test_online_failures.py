from __future__ import annotations

import threading
import time
from typing import Any, Literal

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


# ---------------------------------------------------------------------------- hardening (issue 13)

POISON = 99.0  # a feature value this test's models choke on; the signature lets it through


def _bounded(fn: Any, seconds: float = 2.0) -> Any:
    """Run ``fn()`` in a thread; fail the test if it does not return within ``seconds``."""
    out: list[Any] = []

    def run() -> None:
        try:
            out.append(fn())
        except Exception as exc:  # handed back to the test
            out.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert out, f"{fn} did not return within {seconds} s"
    return out[0]


class HangsInWarmUp:
    """Answers like LR, except that its first call (the warm-up) hangs until released."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def predict(self, batch: np.ndarray) -> np.ndarray:
        if not self.entered.is_set():
            self.entered.set()
            self.release.wait(10)
        return np.asarray(LR.predict(batch))


class Gated:
    """Holds its first call until ``gate`` is set, so that requests arriving meanwhile queue and
    share the next call. Raises on rows holding ``POISON`` (input-dependent errors); ``output``
    replaces its answer when given."""

    def __init__(self, output: Any = None, *, poison_everything: bool = False) -> None:
        self.entered = threading.Event()
        self.gate = threading.Event()
        self.output = output
        self.poison_everything = poison_everything
        self.calls: list[int] = []

    def predict(self, batch: np.ndarray) -> Any:
        self.calls.append(batch.shape[0])
        if not self.entered.is_set():
            self.entered.set()
            self.gate.wait(10)
        if self.poison_everything or np.any(batch[:, 0] == POISON):
            raise ValueError("cannot score a row holding 99.0")
        if self.output is not None:
            return self.output(batch)
        return np.asarray(LR.predict(batch))


def _poisoned(i: int) -> np.ndarray:
    row: np.ndarray = X[i : i + 1].copy()
    row[0, 0] = POISON
    return row


def _co_batched(dep: OnlineDeployer, model: Gated, requests: list[np.ndarray]) -> list[Any]:
    """Send ``requests`` so that they share one model call; return each answer or exception."""
    first = threading.Thread(target=_bounded, args=(lambda: dep.predict(X[:1]), 10), daemon=True)
    first.start()
    assert model.entered.wait(5)
    results: list[Any] = [None] * len(requests)

    def call(k: int) -> None:
        try:
            results[k] = dep.predict(requests[k])
        except Exception as exc:  # handed back to the test
            results[k] = exc

    threads = [threading.Thread(target=call, args=(k,), daemon=True) for k in range(len(requests))]
    for t in threads:
        t.start()
    batcher = dep._route.primary.batchers["predict"]
    rows = sum(r.shape[0] for r in requests)
    deadline = time.perf_counter() + 5
    while batcher._queued_rows < rows and time.perf_counter() < deadline:
        time.sleep(0.001)
    assert batcher._queued_rows == rows
    model.gate.set()
    for t in [first, *threads]:
        t.join(10)
    assert model.calls[1] == rows  # they did share one call
    return results


def test_hanging_warm_up_is_refused_within_warmup_timeout_s() -> None:
    model = HangsInWarmUp()
    t0 = time.perf_counter()
    with pytest.raises(DeploymentError, match=r"hangs did not finish its warm-up .* within 0.2 s"):
        OnlineDeployer(model, signature=SIG, warmup_timeout_s=0.2, name="hangs")
    assert time.perf_counter() - t0 < 5
    model.release.set()


def test_warm_up_is_bounded_by_timeout_ms_when_no_warmup_timeout_is_given() -> None:
    model = HangsInWarmUp()
    with pytest.raises(DeploymentError, match=r"within 0.1 s"):
        OnlineDeployer(model, signature=SIG, timeout_ms=100, name="hangs")
    model.release.set()
    dep = OnlineDeployer(LR, signature=SIG)
    assert dep.stats().settings["warmup_timeout_s"] == 30.0  # DEFAULT_WARMUP_TIMEOUT_S


def test_hanging_warm_up_in_swap_blocks_no_admin_call_and_is_counted() -> None:
    dep = OnlineDeployer(LR, signature=SIG, name="lr", warmup_timeout_s=1.0)
    model = HangsInWarmUp()
    errors: list[Any] = []
    swap = threading.Thread(
        target=lambda: errors.append(_bounded(lambda: dep.swap(model, signature=SIG), 5)),
        daemon=True,
    )
    swap.start()
    assert model.entered.wait(5)
    # While the swap's warm-up hangs, every admin call and every request goes on.
    assert _bounded(dep.stats).primary.label == "lr"
    assert _bounded(lambda: dep.configure(max_wait_ms=1.0)) is None
    assert _bounded(lambda: dep.set_canary(TREE, 0.5, signature=SIG)) is None
    assert _bounded(dep.clear_canary) is None
    np.testing.assert_array_equal(_bounded(lambda: dep.predict(X[:3])), LR.predict(X[:3]))
    assert _bounded(lambda: dep.swap(TREE, signature=SIG)) is None
    tree = dep.version
    assert tree.startswith("DecisionTreeClassifier-")
    swap.join(5)
    assert isinstance(errors[0], DeploymentError)
    assert "HangsInWarmUp-1 did not finish its warm-up" in str(errors[0])
    assert "within 1 s" in str(errors[0])
    assert dep.version == tree  # the refused version never served
    assert dep.stats().abandoned_calls == 1
    assert "1 abandoned model calls" in repr(dep.stats())
    model.release.set()
    assert _bounded(dep.close) is None


def test_a_swap_that_finishes_after_a_later_swap_does_not_undo_it() -> None:
    dep = OnlineDeployer(LR, signature=SIG, name="lr", warmup_timeout_s=5.0)
    slow = HangsInWarmUp()
    swap = threading.Thread(target=lambda: dep.swap(slow, signature=SIG), daemon=True)
    swap.start()
    assert slow.entered.wait(5)
    dep.swap(TREE, signature=SIG)  # called later, finishes first
    tree = dep.version
    slow.release.set()  # the earlier swap's warm-up now succeeds ...
    swap.join(5)
    assert not swap.is_alive()
    assert dep.version == tree != "lr"  # ... and the later swap still serves


def test_close_fails_queued_callers_at_once_behind_a_hung_model_call() -> None:
    model = Gated()
    dep = OnlineDeployer(model, signature=SIG, warm=False, name="gated")  # no timeout_ms
    inside: list[Any] = []
    first = threading.Thread(target=lambda: inside.append(dep.predict(X[:1])), daemon=True)
    first.start()
    assert model.entered.wait(5)
    queued: list[Any] = []

    def call(k: int) -> None:
        try:
            queued.append(dep.predict(X[k : k + 1]))
        except Exception as exc:  # handed back to the test
            queued.append(exc)

    threads = [threading.Thread(target=call, args=(k,), daemon=True) for k in range(1, 5)]
    for t in threads:
        t.start()
    batcher = dep._route.primary.batchers["predict"]
    deadline = time.perf_counter() + 5
    while batcher._queued_rows < 4 and time.perf_counter() < deadline:
        time.sleep(0.001)
    t0 = time.perf_counter()
    assert _bounded(dep.close) is None
    for t in threads:
        t.join(2)
    assert time.perf_counter() - t0 < 2  # the model still hangs: nobody waited for it
    assert len(queued) == 4
    for exc in queued:
        assert isinstance(exc, DeploymentError) and "gated was closed" in str(exc)
    assert dep.stats().primary.errors == 0  # closing is not the model's failure
    with pytest.raises(DeploymentError, match="closed"):
        dep.predict(X[:1])
    model.gate.set()  # the request inside the model call gets its answer
    first.join(5)
    np.testing.assert_array_equal(inside[0], LR.predict(X[:1]))


@pytest.mark.parametrize(
    "output",
    [
        lambda batch: dict.fromkeys(range(batch.shape[0]), 0),  # len works, slicing does not
        lambda batch: "x" * batch.shape[0],
        lambda batch: set(range(batch.shape[0])),
        lambda batch: 1,
        lambda batch: None,
        lambda batch: [[0]] * (batch.shape[0] - 1) + [[0, 1]],  # ragged
        lambda batch: np.zeros(batch.shape[0] + 1),
        lambda batch: np.float64(0.0),
    ],
    ids=["dict", "str", "set", "scalar", "none", "ragged", "too-long", "0-d"],
)
@pytest.mark.parametrize("fast_path", ["off", "auto"])
def test_bad_model_output_is_an_error_for_every_co_batched_caller_never_none(
    output: Any, fast_path: Literal["off", "auto"]
) -> None:
    model = Gated(output)
    dep = OnlineDeployer(model, signature=SIG, warm=False, name="odd", breaker_threshold=1000,
                         fast_path=fast_path)  # fmt: skip
    results = _co_batched(dep, model, [X[k : k + 2] for k in range(0, 10, 2)])
    for got in results:
        assert isinstance(got, DeploymentError), got
        assert "odd" in str(got)
        # (With "auto", the fast path's wrapper converts the answer first and may fail there.)
        assert fast_path == "auto" or "one answer per row" in str(got)
    with pytest.raises(DeploymentError, match="odd"):
        dep.predict(X[:3])  # a lone caller too


def test_warm_up_refuses_a_model_with_a_bad_output() -> None:
    class Dict:
        def predict(self, batch: np.ndarray) -> Any:
            return dict.fromkeys(range(batch.shape[0]), 0)

    with pytest.raises(DeploymentError, match="failed its warm-up.*one answer per row"):
        OnlineDeployer(Dict(), signature=SIG)


def test_bad_rows_co_batched_with_good_ones_do_not_open_the_breaker() -> None:
    events: list[Any] = []
    model = Gated()
    dep = OnlineDeployer(model, signature=SIG, warm=False, breaker_threshold=1,
                         on_event=events.append)  # fmt: skip
    requests = [_poisoned(k) if k % 2 else X[k : k + 1] for k in range(10)]
    results = _co_batched(dep, model, requests)
    for k, got in enumerate(results):
        if k % 2:
            assert isinstance(got, DeploymentError) and "99.0" in str(got)
        else:
            np.testing.assert_array_equal(got, LR.predict(X[k : k + 1]))
    assert [e.kind for e in events] == []  # the model answered their batch-mates: alive
    calls = len(model.calls)
    np.testing.assert_array_equal(dep.predict(X[:4]), LR.predict(X[:4]))
    assert len(model.calls) == calls + 1 and dep.stats().primary.short_circuited == 0


def test_bad_rows_between_good_requests_do_not_open_the_breaker() -> None:
    events: list[Any] = []
    model = Gated()
    model.entered.set()
    dep = OnlineDeployer(model, signature=SIG, warm=False, breaker_threshold=1,
                         on_event=events.append)  # fmt: skip
    for k in range(10):
        np.testing.assert_array_equal(dep.predict(X[k : k + 1]), LR.predict(X[k : k + 1]))
        with pytest.raises(DeploymentError, match="99.0"):
            dep.predict(_poisoned(k))
    assert events == [] and dep.stats().primary.short_circuited == 0


def test_a_model_failing_on_every_row_of_a_batch_still_opens_the_breaker() -> None:
    events: list[Any] = []
    model = Gated(poison_everything=True)
    dep = OnlineDeployer(model, signature=SIG, warm=False, breaker_threshold=5,
                         on_event=events.append, name="dead")  # fmt: skip
    results = _co_batched(dep, model, [X[k : k + 1] for k in range(6)])
    assert all(isinstance(r, DeploymentError) for r in results)
    assert [e.kind for e in events] == ["breaker_opened"]
    with pytest.raises(DeploymentError, match="circuit breaker skips it"):
        dep.predict(X[:1])


def test_a_model_that_dies_after_answering_opens_the_breaker() -> None:
    model = Flaky(broken=False)
    dep = OnlineDeployer(model, signature=SIG, warm=False, breaker_threshold=2, name="flaky")
    dep.predict(X[:2])
    model.broken = True
    # The first failure follows an answer (it might be these rows); the next ones count.
    for _ in range(3):
        with pytest.raises(DeploymentError, match="exploded"):
            dep.predict(X[:1])
    with pytest.raises(DeploymentError, match="circuit breaker skips it"):
        dep.predict(X[:1])
    assert model.calls == 4
