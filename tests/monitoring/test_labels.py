"""PendingLabels: the label join, alone, and its state."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from modeldeploy.monitoring._labels import PendingLabels, id_array, label_array


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


class _Reference:
    """The label join's documented semantics, one id at a time with dicts."""

    def __init__(self, max_pending: int, ttl_s: float | None) -> None:
        self.max_pending, self.ttl_s = max_pending, ttl_s
        self.pending: dict[object, tuple[int, float, float, int]] = {}
        self.resolutions: list[tuple[object, int]] = []
        self.counts: dict[str, int] = {}

    def count(self, name: str, n: int = 1) -> None:
        self.counts[name] = self.counts.get(name, 0) + n

    def resolve(self, ids: list[object], reason: int) -> None:
        self.resolutions += [(i, reason) for i in ids]

    def resolved(self) -> dict[object, int]:
        out: dict[object, int] = {}
        for i, reason in self.resolutions[-self.max_pending :]:
            out.pop(i, None)
            out[i] = reason
        return out

    def add(self, ids: list[object], t: float, tag: int) -> None:
        skip = max(0, len(ids) - self.max_pending)
        if skip:
            self.count("predictions_evicted", skip)
            self.resolve(ids[skip - min(skip, self.max_pending) : skip], 2)
        for pos, i in enumerate(ids[skip:], start=skip):
            if i in self.pending:
                self.count("predictions_duplicate_id")
                del self.pending[i]
            self.pending[i] = (pos, float(pos % 3), t, tag)
        while len(self.pending) > self.max_pending:
            oldest = next(iter(self.pending))
            del self.pending[oldest]
            self.count("predictions_evicted")
            self.resolve([oldest], 2)

    def expire(self, now: float) -> None:
        if self.ttl_s is None:
            return
        for i, (_, _, t, _) in list(self.pending.items()):
            if t >= now - self.ttl_s:
                break
            del self.pending[i]
            self.count("predictions_expired")
            self.resolve([i], 1)

    def take(self, ids: list[object]) -> tuple[list[tuple[int, int, float, int]], list[int]]:
        known = self.resolved()  # labels of one call are judged against the state before it
        found, unseen, matched = [], [], []
        for pos, i in enumerate(ids):
            if i in self.pending:
                key, code, _, tag = self.pending.pop(i)
                found.append((pos, key, code, tag))
                matched.append(i)
            elif i in matched:
                self.count("labels_duplicate")
            elif i in known:
                name = ("labels_duplicate", "labels_expired", "labels_evicted")[known[i]]
                self.count(name)
            else:
                unseen.append(pos)
        self.resolve(matched, 0)
        return found, unseen


_IDS = st.one_of(
    st.integers(-3, 25),
    st.sampled_from(["a", "b", "c", "d", "e", "f", "g"]),
    st.sampled_from([(1, 2), 2.5, -1, True]),
)
_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.lists(_IDS, max_size=12), st.integers(-1, 3)),
        st.tuples(st.just("take"), st.lists(_IDS, max_size=12), st.just(0)),
        st.tuples(st.just("mark"), st.lists(_IDS, max_size=6), st.just(0)),
        st.tuples(st.just("tick"), st.just([]), st.integers(0, 40)),
    ),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(ops=_OPS, max_pending=st.integers(1, 12), ttl=st.sampled_from([None, 30.0]))
def test_the_vectorised_join_follows_the_reference_semantics(
    ops: list[tuple[str, list[object], int]], max_pending: int, ttl: float | None
) -> None:
    p = PendingLabels(max_pending=max_pending, ttl_s=ttl)
    ref = _Reference(max_pending, ttl)
    now = 0.0
    for kind, ids, arg in ops:
        if kind == "tick":
            now += arg
            p.expire(now)
            ref.expire(now)
        elif kind == "add":
            n = len(ids)
            codes = np.arange(n) % 3
            p.add(ids, np.arange(n), codes.astype(np.float64), np.full(n, now), source=arg)
            ref.add(ids, now, arg)
        elif kind == "mark":
            p.mark_labelled(id_array(ids))
            ref.resolve(ids[-max_pending:], 0)
        else:
            unseen: list[int] = []
            got = p.take(ids, unseen)
            want, want_unseen = ref.take(ids)
            assert got == want and unseen == want_unseen
        p.settle()
        assert {k: v for k, v in p.counts.items() if v} == ref.counts
        assert p.pending == ref.pending and len(p) == len(ref.pending)
        assert p.resolved == ref.resolved()


def test_int_and_string_ids_are_vectorised_and_mix() -> None:
    p = PendingLabels(max_pending=100, ttl_s=None)
    p.add(np.arange(5), np.zeros(5, np.int64), np.ones(5), np.zeros(5))
    assert id_array(np.arange(3)).dtype == np.int64
    p.add(["x", "y"], np.zeros(2, np.int64), np.ones(2), np.zeros(2))  # now objects
    unseen: list[int] = []
    got = p.take([4, "y", 1.0, "nope"], unseen)
    assert [g[0] for g in got] == [0, 1, 2] and unseen == [3]  # 1.0 == 1, as dict keys
