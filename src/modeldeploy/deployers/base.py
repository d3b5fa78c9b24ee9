"""The extension point for deployers: [`Deployer`][modeldeploy.Deployer], and
[`FunctionDeployer`][modeldeploy.FunctionDeployer]."""

from __future__ import annotations

import abc
import functools
import threading
from collections.abc import Callable, Mapping
from time import perf_counter
from types import TracebackType
from typing import Any, ClassVar

import numpy as np
from typing_extensions import Self

from modeldeploy._validation import check_callable, check_instance
from modeldeploy.deployers._stats import DeployerStats, LatencyRecorder
from modeldeploy.exceptions import DeploymentError, InvalidParameterError, SchemaError
from modeldeploy.registry.signature import Signature

__all__ = ["Closeable", "Deployer", "FunctionDeployer"]


def _as_sample(X: Any) -> Any:
    """A request turned into something [`Signature.infer`][modeldeploy.Signature.infer] reads (a 2-D
    sample)."""
    if isinstance(X, dict):
        return [X]
    if isinstance(X, np.ndarray) and X.ndim == 1:
        return X.reshape(1, -1)
    flat = isinstance(X, (list, tuple)) and X and not isinstance(X[0], (list, tuple, dict))
    if flat and not isinstance(X[0], np.ndarray):
        return np.asarray([X])
    return X


class Closeable:
    """What every deployer shares: `close` once, and the context manager that calls it.

    A subclass releases what it holds (threads, pools, files) in `_release`, which runs
    once, on the first `close`, after `closed` turned True (so new work is refused
    while it releases). Calling `close` again, from any thread, does nothing.

    Examples
    --------
    >>> class Holder(Closeable):
    ...     def _release(self):
    ...         print("released")
    >>> with Holder() as held:
    ...     held.closed
    False
    released
    >>> held.close()
    >>> held.closed
    True
    """

    def __init__(self) -> None:
        self._closed = False
        self._close_lock = threading.Lock()

    @property
    def closed(self) -> bool:
        """Whether `close` was called."""
        return self._closed

    def close(self) -> None:
        """Stop serving and release what is held. Calling it twice is fine."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        self._release()

    def _release(self) -> None:
        """Release threads, pools and files; runs once, on the first `close`."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class Deployer(Closeable, abc.ABC):
    """Base class of deployers: validation, stats, sync and asyncio calls, closing.

    A subclass overrides one method, [`predict_batch`][modeldeploy.Deployer.predict_batch], which
    answers a batch already validated against the signature (a 2-D array in the registered column
    order). It may also override [`predict_proba_batch`][modeldeploy.Deployer.predict_proba_batch].
    The base class validates requests, counts them, measures their latency, turns model failures
    into [`DeploymentError`][modeldeploy.exceptions.DeploymentError], offers ``apredict`` for
    asyncio, and is a context manager whose exit calls `close`.

    Parameters
    ----------
    signature
        The input schema. When ``None``, it is inferred from the first request's shape (so the
        first request defines the columns every later one must have).
    name
        How the deployer names its model in stats and errors.

    Examples
    --------
    >>> import numpy as np
    >>> class Doubler(Deployer):
    ...     def predict_batch(self, X):
    ...         return X[:, 0] * 2
    >>> with Doubler() as dep:
    ...     dep.predict(np.array([[1.0, 5.0], [2.0, 5.0]]))
    array([2., 4.])
    >>> dep.closed
    True
    """

    #: Keyword arguments of :func:`~modeldeploy.checks.check_deployer` this class is held to
    #: (e.g. ``{"threads": 16}``); each built-in names its own, and the tests pass them on.
    check_params: ClassVar[Mapping[str, Any]] = {}

    def __init__(self, *, signature: Signature | None = None, name: str | None = None) -> None:
        if signature is not None:
            check_instance(
                signature, Signature, "signature", type(self).__name__,
                expected="a Signature or None",
            )  # fmt: skip
        super().__init__()
        self.signature = signature
        self.name = name if name is not None else type(self).__name__
        self._infer_lock = threading.Lock()
        self._recorder = LatencyRecorder(self.name, "primary")

    # ------------------------------------------------------------------ to override

    @abc.abstractmethod
    def predict_batch(self, X: np.ndarray) -> Any:
        """Answer a validated batch: one prediction per row of the 2-D array ``X``."""

    def predict_proba_batch(self, X: np.ndarray) -> Any:
        """Class probabilities for a validated batch; override when the model has them."""
        raise DeploymentError(
            f"{self.name} gives no probabilities: its predict_proba_batch is not implemented. "
            "Call predict instead, or override predict_proba_batch."
        )

    @property
    def supports_proba(self) -> bool:
        """Whether [`predict_proba`][modeldeploy.Deployer.predict_proba] answers.

        True when the class overrides
        [`predict_proba_batch`][modeldeploy.Deployer.predict_proba_batch] (or
        [`predict_proba`][modeldeploy.Deployer.predict_proba]); override this property when that
        depends on the instance (``FunctionDeployer`` without ``proba_fn`` gives False). An
        [`OnlineDeployer`][modeldeploy.OnlineDeployer] serving this deployer reads it: it warms up
        and offers ``predict_proba`` only when True.
        """
        cls = type(self)
        return (
            cls.predict_proba_batch is not Deployer.predict_proba_batch
            or cls.predict_proba is not Deployer.predict_proba
        )

    # ------------------------------------------------------------------ public API

    def validate(self, X: Any) -> np.ndarray:
        """Check a request against the signature; return it as a 2-D array.

        Raises
        ------
        SchemaError
            When the request does not match the signature.
        """
        sig = self.signature
        if sig is None:
            sig = self._infer_signature(X)
        return sig.validate(X)

    def predict(self, X: Any, *, ids: Any = None) -> np.ndarray:
        """Predict one row (1-D array, dict, one-row DataFrame) or a batch.

        Parameters
        ----------
        X
            The request.
        ids
            Request ids, one per row (kept for subclasses that log predictions).

        Returns
        -------
        numpy.ndarray
            One prediction per row.

        Raises
        ------
        SchemaError
            When ``X`` does not match the signature.
        DeploymentError
            When the model fails, or the deployer is closed.
        """
        return self._serve(self.predict_batch, X)

    def predict_proba(self, X: Any, *, ids: Any = None) -> np.ndarray:
        """Class probabilities, one row per row of ``X`` (see
        [`predict`][modeldeploy.Deployer.predict])."""
        return self._serve(self.predict_proba_batch, X)

    async def apredict(self, X: Any, *, ids: Any = None) -> np.ndarray:
        """[`predict`][modeldeploy.Deployer.predict] for asyncio: runs in a worker thread, never
        blocks the event loop."""
        import asyncio  # with the first async call: asyncio is slow to import

        return await asyncio.get_running_loop().run_in_executor(
            None, functools.partial(self.predict, X, ids=ids)
        )

    async def apredict_proba(self, X: Any, *, ids: Any = None) -> np.ndarray:
        """[`predict_proba`][modeldeploy.Deployer.predict_proba] for asyncio."""
        import asyncio

        return await asyncio.get_running_loop().run_in_executor(
            None, functools.partial(self.predict_proba, X, ids=ids)
        )

    def stats(self) -> DeployerStats:
        """Requests, errors and latency percentiles so far (bounded memory)."""
        return DeployerStats(versions=[self._recorder.snapshot()])

    def __repr__(self) -> str:
        state = ", closed" if self._closed else ""
        return f"{type(self).__name__}(name={self.name!r}{state})"

    def _repr_html_(self) -> str:
        return self.stats()._repr_html_()

    # ------------------------------------------------------------------ helpers

    def _check_open(self) -> None:
        if self._closed:
            raise DeploymentError(
                f"{self.name} is closed and answers no more requests. Create a new deployer."
            )

    def _infer_signature(self, X: Any) -> Signature:
        with self._infer_lock:
            if self.signature is None:
                try:
                    self.signature = Signature.infer(_as_sample(X))
                except InvalidParameterError as exc:
                    raise SchemaError(
                        f"Could not infer a signature from the first request: {exc} Pass "
                        "signature= to the deployer."
                    ) from exc
            return self.signature

    def _serve(self, fn: Callable[[np.ndarray], Any], X: Any) -> np.ndarray:
        self._check_open()
        t0 = perf_counter()
        try:
            arr = self.validate(X)
        except SchemaError:
            self._recorder.count("rejected")
            raise
        try:
            out = np.asarray(fn(arr))
        except DeploymentError:
            self._recorder.count("errors")
            raise
        except Exception as exc:
            self._recorder.count("errors")
            raise DeploymentError(
                f"{self.name} failed on a batch of {arr.shape[0]} rows: {type(exc).__name__}: {exc}"
            ) from exc
        if out.ndim == 0 or out.shape[0] != arr.shape[0]:
            self._recorder.count("errors")
            raise DeploymentError(
                f"{self.name} returned {out.shape[0] if out.ndim else 'a scalar'} answers for "
                f"{arr.shape[0]} rows; predict_batch must return one answer per row."
            )
        self._recorder.record(perf_counter() - t0, arr.shape[0])
        return out


class FunctionDeployer(Deployer):
    """Deploy a plain function of a validated 2-D array, without subclassing.

    Parameters
    ----------
    fn
        Called with each validated batch; returns one answer per row.
    proba_fn
        Optional function returning class probabilities for a batch.
    signature, name
        As for [`Deployer`][modeldeploy.Deployer] (the name defaults to the function's name).

    Examples
    --------
    >>> import numpy as np
    >>> dep = FunctionDeployer(lambda X: X.sum(axis=1), name="sum")
    >>> dep.predict([1.0, 2.0, 3.0])
    array([6.])
    >>> dep.stats().primary.requests
    1
    """

    def __init__(
        self,
        fn: Callable[[np.ndarray], Any],
        *,
        proba_fn: Callable[[np.ndarray], Any] | None = None,
        signature: Signature | None = None,
        name: str | None = None,
    ) -> None:
        check_callable(fn, "fn", "FunctionDeployer")
        if proba_fn is not None:
            check_callable(proba_fn, "proba_fn", "FunctionDeployer", expected="a callable or None")
        self.fn = fn
        self.proba_fn = proba_fn
        super().__init__(signature=signature, name=name or getattr(fn, "__name__", None))

    #: Its function is the user's: the default checks.
    check_params: ClassVar[Mapping[str, Any]] = {"threads": 8}

    def predict_batch(self, X: np.ndarray) -> Any:
        """Call ``fn`` on the batch."""
        return self.fn(X)

    @property
    def supports_proba(self) -> bool:
        """Whether a ``proba_fn`` was given."""
        return self.proba_fn is not None

    def predict_proba_batch(self, X: np.ndarray) -> Any:
        """Call ``proba_fn`` on the batch."""
        if self.proba_fn is None:
            return super().predict_proba_batch(X)
        return self.proba_fn(X)
