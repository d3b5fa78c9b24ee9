"""The label join: predictions waiting for their label, and labels waiting for their prediction.

Labels arrive later than predictions, by id, and sometimes earlier (a deployer hands predictions
to the monitor from a background thread). `PendingLabels` holds both sides, bounded in
number and age, and counts what happened to every id; it knows nothing of windows: a match
gives back the bucket key, the encoded prediction and the version tag remembered with the
prediction, and the monitor counts the label there.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np

from modeldeploy.exceptions import SchemaError
from modeldeploy.monitoring._coerce import scalar

__all__ = ["LABEL_COUNTERS", "PendingLabels", "id_array", "label_array"]

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
    expire. A bounded memory of the last ``max_pending`` resolutions (labelled, expired,
    evicted; the newest of each id) tells a duplicate or a too-late label from an id never
    seen.

    The join is vectorised: both sides are `_IdTable` s, ids in arrival order with a
    hash index in numpy arrays (integer ids are their own hash, strings are hashed by numpy,
    a mix of types uses Python's ``hash`` and ``==``, as ``dict`` keys do), so a batch of ids
    is added or matched with a few numpy operations rather than one Python step per id.
    Predictions are indexed when labels are looked up, in one step for every batch logged
    since; the memory of resolved ids only when a label misses its prediction, which the
    usual stream (each label once, after its prediction) never asks for.

    A label whose id was never seen may have overtaken its prediction (a deployer hands
    predictions to the monitor from a background thread). `hold` keeps such *early*
    labels, at most ``max_pending`` of them for at most ``early_ttl_s`` seconds, and
    `pop_early` gives them back when the prediction is logged. A repeated early label
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
        # id -> (label, when it arrived, repeated labels for the id since), oldest first
        self.early: dict[Any, tuple[Any, float, int]] = {}
        self.counts: dict[str, int] = dict.fromkeys(LABEL_COUNTERS, 0)
        self._waiting = _IdTable(_PENDING_COLUMNS, lazy=True)
        self._resolved = _IdTable(_RESOLVED_COLUMNS, lazy=True)
        self._resolutions = 0  # ids resolved so far (the seq of the next)

    def __len__(self) -> int:
        """Predictions waiting (ids repeated since the last `settle` count each time)."""
        return self._waiting.n_alive

    # ------------------------------------------------------------------ views (tests, state)

    @property
    def pending(self) -> dict[Any, tuple[int, float, float, int]]:
        """The waiting predictions, oldest first: id -> (key, code, time, tag). A copy."""
        self.settle()
        w = self._waiting
        rows = w.alive_rows()
        c = w.cols
        values = zip(
            c["key"][rows].tolist(),
            c["code"][rows].tolist(),
            c["t"][rows].tolist(),
            c["tag"][rows].tolist(),
            strict=True,
        )
        return dict(zip(w.ids(rows).tolist(), values, strict=True))

    @property
    def resolved(self) -> dict[Any, int]:
        """The remembered resolved ids, oldest first: id -> reason (0 labelled, 1 expired,
        2 evicted; the saved format's). A copy."""
        r = self._resolved
        rows = r.alive_rows()
        out: dict[Any, int] = {}
        for i, reason in zip(
            r.ids(rows).tolist(), (r.cols["reason"][rows] - 1).tolist(), strict=True
        ):
            out.pop(i, None)  # a newer resolution of an id moves it last
            out[i] = reason
        return out

    # ------------------------------------------------------------------ predictions

    def add(
        self,
        ids: Any,
        keys: np.ndarray,
        codes: np.ndarray,
        times: np.ndarray | float,
        source: int = -1,
    ) -> None:
        """Remember predictions by id (a repeated id replaces the older prediction); ``times``
        is one time each or one for all."""
        idv = id_array(ids)
        n = idv.shape[0]
        skip = max(0, n - self.max_pending)
        if not skip:
            self._wait(idv, keys, codes, times, source)
            return
        # only the newest max_pending of a huge batch could ever stay
        self.counts["predictions_evicted"] += skip
        self._remember(idv[skip - min(skip, self.max_pending) : skip], EVICTED)
        t = times[skip:] if isinstance(times, np.ndarray) else times
        self._wait(idv[skip:], keys[skip:], codes[skip:], t, source)

    def _wait(self, ids: np.ndarray, keys: Any, codes: Any, times: Any, tags: Any) -> None:
        """Predictions waiting now; the oldest past ``max_pending`` are evicted."""
        w = self._waiting
        w.append(ids, key=keys, code=codes, t=times, tag=tags)
        if w.n_alive > self.max_pending:
            self.settle()  # a repeated id replaces its older prediction rather than evicting
        overflow = w.n_alive - self.max_pending
        if overflow > 0:
            old = w.oldest(overflow)
            w.kill(old)
            self.counts["predictions_evicted"] += overflow
            self._remember(w.ids(old), EVICTED)

    def expire(self, now: float) -> None:
        """Forget predictions older than the time-to-live."""
        w = self._waiting
        if self.ttl_s is None or not w.n_alive:
            return
        cutoff = now - self.ttl_s
        if w.cols["t"][w.head] >= cutoff:  # times only grow: nothing waited that long
            return
        old = w.older_than("t", cutoff)
        if old.size:
            self.settle()  # a prediction replaced by a newer one of its id does not expire
            old = w.older_than("t", cutoff)
            w.kill(old)
            self.counts["predictions_expired"] += old.size
            self._remember(w.ids(old), EXPIRED)

    def settle(self) -> None:
        """Index the predictions logged since the last search (counting repeated ids).

        Adding predictions only appends them; they are indexed in one go when labels are
        looked up (or counts read), so that many small batches of predictions cost one
        vectorised step. Call before reading `counts` or ``len``.
        """
        self.counts["predictions_duplicate_id"] += self._waiting.index()

    def mark_labelled(self, ids: Any) -> None:
        """Remember ids whose label came with the prediction (a later label is a duplicate)."""
        self._remember(id_array(ids)[-self.max_pending :], LABELLED)

    # ------------------------------------------------------------------ labels

    def take(self, ids: Any, unseen: list[int] | None = None) -> list[tuple[int, int, float, int]]:
        """Pop the pending predictions of ``ids``: ``(position, key, code, source)`` of matches.

        Positions of ids never seen go to ``unseen`` when it is given (to be held as early
        labels); otherwise they count as ``labels_unknown``.
        """
        pos, keys, codes, tags, missing = self.take_arrays(id_array(ids), unseen is not None)
        if unseen is not None:
            unseen.extend(missing.tolist())
        return list(zip(pos.tolist(), keys.tolist(), codes.tolist(), tags.tolist(), strict=True))

    def take_arrays(
        self, ids: np.ndarray, hold_unseen: bool = True
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """`take` over an id array (see `id_array`), as arrays.

        Returns the positions of the matched labels with their predictions' keys, codes and
        tags, and the positions of ids never seen (counted as ``labels_unknown`` unless
        ``hold_unseen``).
        """
        self.settle()
        w, counts = self._waiting, self.counts
        rows = w.find(ids)
        every = bool(rows.size) and rows.min() >= 0  # the usual batch: every id waits
        pos = np.arange(rows.size) if every else np.flatnonzero(rows >= 0)
        r = rows if every else rows[pos]
        if pos.size:
            w.alive[r] = False  # (killed below): fewer rows die than were found on a repeat
            if w.n_alive - int(np.count_nonzero(w.alive[w.head : w.n])) < r.size:
                first = w.first_of(r, pos)
                if first is not None:  # an id labelled twice here: the first label wins
                    counts["labels_duplicate"] += int(pos.size - np.count_nonzero(first))
                    pos, r = pos[first], r[first]
        missing = np.zeros(0, dtype=np.int64) if every else np.flatnonzero(rows < 0)
        if missing.size:  # looked up before this call's matches are remembered (and trimmed)
            reasons = self._resolved.reasons(ids[missing])
            counts["labels_duplicate"] += int(np.count_nonzero(reasons == LABELLED))
            counts["labels_expired"] += int(np.count_nonzero(reasons == EXPIRED))
            counts["labels_evicted"] += int(np.count_nonzero(reasons == EVICTED))
            missing = missing[reasons == ABSENT]
            if not hold_unseen:
                counts["labels_unknown"] += missing.size
        c = w.cols
        out = (pos, c["key"][r], c["code"][r], c["tag"][r], missing)
        w.kill(r, indexed=True, cleared=True)
        self._remember(ids if pos.size == ids.size else ids[pos], LABELLED)
        return out

    def _remember(self, ids: np.ndarray, reason: int | np.ndarray) -> None:
        """Remember resolved ids (with a reason, or one each): of the last ``max_pending``
        resolutions, the newest of each id is kept."""
        n = ids.shape[0]
        if not n:
            return
        r, done = self._resolved, self._resolutions
        r.append(ids, reason=reason, seq=np.arange(done, done + n))
        self._resolutions = done + n
        r.kill_before("seq", self._resolutions - self.max_pending)

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

    # ------------------------------------------------------------------ merging and state

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
        self.settle()
        other.settle()
        for name, n in other.counts.items():
            self.counts[name] = self.counts.get(name, 0) + n
        mine, theirs = self._waiting, other._waiting
        a, b = mine.alive_rows(), theirs.alive_rows()
        their_codes = theirs.cols["code"][b].copy()
        if codes is not None and codes.size:
            known = their_codes >= 0
            their_codes[known] = codes[their_codes[known].astype(np.int64)]
        their_tags = theirs.cols["tag"][b].copy()
        if their_tags.size:
            lut = np.asarray([tags.get(g, -1) for g in range(-1, int(their_tags.max()) + 1)])
            their_tags = lut[their_tags + 1]
        t = np.concatenate([mine.cols["t"][a], theirs.cols["t"][b]])
        order = np.argsort(t, kind="stable")
        ids = _concat_ids(mine.ids(a), theirs.ids(b))[order]
        keys = np.concatenate([mine.cols["key"][a], theirs.cols["key"][b]])[order]
        values = np.concatenate([mine.cols["code"][a], their_codes])[order]
        all_tags = np.concatenate([mine.cols["tag"][a], their_tags])[order]
        remembered = [
            (s.ids(s.alive_rows()), s.cols["reason"][s.alive_rows()])
            for s in (self._resolved, other._resolved)
        ]
        self._waiting = _IdTable(_PENDING_COLUMNS, lazy=True)
        self._resolved = _IdTable(_RESOLVED_COLUMNS, lazy=True)
        self._resolutions = 0  # ids resolved so far (the seq of the next)
        for ids_r, reasons in remembered:
            self._remember(ids_r, reasons)
        self._wait(ids, keys, values, t[order], all_tags)
        self.settle()
        early = sorted(
            itertools.chain(self.early.items(), other.early.items()), key=lambda e: e[1][1]
        )
        self.early = {}
        for i, (label, when, repeats) in early:
            held = self.early.get(i)
            self.early[i] = (
                (label, when, repeats)
                if held is None
                else (held[0], held[1], held[2] + repeats + 1)
            )
        overflow = len(self.early) - self.max_pending
        for i in list(itertools.islice(self.early, max(overflow, 0))):
            self.counts["labels_unknown"] += 1 + self.early.pop(i)[2]

    def to_state(self) -> dict[str, Any]:
        """The waiting ids and the counts, as JSON-friendly lists (format 2 of ``Monitor.save``).

        Only ids (and early labels) that are strings, numbers, booleans or ``None`` are kept.
        """
        self.settle()
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
        """Rebuild what `to_state` gave; entries that do not fit raise an exception.

        Files saved before the version tags (``pending`` entries of four) or before early
        labels were kept (no ``early``) load too.
        """
        out = cls(max_pending, ttl_s, early_ttl_s)
        resolved = state["resolved"]
        reasons = np.asarray([int(r) for _, r in resolved], dtype=np.int8)
        if reasons.size and (reasons.min() < 0 or reasons.max() > 2):
            raise ValueError(f"unknown resolutions in {sorted(set(reasons.tolist()))}")
        out._remember(id_array([_key(i) for i, _ in resolved]), reasons + 1)
        entries = state["pending"]
        if entries:
            out._wait(
                id_array([_key(e[0]) for e in entries]),
                np.asarray([int(e[1]) for e in entries], dtype=np.int64),
                np.asarray([float(e[2]) for e in entries], dtype=np.float64),
                np.asarray([float(e[3]) for e in entries], dtype=np.float64),
                np.asarray([int(e[4]) if len(e) > 4 else -1 for e in entries], dtype=np.int64),
            )
        out.settle()  # the saved count already holds what settling counts now
        out.early = {_key(i): (v, float(t), int(r)) for i, v, t, r in state.get("early", [])}
        out.counts.update(state["label_counts"])
        return out


#: Resolutions remembered (each ``code - 1`` in the saved format); ``ABSENT``: none.
ABSENT, LABELLED, EXPIRED, EVICTED = 0, 1, 2, 3
_PENDING_COLUMNS = {"key": np.int64, "code": np.float64, "t": np.float64, "tag": np.int64}
_RESOLVED_COLUMNS = {"reason": np.int8, "seq": np.int64}
_EMPTY, _TOMBSTONE = -1, -2
_INT64 = np.dtype(np.int64)
_MULT = np.uint64(0x9E3779B97F4A7C15)
_U64 = (1 << 64) - 1
#: Rows (live ones and dead ones not compacted away yet) per live row at most.
_ROOM = 2
#: Rows left to index after a vectorised round that are indexed one by one instead.
_ONE_BY_ONE = 32  # Fibonacci hashing: spreads near ids over the table
#: The index is rebuilt (at most half that full) once 1 / _LOAD of its slots are taken: a
#: sparse index keeps probe sequences short, so that nearly every id is found at once.
_LOAD = 8


class _IdTable:
    """Ids in the order they came (one row each, with columns), and an id -> row hash index.

    Rows are appended; the index (open addressing, linear probing, in a numpy array mostly
    empty) maps each id to its newest live row: indexing a row kills the older row of its
    id. A ``lazy`` table indexes its rows only when it is searched, in one vectorised step
    however many batches came since. Killed rows leave tombstones in the index (reused by
    later ids), and are compacted away when they make up half of the rows. Ids are int64
    (their own hash) while they are all integers, fixed-width strings (hashed by numpy) while
    they are all strings, and Python objects (hashed with ``hash``, compared with ``==``, as
    dict keys are) from the first mix on.
    """

    def __init__(self, columns: Mapping[str, Any], *, lazy: bool) -> None:
        self.lazy = lazy
        self.n = 0  # rows used
        self.n_alive = 0
        self.head = 0  # no live row before this one
        self.indexed = 0  # rows before this one are in the index
        self.mode = "int"  # how ids are kept: "int", "str" or "object" (see _keys)
        cap = 1024
        self.h = np.zeros(cap, dtype=np.int64)
        self.obj: np.ndarray | None = None
        self.alive = np.zeros(cap, dtype=bool)
        self.slot = np.full(cap, -1, dtype=np.int64)
        self.cols = {name: np.zeros(cap, dtype=dtype) for name, dtype in columns.items()}
        self.bits = 10
        self.table = np.full(1 << self.bits, _EMPTY, dtype=np.int64)
        self.used = 0  # index slots not empty (tombstones included)

    # ------------------------------------------------------------------ reading

    def alive_rows(self) -> np.ndarray:
        return self.head + np.flatnonzero(self.alive[self.head : self.n])

    def ids(self, rows: np.ndarray) -> np.ndarray:
        """The ids of rows, as `id_array` gives them."""
        if self.obj is not None:
            return np.asarray(self.obj[rows])
        return np.asarray(self.h[rows])

    def find(self, ids: np.ndarray) -> np.ndarray:
        """The live rows of ids (``-1``: none)."""
        if self.lazy and self.indexed < self.n:
            self.index()
        h, obj = self._keys(ids)
        return self._find(h, obj)

    def reasons(self, ids: np.ndarray) -> np.ndarray:
        """The ``reason`` column of the live rows of ids (``ABSENT`` for none)."""
        rows = self.find(ids)
        return np.where(rows >= 0, self.cols["reason"][np.maximum(rows, 0)], ABSENT)

    def first_of(self, rows: np.ndarray, pos: np.ndarray) -> np.ndarray | None:
        """When a row repeats in ``rows`` (at positions ``pos``), which are first; else None."""
        mark = np.empty(self.n, dtype=np.int64)  # not zeroed: only the rows given are read
        mark[rows[::-1]] = pos[::-1]  # the first position of each row is written last
        first = mark[rows] == pos
        return None if first.all() else first

    def oldest(self, k: int) -> np.ndarray:
        """The ``k`` oldest live rows."""
        found: list[np.ndarray] = []
        lo, step = self.head, max(2 * k, 1024)
        while k > 0 and lo < self.n:
            hi = min(self.n, lo + step)
            rows = (lo + np.flatnonzero(self.alive[lo:hi]))[:k]
            found.append(rows)
            k -= rows.size
            lo, step = hi, 2 * step
        return np.concatenate(found) if found else np.zeros(0, dtype=np.int64)

    def older_than(self, column: str, cutoff: float) -> np.ndarray:
        """Live rows whose ``column`` (non-decreasing in row order, as times are) < cutoff."""
        end = self.head + int(np.searchsorted(self.cols[column][self.head : self.n], cutoff))
        return self.head + np.flatnonzero(self.alive[self.head : end])

    # ------------------------------------------------------------------ writing

    def append(self, ids: np.ndarray, **values: Any) -> None:
        """Rows for ids, with their column values (arrays, or one value for all)."""
        n = ids.shape[0]
        if not n:
            return
        h, obj = self._keys(ids)
        self._room(n)
        lo, hi = self.n, self.n + n
        self.h[lo:hi] = h
        if self.obj is not None:
            self.obj[lo:hi] = obj
        self.alive[lo:hi] = True
        self.slot[lo:hi] = -1
        cols = self.cols
        for name, value in values.items():
            cols[name][lo:hi] = value
        self.n = hi
        self.n_alive += n

    def index(self) -> int:
        """Index the rows appended since; return how many older live rows they replaced."""
        if self.indexed >= self.n:
            return 0
        before = self.n_alive
        if self.used + self.n - self.indexed > self.table.size // _LOAD:
            self._rebuild()
        else:
            fresh = self.indexed + np.flatnonzero(self.alive[self.indexed : self.n])
            self._put(fresh)
        self.indexed = self.n
        return before - self.n_alive

    def kill_before(self, column: str, cutoff: float) -> None:
        """`kill` of the rows `older_than` gives, a run of rows from the head."""
        head = self.head
        end = head + int(np.searchsorted(self.cols[column][head : self.n], cutoff))
        if end <= head:
            return
        alive = self.alive[head:end]
        self.n_alive -= int(np.count_nonzero(alive))
        alive[:] = False
        if self.indexed > head:  # some of them are in the index
            slots = self.slot[head : min(end, self.indexed)]
            self._free(slots[slots >= 0])
            slots[:] = -1
        self.head = end
        if end < self.n and not self.alive[end]:
            ahead = int(np.argmax(self.alive[end : self.n]))
            self.head = end + ahead if self.alive[end + ahead] else self.n

    def kill(self, rows: np.ndarray, *, indexed: bool = False, cleared: bool = False) -> None:
        """Rows that are no longer live (resolved, forgotten), each once; ``indexed``: all of
        them are in the index (found by `find`); ``cleared``: their ``alive`` flags are
        cleared already."""
        if not rows.size:
            return
        if not cleared:
            self.alive[rows] = False
        self.n_alive -= rows.size
        slots = self.slot[rows]
        self._free(slots if indexed else slots[slots >= 0])
        self.slot[rows] = -1
        head = self.head
        if head < self.n and not self.alive[head]:
            ahead = int(np.argmax(self.alive[head : self.n]))  # stops at the first live row
            self.head = head + ahead if self.alive[head + ahead] else self.n

    def _free(self, slots: np.ndarray) -> None:
        """Take rows out of the index: their slots become tombstones (a search goes on past
        them), or empty where the next slot is empty (no search needs to go on there)."""
        table = self.table
        # read before writing: a slot freed now is not empty yet, so a run is never cut
        ends = table[(slots + 1) & (table.size - 1)] == _EMPTY
        table[slots] = np.where(ends, _EMPTY, _TOMBSTONE)
        self.used -= int(np.count_nonzero(ends))

    # ------------------------------------------------------------------ hashing

    def _keys(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """The hashes of ids and what to compare them by (``None`` for ints: their own hash).

        The table keeps ids as int64 while they are all integers, as fixed-width strings
        (hashed by numpy) while they are all strings, and as Python objects (hashed with
        ``hash``, compared with ``==``, as dict keys are) from the first mix on.
        """
        kind = ids.dtype.kind
        if self.mode == "int" and kind != "i":
            if kind == "U" and not self.n:
                self.mode = "str"
                self.obj = np.zeros(self.h.shape[0], dtype=ids.dtype)
            else:
                self._to_objects()
        elif self.mode == "str" and kind != "U":
            self._to_objects()
        if self.mode == "int":
            return ids, None
        if self.mode == "str":
            assert self.obj is not None
            if ids.dtype.itemsize > self.obj.dtype.itemsize:
                self.obj = self.obj.astype(ids.dtype)  # wider strings than so far
            return _string_hashes(ids), ids
        obj = ids if kind == "O" else ids.astype(object)
        try:
            return np.fromiter(map(hash, obj), dtype=np.int64, count=obj.shape[0]), obj
        except TypeError as exc:
            raise SchemaError(
                f"Request ids must be hashable (strings, numbers, tuples); {exc}. Pass one "
                "hashable id per row."
            ) from None

    def _to_objects(self) -> None:
        """Keep ids as Python objects from now on (ids of another type than so far came)."""
        obj = np.empty(self.h.shape[0], dtype=object)
        obj[: self.n] = (self.h if self.obj is None else self.obj)[: self.n].astype(object)
        self.mode, self.obj = "object", obj
        self.h[: self.n] = np.fromiter(map(hash, obj[: self.n]), dtype=np.int64, count=self.n)
        self._rebuild()

    def _slots(self, h: np.ndarray) -> np.ndarray:
        spread: np.ndarray = (h.view(np.uint64) * _MULT) >> np.uint64(64 - self.bits)
        return spread.view(np.int64)

    def _find(self, h: np.ndarray, obj: np.ndarray | None) -> np.ndarray:
        """Rows holding these ids (``-1``: none)."""
        table, hashes, objects = self.table, self.h, self.obj
        slots = self._slots(h)
        r: np.ndarray = table[slots]
        # r < 0 (empty, tombstone) reads some other row's hash: "r >= 0" rules those out
        hit = hashes[r] == h
        hit &= r >= 0
        if obj is not None and objects is not None:
            hit &= objects[r] == obj
        on = r != _EMPTY
        r[~hit] = -1
        on &= r < 0  # a collision or a tombstone: look further
        if not on.any():
            return r
        todo = np.flatnonzero(on)
        mask = (1 << self.bits) - 1
        probe = slots[todo]
        while todo.size:
            probe = (probe + 1) & mask
            found = table[probe]
            hit = (hashes[found] == h[todo]) & (found >= 0)
            if obj is not None and objects is not None:
                hit &= objects[found] == obj[todo]
            r[todo[hit]] = found[hit]
            on = ~hit & (found != _EMPTY)
            todo, probe = todo[on], probe[on]
        return r

    def _probe(
        self, h: np.ndarray, obj: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Rows holding these ids (``-1``: none) and their slots: for an id not held, the slot
        to put it in (the first tombstone on its way, else the empty slot that ended it);
        where that slot is an empty one, and the positions of the ids held."""
        table, hashes, objects = self.table, self.h, self.obj
        m = h.shape[0]
        slots = self._slots(h)
        rows = np.full(m, -1, dtype=np.int64)
        empty = np.ones(m, dtype=bool)
        # the ids whose search goes on (an id or a tombstone in the way), by position
        todo = np.flatnonzero(table[slots] != _EMPTY)
        if not todo.size:  # the usual insert: every id goes to its own empty slot
            return rows, slots, empty, todo
        empty[todo] = False
        at = slots[todo]
        ends = at.copy()  # where each one's search is
        free = np.full(todo.size, -1, dtype=np.int64)  # the first tombstone on its way
        active = np.arange(todo.size)
        mask = (1 << self.bits) - 1
        first = True
        while active.size:
            if not first:
                at = (at + 1) & mask
                ends[active] = at
            first = False
            found = table[at]
            mine = todo[active]
            hit = (hashes[found] == h[mine]) & (found >= 0)
            if obj is not None and objects is not None:
                hit &= objects[found] == obj[mine]
            rows[mine[hit]] = found[hit]
            tomb = (found == _TOMBSTONE) & (free[active] < 0)
            free[active[tomb]] = at[tomb]
            go_on = ~hit & (found != _EMPTY)
            active, at = active[go_on], at[go_on]
        absent = rows[todo] < 0
        reuse = absent & (free >= 0)
        slots[todo] = np.where(reuse, free, ends)
        empty[todo] = absent & ~reuse
        return rows, slots, empty, todo[~absent]

    def _put(self, rows: np.ndarray) -> None:
        """Index rows (in row order): each replaces the older live row of its id."""
        while True:
            obj = None if self.obj is None else self.obj[rows]
            old, slots, empty, held = self._probe(self.h[rows], obj)
            if held.size:
                newer = held[old[held] > rows[held]]  # a later row of the id is in already
                if newer.size:  # (after a first round)
                    self.alive[rows[newer]] = False
                    self.n_alive -= newer.size
                    keep = np.ones(rows.size, dtype=bool)
                    keep[newer] = False
                    rows, old, slots, empty = rows[keep], old[keep], slots[keep], empty[keep]
                    held = np.flatnonzero(old >= 0)
            table = self.table
            table[slots] = rows
            self.slot[rows] = slots
            lost = np.flatnonzero(table[slots] != rows)
            # Rows of this batch that wanted one free slot: the winner is placed, the others
            # look again (a later row of an id then replaces an earlier one).
            taken = int(np.count_nonzero(empty)) - int(np.count_nonzero(empty[lost]))
            if held.size:
                replaced = np.zeros(rows.size, dtype=bool)
                replaced[held] = True
                replaced[lost] = False
                self._replaced(old[replaced], taken)
            else:
                self.used += taken
            if not lost.size:  # the usual case: no two rows of this batch wanted one slot
                return
            rows = rows[lost]
            self.slot[rows] = -1
            if rows.size <= _ONE_BY_ONE:
                for row in rows.tolist():
                    self._put_one(row)
                return

    def _put_one(self, row: int) -> None:
        """`_put` of one row, probing one slot at a time."""
        table, hashes, objects = self.table, self.h, self.obj
        want = int(hashes[row])
        mask = (1 << self.bits) - 1
        p = (((want & _U64) * int(_MULT)) & _U64) >> (64 - self.bits)
        free = -1
        while True:
            r = int(table[p])
            if r == _EMPTY:
                break
            if r == _TOMBSTONE:
                free = p if free < 0 else free
            elif int(hashes[r]) == want and (objects is None or objects[r] == objects[row]):
                if r > row:  # a newer row of the id is in already: this one is replaced
                    self.alive[row] = False
                    self.n_alive -= 1
                    return
                table[p] = row
                self.slot[row] = p
                self._replaced(np.asarray([r]), 0)
                return
            p = (p + 1) & mask
        if free < 0:
            self.used += 1
            free = p
        table[free] = row
        self.slot[row] = free

    def _replaced(self, old: np.ndarray, taken: int) -> None:
        """Rows went in ``taken`` empty slots of the index and replaced ``old`` rows of their
        ids (in theirs)."""
        self.used += taken
        if old.size:
            self.alive[old] = False
            self.n_alive -= old.size
            self.slot[old] = -1

    # ------------------------------------------------------------------ upkeep

    def _room(self, n: int) -> None:
        """Make room for ``n`` more rows: compact dead rows away, else grow the columns."""
        cap = self.h.shape[0]
        if self.n + n <= cap:
            return
        if self.n_alive + n <= cap // 2:  # half the rows are dead: compact them away
            self._compact()
            # room for _ROOM x the live rows after compacting, so that compacting (which
            # costs about as much as the live rows) comes at most every as many new rows
            if self.n + n <= cap and cap >= _ROOM * (self.n_alive + n):
                return
        size = max(2 * cap, _ROOM * (self.n_alive + n))
        for name in ("h", "alive", "slot", "obj"):
            old = getattr(self, name)
            if old is not None:
                setattr(self, name, _grown(old, size, self.n))
        self.cols = {k: _grown(v, size, self.n) for k, v in self.cols.items()}

    def _compact(self) -> None:
        """Drop dead rows, renumbering the live ones (in order) in the columns and the index."""
        head, n = self.head, self.n
        keep: slice | np.ndarray
        if self.n_alive == n - head:  # the dead rows are the oldest (a FIFO): shift the rest
            keep = slice(head, n)
            k = n - head
            self.indexed = max(0, self.indexed - head)
        else:
            keep = head + np.flatnonzero(self.alive[head:n])
            k = keep.size
            self.indexed = int(np.searchsorted(keep, self.indexed))
        # the index holds live rows only, each in its slot: renumber them there
        if self.indexed:
            slots = self.slot[keep]
            placed = slots >= 0
            self.table[slots[placed]] = np.flatnonzero(placed)
        for name in ("h", "alive", "slot", "obj"):
            col = getattr(self, name)
            if col is not None:
                col[:k] = col[keep]
        for col in self.cols.values():
            col[:k] = col[keep]
        self.alive[k:n] = False
        self.n, self.head = k, 0

    def _rebuild(self, upto: int | None = None) -> None:
        """A fresh index (no tombstones) at most an eighth full, of the live rows before
        ``upto`` (default: every row, for a table that is not lazy or is searched now)."""
        end = self.n if upto is None else upto
        rows = self.head + np.flatnonzero(self.alive[self.head : end])
        self.bits = max(10, int(2 * _LOAD * (self.n_alive + 1)).bit_length())
        self.table = np.full(1 << self.bits, _EMPTY, dtype=np.int64)
        self.slot[: self.n] = -1
        self.used = 0
        self._put(rows)
        if upto is None:
            self.indexed = self.n


def _grown(old: np.ndarray, size: int, used: int) -> np.ndarray:
    new = np.empty(size, dtype=old.dtype) if old.dtype == object else np.zeros(size, old.dtype)
    new[:used] = old[:used]
    return new


def id_array(ids: Any) -> np.ndarray:
    """Ids as one 1-D array: ``int64`` when they are all integers (or booleans), fixed-width
    strings when they are all strings, else an object array of Python scalars (floats,
    tuples, a mix, ...), compared as ``dict`` keys are.

    Examples
    --------
    >>> id_array(np.arange(3)).dtype, id_array(["a", "bc"]).dtype, id_array([1, "a"]).dtype
    (dtype('int64'), dtype('<U2'), dtype('O'))
    """
    if type(ids) is np.ndarray and ids.dtype == _INT64 and ids.ndim == 1:
        return ids  # the usual ids, as they are
    if isinstance(ids, np.ndarray):
        flat = ids.ravel()
        if flat.dtype.kind in "ib" or (
            flat.dtype.kind == "u" and (not flat.size or flat.max() <= np.iinfo(np.int64).max)
        ):
            return flat.astype(np.int64, copy=False)
        if flat.dtype.kind == "U":
            return flat
        values: list[Any] = flat.tolist()
    elif isinstance(ids, (str, bytes, int, float, np.generic)) or ids is None:
        values = [scalar(ids)]
    elif hasattr(ids, "tolist"):  # pandas Series / Index
        values = list(ids.tolist())
    else:
        values = [scalar(i) for i in ids]
    if values and all(type(v) is int for v in values):
        with contextlib.suppress(OverflowError):
            return np.asarray(values, dtype=np.int64)
    if values and all(type(v) is str for v in values):
        return np.asarray(values, dtype=str)
    return np.fromiter(values, dtype=object, count=len(values))  # tuples stay tuples


def _string_hashes(ids: np.ndarray) -> np.ndarray:
    """64-bit hashes of fixed-width strings, whatever the width they are held in."""
    n, width = ids.shape[0], ids.dtype.itemsize // 4
    if not width:
        return np.zeros(n, dtype=np.int64)
    codes = np.ascontiguousarray(ids).view(np.uint32).reshape(n, width).astype(np.uint64)
    # trailing code 0 (the padding of a shorter string) adds nothing: widths do not matter
    mixed: np.ndarray = codes @ _powers(width)
    return mixed.view(np.int64)


_POWERS = np.ones(1, dtype=np.uint64)


def _powers(width: int) -> np.ndarray:
    """``P**j`` (mod 2**64) for the first ``width`` positions of a string."""
    global _POWERS
    if _POWERS.size < width:
        size = max(width, 2 * _POWERS.size)
        _POWERS = np.asarray([pow(1_000_003, j, 1 << 64) for j in range(size)], dtype=np.uint64)
    return _POWERS[:width]


def _concat_ids(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if a.dtype.kind != b.dtype.kind or a.dtype == object:
        return np.concatenate([a.astype(object), b.astype(object)])
    return np.concatenate([a, b])


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
