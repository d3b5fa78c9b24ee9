"""A version's fast path, compiled once where the version is made and loaded by every replica."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from sklearn.ensemble import RandomForestClassifier
from sklearn.neighbors import KNeighborsClassifier

import modeldeploy.fastpath.compile as fastpath_compile
from modeldeploy import ModelRegistry, OnlineDeployer
from modeldeploy.exceptions import DeploymentError, InvalidParameterError
from modeldeploy.fastpath import attach_fast_path, fast_path_key

pytest.importorskip("onnxruntime")


@pytest.fixture
def X() -> np.ndarray:  # noqa: N802 - the scikit-learn name for a data matrix
    return np.random.default_rng(5).normal(size=(400, 5))


@pytest.fixture
def forest(X: np.ndarray) -> RandomForestClassifier:
    return RandomForestClassifier(n_estimators=5, max_depth=4, random_state=0).fit(
        X, (X[:, 0] > 0).astype(int)
    )


def _no_compiling(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> object:
        raise AssertionError("a replica compiled a fast path that was attached")

    monkeypatch.setattr(fastpath_compile, "compile_fast_path", refuse)


def _serves_attached_without_compiling(
    reg: ModelRegistry,
    replica: ModelRegistry,
    X: np.ndarray,
    forest: RandomForestClassifier,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    v = reg.register("rf", forest, sample=X)
    report = attach_fast_path(v)
    assert report.served_by == "onnx" and report.accepted
    assert v.attachment(fast_path_key()) is not None
    reg.promote("rf", 1)
    _no_compiling(monkeypatch)
    with OnlineDeployer.follow(replica, "rf", "production", poll_s=60) as dep:
        assert dep.version == "rf:1"
        served = dep.fast_path_report()
        assert served.served_by == "onnx"
        assert served.reason.startswith("parity not checked")  # loaded, not compiled
        np.testing.assert_array_equal(dep.predict(X[:50]), forest.predict(X[:50]))
    events = [e for e in reg.history("rf") if e.kind == "fast_path"]
    assert len(events) == 1  # the attachment's; the follower recorded no compile
    assert events[0].version == 1 and events[0].details["key"] == fast_path_key()


def test_a_follower_loads_the_attached_fast_path_instead_of_compiling(
    tmp_path: Path, X: np.ndarray, forest: RandomForestClassifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    reg = ModelRegistry(tmp_path / "reg")
    replica = ModelRegistry(tmp_path / "reg")  # another process's registry: its own cache
    _serves_attached_without_compiling(reg, replica, X, forest, monkeypatch)


def test_a_follower_on_postgres_and_s3_loads_the_attached_fast_path(
    pg_url: str,
    s3_url: str,
    X: np.ndarray,
    forest: RandomForestClassifier,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reg = ModelRegistry(pg_url, artifacts=s3_url)
    replica = ModelRegistry(pg_url, artifacts=s3_url)
    try:
        _serves_attached_without_compiling(reg, replica, X, forest, monkeypatch)
    finally:
        replica.close()
        reg.close()


def test_a_refusal_is_attached_too_and_require_stores_nothing(
    tmp_path: Path, X: np.ndarray
) -> None:
    reg = ModelRegistry(tmp_path / "reg")
    v = reg.register("knn", KNeighborsClassifier().fit(X, X[:, 0] > 0), sample=X)
    with pytest.raises(DeploymentError, match="required"):
        attach_fast_path(v, mode="require")
    assert v.attachment(fast_path_key()) is None
    assert [e.kind for e in reg.history("knn")] == ["registered"]
    report = attach_fast_path(v)
    assert report.served_by == "native" and not report.accepted
    assert v.attachment(fast_path_key()) is not None  # replicas need not try again
    with OnlineDeployer(reg.get("knn", 1)) as dep:
        assert dep.fast_path_report().served_by == "native"
    assert [e.kind for e in reg.history("knn")] == ["registered", "fast_path"]


def test_attach_needs_a_registry_version_and_a_known_mode(
    tmp_path: Path, X: np.ndarray, forest: RandomForestClassifier
) -> None:
    reg = ModelRegistry(tmp_path / "reg")
    v = reg.register("rf", forest, sample=X)
    with pytest.raises(InvalidParameterError, match="'mode' parameter of attach_fast_path"):
        attach_fast_path(v, mode="off")  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="detached"):
        attach_fast_path(dataclasses.replace(v, _registry=None))
