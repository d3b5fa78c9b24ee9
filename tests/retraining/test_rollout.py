"""Rollouts as objects: what they ask of the deployer, the rename, one metric-direction table."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from modeldeploy import ModelRegistry
from modeldeploy._metrics_direction import LOWER_IS_BETTER, gain
from modeldeploy.exceptions import InvalidParameterError
from modeldeploy.retraining import (
    CanaryRollout,
    Gate,
    Replace,
    RetrainPolicy,
    Rollout,
)
from modeldeploy.retraining.rollout import Challenger, Guard, Release
from modeldeploy.testing import FakeClock
from modeldeploy.typing import CanaryTarget, SwapTarget

X = np.random.default_rng(0).normal(size=(200, 3))
y = (X[:, 0] > 0).astype(int)


class _SwapOnly:
    def __init__(self) -> None:
        self.swapped: list[str] = []

    def swap(self, version: Any) -> None:
        self.swapped.append(version.ref)


class _Monitor:
    """A MonitorView with fixed numbers and per-version metrics."""

    def __init__(self, metrics: dict[str, float], per_version: dict[str, dict[str, float]]):
        self._metrics = metrics
        self._per_version = per_version

    def metrics(self, version: str | None = None) -> dict[str, float]:
        return self._metrics if version is None else self._per_version.get(version, {})

    def drift(self) -> Any:
        return {}

    def label_stats(self) -> dict[str, int]:
        return {"labels_total": 0}


def test_rollouts_are_rollout_objects() -> None:
    assert issubclass(CanaryRollout, Rollout) and issubclass(Replace, Rollout)
    with pytest.raises(InvalidParameterError, match="'fraction' parameter of CanaryRollout"):
        CanaryRollout(fraction=0)


def test_each_rollout_says_what_it_needs_of_the_deployer() -> None:
    swap_only = _SwapOnly()
    assert isinstance(swap_only, SwapTarget) and not isinstance(swap_only, CanaryTarget)
    Replace().check_deployer(None)
    Replace().check_deployer(swap_only)
    with pytest.raises(InvalidParameterError, match="'deployer' parameter of RetrainPolicy.run"):
        Replace().check_deployer(object())
    with pytest.raises(InvalidParameterError, match="Canary rollout needs .* Got _SwapOnly"):
        CanaryRollout().check_deployer(swap_only)


def test_a_policy_refuses_what_is_not_a_rollout(tmp_path: Path) -> None:
    reg = ModelRegistry(tmp_path)
    with pytest.raises(InvalidParameterError, match="'rollout' parameter of RetrainPolicy"):
        RetrainPolicy(reg, "m", trainer=LogisticRegression(), rollout="canary")  # type: ignore[arg-type]
    policy = RetrainPolicy(reg, "m", trainer=LogisticRegression(), rollout=CanaryRollout())
    assert repr(policy).endswith("CanaryRollout)")


def test_replace_promotes_swaps_and_hands_back_a_guard_that_rolls_back(tmp_path: Path) -> None:
    clock = FakeClock()
    reg = ModelRegistry(tmp_path, clock=clock)
    v1 = reg.register("m", LogisticRegression().fit(X, y), sample=X)
    reg.promote("m", v1)
    v2 = reg.register("m", LogisticRegression(C=0.1).fit(X, y), sample=X, parent=v1)
    release = Release(
        reg, "m", "production", metric="f1", clock=clock, rollback_margin=0.05,
        rollback_min_samples=10,
    )  # fmt: skip
    deployer = _SwapOnly()
    before = _Monitor({"f1": 0.9, "n_labelled": 100}, {})
    outcome, watch = Replace().start(release, Challenger(v2, v1), before, deployer)
    assert outcome.status == "promoted" and deployer.swapped == ["m:2"]
    assert isinstance(watch, Guard) and watch.baseline == 0.9 and watch.busy is None
    fine = _Monitor({}, {"m:2": {"f1": 0.88, "n_labelled": 100}})
    assert watch.watch(release, fine, deployer) == (None, watch)
    harm = _Monitor({}, {"m:2": {"f1": 0.7, "n_labelled": 100}})
    news, after = watch.watch(release, harm, deployer)
    assert news is not None and news.status == "rolled_back" and after is None
    assert deployer.swapped == ["m:2", "m:1"] and reg.aliases("m") == {"production": 1}


def test_one_metric_direction_table_serves_gates_and_rollouts() -> None:
    assert {"mae", "rmse", "log_loss", "error_rate", "nan_prediction_rate"} <= LOWER_IS_BETTER
    assert gain("rmse", 2.0, 1.5) == 0.5 and gain("f1", 0.8, 0.7) == pytest.approx(-0.1)
    result = Gate(metric="log_loss").judge({"log_loss": 0.5}, {"log_loss": 0.4})
    assert result.passed and math.isclose(result.improvement, 0.1)


def test_the_former_canary_name_still_works_and_warns() -> None:
    import modeldeploy.retraining as retraining

    with pytest.warns(DeprecationWarning, match="renamed CanaryRollout"):
        former = retraining.Canary
    assert former is retraining.CanaryRollout
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        _ = retraining.Nope
