"""The windows a Monitor keeps: rings of per-bucket counts, over every version and per version.

Everything here holds counts, never rows. `Windows` owns the bucket geometry (rows or
seconds per bucket), the all-versions ring (quality, latency, error and drift counts per
bucket), one smaller ring per recently seen model version (quality, latency and errors only),
and the running totals (rows, rows per version, errors). The drift counts (binned features and
predictions) live in the same buckets as the quality counts, so they slide with them; what they
are compared against is `DriftReference`'s.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import numpy as np

from modeldeploy.monitoring.estimation import expected_confusion
from modeldeploy.monitoring.metrics import (
    LATENCY_EDGES,
    BucketRing,
    merge_regression,
    regression_stats,
)

__all__ = ["Windows"]

logger = logging.getLogger("modeldeploy.monitoring")

#: The arrays every ring has from the start: (trailing shape, dtype).
_BASE_ARRAYS: dict[str, tuple[tuple[int, ...], Any]] = {
    "n_pred": ((), np.int64),
    "n_err": ((), np.int64),
    "n_proba": ((), np.int64),
    "n_nan_pred": ((), np.int64),
    "latency": ((LATENCY_EDGES.size + 1,), np.int64),
}
#: Arrays a ring gains as the monitor learns what it watches (classes, a task, a reference),
#: with their number of dimensions.
_LEARNED_NDIM = {"conf": 3, "expected": 3, "pred": 2, "reg": 2, "features": 3, "pred_hist": 2}
#: Arrays added to the saved format since files were first saved; older files start them at 0.
_ADDED_SINCE = frozenset({"n_nan_pred"})
#: Quality arrays a version's ring copies from the all-versions ring.
_QUALITY = ("conf", "expected", "reg")
#: Versions whose row counts are kept for reports.
_MAX_COUNTED_VERSIONS = 100
#: Error types counted by name.
_MAX_ERROR_TYPES = 50


class Windows:
    """Per-bucket counts of one monitor, over every version and per version.

    Parameters
    ----------
    buckets
        Buckets in a window; it slides one bucket at a time.
    rows
        Rows in a count-based window (``seconds`` is then ``None``).
    seconds
        Length of a time-based window.
    max_versions
        Versions with a window of their own; a new one drops the least recently seen.
    name
        The monitor's name, for logs.

    Examples
    --------
    >>> w = Windows(buckets=2, rows=4)
    >>> keys, live_from, last = w.keys(5, None, now=0.0)
    >>> keys.tolist(), live_from, last  # row i goes to bucket i // 2; bucket 0 left the window
    ([0, 0, 1, 1, 2], 2, 2)
    >>> w.description()
    '4 rows in 2 buckets'
    """

    def __init__(
        self,
        *,
        buckets: int,
        rows: int | None = None,
        seconds: float | None = None,
        max_versions: int = 8,
        name: str | None = None,
    ) -> None:
        self.buckets = buckets
        self.max_versions = max_versions
        self.name = name
        self.window_rows = rows
        if rows is not None:
            self.bucket_size = rows // buckets
            self.bucket_s = 0.0
        elif seconds is not None:
            self.bucket_size = 0
            self.bucket_s = seconds / buckets
        else:
            raise TypeError("Windows needs rows= or seconds=")
        self.ring = _empty_ring(buckets)
        self.seq = 0  # rows logged
        self.last_key = -1
        self.versions: dict[str, int] = {}  # rows logged per version
        self.errors_total = 0
        self.error_types: dict[str, int] = {}
        # Per-version windows: version -> tag (least recently seen first), tag -> its ring. A
        # pending prediction remembers its version's tag, so a dropped version's late labels
        # cannot land in a newer window of the same name.
        self._tags: OrderedDict[str, int] = OrderedDict()
        self.seen_at: dict[str, float] = {}  # when each tracked version last logged (epoch s)
        self._rings: dict[int, BucketRing] = {}
        self._next_tag = 0

    # ------------------------------------------------------------------ geometry

    def description(self) -> str:
        """The window in words: ``"5000 rows in 10 buckets"``."""
        if self.window_rows is not None:
            return f"{self.window_rows} rows in {self.buckets} buckets"
        return f"{self.bucket_s * self.buckets:g} s in {self.buckets} buckets"

    @property
    def check_every(self) -> int:
        """Rows between two threshold checks when the window does not slide."""
        return self.bucket_size or 1_000

    def current_key(self, now: float) -> int:
        """The key of the newest bucket at time ``now`` (``-1`` before any row)."""
        if self.bucket_size:
            return (self.seq - 1) // self.bucket_size if self.seq else -1
        return max(int(now // self.bucket_s), self.last_key)

    def keys(self, n: int, times: np.ndarray | None, now: float) -> tuple[np.ndarray, int, int]:
        """Bucket keys of the next ``n`` rows, the first row still in the window, the last key.

        ``times`` gives each row's time for a time-based window (``None``: all at ``now``).
        Keys never go back, even when the times do.
        """
        if self.bucket_size:
            first = self.seq // self.bucket_size
            if n and (self.seq + n - 1) // self.bucket_size == first:  # one bucket, in the window
                return np.full(n, first, dtype=np.int64), 0, first
            keys = (self.seq + np.arange(n, dtype=np.int64)) // self.bucket_size
        elif times is None:  # every row now: one bucket
            keys = np.full(n, max(int(now // self.bucket_s), self.last_key), dtype=np.int64)
        else:
            t = times if times is not None else np.full(n, now)
            raw = np.floor(t / self.bucket_s).astype(np.int64)
            keys = np.maximum.accumulate(np.maximum(raw, self.last_key))
        last = int(keys[-1]) if n else max(self.last_key, 0)
        live_from = 0
        if n and int(keys[0]) <= last - self.buckets:
            live_from = int(np.searchsorted(keys, last - self.buckets, side="right"))
        return keys, live_from, last

    def advance(self, n: int, last: int, version: str | None) -> bool:
        """Count ``n`` rows logged up to bucket ``last``; True when the window slid."""
        rolled = last != self.last_key
        self.seq += n
        self.last_key = last
        if version is not None:
            self.count_version(version, n)
        return rolled

    # ------------------------------------------------------------------ arrays

    def ensure_array(self, name: str, tail: tuple[int, ...], dtype: Any) -> None:
        """Give the all-versions ring an array it does not have yet."""
        if name not in self.ring.arrays:
            self.ring.add_array(name, tail, dtype)

    def fit_classes(self, k: int, max_classes: int) -> int:
        """Grow the class arrays to hold ``k`` classes; return their capacity."""
        ring = self.ring
        if "conf" not in ring.arrays:
            cap = max(2, k)
            ring.add_array("conf", (cap, cap), np.int64)
            ring.add_array("expected", (cap, cap), np.float64)
            ring.add_array("pred", (cap,), np.int64)
        cap = int(ring.arrays["pred"].shape[1])
        if k > cap:
            cap = min(max(2 * cap, k), max_classes)
            ring.resize("conf", (cap, cap))
            ring.resize("expected", (cap, cap))
            ring.resize("pred", (cap,))
        return cap

    def total(self, name: str, current: int) -> np.ndarray:
        """The sum of one array of the all-versions ring over the window ending at ``current``."""
        return self.ring.total(name, current)

    # ------------------------------------------------------------------ versions

    def version_window(self, version: str) -> tuple[int, BucketRing]:
        """The tag and ring of a version that logs now; a new one drops the least recently seen."""
        tag = self._tags.get(version)
        if tag is None:
            if len(self._tags) >= self.max_versions:
                dropped, old = self._tags.popitem(last=False)
                del self._rings[old]
                self.seen_at.pop(dropped, None)
                logger.info(
                    "%sstopped tracking version %r (max_versions=%d)",
                    f"{self.name}: " if self.name else "",
                    dropped,
                    self.max_versions,
                )
            tag = self._next_tag
            self._next_tag += 1
            self._tags[version] = tag
            self._rings[tag] = self._new_ring()
        else:
            self._tags.move_to_end(version)
        ring = self._rings[tag]
        self._sync(ring)
        return tag, ring

    def ring_of(self, version: str | None) -> BucketRing:
        """The ring to read a version's metrics from (an empty one for a version not tracked)."""
        if version is None:
            return self.ring
        tag = self._tags.get(version)
        ring = self._new_ring() if tag is None else self._rings[tag]
        self._sync(ring)
        return ring

    def tracked(self) -> list[str]:
        """The versions with a ring of their own, least recently seen first."""
        return list(self._tags)

    def count_version(self, version: str, n: int) -> None:
        """Add to the rows counted for ``version`` (the first 100 versions are counted)."""
        if version in self.versions or len(self.versions) < _MAX_COUNTED_VERSIONS:
            self.versions[version] = self.versions.get(version, 0) + n

    # ------------------------------------------------------------------ counting

    def add_segment(
        self,
        key: int,
        vring: BucketRing | None,
        *,
        classify: bool,
        pred: np.ndarray,
        truth: np.ndarray | None,
        proba: np.ndarray | None,
        drift_from: int,
        features: np.ndarray | None,
        pred_hist: np.ndarray | None,
    ) -> None:
        """Count rows of one bucket: their predictions, labels and probabilities, drift counts.

        ``pred`` and ``truth`` are class codes (``-1``: missing) or numbers. Quality counts go
        to the all-versions ring and to the version's ring; drift counts (``features``, the
        class predictions from row ``drift_from`` on, ``pred_hist``) to the former only.
        ``proba`` is given when the expected confusion can be counted.
        """
        ring = self.ring
        s = ring.slot(key)
        if s is None:  # pragma: no cover - keys only move forward
            return
        targets = [(ring.arrays, s)]
        vs = None if vring is None else vring.slot(key)
        if vring is not None and vs is not None:
            targets.append((vring.arrays, vs))
        arrays = ring.arrays
        n = pred.shape[0]
        for arrs, t in targets:
            arrs["n_pred"][t] += n
        if features is not None:
            arrays["features"][s] += features
        if classify:
            k = arrays["pred"].shape[1]
            codes = pred.astype(np.int64, copy=False)
            t_codes = None if truth is None else truth.astype(np.int64, copy=False)
            if n and (codes.min() < 0 or (t_codes is not None and t_codes.min() < 0)):
                self._add_masked(targets, s, codes, t_codes, proba, drift_from)
                return
            if n > drift_from:
                arrays["pred"][s] += np.bincount(codes[drift_from:], minlength=k)
            if t_codes is not None:
                cm = np.bincount(t_codes * k + codes, minlength=k * k).reshape(k, k)
                for arrs, t in targets:
                    arrs["conf"][t] += cm
            if proba is not None and proba.shape[1] <= k:
                expected = expected_confusion(codes, proba, k)
                for arrs, t in targets:
                    arrs["expected"][t] += expected
                    arrs["n_proba"][t] += n
        else:
            finite = np.isfinite(pred)
            n_bad = n - int(np.count_nonzero(finite))
            if n_bad:
                for arrs, t in targets:
                    arrs["n_nan_pred"][t] += n_bad
            if truth is not None:
                ok = finite & np.isfinite(truth)
                acc = (
                    regression_stats(truth, pred)
                    if ok.all()
                    else regression_stats(truth[ok], pred[ok])
                )
                for arrs, t in targets:
                    arrs["reg"][t] = merge_regression(arrs["reg"][t], acc)
            if pred_hist is not None:
                arrays["pred_hist"][s] += pred_hist

    def _add_masked(
        self,
        targets: list[tuple[dict[str, np.ndarray], int]],
        s: int,
        codes: np.ndarray,
        t_codes: np.ndarray | None,
        proba: np.ndarray | None,
        drift_from: int,
    ) -> None:
        """`add_segment` of class codes where some are ``-1``: a missing prediction
        (no answer: counted in ``n_nan_pred``, never scored) or a missing label (not scored)."""
        arrays = self.ring.arrays
        k = arrays["pred"].shape[1]
        valid = codes >= 0
        n_bad = codes.shape[0] - int(np.count_nonzero(valid))
        if n_bad:
            for arrs, t in targets:
                arrs["n_nan_pred"][t] += n_bad
        if codes.shape[0] > drift_from:
            tail = codes[drift_from:]
            arrays["pred"][s] += np.bincount(tail[tail >= 0], minlength=k)
        if t_codes is not None:
            both = valid & (t_codes >= 0)
            cm = np.bincount((t_codes * k + codes)[both], minlength=k * k).reshape(k, k)
            for arrs, t in targets:
                arrs["conf"][t] += cm
        if proba is not None and proba.shape[1] <= k:
            expected = expected_confusion(codes[valid], proba[valid], k)
            for arrs, t in targets:
                arrs["expected"][t] += expected
                arrs["n_proba"][t] += codes.shape[0] - n_bad

    def add_latencies(self, key: int, latencies: list[float], vring: BucketRing | None) -> None:
        """Count latencies (seconds) in bucket ``key``, and in the version's ring."""
        idx = np.searchsorted(LATENCY_EDGES, np.asarray(latencies, dtype=np.float64), "right")
        for ring in (self.ring,) if vring is None else (self.ring, vring):
            slot = ring.slot(key)
            if slot is not None:
                np.add.at(ring.arrays["latency"][slot], idx, 1)

    def add_error(self, key: int, kind: str, version: str | None) -> None:
        """Count one failed request of type ``kind`` in bucket ``key``."""
        slot = self.ring.slot(key)
        if slot is not None:
            self.ring.arrays["n_err"][slot] += 1
        if version is not None:
            vring = self.version_window(version)[1]
            vslot = vring.slot(key)
            if vslot is not None:
                vring.arrays["n_err"][vslot] += 1
        self.errors_total += 1
        if kind in self.error_types or len(self.error_types) < _MAX_ERROR_TYPES:
            self.error_types[kind] = self.error_types.get(kind, 0) + 1
        if version is not None:
            self.count_version(version, 0)

    def add_labels(
        self,
        keys: np.ndarray,
        tags: np.ndarray,
        truth: np.ndarray,
        preds: np.ndarray,
        *,
        current: int,
        classify: bool,
    ) -> tuple[int, int]:
        """Count labels in their predictions' buckets; return how many matched and were late.

        A label is late when its bucket has left the window that ends at ``current``.
        """
        matched = late = 0
        # the usual batch of labels is of one bucket (and one version): no sort needed
        first = int(keys[0])
        if keys.min() == keys.max() and tags.min() == tags.max():
            slot = self.ring.lookup(first)
            if slot is None or first <= current - self.buckets:
                return 0, keys.size
            _add_labels(self.ring, slot, truth, preds, classify)
            vring = self._rings.get(int(tags[0]))
            vslot = None if vring is None else vring.lookup(first)
            if vring is not None and vslot is not None:
                self._sync(vring)
                _add_labels(vring, vslot, truth, preds, classify)
            return keys.size, 0
        distinct = [first] if keys.min() == keys.max() else np.unique(keys).tolist()
        for key in distinct:
            sel = keys == key
            slot = self.ring.lookup(key)
            if slot is None or key <= current - self.buckets:
                late += int(sel.sum())
                continue
            matched += int(sel.sum())
            _add_labels(self.ring, slot, truth[sel], preds[sel], classify)
            mine = tags[sel]
            for tag in [int(mine[0])] if mine.min() == mine.max() else np.unique(mine).tolist():
                vring = self._rings.get(tag)
                vslot = None if vring is None else vring.lookup(key)
                if vring is not None and vslot is not None:
                    self._sync(vring)
                    both = sel & (tags == tag)
                    _add_labels(vring, vslot, truth[both], preds[both], classify)
        return matched, late

    # ------------------------------------------------------------------ merging

    def absorb(self, other: Windows, codes: np.ndarray, newest: int) -> dict[int, int]:
        """Add the counts of another monitor's windows to these (see ``Monitor.combine``).

        ``codes[old] = new`` maps the other's class codes to these windows' (whose class
        arrays are large enough already); only buckets of the window that ends with bucket
        ``newest`` are kept, the others having left every window. Of the other's versions,
        those tracked here already (see `track`) are added. Returns the other's version
        tags mapped to these windows' tags.
        """
        tags: dict[int, int] = {}
        for version, tag in other._tags.items():
            mine = self._tags.get(version)
            if mine is None:
                continue
            tags[tag] = mine
            ring = self._rings[mine]
            self._sync(ring)
            _absorb_ring(ring, other._rings[tag], codes, newest)
        _absorb_ring(self.ring, other.ring, codes, newest)
        self.seq += other.seq
        self.last_key = max(self.last_key, other.last_key)
        for version, n in other.versions.items():
            self.count_version(version, n)
        self.errors_total += other.errors_total
        for kind, n in other.error_types.items():
            if kind in self.error_types or len(self.error_types) < _MAX_ERROR_TYPES:
                self.error_types[kind] = self.error_types.get(kind, 0) + n
        return tags

    def newest_key(self) -> int:
        """The newest bucket holding anything (an error counts before any row is logged)."""
        rings = (self.ring, *self._rings.values())
        return max(self.last_key, *(int(r.keys.max()) for r in rings))

    def recency(self) -> list[tuple[float, str]]:
        """``(when last seen, version)`` of the tracked versions, least recently seen first."""
        return [(self.seen_at.get(v, -np.inf), v) for v in self._tags]

    def track(self, versions: list[tuple[float, str]]) -> None:
        """Give versions a window, in this order (least recently seen first), with their times."""
        for seen, version in versions:
            self.version_window(version)
            if np.isfinite(seen):
                self.seen_at[version] = float(seen)

    # ------------------------------------------------------------------ rings

    def _new_ring(self) -> BucketRing:
        """An empty ring with the arrays a version's metrics need."""
        ring = _empty_ring(self.buckets)
        self._sync(ring)
        return ring

    def _sync(self, ring: BucketRing) -> None:
        """Give a version's ring the quality arrays of the main ring, in the same shapes."""
        for name in _QUALITY:
            main = self.ring.arrays.get(name)
            if main is None:
                continue
            mine = ring.arrays.get(name)
            if mine is None:
                ring.add_array(name, main.shape[1:], main.dtype)
            elif mine.shape != main.shape:
                ring.resize(name, main.shape[1:])

    # ------------------------------------------------------------------ persistence

    def to_state(self) -> dict[str, Any]:
        """Counts and totals: ``ring_*`` and ``ver<tag>_*`` arrays, the rest JSON-friendly."""
        state: dict[str, Any] = {
            "seq": self.seq,
            "last_key": self.last_key,
            "errors": {"total": self.errors_total, "by_type": dict(self.error_types)},
            "versions": dict(self.versions),
            "version_tags": list(self._tags.items()),
            "version_seen_at": dict(self.seen_at),
            "next_tag": self._next_tag,
        }
        state.update({f"ring_{k}": v for k, v in self.ring.arrays.items()})
        state["ring_keys"] = self.ring.keys
        for tag, ring in self._rings.items():
            state.update({f"ver{tag}_{k}": v for k, v in ring.arrays.items()})
            state[f"ver{tag}_keys"] = ring.keys
        return state

    @classmethod
    def from_state(cls, state: Mapping[str, Any], empty: Windows) -> Windows:
        """Rebuild what `to_state` gave.

        ``empty`` is the windows the monitor's parameters give before anything is logged: the
        saved arrays must fit it (the same buckets, its arrays and no unknown ones).
        Inconsistent contents raise ``ValueError``, ``KeyError`` or ``TypeError``.
        """
        out = cls(
            buckets=empty.buckets,
            rows=empty.window_rows,
            seconds=None if empty.bucket_size else empty.bucket_s * empty.buckets,
            max_versions=empty.max_versions,
            name=empty.name,
        )
        saved = {k: v for k, v in state.items() if isinstance(v, np.ndarray)}
        main = {k[5:]: v for k, v in saved.items() if k.startswith("ring_")}
        out.ring = _restore_ring(empty.ring, main)
        by_tag: dict[int, dict[str, np.ndarray]] = {}
        for k, v in saved.items():
            if k.startswith("ver"):
                tag, _, name = k[3:].partition("_")
                by_tag.setdefault(int(tag), {})[name] = v
        out.seq = int(state["seq"])
        out.last_key = int(state["last_key"])
        out.errors_total = int(state["errors"]["total"])
        out.error_types = dict(state["errors"]["by_type"])
        out.versions = dict(state["versions"])
        for version, tag in state.get("version_tags", []):
            out._tags[version] = int(tag)
            out._rings[int(tag)] = _restore_ring(out._new_ring(), by_tag[tag])
        out._next_tag = int(state.get("next_tag", 0))
        out.seen_at = {str(k): float(v) for k, v in state.get("version_seen_at", {}).items()}
        for ring in out._rings.values():
            out._sync(ring)
        return out


def _absorb_ring(ring: BucketRing, other: BucketRing, codes: np.ndarray, newest: int) -> None:
    """Add ``other``'s buckets of the window ending at ``newest`` to ``ring`` (class codes
    mapped by ``codes``; regression sums merged exactly, as one stream would give them)."""
    k = codes.size
    for s_other, key in enumerate(other.keys.tolist()):
        if key < 0 or key <= newest - ring.n_buckets or key > newest:
            continue
        s = ring.slot(key)
        if s is None:  # pragma: no cover - the merged ring only holds keys of this window
            continue
        for name, arr in other.arrays.items():
            mine = ring.arrays[name]
            if name in ("conf", "expected"):
                mine[s][np.ix_(codes, codes)] += arr[s_other][:k, :k]
            elif name == "pred":
                mine[s][codes] += arr[s_other][:k]
            elif name == "reg":
                mine[s] = merge_regression(mine[s], arr[s_other])
            else:
                mine[s] += arr[s_other]


def _empty_ring(buckets: int) -> BucketRing:
    ring = BucketRing(buckets)
    for name, (tail, dtype) in _BASE_ARRAYS.items():
        ring.add_array(name, tail, dtype)
    return ring


def _add_labels(
    ring: BucketRing, slot: int, truth: np.ndarray, preds: np.ndarray, classify: bool
) -> None:
    arrays = ring.arrays
    if classify:
        k = arrays["conf"].shape[1]
        codes = preds.astype(np.int64)
        flat = truth.astype(np.int64) * k
        flat += codes
        if codes.min() < 0:
            flat = flat[codes >= 0]  # a NaN prediction (code -1) is no answer to score
        arrays["conf"][slot] += np.bincount(flat, minlength=k * k).reshape(k, k)
    else:
        p = preds.astype(np.float64)
        ok = np.isfinite(p)
        arrays["reg"][slot] = merge_regression(
            arrays["reg"][slot], regression_stats(truth[ok], p[ok])
        )


def _restore_ring(fresh: BucketRing, saved: Mapping[str, np.ndarray]) -> BucketRing:
    """``fresh`` with the saved keys and arrays, checked; arrays added since start at 0."""
    buckets = fresh.n_buckets
    saved = dict(saved)
    keys = saved.pop("keys")
    if keys.shape != (buckets,):
        raise ValueError(f"bucket keys of shape {keys.shape}, expected ({buckets},)")
    absent = set(fresh.arrays) - set(saved) - _ADDED_SINCE
    unknown = set(saved) - set(fresh.arrays) - set(_LEARNED_NDIM)
    if absent or unknown:
        raise ValueError(f"ring arrays missing {sorted(absent)}, unexpected {sorted(unknown)}")
    arrays = dict(fresh.arrays)
    for name, value in saved.items():
        expected = fresh.arrays.get(name)
        ndim = _LEARNED_NDIM.get(name) if expected is None else expected.ndim
        if (
            value.ndim < 1
            or value.shape[0] != buckets
            or value.dtype.kind not in "biuf"
            or (ndim is not None and ndim != value.ndim)
            or (name == "conf" and value.shape[1] != value.shape[2])
        ):
            raise ValueError(f"array {name!r} of shape {value.shape} and dtype {value.dtype}")
        arrays[name] = np.array(value)
    ring = BucketRing(buckets)
    ring.keys = np.asarray(keys, dtype=np.int64)
    ring.arrays = arrays
    return ring
