"""What an [`OnlineDeployer`][modeldeploy.OnlineDeployer] serves: slots and routes.

A slot is one loaded model with its signature, micro-batchers, circuit breaker, stats recorder
and (when one passes the check) its compiled fast path; a route says which slots answer. The
`SlotFactory` builds slots (load, fast path, warm-up, batchers), keeps the recent ones by
label, and keeps a registry version's compiled fast path as an attachment so that replicas do
not recompile it.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from modeldeploy._validation import check_instance
from modeldeploy.deployers._stats import LatencyRecorder
from modeldeploy.deployers.base import Deployer
from modeldeploy.deployers.online._batcher import Batching, MicroBatcher, _answers
from modeldeploy.deployers.online.traffic import Breaker, Canary, Shadow, is_model_version
from modeldeploy.exceptions import DeploymentError, InvalidParameterError, ModelDeployError
from modeldeploy.fastpath import fast_path_key as _fast_path_key
from modeldeploy.registry.signature import Signature
from modeldeploy.registry.version import ModelVersion
from modeldeploy.typing import Clock

if TYPE_CHECKING:
    from modeldeploy.fastpath import FastPath

# Logged under the deployer's own name, which the online guide documents.
logger = logging.getLogger("modeldeploy.deployers.online")

_OWNER = "OnlineDeployer"
_MAX_KEPT_VERSIONS = 16


class _Slot:
    """One served model: its batchers, breaker and stats."""

    def __init__(
        self,
        model: Any,
        label: str,
        signature: Signature | None,
        recorder: LatencyRecorder,
        breaker: Breaker,
        version: Any = None,
        fast: Any = None,
    ) -> None:
        self.model = model
        self.label = label
        self.version = version
        self.recorder = recorder
        self.breaker = breaker
        # A verified FastPath answers for the model when given; it takes validated arrays.
        self.fast = fast
        self.runner = model if fast is None else fast
        if isinstance(model, Deployer):
            # Every Deployer has a predict_proba method (and so has a fast path serving it
            # natively); the deployer says whether that method answers.
            self.has_proba = bool(model.supports_proba)
        elif fast is not None:
            self.has_proba = bool(fast.has_predict_proba)
        else:
            self.has_proba = callable(getattr(model, "predict_proba", None))
        self.batchers: dict[str, MicroBatcher] = {}
        self._to_input: Callable[[np.ndarray], Any] | None = None
        self.set_signature(signature)

    def set_signature(self, signature: Signature | None) -> None:
        self.signature = signature
        needs_frame = signature is not None and signature.input_type == "dataframe"
        if needs_frame and signature is not None and self.fast is None:
            self._to_input = signature.to_model_input
        else:
            self._to_input = None
        for method, batcher in self.batchers.items():
            batcher.fn = self.model_fn(method)

    def model_fn(self, method: str) -> Callable[[np.ndarray], Any]:
        """The model's method, fed what it was trained on (a bound method when that is X)."""
        if self._to_input is None:
            return getattr(self.runner, method)  # type: ignore[no-any-return]
        return functools.partial(self.call, method)

    def call(self, method: str, X: np.ndarray) -> Any:
        to_input = self._to_input
        return getattr(self.runner, method)(X if to_input is None else to_input(X))

    def make_batchers(self, batching: Batching) -> None:
        methods = ("predict", "predict_proba") if self.has_proba else ("predict",)
        # Only a verified compiled predictor may run on an event loop: its cost is known and
        # steady, and it holds no lock a model of the user's might.
        inline = self.fast is not None and bool(self.fast.is_fast)
        for method in methods:
            self.batchers[method] = batching.make(
                self.model_fn(method), name=self.label, recorder=self.recorder, inline=inline
            )

    def close(self) -> None:
        """Fail the requests queued for this model at once (see ``MicroBatcher.close``)."""
        for batcher in list(self.batchers.values()):
            batcher.close()


class _Route:
    """Where requests go; replaced whole (one attribute store) on every change."""

    __slots__ = ("canary", "primary", "shadow", "signature")

    def __init__(
        self,
        primary: _Slot,
        signature: Signature | None,
        canary: Canary | None = None,
        shadow: Shadow | None = None,
    ) -> None:
        self.primary = primary
        self.signature = signature
        self.canary = canary
        self.shadow = shadow

    def replace(self, **changes: Any) -> _Route:
        kw = {k: getattr(self, k) for k in self.__slots__}
        kw.update(changes)
        return _Route(**kw)


class SlotFactory:
    """Turns what the user deploys into a served slot: loaded, validated, compiled, warmed,
    batched; and keeps the slots and stats of the most recent versions by label.

    Building a slot takes as long as the model makes it (loading, compiling, warming up), so it
    happens outside any lock; the factory's own lock is taken only for the short steps that
    touch its tables, never while it calls out.

    Parameters
    ----------
    batching
        Makes each slot's micro-batchers with the deployer's current settings.
    fast_path
        ``"off"``, ``"auto"`` or ``"require"`` (see ``OnlineDeployer``).
    warm, warmup_bound_s
        Whether to warm each model up by default, and the longest a warm-up may take.
    breaker_threshold, breaker_cooldown_s, clock
        The circuit breaker of each slot.
    on_breaker
        Called as ``on_breaker(label, kind, reason)`` when a slot's breaker opens or closes.
    """

    def __init__(
        self,
        *,
        batching: Batching,
        fast_path: Literal["off", "auto", "require"],
        warm: bool,
        warmup_bound_s: float,
        breaker_threshold: int,
        breaker_cooldown_s: float,
        clock: Clock,
        on_breaker: Callable[[str, str, str], None],
    ) -> None:
        self.batching = batching
        self.fast_path = fast_path
        self.warm = warm
        self.warmup_bound_s = warmup_bound_s
        self.breaker_threshold = breaker_threshold
        self.breaker_cooldown_s = breaker_cooldown_s
        self.clock = clock
        self.on_breaker = on_breaker
        self._lock = threading.Lock()
        self._recorders: dict[str, LatencyRecorder] = {}
        self._slots: dict[str, _Slot] = {}
        self._bare = 0
        #: Warm-ups given up on a daemon thread because they took too long.
        self.abandoned = 0

    def make(
        self,
        spec: Any,
        signature: Signature | None,
        role: str,
        *,
        name: str | None = None,
        warm: bool | None = None,
        default_signature: Signature | None = None,
    ) -> _Slot:
        """Load, compile, warm and batch one model, and keep its stats by label.

        Raises
        ------
        InvalidParameterError
            When ``spec`` is neither a ``ModelVersion`` nor a model, or ``signature`` is not a
            ``Signature``.
        DeploymentError
            When the model fails its warm-up or does not finish it in time.
        """
        version = None
        if is_model_version(spec):
            version = spec
            model = spec.load()
            label = str(spec.ref)
            signature = signature if signature is not None else spec.signature
        elif hasattr(spec, "predict"):
            model = spec
            if name is None:
                with self._lock:
                    self._bare += 1
                    # A served Deployer is known by its own name; a model by its class.
                    known = spec.name if isinstance(spec, Deployer) else type(spec).__name__
                    name = f"{known}-{self._bare}"
            label = name
            if signature is None and isinstance(spec, Deployer):
                # A deployer served by another checks the same schema it was built with.
                signature = spec.signature
        else:
            raise InvalidParameterError(
                f"The model given to {_OWNER} must be a ModelVersion or an object with "
                f"predict(X). Got {spec!r} instead."
            )
        if signature is not None:
            check_instance(
                signature, Signature, "signature", _OWNER, expected="a Signature or None"
            )
        if signature is None:
            signature = default_signature
        fast = None
        if self.fast_path != "off":
            try:
                fast = _fast_path_for(self.fast_path, model, signature, version, label)
            except Exception:
                if self.fast_path == "require":
                    raise
                # "auto" is never worse than the model itself, even if compiling breaks.
                logger.warning("%s: no fast path, serving the model itself", label, exc_info=True)
            else:
                logger.info("%s: %s", label, fast.report)
        with self._lock:
            recorder = self._recorders.get(label) or LatencyRecorder(label, role)
        breaker = Breaker(
            self.breaker_threshold,
            self.breaker_cooldown_s,
            label,
            functools.partial(self.on_breaker, label),
            self.clock,
        )
        slot = _Slot(model, label, signature, recorder, breaker, version, fast)
        if (self.warm if warm is None else warm) and signature is not None:
            self._warm_up(slot, signature)
        with self._lock:
            # Batchers are made under the lock so that a concurrent configure() reaches them.
            slot.make_batchers(self.batching)
            self._recorders.pop(label, None)
            recorder.role = role
            self._recorders[label] = recorder
            while len(self._recorders) > _MAX_KEPT_VERSIONS:
                del self._recorders[next(iter(self._recorders))]
            self._slots.pop(label, None)
            self._slots[label] = slot
            while len(self._slots) > _MAX_KEPT_VERSIONS:
                del self._slots[next(iter(self._slots))]
        return slot

    def recorders(self) -> list[LatencyRecorder]:
        """The stats of the kept versions, oldest first."""
        with self._lock:
            return list(self._recorders.values())

    def batch_counts(self) -> tuple[int, int]:
        """Model calls and rows of the kept slots' batchers."""
        with self._lock:
            batchers = [b for s in self._slots.values() for b in s.batchers.values()]
        return sum(b.batches for b in batchers), sum(b.rows for b in batchers)

    def configure(self, *, max_batch_size: int | None, max_wait_ms: float | None) -> None:
        """Change the batching settings of the kept slots and of those made later."""
        with self._lock:
            batchers = [b for s in self._slots.values() for b in s.batchers.values()]
            self.batching.configure(
                batchers, max_batch_size=max_batch_size, max_wait_ms=max_wait_ms
            )

    def close(self) -> None:
        """Fail the requests queued for any kept slot at once."""
        with self._lock:
            slots = list(self._slots.values())
        for slot in slots:
            slot.close()

    def _warm_up(self, slot: _Slot, signature: Signature) -> None:
        """Call the model on rows drawn from its signature, within the warm-up bound.

        The calls run on a daemon thread: a model that hangs cannot be stopped in CPython, so
        the thread is abandoned (and counted in `abandoned`) and the version refused.
        """
        example = signature.example(8)
        rows = int(example.shape[0])
        outcome: list[BaseException | None] = []

        def run() -> None:
            try:
                _answers(slot.call("predict", example), rows, slot.label)
                if slot.has_proba:
                    _answers(slot.call("predict_proba", example), rows, slot.label)
            except BaseException as exc:  # handed to the deploying thread
                outcome.append(exc)
            else:
                outcome.append(None)

        bound_s = self.warmup_bound_s
        name = f"modeldeploy-warmup-{slot.label}"
        thread = threading.Thread(target=run, name=name, daemon=True)
        thread.start()
        thread.join(bound_s)
        if not outcome:
            with self._lock:
                self.abandoned += 1
            raise DeploymentError(
                f"{slot.label} did not finish its warm-up on {rows} rows drawn from its "
                f"signature within {bound_s:g} s; it was not deployed and its call was abandoned "
                "on a daemon thread. Fix the model, raise warmup_timeout_s (or timeout_ms), or "
                "pass warm=False."
            )
        exc = outcome[0]
        if exc is not None:
            raise DeploymentError(
                f"{slot.label} failed its warm-up on {rows} rows drawn from its signature "
                f"({type(exc).__name__}: {exc}); it was not deployed."
            ) from exc


def _fast_path_for(
    mode: Literal["off", "auto", "require"],
    model: Any,
    signature: Signature | None,
    version: Any,
    label: str,
) -> FastPath:
    """Compile (or, for a registry version, reuse) the verified fast path of a model.

    A registry-backed version keeps its compiled fast path as an attachment, keyed by the
    library versions it was compiled with, so a replica does not recompile at start; the
    first compile of a version is recorded in the registry history.
    """
    from modeldeploy.fastpath import FastPath, compile_fast_path

    bound = isinstance(version, ModelVersion) and version.registry is not None
    stored = version if bound else None
    key = _fast_path_key() if stored is not None else None
    if stored is not None and key is not None:
        try:
            data = stored.attachment(key)
            if data is not None:
                return FastPath.from_bytes(
                    data, model, signature=signature, mode=mode, verify=False
                )
        except ModelDeployError as exc:  # a stale or damaged attachment: compile again
            logger.warning("%s: stored fast path not used (%s); compiling", label, exc)
    fast = compile_fast_path(model, signature=signature, mode=mode, measure=False)
    if stored is not None and key is not None:
        try:
            # Refusals are stored too: the first compile of a version is the one recorded in the
            # history, and replicas find the attachment instead of scanning the history.
            stored.attach(key, fast.to_bytes())
            stored.record_event(
                "fast_path",
                reason=f"{fast.report.served_by}: {fast.report.reason}",
                details={"key": key, **fast.report.to_dict()},
            )
        except ModelDeployError as exc:  # a read-only registry still serves
            logger.warning("%s: could not store the fast path (%s)", label, exc)
    return fast
