"""What a [`HybridRouter`][modeldeploy.HybridRouter] hands back: handles and stats.

[`RouteHandle`][modeldeploy.routing.RouteHandle] is the future-like answer to one routed request;
[`RouterStats`][modeldeploy.routing.RouterStats] a snapshot of the router's traffic per path. Both
are re-exported by `modeldeploy.routing`.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import html
from collections.abc import Callable, Generator, Mapping
from typing import Any

import numpy as np

from modeldeploy.deployers import VersionStats
from modeldeploy.exceptions import PredictionTimeoutError
from modeldeploy.routing.rules import Path, Request

__all__ = ["RouteHandle", "RouterStats"]


class RouteHandle:
    """The answer to one routed request: future-like and awaitable.

    ``result()``, ``done()``, ``exception()`` and ``add_done_callback()`` work like those of a
    `concurrent.futures.Future`; ``await handle`` waits from asyncio without blocking
    the event loop. A handle cannot be cancelled: its rows are scored with their batch.

    Attributes
    ----------
    path
        ``"online"`` (resolved when returned) or ``"batch"``.
    request
        The [`Request`][modeldeploy.routing.Request] as the rule saw it.
    """

    __slots__ = ("_future", "path", "request")

    def __init__(self, future: cf.Future[np.ndarray], request: Request, path: Path) -> None:
        self._future = future
        self.request = request
        self.path = path

    def result(self, timeout: float | None = None) -> np.ndarray:
        """The predictions, waiting at most ``timeout`` seconds for the batch to run.

        Raises
        ------
        PredictionTimeoutError
            When the batch has not been scored in time; the request stays queued, so calling
            ``result()`` again later (or ``router.flush()``) still gets its answer.
        DeploymentError
            When the batch holding the request failed.
        """
        try:
            return self._future.result(timeout)
        except cf.TimeoutError:
            raise self._timeout(timeout) from None

    def exception(self, timeout: float | None = None) -> BaseException | None:
        """The error of the request, or ``None`` once it succeeded (waits like
        [`result`][modeldeploy.routing.RouteHandle.result])."""
        try:
            return self._future.exception(timeout)
        except cf.TimeoutError:
            raise self._timeout(timeout) from None

    def done(self) -> bool:
        """Whether the answer (or the error) is there."""
        return self._future.done()

    def add_done_callback(self, fn: Callable[[RouteHandle], Any]) -> None:
        """Call ``fn(handle)`` once resolved (at once if it already is), from the resolving
        thread."""
        self._future.add_done_callback(lambda _: fn(self))

    def __await__(self) -> Generator[Any, None, np.ndarray]:
        import asyncio  # with the first await: asyncio is slow to import

        return asyncio.wrap_future(self._future).__await__()

    def _timeout(self, timeout: float | None) -> PredictionTimeoutError:
        return PredictionTimeoutError(
            f"The batch holding this request of {self.request.n_rows} rows was not scored "
            f"within {timeout} s. It stays queued: call result() again, or router.flush() to "
            "score it now."
        )

    def __repr__(self) -> str:
        fut = self._future
        if not fut.done():
            state = "pending"
        elif fut.exception() is not None:
            state = f"failed: {type(fut.exception()).__name__}"
        else:
            state = "done"
        return f"RouteHandle({self.path}, {self.request.n_rows} rows, {state})"

    def _repr_html_(self) -> str:
        return f"<code>{html.escape(repr(self))}</code>"


def _ms(value: float | None) -> str:
    """A latency in seconds, displayed in milliseconds."""
    return "-" if value is None else f"{value * 1e3:.3g}"


@dataclasses.dataclass(frozen=True)
class RouterStats:
    """A snapshot of a router's traffic, per path.

    Attributes
    ----------
    online, batch
        Per path: ``requests`` and ``rows`` answered, ``errors`` (failed requests) and latency
        percentiles in seconds (``latency_s``, ``None`` before traffic) over the most recent
        requests. Online latency is the online call; batch latency runs from ``submit`` to the
        handle's resolution (queueing included).
        Their ``label`` is the path, their ``role`` the version that path serves.
    rejected
        Requests refused before routing (``SchemaError``, bad ``ids``, a failing rule).
    pending_requests, pending_rows
        Batch requests queued through the router and not resolved yet (the queue depth).
    versions
        The version label each path serves.
    settings
        The rule and flush settings in force.

    Examples
    --------
    >>> s = RouterStats(VersionStats("online", "churn:3", requests=3, rows=3),
    ...                 VersionStats("batch", "churn:3", requests=1, rows=500))
    >>> s.requests, s.rows
    (4, 503)
    """

    online: VersionStats
    batch: VersionStats
    rejected: int = 0
    pending_requests: int = 0
    pending_rows: int = 0
    versions: Mapping[str, str | None] = dataclasses.field(default_factory=dict)
    settings: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def requests(self) -> int:
        """Requests answered by either path."""
        return self.online.requests + self.batch.requests

    @property
    def rows(self) -> int:
        """Rows answered by either path."""
        return self.online.rows + self.batch.rows

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict."""
        return {
            "online": self.online.to_dict(),
            "batch": self.batch.to_dict(),
            "rejected": self.rejected,
            "pending_requests": self.pending_requests,
            "pending_rows": self.pending_rows,
            "versions": dict(self.versions),
            "settings": dict(self.settings),
        }

    def __repr__(self) -> str:
        parts = []
        for p in (self.online, self.batch):
            lat = p.latency_s
            parts.append(
                f"{p.label} [{p.role}]: {p.requests} requests, {p.rows} rows, {p.errors} errors, "
                f"p50 {_ms(lat.get('p50'))} ms, p99 {_ms(lat.get('p99'))} ms"
            )
        parts.append(
            f"queued: {self.pending_requests} requests, {self.pending_rows} rows; "
            f"rejected: {self.rejected}"
        )
        return "RouterStats(" + "; ".join(parts) + ")"

    def _repr_html_(self) -> str:
        heads = ("path", "version", "requests", "rows", "errors", "p50 ms", "p95 ms", "p99 ms")
        body = []
        for p in (self.online, self.batch):
            lat = p.latency_s
            cells = (p.label, p.role, p.requests, p.rows, p.errors,
                     *(_ms(lat.get(q)) for q in ("p50", "p95", "p99")))  # fmt: skip
            body.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells))
        caption = (
            f"Router stats: {self.pending_requests} requests ({self.pending_rows} rows) queued, "
            f"{self.rejected} rejected"
        )
        head = "".join(f"<th>{h}</th>" for h in heads)
        return (
            f"<table><caption>{html.escape(caption)}</caption><thead><tr>{head}</tr></thead>"
            f"<tbody>{'</tr>'.join(body)}</tr></tbody></table>"
        )
