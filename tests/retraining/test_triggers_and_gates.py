from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np
import pytest
from sklearn import metrics as skm
from sklearn.linear_model import LinearRegression, LogisticRegression

from modeldeploy.exceptions import InvalidParameterError
from modeldeploy.monitoring import ChangePoint
from modeldeploy.retraining import (
    Gate,
    TriggerContext,
    all_of,
    any_of,
    change_detected,
    drift_detected,
    every,
    metric_above,
    metric_below,
    new_labels,
    score,
)

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=timezone.utc)


@dataclass
class FakeDrift:
    drifted: bool


@dataclass
class FakeDriftResult:
    features: dict[str, FakeDrift]
    n_current: int = 1000
    method: str = "psi"

    def __iter__(self) -> Any:
        return iter(self.features)

    def __getitem__(self, name: str) -> FakeDrift:
        return self.features[name]


@dataclass
class FakeMonitor:
    values: dict[str, float] = field(default_factory=dict)
    drifts: FakeDriftResult = field(default_factory=lambda: FakeDriftResult({}))
    labels: int = 0
    reads: int = 0

    def metrics(self) -> dict[str, float]:
        self.reads += 1
        return dict(self.values)

    def drift(self) -> FakeDriftResult:
        return self.drifts

    def label_stats(self) -> dict[str, int]:
        return {"labels_matched": self.labels}


def ctx(monitor: FakeMonitor, last: datetime | None = None, labels: int = 0) -> TriggerContext:
    return TriggerContext(monitor, NOW, last, labels)


def test_metric_below_fires_with_the_numbers() -> None:
    result = metric_below("f1", 0.8, min_samples=100)(
        ctx(FakeMonitor({"f1": 0.74, "n_labelled": 2340}))
    )
    assert result.fired
    assert result.reason == "f1 0.74 < 0.8 over 2,340 labelled rows"
    assert result.values["value"] == 0.74


def test_metric_below_waits_for_enough_samples() -> None:
    result = metric_below("f1", 0.8, min_samples=2000)(
        ctx(FakeMonitor({"f1": 0.1, "n_labelled": 50}))
    )
    assert not result.fired
    assert "50 labelled rows in the window, 2000 needed" in result.reason


def test_metric_above_for_errors() -> None:
    m = FakeMonitor({"mae": 3.0, "n_labelled": 1000})
    assert metric_above("mae", 2.5)(ctx(m)).fired
    assert not metric_above("mae", 3.5)(ctx(m)).fired


def test_drift_share() -> None:
    drifts = FakeDriftResult({f"x{i}": FakeDrift(i < 3) for i in range(10)})
    m = FakeMonitor(drifts=drifts)
    fired = drift_detected(share=0.3)(ctx(m))
    assert fired.fired and fired.values["drifted"] == ["x0", "x1", "x2"]
    assert not drift_detected(share=0.31)(ctx(m)).fired
    assert drift_detected(share=1.0, features=["x0", "x1"])(ctx(m)).fired
    few = FakeMonitor(drifts=FakeDriftResult(drifts.features, n_current=10))
    assert "not judged" in drift_detected(min_samples=100)(ctx(few)).reason


def test_schedule_and_new_labels() -> None:
    m = FakeMonitor(labels=60_000)
    assert every(days=7)(ctx(m)).fired  # never retrained
    assert not every(days=7)(ctx(m, last=NOW - timedelta(days=6))).fired
    assert every(days=7)(ctx(m, last=NOW - timedelta(days=7))).fired
    assert new_labels(50_000)(ctx(m, labels=5_000)).fired
    assert not new_labels(50_000)(ctx(m, labels=20_000)).fired
    with pytest.raises(InvalidParameterError):
        every()


def test_any_and_all_compose_and_report_each() -> None:
    m = FakeMonitor({"f1": 0.9, "n_labelled": 5000}, labels=10)
    low, old = metric_below("f1", 0.8), every(hours=1)
    assert any_of(low, old)(ctx(m)).fired
    both = all_of(low, old)(ctx(m))
    assert not both.fired
    assert "metric_below('f1', 0.8)" in both.reason and "every" in both.reason


def test_metrics_are_read_once_per_evaluation() -> None:
    m = FakeMonitor({"f1": 0.5, "accuracy": 0.5, "n_labelled": 5000})
    c = ctx(m)
    metric_below("f1", 0.8)(c)
    metric_below("accuracy", 0.8)(c)
    assert m.reads == 1


def test_score_matches_sklearn_metrics() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 3))
    y = (X[:, 0] + rng.normal(scale=0.5, size=400) > 0).astype(int)
    model = LogisticRegression().fit(X, y)
    pred = model.predict(X)
    assert score(model, X, y) == {
        "accuracy": skm.accuracy_score(y, pred),
        "precision": skm.precision_score(y, pred),
        "recall": skm.recall_score(y, pred),
        "f1": skm.f1_score(y, pred),
    }
    yr = X @ np.array([1.0, 2.0, 3.0]) + rng.normal(size=400)
    reg = LinearRegression().fit(X, yr)
    got = score(reg, X, yr, task="regression")
    assert got["r2"] == pytest.approx(skm.r2_score(yr, reg.predict(X)))
    assert got["rmse"] == pytest.approx(np.sqrt(skm.mean_squared_error(yr, reg.predict(X))))


def test_gate_needs_improvement_and_respects_guards() -> None:
    gate = Gate(metric="f1", min_improvement=0.01, guard={"recall": -0.02})
    assert gate.judge({"f1": 0.80, "recall": 0.7}, {"f1": 0.815, "recall": 0.69}).passed
    tie = gate.judge({"f1": 0.80, "recall": 0.7}, {"f1": 0.805, "recall": 0.7})
    assert not tie.passed and "needed +0.01" in tie.reasons[0]
    guarded = gate.judge({"f1": 0.80, "recall": 0.7}, {"f1": 0.9, "recall": 0.6})
    assert not guarded.passed and guarded.reasons[-1] == "recall fell by 0.1 (allowed: 0.02)"


def test_gate_knows_lower_is_better_for_errors() -> None:
    gate = Gate(metric="rmse", min_improvement=0.1)
    assert gate.judge({"rmse": 2.0}, {"rmse": 1.8}).passed
    assert not gate.judge({"rmse": 2.0}, {"rmse": 1.95}).passed
    assert gate.judge({"rmse": 2.0}, {"rmse": 1.8}).improvement == pytest.approx(0.2)


def test_gate_rejects_bad_configuration() -> None:
    with pytest.raises(InvalidParameterError, match="guard"):
        Gate(guard={"recall": 0.1})
    with pytest.raises(InvalidParameterError, match="not among the champion's scores"):
        Gate(metric="auc").judge({"f1": 1.0}, {"f1": 1.0})


@pytest.mark.parametrize("missing", [None, float("nan")])
def test_a_metric_not_judged_yet_none_or_nan_never_fires(missing: float | None) -> None:
    m = FakeMonitor({"f1": missing, "n_labelled": None})  # type: ignore[dict-item]
    for trigger in (metric_below("f1", 0.8, min_samples=0), metric_above("f1", 0.1, min_samples=0)):
        result = trigger(ctx(m))
        assert not result.fired and "not judged" in result.reason


@dataclass
class ChangeMonitor(FakeMonitor):
    """A monitor view that also dates changes, as modeldeploy.Monitor does."""

    point: ChangePoint = field(default_factory=lambda: ChangePoint(False))

    def change(self) -> ChangePoint:
        return self.point


def rise(start: datetime, n_after: int = 1000) -> ChangePoint:
    return ChangePoint(True, start, True, 0.1, 0.2, 20_000, n_after, 0.05)


def test_change_detected_fires_on_a_rise_and_says_since_when() -> None:
    start = NOW - timedelta(minutes=30)
    result = change_detected()(ctx(ChangeMonitor(point=rise(start))))
    assert result.fired and result.values["kind"] == "change"
    assert result.values["since"] == start.isoformat() and result.values["labels_since"] == 1000
    assert "errors rose 0.1 -> 0.2" in result.reason


def test_change_detected_ignores_falls_old_rises_and_too_few_rows() -> None:
    start = NOW - timedelta(minutes=30)
    fall = ChangePoint(True, start, False, 0.3, 0.1, 5000, 1000, 0.05)
    assert "errors fell" in change_detected()(ctx(ChangeMonitor(point=fall))).reason
    retrained = change_detected()(ctx(ChangeMonitor(point=rise(start)), last=start + timedelta(1)))
    assert not retrained.fired and "retrained for already" in retrained.reason
    young = change_detected(min_samples=2000)(ctx(ChangeMonitor(point=rise(start))))
    assert not young.fired and "2,000 needed" in young.reason
    assert not change_detected()(ctx(ChangeMonitor())).fired
    plain = change_detected()(ctx(FakeMonitor()))
    assert not plain.fired and "no change()" in plain.reason


def test_change_detected_refreshes_as_the_new_concept_accumulates() -> None:
    start = NOW - timedelta(hours=1)
    trigger = change_detected(refresh=2.0)

    def at(labels_now: int) -> Any:
        monitor = ChangeMonitor(labels=labels_now)  # no change in view: our promotion is past
        return trigger(
            TriggerContext(monitor, NOW, NOW - timedelta(minutes=5), 11_000, start, 10_000)
        )

    assert not at(11_999).fired  # 1,999 rows since the change; the last retrain had 1,000
    refresh = at(12_000)
    assert refresh.fired and refresh.values["kind"] == "refresh"
    assert refresh.values["since"] == start.isoformat() and refresh.values["labels_since"] == 2000
    assert not change_detected(refresh=None)(
        TriggerContext(ChangeMonitor(labels=50_000), NOW, NOW, 11_000, start, 10_000)
    ).fired


def test_change_detected_refuses_bad_settings() -> None:
    with pytest.raises(InvalidParameterError, match="refresh"):
        change_detected(refresh=1.0)
    with pytest.raises(InvalidParameterError, match="min_samples"):
        change_detected(min_samples=0)
