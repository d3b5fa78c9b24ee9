"""How :class:`~modeldeploy.deployers.online.OnlineDeployer` answers one request.

The request is validated against the route's signature, sent to the primary or the canary
through its micro-batcher (unless its circuit breaker is open), copied to the shadow and handed
to the monitor off the hot path. When the model fails, the failure is counted (toward the
breaker too, unless the model answered other requests meanwhile: then the rows are at fault),
handed to the monitor, then answered from the fallback or turned into the documented error with
its cause chained.
"""

from __future__ import annotations

from time import perf_counter
from typing import TYPE_CHECKING, Any

import numpy as np

from modeldeploy.deployers.online._batcher import (
    BatcherClosedError,
    BatchTimeoutError,
    failed_on_own_rows,
)
from modeldeploy.deployers.online._slots import _OWNER, _Slot
from modeldeploy.deployers.online.traffic import CircuitOpenError
from modeldeploy.exceptions import (
    DeploymentError,
    InvalidParameterError,
    PredictionTimeoutError,
    SchemaError,
)

if TYPE_CHECKING:
    from modeldeploy.deployers.online.deployer import OnlineDeployer


def _serve_online(dep: OnlineDeployer, method: str, X: Any, ids: Any, key: Any) -> np.ndarray:
    """Answer one request of ``dep`` with ``method`` (the hot path of every predict call)."""
    t0 = perf_counter()
    if dep._closed:
        dep._check_open()
    route = dep._route
    sig = route.signature
    if sig is None:
        sig = dep._infer_signature(X)
        route = dep._route
    try:
        arr = sig.validate(X)
        if arr.shape[0] == 0:
            raise SchemaError(
                "Expected at least one row; got an empty request. Skip the call when there "
                "is nothing to predict."
            )
    except SchemaError:
        route.primary.recorder.count("rejected")
        raise
    if ids is not None:
        ids = _check_ids(ids, arr.shape[0])
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
    breaker = slot.breaker
    try:
        if breaker.open_until is not None and not breaker.allow():
            raise CircuitOpenError
        out = batcher.submit(arr)
    except Exception as exc:
        return _failed(dep, slot, method, arr, ids, exc, t0)
    if breaker.failures:
        breaker.success()
    latency = perf_counter() - t0
    slot.recorder.record(latency, arr.shape[0])
    shadow = route.shadow
    if shadow is not None:
        shadow.offer(method, arr, out)
    worker = dep._monitor_worker
    if worker is not None and not worker.offer((method, arr, out, ids, slot, latency)):
        slot.recorder.count("dropped")
    return out  # type: ignore[no-any-return]


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
    dep: OnlineDeployer,
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
            f"{dep.name} was closed before this request reached {slot.label}; it was not "
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
    worker = dep._monitor_worker
    if worker is not None and not isinstance(exc, CircuitOpenError):
        worker.offer(("error", exc, slot.label))
    fallback = dep.fallback
    if fallback is not None:
        try:
            out = fallback.answer(method, arr, dep._route.signature)
        except Exception as fexc:
            raise DeploymentError(
                f"{slot.label} failed ({_describe(exc, dep.timeout_ms)}) and its "
                f"{fallback.label} failed too: {type(fexc).__name__}: {fexc}"
            ) from fexc
        rec.count("fallbacks")
        latency = perf_counter() - t0
        assert dep._fallback_recorder is not None
        dep._fallback_recorder.record(latency, arr.shape[0])
        if worker is not None:
            worker.offer((method, arr, out, ids, None, latency))
        return out
    if isinstance(exc, BatchTimeoutError):
        raise PredictionTimeoutError(
            f"{slot.label} did not answer within timeout_ms={dep.timeout_ms:g}. Give the "
            "deployer a fallback= to answer meanwhile, or raise timeout_ms."
        ) from exc
    if isinstance(exc, CircuitOpenError):
        raise DeploymentError(
            f"{slot.label} failed {slot.breaker.failures} times in a row, so its circuit "
            f"breaker skips it for {dep.breaker_cooldown_s:g} s. Give the deployer a "
            "fallback=, or swap in a working model."
        ) from exc
    raise DeploymentError(
        f"{slot.label} failed on a batch of {arr.shape[0]} rows: {type(exc).__name__}: "
        f"{exc}. Give the deployer a fallback= to answer meanwhile."
    ) from exc


def _describe(exc: BaseException, timeout_ms: float | None) -> str:
    if isinstance(exc, BatchTimeoutError):
        return f"no answer within timeout_ms={timeout_ms:g}"
    if isinstance(exc, CircuitOpenError):
        return "its circuit breaker is open"
    return f"{type(exc).__name__}: {exc}"
