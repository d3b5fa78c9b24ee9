"""Per-version serving statistics with bounded memory, and the result object ``stats()`` returns."""

from __future__ import annotations

import html
import threading
from array import array
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from modeldeploy._config import DEFAULT_LATENCY_WINDOW

__all__ = ["DeployerStats", "VersionStats"]

_COUNTERS = (
    "requests",
    "rows",
    "errors",
    "rejected",
    "fallbacks",
    "timeouts",
    "short_circuited",
    "compared",
    "agreed",
    "dropped",
)


class LatencyRecorder:
    """Counters and a ring of the most recent latencies of one model version (or one path of a
    router): what [`VersionStats`][modeldeploy.deployers.VersionStats] snapshots.

    Memory is fixed: ``window`` float64 latencies plus a few integers, whatever the traffic.
    """

    __slots__ = ("_buf", "_i", "_lock", "_rows", "counts", "label", "role", "window")

    def __init__(self, label: str, role: str, window: int = DEFAULT_LATENCY_WINDOW) -> None:
        self.label = label
        self.role = role
        self.window = window
        # array('d') rather than numpy: storing one Python float into it is several times
        # cheaper, and this runs once per request.
        self._buf = array("d", bytes(8 * window))
        self._i = 0  # requests answered (also the ring's write position)
        self._rows = 0
        self._lock = threading.Lock()
        self.counts = dict.fromkeys(_COUNTERS, 0)

    def record(self, latency_s: float, rows: int) -> None:
        """One request answered by this version."""
        # acquire/release rather than ``with``: half the cost, and this runs once per request.
        lock = self._lock
        lock.acquire()
        try:
            i = self._i
            self._buf[i % self.window] = latency_s
            self._i = i + 1
            self._rows += rows
        finally:
            lock.release()

    def record_many(self, answered: Sequence[tuple[float, int]]) -> None:
        """Several requests answered by this version: ``(latency_s, rows)`` each (one lock)."""
        lock = self._lock
        lock.acquire()
        try:
            buf = self._buf
            window = self.window
            i = self._i
            rows = 0
            for latency_s, n in answered:
                buf[i % window] = latency_s
                i += 1
                rows += n
            self._i = i
            self._rows += rows
        finally:
            lock.release()

    def record_held(self, latency_s: float, rows: int) -> None:
        """`record` for a caller that holds `lock` already."""
        i = self._i
        self._buf[i % self.window] = latency_s
        self._i = i + 1
        self._rows += rows

    @property
    def lock(self) -> threading.Lock:
        """The lock guarding the counters; a micro-batcher shares it (see ``MicroBatcher``) so
        that the lone caller's model call and its record take the lock once between them."""
        return self._lock

    @property
    def answered(self) -> int:
        """Requests answered so far (read without the lock: an int read is atomic)."""
        return self._i

    def count(self, counter: str, by: int = 1) -> None:
        with self._lock:
            self.counts[counter] += by

    def snapshot(self) -> VersionStats:
        with self._lock:
            counts = dict(self.counts)
            counts["requests"] += self._i
            counts["rows"] += self._rows
            filled = min(self._i, self.window)
            lat = np.frombuffer(self._buf, dtype=np.float64, count=filled).copy()
        latency: dict[str, float | None] = dict.fromkeys(("mean", "p50", "p95", "p99"))
        if filled:
            p50, p95, p99 = (float(v) for v in np.percentile(lat, [50, 95, 99]))
            latency = {"mean": float(lat.mean()), "p50": p50, "p95": p95, "p99": p99}
        return VersionStats(
            label=self.label,
            role=self.role,
            latency_s=latency,
            latency_samples=filled,
            **counts,
        )


@dataclass(frozen=True)
class VersionStats:
    """What one model version did: traffic, failures and latency (a snapshot).

    Attributes
    ----------
    label
        The version's reference (``"churn:3"``) or a name for a bare model.
    role
        ``"primary"``, ``"canary"``, ``"shadow"``, ``"fallback"`` or ``"retired"``.
    requests, rows
        Requests answered (successfully) and the rows they held.
    errors
        Requests this version failed (raised, timed out or was skipped by the breaker).
    rejected
        Requests refused by validation (``SchemaError``); counted on the primary.
    fallbacks
        Requests answered by the fallback because this version failed.
    timeouts
        Requests that exceeded ``timeout_ms`` on this version.
    short_circuited
        Requests that skipped this version because its circuit breaker was open.
    compared, agreed
        Shadow only: rows compared with the primary's answer and rows that agreed.
    dropped
        Answers not handed on because a background queue was full: shadow copies (on the
        shadow), or scored requests for the monitor (on the version that answered them).
    latency_s
        ``mean``, ``p50``, ``p95`` and ``p99`` latency in seconds over the most recent
        requests (``None`` before the first one).
    latency_samples
        How many recent requests the percentiles are computed from.

    Examples
    --------
    >>> v = VersionStats("churn:3", "shadow", requests=10, rows=10, compared=10, agreed=9)
    >>> v.agreement, v.error_rate
    (0.9, 0.0)
    """

    label: str
    role: str
    requests: int = 0
    rows: int = 0
    errors: int = 0
    rejected: int = 0
    fallbacks: int = 0
    timeouts: int = 0
    short_circuited: int = 0
    compared: int = 0
    agreed: int = 0
    dropped: int = 0
    latency_s: Mapping[str, float | None] = field(default_factory=dict)
    latency_samples: int = 0

    @property
    def agreement(self) -> float | None:
        """Fraction of compared rows where a shadow agreed with the primary (``None`` if none)."""
        return self.agreed / self.compared if self.compared else None

    @property
    def error_rate(self) -> float | None:
        """Failed requests over all requests sent to this version (``None`` if none)."""
        total = self.requests + self.errors
        return self.errors / total if total else None

    def to_dict(self) -> dict[str, Any]:
        """A dict ``json.dumps`` takes as it is: undefined values are ``None``, latencies in
        seconds."""
        out = {k: getattr(self, k) for k in ("label", "role", *_COUNTERS)}
        out["latency_s"] = dict(self.latency_s)
        out["latency_samples"] = self.latency_samples
        return out


def _fmt(value: float | None) -> str:
    return "-" if value is None or value != value else f"{value:.3g}"  # nan != nan


def _ms(value: float | None) -> str:
    """A latency in seconds, displayed in milliseconds."""
    return "-" if value is None else _fmt(value * 1e3)


@dataclass(frozen=True)
class DeployerStats:
    """A snapshot of a deployer's traffic, side by side for every version it served.

    Attributes
    ----------
    versions
        One [`VersionStats`][modeldeploy.deployers.VersionStats] per version, the primary first.
    batches, batched_rows
        Model calls made by the micro-batcher and the rows they held (their ratio is the mean
        batch size).
    settings
        The batching and timeout settings in force.
    abandoned_calls
        Model calls (warm-ups and requests) that did not return within their bound
        (``timeout_ms``, ``warmup_timeout_s``): their callers stopped waiting and each call
        was left running on a daemon thread, which CPython cannot stop. A rising count means
        a model hangs.

    Examples
    --------
    >>> stats = DeployerStats([VersionStats("churn:3", "primary", requests=4, rows=8)],
    ...                       batches=2, batched_rows=8)
    >>> stats  # doctest: +ELLIPSIS
    DeployerStats(churn:3 [primary]: 4 requests, 0 errors, ...; mean batch 4 rows)
    >>> stats["churn:3"].rows, stats.mean_batch_size
    (8, 4.0)
    """

    versions: Sequence[VersionStats]
    batches: int = 0
    batched_rows: int = 0
    settings: Mapping[str, Any] = field(default_factory=dict)
    abandoned_calls: int = 0

    def __getitem__(self, label: str) -> VersionStats:
        for v in self.versions:
            if v.label == label:
                return v
        raise KeyError(
            f"No version {label!r} in these stats. Versions: {[v.label for v in self.versions]}"
        )

    @property
    def primary(self) -> VersionStats:
        """Stats of the version currently answering."""
        return self.versions[0]

    @property
    def mean_batch_size(self) -> float | None:
        """Average rows per model call (``None`` before the first call)."""
        return self.batched_rows / self.batches if self.batches else None

    def to_dict(self) -> dict[str, Any]:
        """A dict ``json.dumps`` takes as it is (``None`` for undefined values, such as
        latencies before the first request; latencies in seconds).

        Examples
        --------
        >>> import json
        >>> stats = DeployerStats([LatencyRecorder("churn:3", "primary").snapshot()])
        >>> json.dumps(stats.to_dict()["versions"][0]["latency_s"])
        '{"mean": null, "p50": null, "p95": null, "p99": null}'
        """
        return {
            "versions": [v.to_dict() for v in self.versions],
            "batches": self.batches,
            "batched_rows": self.batched_rows,
            "settings": dict(self.settings),
            "abandoned_calls": self.abandoned_calls,
        }

    def __repr__(self) -> str:
        parts = []
        for v in self.versions:
            lat = v.latency_s
            text = (
                f"{v.label} [{v.role}]: {v.requests} requests, {v.errors} errors, "
                f"{v.fallbacks} fallbacks, p50 {_ms(lat.get('p50'))} ms, "
                f"p99 {_ms(lat.get('p99'))} ms"
            )
            if v.compared:
                text += f", agreement {v.agreement:.3f}"
            parts.append(text)
        if self.batches:
            parts.append(f"mean batch {_fmt(self.mean_batch_size)} rows")
        if self.abandoned_calls:
            parts.append(f"{self.abandoned_calls} abandoned model calls")
        return "DeployerStats(" + "; ".join(parts) + ")"

    def _repr_html_(self) -> str:
        heads = (
            "version",
            "role",
            "requests",
            "rows",
            "errors",
            "rejected",
            "fallbacks",
            "timeouts",
            "p50 ms",
            "p95 ms",
            "p99 ms",
            "agreement",
        )
        rows = []
        for v in self.versions:
            lat = v.latency_s
            cells = (
                v.label, v.role, v.requests, v.rows, v.errors, v.rejected, v.fallbacks,
                v.timeouts, _ms(lat.get("p50")), _ms(lat.get("p95")), _ms(lat.get("p99")),
                _fmt(v.agreement),
            )  # fmt: skip
            rows.append(
                "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>"
            )
        head = "".join(f"<th>{h}</th>" for h in heads)
        caption = "Deployer stats"
        if self.batches:
            caption += f": {self.batches} model calls, mean batch {_fmt(self.mean_batch_size)} rows"
        return (
            f"<table><caption>{html.escape(caption)}</caption><thead><tr>{head}</tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>"
        )
