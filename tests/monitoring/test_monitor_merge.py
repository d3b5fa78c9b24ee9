"""Monitor.combine / Monitor.merge: k replicas' monitors merged equal one monitor of the union.

whylogs#979 (merged profiles silently dropped the performance metrics) is the failure these
tests guard against: every field a monitor reports is compared, not a sample of them.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import math
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modeldeploy.exceptions import MergeError
from modeldeploy.monitoring import ChangeDetector
from modeldeploy.monitoring.monitor import Monitor
from modeldeploy.testing import FakeClock

START = dt.datetime(2026, 11, 29, 12, 0, tzinfo=dt.timezone.utc)
REFERENCE = np.random.default_rng(42).normal(size=(500, 2))
VERSIONS = ("m:1", "m:2", "m:3")


def _monitor(task: str, clock: FakeClock, **extra: Any) -> Monitor:
    if task == "classification":
        ref_pred: Any = [0, 1, 2, 1, 0, 2]
    else:
        ref_pred = np.random.default_rng(7).normal(size=200)
    kwargs: dict[str, Any] = {
        "reference": REFERENCE,
        "reference_predictions": ref_pred,
        "window": dt.timedelta(seconds=60),
        "buckets": 4,
        "task": task,
        "thresholds": {"f1": 0.5, "mae": 1.0, "drift": "psi"},
        "label_ttl_s": 150.0,
        "early_label_ttl_s": 40.0,
        "min_samples": 5,
        "min_drift_samples": 20,
        "clock": clock,
    }
    kwargs.update(extra)
    return Monitor(**kwargs)


def _stream(seed: int, n_events: int, k: int, task: str) -> list[tuple[Any, ...]]:
    """Events ``(kind, shard, payload)`` in time order; a label goes to its prediction's shard."""
    rng = np.random.default_rng(seed)
    events: list[tuple[Any, ...]] = []
    shard_of: dict[str, int] = {}
    logged: list[str] = []
    next_id = 0
    for _ in range(n_events):
        r = rng.random()
        if r < 0.5:
            n = int(rng.integers(1, 40))
            ids = [f"r{next_id + i}" for i in range(n)]
            next_id += n
            shard = int(rng.integers(k))
            for i in ids:
                shard_of[i] = shard
            X = rng.normal(loc=rng.choice([0.0, 0.8]), size=(n, 2))
            if task == "classification":
                pred: Any = rng.integers(0, 3, n)
                truth: Any = np.where(rng.random(n) < 0.7, pred, rng.integers(0, 3, n))
            else:
                pred = rng.normal(size=n)
                truth = pred + rng.normal(scale=0.5, size=n)
            with_truth = rng.random() < 0.2
            version = None if rng.random() < 0.2 else str(rng.choice(VERSIONS))
            latency = float(rng.uniform(0.001, 0.3)) if rng.random() < 0.7 else None
            events.append(("pred", shard, (X, pred, ids, truth, with_truth, version, latency)))
            logged.extend(ids)
        elif r < 0.8 and logged:
            m = int(rng.integers(1, 30))
            picks = rng.choice(len(logged), size=min(m, len(logged)), replace=True)
            chosen = [logged[p] for p in picks.tolist()]
            if rng.random() < 0.2:  # labels that come before their prediction
                chosen += [f"r{next_id + i}" for i in range(int(rng.integers(1, 5)))]
            if task == "classification":
                values: Any = rng.integers(0, 3, len(chosen))
            else:
                values = rng.normal(size=len(chosen))
            events.append(("labels", -1, (chosen, values)))
        elif r < 0.87:
            events.append(("error", int(rng.integers(k)), str(rng.choice(VERSIONS))))
        else:
            events.append(("tick", -1, float(rng.choice([1.0, 7.0, 16.0, 45.0, 90.0]))))
        events.append(("tick", -1, 1.0))  # every event at its own time: recency is exact
    # shards of ids labelled before their prediction: the replica that will log it
    for n in range(next_id, next_id + 5):
        shard_of.setdefault(f"r{n}", 0)
    events.append(("shards", -1, shard_of))
    return events


def _replay(events: list[tuple[Any, ...]], k: int, task: str) -> tuple[Monitor, list[Monitor]]:
    clock = FakeClock(START)
    whole = _monitor(task, clock, name="whole")
    parts = [_monitor(task, clock, name=f"worker-{i}") for i in range(k)]
    shard_of: dict[str, int] = events[-1][2]
    for kind, shard, payload in events[:-1]:
        if kind == "pred":
            X, pred, ids, truth, with_truth, version, latency = payload
            for mon in (whole, parts[shard]):
                mon.log_predictions(
                    X,
                    pred,
                    ids=ids,
                    y_true=truth if with_truth else None,
                    version=version,
                    latency_s=latency,
                )
        elif kind == "labels":
            chosen, values = payload
            whole.log_labels(chosen, values)
            for s in range(k):
                sel = [j for j, i in enumerate(chosen) if shard_of.get(i, 0) == s]
                if sel:
                    parts[s].log_labels([chosen[j] for j in sel], values[sel])
        elif kind == "error":
            for mon in (whole, parts[shard]):
                mon.log_error(RuntimeError("boom"), version=payload)
        else:
            clock.advance(payload)
    return whole, parts


def _same(got: Any, want: Any, where: str) -> None:
    """Equal, floats to rounding (sums merged in another order), dicts and lists deeply."""
    if isinstance(want, dict):
        assert isinstance(got, dict), where
        assert set(got) == set(want), f"{where}: keys {set(got) ^ set(want)}"
        for key in want:
            _same(got[key], want[key], f"{where}.{key}")
    elif isinstance(want, (list, tuple)):
        assert len(got) == len(want), where
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            _same(g, w, f"{where}[{i}]")
    elif isinstance(want, float) and not isinstance(got, bool):
        assert isinstance(got, float), where
        if math.isnan(want):
            assert math.isnan(got), where
        else:
            assert got == pytest.approx(want, rel=1e-9, abs=1e-12), where
    else:
        assert got == want, where


def _compare(got: Monitor, want: Monitor) -> None:
    _same(got.metrics(), want.metrics(), "metrics")
    assert got.versions() == want.versions()
    for version in (*VERSIONS, "never-seen"):
        _same(got.metrics(version=version), want.metrics(version=version), f"metrics[{version}]")
    _same(got.label_stats(), want.label_stats(), "label_stats")
    _same(got.drift().to_dict(), want.drift().to_dict(), "drift")
    # the change detector reads per-bucket error counts, which merge by adding
    _same(dataclasses.asdict(got.change()), dataclasses.asdict(want.change()), "change")
    g, w = got.report().to_dict(), want.report().to_dict()
    for key in ("name", "generated_at", "alerts", "history"):  # arrival order: not mergeable
        g.pop(key)
        w.pop(key)
    _same(g, w, "report")


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
@given(
    seed=st.integers(0, 2**31 - 1),
    k=st.integers(1, 5),
    n_events=st.integers(1, 60),
    task=st.sampled_from(["classification", "regression"]),
)
def test_combined_shards_equal_one_monitor_over_the_whole_stream(
    seed: int, k: int, n_events: int, task: str
) -> None:
    events = _stream(seed, n_events, k, task)
    whole, parts = _replay(events, k, task)
    before = [(p.metrics(), p.label_stats()) for p in parts]
    merged = Monitor.combine(parts)
    _compare(merged, whole)
    # the pairwise form gives the same, whatever the grouping
    _compare(functools.reduce(Monitor.merge, parts), whole)
    # inputs untouched
    for p, (m, labels) in zip(parts, before, strict=True):
        _same(p.metrics(), m, "input metrics")
        assert p.label_stats() == labels
    # the merged monitor goes on like the whole: the same labels for waiting ids match there
    late_ids = [f"r{i}" for i in range(0, 400, 3)]
    values = np.arange(len(late_ids)) % 3 if task == "classification" else np.ones(len(late_ids))
    assert merged.log_labels(late_ids, values) == whole.log_labels(late_ids, values)
    _compare(merged, whole)


def test_merge_refuses_count_windows_with_a_reason() -> None:
    a = Monitor(window=1000, reference_predictions=[0, 1], thresholds={})
    b = Monitor(window=1000, reference_predictions=[0, 1], thresholds={})
    with pytest.raises(MergeError, match="count-based window.*timedelta"):
        a.merge(b)


def test_merge_refuses_other_settings_naming_them() -> None:
    clock = FakeClock(START)
    a = _monitor("classification", clock)
    b = _monitor("classification", clock, thresholds={"f1": 0.9})
    with pytest.raises(MergeError, match=r"thresholds=.*same settings"):
        Monitor.combine([a, b])
    c = _monitor("classification", clock, window=dt.timedelta(seconds=120))
    with pytest.raises(MergeError, match="window="):
        Monitor.combine([a, c])


def test_merge_refuses_another_change_detector_and_carries_the_shared_one() -> None:
    clock = FakeClock(START)
    a = _monitor("classification", clock, detector=ChangeDetector(delta=0.01))
    b = _monitor("classification", clock)
    with pytest.raises(MergeError, match="same detector="):
        a.merge(b)
    c = _monitor("classification", clock, detector=ChangeDetector(delta=0.01))
    assert a.merge(c).detector == ChangeDetector(delta=0.01)


def test_merge_refuses_a_baseline_learned_from_each_replicas_predictions() -> None:
    clock = FakeClock(START)
    a = Monitor(window=dt.timedelta(minutes=5), clock=clock, thresholds={})
    b = Monitor(window=dt.timedelta(minutes=5), clock=clock, thresholds={})
    a.log_predictions(None, [0, 1, 1])
    with pytest.raises(MergeError, match="own first predictions.*reference_predictions="):
        a.merge(b)


def test_merge_refuses_another_drift_reference() -> None:
    clock = FakeClock(START)
    a = _monitor("classification", clock)
    b = _monitor("classification", clock, reference=REFERENCE + 1.0)
    with pytest.raises(MergeError, match="same reference"):
        a.merge(b)
    c = _monitor("classification", clock, reference_predictions=[0, 0, 0, 1])
    a.log_predictions(None, [0, 1])
    with pytest.raises(MergeError, match="prediction-drift baselines differ"):
        a.merge(c)


def test_merge_puts_classes_in_one_order_and_keeps_estimates() -> None:
    clock = FakeClock(START)
    fleet: dict[str, Any] = {
        "window": dt.timedelta(minutes=10),
        "classes": ["no", "yes"],
        "reference_predictions": ["no", "yes"],
        "thresholds": {},
        "clock": clock,
    }
    whole, a, b = Monitor(**fleet), Monitor(**fleet), Monitor(**fleet)
    rng = np.random.default_rng(3)
    for mon_part in (a, b, a, b):
        proba = rng.dirichlet([1, 1], size=50)
        pred = np.where(proba[:, 1] > 0.5, "yes", "no")
        truth = np.where(rng.random(50) < 0.8, pred, "maybe")  # a third class, late
        for mon in (whole, mon_part):
            mon.log_predictions(None, pred, y_proba=proba, y_true=truth)
        clock.advance(30)
    _compare(Monitor.combine([b, a]), whole)


@pytest.mark.parametrize("k", [2, 4])
def test_labels_that_reach_another_replica_are_joined_by_the_merge(k: int) -> None:
    """A label posted to a worker that did not serve its prediction waits there as an early
    label; the merged view attaches it, as one monitor over the whole stream does."""
    from sklearn.metrics import accuracy_score, f1_score

    rng = np.random.default_rng(k)
    clock = FakeClock(START)
    wide = {"window": dt.timedelta(minutes=10), "early_label_ttl_s": 600.0}
    whole = _monitor("classification", clock, **wide)
    parts = [_monitor("classification", clock, **wide) for _ in range(k)]
    served: list[tuple[str, int, int]] = []
    for b in range(20):
        n = 25
        ids = [f"q{b}-{i}" for i in range(n)]
        pred = rng.integers(0, 3, n)
        shard = int(rng.integers(k))
        for mon in (whole, parts[shard]):
            mon.log_predictions(None, pred, ids=ids)
        truth = np.where(rng.random(n) < 0.7, pred, rng.integers(0, 3, n))
        served += [(i, int(p), int(t)) for i, p, t in zip(ids, pred, truth, strict=True)]
        clock.advance(2.0)
    order = rng.permutation(len(served))
    for c in range(0, len(order), 40):  # labels in batches, each to a random other worker
        chunk = [served[j] for j in order[c : c + 40]]
        ids, labels = [s[0] for s in chunk], np.array([s[2] for s in chunk])
        whole.log_labels(ids, labels)
        parts[int(rng.integers(k))].log_labels(ids, labels)
        clock.advance(1.0)
    again = [s[0] for s in served[:30]]  # a second label for 30 ids, at yet another worker
    whole.log_labels(again, np.zeros(30, dtype=int))
    parts[-1].log_labels(again, np.zeros(30, dtype=int))
    merged = Monitor.combine(parts)
    preds, truth_all = [s[1] for s in served], [s[2] for s in served]
    got = merged.metrics()
    assert got["n_labelled"] == len(served)
    assert got["accuracy"] == pytest.approx(accuracy_score(truth_all, preds))
    assert got["f1"] == pytest.approx(f1_score(truth_all, preds, average="macro"))
    _same(got, whole.metrics(), "metrics")
    stats, want = merged.label_stats(), whole.label_stats()
    for key in ("labels_matched", "labels_total", "labels_duplicate", "pending", "labels_waiting"):
        assert stats[key] == want[key], key
