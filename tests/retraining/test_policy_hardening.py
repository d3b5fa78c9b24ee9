"""RetrainPolicy when the trainer, the gate or the registry fails (issue 13)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from modeldeploy import ModelRegistry, ModelVersion, Monitor
from modeldeploy.registry.stores import SQLiteMetadataStore
from modeldeploy.retraining import CanaryRollout, Gate, GateResult, RetrainPolicy, metric_below
from modeldeploy.testing import FakeClock


def world(n: int, *, drifted: bool, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Before the drift the label follows x0; after it, x1 (as in test_policy.py)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4))
    y = ((X[:, 1] if drifted else X[:, 0]) > 0).astype(int)
    return X, y


def recent(seed: int = 3) -> Callable[[], tuple[np.ndarray, np.ndarray]]:
    return lambda: world(3000, drifted=True, seed=seed)


def serve(mon: Monitor, version: ModelVersion, X: np.ndarray, y: np.ndarray, start: int) -> None:
    ids = [f"r{start + i}" for i in range(len(X))]
    mon.log_predictions(X, version.load().predict(X), ids=ids, version=version.ref)
    mon.log_labels(ids, y)


class FakeDeployer:
    """Records what the policy asks of an online deployer."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def swap(self, version: ModelVersion) -> None:
        self.calls.append(("swap", version.ref))

    def set_canary(self, version: ModelVersion, fraction: float) -> None:
        self.calls.append(("set_canary", (version.ref, fraction)))

    def promote_canary(self) -> None:
        self.calls.append(("promote_canary", None))

    def clear_canary(self) -> None:
        self.calls.append(("clear_canary", None))


class _NoPredict:
    def fit(self, X: Any, y: Any) -> _NoPredict:
        return self


class _PredictNotCallable:
    predict = 3


class _WrongLength:
    def predict(self, X: Any) -> np.ndarray:
        return np.zeros(3, dtype=int)


class _Trainer:
    """Counts its calls; returns what ``make`` gives."""

    def __init__(self, make: Any = None) -> None:
        self.calls = 0
        self.make = make

    def __call__(self, X: Any, y: Any) -> Any:
        self.calls += 1
        if self.make is not None:
            return self.make()
        return LogisticRegression().fit(X, y)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def served(tmp_path: Path, clock: FakeClock) -> tuple[ModelRegistry, Monitor]:
    reg = ModelRegistry(tmp_path / "reg", clock=clock)
    X, y = world(2000, drifted=False, seed=1)
    v1 = reg.register("churn", LogisticRegression().fit(X, y), sample=X)
    v1 = reg.promote("churn", v1, reason="first")
    mon = Monitor.for_version(v1, window=4000, thresholds={})
    serve(mon, v1, *world(1500, drifted=True, seed=2), start=0)  # f1 falls: the trigger fires
    return reg, mon


def _policy(reg: ModelRegistry, trainer: Any, **kwargs: Any) -> RetrainPolicy:
    options: dict[str, Any] = {
        "trainer": trainer,
        "triggers": [metric_below("f1", 0.8, min_samples=500)],
        "gate": Gate(metric="f1", min_improvement=0.01),
        "cooldown": timedelta(hours=6),
    }
    options.update(kwargs)
    return RetrainPolicy(reg, "churn", **options)


@pytest.mark.parametrize(
    ("make", "found"),
    [
        (lambda: None, "returned None"),
        (LogisticRegression, "NotFittedError"),  # an estimator never fitted
        (_NoPredict, "no predict method"),
        (_PredictNotCallable, "no predict method"),
        (_WrongLength, "ValueError"),  # predictions that do not fit the holdout
    ],
)
def test_a_trainer_that_returns_no_usable_model_is_a_recorded_training_failure(
    served: Any, make: Any, found: str
) -> None:
    reg, mon = served
    outcome = _policy(reg, _Trainer(make)).run(mon, recent())
    assert outcome.status == "training_failed"
    assert found in outcome.reasons[0] and outcome.error
    last = reg.history("churn")[-1]
    assert last.kind == "retrain_failed" and last.details["phase"] == "training"
    assert reg.aliases("churn") == {"production": 1}
    assert [v.version for v in reg.versions("churn")] == [1]


def test_a_failed_training_backs_off_until_more_labels_came_here_and_after_a_restart(
    served: Any,
) -> None:
    reg, mon = served
    v1 = reg.get("churn", 1)
    policy = _policy(reg, _Trainer(lambda: None), retry_labels=400)
    assert policy.run(mon, recent()).status == "training_failed"
    waiting = policy.evaluate(mon)
    assert not waiting.retrain and waiting.reasons[0].startswith("backing off after 1 failed")
    assert "0 of 400 new labels" in waiting.reasons[0]
    restarted = _policy(reg, _Trainer(), retry_labels=400)
    assert not restarted.evaluate(mon).retrain  # the history says the same
    serve(mon, v1, *world(400, drifted=True, seed=7), start=10_000)
    assert policy.evaluate(mon).retrain and restarted.evaluate(mon).retrain
    assert policy.run(mon, recent()).status == "training_failed"  # again: now 800 are needed
    serve(mon, v1, *world(400, drifted=True, seed=8), start=20_000)
    assert "400 of 800 new labels" in policy.evaluate(mon).reasons[0]
    serve(mon, v1, *world(400, drifted=True, seed=9), start=30_000)
    policy.trainer = _Trainer()
    assert policy.run(mon, recent()).status == "promoted"
    after = policy.evaluate(mon)  # a retrain that went out starts the full cooldown
    assert not after.retrain and after.reasons[0].startswith("in cooldown")


class _RaisingGate(Gate):
    """A user's gate with a bug in it."""

    def judge(
        self, champion: Mapping[str, float], challenger: Mapping[str, float], n_holdout: int = 0
    ) -> GateResult:
        raise ZeroDivisionError("division by zero")


def test_a_failure_while_judging_is_a_recorded_outcome_not_a_raw_exception(served: Any) -> None:
    reg, mon = served
    policy = _policy(reg, _Trainer(), gate=_RaisingGate())
    outcome = policy.run(mon, recent())
    assert outcome.status == "judging_failed"
    assert "ZeroDivisionError" in outcome.reasons[0]
    last = reg.history("churn")[-1]
    assert last.kind == "retrain_failed" and last.details["phase"] == "judging"
    assert [v.version for v in reg.versions("churn")] == [1]
    assert "backing off" in policy.evaluate(mon).reasons[0]


def test_a_holdout_the_champion_cannot_read_is_a_judging_failure(served: Any) -> None:
    reg, mon = served

    def five_columns() -> tuple[np.ndarray, np.ndarray]:
        X, y = world(3000, drifted=True, seed=3)
        return np.column_stack([X, X[:, 0]]), y

    outcome = _policy(reg, _Trainer()).run(mon, five_columns)
    assert outcome.status == "judging_failed" and "SchemaError" in outcome.reasons[0]


# ---------------------------------------------------------------- a promotion that fails


@pytest.fixture
def locked(tmp_path: Path, clock: FakeClock) -> Iterator[tuple[ModelRegistry, Monitor, Any]]:
    """A registry whose database another connection locks for writing right after the policy
    records its retrain, so that the promotion that follows finds it locked."""
    root = tmp_path / "reg"
    holder: dict[str, sqlite3.Connection] = {}

    def lock_after_retrain(event: Any) -> None:
        if event.kind == "retrained" and holder.get("armed"):
            conn = sqlite3.connect(root / "registry.db", isolation_level=None, timeout=5)
            conn.execute("BEGIN IMMEDIATE")  # a real write lock, held by another connection
            holder["conn"] = conn

    def release() -> None:
        conn = holder.pop("conn", None)
        if conn is not None:
            conn.execute("ROLLBACK")
            conn.close()
        holder.pop("armed", None)

    metadata = SQLiteMetadataStore(root / "registry.db", busy_timeout_s=0.2)
    reg = ModelRegistry(root, metadata=metadata, clock=clock, on_event=lock_after_retrain)
    X, y = world(2000, drifted=False, seed=1)
    v1 = reg.promote("churn", reg.register("churn", LogisticRegression().fit(X, y), sample=X))
    mon = Monitor.for_version(v1, window=4000, thresholds={})
    serve(mon, v1, *world(1500, drifted=True, seed=2), start=0)
    holder["armed"] = True  # type: ignore[assignment]
    yield reg, mon, release
    release()
    reg.close()


def test_a_promotion_that_fails_keeps_the_challenger_and_the_next_run_promotes_it(
    locked: Any,
) -> None:
    reg, mon, release = locked
    trainer = _Trainer()
    deployer = FakeDeployer()
    policy = _policy(reg, trainer)
    failed = policy.run(mon, recent(), deployer=deployer)
    assert failed.status == "rollout_failed", failed
    assert failed.version is not None and failed.version.version == 2
    assert "locked" in failed.reasons[0]
    release()
    assert reg.aliases("churn") == {"production": 1}  # not promoted
    assert deployer.calls == []
    decision = policy.evaluate(mon)
    assert not decision.retrain and "waits for its rollout" in decision.reasons[0]
    done = policy.run(mon, recent(), deployer=deployer)
    assert done.status == "promoted", done
    assert done.version is not None and done.version.version == 2  # THAT challenger
    assert trainer.calls == 1  # not retrained
    assert [v.version for v in reg.versions("churn")] == [1, 2]
    assert reg.aliases("churn") == {"production": 2}
    assert deployer.calls == [("swap", "churn:2")]
    after = policy.evaluate(mon)
    assert not after.retrain and after.reasons[0].startswith("in cooldown")


def test_a_restarted_policy_finds_the_challenger_whose_promotion_failed(
    locked: Any, clock: FakeClock
) -> None:
    reg, mon, release = locked
    assert _policy(reg, _Trainer()).run(mon, recent()).status == "rollout_failed"
    release()
    clock.advance(60)
    trainer = _Trainer()
    restarted = _policy(reg, trainer)  # a new process over the same registry
    assert not restarted.evaluate(mon).retrain  # the cooldown did not start, but v2 waits
    done = restarted.run(mon, recent())
    assert done.status == "promoted" and done.version is not None
    assert done.version.version == 2 and trainer.calls == 0
    assert reg.aliases("churn") == {"production": 2}
    again = _policy(reg, _Trainer())  # and once promoted, the cooldown runs from then
    assert again.evaluate(mon).reasons[0].startswith("in cooldown")
    clock.advance(timedelta(hours=6).total_seconds())
    assert again.evaluate(mon).retrain


class _CanaryFailsOnce(FakeDeployer):
    """An online deployer whose first canary cannot start (e.g. the new version's warm-up
    failed)."""

    def __init__(self) -> None:
        super().__init__()
        self.failures = 1

    def set_canary(self, version: ModelVersion, fraction: float) -> None:
        if self.failures:
            self.failures -= 1
            raise RuntimeError("warm-up failed")
        super().set_canary(version, fraction)


def test_a_canary_that_cannot_start_is_recorded_and_retried_after_a_restart(
    served: Any,
) -> None:
    reg, mon = served
    deployer = _CanaryFailsOnce()
    trainer = _Trainer()
    policy = _policy(reg, trainer, rollout=CanaryRollout(fraction=0.2, min_samples=300))
    failed = policy.run(mon, recent(), deployer=deployer)
    assert failed.status == "rollout_failed" and "warm-up failed" in failed.reasons[0]
    last = reg.history("churn")[-1]
    assert (last.kind, last.version) == ("rollout_failed", 2)
    restarted = _policy(reg, trainer, rollout=CanaryRollout(fraction=0.2, min_samples=300))
    started = restarted.run(mon, recent(), deployer=deployer)
    assert started.status == "canary_started" and trainer.calls == 1
    assert deployer.calls == [("set_canary", ("churn:2", 0.2))]


def test_a_challenger_whose_alias_was_moved_by_hand_is_not_rolled_out_later(
    locked: Any,
) -> None:
    reg, mon, release = locked
    policy = _policy(reg, _Trainer())
    assert policy.run(mon, recent()).status == "rollout_failed"
    release()
    X, y = world(2000, drifted=True, seed=8)
    v3 = reg.register("churn", LogisticRegression().fit(X, y), sample=X)
    reg.promote("churn", v3, reason="by hand")
    for p in (policy, _policy(reg, _Trainer())):
        assert "waits for its rollout" not in " ".join(p.evaluate(mon).reasons)
    policy.run(mon, recent())
    assert reg.aliases("churn")["production"] != 2
