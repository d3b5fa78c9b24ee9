"""Windows: bucket keys, per-version rings, label counting and their state, without a Monitor."""

from __future__ import annotations

import numpy as np
import pytest

from modeldeploy.monitoring._windows import Windows


def test_count_window_keys_and_rows_past_the_window() -> None:
    w = Windows(buckets=2, rows=4)
    keys, live_from, last = w.keys(5, None, now=0.0)
    assert keys.tolist() == [0, 0, 1, 1, 2] and live_from == 2 and last == 2
    assert w.advance(5, last, None) and w.seq == 5 and w.current_key(now=0.0) == 2


def test_time_window_keys_never_go_back() -> None:
    w = Windows(buckets=3, seconds=30.0)  # 10 s buckets
    w.advance(1, 5, None)
    keys, _, last = w.keys(3, np.array([40.0, 70.0, 65.0]), now=70.0)
    assert keys.tolist() == [5, 7, 7] and last == 7


def test_a_new_version_past_max_versions_drops_the_least_recently_seen() -> None:
    w = Windows(buckets=2, rows=10, max_versions=2)
    t1, _ = w.version_window("a")
    w.version_window("b")
    w.version_window("a")  # a is now the most recent
    w.version_window("c")
    assert w.tracked() == ["a", "c"]
    assert w.version_window("a")[0] == t1


def test_labels_count_in_their_bucket_and_late_ones_are_told_apart() -> None:
    w = Windows(buckets=2, rows=4)
    w.fit_classes(2, max_classes=10)
    _, _, last = w.keys(4, None, now=0.0)
    w.add_segment(0, None, classify=True, pred=np.array([1, 1]), truth=None, proba=None,
                  drift_from=0, features=None, pred_hist=None)  # fmt: skip
    w.advance(4, last, None)
    matched, late = w.add_labels(
        np.array([0, 0, -5]), np.array([-1, -1, -1]), np.array([1, 0, 1]), np.array([1, 1, 1]),
        current=1, classify=True,
    )  # fmt: skip
    assert (matched, late) == (2, 1)
    assert w.total("conf", 1).tolist() == [[0, 1], [0, 1]]


def test_state_round_trip_keeps_counts_versions_and_errors() -> None:
    w = Windows(buckets=2, rows=4, max_versions=3)
    w.ensure_array("reg", (5,), np.float64)  # before the version's ring, as a monitor does
    _, vring = w.version_window("v:1")
    w.add_segment(0, vring, classify=False, pred=np.array([1.0, 2.0]),
                  truth=np.array([1.0, 1.0]), proba=None, drift_from=0, features=None,
                  pred_hist=None)  # fmt: skip
    w.add_latencies(0, [0.01], vring)
    w.add_error(0, "ValueError", "v:1")
    w.advance(2, 0, "v:1")
    back = Windows.from_state(w.to_state(), Windows(buckets=2, rows=4, max_versions=3))
    assert back.seq == 2 and back.versions == {"v:1": 2} and back.tracked() == ["v:1"]
    assert back.error_types == {"ValueError": 1} and back.errors_total == 1
    assert int(back.total("n_err", 0)) == 1 and int(back.total("latency", 0).sum()) == 1
    assert int(back.ring_of("v:1").total("n_err", 0)) == 1
    assert back.ring_of("v:1").total("reg", 0)[0] == 2  # two labelled rows, in its own ring


def test_state_of_other_geometry_is_refused() -> None:
    state = Windows(buckets=2, rows=4).to_state()
    with pytest.raises(ValueError, match="bucket keys"):
        Windows.from_state(state, Windows(buckets=3, rows=6))
