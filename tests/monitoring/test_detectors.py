"""Change points in the error stream: ErrorHistory (mergeable counts) and ChangeDetector."""

from __future__ import annotations

import math
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from modeldeploy import Monitor
from modeldeploy.exceptions import InvalidParameterError
from modeldeploy.monitoring import ChangeDetector, ChangePoint, ErrorHistory
from modeldeploy.testing import FakeClock


def bernoulli_history(rates: list[float], *, rows: int = 500, seed: int = 0) -> ErrorHistory:
    """One bucket a minute, ``rows`` labelled predictions each, errors at the given rates."""
    rng = np.random.default_rng(seed)
    history = ErrorHistory()
    for key, rate in enumerate(rates):
        history.open(key, 60.0 * key)
        history.add(np.full(rows, key), (rng.random(rows) < rate).astype(float))
    return history


def test_an_abrupt_rise_is_dated_to_the_bucket_it_began_in() -> None:
    change = ChangeDetector().detect(bernoulli_history([0.1] * 30 + [0.2] * 4))
    assert change.detected and change.increase
    assert change.start == datetime.fromtimestamp(30 * 60.0, tz=timezone.utc)
    assert change.n_after == 2000 and change.n_before == 15_000
    assert change.after is not None and abs(change.after - 0.2) < 0.03
    assert change.before is not None and abs(change.before - 0.1) < 0.01


def test_a_fall_is_a_change_that_is_not_a_rise() -> None:
    change = ChangeDetector().detect(bernoulli_history([0.3] * 20 + [0.1] * 6))
    assert change.detected and not change.increase
    assert change.start is not None and change.start.minute == 20


def test_the_latest_of_several_changes_is_reported() -> None:
    change = ChangeDetector().detect(bernoulli_history([0.1] * 15 + [0.3] * 10 + [0.1] * 8))
    assert change.detected and not change.increase and change.start.minute == 25  # type: ignore[union-attr]
    assert change.n_after == 8 * 500


@pytest.mark.parametrize("rate", [0.05, 0.2, 0.5])
def test_a_stationary_error_stream_raises_no_alarm_at_any_read(rate: float) -> None:
    # Read after every bucket, as a policy would, over 64 buckets of 500 rows, for 20 seeds.
    detector = ChangeDetector()
    for seed in range(20):
        rng = np.random.default_rng(seed)
        history = ErrorHistory()
        for key in range(64):
            history.open(key, 60.0 * key)
            history.add(np.full(500, key), (rng.random(500) < rate).astype(float))
            assert not detector.detect(history).detected, (seed, key)


def test_the_cut_test_is_stricter_than_a_two_proportion_z_test() -> None:
    # ADWIN's bound at the one cut, compared with scipy's z statistic of the same counts: a
    # change it reports is significant far beyond the usual 5% level.
    history = bernoulli_history([0.1] * 10 + [0.16] * 2, seed=3)
    change = ChangeDetector().detect(history)
    _, n, s, _ = history.arrays()
    n0, n1 = n[:10].sum(), n[10:].sum()
    p0, p1 = s[:10].sum() / n0, s[10:].sum() / n1
    pooled = s.sum() / n.sum()
    z = (p1 - p0) / math.sqrt(pooled * (1 - pooled) * (1 / n0 + 1 / n1))
    p_value = 2 * stats.norm.sf(abs(z))
    if change.detected:
        assert p_value < 1e-4
    else:
        assert change.n_after == n.sum()  # the whole history is one regime
    strong = ChangeDetector().detect(bernoulli_history([0.1] * 10 + [0.3] * 2, seed=3))
    assert strong.detected and strong.bound is not None and strong.bound < 0.2


def test_regression_losses_are_detected_too() -> None:
    rng = np.random.default_rng(1)
    history = ErrorHistory()
    for key in range(24):
        history.open(key, 60.0 * key)
        history.add(np.full(400, key), np.abs(rng.normal(0, 1.0 if key < 16 else 1.6, 400)))
    change = ChangeDetector().detect(history)
    assert change.detected and change.increase and change.start.minute == 16  # type: ignore[union-attr]


def test_merging_two_replicas_gives_the_counts_and_the_change_of_one_monitor() -> None:
    rng = np.random.default_rng(4)
    whole, a, b = ErrorHistory(), ErrorHistory(), ErrorHistory()
    for key in range(30):
        losses = (rng.random(600) < (0.1 if key < 22 else 0.25)).astype(float)
        keys = np.full(600, key)
        half = rng.random(600) < 0.5
        whole.open(key, 60.0 * key)
        a.open(key, 60.0 * key + 1)
        b.open(key, 60.0 * key)  # the earliest serving time wins
        whole.add(keys, losses)
        a.add(keys[half], losses[half])
        b.add(keys[~half], losses[~half])
    merged = a.merge(b)
    for got, want in zip(merged.arrays(), whole.arrays(), strict=True):
        np.testing.assert_allclose(got, want)
    assert ChangeDetector().detect(merged) == ChangeDetector().detect(whole)
    assert ChangeDetector().detect(merged).start.minute == 22  # type: ignore[union-attr]


def test_the_history_is_bounded_and_survives_a_round_trip() -> None:
    history = bernoulli_history([0.1] * 100, rows=10)
    assert len(history) == 64
    served, n, _, _ = history.arrays()
    assert served[0] == 36 * 60.0 and n.sum() == 640
    history.add(np.array([0, 1]), np.array([1.0, 1.0]))  # long gone: ignored
    assert history.totals()[0] == 640
    back = ErrorHistory.from_state(history.to_state())
    for got, want in zip(back.arrays(), history.arrays(), strict=True):
        np.testing.assert_array_equal(got, want)


def test_labels_of_a_bucket_whose_predictions_were_not_seen_are_dated_by_the_next() -> None:
    history = bernoulli_history([0.1] * 20, seed=5)
    history.add(np.full(500, 20), np.ones(500))  # bucket 20 never opened here
    history.open(21, 21 * 60.0)
    history.add(np.full(500, 21), np.ones(500))
    change = ChangeDetector().detect(history)
    assert change.detected and change.start.minute == 21  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("kwargs", "found"),
    [({"delta": 0.0}, "delta"), ({"delta": 1.5}, "delta"), ({"min_samples": 0}, "min_samples"),
     ({"max_buckets": 1}, "max_buckets")],
)  # fmt: skip
def test_bad_settings_are_refused_by_name(kwargs: dict[str, float], found: str) -> None:
    with pytest.raises(InvalidParameterError, match=found):
        ChangeDetector(**kwargs)  # type: ignore[arg-type]


def test_the_monitor_feeds_its_detector_from_delayed_and_early_labels() -> None:
    clock = FakeClock()
    mon = Monitor(window=1000, buckets=2, thresholds={}, clock=clock)  # 500-row buckets
    rng = np.random.default_rng(6)
    for batch in range(24):
        clock.advance(60)
        y = rng.integers(0, 2, 500)
        wrong = rng.random(500) < (0.1 if batch < 16 else 0.3)
        ids = [f"b{batch}-{i}" for i in range(500)]
        if batch % 2:  # labels before their predictions (a deployer's queue was slow)
            mon.log_labels(ids, y)
            mon.log_predictions(None, np.where(wrong, 1 - y, y), ids=ids)
        else:
            mon.log_predictions(None, np.where(wrong, 1 - y, y), ids=ids)
            mon.log_labels(ids, y)
    change = mon.change()
    assert isinstance(change, ChangePoint) and change.detected and change.increase
    assert change.start == clock.now().fromtimestamp(clock.now().timestamp() - 7 * 60, timezone.utc)
    assert change.n_after == 8 * 500


def test_an_unlabelled_monitor_reports_no_change() -> None:
    mon = Monitor(window=100, thresholds={})
    mon.log_predictions(None, [1, 0, 1])
    change = mon.change()
    assert not change and change.n_after == 0 and change.after is None
    assert "none over 0" in repr(change)


def test_a_saved_monitor_keeps_its_error_history_and_detector(tmp_path: Path) -> None:
    clock = FakeClock()
    mon = Monitor(window=1000, buckets=2, thresholds={}, clock=clock,
                  detector=ChangeDetector(delta=0.01, max_buckets=32))  # fmt: skip
    rng = np.random.default_rng(8)
    for batch in range(20):
        clock.advance(60)
        y = rng.integers(0, 2, 500)
        wrong = rng.random(500) < (0.1 if batch < 14 else 0.3)
        mon.log_predictions(None, np.where(wrong, 1 - y, y), y_true=y)
    back = Monitor.load(mon.save(tmp_path / "mon.npz"), clock=clock)
    assert back.detector == ChangeDetector(delta=0.01, max_buckets=32)
    assert back.change() == mon.change() and back.change().detected
