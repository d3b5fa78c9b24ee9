"""How :class:`~modeldeploy.deployers.batch.BatchDeployer` carries out a run.

Helpers of :meth:`BatchDeployer.run`, given the deployer as ``job`` where they need its settings:
choosing the pool that scores the chunks and, on one run's :class:`_RunState`, collecting
finished chunks in chunk order, recording each into the checkpoint or the in-memory output (or
the skipped list), reporting progress, and assembling the in-memory scores at the end.
:func:`_chunk_error` turns a chunk's failure into the error raised or listed, naming the chunk and
its global rows.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import joblib
import numpy as np

from modeldeploy.deployers.batch._checkpoint import Checkpoint, Entry
from modeldeploy.deployers.batch._inputs import ChunkRef
from modeldeploy.deployers.batch._outputs import output_columns
from modeldeploy.deployers.batch._pools import (
    _OWNER,
    _DaskPool,
    _Pool,
    _ProcessPool,
    _releases_gil,
    _Scored,
    _Scorer,
    _SerialPool,
    _ThreadPool,
)
from modeldeploy.deployers.batch.sources import Source
from modeldeploy.exceptions import (
    DeploymentError,
    InvalidParameterError,
    MissingDependencyError,
    SchemaError,
)

if TYPE_CHECKING:
    from modeldeploy.deployers.batch.deployer import BatchDeployer, SkippedChunk

logger = logging.getLogger("modeldeploy.batch")


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


# ---------------------------------------------------------------------- backends


def _workers(job: BatchDeployer) -> int:
    if job.n_jobs is None or job.n_jobs == -1:
        return max(1, int(joblib.cpu_count()))
    return job.n_jobs


def _make_pool(job: BatchDeployer, scorer: _Scorer, source: Source) -> _Pool:
    if job.backend == "dask" or (job.backend == "auto" and job.client is not None):
        return _DaskPool(scorer, _dask_client(job))
    workers = _workers(job)
    single_chunk = source.n_rows is not None and source.n_rows <= job.chunk_size
    if workers == 1 or single_chunk:
        return _SerialPool(scorer)
    backend = job.backend
    if backend == "auto":
        backend = "threads" if _releases_gil(scorer.model) else "processes"
    if backend == "threads":
        return _ThreadPool(scorer, workers)
    return _ProcessPool(scorer, workers)


def _dask_client(job: BatchDeployer) -> Any:
    try:
        import distributed
    except ImportError:  # pragma: no cover - installed in the test environment
        raise MissingDependencyError(
            "distributed", "dask", "BatchDeployer(backend='dask')"
        ) from None
    if job.client is not None:
        return job.client
    try:
        return distributed.get_client()
    except ValueError:
        raise InvalidParameterError(
            f"The 'client' parameter of {_OWNER} must be a distributed.Client when "
            "backend='dask' and no default client exists. Got None instead."
        ) from None


# ---------------------------------------------------------------------- recording


def _resumed(state: _RunState, entry: Entry) -> None:
    state.entries[entry.index] = entry
    if entry.reason is None:
        state.rows += entry.stop - entry.start
    else:
        from modeldeploy.deployers.batch.deployer import (
            SkippedChunk,  # batch.py imports this module
        )

        state.skipped.append(SkippedChunk(entry.index, entry.start, entry.stop, entry.reason))


def _report(state: _RunState, n: int, bar: Any, callback: Any) -> None:
    state.done_rows += n
    if bar is not None:
        bar.update(n)
    if callback is not None:
        callback(state.done_rows, state.total)


def _collect(
    job: BatchDeployer,
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
            error = _handle(job, scored, state, checkpoint)
            _report(state, scored.stop - scored.start, bar, callback)
    if error is not None:
        raise error


def _handle(
    job: BatchDeployer, s: _Scored, state: _RunState, checkpoint: Checkpoint | None
) -> Exception | None:
    """Record one scored chunk; return the error to raise for a failed one."""
    if s.failure is not None:
        error = _chunk_error(s, job.method)
        if job._feed is not None:
            job._feed.put("error", error)
        if job.on_error == "raise":
            return error
        logger.warning("Skipping chunk %d: %s", s.index, error)
        from modeldeploy.deployers.batch.deployer import (
            SkippedChunk,  # batch.py imports this module
        )

        entry = Entry(s.index, s.start, s.stop, str(error), s.digest)
        state.skipped.append(SkippedChunk(s.index, s.start, s.stop, str(error)))
        state.entries[s.index] = entry
        state.pieces[s.index] = (s.start, s.stop, None)
        if checkpoint is not None:
            checkpoint.record(entry)
        return None
    entry = Entry(s.index, s.start, s.stop, digest=s.digest)
    state.entries[s.index] = entry
    if s.y is None:  # an empty chunk
        if checkpoint is not None:
            checkpoint.record(entry)
        return None
    state.rows += s.stop - s.start
    if checkpoint is not None:
        if state.columns is None:
            state.columns = output_columns(s.y, job.method, _classes(job))
        checkpoint.record(entry, s.y, s.ids, state.columns)
    else:
        if state.out is None and state.total is not None:
            state.out = np.empty((state.total, *s.y.shape[1:]), dtype=s.y.dtype)
        if state.out is not None and s.y.shape[1:] == state.out.shape[1:]:
            state.out[s.start : s.stop] = s.y  # no second copy of the scores at the end
            s.y = np.empty((0,), dtype=s.y.dtype)
        state.pieces[s.index] = (s.start, s.stop, s.y)
    if job._feed is not None and s.sample is not None:
        X_s, y_s, proba, id_s = s.sample
        job._feed.put("predictions", (X_s, y_s, proba, id_s, s.seconds))
    return None


def _classes(job: BatchDeployer) -> Sequence[Any] | None:
    classes = getattr(job._scorer.model if job._scorer else None, "classes_", None)
    return None if classes is None else list(classes)


def _assemble(job: BatchDeployer, state: _RunState, n_rows: int) -> np.ndarray:
    out = state.out
    placed = out is not None
    if out is None:
        ys = [y for _, _, y in state.pieces.values() if y is not None]
        if ys:
            dtype, row_shape = ys[0].dtype, ys[0].shape[1:]
        else:
            classes = _classes(job)
            proba = job.method == "predict_proba" and classes is not None
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
