"""One [`BatchDeployer.run`][modeldeploy.BatchDeployer.run]: a `Run`.

The run owns its state: the pool that scores its chunks, the chunks in flight, the checkpoint
next to the output, the progress bar and callback, what was scored, resumed or skipped. It
collects finished chunks in chunk order, records each into the checkpoint or the in-memory
output (or the skipped list), and assembles the in-memory scores at the end.
`chunk_error` turns a chunk's failure into the error raised or listed, naming the chunk and
its global rows.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from modeldeploy._config import DEFAULT_BATCH_IN_FLIGHT_PER_WORKER
from modeldeploy.deployers.batch._checkpoint import Checkpoint, Entry
from modeldeploy.deployers.batch._inputs import ChunkRef
from modeldeploy.deployers.batch._outputs import Output, output_columns
from modeldeploy.deployers.batch._pools import (
    _OWNER,
    _CaptureFeed,
    _DaskPool,
    _MonitorFeed,
    _Pool,
    _ProcessPool,
    _releases_gil,
    _Scored,
    _Scorer,
    _SerialPool,
    _ThreadPool,
)
from modeldeploy.deployers.batch._results import BatchResult, SkippedChunk
from modeldeploy.deployers.batch.sources import Source
from modeldeploy.exceptions import (
    DeploymentError,
    InvalidParameterError,
    MissingDependencyError,
    SchemaError,
)

logger = logging.getLogger("modeldeploy.batch")


# ---------------------------------------------------------------------- backends


def make_pool(
    scorer: _Scorer,
    source: Source,
    *,
    backend: str,
    client: Any,
    n_jobs: int | None,
    chunk_size: int,
) -> _Pool:
    """The pool that scores a run's chunks, as ``backend``, ``n_jobs`` and ``client`` say."""
    if backend == "dask" or (backend == "auto" and client is not None):
        return _DaskPool(scorer, _dask_client(client))
    import joblib  # imported when a run starts: it is not cheap to import

    workers = max(1, int(joblib.cpu_count())) if n_jobs is None or n_jobs == -1 else n_jobs
    single_chunk = source.n_rows is not None and source.n_rows <= chunk_size
    if workers == 1 or single_chunk:
        return _SerialPool(scorer)
    if backend == "auto":
        backend = "threads" if _releases_gil(scorer.model) else "processes"
    if backend == "threads":
        return _ThreadPool(scorer, workers)
    return _ProcessPool(scorer, workers)


def _dask_client(client: Any) -> Any:
    try:
        import distributed
    except ImportError:  # pragma: no cover - installed in the test environment
        raise MissingDependencyError(
            "distributed", "dask", "BatchDeployer(backend='dask')"
        ) from None
    if client is not None:
        return client
    try:
        return distributed.get_client()
    except ValueError:
        raise InvalidParameterError(
            f"The 'client' parameter of {_OWNER} must be a distributed.Client when "
            "backend='dask' and no default client exists. Got None instead."
        ) from None


# ---------------------------------------------------------------------- the run


class Run:
    """Scores every chunk of ``source`` once; `execute` does it, once.

    Parameters
    ----------
    scorer, pool
        What scores a chunk, and where (the run closes the pool when it ends).
    source
        The chunks.
    chunk_size
        Rows per chunk.
    on_error
        ``"raise"`` or ``"skip"`` (see ``BatchDeployer``).
    feed
        Where scored samples and errors go for the monitor, or ``None``.
    capture
        Where every scored row goes (ids: the first id column, else global row numbers), or
        ``None``.
    output
        Where the scores go (with a checkpoint next to it), or ``None`` to keep them in memory.
    fingerprint
        What identifies the run in its checkpoint (needed with ``output``).
    resume
        Continue from the checkpoint a killed or failed run left.
    progress
        Show a progress bar.
    callback
        Called as ``callback(done_rows, total_rows)`` after each chunk.
    """

    def __init__(
        self,
        *,
        scorer: _Scorer,
        pool: _Pool,
        source: Source,
        chunk_size: int,
        on_error: str,
        feed: _MonitorFeed | None,
        capture: _CaptureFeed | None = None,
        output: Output | None = None,
        fingerprint: dict[str, Any] | None = None,
        resume: bool = False,
        progress: bool = False,
        callback: Callable[[int, int | None], None] | None = None,
    ) -> None:
        self.scorer = scorer
        self.pool = pool
        self.source = source
        self.chunk_size = chunk_size
        self.on_error = on_error
        self.feed = feed
        self.capture = capture
        self.output = output
        self.fingerprint = fingerprint
        self.resume = resume
        self.progress = progress
        self.callback = callback
        self.total = source.n_rows
        #: Scores kept in memory: ``index -> (start, stop, scores or None when skipped)``.
        self.pieces: dict[int, tuple[int, int, np.ndarray | None]] = {}
        #: In-memory output, allocated at the first scores when the row count is known up front.
        self.out: np.ndarray | None = None
        self.entries: dict[int, Entry] = {}
        self.skipped: list[SkippedChunk] = []
        self.rows = 0
        self.done_rows = 0
        self.columns: list[str] | None = None
        self.checkpoint: Checkpoint | None = None
        self._bar: Any = None

    def execute(self) -> tuple[BatchResult, np.ndarray | None]:
        """Score the source; the result, and the scores when there is no output file."""
        t0 = time.perf_counter()
        src, pool = self.source, self.pool
        lazy = isinstance(pool, _DaskPool)
        limit = pool.workers * DEFAULT_BATCH_IN_FLIGHT_PER_WORKER
        done: dict[int, Entry] = {}
        resumed = n_chunks = 0
        in_flight: dict[Any, ChunkRef] = {}
        try:
            if self.output is not None:
                assert self.fingerprint is not None
                self.checkpoint = Checkpoint(self.output, self.fingerprint)
                done = self.checkpoint.open(resume=self.resume)
            if self.progress:
                self._bar = progress_bar(src.n_rows)
            fingerprint = self.checkpoint is not None
            for ref in src.refs(self.chunk_size, lazy=lazy):
                n_chunks += 1
                if ref.index in done:
                    assert self.checkpoint is not None
                    self.checkpoint.verify(done[ref.index], ref)  # the rows it scored, unchanged
                    self._resumed(done[ref.index])
                    resumed += 1
                    self._report(ref.stop - ref.start)
                    continue
                while len(in_flight) >= limit:
                    self._collect(in_flight)
                in_flight[pool.submit(ref, fingerprint)] = ref
            while in_flight:
                self._collect(in_flight)
            if self.checkpoint is not None:
                self.checkpoint.refuse_missing(done, set(self.entries))
        except BaseException:
            for fut in in_flight:
                fut.cancel()
            if self.checkpoint is not None:
                self.checkpoint.close()  # kept on disk for resume=True
            raise
        finally:
            pool.close()
            if self._bar is not None:
                self._bar.close()
        n_rows = src.n_rows if src.n_rows is not None else self.done_rows
        for index, row, _, reason in getattr(src, "bad_lines", ()):
            logger.warning("Skipping a line of the source: %s", reason)
            self.skipped.append(SkippedChunk(index, row, row, reason))
        if self.checkpoint is not None:
            self.checkpoint.finish(self.entries, n_rows)
        result = BatchResult(
            rows=self.rows,
            seconds=time.perf_counter() - t0,
            chunks=n_chunks,
            skipped=tuple(sorted(self.skipped, key=lambda s: s.chunk)),
            output=self.output.path if self.output is not None else None,
            resumed_chunks=resumed,
        )
        scores = self._assemble(n_rows) if self.output is None else None
        return result, scores

    # ------------------------------------------------------------------ recording

    def _resumed(self, entry: Entry) -> None:
        self.entries[entry.index] = entry
        if entry.reason is None:
            self.rows += entry.stop - entry.start
        else:
            self.skipped.append(SkippedChunk(entry.index, entry.start, entry.stop, entry.reason))

    def _report(self, n: int) -> None:
        self.done_rows += n
        if self._bar is not None:
            self._bar.update(n)
        if self.callback is not None:
            self.callback(self.done_rows, self.total)

    def _collect(self, in_flight: dict[Any, ChunkRef]) -> None:
        finished = []
        for fut in self.pool.wait(list(in_flight)):
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
                error = self._handle(scored)
                self._report(scored.stop - scored.start)
        if error is not None:
            raise error

    def _handle(self, s: _Scored) -> Exception | None:
        """Record one scored chunk; return the error to raise for a failed one."""
        checkpoint = self.checkpoint
        if s.failure is not None:
            error = chunk_error(s, self.scorer.method)
            if self.feed is not None:
                self.feed.put("error", error)
            if self.on_error == "raise":
                return error
            logger.warning("Skipping chunk %d: %s", s.index, error)
            entry = Entry(s.index, s.start, s.stop, str(error), s.digest)
            self.skipped.append(SkippedChunk(s.index, s.start, s.stop, str(error)))
            self.entries[s.index] = entry
            self.pieces[s.index] = (s.start, s.stop, None)
            if checkpoint is not None:
                checkpoint.record(entry)
            return None
        entry = Entry(s.index, s.start, s.stop, digest=s.digest)
        self.entries[s.index] = entry
        if s.y is None:  # an empty chunk
            if checkpoint is not None:
                checkpoint.record(entry)
            return None
        self.rows += s.stop - s.start
        if self.capture is not None:
            ids = np.arange(s.start, s.stop) if not s.ids else next(iter(s.ids.values()))
            self.capture.put(None, s.y, ids)
        if checkpoint is not None:
            if self.columns is None:
                self.columns = output_columns(s.y, self.scorer.method, self._classes())
            checkpoint.record(entry, s.y, s.ids, self.columns)
        else:
            if self.out is None and self.total is not None:
                self.out = np.empty((self.total, *s.y.shape[1:]), dtype=s.y.dtype)
            if self.out is not None and s.y.shape[1:] == self.out.shape[1:]:
                self.out[s.start : s.stop] = s.y  # no second copy of the scores at the end
                s.y = np.empty((0,), dtype=s.y.dtype)
            self.pieces[s.index] = (s.start, s.stop, s.y)
        if self.feed is not None and s.sample is not None:
            X_s, y_s, proba, id_s = s.sample
            self.feed.put("predictions", (X_s, y_s, proba, id_s, s.seconds))
        return None

    def _classes(self) -> Sequence[Any] | None:
        classes = getattr(self.scorer.model, "classes_", None)
        return None if classes is None else list(classes)

    def _assemble(self, n_rows: int) -> np.ndarray:
        out = self.out
        placed = out is not None
        if out is None:
            ys = [y for _, _, y in self.pieces.values() if y is not None]
            if ys:
                dtype, row_shape = ys[0].dtype, ys[0].shape[1:]
            else:
                classes = self._classes()
                proba = self.scorer.method == "predict_proba" and classes is not None
                row_shape = (len(classes),) if proba and classes is not None else ()
                dtype = np.dtype(np.float64)
            out = np.empty((n_rows, *row_shape), dtype=dtype)
        if self.skipped and out.dtype.kind in "biu":
            out = out.astype(np.float64)  # skipped rows hold NaN, which ints cannot
        for start, stop, y in self.pieces.values():
            if y is None:
                out[start:stop] = np.nan if out.dtype.kind in "fc" else 0
            elif not placed or y.shape[0]:
                out[start:stop] = y
        return out


def chunk_error(s: _Scored, method: str) -> Exception:
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


def progress_bar(total: int | None) -> Any:
    try:
        from tqdm.auto import tqdm
    except ImportError:
        raise MissingDependencyError("tqdm", "progress", "BatchDeployer(progress=True)") from None
    return tqdm(total=total, unit="rows", unit_scale=True, desc="scoring", dynamic_ncols=True)
