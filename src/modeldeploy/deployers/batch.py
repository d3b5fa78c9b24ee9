"""Batch scoring: data of any size, in chunks, in parallel or on a Dask cluster, resumable.

How a run flows::

    source ──► chunk refs ──► pool (serial | threads | loky processes | Dask) ──► caller:
    (sources.py)  (at most workers x 2 in flight)   validate + predict per chunk   parts,
                                                                                   progress,
                                                                                   monitor

Memory stays bounded because the caller never has more than ``n_workers x 2`` chunks in
flight; random-access sources (arrays, ``.npy``, Parquet on Dask) are read where they are scored.
Each worker gets the model once: threads share it, worker processes load it from one
``joblib.dump`` file (memory-mapped) the first time they see it, Dask workers receive it through
``client.scatter(..., broadcast=True)``.
"""

from __future__ import annotations

import concurrent.futures as cf
import html
import logging
import math
import os
import queue
import shutil
import tempfile
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import joblib
import numpy as np

from modeldeploy._config import (
    DEFAULT_BATCH_CHUNK_SIZE,
    DEFAULT_BATCH_FLUSH_INTERVAL_S,
    DEFAULT_BATCH_FLUSH_ROWS,
    DEFAULT_BATCH_IN_FLIGHT_PER_WORKER,
    DEFAULT_BATCH_MONITOR_ROWS,
)
from modeldeploy._validation import check_choice, check_float, check_int
from modeldeploy.deployers._checkpoint import Checkpoint, Entry
from modeldeploy.deployers.sources import (
    ChunkRef,
    LoadedRef,
    Source,
    _is_dataframe,
    open_output,
    open_source,
    output_columns,
)
from modeldeploy.exceptions import (
    DeploymentError,
    InvalidParameterError,
    MissingDependencyError,
    SchemaError,
)
from modeldeploy.registry.signature import Signature
from modeldeploy.typing import MonitorSink

__all__ = ["BatchDeployer", "BatchResult", "SkippedChunk"]

logger = logging.getLogger("modeldeploy.batch")

_OWNER = "BatchDeployer"
_BACKENDS = ("auto", "threads", "processes", "dask")
_METHODS = ("predict", "predict_proba")
#: Model families whose predict runs in C without the GIL, so threads scale.
_GIL_FREE_MODULES = ("sklearn.", "xgboost.", "lightgbm.", "catboost.", "onnxruntime")


# ---------------------------------------------------------------------- results


@dataclass(frozen=True)
class SkippedChunk:
    """A chunk left out of the output by ``on_error="skip"``.

    Attributes
    ----------
    chunk
        Index of the chunk, from 0.
    start, stop
        Global row range ``start:stop`` of the chunk.
    reason
        The error that made it skipped.
    """

    chunk: int
    start: int
    stop: int
    reason: str

    @property
    def rows(self) -> range:
        """The global row numbers of the skipped rows."""
        return range(self.start, self.stop)


@dataclass(frozen=True)
class BatchResult:
    """What a batch run did: nothing is silent.

    Attributes
    ----------
    rows
        Rows scored into the output (including those of resumed chunks).
    seconds
        Wall-clock time of this run.
    chunks
        Chunks in the source (scored, resumed, skipped or empty).
    skipped
        The chunks left out by ``on_error="skip"``, with their rows and the reason.
    output
        The output file, or ``None`` for an in-memory run.
    resumed_chunks
        Chunks taken from a checkpoint instead of being scored again.
    """

    rows: int
    seconds: float
    chunks: int
    skipped: tuple[SkippedChunk, ...] = ()
    output: Path | None = None
    resumed_chunks: int = 0

    @property
    def skipped_rows(self) -> int:
        """Number of rows in skipped chunks."""
        return sum(s.stop - s.start for s in self.skipped)

    @property
    def rows_per_second(self) -> float:
        """Scoring throughput of this run."""
        return self.rows / self.seconds if self.seconds > 0 else math.inf

    def __repr__(self) -> str:
        out = f", output={str(self.output)!r}" if self.output is not None else ""
        resumed = f", resumed_chunks={self.resumed_chunks}" if self.resumed_chunks else ""
        return (
            f"BatchResult(rows={self.rows}, chunks={self.chunks}, skipped={len(self.skipped)} "
            f"chunks / {self.skipped_rows} rows, seconds={self.seconds:.3f}{resumed}{out})"
        )

    def _repr_html_(self) -> str:
        rows = [
            ("rows scored", f"{self.rows:,}"),
            ("chunks", f"{self.chunks:,}"),
            ("seconds", f"{self.seconds:.3f}"),
            ("rows/s", f"{self.rows_per_second:,.0f}"),
            ("resumed chunks", f"{self.resumed_chunks:,}"),
            ("output", str(self.output) if self.output is not None else "in memory"),
        ]
        body = "".join(
            f"<tr><th style='text-align:left'>{k}</th><td>{html.escape(v)}</td></tr>"
            for k, v in rows
        )
        skipped = ""
        if self.skipped:
            items = "".join(
                f"<tr><td>{s.chunk}</td><td>{s.start}..{s.stop - 1}</td>"
                f"<td>{html.escape(s.reason)}</td></tr>"
                for s in self.skipped[:20]
            )
            more = f"<p>... and {len(self.skipped) - 20} more</p>" if len(self.skipped) > 20 else ""
            skipped = (
                f"<table><caption>{len(self.skipped)} skipped chunks ({self.skipped_rows:,} rows)"
                f"</caption><thead><tr><th>chunk</th><th>rows</th><th>reason</th></tr></thead>"
                f"<tbody>{items}</tbody></table>{more}"
            )
        return f"<table><caption>BatchResult</caption><tbody>{body}</tbody></table>{skipped}"


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


class _Scorer:
    """Validation and prediction of one chunk; shipped once to each worker."""

    def __init__(
        self, model: Any, signature: Signature | None, method: str, monitor_rows: int
    ) -> None:
        self.model = model
        self.signature = signature
        self.method = method
        self.monitor_rows = monitor_rows

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

    def __call__(self, ref: ChunkRef) -> _Scored:
        t0 = time.perf_counter()
        try:
            chunk = ref.load()
        except SchemaError as exc:
            failure = _Failure("schema", str(exc), exc.row, exc.column, exc)
            return _Scored(ref.index, ref.start, ref.stop, failure=failure)
        n = chunk.n_rows
        done = _Scored(chunk.index, chunk.start, chunk.stop, ids=chunk.ids)
        if n == 0:
            return done
        try:
            checked = self.validate(chunk.X)
        except SchemaError as exc:
            done.failure = _Failure("schema", str(exc), exc.row, exc.column, exc)
            return done
        X = self.to_model_input(checked)
        try:
            y = self.predict(X)
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


def _score_from_file(path: str, ref: ChunkRef) -> _Scored:
    """Entry point in a worker process: load the scorer once per run, then score."""
    scorer = _WORKER_SCORERS.get(path)
    if scorer is None:
        _WORKER_SCORERS.clear()  # one run's model at a time per worker
        scorer = joblib.load(path, mmap_mode="r")
        _WORKER_SCORERS[path] = scorer
    return scorer(ref)


def _score_remote(scorer: _Scorer, ref: ChunkRef) -> _Scored:
    """Entry point on a Dask worker (the scorer arrives scattered, once)."""
    return scorer(ref)


# ---------------------------------------------------------------------- pools


class _Pool(ABC):
    workers = 1

    @abstractmethod
    def submit(self, ref: ChunkRef) -> Any:
        """Start scoring a chunk; return a future."""

    def wait(self, futures: Sequence[Any]) -> set[Any]:
        """Block until at least one future is done; return the done ones."""
        done, _ = cf.wait(futures, return_when=cf.FIRST_COMPLETED)
        return done

    def close(self) -> None:  # noqa: B027 - most pools have nothing to release
        """Release the workers' resources."""


class _SerialPool(_Pool):
    def __init__(self, scorer: _Scorer) -> None:
        self.scorer = scorer

    def submit(self, ref: ChunkRef) -> Any:
        fut: cf.Future[_Scored] = cf.Future()
        try:
            fut.set_result(self.scorer(ref))
        except Exception as exc:
            fut.set_exception(exc)
        return fut


class _ThreadPool(_Pool):
    def __init__(self, scorer: _Scorer, workers: int) -> None:
        self.scorer = scorer
        self.workers = workers
        self.executor = cf.ThreadPoolExecutor(workers, thread_name_prefix="modeldeploy-batch")

    def submit(self, ref: ChunkRef) -> Any:
        return self.executor.submit(self.scorer, ref)

    def close(self) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)


class _ProcessPool(_Pool):
    def __init__(self, scorer: _Scorer, workers: int) -> None:
        from joblib.externals.loky import get_reusable_executor

        self.workers = workers
        self.tmp = tempfile.mkdtemp(prefix="modeldeploy-batch-")
        self.path = os.path.join(self.tmp, "scorer.joblib")
        joblib.dump(scorer, self.path)
        self.executor = get_reusable_executor(max_workers=workers)

    def submit(self, ref: ChunkRef) -> Any:
        return self.executor.submit(_score_from_file, self.path, ref)

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

    def submit(self, ref: ChunkRef) -> Any:
        payload: Any = ref
        if isinstance(ref, LoadedRef):
            # Data already in the caller: ship it as data, not inside the task graph.
            payload = self.client.scatter(ref, hash=False)
        fut = self.client.submit(_score_remote, self.scorer, payload, pure=False)
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


# ---------------------------------------------------------------------- the deployer


@dataclass
class _RunState:
    total: int | None
    pieces: dict[int, tuple[int, int, np.ndarray | None]] = field(default_factory=dict)
    #: In-memory output, allocated at the first scores when the row count is known up front.
    out: np.ndarray | None = None
    entries: dict[int, Entry] = field(default_factory=dict)
    skipped: list[SkippedChunk] = field(default_factory=list)
    rows: int = 0
    done_rows: int = 0
    columns: list[str] | None = None


class BatchDeployer:
    """Score data of any size in chunks, with bounded memory, in parallel or on Dask.

    Parameters
    ----------
    version_or_model
        A :class:`~modeldeploy.ModelVersion` (validated with its signature, loaded lazily) or
        any object with ``predict``.
    chunk_size
        Rows per chunk. Peak memory follows ``chunk_size x workers x 2`` rows, not the data.
    n_jobs
        Workers; ``None`` or ``-1`` means every CPU this process may use.
    backend
        ``"threads"`` (models whose predict releases the GIL: tree ensembles, linear algebra),
        ``"processes"`` (loky worker processes, for pure-Python models), ``"dask"`` (a
        ``dask.distributed`` cluster through ``client``) or ``"auto"``: Dask when a client is
        given, threads for scikit-learn, XGBoost, LightGBM and CatBoost models, processes
        otherwise, and no pool at all for a single chunk or ``n_jobs=1``.
    client
        A ``distributed.Client`` for the Dask backend (the default client when ``None``).
    method
        ``"predict"`` or ``"predict_proba"``.
    on_error
        ``"raise"``: a chunk failing validation or prediction raises, naming the chunk and its
        global row range. ``"skip"``: it is left out and listed in ``BatchResult.skipped``.
    monitor
        A :class:`~modeldeploy.typing.MonitorSink`; it receives a uniform sample of up to
        ``monitor_rows`` rows of every scored chunk (ids are the id column, or the global row
        numbers), from a background thread.
    progress
        Show a tqdm progress bar with rows/s (needs the ``[progress]`` extra).
    signature
        Validate against this signature instead of the version's.
    monitor_rows
        Rows per chunk sent to the monitor.
    flush_rows, flush_interval_s
        Thresholds of the scheduled batches of :meth:`submit`: score what is waiting once this
        many rows wait, or once the oldest has waited this long (``None``: only on size or
        :meth:`flush`).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.linear_model import LinearRegression
    >>> from modeldeploy.deployers.batch import BatchDeployer
    >>> X = np.arange(20.0).reshape(10, 2)
    >>> model = LinearRegression().fit(X, X @ [1.0, 2.0])
    >>> with BatchDeployer(model, chunk_size=4, n_jobs=1) as job:
    ...     preds = job.run(X)
    ...     later = job.submit(X[:2])
    >>> bool(np.allclose(preds, X @ [1.0, 2.0])), preds.shape
    (True, (10,))
    >>> job.last_result.rows, job.last_result.chunks
    (10, 3)
    >>> later.result().round(6).tolist()
    [2.0, 8.0]
    """

    def __init__(
        self,
        version_or_model: Any,
        *,
        chunk_size: int = DEFAULT_BATCH_CHUNK_SIZE,
        n_jobs: int | None = None,
        backend: str = "auto",
        client: Any = None,
        method: str = "predict",
        on_error: str = "raise",
        monitor: MonitorSink | None = None,
        progress: bool = False,
        signature: Signature | None = None,
        monitor_rows: int = DEFAULT_BATCH_MONITOR_ROWS,
        flush_rows: int = DEFAULT_BATCH_FLUSH_ROWS,
        flush_interval_s: float | None = DEFAULT_BATCH_FLUSH_INTERVAL_S,
    ) -> None:
        if not hasattr(version_or_model, "predict") and not callable(
            getattr(version_or_model, "load", None)
        ):
            raise InvalidParameterError(
                f"The 'version_or_model' parameter of {_OWNER} must be a ModelVersion or an "
                f"object with predict(X). Got {type(version_or_model).__name__} instead."
            )
        self.version_or_model = version_or_model
        self.chunk_size = check_int(chunk_size, "chunk_size", _OWNER, min_value=1)
        if n_jobs is not None and n_jobs != -1:
            check_int(n_jobs, "n_jobs", _OWNER, min_value=1)
        self.n_jobs = n_jobs
        self.backend = check_choice(backend, "backend", _OWNER, _BACKENDS)
        self.client = client
        self.method = check_choice(method, "method", _OWNER, _METHODS)
        self.on_error = check_choice(on_error, "on_error", _OWNER, ("raise", "skip"))
        if monitor is not None and not isinstance(monitor, MonitorSink):
            raise InvalidParameterError(
                f"The 'monitor' parameter of {_OWNER} must have log_predictions() and "
                f"log_error() (a modeldeploy Monitor). Got {type(monitor).__name__} instead."
            )
        self.monitor = monitor
        self.progress = bool(progress)
        if signature is not None and not isinstance(signature, Signature):
            raise InvalidParameterError(
                f"The 'signature' parameter of {_OWNER} must be a Signature or None. Got "
                f"{type(signature).__name__} instead."
            )
        self.signature = signature
        self.monitor_rows = check_int(monitor_rows, "monitor_rows", _OWNER, min_value=0)
        self.flush_rows = check_int(flush_rows, "flush_rows", _OWNER, min_value=1)
        self.flush_interval_s = (
            None
            if flush_interval_s is None
            else check_float(
                flush_interval_s, "flush_interval_s", _OWNER, min_value=0.0, min_inclusive=False
            )
        )
        #: The :class:`BatchResult` of the latest :meth:`run` (also of in-memory runs).
        self.last_result: BatchResult | None = None
        self._lock = threading.Lock()
        self._scorer: _Scorer | None = None
        self._feed: _MonitorFeed | None = None
        self._schedule: _Schedule | None = None
        self._closed = False

    # ------------------------------------------------------------------ model

    @property
    def version(self) -> str | None:
        """The served version as ``"name:version"``, or ``None`` for a bare model."""
        ref = getattr(self.version_or_model, "ref", None)
        return ref if isinstance(ref, str) else None

    def _get_scorer(self) -> _Scorer:
        with self._lock:
            if self._closed:
                raise DeploymentError(f"This {_OWNER} is closed; create a new one to score.")
            if self._scorer is None:
                target = self.version_or_model
                is_version = not hasattr(target, "predict") and callable(target.load)
                model = target.load() if is_version else target
                signature = self.signature
                if signature is None and is_version:
                    signature = getattr(target, "signature", None)
                if not hasattr(model, self.method):
                    raise InvalidParameterError(
                        f"The 'method' parameter of {_OWNER} is {self.method!r}, but the model "
                        f"({type(model).__name__}) has no such method. Use method='predict'."
                    )
                rows = self.monitor_rows if self.monitor is not None else 0
                self._scorer = _Scorer(model, signature, self.method, rows)
                if self.monitor is not None:
                    self._feed = _MonitorFeed(self.monitor, self.version)
            return self._scorer

    def _fingerprint(self, scorer: _Scorer, source: Source, ids: Sequence[str]) -> dict[str, Any]:
        target = self.version_or_model
        sha = getattr(target, "sha256", None)
        # A registered version is identified exactly; a bare model only by its kind (pickles
        # of fitted trees are not byte-stable, so they cannot be hashed): resuming trusts it.
        model = scorer.model
        model_id = (
            f"{self.version}@{sha}"
            if self.version
            else f"{type(model).__module__}.{type(model).__qualname__}"
        )
        return {
            "source": source.describe(),
            "chunk_size": self.chunk_size,
            "method": self.method,
            "model": model_id,
            "id_columns": list(ids),
        }

    # ------------------------------------------------------------------ backends

    def _workers(self) -> int:
        if self.n_jobs is None or self.n_jobs == -1:
            return max(1, int(joblib.cpu_count()))
        return self.n_jobs

    def _pool(self, scorer: _Scorer, source: Source) -> _Pool:
        if self.backend == "dask" or (self.backend == "auto" and self.client is not None):
            return _DaskPool(scorer, self._dask_client())
        workers = self._workers()
        single_chunk = source.n_rows is not None and source.n_rows <= self.chunk_size
        if workers == 1 or single_chunk:
            return _SerialPool(scorer)
        backend = self.backend
        if backend == "auto":
            backend = "threads" if _releases_gil(scorer.model) else "processes"
        if backend == "threads":
            return _ThreadPool(scorer, workers)
        return _ProcessPool(scorer, workers)

    def _dask_client(self) -> Any:
        try:
            import distributed
        except ImportError:  # pragma: no cover - installed in the test environment
            raise MissingDependencyError(
                "distributed", "dask", "BatchDeployer(backend='dask')"
            ) from None
        if self.client is not None:
            return self.client
        try:
            return distributed.get_client()
        except ValueError:
            raise InvalidParameterError(
                f"The 'client' parameter of {_OWNER} must be a distributed.Client when "
                "backend='dask' and no default client exists. Got None instead."
            ) from None

    # ------------------------------------------------------------------ running

    def run(
        self,
        source: Any,
        output: str | os.PathLike[str] | None = None,
        *,
        id_columns: Sequence[str] | None = None,
        progress: bool | None = None,
        resume: bool = False,
        callback: Callable[[int, int | None], None] | None = None,
    ) -> Any:
        """Score every row of ``source``.

        Parameters
        ----------
        source
            A numpy array, a pandas DataFrame, a path to a ``.npy``, ``.csv`` or ``.parquet``
            file, or an iterable of chunks (arrays or DataFrames).
        output
            A ``.npy``, ``.parquet`` or ``.csv`` path, written atomically at the end; ``None``
            returns the scores as an array.
        id_columns
            Columns of a DataFrame, CSV or Parquet source carried to the output (not scored).
        progress
            Show a progress bar (default: the deployer's ``progress``).
        resume
            Continue from the checkpoint a killed or failed run left next to ``output``.
        callback
            Called as ``callback(done_rows, total_rows)`` after each chunk (``total_rows`` is
            ``None`` when unknown up front, as for CSV files and iterables).

        Returns
        -------
        numpy.ndarray or BatchResult
            The scores when ``output`` is ``None`` (in source order; the run's
            :class:`BatchResult` is then in :attr:`last_result`), else the :class:`BatchResult`.

        Raises
        ------
        SchemaError
            A chunk does not match the signature (``on_error="raise"``); the message names the
            chunk, its global row range and the global row at fault.
        DeploymentError
            The model failed on a chunk (``on_error="raise"``).
        """
        t0 = time.perf_counter()
        ids = tuple(id_columns or ())
        src = open_source(source, ids)
        sink = open_output(output) if output is not None else None
        if resume and sink is None:
            raise InvalidParameterError(
                "The 'resume' parameter of BatchDeployer.run needs an output path to keep a "
                "checkpoint next to. Got output=None instead."
            )
        scorer = self._get_scorer()
        state = _RunState(total=src.n_rows)
        pool = self._pool(scorer, src)
        lazy = isinstance(pool, _DaskPool)
        limit = pool.workers * DEFAULT_BATCH_IN_FLIGHT_PER_WORKER
        checkpoint: Checkpoint | None = None
        bar: Any = None
        done: dict[int, Entry] = {}
        resumed = n_chunks = 0
        in_flight: dict[Any, ChunkRef] = {}
        try:
            if sink is not None:
                checkpoint = Checkpoint(sink, self._fingerprint(scorer, src, ids))
                done = checkpoint.open(resume=resume)
            if self.progress if progress is None else progress:
                bar = _progress_bar(src.n_rows)
            for ref in src.refs(self.chunk_size, lazy=lazy):
                n_chunks += 1
                if ref.index in done:
                    self._resumed(state, done[ref.index])
                    resumed += 1
                    self._report(state, ref.stop - ref.start, bar, callback)
                    continue
                while len(in_flight) >= limit:
                    self._collect(pool, in_flight, state, checkpoint, bar, callback)
                in_flight[pool.submit(ref)] = ref
            while in_flight:
                self._collect(pool, in_flight, state, checkpoint, bar, callback)
        except BaseException:
            for fut in in_flight:
                fut.cancel()
            if checkpoint is not None:
                checkpoint.close()  # kept on disk for resume=True
            raise
        finally:
            pool.close()
            if bar is not None:
                bar.close()
        n_rows = src.n_rows if src.n_rows is not None else state.done_rows
        if checkpoint is not None:
            checkpoint.finish(state.entries, n_rows)
        result = BatchResult(
            rows=state.rows,
            seconds=time.perf_counter() - t0,
            chunks=n_chunks,
            skipped=tuple(sorted(state.skipped, key=lambda s: s.chunk)),
            output=sink.path if sink is not None else None,
            resumed_chunks=resumed,
        )
        self.last_result = result
        logger.info("Batch run finished: %r", result)
        if sink is None:
            return self._assemble(state, n_rows)
        return result

    def _resumed(self, state: _RunState, entry: Entry) -> None:
        state.entries[entry.index] = entry
        if entry.reason is None:
            state.rows += entry.stop - entry.start
        else:
            state.skipped.append(SkippedChunk(entry.index, entry.start, entry.stop, entry.reason))

    def _report(self, state: _RunState, n: int, bar: Any, callback: Any) -> None:
        state.done_rows += n
        if bar is not None:
            bar.update(n)
        if callback is not None:
            callback(state.done_rows, state.total)

    def _collect(
        self,
        pool: _Pool,
        in_flight: dict[Any, ChunkRef],
        state: _RunState,
        checkpoint: Checkpoint | None,
        bar: Any,
        callback: Any,
    ) -> None:
        finished = []
        for fut in pool.wait(list(in_flight)):
            ref = in_flight.pop(fut)
            try:
                finished.append(fut.result())
            except Exception as exc:
                raise DeploymentError(
                    f"Chunk {ref.index} (rows {ref.start}..{ref.stop - 1}) could not be read or "
                    f"scored: {type(exc).__name__}: {exc}"
                ) from exc
        # In chunk order, and every success recorded before an error is raised, so a resumed
        # run redoes as little as possible.
        error: Exception | None = None
        for scored in sorted(finished, key=lambda s: (s.failure is not None, s.index)):
            if error is None:
                error = self._handle(scored, state, checkpoint)
                self._report(state, scored.stop - scored.start, bar, callback)
        if error is not None:
            raise error

    def _handle(
        self, s: _Scored, state: _RunState, checkpoint: Checkpoint | None
    ) -> Exception | None:
        """Record one scored chunk; return the error to raise for a failed one."""
        if s.failure is not None:
            error = _chunk_error(s, self.method)
            if self._feed is not None:
                self._feed.put("error", error)
            if self.on_error == "raise":
                return error
            logger.warning("Skipping chunk %d: %s", s.index, error)
            entry = Entry(s.index, s.start, s.stop, str(error))
            state.skipped.append(SkippedChunk(s.index, s.start, s.stop, str(error)))
            state.entries[s.index] = entry
            state.pieces[s.index] = (s.start, s.stop, None)
            if checkpoint is not None:
                checkpoint.record(entry)
            return None
        entry = Entry(s.index, s.start, s.stop)
        state.entries[s.index] = entry
        if s.y is None:  # an empty chunk
            if checkpoint is not None:
                checkpoint.record(entry)
            return None
        state.rows += s.stop - s.start
        if checkpoint is not None:
            if state.columns is None:
                state.columns = output_columns(s.y, self.method, self._classes())
            checkpoint.record(entry, s.y, s.ids, state.columns)
        else:
            if state.out is None and state.total is not None:
                state.out = np.empty((state.total, *s.y.shape[1:]), dtype=s.y.dtype)
            if state.out is not None and s.y.shape[1:] == state.out.shape[1:]:
                state.out[s.start : s.stop] = s.y  # no second copy of the scores at the end
                s.y = np.empty((0,), dtype=s.y.dtype)
            state.pieces[s.index] = (s.start, s.stop, s.y)
        if self._feed is not None and s.sample is not None:
            X_s, y_s, proba, id_s = s.sample
            self._feed.put("predictions", (X_s, y_s, proba, id_s, s.seconds))
        return None

    def _classes(self) -> Sequence[Any] | None:
        classes = getattr(self._scorer.model if self._scorer else None, "classes_", None)
        return None if classes is None else list(classes)

    def _assemble(self, state: _RunState, n_rows: int) -> np.ndarray:
        out = state.out
        placed = out is not None
        if out is None:
            ys = [y for _, _, y in state.pieces.values() if y is not None]
            if ys:
                dtype, row_shape = ys[0].dtype, ys[0].shape[1:]
            else:
                classes = self._classes()
                proba = self.method == "predict_proba" and classes is not None
                row_shape = (len(classes),) if proba and classes is not None else ()
                dtype = np.dtype(np.float64)
            out = np.empty((n_rows, *row_shape), dtype=dtype)
        if state.skipped and out.dtype.kind in "biu":
            out = out.astype(np.float64)  # skipped rows hold NaN, which ints cannot
        for start, stop, y in state.pieces.values():
            if y is None:
                out[start:stop] = np.nan if out.dtype.kind in "fc" else 0
            elif not placed or y.shape[0]:
                out[start:stop] = y
        return out

    # ------------------------------------------------------------------ scheduled batches

    def submit(self, X: Any) -> cf.Future[np.ndarray]:
        """Queue rows to be scored with others when a size or time threshold is reached.

        Parameters
        ----------
        X
            One row or a batch of rows (anything the signature accepts).

        Returns
        -------
        concurrent.futures.Future
            Resolves to the scores of these rows once their batch runs (``asyncio`` callers:
            ``await asyncio.wrap_future(fut)``). A request failing validation fails alone, at
            once, with a :class:`~modeldeploy.exceptions.SchemaError`.
        """
        with self._lock:
            if self._schedule is None:
                self._schedule = _Schedule(self)
            schedule = self._schedule
        return schedule.submit(X)

    def flush(self) -> int:
        """Score every queued request now; return how many rows were scored."""
        with self._lock:
            schedule = self._schedule
        return 0 if schedule is None else schedule.flush()

    @property
    def pending_rows(self) -> int:
        """Rows queued by :meth:`submit` and not scored yet."""
        schedule = self._schedule
        return 0 if schedule is None else schedule.pending_rows

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        """Score what :meth:`submit` queued, stop background threads. Idempotent."""
        with self._lock:
            if self._closed:
                return
            schedule, self._schedule = self._schedule, None
        if schedule is not None:
            schedule.close()
        with self._lock:
            self._closed = True
            feed, self._feed = self._feed, None
        if feed is not None:
            feed.close()

    def __enter__(self) -> BatchDeployer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        target = self.version or type(self.version_or_model).__name__
        return (
            f"BatchDeployer({target}, chunk_size={self.chunk_size}, n_jobs={self.n_jobs}, "
            f"backend={self.backend!r}, method={self.method!r}, on_error={self.on_error!r})"
        )

    def _repr_html_(self) -> str:
        target = self.version or type(self.version_or_model).__name__
        rows = [
            ("model", target),
            ("chunk_size", f"{self.chunk_size:,}"),
            ("n_jobs", str(self.n_jobs)),
            ("backend", self.backend),
            ("method", self.method),
            ("on_error", self.on_error),
            ("pending rows (submit)", f"{self.pending_rows:,}"),
        ]
        body = "".join(
            f"<tr><th style='text-align:left'>{k}</th><td>{html.escape(v)}</td></tr>"
            for k, v in rows
        )
        last = self.last_result._repr_html_() if self.last_result is not None else ""
        return f"<table><caption>BatchDeployer</caption><tbody>{body}</tbody></table>{last}"


def _chunk_error(s: _Scored, method: str) -> Exception:
    assert s.failure is not None
    f = s.failure
    where = f"Chunk {s.index} (rows {s.start}..{s.stop - 1})"
    if f.kind == "schema":
        row = None if f.row is None else s.start + f.row
        at = f" at row {row} (row {f.row} of the chunk)" if row is not None else ""
        error: Exception = SchemaError(
            f"{where} failed validation{at}: {f.message}", column=f.column, row=row
        )
    else:
        error = DeploymentError(
            f"{where} failed in model.{method}: {f.message}. Fix the data or the model, or pass "
            "on_error='skip' to leave failing chunks out and list them in the result."
        )
    error.__cause__ = f.cause
    return error


def _progress_bar(total: int | None) -> Any:
    try:
        from tqdm.auto import tqdm
    except ImportError:
        raise MissingDependencyError("tqdm", "progress", "BatchDeployer(progress=True)") from None
    return tqdm(total=total, unit="rows", unit_scale=True, desc="scoring", dynamic_ncols=True)


# ---------------------------------------------------------------------- scheduled batches


class _Schedule:
    """Requests waiting to be scored together; a background thread flushes on thresholds."""

    def __init__(self, job: BatchDeployer) -> None:
        self.job = job
        self.cond = threading.Condition()
        self.pending: list[tuple[cf.Future[np.ndarray], Any, int]] = []
        self.pending_rows = 0
        self.oldest = 0.0
        self.closing = False
        self.max_rows = job.flush_rows * 10
        self.thread = threading.Thread(
            target=self._work, name="modeldeploy-batch-schedule", daemon=True
        )
        self.thread.start()

    def submit(self, X: Any) -> cf.Future[np.ndarray]:
        fut: cf.Future[np.ndarray] = cf.Future()
        scorer = self.job._get_scorer()
        try:
            checked = scorer.validate(X)
        except SchemaError as exc:
            fut.set_exception(exc)
            return fut
        n = int(checked.shape[0])
        with self.cond:
            if self.closing:
                raise DeploymentError(f"This {_OWNER} is closed; submit to a new one.")
            while self.pending_rows >= self.max_rows and not self.closing:
                self.cond.wait()  # back-pressure: the flusher is behind
            if not self.pending:
                self.oldest = time.monotonic()
            self.pending.append((fut, checked, n))
            self.pending_rows += n
            self.cond.notify_all()
        return fut

    def _take(self) -> list[tuple[cf.Future[np.ndarray], Any, int]]:
        batch, self.pending, self.pending_rows = self.pending, [], 0
        self.cond.notify_all()
        return batch

    def _work(self) -> None:
        interval = self.job.flush_interval_s
        while True:
            with self.cond:
                while not self.closing:
                    if self.pending_rows >= self.job.flush_rows:
                        break
                    if self.pending and interval is not None:
                        left = self.oldest + interval - time.monotonic()
                        if left <= 0:
                            break
                        self.cond.wait(left)
                    else:
                        self.cond.wait()
                batch = self._take()
                stop = self.closing
            self._score(batch)
            if stop:
                return

    def flush(self) -> int:
        with self.cond:
            batch = self._take()
        return self._score(batch)

    def _score(self, batch: list[tuple[cf.Future[np.ndarray], Any, int]]) -> int:
        return self._score_running([b for b in batch if b[0].set_running_or_notify_cancel()])

    def _score_running(self, batch: list[tuple[cf.Future[np.ndarray], Any, int]]) -> int:
        if not batch:
            return 0
        scorer = self.job._get_scorer()
        t0 = time.perf_counter()
        parts = [checked for _, checked, _ in batch]
        try:
            if len(parts) == 1:
                X = parts[0]
            elif _is_dataframe(parts[0]):
                import pandas as pd

                X = pd.concat(parts, ignore_index=True)
            else:
                X = np.concatenate(parts)
            y = scorer.predict(scorer.to_model_input(X))
        except Exception as exc:
            if len(batch) == 1:
                error = DeploymentError(
                    f"model.{scorer.method} failed on a submitted batch of {batch[0][2]} rows: "
                    f"{type(exc).__name__}: {exc}"
                )
                error.__cause__ = exc
                batch[0][0].set_exception(error)
                if self.job._feed is not None:
                    self.job._feed.put("error", error)
                return 0
            # One bad request must not fail the others batched with it: score them one by one.
            return sum(self._score_running([b]) for b in batch)
        offset = 0
        for fut, _, n in batch:
            fut.set_result(y[offset : offset + n])
            offset += n
        if self.job._feed is not None:
            ids = np.arange(offset)
            self.job._feed.put("predictions", (X, y, None, ids, time.perf_counter() - t0))
        return offset

    def close(self) -> None:
        with self.cond:
            self.closing = True
            self.cond.notify_all()
        self.thread.join()
