"""RetrainPolicy on a real registry and a real Monitor, with concept drift from a fixed seed."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn import metrics as skm
from sklearn.linear_model import LogisticRegression

from modeldeploy import ModelRegistry, ModelVersion, Monitor, Signature
from modeldeploy.exceptions import InvalidParameterError
from modeldeploy.fastpath import fast_path_key
from modeldeploy.retraining import (
    CanaryRollout,
    Gate,
    RetrainPolicy,
    change_detected,
    drift_detected,
    every,
    metric_below,
)
from modeldeploy.testing import FakeClock

RNG = np.random.default_rng(7)


def world(n: int, *, drifted: bool, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Before the drift the label follows x0; after it, x1."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4))
    y = ((X[:, 1] if drifted else X[:, 0]) > 0).astype(int)
    return X, y


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


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def setup(tmp_path: Path, clock: FakeClock) -> tuple[ModelRegistry, ModelVersion, Monitor]:
    reg = ModelRegistry(tmp_path / "reg", clock=clock)
    X, y = world(2000, drifted=False, seed=1)
    v1 = reg.register("churn", LogisticRegression().fit(X, y), sample=X, metrics={"f1": 0.97})
    reg.promote("churn", v1, reason="first")
    v1 = reg.get("churn", alias="production")
    mon = Monitor.for_version(v1, window=4000, thresholds={"drift": "ks"})
    return reg, v1, mon


def serve(
    mon: Monitor,
    version: ModelVersion,
    X: np.ndarray,
    y: np.ndarray,
    start: int,
    *,
    labels: np.ndarray | None = None,
) -> None:
    """Predict with ``version`` and log the predictions, then their (delayed) labels."""
    model = version.load()
    ids = [f"r{start + i}" for i in range(len(X))]
    mon.log_predictions(X, model.predict(X), ids=ids, version=version.ref)
    mon.log_labels(ids, y if labels is None else labels)


def recent(seed: int = 3) -> Callable[[], tuple[np.ndarray, np.ndarray]]:
    return lambda: world(3000, drifted=True, seed=seed)


def make_policy(reg: ModelRegistry, **kwargs: Any) -> RetrainPolicy:
    """A policy over ``reg``; it reads time from the registry's clock unless given one."""
    options: dict[str, Any] = {
        "trainer": lambda X, y: LogisticRegression().fit(X, y),
        "triggers": [metric_below("f1", 0.8, min_samples=500)],
        "gate": Gate(metric="f1", min_improvement=0.01, guard={"recall": -0.05}),
        "cooldown": timedelta(hours=6),
    }
    options.update(kwargs)
    return RetrainPolicy(reg, "churn", **options)


def test_no_trigger_no_retrain_is_counted_not_written_to_the_history(setup: Any) -> None:
    reg, v1, mon = setup
    serve(mon, v1, *world(1000, drifted=False, seed=2), start=0)
    policy = make_policy(reg)
    decision = policy.evaluate(mon)
    assert not decision.retrain
    assert "f1 0.9" in decision.reasons[0]
    outcome = policy.run(mon, recent())
    assert outcome.status == "skipped"
    before = len(reg.history("churn"))
    for _ in range(5):
        assert policy.run(mon, recent()).status == "skipped"
    assert len(reg.history("churn")) == before
    assert reg.history("churn")[-1].kind == "promoted"
    assert policy.stats() == {"runs": 6, "skipped": 6, "retrains": 0}
    assert [v.version for v in reg.versions("churn")] == [1]


def test_drift_is_caught_retrained_gated_and_promoted(setup: Any) -> None:
    reg, v1, mon = setup
    X_new, y_new = world(1500, drifted=True, seed=2)
    serve(mon, v1, X_new, y_new, start=0)
    deployer = FakeDeployer()
    policy = make_policy(
        reg, triggers=[metric_below("f1", 0.8, min_samples=500), drift_detected(share=0.99)]
    )
    decision = policy.evaluate(mon)
    assert decision.retrain and decision.fired == ["metric_below('f1', 0.8)"]
    outcome = policy.run(mon, recent(), deployer=deployer)
    assert outcome.status == "promoted", outcome
    v2 = outcome.version
    assert v2 is not None and v2.version == 2 and v2.parent == 1
    assert v2.aliases == ("production",)
    assert v2.metrics["holdout_f1"] > v2.metrics["champion_holdout_f1"] + 0.01
    assert "retrained by RetrainPolicy" in v2.description
    assert deployer.calls == [("swap", "churn:2")]
    kinds = [e.kind for e in reg.history("churn")]
    assert kinds[-5:] == ["retrain_decided", "registered", "retrained", "fast_path", "promoted"]
    # the challenger's fast path was attached, so replicas load it instead of compiling
    assert v2.attachment(fast_path_key()) is not None
    # the new version really is better on post-drift data
    X_test, y_test = world(2000, drifted=True, seed=9)
    assert (v2.load().predict(X_test) == y_test).mean() > (
        v1.load().predict(X_test) == y_test
    ).mean() + 0.2


def test_gate_refuses_a_worse_challenger_and_nothing_changes(setup: Any) -> None:
    reg, v1, mon = setup
    serve(mon, v1, *world(1500, drifted=True, seed=2), start=0)
    policy = make_policy(
        reg,
        trainer=lambda X, y: LogisticRegression().fit(X[:, [2, 3]] * 0, y) and _Const(),
    )
    outcome = policy.run(mon, lambda: world(3000, drifted=False, seed=4))
    assert outcome.status == "rejected"
    assert outcome.gate is not None and not outcome.gate.passed
    assert reg.aliases("churn") == {"production": 1}
    assert [v.version for v in reg.versions("churn")] == [1]
    assert reg.history("churn")[-1].kind == "challenger_rejected"


class _Const:
    """A challenger that always answers 0."""

    def predict(self, X: Any) -> np.ndarray:
        return np.zeros(len(X), dtype=int)


def test_failing_trainer_leaves_the_champion_and_records_why(setup: Any) -> None:
    reg, v1, mon = setup
    serve(mon, v1, *world(1500, drifted=True, seed=2), start=0)

    def broken(X: Any, y: Any) -> Any:
        raise RuntimeError("out of memory")

    outcome = make_policy(reg, trainer=broken).run(mon, recent())
    assert outcome.status == "training_failed"
    assert "RuntimeError: out of memory" in outcome.reasons[0]
    assert reg.aliases("churn") == {"production": 1}
    assert reg.history("churn")[-1].kind == "retrain_failed"


def test_cooldown_prevents_thrashing_and_survives_a_restart(setup: Any, clock: FakeClock) -> None:
    reg, v1, mon = setup
    serve(mon, v1, *world(1500, drifted=True, seed=2), start=0)
    policy = make_policy(reg, gate=Gate(metric="f1", min_improvement=0.0))
    assert policy.run(mon, recent()).status == "promoted"
    again = make_policy(reg)  # a new process: state comes from the registry history
    clock.advance(timedelta(hours=1).total_seconds())
    decision = again.evaluate(mon)
    assert not decision.retrain and decision.reasons[0].startswith("in cooldown until")
    clock.advance(timedelta(hours=6).total_seconds())
    assert again.evaluate(mon).retrain  # the old window still shows the decay


def test_schedule_trigger_uses_the_last_retrain(setup: Any, clock: FakeClock) -> None:
    reg, _, mon = setup
    policy = make_policy(
        reg,
        triggers=[every(days=7)],
        cooldown=timedelta(0),
        gate=Gate(metric="f1", min_improvement=-1.0),
    )
    assert policy.run(mon, lambda: world(2000, drifted=False, seed=5)).status == "promoted"
    clock.advance(timedelta(days=3).total_seconds())
    assert not policy.evaluate(mon).retrain
    clock.advance(timedelta(days=4).total_seconds())
    assert policy.evaluate(mon).retrain


def test_canary_is_promoted_when_it_is_no_worse(setup: Any) -> None:
    reg, v1, mon = setup
    serve(mon, v1, *world(1500, drifted=True, seed=2), start=0)
    deployer = FakeDeployer()
    policy = make_policy(reg, rollout=CanaryRollout(fraction=0.2, min_samples=300))
    started = policy.run(mon, recent(), deployer=deployer)
    assert started.status == "canary_started"
    assert deployer.calls == [("set_canary", ("churn:2", 0.2))]
    assert reg.aliases("churn") == {"production": 1}  # not promoted yet
    v2 = reg.get("churn", 2)
    X, y = world(600, drifted=True, seed=11)
    serve(mon, v2, X[:200], y[:200], start=10_000)
    waiting = policy.run(mon, recent(), deployer=deployer)
    assert waiting.status == "canary_waiting" and "churn:2 200" in waiting.reasons[0]
    serve(mon, v2, X[200:], y[200:], start=10_200)
    serve(mon, v1, *world(400, drifted=True, seed=12), start=20_000)
    done = policy.run(mon, recent(), deployer=deployer)
    assert done.status == "canary_promoted", done
    assert reg.aliases("churn") == {"production": 2}
    assert deployer.calls[-1] == ("promote_canary", None)


def test_canary_is_withdrawn_when_it_does_worse(setup: Any) -> None:
    reg, v1, mon = setup
    serve(mon, v1, *world(1500, drifted=True, seed=2), start=0)
    deployer = FakeDeployer()
    policy = make_policy(reg, rollout=CanaryRollout(fraction=0.1, min_samples=300))
    assert policy.run(mon, recent(), deployer=deployer).status == "canary_started"
    v2 = reg.get("churn", 2)
    X, y = world(400, drifted=True, seed=13)
    wrong = 1 - v2.load().predict(X)  # in production the canary turns out to be always wrong
    serve(mon, v2, X, y, start=30_000, labels=wrong)
    outcome = policy.run(mon, recent(), deployer=deployer)
    assert outcome.status == "canary_rolled_back"
    assert reg.aliases("churn") == {"production": 1}
    assert deployer.calls[-1] == ("clear_canary", None)
    assert reg.history("churn")[-1].kind == "canary_rolled_back"


def test_a_promoted_version_that_does_harm_is_rolled_back(setup: Any) -> None:
    reg, v1, mon = setup
    serve(mon, v1, *world(1500, drifted=True, seed=2), start=0)
    deployer = FakeDeployer()
    policy = make_policy(reg, rollback_min_samples=300, rollback_margin=0.05)
    assert policy.run(mon, recent(), deployer=deployer).status == "promoted"
    v2 = reg.get("churn", 2)
    X, y = world(500, drifted=True, seed=14)
    serve(mon, v2, X, y, start=40_000, labels=1 - v2.load().predict(X))
    outcome = policy.run(mon, recent(), deployer=deployer)
    assert outcome.status == "rolled_back"
    assert outcome.version is not None and outcome.version.version == 1
    assert reg.aliases("churn") == {"production": 1}
    assert deployer.calls[-1] == ("swap", "churn:1")
    assert reg.history("churn")[-1].kind == "rolled_back"


def test_estimator_trainer_is_cloned_and_bad_arguments_are_refused(setup: Any) -> None:
    reg, v1, mon = setup
    serve(mon, v1, *world(1500, drifted=True, seed=2), start=0)
    template = LogisticRegression(C=0.5)
    outcome = make_policy(reg, trainer=template).run(mon, recent())
    assert outcome.status == "promoted"
    assert not hasattr(template, "coef_")  # the template itself stays unfitted
    with pytest.raises(InvalidParameterError, match="'trainer' parameter"):
        RetrainPolicy(reg, "churn", trainer=42)
    with pytest.raises(InvalidParameterError, match="needs data="):
        make_policy(reg, cooldown=timedelta(0)).run(mon, force=True)
    with pytest.raises(InvalidParameterError, match="Canary rollout needs the online deployer"):
        make_policy(reg, cooldown=timedelta(0), rollout=CanaryRollout()).run(
            mon, recent(), force=True
        )


def test_outcomes_and_history_are_stamped_by_the_one_clock(setup: Any, clock: FakeClock) -> None:
    reg, v1, mon = setup
    serve(mon, v1, *world(1500, drifted=True, seed=2), start=0)
    clock.advance(timedelta(days=2).total_seconds())
    outcome = make_policy(reg).run(mon, recent())
    assert outcome.status == "promoted"
    assert outcome.time == clock.now()
    assert outcome.to_dict()["time"] == clock.now().isoformat()
    assert {e.time for e in reg.history("churn")[-3:]} == {clock.now()}


def test_a_policy_on_another_clock_still_leaves_its_cooldown(
    setup: Any, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    reg, v1, mon = setup
    serve(mon, v1, *world(1500, drifted=True, seed=2), start=0)
    assert (
        make_policy(reg, gate=Gate(metric="f1", min_improvement=0.0)).run(mon, recent()).status
        == "promoted"
    )
    # A restarted policy whose clock is a year behind the registry's: the retrain it reads
    # from the history lies in its future. It counts the cooldown from its own now.
    behind = FakeClock(clock.now() - timedelta(days=365))
    restarted = make_policy(reg, clock=behind)
    with caplog.at_level("WARNING", logger="modeldeploy.retraining"):
        assert not restarted.evaluate(mon).retrain
    assert "disagree" in caplog.text
    behind.advance(timedelta(hours=6, seconds=1).total_seconds())
    assert restarted.evaluate(mon).retrain


def test_a_bare_callable_clock_still_works_and_bad_clocks_are_refused(setup: Any) -> None:
    reg, _, mon = setup
    fixed = datetime(2031, 3, 1, 12, 0, tzinfo=timezone.utc)
    assert make_policy(reg, clock=lambda: fixed).evaluate(mon).time == fixed
    with pytest.raises(InvalidParameterError, match="naive datetime"):
        make_policy(reg, clock=datetime.now)
    with pytest.raises(InvalidParameterError, match="'clock' parameter of RetrainPolicy"):
        make_policy(reg, clock="now")


def test_a_fast_path_that_cannot_be_attached_does_not_fail_the_retrain(
    setup: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import modeldeploy.retraining.policy as policy_module

    def broken(version: ModelVersion, **kwargs: Any) -> Any:
        raise RuntimeError("compiler exploded")

    monkeypatch.setattr(policy_module, "attach_fast_path", broken)
    reg, v1, mon = setup
    serve(mon, v1, *world(1500, drifted=True, seed=2), start=0)
    with caplog.at_level("WARNING", logger="modeldeploy.retraining"):
        outcome = make_policy(reg).run(mon, recent())
    assert outcome.status == "promoted", outcome
    assert reg.get("churn", alias="production").version == 2
    assert "could not attach the fast path of churn:2" in caplog.text
    assert "fast_path" not in [e.kind for e in reg.history("churn")]


def test_a_challenger_trained_on_arrays_keeps_the_champions_feature_names(
    tmp_path: Path, clock: FakeClock
) -> None:
    reg = ModelRegistry(tmp_path / "reg", clock=clock)
    names = ["tenure", "spend", "visits", "complaints"]
    X, y = world(2000, drifted=False, seed=1)
    v1 = reg.register(
        "churn", LogisticRegression().fit(X, y), signature=Signature.infer(X, names=names)
    )
    reg.promote("churn", v1)
    mon = Monitor.for_version(reg.get("churn", alias="production"), window=4000)
    serve(mon, reg.get("churn", alias="production"), *world(1500, drifted=True, seed=2), start=0)
    deployer = FakeDeployer()
    outcome = make_policy(reg).run(mon, recent(), deployer=deployer)  # arrays, no names
    assert outcome.status == "promoted", outcome
    assert outcome.version is not None and outcome.version.signature is not None
    assert outcome.version.signature.names == names
    # ... profiled from the challenger's own training rows, not copied from the champion
    assert outcome.version.signature.to_dict() != reg.get("churn", 1).signature.to_dict()  # type: ignore[union-attr]


# ---------------------------------------------------------------------- issue 14: the loop on a
# stream: a consistent view, the change point reaching data, a gate on the present, back-off


class SlowMonitor(Monitor):
    """A real monitor that takes its time with each batch handed over (a busy machine), so a
    deployer's queue is still full when the labels come."""

    def log_predictions(self, *args: Any, **kwargs: Any) -> None:
        import time

        time.sleep(0.002)
        super().log_predictions(*args, **kwargs)


def test_the_policy_decides_on_everything_served_whatever_the_thread_timing(
    tmp_path: Path,
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from modeldeploy import OnlineDeployer

    seen = []
    for run in range(3):
        reg = ModelRegistry(tmp_path / f"reg{run}")
        X0, y0 = world(2000, drifted=False, seed=1)
        v1 = reg.promote("churn", reg.register("churn", LogisticRegression().fit(X0, y0)))
        mon = SlowMonitor(window=4000, thresholds={})
        dep = OnlineDeployer(v1, monitor=mon)
        X, y = world(800, drifted=True, seed=2)
        ids = [f"r{i}" for i in range(len(X))]

        def one(i: int, dep: OnlineDeployer = dep, X: np.ndarray = X, ids: list[str] = ids) -> Any:
            return dep.predict(X[i : i + 1], ids=[ids[i]])

        with ThreadPoolExecutor(8) as pool:  # 8 threads, one row each request
            list(pool.map(one, range(len(X))))
        mon.log_labels(ids, y)  # at once: most predictions are still queued for the monitor
        policy = make_policy(reg, triggers=[metric_below("f1", 0.8, min_samples=800)])
        outcome = policy.run(mon, recent(), deployer=dep)
        dep.close()
        assert outcome.decision is not None
        values = outcome.decision.triggers[0].values
        seen.append((outcome.status, values["n_labelled"], round(values["value"], 6)))
    assert seen[0][1] == 800  # every label met its prediction before the decision
    assert seen == [seen[0]] * 3  # and the same inputs gave the same decision


def serve_stream(
    mon: Monitor, version: ModelVersion, clock: FakeClock, batches: list[bool], start: int = 0
) -> int:
    """Serve 500-row batches a minute apart (drifted or not); labels come with each batch."""
    for k, drifted in enumerate(batches):
        clock.advance(60)
        serve(
            mon,
            version,
            *world(500, drifted=drifted, seed=100 + start + k),
            start=500 * (start + k),
        )
    return start + len(batches)


def test_data_that_takes_a_request_trains_on_the_rows_after_the_change(
    tmp_path: Path, clock: FakeClock
) -> None:
    reg = ModelRegistry(tmp_path / "reg", clock=clock)
    X0, y0 = world(2000, drifted=False, seed=1)
    v1 = reg.promote("churn", reg.register("churn", LogisticRegression().fit(X0, y0)))
    mon = Monitor(window=5000, thresholds={}, clock=clock)  # 500-row buckets
    served = serve_stream(mon, v1, clock, [False] * 12)
    change_at = clock.now() + timedelta(minutes=1)  # the next batch is the first drifted one
    serve_stream(mon, v1, clock, [True] * 2, start=served)
    requests: list[Any] = []

    def data(request: Any) -> tuple[np.ndarray, np.ndarray]:
        requests.append(request)
        return world(1000, drifted=request.since is not None, seed=9)

    policy = make_policy(reg, triggers=[change_detected()], gate=Gate(metric="accuracy"))
    outcome = policy.run(mon, data)
    assert outcome.status == "promoted"
    (request,) = requests
    assert request.since == change_at == mon.change().start
    assert request.labels_since == 1000 and request.decision is outcome.decision
    retrained = [e for e in reg.history("churn") if e.kind == "retrained"]
    assert retrained[-1].details["since"] == change_at.isoformat()
    zero_arg = make_policy(reg, triggers=[change_detected()], cooldown=timedelta(0))
    assert zero_arg.run(mon, recent(), force=True).status in ("promoted", "rejected")  # data()


def test_the_gate_judges_on_the_most_recent_rows(setup: Any) -> None:
    reg, v1, mon = setup
    serve(mon, v1, *world(1500, drifted=True, seed=2), start=0)
    X_old, y_old = world(2250, drifted=False, seed=5)
    X_new, y_new = world(750, drifted=True, seed=6)
    trained_on: list[np.ndarray] = []

    def trainer(X: np.ndarray, y: np.ndarray) -> Any:
        trained_on.append(X)
        return LogisticRegression().fit(X, y)

    policy = make_policy(reg, trainer=trainer, gate=Gate(metric="accuracy", min_improvement=0.0))
    outcome = policy.run(mon, lambda: (np.vstack([X_old, X_new]), np.concatenate([y_old, y_new])))
    # Trained on the older 75%, judged on the newest 25%, with sklearn's scores on those rows.
    np.testing.assert_array_equal(trained_on[0], X_old)
    assert outcome.gate is not None and outcome.gate.n_holdout == 750
    champion = v1.load()
    assert outcome.gate.champion["accuracy"] == pytest.approx(
        skm.accuracy_score(y_new, champion.predict(X_new))
    )
    challenger = LogisticRegression().fit(X_old, y_old)
    assert outcome.gate.challenger["accuracy"] == pytest.approx(
        skm.accuracy_score(y_new, challenger.predict(X_new))
    )


@pytest.mark.parametrize("seed", range(5))
def test_a_challenger_worse_on_the_recent_rows_is_never_promoted(setup: Any, seed: int) -> None:
    reg, v1, mon = setup
    serve(mon, v1, *world(1500, drifted=True, seed=2), start=0)
    rng = np.random.default_rng(seed)
    X, y = world(2000, drifted=True, seed=seed)
    noisy = y.copy()
    flip = rng.random(len(y)) < rng.uniform(0.0, 0.6)  # challengers of any quality
    noisy[flip] = 1 - noisy[flip]
    policy = make_policy(reg, gate=Gate(metric="accuracy", min_improvement=0.0))
    outcome = policy.run(mon, lambda: (X, noisy))
    hold_X, hold_y = X[1500:], noisy[1500:]
    champion = skm.accuracy_score(hold_y, v1.load().predict(hold_X))
    if outcome.status == "promoted":
        assert outcome.version is not None
        challenger = skm.accuracy_score(hold_y, outcome.version.load().predict(hold_X))
        assert challenger >= champion
    else:
        assert outcome.status == "rejected" and reg.aliases("churn") == {"production": 1}


def test_a_refused_challenger_retries_after_more_labels_not_after_the_cooldown(
    setup: Any, clock: FakeClock
) -> None:
    reg, v1, mon = setup
    serve(mon, v1, *world(1500, drifted=True, seed=2), start=0)
    policy = make_policy(reg, gate=Gate(metric="f1", min_improvement=0.9), retry_labels=500)
    assert policy.run(mon, recent()).status == "rejected"
    assert reg.history("churn")[-1].details["attempt"] == 1
    assert "0 of 500 new labels" in policy.evaluate(mon).reasons[0]
    serve(mon, v1, *world(500, drifted=True, seed=3), start=10_000)
    assert policy.run(mon, recent()).status == "rejected"  # no clock moved: not the cooldown
    serve(mon, v1, *world(500, drifted=True, seed=4), start=20_000)
    assert "500 of 1,000 new labels" in policy.evaluate(mon).reasons[0]  # it doubles
    clock.advance(timedelta(hours=6).total_seconds())  # never longer than the cooldown
    assert policy.evaluate(mon).retrain
    policy.gate = Gate(metric="f1", min_improvement=0.0)
    assert policy.run(mon, recent()).status == "promoted"
    assert policy.evaluate(mon).reasons[0].startswith("in cooldown")  # a promotion: full cooldown
    assert policy.stats() == {"runs": 3, "skipped": 0, "retrains": 3, "promoted": 1, "rejected": 2}


@pytest.mark.parametrize("harmful", [True, False])
def test_the_guard_rolls_back_a_harmful_version_but_not_a_change_of_the_world(
    tmp_path: Path, clock: FakeClock, harmful: bool, caplog: pytest.LogCaptureFixture
) -> None:
    reg = ModelRegistry(tmp_path / "reg", clock=clock)
    X0, y0 = world(2000, drifted=False, seed=1)
    v1 = reg.promote("churn", reg.register("churn", LogisticRegression().fit(X0, y0)))
    mon = Monitor(window=5000, thresholds={}, clock=clock)  # 500-row buckets
    served = serve_stream(mon, v1, clock, [False] * 10)
    policy = make_policy(
        reg, triggers=[], gate=Gate(metric="accuracy", min_improvement=-1.0),
        rollback_min_samples=500, cooldown=timedelta(0),
    )  # fmt: skip
    outcome = policy.run(mon, lambda: world(2000, drifted=True, seed=5), force=True)
    assert outcome.status == "promoted" and outcome.version is not None
    v2 = outcome.version
    rng = np.random.default_rng(0)
    batches = [] if harmful else [True, True]  # the new version serves well for a while
    served = serve_stream(mon, v2, clock, batches, start=served)
    for k in range(3):  # then errors rise: the version was bad, or the world changed again
        clock.advance(60)
        X = rng.normal(size=(500, 4))
        y = (X[:, 2] > 0).astype(int) if not harmful else 1 - v2.load().predict(X)
        serve(mon, v2, X, y, start=500 * (served + k))
    with caplog.at_level("INFO", logger="modeldeploy.retraining"):
        outcome = policy.run(mon)
    if harmful:
        assert outcome.status == "rolled_back" and reg.aliases("churn") == {"production": 1}
    else:
        assert "a change of the data, not of the model; not rolling back" in caplog.text
        change = mon.change()
        assert change.increase and change.previous is not None
        assert change.previous > clock.now() - timedelta(minutes=5)
        assert outcome.status == "skipped" and reg.aliases("churn") == {"production": 2}
