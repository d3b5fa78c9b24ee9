from __future__ import annotations

import threading

import numpy as np
import pytest
from scipy import stats as scipy_stats
from sklearn.datasets import make_classification
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.tree import DecisionTreeClassifier

from modeldeploy.deployers.online import OnlineDeployer
from modeldeploy.deployers.online.traffic import key_fraction
from modeldeploy.exceptions import InvalidParameterError
from modeldeploy.registry.signature import Signature

X, y = make_classification(n_samples=300, n_features=5, random_state=2)
SIG = Signature.infer(X)
TARGET = X @ np.arange(1.0, 6.0)
# Two regression "versions" 1000 apart: an answer tells which one gave it.
V1 = LinearRegression().fit(X, TARGET)
V2 = LinearRegression().fit(X, TARGET + 1000.0)


def which(answer: np.ndarray, rows: np.ndarray) -> str:
    if np.allclose(answer, V1.predict(rows)):
        return "v1"
    if np.allclose(answer, V2.predict(rows)):
        return "v2"
    raise AssertionError(f"answer {answer} matches no version")


def test_canary_fraction_is_within_statistical_tolerance() -> None:
    dep = OnlineDeployer(V1, signature=SIG, name="v1")
    dep.set_canary(V2, fraction=0.2)
    n = 3000
    routed = [which(dep.predict(X[i % 300]), X[i % 300 : i % 300 + 1]) for i in range(n)]
    to_canary = routed.count("v2")
    assert scipy_stats.binomtest(to_canary, n, 0.2).pvalue > 1e-4
    stats = dep.stats()
    assert stats["v1"].requests == n - to_canary
    assert stats["LinearRegression-1"].requests == to_canary
    assert stats.versions[1].role == "canary"


def test_sticky_keys_always_land_on_the_same_version() -> None:
    dep = OnlineDeployer(V1, signature=SIG)
    dep.set_canary(V2, fraction=0.3)
    keys = [f"user-{k}" for k in range(400)]
    first: dict[str, str] = {}
    for rep in range(4):
        for k, key in enumerate(keys):
            row = X[(k + rep) % 300 : (k + rep) % 300 + 1]
            got = which(dep.predict(row, key=key), row)
            assert first.setdefault(key, got) == got, f"{key} moved from {first[key]} to {got}"
            assert got == ("v2" if key_fraction(key) < 0.3 else "v1")
    share = sum(v == "v2" for v in first.values())
    assert scipy_stats.binomtest(share, len(keys), 0.3).pvalue > 1e-4


def test_promote_and_clear_canary() -> None:
    dep = OnlineDeployer(V1, signature=SIG, name="v1")
    with pytest.raises(InvalidParameterError, match="no canary"):
        dep.promote_canary()
    dep.set_canary(V2, fraction=1.0)
    assert which(dep.predict(X[0]), X[:1]) == "v2"
    dep.clear_canary()
    assert which(dep.predict(X[0]), X[:1]) == "v1"
    dep.set_canary(V2, fraction=0.0)
    dep.promote_canary()
    assert which(dep.predict(X[0]), X[:1]) == "v2"
    assert dep.stats()["v1"].role == "retired"
    assert "canary" not in repr(dep)


def test_candidate_with_other_features_is_refused() -> None:
    dep = OnlineDeployer(V1, signature=SIG)
    other = Signature.infer(X, names=[f"f{i}" for i in range(5)])
    with pytest.raises(InvalidParameterError, match="must take the same input"):
        dep.set_canary(V2, fraction=0.1, signature=other)
    with pytest.raises(InvalidParameterError, match="fraction"):
        dep.set_canary(V2, fraction=1.5)


def test_shadow_errors_never_reach_callers() -> None:
    class Broken:
        def predict(self, batch: np.ndarray) -> np.ndarray:
            raise RuntimeError("shadow exploded")

    dep = OnlineDeployer(V1, signature=SIG, name="v1")
    dep.set_shadow(Broken(), sample=1.0, warm=False)
    for i in range(50):
        np.testing.assert_allclose(dep.predict(X[i : i + 2]), V1.predict(X[i : i + 2]))
    assert dep.flush(10)  # clear_shadow and close wait for no shadow call: flush first
    dep.clear_shadow()
    stats = dep.stats()
    shadow = stats["Broken-1"]
    assert shadow.errors == 50 and shadow.requests == 0
    assert stats["v1"].errors == 0


def test_shadow_agreement_matches_a_direct_comparison() -> None:
    lr = LogisticRegression(max_iter=500).fit(X, y)
    tree = DecisionTreeClassifier(max_depth=2, random_state=0).fit(X, y)
    dep = OnlineDeployer(lr, signature=SIG, name="lr")
    dep.set_shadow(tree, sample=1.0)
    for i in range(0, 300, 3):
        np.testing.assert_array_equal(dep.predict(X[i : i + 3]), lr.predict(X[i : i + 3]))
    assert dep.flush(10)
    dep.close()
    shadow = dep.stats().versions[1]
    assert shadow.role == "shadow"
    assert (shadow.compared, shadow.dropped) == (300, 0)
    expected = np.mean(lr.predict(X) == tree.predict(X))
    assert shadow.agreement == pytest.approx(expected)
    assert shadow.agreement is not None and 0 < shadow.agreement < 1
    assert "agreement" in repr(dep.stats())


def test_slow_shadow_never_slows_callers_and_drops_when_full() -> None:
    gate = threading.Event()

    class Slow:
        def predict(self, batch: np.ndarray) -> np.ndarray:
            gate.wait(30)
            return np.asarray(V1.predict(batch))

    dep = OnlineDeployer(V1, signature=SIG, name="v1")
    dep.set_shadow(Slow(), sample=1.0, warm=False, max_queue=4)
    # The shadow blocks until the gate opens; had callers waited for it, this would hang.
    for i in range(40):
        dep.predict(X[i])
    assert dep.stats()["Slow-1"].dropped >= 40 - 4 - 256
    gate.set()
    assert dep.flush(10)
    dep.clear_shadow()
    shadow = dep.stats()["Slow-1"]
    assert shadow.dropped + shadow.compared == 40
    assert shadow.dropped > 0


def test_shadow_sample_is_a_fraction_of_requests() -> None:
    dep = OnlineDeployer(V1, signature=SIG, name="v1")
    dep.set_shadow(V2, sample=0.25)
    n = 2000
    for i in range(n):
        dep.predict(X[i % 300])
    assert dep.flush(10)
    dep.clear_shadow()
    shadow = dep.stats()["LinearRegression-1"]
    assert scipy_stats.binomtest(shadow.compared, n, 0.25).pvalue > 1e-4
    assert shadow.agreed == 0  # the versions are 1000 apart


def test_every_change_of_what_serves_is_an_event() -> None:
    from modeldeploy.deployers.online.traffic import DeploymentEvent

    events: list[DeploymentEvent] = []
    dep = OnlineDeployer(V1, signature=SIG, name="v1", on_event=events.append)
    dep.swap(V2)
    dep.set_canary(V1, fraction=0.5)
    dep.promote_canary()
    dep.set_shadow(V2, sample=0.1)
    dep.clear_shadow()
    dep.set_canary(V2, fraction=0.1)
    dep.clear_canary()
    assert [(e.kind, e.version, e.previous) for e in events] == [
        ("swapped", "LinearRegression-1", "v1"),
        ("canary_started", "LinearRegression-2", None),
        ("canary_promoted", "LinearRegression-2", "LinearRegression-1"),
        ("shadow_started", "LinearRegression-3", None),
        ("shadow_stopped", "LinearRegression-3", None),
        ("canary_started", "LinearRegression-4", None),
        ("canary_stopped", "LinearRegression-4", None),
    ]
    assert events[1].details == {"fraction": 0.5} and events[0].deployer == "v1"
    assert repr(events[0]) == "DeploymentEvent(swapped v1 -> LinearRegression-1 on v1)"


def test_breaker_changes_are_events_and_a_failing_callback_is_harmless(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from modeldeploy.deployers.online.traffic import DeploymentEvent

    events: list[DeploymentEvent] = []

    class Flaky:
        broken = True

        def predict(self, batch: np.ndarray) -> np.ndarray:
            if self.broken:
                raise RuntimeError("down")
            return np.asarray(V1.predict(batch))

    def record(event: DeploymentEvent) -> None:
        events.append(event)
        raise ValueError("callback bug")

    model = Flaky()
    dep = OnlineDeployer(model, signature=SIG, warm=False, fallback=0.0, breaker_threshold=2,
                         breaker_cooldown_s=0.0, on_event=record, name="flaky")  # fmt: skip
    dep.predict(X[0])
    dep.predict(X[0])
    model.broken = False
    dep.predict(X[0])
    assert [(e.kind, e.version) for e in events] == [
        ("breaker_opened", "flaky"),
        ("breaker_closed", "flaky"),
    ]
    assert "2 consecutive failures" in events[0].reason
    assert "on_event callback failed" in caplog.text
