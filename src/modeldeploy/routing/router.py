"""One front door over an online and a batch deployer: [`HybridRouter`][modeldeploy.HybridRouter].

Each request goes through a routing rule (see `modeldeploy.routing.rules`): ``"online"``
answers it now, ``"batch"`` queues it on the batch deployer and hands back a
[`RouteHandle`][modeldeploy.routing.RouteHandle] that resolves when its batch is scored.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import logging
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, Literal, overload

import numpy as np
from typing_extensions import Self

from modeldeploy._clock import as_clock
from modeldeploy._validation import (
    check_callable,
    check_float,
    check_instance,
    check_int,
    check_mapping,
)

# The one import of a deployers private: the per-path counters and latency ring. To go once
# deployers export a public stats recorder.
from modeldeploy.deployers import LatencyRecorder
from modeldeploy.deployers.online import OnlineDeployer
from modeldeploy.exceptions import (
    DeploymentError,
    InvalidParameterError,
    SchemaError,
)
from modeldeploy.routing.handles import RouteHandle, RouterStats
from modeldeploy.routing.rules import (
    Path,
    Request,
    Rule,
    by_size,
    check_deadline,
    check_path,
    first_of,
)
from modeldeploy.typing import BatchQueue, Clock, OnlinePath, SupportsValidate

__all__ = ["HybridRouter"]

logger = logging.getLogger("modeldeploy.routing")

_OWNER = "HybridRouter"
_REF = re.compile(r".+:\d+")  # "churn:3": a registry version's label


class HybridRouter:
    """One entry point over an online and a batch deployer; a rule sends each request.

    ``predict`` always returns predictions: requests routed online are answered at once,
    requests routed to batch are queued and waited for (at most ``timeout`` seconds).
    ``submit`` always returns a [`RouteHandle`][modeldeploy.routing.RouteHandle] at once: already
    resolved for online requests, resolved when its batch is scored for batch ones. Safe to call
    from many threads.

    **Default rule**: ``by_size(max_online_rows=1_000)``: requests of at most 1,000 rows go
    online, bigger ones to the batch path. A rule (or the last of a list) that returns ``None``
    also falls back to it.

    Parameters
    ----------
    online
        An [`OnlineDeployer`][modeldeploy.OnlineDeployer] (any [`Deployer`][modeldeploy.Deployer],
        or any [`OnlinePath`][modeldeploy.typing.OnlinePath], works). Its signature validates every
        request before routing, so a bad request raises
        [`SchemaError`][modeldeploy.exceptions.SchemaError] in its caller's thread, whatever the
        path.
    batch
        A [`BatchDeployer`][modeldeploy.BatchDeployer] (any
        [`BatchQueue`][modeldeploy.typing.BatchQueue]): queued requests go to its ``submit`` and are
        scored together (and one by one if their shared batch fails, so that one bad request never
        fails the others). The router does not change it.
    route
        A rule (a callable of a [`Request`][modeldeploy.routing.Request] returning ``"online"``,
        ``"batch"`` or ``None``), a list of rules (the first that decides wins, see
        [`first_of`][modeldeploy.routing.first_of]), or ``None`` for the default rule.
    flush_rows, flush_seconds
        Score the requests queued through the router once this many of their rows wait, or
        once the oldest has waited this long (on ``clock``): a thread of the router calls the
        batch deployer's ``flush()``. ``None``: no threshold of the router's. The batch
        deployer's own thresholds (``flush_rows``, ``flush_interval_s`` of a
        [`BatchDeployer`][modeldeploy.BatchDeployer]) are left as they are and still apply, so the
        earlier of the two flushes; to leave the timing to the router, build the batch
        deployer with ``flush_interval_s=None`` and a ``flush_rows`` above the router's.
    allow_version_mismatch
        Both paths must serve the same registry version (``online.version == batch.version``);
        a mismatch raises unless this is True. Bare models cannot be compared and are accepted.
    close_deployers
        Close both deployers when the router closes (by default they stay open: they are the
        caller's).
    clock
        The [`Clock`][modeldeploy.typing.Clock] of ``flush_seconds`` and of request deadlines
        (e.g. [`FakeClock`][modeldeploy.testing.FakeClock] in tests). Latencies stay on the real
        clock. Default: the system clock.

    Raises
    ------
    InvalidParameterError
        For a bad argument, or when the two paths serve different versions.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.linear_model import LogisticRegression
    >>> from modeldeploy import BatchDeployer, OnlineDeployer, Signature
    >>> from modeldeploy.routing import by_meta
    >>> X = np.array([[0.0, 1.0], [1.0, 0.0], [0.2, 0.9], [0.9, 0.1]])
    >>> model = LogisticRegression().fit(X, [0, 1, 0, 1])
    >>> dep = OnlineDeployer(model, signature=Signature.infer(X), fast_path="off")
    >>> job = BatchDeployer(model, n_jobs=1)
    >>> with HybridRouter(online=dep, batch=job, route=by_meta("urgent")) as router:
    ...     now = router.predict([0.9, 0.0], meta={"urgent": True})
    ...     handle = router.submit(X, meta={"urgent": False})
    ...     handle.path, handle.done()
    ('batch', False)
    >>> now.tolist(), handle.result().tolist()
    ([1], [0, 1, 0, 1])
    >>> router.stats().batch.requests
    1
    >>> dep.close(); job.close()
    """

    def __init__(
        self,
        online: OnlinePath,
        batch: BatchQueue,
        *,
        route: Rule | Sequence[Rule] | None = None,
        flush_rows: int | None = None,
        flush_seconds: float | None = None,
        allow_version_mismatch: bool = False,
        close_deployers: bool = False,
        clock: Clock | None = None,
    ) -> None:
        self.clock = as_clock(clock, _OWNER)
        self.online = check_instance(
            online,
            OnlinePath,
            "online",
            _OWNER,
            expected="a deployer with predict(X) and close() (an OnlineDeployer)",
        )
        self.batch = check_instance(
            batch,
            BatchQueue,
            "batch",
            _OWNER,
            expected="a queue with submit(X), flush() and close() (a BatchDeployer)",
        )
        self.route = route
        self._rule = self._make_rule(route)
        self._default = by_size()
        self.flush_rows = None if flush_rows is None else check_int(
            flush_rows, "flush_rows", _OWNER, min_value=1
        )  # fmt: skip
        self.flush_seconds = None if flush_seconds is None else check_float(
            flush_seconds, "flush_seconds", _OWNER, min_value=0, min_inclusive=False
        )  # fmt: skip
        self.allow_version_mismatch = bool(allow_version_mismatch)
        self.close_deployers = bool(close_deployers)
        self._check_versions()
        method = getattr(batch, "method", "predict")
        self.method: str = method if isinstance(method, str) else "predict"
        call = getattr(online, self.method, None)
        if not callable(call):
            raise InvalidParameterError(
                f"The batch deployer scores with {self.method!r} but the online deployer has no "
                f"{self.method}; build the BatchDeployer with method='predict'."
            )
        self._online_call: Callable[..., Any] = call
        # An OnlineDeployer says which version answered, and batches coroutines on their loop.
        self._online_deployer = online if isinstance(online, OnlineDeployer) else None
        self._cond = threading.Condition()
        self._closed = False
        self._active = 0  # calls between the closed check and their handle being tracked
        # Queued batch requests by handle, oldest first: (future, rows, arrival on the clock,
        # arrival number). Flushes are told apart by number: a fake clock may not move
        # between a flush and the next request.
        self._pending: dict[int, tuple[cf.Future[np.ndarray], int, float, int]] = {}
        self._arrivals = 0
        self._pending_rows = 0
        self._flushed_upto = 0  # requests numbered up to this one were flushed
        self._unflushed_rows = 0  # rows of pending requests numbered after _flushed_upto
        self._timer: threading.Thread | None = None
        self._timer_idle = False
        self._rejected = 0
        self._recorders = {
            "online": LatencyRecorder("online", ""),
            "batch": LatencyRecorder("batch", ""),
        }

    # ------------------------------------------------------------------ requests

    @overload
    def predict(
        self,
        X: Any,
        *,
        meta: Mapping[str, Any] | None = ...,
        ids: Any = ...,
        key: Any = ...,
        deadline: Any = ...,
        timeout: float | None = ...,
        return_version: Literal[False] = ...,
    ) -> np.ndarray: ...

    @overload
    def predict(
        self,
        X: Any,
        *,
        meta: Mapping[str, Any] | None = ...,
        ids: Any = ...,
        key: Any = ...,
        deadline: Any = ...,
        timeout: float | None = ...,
        return_version: Literal[True],
    ) -> tuple[np.ndarray, str | None]: ...

    def predict(
        self,
        X: Any,
        *,
        meta: Mapping[str, Any] | None = None,
        ids: Any = None,
        key: Any = None,
        deadline: Any = None,
        timeout: float | None = None,
        return_version: bool = False,
    ) -> np.ndarray | tuple[np.ndarray, str | None]:
        """Route one request and return its predictions.

        Parameters
        ----------
        X
            One row (1-D array, dict, one-row DataFrame) or a batch.
        meta
            Metadata for the rule (``{"urgent": True}``).
        ids
            One id per row; the online path hands them to its monitor.
        key
            A request key (sticky canary on the online path).
        deadline
            When the answer is needed (``datetime``, ``timedelta`` or seconds), for
            [`by_deadline`][modeldeploy.routing.by_deadline].
        timeout
            Longest wait, in seconds, for a request routed to batch (``None``: until its batch
            is flushed by size, time, [`flush`][modeldeploy.HybridRouter.flush] or
            [`close`][modeldeploy.HybridRouter.close]).
        return_version
            Also return the label of the version that answered: on the online path, what
            [`OnlineDeployer`][modeldeploy.OnlineDeployer] answered with (the canary's, the
            fallback's); on the batch path, the batch deployer's ``version`` (``None`` when
            unknown).

        Returns
        -------
        numpy.ndarray or tuple
            One prediction per row (probabilities when the batch deployer scores with
            ``method="predict_proba"``); with ``return_version=True``,
            ``(predictions, version)``.

        Raises
        ------
        SchemaError
            When ``X`` does not match the signature (this caller only).
        DeploymentError
            When the path that answers fails, or the router is closed.
        PredictionTimeoutError
            When a request routed to batch is not scored within ``timeout``.
        """
        request, path = self._admit(X, meta, ids, key, deadline, "predict")
        if path == "online":
            out, version = self._answer_online(request)
        else:
            out = self._queue(request).result(timeout)
            version = self._versions()["batch"]
        return (out, version) if return_version else out

    def submit(
        self,
        X: Any,
        *,
        meta: Mapping[str, Any] | None = None,
        ids: Any = None,
        key: Any = None,
        deadline: Any = None,
    ) -> RouteHandle:
        """Route one request and return a handle on its answer.

        Requests routed online are answered in the calling thread and their handle is already
        resolved (with the predictions, or the online path's error); batch ones resolve when
        their batch is scored. Parameters as in [`predict`][modeldeploy.HybridRouter.predict].

        Raises
        ------
        SchemaError
            At once, when ``X`` does not match the signature (this caller only).
        DeploymentError
            When the router is closed.
        """
        request, path = self._admit(X, meta, ids, key, deadline, "submit")
        if path == "batch":
            return self._queue(request)
        fut: cf.Future[np.ndarray] = cf.Future()
        fut.set_running_or_notify_cancel()
        try:
            fut.set_result(self._answer_online(request)[0])
        except Exception as exc:
            fut.set_exception(exc)
        return RouteHandle(fut, request, "online")

    @overload
    async def apredict(
        self,
        X: Any,
        *,
        meta: Mapping[str, Any] | None = ...,
        ids: Any = ...,
        key: Any = ...,
        deadline: Any = ...,
        timeout: float | None = ...,
        return_version: Literal[False] = ...,
    ) -> np.ndarray: ...

    @overload
    async def apredict(
        self,
        X: Any,
        *,
        meta: Mapping[str, Any] | None = ...,
        ids: Any = ...,
        key: Any = ...,
        deadline: Any = ...,
        timeout: float | None = ...,
        return_version: Literal[True],
    ) -> tuple[np.ndarray, str | None]: ...

    async def apredict(
        self,
        X: Any,
        *,
        meta: Mapping[str, Any] | None = None,
        ids: Any = None,
        key: Any = None,
        deadline: Any = None,
        timeout: float | None = None,
        return_version: bool = False,
    ) -> np.ndarray | tuple[np.ndarray, str | None]:
        """[`predict`][modeldeploy.HybridRouter.predict] for asyncio, never blocking the event loop:
        an [`OnlineDeployer`][modeldeploy.OnlineDeployer] batches the online requests on the loop
        (see [`OnlineDeployer.apredict`][modeldeploy.OnlineDeployer.apredict]), another online
        path answers in a worker thread, and a batch request is awaited."""
        import asyncio  # with the first async call: asyncio is slow to import

        request, path = self._admit(X, meta, ids, key, deadline, "apredict")
        if path == "online":
            if self._online_deployer is not None:
                out, version = await self._aanswer_online(self._online_deployer, request)
            else:
                loop = asyncio.get_running_loop()
                out, version = await loop.run_in_executor(None, self._answer_online, request)
            return (out, version) if return_version else out
        handle = self._queue(request)
        try:
            out = await asyncio.wait_for(asyncio.wrap_future(handle._future), timeout)
        except asyncio.TimeoutError:
            raise handle._timeout(timeout) from None
        return (out, self._versions()["batch"]) if return_version else out

    def which(self, X: Any, *, meta: Mapping[str, Any] | None = None, deadline: Any = None) -> Path:
        """The path a request would take, without sending it (validates it like a request)."""
        return self._admit(X, meta, None, None, deadline, "which", count=False)[1]

    def flush(self) -> int:
        """Score every queued batch request now; return how many rows the batch path scored."""
        self._mark_flushed()
        return int(self.batch.flush())

    # ------------------------------------------------------------------ state

    def stats(self) -> RouterStats:
        """Per-path traffic, errors and latency percentiles, and the queue depth."""
        versions = self._versions()
        snaps = {}
        for path, rec in self._recorders.items():
            snaps[path] = dataclasses.replace(rec.snapshot(), role=versions[path] or "-")
        with self._cond:
            pending, rows, rejected = len(self._pending), self._pending_rows, self._rejected
        return RouterStats(
            online=snaps["online"],
            batch=snaps["batch"],
            rejected=rejected,
            pending_requests=pending,
            pending_rows=rows,
            versions=versions,
            settings={
                "route": repr(self._rule) if self._rule is not None else repr(self._default),
                "flush_rows": self.flush_rows,
                "flush_seconds": self.flush_seconds,
            },
        )

    @property
    def closed(self) -> bool:
        """Whether [`close`][modeldeploy.HybridRouter.close] was called."""
        return self._closed

    def close(self, timeout: float | None = None) -> None:
        """Stop taking requests, score every queued one and resolve its handle.

        Waits for the batch path (at most ``timeout`` seconds when given), then closes the
        deployers if ``close_deployers`` was set. Calling it twice is fine.
        """
        with self._cond:
            if self._closed:
                return
            self._closed = True
            while self._active:
                self._cond.wait()
            futures = [f for f, _, _, _ in self._pending.values()]
            self._cond.notify_all()  # the flush timer stops
        self.batch.flush()
        not_done = cf.wait(futures, timeout).not_done
        if not_done:
            logger.warning("%d queued requests were still being scored at close", len(not_done))
        if self._timer is not None:
            self._timer.join(timeout)
        if self.close_deployers:
            self.batch.close()
            self.online.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        versions = self._versions()
        rule = self._rule if self._rule is not None else self._default
        with self._cond:
            pending = len(self._pending)
        state = ", closed" if self._closed else ""
        return (
            f"{_OWNER}(online={versions['online']!r}, batch={versions['batch']!r}, "
            f"route={rule!r}, pending={pending}{state})"
        )

    def _repr_html_(self) -> str:
        return self.stats()._repr_html_()

    # ------------------------------------------------------------------ helpers

    @staticmethod
    def _make_rule(route: Any) -> Rule | None:
        if route is None:
            return None
        if isinstance(route, (list, tuple)):
            return first_of(*route)
        rule: Rule = check_callable(
            route,
            "route",
            _OWNER,
            expected="a rule (a callable of a Request returning 'online', 'batch' or None), a "
            "list of rules, or None",
        )
        return rule

    def _versions(self) -> dict[str, str | None]:
        online = getattr(self.online, "version", None)
        batch = getattr(self.batch, "version", None)
        return {
            "online": online if isinstance(online, str) else None,
            "batch": batch if isinstance(batch, str) else None,
        }

    def _check_versions(self) -> None:
        versions = self._versions()
        online, batch = versions["online"], versions["batch"]
        online_ref = online if online is not None and _REF.fullmatch(online) else None
        if online_ref is not None and batch is not None and online_ref != batch:
            if not self.allow_version_mismatch:
                raise InvalidParameterError(
                    f"The online deployer serves {online_ref} but the batch deployer scores "
                    f"{batch}: both paths of a {_OWNER} should answer with one version. Deploy "
                    "the same version on both, or pass allow_version_mismatch=True."
                )
            logger.info("%s: online serves %s, batch scores %s", _OWNER, online_ref, batch)
        elif (online_ref is None) != (batch is None):
            logger.info(
                "%s cannot check that both paths serve one version (online %s, batch %s)",
                _OWNER,
                online,
                batch,
            )

    def _admit(
        self,
        X: Any,
        meta: Mapping[str, Any] | None,
        ids: Any,
        key: Any,
        deadline: Any,
        where: str,
        *,
        count: bool = True,
    ) -> tuple[Request, Path]:
        """Validate and route one request; count it as rejected when that fails."""
        if self._closed:
            raise DeploymentError(
                f"This {_OWNER} is closed and takes no more requests. Create a new one."
            )
        owner = f"{_OWNER}.{where}"
        try:
            meta_ = check_mapping(meta, "meta", owner)
            when = check_deadline(deadline, owner)
            rows = self.online.validate(X) if isinstance(self.online, SupportsValidate) else X
            n_rows = int(np.shape(rows)[0]) if np.ndim(rows) > 1 else 1
            if n_rows == 0:
                raise SchemaError(
                    "Expected at least one row; got an empty request. Skip the call when there "
                    "is nothing to predict."
                )
            if ids is not None:
                ids = [ids] if np.ndim(ids) == 0 else ids
                if len(ids) != n_rows:
                    raise InvalidParameterError(
                        f"The 'ids' parameter of {owner} must hold one id per row ({n_rows}). "
                        f"Got {len(ids)} ids instead."
                    )
            request = Request(
                rows, meta_, n_rows, when, ids, key, self.clock.monotonic(), self.clock
            )
            path = None
            if self._rule is not None:
                path = check_path(self._rule(request), self._rule)
            if path is None:
                path = self._default(request)
        except Exception:
            if count:
                with self._cond:
                    self._rejected += 1
            raise
        assert path is not None
        return request, path

    def _answer_online(self, request: Request) -> tuple[np.ndarray, str | None]:
        """Answer a request on the online path: ``(predictions, version that answered)``."""
        rec = self._recorders["online"]
        kwargs: dict[str, Any] = {}
        if request.ids is not None:
            kwargs["ids"] = request.ids
        if request.key is not None:
            kwargs["key"] = request.key
        t0 = time.perf_counter()
        try:
            if self._online_deployer is not None:
                out, version = self._online_call(request.rows, return_version=True, **kwargs)
            else:
                out, version = self._online_call(request.rows, **kwargs), None
        except Exception:
            rec.count("errors")
            raise
        rec.record(time.perf_counter() - t0, request.n_rows)
        return np.asarray(out), version if version is not None else self._versions()["online"]

    async def _aanswer_online(
        self, dep: OnlineDeployer, request: Request
    ) -> tuple[np.ndarray, str | None]:
        """`_answer_online` batched on the running event loop."""
        rec = self._recorders["online"]
        t0 = time.perf_counter()
        try:
            if self.method == "predict_proba":
                out, version = await dep.apredict_proba(
                    request.rows, ids=request.ids, key=request.key, return_version=True
                )
            else:
                out, version = await dep.apredict(
                    request.rows, ids=request.ids, key=request.key, return_version=True
                )
        except Exception:
            rec.count("errors")
            raise
        rec.record(time.perf_counter() - t0, request.n_rows)
        return np.asarray(out), version

    def _queue(self, request: Request) -> RouteHandle:
        """Hand a request to the batch deployer; its handle resolves with the batch."""
        with self._cond:
            if self._closed:
                raise DeploymentError(
                    f"This {_OWNER} is closed and takes no more requests. Create a new one."
                )
            self._active += 1
        try:
            t0 = time.perf_counter()
            inner = self.batch.submit(request.rows, ids=request.ids)
            refused = inner.exception() if inner.done() else None
            if isinstance(refused, SchemaError):  # the batch path's own signature refused it
                with self._cond:
                    self._rejected += 1
                raise refused
            fut: cf.Future[np.ndarray] = cf.Future()
            fut.set_running_or_notify_cancel()  # handles are not cancellable
            with self._cond:
                self._arrivals += 1
                self._pending[id(fut)] = (
                    fut,
                    request.n_rows,
                    self.clock.monotonic(),
                    self._arrivals,
                )
                self._pending_rows += request.n_rows
                self._unflushed_rows += request.n_rows
                if self.flush_seconds is not None or self.flush_rows is not None:
                    self._start_timer()
            inner.add_done_callback(lambda f: self._resolved(f, fut, t0, request.n_rows))
        finally:
            with self._cond:
                self._active -= 1
                self._cond.notify_all()
        return RouteHandle(fut, request, "batch")

    def _mark_flushed(self) -> None:
        """Every request queued so far is being scored: thresholds count from here."""
        with self._cond:
            self._flushed_upto = self._arrivals
            self._unflushed_rows = 0

    def _start_timer(self) -> None:
        """Start the flush thread, or wake it when it waits for work or the queued rows reached
        ``flush_rows`` (called holding _cond)."""
        if self._timer is None:
            self._timer = threading.Thread(
                target=self._flush_on_thresholds, name="modeldeploy-router-flush", daemon=True
            )
            self._timer.start()
        elif self._timer_idle or self._size_reached():
            self._cond.notify_all()

    def _size_reached(self) -> bool:
        return self.flush_rows is not None and self._unflushed_rows >= self.flush_rows

    def _flush_on_thresholds(self) -> None:
        """Flush once ``flush_rows`` rows were queued since the last flush, or once the oldest
        request queued since then has waited ``flush_seconds``.

        The router keeps these promises itself, whatever the batch deployer's own settings.
        """
        while True:
            with self._cond:
                while True:
                    if self._closed:
                        return
                    if self._size_reached():
                        break
                    # Requests queued before the last flush are already being scored.
                    due = next(
                        (t for _, _, t, k in self._pending.values() if k > self._flushed_upto),
                        None,
                    )
                    now = self.clock.monotonic()
                    self._timer_idle = due is None or self.flush_seconds is None
                    if due is None or self.flush_seconds is None:
                        self._cond.wait()
                    elif due + self.flush_seconds > now:
                        self.clock.wait(self._cond, due + self.flush_seconds - now)
                    else:
                        break
                self._flushed_upto = self._arrivals
                self._unflushed_rows = 0
            try:
                self.batch.flush()
            except Exception:  # the batch deployer resolves each request with its own error
                logger.exception("flushing the batch path failed")

    def _resolved(
        self, inner: cf.Future[np.ndarray], fut: cf.Future[np.ndarray], t0: float, n_rows: int
    ) -> None:
        # Stats first, so that a caller woken by the handle sees its request counted.
        rec = self._recorders["batch"]
        error = (
            DeploymentError("The batch deployer cancelled this request.")
            if inner.cancelled()
            else inner.exception()
        )
        if error is None:
            rec.record(time.perf_counter() - t0, n_rows)
        else:
            rec.count("errors")
        with self._cond:
            entry = self._pending.pop(id(fut), None)
            if entry is not None:
                self._pending_rows -= n_rows
                if entry[3] > self._flushed_upto:  # scored by the batch deployer's own flush
                    self._unflushed_rows -= n_rows
        if error is None:
            fut.set_result(inner.result())
        else:
            fut.set_exception(error)
