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
import logging
import queue
import threading
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from time import perf_counter
from typing import Any

import numpy as np

from modeldeploy._config import DEFAULT_MAX_BATCH_SIZE, DEFAULT_MAX_WAIT_MS
from modeldeploy._validation import check_float, check_int
from modeldeploy.deployers._stats import LatencyRecorder
from modeldeploy.exceptions import DeploymentError

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
    :class:`~modeldeploy.exceptions.PredictionTimeoutError`)."""


class BatcherClosedError(DeploymentError):
    """The batcher was closed before this request reached the model; it was not answered."""


class _Job:
    __slots__ = ("X", "done", "error", "fn", "result")

    def __init__(self, fn: Callable[[Any], Any], X: Any) -> None:
        self.fn = fn
        self.X = X
        self.done = _allocate_lock()
        self.done.acquire()
        self.result: Any = None
        self.error: BaseException | None = None


class CallPool:
    """Daemon threads that run model calls, so that a caller can stop waiting for a hung one.

    A thread is added whenever every thread is busy, up to ``max_threads``; past that, calls are
    refused with :class:`~modeldeploy.exceptions.DeploymentError` (that many calls are stuck).

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
        """Run ``fn(X)`` on a pool thread; raise :class:`BatchTimeoutError` after ``timeout_s``."""
        if timeout_s <= 0:
            raise BatchTimeoutError
        job = _Job(fn, X)
        with self._lock:
            if self._closed:
                raise DeploymentError("The deployer is closed; no more model calls are made.")
            if self._busy >= self._threads:
                if self._threads >= self.max_threads:
                    raise DeploymentError(
                        f"{self._busy} model calls are still running past their timeout; "
                        "refusing to start another. The model hangs: fix or replace it."
                    )
                self._threads += 1
                threading.Thread(
                    target=self._work, name=f"{self.name}-{self._threads}", daemon=True
                ).start()
            self._busy += 1
        self._jobs.put(job)
        if not job.done.acquire(True, timeout_s):
            with self._lock:
                self.abandoned += 1
            raise BatchTimeoutError
        if job.error is not None:
            raise job.error
        return job.result

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
    __slots__ = ("X", "done", "error", "leader", "n", "result", "t0")

    def __init__(self, X: Any, n: int, t0: float) -> None:
        self.X = X
        self.n = n
        self.t0 = t0
        self.done = _allocate_lock()
        self.done.acquire()
        self.leader = False
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
        from their arrival: they get :class:`BatchTimeoutError`.
    pool
        The :class:`CallPool` used with ``timeout_ms`` (a private one by default).
    name
        What error messages call the model (``"churn:3"``).

    Every caller gets its own answer or an exception, never ``None``: the model's output is
    checked once per call (an array-like whose first dimension is the number of rows, else
    :class:`~modeldeploy.exceptions.DeploymentError`). When a shared call raises, each request
    is retried alone; one that still fails while others were answered is marked (see
    :func:`failed_on_own_rows`). After :meth:`close`, queued requests and new ones fail at once
    with :class:`BatcherClosedError`; requests already inside a model call wait for it.

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
    ) -> None:
        self.fn = fn
        self.name = name
        self.recorder = recorder
        self._closed = False
        # With a recorder, its lock is the batcher's: the lone caller records its latency in
        # the critical section that ends its call, instead of taking a second lock.
        self._lock = threading.Lock() if recorder is None else recorder.lock
        self._queue: deque[_Request] = deque()
        self._queued_rows = 0
        self._busy = False
        self._history: deque[int] = deque([1], maxlen=_HISTORY)
        self._want = 1
        self._doorbell: Any = None
        self.batches = 0
        self.rows = 0
        self.configure(max_batch_size=max_batch_size, max_wait_ms=max_wait_ms)
        self.timeout_ms = timeout_ms
        self._timeout_s = None if timeout_ms is None else timeout_ms / 1e3
        self._pool = pool if pool is not None or timeout_ms is None else CallPool()

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
        bell = self._doorbell
        if bell is not None and (
            len(self._queue) >= self._want or self._queued_rows >= self.max_batch_size
        ):
            self._doorbell = None
            bell.release()
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

    # ------------------------------------------------------------------ internals

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
            bell = _allocate_lock()
            bell.acquire()
            self._doorbell = bell
            lock.release()
            try:
                bell.acquire(True, deadline - now)
            except BaseException:  # KeyboardInterrupt while gathering: pass the lead on
                with lock:
                    if self._doorbell is bell:
                        self._doorbell = None
                self._abandon(req)
                raise
            with lock:
                if self._doorbell is bell:
                    self._doorbell = None
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
                if r is not req:
                    r.done.release()
        if req.error is not None:
            raise req.error
        return req.result

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

    def _run(self, batch: list[_Request]) -> int:
        """Call the model on the batch and store each request's answer or error."""
        if len(batch) == 1:
            r = batch[0]
            try:
                r.result = _answers(self._call(r.X, r.t0), r.n, self.name)
            except BaseException as exc:
                r.error = exc
            return r.n
        rows = sum(r.n for r in batch)
        try:
            X = np.concatenate([r.X for r in batch])
            out = _answers(self._call(X, batch[0].t0), rows, self.name)
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
                    r.result = _answers(self._call(r.X, r.t0), r.n, self.name)
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
        get :class:`BatcherClosedError` without waiting for the model.
        """
        with self._lock:
            self._closed = True
            queued = list(self._queue)
            self._queue.clear()
            self._queued_rows = 0
            bell = self._doorbell
            self._doorbell = None
            for r in queued:
                # A request handed the lead is awake already; it sees _closed in _lead.
                if not r.leader:
                    r.error = self._closed_error()
                    r.done.release()
            if bell is not None:
                bell.release()
        if self._pool is not None:
            self._pool.close()


class Batching:
    """The micro-batching settings one deployer shares among its batchers, and its call pool.

    Every :class:`MicroBatcher` it :meth:`make` s takes the current settings; :meth:`configure`
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
        owner: str = "MicroBatcher",
    ) -> None:
        self.owner = owner
        self.max_batch_size = check_int(max_batch_size, "max_batch_size", owner, min_value=1)
        self.max_wait_ms = check_float(max_wait_ms, "max_wait_ms", owner, min_value=0)
        self.timeout_ms = (
            None
            if timeout_ms is None
            else check_float(timeout_ms, "timeout_ms", owner, min_value=0, min_inclusive=False)
        )
        #: Runs the model calls when ``timeout_ms`` is given, so that a caller can stop waiting.
        self.pool = CallPool() if self.timeout_ms is not None else None

    def make(
        self, fn: Callable[[Any], Any], *, name: str, recorder: LatencyRecorder | None = None
    ) -> MicroBatcher:
        """A batcher of ``fn`` with the current settings (recording in ``recorder``)."""
        return MicroBatcher(
            fn,
            name=name,
            recorder=recorder,
            max_batch_size=self.max_batch_size,
            max_wait_ms=self.max_wait_ms,
            timeout_ms=self.timeout_ms,
            pool=self.pool,
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
        """Stop the call pool (calls inside the model finish on their daemon threads)."""
        if self.pool is not None:
            self.pool.close()
