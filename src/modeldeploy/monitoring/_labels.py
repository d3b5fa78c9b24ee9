"""The label join: predictions waiting for their label, and labels waiting for their prediction.

Labels arrive later than predictions, by id, and sometimes earlier (a deployer hands predictions
to the monitor from a background thread). :class:`PendingLabels` holds both sides, bounded in
number and age, and counts what happened to every id; it knows nothing of windows: a match
gives back the bucket key, the encoded prediction and the version tag remembered with the
prediction, and the monitor counts the label there.
"""

from __future__ import annotations

import itertools
from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np

__all__ = ["LABEL_COUNTERS", "PendingLabels", "label_array"]

LABELLED, EXPIRED, EVICTED = 0, 1, 2
#: The running counts of :attr:`PendingLabels.counts`.
LABEL_COUNTERS = (
    "labels_total",
    "predictions_duplicate_id",
    "predictions_evicted",
    "predictions_expired",
    "labels_matched",
    "labels_early",
    "labels_late",
    "labels_duplicate",
    "labels_unknown",
    "labels_expired",
    "labels_evicted",
    "labels_missing",
)


class PendingLabels:
    """Predictions waiting for their label, and labels waiting for their prediction, by id.

    Each pending id remembers its bucket key, its encoded prediction, when it was logged and
    the source it came from (an integer tag: the monitor's per-version window, ``-1`` for none).
    When more than ``max_pending`` wait, the oldest are evicted; those older than ``ttl_s``
    expire. A bounded memory of recently resolved ids (labelled, expired, evicted) tells a
    duplicate or a too-late label from an id never seen.

    A label whose id was never seen may have overtaken its prediction (a deployer hands
    predictions to the monitor from a background thread). :meth:`hold` keeps such *early*
    labels, at most ``max_pending`` of them for at most ``early_ttl_s`` seconds, and
    :meth:`pop_early` gives them back when the prediction is logged. A repeated early label
    for the same id is remembered as a repeat of the first (the first wins, as for labels that
    come after their prediction). An early label that expires or is pushed out counts as
    ``labels_unknown``, with its repeats.

    Examples
    --------
    >>> p = PendingLabels(max_pending=2, ttl_s=None)
    >>> p.add(["a", "b", "c"], np.array([0, 0, 0]), np.array([1.0, 0.0, 1.0]), np.zeros(3))
    >>> [i for i, _, _, _ in p.take(["a", "c", "c", "zz"])]
    [1]
    >>> p.counts["labels_evicted"], p.counts["labels_duplicate"], p.counts["labels_unknown"]
    (1, 1, 1)
    >>> p.hold(["x", "x", "y"], [1, 0, 0], now=0.0)
    0
    >>> p.pop_early(["x", "q"])
    (['x'], [1], 1)
    >>> p.expire_early(now=1_000.0)
    >>> p.counts["labels_unknown"], len(p.early)
    (2, 0)
    """

    def __init__(self, max_pending: int, ttl_s: float | None, early_ttl_s: float = 60.0) -> None:
        self.max_pending = max_pending
        self.ttl_s = ttl_s
        self.early_ttl_s = early_ttl_s
        self.pending: dict[Any, tuple[int, float, float, int]] = {}
        self.resolved: dict[Any, int] = {}
        # id -> (label, when it arrived, repeated labels for the id since), oldest first
        self.early: dict[Any, tuple[Any, float, int]] = {}
        self.counts: dict[str, int] = dict.fromkeys(LABEL_COUNTERS, 0)

    def __len__(self) -> int:
        return len(self.pending)

    def add(
        self,
        ids: list[Any],
        keys: np.ndarray,
        codes: np.ndarray,
        times: np.ndarray,
        source: int = -1,
    ) -> None:
        """Remember predictions by id (a repeated id replaces the older prediction)."""
        skip = max(0, len(ids) - self.max_pending)
        if skip:  # only the newest max_pending of a huge batch could ever stay
            self.counts["predictions_evicted"] += skip
            self._resolve(ids[skip - min(skip, self.max_pending) : skip], EVICTED)
        pending = self.pending
        dup = 0
        for i, key, code, t in zip(
            ids[skip:],
            keys[skip:].tolist(),
            codes[skip:].tolist(),
            times[skip:].tolist(),
            strict=True,
        ):
            if i in pending:
                dup += 1
                del pending[i]  # re-inserted last, so eviction order stays by age
            pending[i] = (key, code, t, source)
        self.counts["predictions_duplicate_id"] += dup
        overflow = len(pending) - self.max_pending
        if overflow > 0:
            old = list(itertools.islice(pending, overflow))
            for i in old:
                del pending[i]
            self.counts["predictions_evicted"] += overflow
            self._resolve(old, EVICTED)

    def expire(self, now: float) -> None:
        """Forget predictions older than the time-to-live."""
        if self.ttl_s is None or not self.pending:
            return
        cutoff = now - self.ttl_s
        old = []
        for i, (_, _, t, _) in self.pending.items():
            if t >= cutoff:
                break
            old.append(i)
        for i in old:
            del self.pending[i]
        self.counts["predictions_expired"] += len(old)
        self._resolve(old, EXPIRED)

    def take(
        self, ids: list[Any], unseen: list[int] | None = None
    ) -> list[tuple[int, int, float, int]]:
        """Pop the pending predictions of ``ids``: ``(position, key, code, source)`` of matches.

        Positions of ids never seen go to ``unseen`` when it is given (to be held as early
        labels); otherwise they count as ``labels_unknown``.
        """
        found = []
        pending, resolved, counts = self.pending, self.resolved, self.counts
        for pos, i in enumerate(ids):
            hit = pending.pop(i, None)
            if hit is not None:
                found.append((pos, hit[0], hit[1], hit[3]))
                resolved.pop(i, None)
                resolved[i] = LABELLED
                continue
            reason = resolved.get(i)
            if reason == LABELLED:
                counts["labels_duplicate"] += 1
            elif reason == EXPIRED:
                counts["labels_expired"] += 1
            elif reason == EVICTED:
                counts["labels_evicted"] += 1
            elif unseen is not None:
                unseen.append(pos)
            else:
                counts["labels_unknown"] += 1
        self._resolve([], LABELLED)  # trims the memory of resolved ids to its bound
        return found

    def hold(self, ids: list[Any], labels: list[Any], now: float) -> int:
        """Keep labels that came before their prediction; return how many of them were dropped.

        Past ``max_pending`` early labels the oldest are dropped, and counted as
        ``labels_unknown`` (those of earlier calls too; only this call's are returned).
        """
        early, counts = self.early, self.counts
        if self.early_ttl_s <= 0:  # no early buffer: unknown at once
            counts["labels_unknown"] += len(ids)
            return len(ids)
        n_old = len(early)
        for i, label in zip(ids, labels, strict=True):
            held = early.get(i)
            if held is None:
                early[i] = (label, now, 0)  # new ids go last; a repeat keeps its place
            else:
                early[i] = (held[0], held[1], held[2] + 1)
        overflow = len(early) - self.max_pending
        if overflow <= 0:
            return 0
        for i in list(itertools.islice(early, overflow)):
            counts["labels_unknown"] += 1 + early.pop(i)[2]
        return max(0, overflow - n_old)  # the oldest go first: this call's past the older

    def expire_early(self, now: float) -> None:
        """Count early labels that waited longer than ``early_ttl_s`` as ``labels_unknown``."""
        early = self.early
        if not early:
            return
        cutoff = now - self.early_ttl_s
        old = []
        for i, (_, t, _) in early.items():
            if t >= cutoff:
                break
            old.append(i)
        for i in old:
            self.counts["labels_unknown"] += 1 + early.pop(i)[2]

    def pop_early(self, ids: list[Any]) -> tuple[list[Any], list[Any], int]:
        """The early labels of ``ids``, removed: their ids, their labels, and their repeats."""
        early = self.early
        hits: list[Any] = []
        labels: list[Any] = []
        repeats = 0
        if not early:
            return hits, labels, repeats
        for i in ids:
            held = early.pop(i, None)
            if held is not None:
                hits.append(i)
                labels.append(held[0])
                repeats += held[2]
        return hits, labels, repeats

    def mark_labelled(self, ids: list[Any]) -> None:
        """Remember ids whose label came with the prediction (a later label is a duplicate)."""
        self._resolve(ids[-self.max_pending :], LABELLED)

    def absorb(
        self, other: PendingLabels, codes: np.ndarray | None, tags: Mapping[int, int]
    ) -> None:
        """Take in another monitor's waiting ids and counts (see ``Monitor.combine``).

        ``codes[old] = new`` maps the other's class codes (``None``: predictions are numbers,
        kept as they are); ``tags`` maps its version tags (a tag not in it becomes ``-1``: its
        version has no window here). Waiting ids of both are kept in the order they came
        (by time), and the bounds apply as if one monitor had seen both: an id waiting in
        both counts as a duplicate prediction (the later stays).
        """
        theirs = {
            i: (k, c if codes is None or c < 0 else int(codes[int(c)]), t, tags.get(g, -1))
            for i, (k, c, t, g) in other.pending.items()
        }
        merged = sorted(
            itertools.chain(self.pending.items(), theirs.items()), key=lambda e: e[1][2]
        )
        self.pending = {}
        for i, entry in merged:
            if i in self.pending:
                self.counts["predictions_duplicate_id"] += 1
                del self.pending[i]
            self.pending[i] = entry
        for name, n in other.counts.items():
            self.counts[name] = self.counts.get(name, 0) + n
        overflow = len(self.pending) - self.max_pending
        if overflow > 0:
            old = list(itertools.islice(self.pending, overflow))
            for i in old:
                del self.pending[i]
            self.counts["predictions_evicted"] += overflow
            self._resolve(old, EVICTED)
        for i, reason in other.resolved.items():
            self.resolved.pop(i, None)
            self.resolved[i] = reason
        self._resolve([], LABELLED)  # trims the memory of resolved ids to its bound
        early = sorted(
            itertools.chain(self.early.items(), other.early.items()), key=lambda e: e[1][1]
        )
        self.early = {}
        for i, (label, t, repeats) in early:
            held = self.early.get(i)
            self.early[i] = (
                (label, t, repeats) if held is None else (held[0], held[1], held[2] + repeats + 1)
            )
        overflow = len(self.early) - self.max_pending
        for i in list(itertools.islice(self.early, max(overflow, 0))):
            self.counts["labels_unknown"] += 1 + self.early.pop(i)[2]

    def to_state(self) -> dict[str, Any]:
        """The waiting ids and the counts, as JSON-friendly lists (format 2 of ``Monitor.save``).

        Only ids (and early labels) that are strings, numbers, booleans or ``None`` are kept.
        """
        return {
            "pending": [
                [i, k, c, t, g] for i, (k, c, t, g) in self.pending.items() if _jsonable(i)
            ],
            "resolved": [[i, r] for i, r in self.resolved.items() if _jsonable(i)],
            "early": [
                [i, v, t, r] for i, (v, t, r) in self.early.items() if _jsonable(i) and _jsonable(v)
            ],
            "label_counts": dict(self.counts),
        }

    @classmethod
    def from_state(
        cls,
        state: Mapping[str, Any],
        max_pending: int,
        ttl_s: float | None,
        early_ttl_s: float = 60.0,
    ) -> PendingLabels:
        """Rebuild what :meth:`to_state` gave; entries that do not fit raise an exception.

        Files saved before the version tags (``pending`` entries of four) or before early
        labels were kept (no ``early``) load too.
        """
        out = cls(max_pending, ttl_s, early_ttl_s)
        out.pending = {
            _key(e[0]): (int(e[1]), e[2], float(e[3]), int(e[4]) if len(e) > 4 else -1)
            for e in state["pending"]
        }
        out.resolved = {_key(i): int(r) for i, r in state["resolved"]}
        out.early = {_key(i): (v, float(t), int(r)) for i, v, t, r in state.get("early", [])}
        out.counts.update(state["label_counts"])
        return out

    def _resolve(self, ids: list[Any], reason: int) -> None:
        resolved = self.resolved
        for i in ids:
            resolved.pop(i, None)
            resolved[i] = reason
        overflow = len(resolved) - self.max_pending
        if overflow > 0:
            for i in list(itertools.islice(resolved, overflow)):
                del resolved[i]


def label_array(values: list[Any]) -> np.ndarray:
    """Labels kept one by one as a 1-D array (an object array when their types are mixed)."""
    arr = np.asarray(values)
    if arr.ndim != 1 or (arr.dtype.kind in "US" and not all(isinstance(v, str) for v in values)):
        arr = np.empty(len(values), dtype=object)
        arr[:] = values
    return arr


def _key(value: Any) -> Hashable:
    """An id read back from JSON (a tuple id comes back as a list)."""
    return tuple(value) if isinstance(value, list) else value


def _jsonable(value: Any) -> bool:
    return isinstance(value, (str, int, float, bool)) or value is None
