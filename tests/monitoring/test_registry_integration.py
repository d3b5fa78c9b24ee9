"""Monitor.for_version with a real registered version."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import f1_score

from modeldeploy import ModelRegistry
from modeldeploy.monitoring.monitor import Monitor


def test_for_version_uses_the_signature_profile_classes_and_ref(
    registry: ModelRegistry, data: tuple[np.ndarray, np.ndarray], model: LogisticRegression
) -> None:
    X, _ = data
    v = registry.register("churn", model, sample=X)
    mon = Monitor.for_version(v, window=1_000, thresholds={"f1": 0.8, "drift": "ks"})
    assert mon.name == v.ref == "churn:1"
    assert mon.classes == [0, 1]
    rng = np.random.default_rng(1)
    X_new = rng.normal(size=(1_000, 4))
    X_new[:, 3] += 1.0  # x3 drifted away from the registered profile
    mon.log_predictions(
        X_new, model.predict(X_new), y_proba=model.predict_proba(X_new), version=v.ref
    )
    drift = mon.drift()
    assert drift.drifted == ["x3"]
    assert drift["x3"].n_reference == X.shape[0]
    assert "estimated_f1" in mon.metrics()
    assert mon.report().to_dict()["versions"] == {"churn:1": 1_000}


def test_for_version_of_a_regressor_monitors_regression(registry: ModelRegistry) -> None:
    rng = np.random.default_rng(2)
    X = rng.normal(size=(200, 3))
    y = X @ [1.0, 2.0, 3.0]
    v = registry.register("price", Ridge().fit(X, y), sample=X)
    mon = Monitor.for_version(v, window=500)
    mon.log_predictions(X, v.load().predict(X), y_true=y)
    r2 = mon.metrics()["r2"]
    assert r2 is not None and r2 > 0.99


def test_online_deployer_feeds_the_monitor_and_late_labels_match(
    registry: ModelRegistry, data: tuple[np.ndarray, np.ndarray], model: LogisticRegression
) -> None:
    from modeldeploy.deployers.online import OnlineDeployer

    X, y = data
    v = registry.register("churn", model, sample=X)
    mon = Monitor.for_version(v, window=1_000, thresholds={})
    ids = [f"r{i}" for i in range(len(X))]
    with OnlineDeployer(v, monitor=mon) as dep:
        for i in range(0, len(X), 3):  # small requests, some of one row
            dep.predict(X[i : i + 3] if i % 2 else X[i], ids=ids[i : i + 3] if i % 2 else ids[i])
    served = np.asarray([i for i in range(len(X)) if (i // 3) % 2 or i % 3 == 0])
    out = mon.log_labels(ids, y)
    # ids never served wait for a prediction that may still come (early labels)
    assert (out["matched"], out["waiting"], out["unknown"]) == (
        len(served),
        len(X) - len(served),
        0,
    )
    got = mon.metrics()
    assert got["n_predictions"] == got["n_labelled"] == len(served)
    assert got["f1"] == pytest.approx(f1_score(y[served], model.predict(X[served])))
    assert got["latency_p50"] is not None and got["latency_p50"] > 0
