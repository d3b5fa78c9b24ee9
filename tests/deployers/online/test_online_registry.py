from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import make_classification
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.tree import DecisionTreeClassifier

from modeldeploy import ModelRegistry
from modeldeploy.deployers.online import OnlineDeployer
from modeldeploy.exceptions import InvalidParameterError, SchemaError
from modeldeploy.testing import FakeClock

X, y = make_classification(n_samples=300, n_features=5, random_state=4)
TARGET = X @ np.arange(1.0, 6.0)


@pytest.fixture
def registry(tmp_path: Path) -> ModelRegistry:
    reg = ModelRegistry(tmp_path / "reg")
    # Three regression versions 1000 apart: an answer tells which version gave it.
    for k in range(3):
        reg.register("churn", LinearRegression().fit(X, TARGET + 1000.0 * k), sample=X)
    reg.promote("churn", 1, alias="production")
    return reg


def version_of(answer: np.ndarray, rows: np.ndarray) -> int:
    base = rows @ np.arange(1.0, 6.0)
    offsets = np.round((answer - base) / 1000.0)
    assert np.allclose(answer, base + 1000.0 * offsets, atol=1e-6)
    assert len(set(offsets.tolist())) == 1, "one request answered by several versions"
    return int(offsets[0]) + 1


def test_deploys_a_registry_version_and_validates_with_its_signature(
    registry: ModelRegistry,
) -> None:
    v = registry.get("churn", alias="production")
    with OnlineDeployer(v) as dep:
        assert dep.version == "churn:1"
        assert version_of(dep.predict(X[:4]), X[:4]) == 1
        with pytest.raises(SchemaError, match="Expected 5 features"):
            dep.predict(X[:1, :3])
        assert dep.stats()["churn:1"].requests == 1


def test_swap_to_registry_versions_under_load(registry: ModelRegistry) -> None:
    versions = [registry.get("churn", version=k) for k in (1, 2, 3)]
    dep = OnlineDeployer(versions[0])
    stop = threading.Event()
    seen: list[set[int]] = [set() for _ in range(16)]
    failures: list[BaseException] = []

    def caller(k: int) -> None:
        rng = np.random.default_rng(k)
        try:
            while not stop.is_set():
                idx = rng.choice(300, size=2, replace=False)
                seen[k].add(version_of(dep.predict(X[idx]), X[idx]))
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=caller, args=(k,)) for k in range(16)]
    for t in threads:
        t.start()
    for s in range(12):
        dep.swap(versions[(s + 1) % 3])
        time.sleep(0.005)
    stop.set()
    for t in threads:
        t.join(30)
    assert failures == []
    assert set().union(*seen) <= {1, 2, 3}
    assert dep.version == "churn:1"  # 12 swaps through 3 versions end where they began
    roles = {v.label: v.role for v in dep.stats().versions}
    assert roles == {"churn:1": "primary", "churn:2": "retired", "churn:3": "retired"}


def test_follow_swaps_when_the_alias_moves_and_back_on_rollback(
    registry: ModelRegistry,
) -> None:
    dep = OnlineDeployer.follow(registry, "churn", "production", poll_s=3600)
    assert dep.version == "churn:1"
    assert dep.poll() is False
    registry.promote("churn", 3, alias="production")
    assert dep.poll() is True
    assert dep.version == "churn:3"
    assert version_of(dep.predict(X[:2]), X[:2]) == 3
    registry.rollback("churn", alias="production")
    assert dep.poll() is True
    assert version_of(dep.predict(X[:2]), X[:2]) == 1
    dep.close()


def test_follow_polls_in_the_background(registry: ModelRegistry) -> None:
    clock = FakeClock()
    dep = OnlineDeployer.follow(registry, "churn", "production", poll_s=60, clock=clock)
    registry.promote("churn", 2, alias="production")
    clock.advance(59)
    time.sleep(0.2)
    assert dep.version == "churn:1"  # the next poll is due in 1 s on the deployer's clock
    clock.advance(1)
    deadline = time.monotonic() + 20
    while dep.version != "churn:2" and time.monotonic() < deadline:
        time.sleep(0.01)
    assert dep.version == "churn:2"
    dep.close()


def test_poll_without_follow_is_refused(registry: ModelRegistry) -> None:
    dep = OnlineDeployer(registry.get("churn", version=1))
    with pytest.raises(InvalidParameterError, match="follows no alias"):
        dep.poll()


def test_registry_version_as_fallback(registry: ModelRegistry) -> None:
    class Broken:
        def predict(self, batch: np.ndarray) -> np.ndarray:
            raise RuntimeError("down")

    dep = OnlineDeployer(
        Broken(), signature=registry.get("churn").signature, warm=False,
        fallback=registry.get("churn", version=2),
    )  # fmt: skip
    assert version_of(dep.predict(X[:3]), X[:3]) == 2
    assert dep.stats().primary.fallbacks == 1
    assert "fallback churn:2" in [v.label for v in dep.stats().versions]


def test_dataframe_trained_model_gets_a_dataframe(tmp_path: Path) -> None:
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(5)])
    model = LogisticRegression(max_iter=300).fit(frame, y)
    reg = ModelRegistry(tmp_path / "reg")
    v = reg.register("frame", model, sample=frame)
    tree = DecisionTreeClassifier(max_depth=2, random_state=0).fit(frame, y)
    reg.register("frame", tree, sample=frame)
    # pytest turns sklearn's "X does not have valid feature names" warning into an error.
    dep = OnlineDeployer(v)
    np.testing.assert_array_equal(dep.predict(X[:5]), model.predict(frame.iloc[:5]))
    np.testing.assert_array_equal(dep.predict(frame.iloc[[7]]), model.predict(frame.iloc[[7]]))
    dep.set_shadow(reg.get("frame", version=2), sample=1.0)
    dep.predict(frame.iloc[:10])
    assert dep.flush(10)
    dep.close()
    shadow = dep.stats()["frame:2"]
    assert shadow.compared == 10 and shadow.errors == 0


def test_fast_path_is_stored_with_the_version_and_reused_by_replicas(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sklearn.ensemble import RandomForestClassifier

    import modeldeploy.fastpath.compile as fastpath

    rng = np.random.default_rng(5)
    X = rng.normal(size=(400, 5))
    y = (X[:, 0] > 0).astype(int)
    reg = ModelRegistry(tmp_path / "reg")
    v = reg.register("rf", RandomForestClassifier(n_estimators=5, max_depth=4).fit(X, y), sample=X)
    first = OnlineDeployer(v)
    assert first.fast_path_report().served_by == "onnx"
    events = [e for e in reg.history("rf") if e.kind == "fast_path"]
    assert len(events) == 1
    assert events[0].details["accepted"] is True

    def no_compiling(*args: object, **kwargs: object) -> object:
        raise AssertionError("a replica recompiled a stored fast path")

    monkeypatch.setattr(fastpath, "compile_fast_path", no_compiling)
    replica = OnlineDeployer(ModelRegistry(tmp_path / "reg").get("rf", 1))
    np.testing.assert_array_equal(replica.predict(X[:50]), v.load().predict(X[:50]))
    assert replica.fast_path_report().served_by == "onnx"
    assert len([e for e in reg.history("rf") if e.kind == "fast_path"]) == 1
    first.close()
    replica.close()


def test_follow_passes_deployer_options_on(tmp_path: Path) -> None:
    X = np.random.default_rng(2).normal(size=(100, 3))
    reg = ModelRegistry(tmp_path / "reg")
    reg.register("m", LogisticRegression().fit(X, (X[:, 0] > 0).astype(int)), sample=X)
    reg.promote("m", 1)
    with OnlineDeployer.follow(reg, "m", "production", poll_s=60, max_batch_size=3) as dep:
        assert dep.version == "m:1"
        assert dep.max_batch_size == 3
    assert not hasattr(OnlineDeployer, "follow_alias")  # removed: follow is the one name


def test_a_refused_fast_path_is_recorded_once_across_replicas(tmp_path: Path) -> None:
    from sklearn.neighbors import KNeighborsClassifier

    X = np.random.default_rng(4).normal(size=(200, 3))
    reg = ModelRegistry(tmp_path / "reg")
    reg.register("knn", KNeighborsClassifier().fit(X, (X[:, 0] > 0).astype(int)), sample=X)
    for _ in range(2):  # the second deployer is a replica starting later
        dep = OnlineDeployer(ModelRegistry(tmp_path / "reg").get("knn", 1))
        assert dep.fast_path_report().served_by == "native"
        np.testing.assert_array_equal(dep.predict(X[:5]), reg.load("knn", 1).predict(X[:5]))
        dep.close()
    events = [e for e in reg.history("knn") if e.kind == "fast_path"]
    assert len(events) == 1
    assert events[0].details["accepted"] is False
