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

The pieces live in private modules, all importable from here: ``_batch_workers`` (the chunk
scorer, the pools, the monitor feed), ``_batch_run`` (backend choice and a run's bookkeeping)
and ``_schedule`` (the scheduled batches of
[`BatchDeployer.submit`][modeldeploy.BatchDeployer.submit]).
"""

from __future__ import annotations

import concurrent.futures as cf
import html
import logging
import os
import threading
from collections.abc import Callable, Sequence
from typing import Any, Literal, overload

import numpy as np

from modeldeploy._clock import as_clock
from modeldeploy._config import (
    DEFAULT_BATCH_CHUNK_SIZE,
    DEFAULT_BATCH_FLUSH_INTERVAL_S,
    DEFAULT_BATCH_FLUSH_ROWS,
    DEFAULT_BATCH_MONITOR_ROWS,
)
from modeldeploy._validation import check_choice, check_float, check_instance, check_int
from modeldeploy.deployers.base import Closeable
from modeldeploy.deployers.batch._outputs import check_output, open_output
from modeldeploy.deployers.batch._pools import _OWNER, _CaptureFeed, _MonitorFeed, _Pool, _Scorer
from modeldeploy.deployers.batch._results import BatchResult
from modeldeploy.deployers.batch._run import Run, make_pool
from modeldeploy.deployers.batch._schedule import _Schedule
from modeldeploy.deployers.batch.sources import Source, _CsvSource, open_source
from modeldeploy.exceptions import DeploymentError, InvalidParameterError
from modeldeploy.registry.signature import Signature
from modeldeploy.typing import CaptureSink, Clock, MonitorSink

__all__ = ["BatchDeployer"]

logger = logging.getLogger("modeldeploy.batch")

_BACKENDS = ("auto", "threads", "processes", "dask")
_METHODS = ("predict", "predict_proba")


# ---------------------------------------------------------------------- the deployer


class BatchDeployer(Closeable):
    """Score data of any size in chunks, with bounded memory, in parallel or on Dask.

    Parameters
    ----------
    version_or_model
        A [`ModelVersion`][modeldeploy.ModelVersion] (validated with its signature, loaded lazily)
        or any object with ``predict``.
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
        A [`MonitorSink`][modeldeploy.typing.MonitorSink]; it receives a uniform sample of up to
        ``monitor_rows`` rows of every scored chunk (ids are the id column, or the global row
        numbers), from a background thread.
    capture
        A [`CaptureSink`][modeldeploy.typing.CaptureSink] (such as
        [`PredictionCapture`][modeldeploy.monitoring.PredictionCapture]) that gets every scored row:
        from [`run`][modeldeploy.BatchDeployer.run], ids (the first id column, or the global row
        numbers) and scores (features stay in the source you scored); from
        [`submit`][modeldeploy.BatchDeployer.submit], the features too, and fresh ids from the
        capture for a request without ids (``capture.last_ids()``).
    progress
        Show a tqdm progress bar with rows/s (needs the ``[progress]`` extra).
    signature
        Validate against this signature instead of the version's.
    monitor_rows
        Rows per chunk sent to the monitor.
    fast_path
        ``"off"`` (the default), ``"auto"`` or ``"require"``: score chunks with the verified
        fast path of [`compile_fast_path`][modeldeploy.fastpath.compile_fast_path] (see its guide).
        On large chunks scikit-learn's own per-call overhead is small, so this pays mainly for
        models with a slow native predict (HistGradientBoosting: about 2x here) and costs for
        others (RandomForest, linear models); measure before turning it on.
    flush_rows, flush_interval_s
        Thresholds of the scheduled batches of [`submit`][modeldeploy.BatchDeployer.submit]: score
        what is waiting once this many rows wait, or once the oldest has waited this long (``None``:
        only on size or [`flush`][modeldeploy.BatchDeployer.flush]).
    clock
        The [`Clock`][modeldeploy.typing.Clock] that times ``flush_interval_s`` (e.g.
        [`FakeClock`][modeldeploy.testing.FakeClock] in tests). Run times stay on the real clock.
        Default: the system clock.

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
        capture: CaptureSink | None = None,
        progress: bool = False,
        signature: Signature | None = None,
        monitor_rows: int = DEFAULT_BATCH_MONITOR_ROWS,
        flush_rows: int = DEFAULT_BATCH_FLUSH_ROWS,
        flush_interval_s: float | None = DEFAULT_BATCH_FLUSH_INTERVAL_S,
        fast_path: Literal["off", "auto", "require"] = "off",
        clock: Clock | None = None,
    ) -> None:
        if not hasattr(version_or_model, "predict") and not callable(
            getattr(version_or_model, "load", None)
        ):
            raise InvalidParameterError(
                f"The 'version_or_model' parameter of {_OWNER} must be a ModelVersion or an "
                f"object with predict(X). Got {type(version_or_model).__name__} instead."
            )
        super().__init__()
        self.version_or_model = version_or_model
        self.chunk_size = check_int(chunk_size, "chunk_size", _OWNER, min_value=1)
        if n_jobs is not None and n_jobs != -1:
            check_int(n_jobs, "n_jobs", _OWNER, min_value=1)
        self.n_jobs = n_jobs
        self.backend = check_choice(backend, "backend", _OWNER, _BACKENDS)
        self.client = client
        self.method = check_choice(method, "method", _OWNER, _METHODS)
        self.on_error = check_choice(on_error, "on_error", _OWNER, ("raise", "skip"))
        if monitor is not None:
            check_instance(
                monitor, MonitorSink, "monitor", _OWNER,
                expected="an object with log_predictions() and log_error() (a modeldeploy "
                "Monitor) or None",
            )  # fmt: skip
        self.monitor = monitor
        if capture is not None:
            check_instance(
                capture, CaptureSink, "capture", _OWNER,
                expected="an object with new_ids() and record() (a PredictionCapture) or None",
            )  # fmt: skip
        self.capture = capture
        self.progress = bool(progress)
        if signature is not None:
            check_instance(
                signature, Signature, "signature", _OWNER, expected="a Signature or None"
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
        check_choice(fast_path, "fast_path", _OWNER, ("off", "auto", "require"))
        self.fast_path = fast_path
        self.clock = as_clock(clock, _OWNER)
        #: The :class:`BatchResult` of the latest :meth:`run` (also of in-memory runs).
        self.last_result: BatchResult | None = None
        self._lock = threading.Lock()
        self._scorer: _Scorer | None = None
        self._feed: _MonitorFeed | None = None
        self._capture: _CaptureFeed | None = None
        self._schedule: _Schedule | None = None
        # Set once close() has scored what submit() queued: from then on nothing is scored.
        self._released = False

    # ------------------------------------------------------------------ model

    @property
    def version(self) -> str | None:
        """The served version as ``"name:version"``, or ``None`` for a bare model."""
        ref = getattr(self.version_or_model, "ref", None)
        return ref if isinstance(ref, str) else None

    def _get_scorer(self) -> _Scorer:
        with self._lock:
            if self._released:
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
                fast = None
                if self.fast_path != "off":
                    from modeldeploy.fastpath.compile import compile_fast_path

                    fast = compile_fast_path(
                        model, signature=signature, mode=self.fast_path, measure=False
                    )
                    logger.info("%s: %s", self.version or type(model).__name__, fast.report)
                self._scorer = _Scorer(model, signature, self.method, rows, fast=fast)
                if self.monitor is not None:
                    self._feed = _MonitorFeed(self.monitor, self.version)
                if self.capture is not None:
                    self._capture = _CaptureFeed(self.capture, self.version, self.method, model)
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

    def _pool(self, scorer: _Scorer, source: Source) -> _Pool:
        """The pool that scores a run's chunks, as ``backend``, ``n_jobs`` and ``client`` say."""
        return make_pool(
            scorer,
            source,
            backend=self.backend,
            client=self.client,
            n_jobs=self.n_jobs,
            chunk_size=self.chunk_size,
        )

    # ------------------------------------------------------------------ running

    @overload
    def run(
        self,
        source: Any,
        output: None = None,
        *,
        id_columns: Sequence[str] | None = None,
        progress: bool | None = None,
        resume: bool = False,
        callback: Callable[[int, int | None], None] | None = None,
    ) -> np.ndarray: ...

    @overload
    def run(
        self,
        source: Any,
        output: str | os.PathLike[str],
        *,
        id_columns: Sequence[str] | None = None,
        progress: bool | None = None,
        resume: bool = False,
        callback: Callable[[int, int | None], None] | None = None,
    ) -> BatchResult: ...

    def run(
        self,
        source: Any,
        output: str | os.PathLike[str] | None = None,
        *,
        id_columns: Sequence[str] | None = None,
        progress: bool | None = None,
        resume: bool = False,
        callback: Callable[[int, int | None], None] | None = None,
    ) -> np.ndarray | BatchResult:
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
            [`BatchResult`][modeldeploy.BatchResult] is then in `last_result`), else the
            [`BatchResult`][modeldeploy.BatchResult].

        Raises
        ------
        SchemaError
            A chunk does not match the signature (``on_error="raise"``); the message names the
            chunk, its global row range and the global row at fault.
        DeploymentError
            The model failed on a chunk (``on_error="raise"``).
        InvalidParameterError
            Before anything is read: ``output`` is the source file (by any path: ``..``, a
            symlink, a hard link, a memory-mapped array of it) or a directory. With
            ``resume=True``: the checkpoint belongs to another run, or the rows it already
            scored have changed in the source since.
        """
        ids = tuple(id_columns or ())
        sink = open_output(output) if output is not None else None
        if sink is not None:
            check_output(sink.path, source)  # before reading anything: never score in place
        src = open_source(source, ids)
        if isinstance(src, _CsvSource):
            src.skip_bad_lines = self.on_error == "skip"
        if resume and sink is None:
            raise InvalidParameterError(
                "The 'resume' parameter of BatchDeployer.run needs an output path to keep a "
                "checkpoint next to. Got output=None instead."
            )
        scorer = self._get_scorer()
        job = Run(
            scorer=scorer,
            pool=self._pool(scorer, src),
            source=src,
            chunk_size=self.chunk_size,
            on_error=self.on_error,
            feed=self._feed,
            capture=self._capture,
            output=sink,
            fingerprint=None if sink is None else self._fingerprint(scorer, src, ids),
            resume=resume,
            progress=self.progress if progress is None else progress,
            callback=callback,
        )
        result, scores = job.execute()
        self.last_result = result
        logger.info("Batch run finished: %r", result)
        return result if scores is None else scores

    # ------------------------------------------------------------------ scheduled batches

    def submit(self, X: Any, *, ids: Any = None) -> cf.Future[np.ndarray]:
        """Queue rows to be scored with others when a size or time threshold is reached.

        Parameters
        ----------
        X
            One row or a batch of rows (anything the signature accepts).
        ids
            Request ids, one per row (or one for a single row), handed to the monitor with the
            predictions so that labels arriving later find them. Without ids the monitor gets
            running row numbers.

        Returns
        -------
        concurrent.futures.Future
            Resolves to the scores of these rows once their batch runs (``asyncio`` callers:
            ``await asyncio.wrap_future(fut)``). A request failing validation fails alone, at
            once, with a [`SchemaError`][modeldeploy.exceptions.SchemaError].
        """
        with self._lock:
            # close() sets closed before it takes this lock: nothing can slip in unscored.
            if self.closed:
                raise DeploymentError(f"This {_OWNER} is closed; submit to a new one.")
            if self._schedule is None:
                self._schedule = _Schedule(
                    self,
                    scorer=self._get_scorer,
                    feed=lambda: self._feed,
                    clock=self.clock,
                    capture=lambda: self._capture,
                )
            schedule = self._schedule
        return schedule.submit(X, ids=ids)

    def flush(self) -> int:
        """Score every queued request now; return how many rows were scored."""
        with self._lock:
            schedule = self._schedule
        return 0 if schedule is None else schedule.flush()

    @property
    def pending_rows(self) -> int:
        """Rows queued by [`submit`][modeldeploy.BatchDeployer.submit] and not scored yet."""
        schedule = self._schedule
        return 0 if schedule is None else schedule.pending_rows

    # ------------------------------------------------------------------ lifecycle

    def _release(self) -> None:
        # What close() (shared by every deployer) releases here: it scores what submit()
        # queued, then stops the background threads.
        with self._lock:
            schedule, self._schedule = self._schedule, None
        if schedule is not None:
            schedule.close()
        with self._lock:
            self._released = True
            feed, self._feed = self._feed, None
        if feed is not None:
            feed.close()

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
