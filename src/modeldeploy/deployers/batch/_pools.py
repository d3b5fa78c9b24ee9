"""What runs in the workers of a batch run, and the pools that run it.

`_Scorer` validates and predicts one chunk; it is shipped once to each worker (shared by
threads, loaded from one ``joblib.dump`` file by worker processes, scattered to Dask workers).
The pools (serial, threads, loky processes, Dask) start chunks and hand back futures, and
`_MonitorFeed` passes samples of the scored chunks to a monitor off the hot path, and
`_CaptureFeed` every scored row to a capture sink. The
public face is [`BatchDeployer`][modeldeploy.BatchDeployer].
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import os
import queue
import shutil
import tempfile
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from modeldeploy.deployers.batch._inputs import ChunkRef, LoadedRef, _is_dataframe
from modeldeploy.exceptions import SchemaError
from modeldeploy.registry.signature import Signature
from modeldeploy.typing import CaptureSink, MonitorSink

logger = logging.getLogger("modeldeploy.batch")

#: The class these internals serve, as named in error messages.
_OWNER = "BatchDeployer"
#: Model families whose predict runs in C without the GIL, so threads scale.
_GIL_FREE_MODULES = ("sklearn.", "xgboost.", "lightgbm.", "catboost.", "onnxruntime")


# ---------------------------------------------------------------------- scoring (in workers)


@dataclass
class _Failure:
    kind: str  # "schema" or "model"
    message: str
    row: int | None = None  # within the chunk
    column: str | None = None
    cause: BaseException | None = None


@dataclass
class _Scored:
    index: int
    start: int
    stop: int
    y: np.ndarray | None = None
    ids: dict[str, np.ndarray] | None = None
    seconds: float = 0.0
    failure: _Failure | None = None
    sample: tuple[Any, np.ndarray, np.ndarray | None, Any] | None = None
    #: Hash of the chunk's rows as read (when asked for), kept in the checkpoint.
    digest: str | None = None


class _Scorer:
    """Validation and prediction of one chunk; shipped once to each worker."""

    def __init__(
        self,
        model: Any,
        signature: Signature | None,
        method: str,
        monitor_rows: int,
        *,
        fast: Any = None,
    ) -> None:
        self.model = model
        self.signature = signature
        self.method = method
        self.monitor_rows = monitor_rows
        #: A verified FastPath serving this model, used when it is accepted.
        self.fast = fast if fast is not None and fast.is_fast else None

    def validate(self, X: Any) -> Any:
        """``X`` as a validated array (or, for a bare DataFrame-trained model, a DataFrame)."""
        if self.signature is not None:
            return self.signature.validate(X)
        names = getattr(self.model, "feature_names_in_", None)
        if _is_dataframe(X):
            if names is None:
                return X.to_numpy()
            missing = [n for n in names if n not in X.columns]
            if missing:
                raise SchemaError(
                    f"Missing feature column {missing[0]!r}: the model was fitted on "
                    f"{list(names)[:8]}; got columns {[str(c) for c in X.columns][:8]}.",
                    column=str(missing[0]),
                )
            return X[list(names)]
        arr = np.asarray(X)
        if arr.ndim == 1:
            arr = arr.reshape(1, -1) if arr.shape[0] != 1 else arr.reshape(-1, 1)
        n_in = getattr(self.model, "n_features_in_", None)
        if arr.ndim != 2 or (n_in is not None and arr.shape[1] != n_in):
            raise SchemaError(
                f"Expected rows of {n_in if n_in is not None else 'the same number of'} "
                f"features; got an array of shape {arr.shape}."
            )
        return arr

    def to_model_input(self, X: Any) -> Any:
        if self.signature is not None:
            return self.signature.to_model_input(X)
        names = getattr(self.model, "feature_names_in_", None)
        if names is not None and not _is_dataframe(X):
            import pandas as pd  # a model fitted on a DataFrame means pandas is installed

            return pd.DataFrame(X, columns=list(names))
        return X

    def predict(self, X: Any) -> np.ndarray:
        return np.asarray(getattr(self.model, self.method)(X))

    def score(self, checked: Any) -> tuple[np.ndarray, Any]:
        """Predictions for validated rows, and the model input (None when the fast path served)."""
        if self.fast is not None:
            return np.asarray(getattr(self.fast, self.method)(checked)), None
        X = self.to_model_input(checked)
        return self.predict(X), X

    def __call__(self, ref: ChunkRef, fingerprint: bool = False) -> _Scored:
        """Score one chunk; ``fingerprint`` also hashes its rows (for a checkpoint)."""
        t0 = time.perf_counter()
        try:
            chunk = ref.load()
        except SchemaError as exc:
            failure = _Failure("schema", str(exc), exc.row, exc.column, exc)
            return _Scored(ref.index, ref.start, ref.stop, failure=failure)
        n = chunk.n_rows
        done = _Scored(chunk.index, chunk.start, chunk.stop, ids=chunk.ids)
        if fingerprint:
            done.digest = chunk.digest()
        if n == 0:
            return done
        try:
            checked = self.validate(chunk.X)
        except SchemaError as exc:
            done.failure = _Failure("schema", str(exc), exc.row, exc.column, exc)
            return done
        try:
            y, X = self.score(checked)
        except Exception as exc:
            done.failure = _Failure("model", f"{type(exc).__name__}: {exc}", cause=exc)
            return done
        if y.shape[:1] != (n,):
            done.failure = _Failure(
                "model", f"model.{self.method} returned shape {y.shape} for {n} rows"
            )
            return done
        done.y = y
        done.seconds = time.perf_counter() - t0
        if self.monitor_rows:
            if X is None:
                X = self.to_model_input(checked)
            done.sample = self._sample(chunk.index, chunk.start, checked, X, y, chunk.ids)
        return done

    def _sample(
        self, index: int, start: int, checked: Any, X: Any, y: np.ndarray, ids: Any
    ) -> tuple[Any, np.ndarray, np.ndarray | None, Any]:
        n = y.shape[0]
        rng = np.random.default_rng(index)
        rows = np.sort(rng.choice(n, size=min(n, self.monitor_rows), replace=False))
        X_s = checked.iloc[rows] if _is_dataframe(checked) else checked[rows]
        proba = None
        y_s = y[rows]
        if self.method == "predict_proba":
            proba = y_s
            classes = getattr(self.model, "classes_", None)
            y_s = (
                np.argmax(proba, axis=1)
                if classes is None
                else np.asarray(classes)[np.argmax(proba, axis=1)]
            )
        elif hasattr(self.model, "predict_proba"):
            try:
                proba = np.asarray(
                    self.model.predict_proba(X.iloc[rows] if _is_dataframe(X) else X[rows])
                )
            except Exception:  # a regressor pipeline may expose predict_proba and refuse it
                proba = None
        id_s = (start + rows) if not ids else np.asarray(next(iter(ids.values())))[rows]
        return X_s, y_s, proba, id_s


_WORKER_SCORERS: dict[str, _Scorer] = {}


def _score_from_file(path: str, ref: ChunkRef, fingerprint: bool = False) -> _Scored:
    """Entry point in a worker process: load the scorer once per run, then score."""
    scorer = _WORKER_SCORERS.get(path)
    if scorer is None:
        _WORKER_SCORERS.clear()  # one run's model at a time per worker
        import joblib

        scorer = joblib.load(path, mmap_mode="r")
        _WORKER_SCORERS[path] = scorer
    return scorer(ref, fingerprint)


def _score_remote(scorer: _Scorer, ref: ChunkRef, fingerprint: bool = False) -> _Scored:
    """Entry point on a Dask worker (the scorer arrives scattered, once)."""
    return scorer(ref, fingerprint)


# ---------------------------------------------------------------------- pools


class _Pool(ABC):
    workers = 1

    @abstractmethod
    def submit(self, ref: ChunkRef, fingerprint: bool = False) -> Any:
        """Start scoring a chunk (``fingerprint``: and hashing its rows); return a future."""

    def wait(self, futures: Sequence[Any]) -> set[Any]:
        """Block until at least one future is done; return the done ones."""
        done, _ = cf.wait(futures, return_when=cf.FIRST_COMPLETED)
        return done

    def close(self) -> None:  # noqa: B027 - most pools have nothing to release
        """Release the workers' resources."""


class _SerialPool(_Pool):
    def __init__(self, scorer: _Scorer) -> None:
        self.scorer = scorer

    def submit(self, ref: ChunkRef, fingerprint: bool = False) -> Any:
        fut: cf.Future[_Scored] = cf.Future()
        try:
            fut.set_result(self.scorer(ref, fingerprint))
        except Exception as exc:
            fut.set_exception(exc)
        return fut


class _ThreadPool(_Pool):
    def __init__(self, scorer: _Scorer, workers: int) -> None:
        self.scorer = scorer
        self.workers = workers
        self.executor = cf.ThreadPoolExecutor(workers, thread_name_prefix="modeldeploy-batch")

    def submit(self, ref: ChunkRef, fingerprint: bool = False) -> Any:
        return self.executor.submit(self.scorer, ref, fingerprint)

    def close(self) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)


class _ProcessPool(_Pool):
    def __init__(self, scorer: _Scorer, workers: int) -> None:
        import joblib
        from joblib.externals.loky import get_reusable_executor

        self.workers = workers
        self.tmp = tempfile.mkdtemp(prefix="modeldeploy-batch-")
        self.path = os.path.join(self.tmp, "scorer.joblib")
        joblib.dump(scorer, self.path)
        self.executor = get_reusable_executor(max_workers=workers)

    def submit(self, ref: ChunkRef, fingerprint: bool = False) -> Any:
        return self.executor.submit(_score_from_file, self.path, ref, fingerprint)

    def close(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


class _DaskPool(_Pool):
    def __init__(self, scorer: _Scorer, client: Any) -> None:
        self.client = client
        info = client.scheduler_info()
        self.workers = max(1, sum(w.get("nthreads", 1) for w in info["workers"].values()))
        # hash=False: a key of our own, never shared with (and released by) another run.
        self.scorer = client.scatter(scorer, broadcast=True, hash=False)
        self.scattered: dict[Any, Any] = {}

    def submit(self, ref: ChunkRef, fingerprint: bool = False) -> Any:
        payload: Any = ref
        if isinstance(ref, LoadedRef):
            # Data already in the caller: ship it as data, not inside the task graph.
            payload = self.client.scatter(ref, hash=False)
        fut = self.client.submit(_score_remote, self.scorer, payload, fingerprint, pure=False)
        if payload is not ref:
            self.scattered[fut.key] = payload  # released (by dropping it) once scored
        return fut

    def wait(self, futures: Sequence[Any]) -> set[Any]:
        from distributed import wait

        done = wait(list(futures), return_when="FIRST_COMPLETED").done  # type: ignore[no-untyped-call]
        for fut in done:
            self.scattered.pop(fut.key, None)
        return set(done)

    def close(self) -> None:
        # Dropping the futures releases the data and the model on the cluster.
        self.scattered.clear()
        self.scorer = None


def _releases_gil(model: Any) -> bool:
    steps = getattr(model, "steps", None)
    if isinstance(steps, list) and steps:
        return all(_releases_gil(s[1]) for s in steps if s[1] not in (None, "passthrough"))
    return type(model).__module__.startswith(_GIL_FREE_MODULES)


# ---------------------------------------------------------------------- monitor feed


class _MonitorFeed:
    """Hands scored chunks to a monitor from a background thread; drops when it lags."""

    def __init__(self, monitor: MonitorSink, version: str | None) -> None:
        self.monitor = monitor
        self.version = version
        self.dropped = 0
        self._queue: queue.Queue[tuple[str, Any] | None] = queue.Queue(maxsize=32)
        self._thread = threading.Thread(
            target=self._work, name="modeldeploy-batch-monitor", daemon=True
        )
        self._thread.start()

    def put(self, kind: str, payload: Any) -> None:
        try:
            self._queue.put_nowait((kind, payload))
        except queue.Full:
            self.dropped += 1

    def _work(self) -> None:
        while (item := self._queue.get()) is not None:
            kind, payload = item
            try:
                if kind == "error":
                    self.monitor.log_error(payload, version=self.version)
                else:
                    X, y, proba, ids, latency = payload
                    self.monitor.log_predictions(
                        X, y, ids=ids, y_proba=proba, version=self.version, latency_s=latency
                    )
            except Exception:
                logger.warning("The monitor raised; batch scoring goes on.", exc_info=True)

    def close(self, timeout: float = 10.0) -> None:
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:  # pragma: no cover - a monitor stuck for the whole timeout
            return
        self._thread.join(timeout)
        if self.dropped:
            logger.warning(
                "The monitor fell behind: %d scored chunks were not handed to it.", self.dropped
            )


# ---------------------------------------------------------------------- capture feed


class _CaptureFeed:
    """Hands every scored row to a [`CaptureSink`][modeldeploy.typing.CaptureSink] (which queues it
    and writes it in the background); its failures are logged, never raised."""

    def __init__(self, capture: CaptureSink, version: str | None, method: str, model: Any):
        self.capture = capture
        self.version = version
        self.method = method
        self.classes = getattr(model, "classes_", None)

    def new_ids(self, n: int) -> Any:
        return self.capture.new_ids(n)

    def put(self, X: Any, y: np.ndarray, ids: Any) -> None:
        try:
            if self.method == "predict_proba":
                self.capture.record(
                    X, None, ids=ids, y_proba=y, version=self.version, classes=self.classes
                )
            else:
                self.capture.record(X, y, ids=ids, version=self.version)
        except Exception:
            logger.warning("The capture raised; batch scoring goes on.", exc_info=True)
