"""Traffic policies of [`OnlineDeployer`][modeldeploy.OnlineDeployer]: canary and shadow.

Also the bounded background worker that keeps shadow scoring and monitor calls off the hot path.
"""

from __future__ import annotations

import html
import logging
import queue
import random
import threading
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from time import perf_counter
from typing import Any

import numpy as np

from modeldeploy._clock import SYSTEM_CLOCK
from modeldeploy._config import DEFAULT_BACKGROUND_QUEUE_SIZE
from modeldeploy.deployers._stats import LatencyRecorder
from modeldeploy.exceptions import DeploymentError, InvalidParameterError
from modeldeploy.registry.signature import Signature
from modeldeploy.typing import Clock

__all__ = [
    "BackgroundWorker",
    "Breaker",
    "Canary",
    "CircuitOpenError",
    "DeploymentEvent",
    "Fallback",
    "Shadow",
    "is_model_version",
    "key_fraction",
]

logger = logging.getLogger("modeldeploy.deployers.traffic")

_DEPLOYER = "OnlineDeployer"

_STOP = object()


class _FlushMark:
    """Queued by ``BackgroundWorker.flush``; set once the items before it are handled."""

    __slots__ = ("done",)

    def __init__(self) -> None:
        self.done = threading.Event()


#: Items a background worker takes from its queue in one go (so a shadow model is batched too).
_DRAIN = 256


@dataclass(frozen=True)
class DeploymentEvent:
    """A change in what a deployer serves, handed to its ``on_event`` callback and logged.

    Attributes
    ----------
    kind
        ``"swapped"``, ``"canary_started"``, ``"canary_stopped"``, ``"canary_promoted"``,
        ``"shadow_started"``, ``"shadow_stopped"``, ``"breaker_opened"`` or
        ``"breaker_closed"``.
    deployer
        The deployer's name.
    version
        The version concerned (``"churn:8"``, or a bare model's label).
    previous
        The version it replaced, for swaps and promotions.
    reason
        Why, when known (``"alias production moved"``, ``"5 consecutive failures"``).
    details
        Anything else: the canary fraction, the shadow sample, the cool-down.
    time
        When it happened (UTC).

    Examples
    --------
    >>> DeploymentEvent("swapped", "api", "churn:8", previous="churn:7")
    DeploymentEvent(swapped churn:7 -> churn:8 on api)
    """

    kind: str
    deployer: str
    version: str | None = None
    previous: str | None = None
    reason: str = ""
    details: Mapping[str, Any] = field(default_factory=dict)
    time: datetime = field(default_factory=SYSTEM_CLOCK.now, compare=False)

    def __repr__(self) -> str:
        what = f"{self.previous} -> {self.version}" if self.previous else str(self.version)
        why = f" ({self.reason})" if self.reason else ""
        return f"DeploymentEvent({self.kind} {what} on {self.deployer}{why})"

    def _repr_html_(self) -> str:
        return f"<code>{html.escape(repr(self))}</code>"


EventCallback = Callable[[DeploymentEvent], None]


def key_fraction(key: Any) -> float:
    """Map a request key to a stable number in ``[0, 1)``, the same in every process.

    Python's ``hash`` of a str changes from one process to the next; CRC-32 does not, so every
    replica sends the same key to the same version.

    Examples
    --------
    >>> key_fraction("user-42") == key_fraction("user-42")
    True
    >>> 0.0 <= key_fraction(12345) < 1.0
    True
    """
    return zlib.crc32(str(key).encode("utf-8")) / 4294967296.0


class BackgroundWorker:
    """A daemon thread fed through a bounded queue; when the queue is full, items are dropped.

    ``handler`` receives a list of queued items (up to a few hundred at a time). Its exceptions
    are logged and counted, never raised: the caller who offered the item is long gone.

    Examples
    --------
    >>> seen = []
    >>> worker = BackgroundWorker(seen.extend, name="demo")
    >>> worker.offer(1), worker.offer(2)
    (True, True)
    >>> worker.close()
    >>> seen
    [1, 2]
    """

    def __init__(
        self,
        handler: Callable[[list[Any]], None],
        *,
        name: str,
        maxsize: int = DEFAULT_BACKGROUND_QUEUE_SIZE,
    ) -> None:
        self.handler = handler
        self.name = name
        self.dropped = 0
        self.failures = 0
        self._queue: queue.Queue[Any] = queue.Queue(maxsize)
        self._thread = threading.Thread(target=self._run, name=f"modeldeploy-{name}", daemon=True)
        self._thread.start()
        self._closed = False

    def offer(self, item: Any) -> bool:
        """Queue ``item``; return False (and count it) when the queue is full or closed."""
        if self._closed:
            return False
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self.dropped += 1
            return False
        return True

    def _run(self) -> None:
        q = self._queue
        while True:
            items = [q.get()]
            while len(items) < _DRAIN:
                try:
                    items.append(q.get_nowait())
                except queue.Empty:
                    break
            stop = any(it is _STOP for it in items)
            marks = [it for it in items if isinstance(it, _FlushMark)]
            items = [it for it in items if it is not _STOP and not isinstance(it, _FlushMark)]
            if items:
                try:
                    self.handler(items)
                except Exception:
                    self.failures += 1
                    if self.failures <= 10 or self.failures % 1000 == 0:
                        logger.warning(
                            "%s failed (%d failures so far)",
                            self.name,
                            self.failures,
                            exc_info=True,
                        )
            for mark in marks:
                mark.done.set()
            # Closed without room for _STOP in the queue: stop once what was queued is handled.
            if stop or (self._closed and q.empty()):
                return

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until everything queued before this call is handled; False on a time-out."""
        if self._closed:
            return True
        mark = _FlushMark()
        try:
            self._queue.put(mark, timeout=timeout)
        except queue.Full:
            return False
        return mark.done.wait(timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Process what is queued, then stop the thread (waiting at most ``timeout`` s in all).

        With ``timeout=0`` it returns at once and the thread finishes the queue by itself.
        """
        if self._closed:
            return
        self._closed = True
        deadline = perf_counter() + timeout
        try:
            self._queue.put(_STOP, timeout=timeout)
        except queue.Full:  # the handler is slow or stuck: it stops once the queue is empty
            return
        self._thread.join(max(0.0, deadline - perf_counter()))


class Canary:
    """Send a fraction of requests to a candidate; the same key always goes the same way.

    Examples
    --------
    >>> canary = Canary(target="candidate", fraction=0.25)
    >>> canary.pick("user-42") == canary.pick("user-42")
    True
    >>> Canary(target="candidate", fraction=0.0).pick(None)
    False
    """

    __slots__ = ("fraction", "target")

    def __init__(self, target: Any, fraction: float) -> None:
        self.target = target
        self.fraction = fraction

    def pick(self, key: Any) -> bool:
        """Whether this request goes to the candidate."""
        if key is None:
            return random.random() < self.fraction
        return key_fraction(key) < self.fraction


def _agreeing(a: np.ndarray, b: np.ndarray) -> int:
    """Rows on which two answers agree (close for floats, equal otherwise)."""
    if a.shape != b.shape:
        return 0
    if a.dtype.kind == "f" and b.dtype.kind == "f":
        same = np.isclose(a, b, rtol=1e-6, atol=1e-9, equal_nan=True)
    else:
        same = a == b
    if same.ndim > 1:
        same = same.reshape(same.shape[0], -1).all(axis=1)
    return int(np.count_nonzero(same))


class Shadow:
    """Score a sampled copy of the traffic with a candidate, in the background, and compare.

    ``run(method, X)`` answers a batch with the candidate. Its answers are compared with the
    primary's and recorded in ``recorder`` (``compared`` / ``agreed`` rows, errors, latency);
    they never reach a caller, and the caller never waits for them: a full queue drops the copy.

    Examples
    --------
    >>> import numpy as np
    >>> from modeldeploy.deployers import LatencyRecorder
    >>> recorder = LatencyRecorder("candidate", "shadow")
    >>> shadow = Shadow(lambda method, X: X[:, 0] > 0, recorder, sample=1.0)
    >>> shadow.offer("predict", np.array([[1.0], [-1.0]]), np.array([True, True]))
    >>> shadow.close()
    >>> stats = shadow.recorder.snapshot()
    >>> stats.compared, stats.agreed, stats.agreement
    (2, 1, 0.5)
    """

    def __init__(
        self,
        run: Callable[[str, np.ndarray], Any],
        recorder: LatencyRecorder,
        *,
        sample: float,
        maxsize: int = DEFAULT_BACKGROUND_QUEUE_SIZE,
    ) -> None:
        self.run = run
        self.recorder = recorder
        self.sample = sample
        self._worker = BackgroundWorker(
            self._score, name=f"shadow-{recorder.label}", maxsize=maxsize
        )

    def offer(self, method: str, X: np.ndarray, primary: np.ndarray) -> None:
        """Maybe (with probability ``sample``) queue a copy of one answered request."""
        if random.random() < self.sample and not self._worker.offer((method, X, primary)):
            self.recorder.count("dropped")

    def _score(self, items: list[tuple[str, np.ndarray, np.ndarray]]) -> None:
        for method in {m for m, _, _ in items}:
            group = [(X, p) for m, X, p in items if m == method]
            X = np.concatenate([x for x, _ in group]) if len(group) > 1 else group[0][0]
            t0 = perf_counter()
            try:
                out = np.asarray(self.run(method, X))
                if out.shape[:1] != X.shape[:1]:
                    raise ValueError(f"{out.shape[0]} answers for {X.shape[0]} rows")
            except Exception:
                self.recorder.count("errors", len(group))
                logger.debug("shadow %s failed", self.recorder.label, exc_info=True)
                continue
            latency = (perf_counter() - t0) / len(group)
            start = agreed = 0
            for x, primary in group:
                n = x.shape[0]
                agreed += _agreeing(np.asarray(primary), out[start : start + n])
                self.recorder.record(latency, n)
                start += n
            self.recorder.count("compared", start)
            self.recorder.count("agreed", agreed)

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until the copies queued so far are scored; False on a time-out."""
        return self._worker.flush(timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Finish the queued copies and stop, waiting at most ``timeout`` s for the candidate."""
        self._worker.close(timeout)


class CircuitOpenError(Exception):
    """Raised inside the deployer when a version's circuit breaker skips it."""


class Breaker:
    """Stop calling a model after ``threshold`` consecutive failures; try again after a cool-down.

    While open, requests skip the model (they get the fallback, or an error). After
    ``cooldown_s`` the breaker lets requests through again: one success closes it, one more
    failure opens it for another cool-down. The cool-down runs on ``clock`` (its monotonic
    time; default the system clock).

    A failure reported with ``answered=`` (how many requests the model has answered so far)
    counts only when the model answered nothing since the previous failure: a model that
    answers other requests in between is alive, and the failing requests' rows are the
    problem, so one client's bad rows do not cut every client off.

    Examples
    --------
    >>> breaker = Breaker(threshold=2, cooldown_s=60.0)
    >>> breaker.failure(); breaker.allow()
    True
    >>> breaker.failure(); breaker.allow()
    False
    >>> breaker.success(); breaker.allow()
    True
    >>> breaker.failure(answered=10); breaker.failure(answered=11); breaker.failures
    0
    """

    __slots__ = (
        "_answered",
        "_lock",
        "clock",
        "cooldown_s",
        "failures",
        "label",
        "on_change",
        "open_until",
        "opened",
        "threshold",
    )

    def __init__(
        self,
        threshold: int,
        cooldown_s: float,
        label: str = "model",
        on_change: Callable[[str, str], None] | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.threshold = threshold
        self.cooldown_s = cooldown_s
        self.label = label
        self.on_change = on_change
        self.clock = SYSTEM_CLOCK if clock is None else clock
        self.failures = 0
        self.opened = 0
        #: When the open breaker lets calls through again (the clock's monotonic time), or
        #: None while it is closed.
        self.open_until: float | None = None
        self._lock = threading.Lock()
        self._answered = 0

    def allow(self) -> bool:
        """Whether the model may be called now."""
        until = self.open_until
        return until is None or self.clock.monotonic() >= until

    def failure(self, answered: int | None = None) -> None:
        """Count one failed call; open the breaker at the threshold.

        With ``answered`` (requests the model answered so far), a failure after the model
        answered others since the previous failure is not counted.
        """
        opened = False
        with self._lock:
            if answered is not None:
                alive = answered != self._answered
                self._answered = answered
                if alive:
                    return
            self.failures += 1
            if self.failures >= self.threshold:
                now = self.clock.monotonic()
                if self.open_until is None or now >= self.open_until:
                    self.opened += 1
                    opened = True
                self.open_until = now + self.cooldown_s
            failures = self.failures
        if opened:
            reason = f"{failures} consecutive failures; retrying in {self.cooldown_s:g} s"
            logger.warning("circuit breaker of %s opened after %s", self.label, reason)
            if self.on_change is not None:
                self.on_change("breaker_opened", reason)

    def success(self) -> None:
        """Count one good call: closes the breaker."""
        with self._lock:
            was_open = self.open_until is not None
            self.failures = 0
            self.open_until = None
        if was_open:
            logger.info("circuit breaker of %s closed: the model answers again", self.label)
            if self.on_change is not None:
                self.on_change("breaker_closed", "the model answered again")


def is_model_version(obj: Any) -> bool:
    """A registry ModelVersion (duck-typed, so that a deployer needs no registry import)."""
    return all(hasattr(obj, a) for a in ("load", "ref", "sha256", "signature")) and not hasattr(
        obj, "predict"
    )


class Fallback:
    """What answers when the model cannot: a version, a model, a callable or a constant.

    Examples
    --------
    >>> import numpy as np
    >>> Fallback(0).answer("predict", np.ones((2, 3)), None)
    array([0, 0])
    >>> Fallback(lambda X: X[:, 0] * 2).answer("predict", np.ones((2, 3)), None)
    array([2., 2.])
    """

    def __init__(self, spec: Any) -> None:
        self.spec = spec
        self.model: Any = None
        self.fn: Callable[[np.ndarray], Any] | None = None
        self.constant: np.ndarray | None = None
        if is_model_version(spec):
            self.model = spec.load()
            self.label = f"fallback {spec.ref}"
        elif hasattr(spec, "predict"):
            self.model = spec
            self.label = f"fallback {type(spec).__name__}"
        elif callable(spec):
            self.fn = spec
            self.label = f"fallback {getattr(spec, '__name__', 'callable')}"
        else:
            self.constant = np.asarray(spec)
            self.label = f"fallback {spec!r}"
            if self.constant.ndim > 1:
                raise InvalidParameterError(
                    f"The 'fallback' parameter of {_DEPLOYER} must be a ModelVersion, a model, a "
                    "callable, a scalar (for predict) or a 1-D row of class probabilities (for "
                    f"predict_proba). Got an array of shape {self.constant.shape} instead."
                )

    def answer(self, method: str, X: np.ndarray, signature: Signature | None) -> np.ndarray:
        n = X.shape[0]
        if self.model is not None:
            fn = getattr(self.model, method, None)
            if fn is None:
                raise DeploymentError(f"The {self.label} model has no {method}.")
            frame = signature is not None and signature.input_type == "dataframe"
            out = np.asarray(fn(signature.to_model_input(X) if frame and signature else X))
        elif self.fn is not None:
            out = np.asarray(self.fn(X))
            if out.ndim == 0:
                out = np.full(n, out.item())
        else:
            const = self.constant
            assert const is not None
            if method == "predict" and const.ndim == 0:
                out = np.full(n, const.item())
            elif method == "predict_proba" and const.ndim == 1:
                out = np.tile(const, (n, 1))
            else:
                raise DeploymentError(
                    f"The constant {self.label} cannot answer {method}: give a scalar for "
                    "predict, a 1-D row of probabilities for predict_proba."
                )
        if out.shape[:1] != (n,):
            raise DeploymentError(f"The {self.label} returned {out.shape} for {n} rows.")
        return out
