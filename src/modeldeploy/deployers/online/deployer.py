"""Real-time predictions in the caller's process: [`OnlineDeployer`][modeldeploy.OnlineDeployer]."""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Mapping
from time import perf_counter
from typing import Any, ClassVar, Literal, TypedDict, overload

import numpy as np
from typing_extensions import Unpack

from modeldeploy._clock import as_clock
from modeldeploy._config import (
    DEFAULT_ALIAS,
    DEFAULT_BACKGROUND_QUEUE_SIZE,
    DEFAULT_BREAKER_COOLDOWN_S,
    DEFAULT_BREAKER_THRESHOLD,
    DEFAULT_INLINE_MAX_MS,
    DEFAULT_MAX_BATCH_SIZE,
    DEFAULT_MAX_WAIT_MS,
    DEFAULT_POLL_S,
    DEFAULT_WARMUP_TIMEOUT_S,
)
from modeldeploy._validation import (
    check_callable,
    check_choice,
    check_float,
    check_instance,
    check_int,
)
from modeldeploy.deployers._stats import DeployerStats, LatencyRecorder
from modeldeploy.deployers.base import Deployer
from modeldeploy.deployers.online._batcher import (
    BatcherClosedError,
    Batching,
    BatchTimeoutError,
    MicroBatcher,
    failed_on_own_rows,
)
from modeldeploy.deployers.online._feed import MonitorFeed
from modeldeploy.deployers.online._follow import AliasFollower
from modeldeploy.deployers.online._slots import _OWNER, SlotFactory, _Route, _Slot
from modeldeploy.deployers.online.traffic import (
    Canary,
    CircuitOpenError,
    DeploymentEvent,
    EventCallback,
    Fallback,
    Shadow,
)
from modeldeploy.exceptions import (
    DeploymentError,
    InvalidParameterError,
    PredictionTimeoutError,
    SchemaError,
)
from modeldeploy.registry.signature import Signature
from modeldeploy.typing import CaptureSink, Clock, MonitorSink

__all__ = ["OnlineDeployer", "OnlineOptions"]

logger = logging.getLogger("modeldeploy.deployers.online")


class OnlineOptions(TypedDict, total=False):
    """The keyword arguments of [`OnlineDeployer`][modeldeploy.OnlineDeployer] that
    [`OnlineDeployer.follow`][modeldeploy.OnlineDeployer.follow] passes
    on (so that ``mypy --strict`` catches a misspelled one)."""

    signature: Signature | None
    max_batch_size: int
    max_wait_ms: float
    timeout_ms: float | None
    inline_max_ms: float
    fallback: Any
    monitor: MonitorSink | None
    capture: CaptureSink | None
    breaker_threshold: int
    breaker_cooldown_s: float
    warm: bool
    warmup_timeout_s: float | None
    fast_path: Literal["off", "auto", "require"]
    on_event: EventCallback | None
    name: str | None
    clock: Clock | None


class OnlineDeployer(Deployer):
    """Real-time predictions: validated, micro-batched, hot-swappable, with canary, shadow and
    fallback.

    Safe to call from many threads and from asyncio. Concurrent requests share model calls
    (up to ``max_batch_size`` rows, waiting at most ``max_wait_ms``); a lone request runs at
    once. Building the deployer loads the model and warms it on rows drawn from the signature's
    profile, so the first request pays for neither.

    Admin calls ([`stats`][modeldeploy.OnlineDeployer.stats],
    [`configure`][modeldeploy.OnlineDeployer.configure], [`swap`][modeldeploy.OnlineDeployer.swap],
    the canary and shadow methods, `close`) never wait for a model call: loading, compiling and
    warming a model happen outside the deployer's lock, which is only taken to install the result.
    When two swaps overlap, the one called last wins.

    Parameters
    ----------
    model
        A registry ``ModelVersion`` (validated against its signature, loaded with ``load()``) or
        any object with ``predict(X)``.
    signature
        The input schema; for a bare model without one, the first request's shape defines it.
    max_batch_size
        Most rows per model call. Change it at runtime with
        [`configure`][modeldeploy.OnlineDeployer.configure].
    max_wait_ms
        Longest a request waits for others to share its model call. A lone caller never waits.
    timeout_ms
        When given, a request that gets no answer within this many milliseconds gets the
        fallback, or [`PredictionTimeoutError`][modeldeploy.exceptions.PredictionTimeoutError].
        Model calls then run on helper threads, which costs a thread hand-off per call.
    inline_max_ms
        ``apredict`` callers: a batch of an event loop's requests whose model call is expected
        (from the calls so far) to take at most this many milliseconds runs on the loop itself,
        saving two thread wake-ups; longer ones run on a helper thread while the loop goes on.
        Only a verified compiled fast path without ``timeout_ms`` ever runs on the loop
        (``0``: never). See "Serving asyncio" in the online guide for how the default was
        chosen.
    fallback
        What answers when the model raises, times out or is cut off by the breaker: another
        ``ModelVersion``, a model, a callable of the validated batch, or a constant (a scalar for
        ``predict``, a row of probabilities for ``predict_proba``). Without one, the request
        raises [`DeploymentError`][modeldeploy.exceptions.DeploymentError] with the cause attached.
    monitor
        A [`MonitorSink`][modeldeploy.typing.MonitorSink] (such as ``Monitor``) that receives every
        scored request from a background thread; a slow or failing monitor never slows or fails
        a prediction (when its queue is full, batches are dropped and counted).
    capture
        A [`CaptureSink`][modeldeploy.typing.CaptureSink] (such as
        [`PredictionCapture`][modeldeploy.monitoring.PredictionCapture]) that gets every answered
        request (ids, version, predictions, probabilities of ``predict_proba``, features) to
        write in the background. A request without ``ids`` gets fresh ones from the capture
        (``capture.last_ids()`` in the calling thread), which the monitor gets too.
    breaker_threshold, breaker_cooldown_s
        After this many consecutive failures a model is skipped for this many seconds.
    warm
        Warm each model up on ``signature.example()`` rows before it serves.
    warmup_timeout_s
        Longest a warm-up (at construction, [`swap`][modeldeploy.OnlineDeployer.swap],
        [`set_canary`][modeldeploy.OnlineDeployer.set_canary],
        [`set_shadow`][modeldeploy.OnlineDeployer.set_shadow], or following an alias) may take; a
        model that does not finish in time is refused with
        [`DeploymentError`][modeldeploy.exceptions.DeploymentError] and its call is abandoned on a
        daemon thread (counted in ``stats().abandoned_calls``). Default: ``timeout_ms`` when given,
        else ``DEFAULT_WARMUP_TIMEOUT_S`` (30 s).
    fast_path
        ``"auto"`` (the default) serves each model, at load and at every swap, through a
        compiled predictor verified to answer exactly like it (see
        [`compile_fast_path`][modeldeploy.fastpath.compile_fast_path]: numpy for linear models,
        ONNX Runtime for tree ensembles with ``modeldeploy[fast]``), and through the model
        itself when none passes the check; ``"require"`` raises instead; ``"off"`` always calls
        the model. Compiling takes from milliseconds (linear) to about half a second (a forest).
    on_event
        Called with a [`DeploymentEvent`][modeldeploy.deployers.DeploymentEvent] for every change
        of what serves: swaps (also those following an alias), canary and shadow changes, and
        the breaker opening or closing. Its exceptions are logged, never raised.
    name
        A label for a bare model in stats (a version's label is its ``ref``, ``"churn:3"``).
    clock
        Where the deployer reads time (a [`Clock`][modeldeploy.typing.Clock], e.g.
        [`FakeClock`][modeldeploy.testing.FakeClock]): the breaker's cool-down, alias polling and
        the time of each [`DeploymentEvent`][modeldeploy.deployers.DeploymentEvent]. Latencies,
        ``max_wait_ms`` and ``timeout_ms`` stay on the real clock: they measure and bound real
        model calls. Default: the system clock.

    Notes
    -----
    Closing (`close`, or leaving a ``with`` block) stops serving, following and the
    background threads; calling it twice is fine. Requests not yet inside a model call fail at
    once with [`DeploymentError`][modeldeploy.exceptions.DeploymentError]; requests inside one get
    its answer (or their ``timeout_ms``). Closing waits for no model call: queued shadow copies are
    scored in the background if the shadow answers, and the monitor gets what was queued for it
    (waiting at most a few seconds for a stuck monitor).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.linear_model import LogisticRegression
    >>> from modeldeploy import Signature
    >>> X = np.array([[0.0, 1.0], [1.0, 0.0], [0.2, 0.9], [0.9, 0.1]])
    >>> model = LogisticRegression().fit(X, [0, 1, 0, 1])
    >>> with OnlineDeployer(model, signature=Signature.infer(X), name="demo") as dep:
    ...     dep.predict([0.95, 0.05])
    ...     dep.predict(X).tolist()
    ...     dep.stats().primary.requests
    array([1])
    [0, 1, 0, 1]
    2
    """

    #: Many concurrent callers: they share model calls through the micro-batcher.
    check_params: ClassVar[Mapping[str, Any]] = {"threads": 16}

    def __init__(
        self,
        model: Any,
        *,
        signature: Signature | None = None,
        max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
        max_wait_ms: float = DEFAULT_MAX_WAIT_MS,
        timeout_ms: float | None = None,
        inline_max_ms: float = DEFAULT_INLINE_MAX_MS,
        fallback: Any = None,
        monitor: MonitorSink | None = None,
        capture: CaptureSink | None = None,
        breaker_threshold: int = DEFAULT_BREAKER_THRESHOLD,
        breaker_cooldown_s: float = DEFAULT_BREAKER_COOLDOWN_S,
        warm: bool = True,
        warmup_timeout_s: float | None = None,
        fast_path: Literal["off", "auto", "require"] = "auto",
        on_event: EventCallback | None = None,
        name: str | None = None,
        clock: Clock | None = None,
    ) -> None:
        super().__init__(signature=signature, name=name or _OWNER)
        self.clock = as_clock(clock, _OWNER)
        batching = Batching(
            max_batch_size=max_batch_size,
            max_wait_ms=max_wait_ms,
            timeout_ms=timeout_ms,
            inline_max_ms=inline_max_ms,
            owner=_OWNER,
        )
        self.timeout_ms = batching.timeout_ms
        self.inline_max_ms = batching.inline_max_ms
        self.breaker_threshold = check_int(
            breaker_threshold, "breaker_threshold", _OWNER, min_value=1
        )
        self.breaker_cooldown_s = check_float(
            breaker_cooldown_s, "breaker_cooldown_s", _OWNER, min_value=0
        )
        if monitor is not None:
            check_instance(
                monitor, MonitorSink, "monitor", _OWNER,
                expected="an object with log_predictions and log_error methods (a MonitorSink) "
                "or None",
            )  # fmt: skip
        self.monitor = monitor
        if capture is not None:
            check_instance(
                capture, CaptureSink, "capture", _OWNER,
                expected="an object with new_ids and record methods (a CaptureSink, such as "
                "PredictionCapture) or None",
            )  # fmt: skip
        self.capture = capture
        self.warm = bool(warm)
        self.warmup_timeout_s = (
            None
            if warmup_timeout_s is None
            else check_float(
                warmup_timeout_s, "warmup_timeout_s", _OWNER, min_value=0, min_inclusive=False
            )
        )
        if self.warmup_timeout_s is not None:
            warmup_bound_s = self.warmup_timeout_s
        elif self.timeout_ms is not None:
            warmup_bound_s = self.timeout_ms / 1e3
        else:
            warmup_bound_s = DEFAULT_WARMUP_TIMEOUT_S
        if on_event is not None:
            check_callable(on_event, "on_event", _OWNER, expected="a callable or None")
        self.on_event = on_event
        check_choice(fast_path, "fast_path", _OWNER, ("off", "auto", "require"))
        self.fast_path = fast_path
        self._admin = threading.RLock()
        # Swaps are numbered when called; a swap installs only if no later one did already.
        self._swaps_called = 0
        self._swap_installed = 0
        self._follower: AliasFollower | None = None
        self._batching = batching
        self._slots = SlotFactory(
            batching=batching,
            fast_path=fast_path,
            warm=self.warm,
            warmup_bound_s=warmup_bound_s,
            breaker_threshold=self.breaker_threshold,
            breaker_cooldown_s=self.breaker_cooldown_s,
            clock=self.clock,
            on_breaker=self._breaker_changed,
        )
        self.fallback = None if fallback is None else Fallback(fallback)
        self._fallback_recorder = (
            None if self.fallback is None else LatencyRecorder(self.fallback.label, "fallback")
        )
        self._feed = None if monitor is None else MonitorFeed(monitor)
        try:
            primary = self._slots.make(model, signature, "primary", name=name)
        except BaseException:
            if self._feed is not None:
                self._feed.close(timeout=0)
            batching.close()
            raise
        self.signature = primary.signature
        self._route = _Route(primary, primary.signature)

    @property
    def supports_proba(self) -> bool:
        """Whether the primary answers ``predict_proba``."""
        return self._route.primary.has_proba

    @property
    def max_batch_size(self) -> int:
        """Most rows per model call (change it with
        [`configure`][modeldeploy.OnlineDeployer.configure])."""
        return self._batching.max_batch_size

    @property
    def max_wait_ms(self) -> float:
        """Longest a request waits for others (change it with
        [`configure`][modeldeploy.OnlineDeployer.configure])."""
        return self._batching.max_wait_ms

    # ------------------------------------------------------------------ alternative constructor

    @classmethod
    def follow(
        cls,
        registry: Any,
        name: str,
        alias: str = DEFAULT_ALIAS,
        /,
        *,
        poll_s: float = DEFAULT_POLL_S,
        **kwargs: Unpack[OnlineOptions],
    ) -> OnlineDeployer:
        """Serve ``registry.get(name, alias=alias)`` and swap whenever the alias moves.

        A background thread polls the registry every ``poll_s`` seconds; when the alias points
        at another version (or the same number with another sha256), the new version is loaded,
        warmed and swapped in. Every replica that follows the same alias of a shared registry
        thus follows a promotion or a rollback by itself. [`poll`][modeldeploy.OnlineDeployer.poll]
        checks at once.

        Parameters
        ----------
        registry
            A [`ModelRegistry`][modeldeploy.ModelRegistry] (anything with ``get(name, alias=...)``).
        name, alias
            The model and the alias to follow (positional: ``name=`` among ``kwargs`` names the
            deployer, as for [`OnlineDeployer`][modeldeploy.OnlineDeployer]).
        poll_s
            Seconds between two checks.
        **kwargs
            Passed to [`OnlineDeployer`][modeldeploy.OnlineDeployer] (the keys of `OnlineOptions`).
        """
        poll_s = check_float(poll_s, "poll_s", f"{_OWNER}.follow", min_value=0, min_inclusive=False)
        dep = cls(registry.get(name, alias=alias), **kwargs)
        follower = AliasFollower(
            registry,
            name,
            alias,
            current=lambda: dep._route.primary.version,
            swap=lambda version, reason: dep._swap(version, None, None, reason=reason),
            clock=dep.clock,
        )
        dep._follower = follower
        follower.start(poll_s)
        return dep

    def poll(self) -> bool:
        """Check the followed alias now; swap and return True if it moved.

        A following deployer serves its alias: a manual [`swap`][modeldeploy.OnlineDeployer.swap]
        lasts until the next poll.
        """
        if self._follower is None:
            raise InvalidParameterError(
                f"This {_OWNER} follows no alias; build it with OnlineDeployer.follow(registry, "
                "name, alias) to poll."
            )
        return self._follower.poll()

    # ------------------------------------------------------------------ predictions

    @overload
    def predict(
        self, X: Any, *, ids: Any = ..., key: Any = ..., return_version: Literal[False] = ...
    ) -> np.ndarray: ...

    @overload
    def predict(
        self, X: Any, *, ids: Any = ..., key: Any = ..., return_version: Literal[True]
    ) -> tuple[np.ndarray, str]: ...

    def predict(
        self, X: Any, *, ids: Any = None, key: Any = None, return_version: bool = False
    ) -> np.ndarray | tuple[np.ndarray, str]:
        """Predict one row (1-D array, dict, one-row DataFrame) or a batch.

        Parameters
        ----------
        X
            The request.
        ids
            One id per row, handed to the monitor so that labels arriving later find their
            prediction.
        key
            A request key (user id, session id, ...): with a canary, the same key always goes to
            the same version.
        return_version
            Also return the label of what answered: the version (``"churn:3"``, the canary's
            during a canary, the new one right after a swap) or the fallback
            (``"fallback churn:2"``).

        Returns
        -------
        numpy.ndarray or tuple
            One prediction per row; with ``return_version=True``, ``(predictions, version)``.

        Raises
        ------
        SchemaError
            When ``X`` does not match the signature (this caller only).
        DeploymentError
            When the model fails and there is no fallback (the cause is chained).
        PredictionTimeoutError
            When the model does not answer within ``timeout_ms`` and there is no fallback.
        """
        return self._serve_request("predict", X, ids, key, return_version)

    @overload
    def predict_proba(
        self, X: Any, *, ids: Any = ..., key: Any = ..., return_version: Literal[False] = ...
    ) -> np.ndarray: ...

    @overload
    def predict_proba(
        self, X: Any, *, ids: Any = ..., key: Any = ..., return_version: Literal[True]
    ) -> tuple[np.ndarray, str]: ...

    def predict_proba(
        self, X: Any, *, ids: Any = None, key: Any = None, return_version: bool = False
    ) -> np.ndarray | tuple[np.ndarray, str]:
        """Class probabilities, one row per row of ``X`` (see
        [`predict`][modeldeploy.OnlineDeployer.predict])."""
        return self._serve_request("predict_proba", X, ids, key, return_version)

    @overload
    async def apredict(
        self, X: Any, *, ids: Any = ..., key: Any = ..., return_version: Literal[False] = ...
    ) -> np.ndarray: ...

    @overload
    async def apredict(
        self, X: Any, *, ids: Any = ..., key: Any = ..., return_version: Literal[True]
    ) -> tuple[np.ndarray, str]: ...

    async def apredict(
        self, X: Any, *, ids: Any = None, key: Any = None, return_version: bool = False
    ) -> np.ndarray | tuple[np.ndarray, str]:
        """[`predict`][modeldeploy.OnlineDeployer.predict] for asyncio, batched on the event loop.

        The requests of the coroutines of one loop queue together and are scored as one batch;
        their answers are handed back on the loop, with no thread hand-off per request. A batch
        runs on the loop itself when it is a verified compiled fast path expected to take at
        most ``inline_max_ms`` (and there is no ``timeout_ms``), else on one helper thread
        while the loop goes on. Validation, canary and shadow routing, timeouts, fallback,
        stats and the monitor behave as for [`predict`][modeldeploy.OnlineDeployer.predict].
        Cancelling the awaiting task withdraws its request and touches no other.
        """
        out, label = await self._aserve_request("predict", X, ids, key)
        return (out, label) if return_version else out

    @overload
    async def apredict_proba(
        self, X: Any, *, ids: Any = ..., key: Any = ..., return_version: Literal[False] = ...
    ) -> np.ndarray: ...

    @overload
    async def apredict_proba(
        self, X: Any, *, ids: Any = ..., key: Any = ..., return_version: Literal[True]
    ) -> tuple[np.ndarray, str]: ...

    async def apredict_proba(
        self, X: Any, *, ids: Any = None, key: Any = None, return_version: bool = False
    ) -> np.ndarray | tuple[np.ndarray, str]:
        """[`predict_proba`][modeldeploy.OnlineDeployer.predict_proba] for asyncio (see
        [`apredict`][modeldeploy.OnlineDeployer.apredict])."""
        out, label = await self._aserve_request("predict_proba", X, ids, key)
        return (out, label) if return_version else out

    def predict_batch(self, X: np.ndarray) -> Any:
        """Answer an already validated batch (micro-batched, with fallback)."""
        return self._serve_request("predict", X, None, None)

    def predict_proba_batch(self, X: np.ndarray) -> Any:
        """Probabilities for an already validated batch."""
        return self._serve_request("predict_proba", X, None, None)

    def validate(self, X: Any) -> np.ndarray:
        """Check a request against the current signature; return it as a 2-D array."""
        sig = self._route.signature
        if sig is None:
            sig = self._infer_signature(X)
        return sig.validate(X)

    # ------------------------------------------------------------------ changing what serves

    def swap(
        self, model: Any, *, signature: Signature | None = None, warm: bool | None = None
    ) -> None:
        """Replace the primary model with zero downtime.

        The new model is loaded and warmed first (a failure leaves the current one serving);
        then one atomic switch sends new requests to it, while requests already in flight finish
        on the model they started with.

        Parameters
        ----------
        model
            A ``ModelVersion`` or a model object.
        signature
            The new input schema (default: the version's, else the current one).
        warm
            Warm the model up first (default: the deployer's ``warm``).

        Raises
        ------
        DeploymentError
            When the new model fails its warm-up or does not finish it within
            ``warmup_timeout_s``; nothing is swapped. Also when the deployer was closed
            meanwhile.
        """
        self._swap(model, signature, warm, reason="")

    def _swap(
        self, model: Any, signature: Signature | None, warm: bool | None, *, reason: str
    ) -> None:
        self._check_open()
        with self._admin:
            self._swaps_called += 1
            ticket = self._swaps_called
        slot = self._slots.make(
            model, signature, "primary", warm=warm, default_signature=self._route.signature
        )
        with self._admin:
            self._check_open()
            if ticket < self._swap_installed:
                logger.info(
                    "%s: swap to %s superseded by a later swap; not installed",
                    self.name,
                    slot.label,
                )
                return
            self._swap_installed = ticket
            old = self._route
            if slot.signature is None and old.signature is not None:
                slot.set_signature(old.signature)
            if old.primary is not slot:
                old.primary.recorder.role = "retired"
            slot.recorder.role = "primary"
            self._route = old.replace(primary=slot, signature=slot.signature)
            self.signature = slot.signature
        logger.info("%s swapped %s -> %s", self.name, old.primary.label, slot.label)
        self._emit("swapped", slot.label, previous=old.primary.label, reason=reason)

    def set_canary(
        self,
        model: Any,
        fraction: float,
        *,
        signature: Signature | None = None,
        warm: bool | None = None,
    ) -> None:
        """Send ``fraction`` of the requests to a candidate (sticky by ``key=`` when given).

        Requests with a key go to the candidate when the key's stable hash falls below
        ``fraction``, so a user sees one version throughout; requests without a key are drawn
        at random. The candidate takes the primary's validated input, so its signature must
        have the same features.
        """
        self._check_open()
        fraction = check_float(
            fraction, "fraction", f"{_OWNER}.set_canary", min_value=0, max_value=1
        )
        slot = self._slots.make(
            model, signature, "canary", warm=warm, default_signature=self._route.signature
        )
        with self._admin:
            self._check_open()
            self._check_same_features(slot, "canary")
            self._route = self._route.replace(canary=Canary(slot, fraction))
        logger.info("%s sends %.3g of its traffic to canary %s", self.name, fraction, slot.label)
        self._emit("canary_started", slot.label, fraction=fraction)

    def clear_canary(self) -> None:
        """Stop the canary: every request goes to the primary again."""
        with self._admin:
            canary = self._route.canary
            if canary is None:
                return
            canary.target.recorder.role = "retired"
            self._route = self._route.replace(canary=None)
        self._emit("canary_stopped", canary.target.label)

    def promote_canary(self) -> None:
        """Make the canary the primary (already loaded and warm), and end the canary."""
        with self._admin:
            canary = self._route.canary
            if canary is None:
                raise InvalidParameterError(
                    f"This {_OWNER} has no canary to promote; set one with set_canary()."
                )
            old = self._route.primary
            old.recorder.role = "retired"
            canary.target.recorder.role = "primary"
            self._route = self._route.replace(primary=canary.target, canary=None)
        logger.info("%s promoted canary %s over %s", self.name, canary.target.label, old.label)
        self._emit("canary_promoted", canary.target.label, previous=old.label)

    def set_shadow(
        self,
        model: Any,
        sample: float = 1.0,
        *,
        signature: Signature | None = None,
        warm: bool | None = None,
        max_queue: int = DEFAULT_BACKGROUND_QUEUE_SIZE,
    ) -> None:
        """Score a sampled copy of the traffic with a candidate in the background.

        Its answers are compared with the primary's (``stats()`` shows the agreement) and never
        returned; its errors never reach a caller. When the background queue (``max_queue``
        requests) is full, copies are dropped and counted rather than slowing callers down.
        """
        self._check_open()
        sample = check_float(sample, "sample", f"{_OWNER}.set_shadow", min_value=0, max_value=1)
        max_queue = check_int(max_queue, "max_queue", f"{_OWNER}.set_shadow", min_value=1)
        slot = self._slots.make(
            model, signature, "shadow", warm=warm, default_signature=self._route.signature
        )
        with self._admin:
            self._check_open()
            self._check_same_features(slot, "shadow")
            shadow = Shadow(slot.call, slot.recorder, sample=sample, maxsize=max_queue)
            previous = self._route.shadow
            self._route = self._route.replace(shadow=shadow)
        if previous is not None:
            previous.close(timeout=0)
        logger.info("%s shadows %.3g of its traffic to %s", self.name, sample, slot.label)
        self._emit("shadow_started", slot.label, sample=sample)

    def clear_shadow(self) -> None:
        """Stop shadowing (the queued copies are still scored)."""
        with self._admin:
            shadow = self._route.shadow
            if shadow is None:
                return
            shadow.recorder.role = "retired"
            self._route = self._route.replace(shadow=None)
        shadow.close(timeout=0)
        self._emit("shadow_stopped", shadow.recorder.label)

    def configure(
        self, *, max_batch_size: int | None = None, max_wait_ms: float | None = None
    ) -> None:
        """Change the batching settings at runtime; queued requests see the new ones."""
        self._slots.configure(max_batch_size=max_batch_size, max_wait_ms=max_wait_ms)

    # ------------------------------------------------------------------ state

    def fast_path_report(self) -> Any:
        """The primary's ``FastPathReport`` (which predictor serves and why), or None when off."""
        fast = self._route.primary.fast
        return None if fast is None else fast.report

    @property
    def version(self) -> str:
        """Label of the primary (``"churn:3"`` for a registry version)."""
        return self._route.primary.label

    def stats(self) -> DeployerStats:
        """Traffic, errors, fallbacks and latency percentiles, per version, side by side.

        The primary comes first, then the canary, the shadow, the fallback and retired
        versions (the most recent few).
        """
        route = self._route
        live = [route.primary.recorder]
        if route.canary is not None:
            live.append(route.canary.target.recorder)
        if route.shadow is not None:
            live.append(route.shadow.recorder)
        if self._fallback_recorder is not None:
            live.append(self._fallback_recorder)
        rest = [r for r in self._slots.recorders() if r not in live]
        batches, rows = self._slots.batch_counts()
        return DeployerStats(
            versions=[r.snapshot() for r in live + rest],
            batches=batches,
            batched_rows=rows,
            settings={
                "max_batch_size": self.max_batch_size,
                "max_wait_ms": self.max_wait_ms,
                "timeout_ms": self.timeout_ms,
                "warmup_timeout_s": self._slots.warmup_bound_s,
            },
            abandoned_calls=self._slots.abandoned + self._batching.abandoned,
        )

    def _release(self) -> None:
        # What close() (shared by every deployer) releases here: serving, following and the
        # background threads. See "Closing" in the class docstring.
        self._slots.close()
        if self._follower is not None:
            self._follower.stop()
        route = self._route
        if route.shadow is not None:
            route.shadow.close(timeout=0)
        if self._feed is not None:
            self._feed.close()
        self._batching.close()

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until the scored requests so far reached the monitor and the shadow.

        Handing them over happens off the hot path; call this before reading the monitor when
        labels come right after the predictions (in tests, notebooks, batch jobs). Returns
        False if that took longer than ``timeout`` seconds.
        """
        done = True
        if self._feed is not None:
            done = self._feed.flush(timeout) and done
        shadow = self._route.shadow
        if shadow is not None:
            done = shadow.flush(timeout) and done
        return done

    def __repr__(self) -> str:
        route = self._route
        parts = [f"primary={route.primary.label!r}"]
        if route.canary is not None:
            parts.append(f"canary={route.canary.target.label!r} ({route.canary.fraction:.0%})")
        if route.shadow is not None:
            parts.append(f"shadow={route.shadow.recorder.label!r} ({route.shadow.sample:.0%})")
        if self.fallback is not None:
            parts.append(f"fallback={self.fallback.label.removeprefix('fallback ')!r}")
        parts.append(f"max_batch_size={self.max_batch_size}, max_wait_ms={self.max_wait_ms:g}")
        if self._closed:
            parts.append("closed")
        return f"{_OWNER}({', '.join(parts)})"

    # ------------------------------------------------------------------ helpers

    def _check_same_features(self, slot: _Slot, role: str) -> None:
        primary = self._route.signature
        if slot.signature is None:
            slot.set_signature(primary)
        elif primary is not None and slot.signature.names != primary.names:
            raise InvalidParameterError(
                f"The {role} {slot.label} takes features {slot.signature.names[:8]} but the "
                f"primary takes {primary.names[:8]}; a {role} must take the same input."
            )

    def _infer_signature(self, X: Any) -> Signature:
        with self._admin:
            route = self._route
            if route.signature is None:
                self.signature = None
                sig = super()._infer_signature(X)
                route.primary.set_signature(sig)
                self._route = route.replace(signature=sig)
            return self._route.signature  # type: ignore[return-value]

    def _emit(
        self,
        kind: str,
        version: str,
        *,
        previous: str | None = None,
        reason: str = "",
        **details: Any,
    ) -> None:
        callback = self.on_event
        if callback is None:
            return
        event = DeploymentEvent(
            kind, self.name, version, previous, reason, details, time=self.clock.now()
        )
        try:
            callback(event)
        except Exception:
            logger.exception("on_event callback failed for %r", event)

    def _breaker_changed(self, label: str, kind: str, reason: str) -> None:
        self._emit(kind, label, reason=reason)

    # ------------------------------------------------------------------ serving

    def _serve_request(
        self, method: str, X: Any, ids: Any, key: Any, with_version: bool = False
    ) -> np.ndarray | tuple[np.ndarray, str]:
        """Answer one request with ``method`` (the hot path of every predict call); with
        ``with_version``, as ``(answer, label of what answered)``."""
        t0 = perf_counter()
        route, arr, ids, slot, batcher = self._admit(method, X, ids, key)
        breaker = slot.breaker
        try:
            if breaker.open_until is not None and not breaker.allow():
                raise CircuitOpenError
            # The batcher records the answered request's latency and rows in slot.recorder.
            out = batcher.submit(arr, t0)
        except Exception as exc:
            answer = self._failed(slot, method, arr, ids, exc, t0)
            return (answer, self.fallback.label) if with_version else answer  # type: ignore[union-attr]
        self._answered(route, slot, method, arr, out, ids, t0)
        return (out, slot.label) if with_version else out

    async def _aserve_request(
        self, method: str, X: Any, ids: Any, key: Any
    ) -> tuple[np.ndarray, str]:
        """`_serve_request` on an event loop: the model call is awaited through the
        batcher's lane for this loop; returns ``(answer, label of what answered)``."""
        import asyncio  # with the first async call: asyncio is slow to import

        t0 = perf_counter()
        route, arr, ids, slot, batcher = self._admit(method, X, ids, key)
        breaker = slot.breaker
        try:
            if breaker.open_until is not None and not breaker.allow():
                raise CircuitOpenError
            # The lane records the answered request's latency and rows in slot.recorder.
            out = await batcher.submit_async(arr, t0)
        except Exception as exc:
            fallback = self.fallback
            if fallback is None or fallback.constant is not None:
                out = self._failed(slot, method, arr, ids, exc, t0)  # raises without fallback
            else:  # a fallback model or function may take long: not on the loop
                failed = functools.partial(self._failed, slot, method, arr, ids, exc, t0)
                out = await asyncio.get_running_loop().run_in_executor(None, failed)
            return out, fallback.label  # type: ignore[union-attr]
        self._answered(route, slot, method, arr, out, ids, t0)
        return out, slot.label

    def _admit(
        self, method: str, X: Any, ids: Any, key: Any
    ) -> tuple[_Route, np.ndarray, Any, _Slot, MicroBatcher]:
        """Validate a request and pick what answers it: ``(route, rows, ids, slot, batcher)``.

        Raises the caller's own error (schema, ids, closed deployer, missing method) before
        anything is queued, so a bad request never touches another caller's batch.
        """
        if self._closed:
            self._check_open()
        route = self._route
        sig = route.signature
        if sig is None:
            sig = self._infer_signature(X)
            route = self._route
        try:
            arr = sig.validate(X)
            if not arr.shape[0]:
                raise SchemaError(
                    "Expected at least one row; got an empty request. Skip the call when there "
                    "is nothing to predict."
                )
        except SchemaError:
            route.primary.recorder.count("rejected")
            raise
        if ids is not None:
            ids = self._check_ids(ids, arr.shape[0])
        elif self.capture is not None:
            ids = self.capture.new_ids(arr.shape[0])
        slot = route.primary
        canary = route.canary
        if canary is not None and canary.pick(key):
            slot = canary.target
        batcher = slot.batchers.get(method)
        if batcher is None:
            raise DeploymentError(
                f"The model {slot.label} has no {method}; call predict instead, or deploy a "
                f"model that has {method}."
            )
        return route, arr, ids, slot, batcher

    def _answered(
        self,
        route: _Route,
        slot: _Slot,
        method: str,
        arr: np.ndarray,
        out: Any,
        ids: Any,
        t0: float,
    ) -> None:
        """After a model answered: close the breaker, offer shadow, monitor and capture."""
        if slot.breaker.failures:
            slot.breaker.success()
        shadow = route.shadow
        if shadow is not None:
            shadow.offer(method, arr, out)
        worker = self._feed
        if worker is not None and not worker.offer(
            (method, arr, out, ids, slot, perf_counter() - t0)
        ):
            slot.recorder.count("dropped")
        if self.capture is not None:
            self._capture(method, arr, out, ids, slot.label, slot.model)

    def _capture(
        self, method: str, arr: np.ndarray, out: Any, ids: Any, label: str, model: Any
    ) -> None:
        """Hand one answered request to the capture; its failures never fail the request."""
        capture = self.capture
        assert capture is not None
        try:
            if method == "predict_proba":
                classes = getattr(model, "classes_", None)
                capture.record(arr, None, ids=ids, y_proba=out, version=label, classes=classes)
            else:
                capture.record(arr, out, ids=ids, version=label)
        except Exception:
            logger.warning("the capture failed on one request; predictions go on", exc_info=True)

    @staticmethod
    def _check_ids(ids: Any, rows: int) -> Any:
        if np.ndim(ids) == 0:
            ids = [ids]
        if len(ids) != rows:
            raise InvalidParameterError(
                f"The 'ids' parameter of {_OWNER}.predict must hold one id per row ({rows}). "
                f"Got {len(ids)} ids instead."
            )
        return ids

    def _failed(
        self,
        slot: _Slot,
        method: str,
        arr: np.ndarray,
        ids: Any,
        exc: Exception,
        t0: float,
    ) -> np.ndarray:
        """Count a failure, then answer from the fallback or raise the documented error."""
        if isinstance(exc, BatcherClosedError):  # not the model's fault: closed while queued
            raise DeploymentError(
                f"{self.name} was closed before this request reached {slot.label}; it was not "
                "answered. Send it to a deployer that is open."
            ) from exc
        rec = slot.recorder
        if isinstance(exc, CircuitOpenError):
            rec.count("short_circuited")
        else:
            if isinstance(exc, BatchTimeoutError):
                rec.count("timeouts")
            if not failed_on_own_rows(exc):
                # The model answered the rest of this request's batch: only these rows fail.
                slot.breaker.failure(answered=rec.answered)
        rec.count("errors")
        worker = self._feed
        if worker is not None and not isinstance(exc, CircuitOpenError):
            worker.offer(("error", exc, slot.label))
        fallback = self.fallback
        if fallback is not None:
            try:
                out = fallback.answer(method, arr, self._route.signature)
            except Exception as fexc:
                raise DeploymentError(
                    f"{slot.label} failed ({self._describe(exc, self.timeout_ms)}) and its "
                    f"{fallback.label} failed too: {type(fexc).__name__}: {fexc}"
                ) from fexc
            rec.count("fallbacks")
            latency = perf_counter() - t0
            assert self._fallback_recorder is not None
            self._fallback_recorder.record(latency, arr.shape[0])
            if worker is not None:
                worker.offer((method, arr, out, ids, None, latency))
            if self.capture is not None:
                self._capture(method, arr, out, ids, "fallback", None)
            return out
        if isinstance(exc, BatchTimeoutError):
            raise PredictionTimeoutError(
                f"{slot.label} did not answer within timeout_ms={self.timeout_ms:g}. Give the "
                "deployer a fallback= to answer meanwhile, or raise timeout_ms."
            ) from exc
        if isinstance(exc, CircuitOpenError):
            raise DeploymentError(
                f"{slot.label} failed {slot.breaker.failures} times in a row, so its circuit "
                f"breaker skips it for {self.breaker_cooldown_s:g} s. Give the deployer a "
                "fallback=, or swap in a working model."
            ) from exc
        raise DeploymentError(
            f"{slot.label} failed on a batch of {arr.shape[0]} rows: {type(exc).__name__}: "
            f"{exc}. Give the deployer a fallback= to answer meanwhile."
        ) from exc

    @staticmethod
    def _describe(exc: BaseException, timeout_ms: float | None) -> str:
        if isinstance(exc, BatchTimeoutError):
            return f"no answer within timeout_ms={timeout_ms:g}"
        if isinstance(exc, CircuitOpenError):
            return "its circuit breaker is open"
        return f"{type(exc).__name__}: {exc}"
