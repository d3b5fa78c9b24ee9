"""Adaptive micro-batching: concurrent calls share one model call, a lone call never waits.

The batcher has no thread of its own. It uses a leader/follower scheme: a caller that finds the
model idle and nothing queued runs its own rows at once (the lone-caller path costs a lock and a
few attribute reads). A caller that finds the model busy queues its rows and sleeps. When the
running call ends, its caller hands the lead to the oldest queued caller, which gathers what has
queued (up to ``max_batch_size`` rows), runs it as one model call and wakes the callers it served,
each with its own slice of the answer. While the model runs, the next batch forms by itself.

The batcher learns how many callers to expect: after calls shared by several requests it waits
(at most ``max_wait_ms`` from the oldest queued request) for about as many requests as recent
calls held, because in a closed loop of N callers the N requests come back microseconds apart
and a call of N rows costs little more than a call of one. When a wait ends with half or fewer
of the expected requests, the load has fallen and it expects what arrived, so that a caller left
alone again pays the wait once, then none.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import queue
import threading
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from time import perf_counter
from typing import TYPE_CHECKING, Any

import numpy as np

from modeldeploy._config import DEFAULT_INLINE_MAX_MS, DEFAULT_MAX_BATCH_SIZE, DEFAULT_MAX_WAIT_MS
from modeldeploy._validation import check_float, check_int
from modeldeploy.deployers._stats import LatencyRecorder
from modeldeploy.exceptions import DeploymentError

if TYPE_CHECKING:
    import asyncio

__all__ = [
    "BatchTimeoutError",
    "BatcherClosedError",
    "CallPool",
    "MicroBatcher",
    "failed_on_own_rows",
]

logger = logging.getLogger("modeldeploy.deployers.batching")

_allocate_lock = threading.Lock
_ndarray = np.ndarray  # a module global: one lookup fewer per request on the lone lane
_HISTORY = 8
_SIZE_CLASSES = 32
#: Weight of the newest call in a size class's running cost estimate.
_COST_WEIGHT = 0.2


#: Attribute set on an exception raised by a model on one request's rows while the same model
#: answered the other requests of its batch (exceptions cannot be weakly referenced).
_OWN_ROWS = "_modeldeploy_failed_on_own_rows"


def _answers(out: Any, rows: int, name: str) -> np.ndarray:
    """``out`` as an array with one answer per row, or the error that says what came instead."""
    if type(out) is np.ndarray and out.ndim and out.shape[0] == rows:
        return out
    got: str
    if out is None or isinstance(out, (Mapping, str, bytes, set, frozenset)):
        got = f"a {type(out).__name__}"
    else:
        try:
            arr = np.asarray(out)
        except Exception as exc:  # ragged lists and other shapes numpy refuses
            got = f"a {type(out).__name__} that is not array-like ({type(exc).__name__}: {exc})"
        else:
            if arr.ndim == 0:
                got = f"a {type(out).__name__} that is not array-like"
            elif arr.shape[0] != rows:
                got = f"{arr.shape[0]} answers (shape {arr.shape})"
            else:
                return arr
    return _raise_bad_output(name, got, rows)


def _raise_bad_output(name: str, got: str, rows: int) -> np.ndarray:
    raise DeploymentError(
        f"{name} returned {got} for a batch of {rows} rows; expected an array-like with one "
        f"answer per row (first dimension {rows}). Make its predict return one answer per row, "
        "or give the deployer a fallback=."
    )


def failed_on_own_rows(exc: BaseException) -> bool:
    """Whether ``exc`` failed one request while the model answered the rest of its batch.

    The micro-batcher retries each request of a failed shared call alone; when some of them are
    answered, the model works and the others' rows are what it fails on. The deployer does not
    count such failures toward its circuit breaker.

    Examples
    --------
    >>> failed_on_own_rows(ValueError("bad rows"))
    False
    """
    return bool(getattr(exc, _OWN_ROWS, False))


def _blame_rows(exc: BaseException) -> None:
    # An exception class with __slots__ takes no mark: it counts as a model failure.
    with contextlib.suppress(AttributeError):
        setattr(exc, _OWN_ROWS, True)


class BatchTimeoutError(TimeoutError):
    """A model call did not return before its deadline (the deployer turns this into
    [`PredictionTimeoutError`][modeldeploy.exceptions.PredictionTimeoutError])."""


class BatcherClosedError(DeploymentError):
    """The batcher was closed before this request reached the model; it was not answered."""


class _Job:
    __slots__ = ("X", "done", "error", "fn", "on_done", "result")

    def __init__(
        self, fn: Callable[[Any], Any], X: Any, on_done: Callable[[_Job], None] | None = None
    ) -> None:
        self.fn = fn
        self.X = X
        self.on_done = on_done
        self.done = _allocate_lock()
        self.done.acquire()
        self.result: Any = None
        self.error: BaseException | None = None


class CallPool:
    """Daemon threads that run model calls, so that a caller can stop waiting for a hung one.

    A thread is added whenever every thread is busy, up to ``max_threads``; past that, calls are
    refused with [`DeploymentError`][modeldeploy.exceptions.DeploymentError] (that many calls are
    stuck).

    Examples
    --------
    >>> pool = CallPool(max_threads=2)
    >>> pool.call(sum, [1, 2, 3], timeout_s=5.0)
    6
    >>> pool.close()
    """

    def __init__(self, max_threads: int = 8, name: str = "modeldeploy-call") -> None:
        self.max_threads = max_threads
        self.name = name
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads = 0
        self._busy = 0
        self._closed = False
        #: Calls whose caller stopped waiting at the deadline; each keeps its daemon thread
        #: until the model returns (CPython cannot stop a thread).
        self.abandoned = 0

    def call(self, fn: Callable[[Any], Any], X: Any, timeout_s: float) -> Any:
        """Run ``fn(X)`` on a pool thread; raise `BatchTimeoutError` after ``timeout_s``."""
        if timeout_s <= 0:
            raise BatchTimeoutError
        job = _Job(fn, X)
        self._put(job)
        if not job.done.acquire(True, timeout_s):
            self.abandon()
            raise BatchTimeoutError
        if job.error is not None:
            raise job.error
        return job.result

    def start(self, fn: Callable[[Any], Any], X: Any, on_done: Callable[[_Job], None]) -> None:
        """Run ``fn(X)`` on a pool thread without waiting; ``on_done(job)`` is then called on
        that thread with ``job.result`` or ``job.error`` set. The caller bounds the wait itself
        (and calls `abandon` when it stops waiting)."""
        self._put(_Job(fn, X, on_done))

    def abandon(self) -> None:
        """Count a call whose caller stopped waiting for it."""
        with self._lock:
            self.abandoned += 1

    def _put(self, job: _Job) -> None:
        with self._lock:
            if self._closed:
                raise DeploymentError("The deployer is closed; no more model calls are made.")
            if self._busy >= self._threads:
                if self._threads >= self.max_threads:
                    raise DeploymentError(
                        f"{self._busy} model calls are still running past their timeout (or "
                        f"for as many event loops) on {self.name} threads; refusing to start "
                        "another. If the model hangs, fix or replace it."
                    )
                self._threads += 1
                threading.Thread(
                    target=self._work, name=f"{self.name}-{self._threads}", daemon=True
                ).start()
            self._busy += 1
        self._jobs.put(job)

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            try:
                job.result = job.fn(job.X)
            except BaseException as exc:  # handed to the waiting caller
                job.error = exc
            with self._lock:
                self._busy -= 1
            job.done.release()
            if job.on_done is not None:
                try:
                    job.on_done(job)
                except BaseException:  # a pool thread must survive its callers' callbacks
                    logger.exception("a model call's completion callback failed")

    def close(self) -> None:
        """Let the idle threads end (a hung call keeps its thread until it returns)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            n = self._threads
        for _ in range(n):
            self._jobs.put(None)


class _Request:
    __slots__ = ("X", "done", "error", "leader", "n", "result", "t0", "taken")

    def __init__(self, X: Any, n: int, t0: float) -> None:
        self.X = X
        self.n = n
        self.t0 = t0
        # Released once: to hand this request's caller the lead, or its answer.
        self.done = _allocate_lock()
        self.done.acquire()
        self.leader = False
        # A gathering leader's batch was taken and run by the caller that completed it.
        self.taken = False
        self.result: Any = None
        self.error: BaseException | None = None


class MicroBatcher:
    """Coalesce concurrent calls of ``fn`` on row batches into one call.

    Parameters
    ----------
    fn
        Called with a 2-D array (the rows of one or more requests, stacked in arrival order);
        must return one answer per row (an array whose first axis has that length).
    max_batch_size
        Most rows per call (a request larger than this runs alone, whole).
    max_wait_ms
        Longest the oldest queued request waits for others before its batch runs.
    timeout_ms
        When given, each call runs on a pool thread and callers stop waiting after this long
        from their arrival: they get `BatchTimeoutError`.
    pool
        The `CallPool` used with ``timeout_ms`` (a private one by default).
    name
        What error messages call the model (``"churn:3"``).

    Every caller gets its own answer or an exception, never ``None``: the model's output is
    checked once per call (an array-like whose first dimension is the number of rows, else
    [`DeploymentError`][modeldeploy.exceptions.DeploymentError]). When a shared call raises, each
    request is retried alone; one that still fails while others were answered is marked (see
    `failed_on_own_rows`). After `close`, queued requests and new ones fail at once
    with `BatcherClosedError`; requests already inside a model call wait for it.

    Examples
    --------
    >>> import numpy as np
    >>> batcher = MicroBatcher(lambda X: X.sum(axis=1), max_batch_size=32, max_wait_ms=0.5)
    >>> batcher.submit(np.array([[1.0, 2.0], [3.0, 4.0]]))
    array([3., 7.])
    >>> batcher.batches, batcher.rows
    (1, 2)
    """

    def __init__(
        self,
        fn: Callable[[Any], Any],
        *,
        max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
        max_wait_ms: float = DEFAULT_MAX_WAIT_MS,
        timeout_ms: float | None = None,
        pool: CallPool | None = None,
        name: str = "The model",
        recorder: LatencyRecorder | None = None,
        hops: CallPool | None = None,
        inline_max_ms: float | None = None,
    ) -> None:
        self.fn = fn
        self.name = name
        self.recorder = recorder
        self._closed = False
        self._hops = hops
        self._own_hops: CallPool | None = None
        #: Longest batch (estimated) that ``submit_async`` runs on the event loop itself, in
        #: seconds; None: every batch goes to a helper thread.
        self.inline_max_s = None if inline_max_ms is None else inline_max_ms / 1e3
        # Seconds per model call by batch size class (rows.bit_length()), learnt from calls.
        self._costs: list[float | None] = [None] * _SIZE_CLASSES
        self._local = threading.local()
        self._lanes: weakref.WeakSet[_LoopLane] = weakref.WeakSet()
        # With a recorder, its lock is the batcher's: the lone caller records its latency in
        # the critical section that ends its call, instead of taking a second lock.
        self._lock = threading.Lock() if recorder is None else recorder.lock
        self._queue: deque[_Request] = deque()
        self._queued_rows = 0
        self._busy = False
        self._history: deque[int] = deque([1], maxlen=_HISTORY)
        self._want = 1
        # The leader waiting (on its request's lock) for its batch to fill, if any.
        self._gathering: _Request | None = None
        self.batches = 0
        self.rows = 0
        self.configure(max_batch_size=max_batch_size, max_wait_ms=max_wait_ms)
        self.timeout_ms = timeout_ms
        self._timeout_s = None if timeout_ms is None else timeout_ms / 1e3
        self._pool = pool if pool is not None or timeout_ms is None else CallPool()
        if self._timeout_s is not None:
            self.inline_max_s = None  # a call that must be timed out never runs on the loop

    def configure(
        self, *, max_batch_size: int | None = None, max_wait_ms: float | None = None
    ) -> None:
        """Change the batching settings; requests already queued see the new ones."""
        if max_batch_size is not None:
            self.max_batch_size = check_int(
                max_batch_size, "max_batch_size", "MicroBatcher", min_value=1
            )
        if max_wait_ms is not None:
            self.max_wait_ms = check_float(max_wait_ms, "max_wait_ms", "MicroBatcher", min_value=0)
            self._max_wait_s = self.max_wait_ms / 1e3

    def submit(self, X: Any, t0: float | None = None) -> Any:
        """Answer the rows of ``X``, sharing the model call with concurrent callers.

        With a ``recorder``, an answered request's latency from ``t0`` (a ``perf_counter()``
        time; default: now) is recorded in it, along with its rows.
        """
        n = X.shape[0]
        recorder = self.recorder
        if t0 is None and recorder is not None:
            t0 = perf_counter()
        lock = self._lock
        lock.acquire()
        # The lone caller's lane: nothing running (so nothing queued: a queued request always
        # has a leader), nobody expected, open. It runs in the caller's thread, at once; with
        # timeout_ms the call still goes to the pool, which bounds it.
        if not self._busy and (self._want <= 1 or n >= self.max_batch_size) and not self._closed:
            self._busy = True
            lock.release()
            answered = False
            try:
                out = self.fn(X) if self._timeout_s is None else self._call(X, perf_counter())
                if not (type(out) is _ndarray and out.ndim and out.shape[0] == n):
                    out = _answers(out, n, self.name)
                answered = True
            finally:
                lock.acquire()
                self.batches += 1
                self.rows += n
                if answered and recorder is not None:
                    recorder.record_held(perf_counter() - t0, n)  # type: ignore[operator]
                if self._queue:
                    self._hand_over()
                else:
                    self._busy = False
                lock.release()
            return out
        if self._closed:
            lock.release()
            raise self._closed_error()
        out = self._queue_up(X, n, lock)
        if recorder is not None:
            recorder.record(perf_counter() - t0, n)  # type: ignore[operator]
        return out

    def _queue_up(self, X: Any, n: int, lock: threading.Lock) -> Any:
        """Queue ``X`` (called holding the lock, which it releases) and wait for its answer."""
        req = _Request(X, n, perf_counter())
        self._queue.append(req)
        self._queued_rows += req.n
        if not self._busy:
            self._busy = True
            lock.release()
            return self._lead(req)
        gatherer = self._gathering
        if gatherer is not None and (
            len(self._queue) >= self._want or self._queued_rows >= self.max_batch_size
        ):
            # This request completes the batch: run it in this thread, which holds the GIL
            # already, rather than wake the gathering leader for it; the leader wakes once,
            # with its answer, like the other callers of the batch.
            self._gathering = None
            gatherer.taken = True
            batch = self._take()
            lock.release()
            self._run_and_answer(batch, req, expired=False)
            if req.result is not None or req.error is not None:
                if req.error is not None:
                    raise req.error
                return req.result
            # The batch was full without this request: it waits for the next one, queued.
        else:
            lock.release()
        try:
            req.done.acquire()
        except BaseException:  # KeyboardInterrupt while waiting: leave no one stranded
            self._abandon(req)
            raise
        if req.leader:
            return self._lead(req)
        if req.error is not None:
            raise req.error
        return req.result

    def submit_async(self, X: Any, t0: float) -> asyncio.Future[Any]:
        """Queue the rows of ``X`` with the other requests of the running event loop.

        Call it on the loop; await the future it returns. The requests one loop queues are
        scored as one batch, at most once per loop iteration (sooner when ``max_batch_size``
        rows wait), and their futures are resolved on the loop: no thread hand-off per
        request. A batch runs on the loop itself when the model is cheap enough (see
        ``inline_max_ms``), else on one helper thread. A cancelled future loses its place;
        the others keep theirs. An answered request's latency from ``t0`` goes to the
        recorder.
        """
        import asyncio  # with the first async call: asyncio is slow to import

        lane: _LoopLane | None = getattr(self._local, "lane", None)
        loop = asyncio.get_running_loop()
        if lane is None or lane.loop is not loop:
            # One lane per loop; a thread runs one loop at a time, so the lane is kept per thread.
            lane = _LoopLane(self, loop)
            self._local.lane = lane
            with self._lock:
                if self._closed:
                    raise self._closed_error()
                self._lanes.add(lane)
        elif self._closed:
            raise self._closed_error()
        return lane.submit(X, t0)

    # ------------------------------------------------------------------ internals

    def _direct(self, X: Any, t0: float) -> Any:
        return self.fn(X)

    def _estimate(self, rows: int) -> float | None:
        """Expected seconds of a model call on ``rows`` rows (None: not known yet)."""
        costs = self._costs
        for c in range(min(rows.bit_length(), _SIZE_CLASSES - 1), _SIZE_CLASSES):
            cost = costs[c]
            if cost is not None:  # a larger class bounds a smaller one from above
                return cost
        return None

    def _learn(self, rows: int, seconds: float, *, on_loop: bool) -> None:
        """Update the cost estimate of ``rows``-row calls with one call's duration.

        A call timed on a helper thread also counts the wait for the GIL, which the event
        loop's thread holds meanwhile: such a time only lowers the estimate, so that the
        batcher does not talk itself out of running cheap batches on the loop.
        """
        c = min(rows.bit_length(), _SIZE_CLASSES - 1)
        old = self._costs[c]
        if old is None:
            self._costs[c] = seconds
        elif on_loop:
            self._costs[c] = old + _COST_WEIGHT * (seconds - old)
        elif seconds < old:
            self._costs[c] = seconds

    def _run_timed(self, batch: list[Any], on_loop: bool = False) -> int:
        """`_run` with direct model calls (the caller bounds the wait), timing it."""
        start = perf_counter()
        rows = self._run(batch, self._direct)
        self._learn(rows, perf_counter() - start, on_loop=on_loop)
        return rows

    def _count(self, rows: int) -> None:
        with self._lock:
            self.batches += 1
            self.rows += rows

    def _start(self, batch: list[Any], on_done: Callable[[_Job], None]) -> None:
        """Run a loop's batch on a helper thread (the call pool with ``timeout_ms``)."""
        pool = self._pool
        if pool is None:
            pool = self._hops
            if pool is None:
                with self._lock:
                    if self._hops is None:
                        self._hops = self._own_hops = CallPool(
                            max_threads=64, name="modeldeploy-hop"
                        )
                    pool = self._hops
        pool.start(self._run_timed, batch, on_done)

    def _closed_error(self) -> BatcherClosedError:
        return BatcherClosedError(
            f"The deployer serving {self.name} was closed before this request reached the "
            "model; it was not answered. Send it to a deployer that is open."
        )

    def _call(self, X: Any, t0: float) -> Any:
        if self._timeout_s is None:
            return self.fn(X)
        assert self._pool is not None
        return self._pool.call(self.fn, X, t0 + self._timeout_s - perf_counter())

    def _hand_over(self) -> None:
        """Make the oldest queued request the next leader (call with the lock held)."""
        nxt = self._queue[0]
        nxt.leader = True
        nxt.done.release()

    def _finish(self, requests: int, rows: int, *, expired: bool) -> None:
        """Record the call that just ended and hand the lead to the oldest queued request."""
        with self._lock:
            self.batches += 1
            self.rows += rows
            if expired and requests * 2 <= self._want:
                # Far fewer came than expected: the load fell, stop waiting for it. (A few
                # stragglers under steady load do not count: they come with the next call.)
                self._history.clear()
            self._history.append(requests)
            self._want = max(self._history)
            if self._queue:
                self._hand_over()
            else:
                self._busy = False

    def _lead(self, req: _Request) -> Any:
        """Gather a batch headed by ``req`` (the oldest queued request), run it, deliver it."""
        req.leader = True
        deadline = req.t0 + self._max_wait_s
        lock = self._lock
        while True:
            lock.acquire()
            if self._closed:  # close() failed the queued requests; this one is not answered
                lock.release()
                raise self._closed_error()
            now = perf_counter()
            full = len(self._queue) >= self._want or self._queued_rows >= self.max_batch_size
            if full or now >= deadline:
                expired = not full
                batch = self._take()
                lock.release()
                break
            self._gathering = req
            lock.release()
            try:
                woke = req.done.acquire(True, deadline - now)
            except BaseException:  # KeyboardInterrupt while gathering: pass the lead on
                with lock:
                    if self._gathering is req:
                        self._gathering = None
                if not req.taken:
                    self._abandon(req)
                raise
            with lock:
                if self._gathering is req:
                    self._gathering = None
                taken = req.taken
            if taken:  # the caller that completed the batch ran it: here is the answer
                if not woke:
                    req.done.acquire()
                if req.error is not None:
                    raise req.error
                return req.result
        self._run_and_answer(batch, req, expired=expired)
        if req.error is not None:
            raise req.error
        return req.result

    def _run_and_answer(self, batch: list[_Request], me: _Request, *, expired: bool) -> None:
        """Run a taken batch in this thread (``me``'s), then wake each other caller in it."""
        rows = 0
        try:
            rows = self._run(batch)
        finally:
            self._finish(len(batch), rows or sum(r.n for r in batch), expired=expired)
            for r in batch:
                if r.result is None and r.error is None:  # never hand a caller None
                    r.error = DeploymentError(
                        f"The batch of {len(batch)} requests sent to {self.name} was "
                        "interrupted before this request got its answer; send it again."
                    )
                if r is not me:
                    r.done.release()

    def _abandon(self, req: _Request) -> None:
        """Withdraw a request whose caller was interrupted; pass on the lead if it held it."""
        with self._lock:
            if req in self._queue:
                self._queue.remove(req)
                self._queued_rows -= req.n
            elif not req.leader:
                return  # already taken into a batch: its leader answers and forgets it
            if req.leader:
                if self._queue:
                    self._hand_over()
                else:
                    self._busy = False

    def _take(self) -> list[_Request]:
        q = self._queue
        first = q.popleft()
        batch = [first]
        rows = first.n
        limit = self.max_batch_size
        while q and rows + q[0].n <= limit:
            r = q.popleft()
            batch.append(r)
            rows += r.n
        self._queued_rows -= rows
        return batch

    def _run(self, batch: list[Any], call: Callable[[Any, float], Any] | None = None) -> int:
        """Call the model on the batch and store each request's answer or error.

        ``call(X, t0)`` makes one model call (default: `_call`, bounded by ``timeout_ms``);
        requests are anything with ``X``, ``n``, ``t0``, ``result`` and ``error``.
        """
        if call is None:
            call = self._call
        if len(batch) == 1:
            r = batch[0]
            try:
                r.result = _answers(call(r.X, r.t0), r.n, self.name)
            except BaseException as exc:
                r.error = exc
            return int(r.n)
        rows: int = sum(r.n for r in batch)
        try:
            X = np.concatenate([r.X for r in batch])
            out = _answers(call(X, batch[0].t0), rows, self.name)
        except BatchTimeoutError as exc:
            for r in batch:
                r.error = exc
            return rows
        except BaseException:
            # One request may hold the rows the model chokes on: answer each alone, so that the
            # others still get their answer.
            logger.debug("batch of %d requests failed; retrying them one by one", len(batch))
            answered = False
            for r in batch:
                try:
                    r.result = _answers(call(r.X, r.t0), r.n, self.name)
                    answered = True
                except BaseException as exc:
                    r.result = None
                    r.error = exc
            if answered:  # the model works: the failed requests' own rows are the problem
                for r in batch:
                    if r.error is not None:
                        _blame_rows(r.error)
            return rows
        start = 0
        for r in batch:
            r.result = out[start : start + r.n]
            start += r.n
        return rows

    def close(self) -> None:
        """Fail the queued requests at once, refuse new ones and release the pool threads.

        Requests already inside a model call get its answer (or its ``timeout_ms``); the others
        get `BatcherClosedError` without waiting for the model.
        """
        with self._lock:
            self._closed = True
            queued = list(self._queue)
            self._queue.clear()
            self._queued_rows = 0
            gatherer = self._gathering
            self._gathering = None
            for r in queued:
                # A request handed the lead is awake already; it sees _closed in _lead.
                if not r.leader:
                    r.error = self._closed_error()
                    r.done.release()
            if gatherer is not None:
                gatherer.done.release()
            lanes = list(self._lanes)
        for lane in lanes:
            lane.close()
        if self._pool is not None:
            self._pool.close()
        if self._own_hops is not None:
            self._own_hops.close()


class _Pending:
    """One request of an event loop waiting in a `_LoopLane`."""

    __slots__ = ("X", "error", "fut", "n", "result", "t0")

    def __init__(self, X: Any, n: int, t0: float, fut: asyncio.Future[Any]) -> None:
        self.X = X
        self.n = n
        self.t0 = t0
        self.fut = fut
        self.result: Any = None
        self.error: BaseException | None = None


class _LoopLane:
    """The requests one event loop sends one `MicroBatcher`: queued on the loop, scored
    as one batch, answered on the loop.

    Every method but `close` runs on the loop's thread. A batch is taken when the loop
    gets to the flush it scheduled (after the coroutines that were ready with it have queued
    theirs), and runs on the loop when the batcher's cost estimate says it is short, else on a
    helper thread, which hands the answers back with one ``call_soon_threadsafe``. One batch
    per lane runs at a time; what queues meanwhile is the next batch. With ``timeout_ms`` a
    timer on the loop fails the batch's requests at the oldest one's deadline, the call goes on
    on its pool thread and its late answers are dropped.
    """

    __slots__ = (
        "__weakref__",
        "batcher",
        "history",
        "loop",
        "queue",
        "rows",
        "running",
        "timer",
        "waiting",
        "want",
    )

    def __init__(self, batcher: MicroBatcher, loop: asyncio.AbstractEventLoop) -> None:
        self.batcher = batcher
        self.loop = loop
        self.queue: deque[_Pending] = deque()
        self.rows = 0
        self.timer: asyncio.Handle | None = None
        self.waiting = False  # the timer is a max_wait_ms wait, not an immediate flush
        self.running: list[_Pending] | None = None
        self.history: deque[int] = deque([1], maxlen=_HISTORY)
        self.want = 1

    def submit(self, X: Any, t0: float) -> asyncio.Future[Any]:
        fut = self.loop.create_future()
        n = X.shape[0]
        self.queue.append(_Pending(X, n, t0, fut))
        self.rows += n
        if self.running is None:
            timer = self.timer
            if timer is None:
                self.timer = self.loop.call_soon(self.flush)
            elif self.waiting and (
                len(self.queue) >= self.want or self.rows >= self.batcher.max_batch_size
            ):
                timer.cancel()
                self.waiting = False
                self.timer = self.loop.call_soon(self.flush)
        return fut

    def flush(self) -> None:
        """Take the next batch and run it (or wait for the requests the load promises)."""
        self.timer = None
        self.waiting = False
        if self.running is not None:
            return  # the running batch's end flushes again
        q = self.queue
        while q and q[0].fut.done():  # cancelled while queued
            self.rows -= q.popleft().n
        if not q:
            return
        batcher = self.batcher
        if batcher._closed:
            self.fail_queued()
            return
        full = len(q) >= self.want or self.rows >= batcher.max_batch_size
        if not full:
            wait = q[0].t0 + batcher._max_wait_s - perf_counter()
            if wait > 0:
                self.waiting = True
                self.timer = self.loop.call_later(wait, self.flush)
                return
        batch, rows = self.take()
        if not full and len(batch) * 2 <= self.want:
            self.history.clear()  # far fewer came than expected: the load fell
        self.history.append(len(batch))
        self.want = max(self.history)
        limit = batcher.inline_max_s
        if limit is not None:
            cost = batcher._estimate(rows)
            if cost is not None and cost <= limit:
                batcher._run_timed(batch, on_loop=True)
                self.answer(batch, rows)
                if q and self.timer is None:
                    self.timer = self.loop.call_soon(self.flush)
                return
        self.running = batch
        timeout_s = batcher._timeout_s
        if timeout_s is not None:
            left = batch[0].t0 + timeout_s - perf_counter()
            if left <= 0:
                self.running = None
                for r in batch:
                    r.error = BatchTimeoutError()
                self.answer(batch, rows)
                if q and self.timer is None:
                    self.timer = self.loop.call_soon(self.flush)
                return
            self.timer = self.loop.call_later(left, self.expire, batch, rows)
        try:
            batcher._start(batch, functools.partial(self.finished_elsewhere, batch, rows))
        except DeploymentError as exc:  # closed, or no thread left
            self.running = None
            if self.timer is not None:
                self.timer.cancel()
                self.timer = None
            for r in batch:
                r.error = exc
            self.answer(batch, rows)

    def take(self) -> tuple[list[_Pending], int]:
        q = self.queue
        limit = self.batcher.max_batch_size
        first = q.popleft()
        batch = [first]
        rows = first.n
        while q:
            r = q[0]
            if r.fut.done():
                q.popleft()
                self.rows -= r.n
                continue
            if rows + r.n > limit:
                break
            q.popleft()
            batch.append(r)
            rows += r.n
        self.rows -= rows
        return batch, rows

    def finished_elsewhere(self, batch: list[_Pending], rows: int, job: _Job) -> None:
        """Called on the helper thread when the batch's call ended: wake the loop once."""
        if job.error is not None:  # not the model's: _run catches those per request
            for r in batch:
                if r.result is None and r.error is None:
                    r.error = job.error
        with contextlib.suppress(RuntimeError):  # the loop closed: nobody waits for these
            self.loop.call_soon_threadsafe(self.finished, batch, rows)

    def finished(self, batch: list[_Pending], rows: int) -> None:
        if self.running is not batch:  # timed out earlier: its callers have their error
            self.batcher._count(rows)
            return
        self.running = None
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.answer(batch, rows)
        if self.queue:
            self.flush()

    def expire(self, batch: list[_Pending], rows: int) -> None:
        """The oldest request's ``timeout_ms`` passed: fail the batch, go on with the queue."""
        self.timer = None
        if self.running is not batch:
            return
        self.running = None
        pool = self.batcher._pool
        if pool is not None:
            pool.abandon()
        for r in batch:
            if not r.fut.done():
                r.fut.set_exception(BatchTimeoutError())
        if self.queue:
            self.flush()

    def answer(self, batch: list[_Pending], rows: int) -> None:
        """Resolve the futures of a scored batch (those cancelled meanwhile are skipped)."""
        batcher = self.batcher
        answered: list[tuple[float, int]] = []
        now = perf_counter()
        for r in batch:
            fut = r.fut
            if fut.done():
                continue
            if r.error is not None:
                fut.set_exception(r.error)
            elif r.result is None:  # never hand a caller None
                fut.set_exception(
                    DeploymentError(
                        f"The batch of {len(batch)} requests sent to {batcher.name} was "
                        "interrupted before this request got its answer; send it again."
                    )
                )
            else:
                fut.set_result(r.result)
                answered.append((now - r.t0, r.n))
        batcher._count(rows)
        recorder = batcher.recorder
        if recorder is not None and answered:
            recorder.record_many(answered)

    def fail_queued(self) -> None:
        while self.queue:
            r = self.queue.popleft()
            if not r.fut.done():
                r.fut.set_exception(self.batcher._closed_error())
        self.rows = 0

    def close(self) -> None:
        """Fail the queued requests on the loop (called from any thread)."""
        with contextlib.suppress(RuntimeError):  # the loop closed: nothing waits on it
            self.loop.call_soon_threadsafe(self.fail_queued)


class Batching:
    """The micro-batching settings one deployer shares among its batchers, and its call pool.

    Every `MicroBatcher` it `make` s takes the current settings; `configure`
    changes them for later batchers, and the owner hands it the live ones to change too.

    Examples
    --------
    >>> batching = Batching(max_batch_size=4, max_wait_ms=0.5)
    >>> batcher = batching.make(lambda X: X[:, 0], name="demo")
    >>> batching.configure([batcher], max_batch_size=8)
    >>> batcher.max_batch_size, batching.max_batch_size
    (8, 8)
    """

    def __init__(
        self,
        *,
        max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
        max_wait_ms: float = DEFAULT_MAX_WAIT_MS,
        timeout_ms: float | None = None,
        inline_max_ms: float = DEFAULT_INLINE_MAX_MS,
        owner: str = "MicroBatcher",
    ) -> None:
        self.owner = owner
        self.inline_max_ms = check_float(inline_max_ms, "inline_max_ms", owner, min_value=0)
        self.max_batch_size = check_int(max_batch_size, "max_batch_size", owner, min_value=1)
        self.max_wait_ms = check_float(max_wait_ms, "max_wait_ms", owner, min_value=0)
        self.timeout_ms = (
            None
            if timeout_ms is None
            else check_float(timeout_ms, "timeout_ms", owner, min_value=0, min_inclusive=False)
        )
        #: Runs the model calls when ``timeout_ms`` is given, so that a caller can stop waiting.
        self.pool = CallPool(max_threads=32) if self.timeout_ms is not None else None
        #: Runs the event loops' batches that do not run on their loop (without ``timeout_ms``).
        self.hops = CallPool(max_threads=64, name="modeldeploy-hop")

    def make(
        self,
        fn: Callable[[Any], Any],
        *,
        name: str,
        recorder: LatencyRecorder | None = None,
        inline: bool = False,
    ) -> MicroBatcher:
        """A batcher of ``fn`` with the current settings (recording in ``recorder``).

        With ``inline`` (``fn`` is a verified compiled predictor), an event loop's batches
        estimated to take at most ``inline_max_ms`` run on the loop itself.
        """
        return MicroBatcher(
            fn,
            name=name,
            recorder=recorder,
            max_batch_size=self.max_batch_size,
            max_wait_ms=self.max_wait_ms,
            timeout_ms=self.timeout_ms,
            pool=self.pool,
            hops=self.hops,
            inline_max_ms=self.inline_max_ms if inline and self.inline_max_ms > 0 else None,
        )

    def configure(
        self,
        batchers: Iterable[MicroBatcher],
        *,
        max_batch_size: int | None = None,
        max_wait_ms: float | None = None,
    ) -> None:
        """Change the settings, for ``batchers`` (queued requests see them) and later ones."""
        if max_batch_size is not None:
            self.max_batch_size = check_int(
                max_batch_size, "max_batch_size", self.owner, min_value=1
            )
        if max_wait_ms is not None:
            self.max_wait_ms = check_float(max_wait_ms, "max_wait_ms", self.owner, min_value=0)
        for batcher in batchers:
            batcher.configure(max_batch_size=self.max_batch_size, max_wait_ms=self.max_wait_ms)

    @property
    def abandoned(self) -> int:
        """Model calls the pool gave up waiting for (0 without ``timeout_ms``)."""
        return 0 if self.pool is None else self.pool.abandoned

    def close(self) -> None:
        """Stop the call pools (calls inside the model finish on their daemon threads)."""
        if self.pool is not None:
            self.pool.close()
        self.hops.close()
