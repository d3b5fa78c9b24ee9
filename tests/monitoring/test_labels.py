"""PendingLabels: the label join, alone, and its state."""

from __future__ import annotations

import numpy as np

from modeldeploy.monitoring._labels import PendingLabels, label_array


def test_take_matches_pending_ids_and_counts_the_others() -> None:
    p = PendingLabels(max_pending=10, ttl_s=None)
    p.add(["a", "b"], np.array([0, 1]), np.array([1.0, 0.0]), np.zeros(2), source=3)
    assert p.take(["b", "b", "zz"]) == [(0, 1, 0.0, 3)]
    assert p.counts["labels_duplicate"] == 1 and p.counts["labels_unknown"] == 1


def test_predictions_expire_after_the_ttl() -> None:
    p = PendingLabels(max_pending=10, ttl_s=5.0)
    p.add(["a"], np.array([0]), np.array([1.0]), np.array([0.0]))
    p.expire(now=10.0)
    assert len(p) == 0 and p.take(["a"]) == [] and p.counts["labels_expired"] == 1


def test_state_round_trip_keeps_pending_resolved_early_and_counts() -> None:
    p = PendingLabels(max_pending=10, ttl_s=None, early_ttl_s=60.0)
    p.add(["a", 7], np.array([0, 0]), np.array([1.0, 0.0]), np.zeros(2), source=2)
    p.take(["a"])
    p.hold(["x"], [1], now=0.0)
    back = PendingLabels.from_state(p.to_state(), 10, None, 60.0)
    assert back.pending == p.pending and back.resolved == p.resolved
    assert back.early == p.early and back.counts == p.counts


def test_ids_json_cannot_keep_are_left_out_of_the_state() -> None:
    p = PendingLabels(max_pending=10, ttl_s=None)
    p.add([b"raw", "ok"], np.array([0, 0]), np.array([1.0, 1.0]), np.zeros(2))
    assert [e[0] for e in p.to_state()["pending"]] == ["ok"]


def test_label_array_of_mixed_types_is_an_object_array() -> None:
    assert label_array([1, "a"]).dtype == object
    assert label_array([1, 2]).tolist() == [1, 2]
