"""Capture what deployers served, and the labels that come later, as Parquet segments.

A deployer given ``capture=`` hands each answered request to a
[`PredictionCapture`][modeldeploy.monitoring.PredictionCapture] (through the
[`CaptureSink`][modeldeploy.typing.CaptureSink] Protocol, so serving never imports this module). The
capture queues it and returns at once; a background thread writes append-only Parquet segments (the
``[pandas]`` extra brings pyarrow) to a folder or to a registry's artifact store.
[`LabelCapture`][modeldeploy.monitoring.LabelCapture] does the same for ground truth arriving in any
process, and [`LabelJoin`][modeldeploy.monitoring.LabelJoin] matches the two by id.

Schema of a prediction segment (one row per scored row):

======================  ====================================================================
``id``                  the request id (``string``, or ``int64`` when the caller's ids are)
``time``                when the capture received the row (``timestamp[us, UTC]``, clock)
``version``             the version that answered (``"name:version"``, ``"fallback"``, null)
``prediction``          the prediction (the model's type: int, float, string, bool)
``proba``               class probabilities (``list<double>``), null when not computed
``features``            the row's features (``list<double>``) for sampled rows, else null
======================  ====================================================================

Label segments hold ``id``, ``label`` and ``time`` (when the label was logged).
"""

from __future__ import annotations

import html
import itertools
import logging
import tempfile
import threading
from pathlib import Path
from typing import Any

import numpy as np

from modeldeploy._clock import as_clock
from modeldeploy._validation import check_float, check_int
from modeldeploy.exceptions import InvalidParameterError, SchemaError
from modeldeploy.monitoring._segments import (
    Location,
    SegmentWriter,
    import_pyarrow,
    read_segments,
)
from modeldeploy.typing import Clock

__all__ = ["LabelCapture", "PredictionCapture"]

logger = logging.getLogger("modeldeploy.monitoring.capture")

#: Items (requests) a capture's queue holds before it drops.
DEFAULT_CAPTURE_QUEUE = 10_000
#: Rows per segment before it is written.
DEFAULT_SEGMENT_ROWS = 100_000
#: Bytes (roughly, in memory) per segment before it is written.
DEFAULT_SEGMENT_BYTES = 64 << 20
#: Seconds a segment stays open before it is written.
DEFAULT_SEGMENT_S = 60.0
#: Seconds ``close()`` waits for the writer.
DEFAULT_CLOSE_TIMEOUT_S = 10.0


class _Sink:
    """What both captures share: the location, the writer, stats, flush and close."""

    _owner = "PredictionCapture"
    _kind = "capture"

    def __init__(
        self,
        location: Any,
        *,
        prefix: str | None,
        spill: str | Path | None,
        max_queue: int,
        segment_rows: int,
        segment_bytes: int,
        segment_s: float,
        close_timeout_s: float,
        clock: Clock | None,
    ) -> None:
        owner = self._owner
        self.location = location
        self.prefix = self._kind if prefix is None else str(prefix)
        self.max_queue = check_int(max_queue, "max_queue", owner, min_value=1)
        self.segment_rows = check_int(segment_rows, "segment_rows", owner, min_value=1)
        self.segment_bytes = check_int(segment_bytes, "segment_bytes", owner, min_value=1)
        self.segment_s = check_float(
            segment_s, "segment_s", owner, min_value=0, min_inclusive=False
        )
        self.close_timeout_s = check_float(close_timeout_s, "close_timeout_s", owner, min_value=0)
        self.clock = as_clock(clock, owner)
        self._location = Location(location, self.prefix, owner)
        if spill is None:
            spill = Path(tempfile.gettempdir()) / "modeldeploy-spill" / self.prefix
        self.spill = Path(spill)
        self._writer = SegmentWriter(
            self._location,
            self._to_table,
            spill=self.spill,
            max_queue=self.max_queue,
            segment_rows=self.segment_rows,
            segment_bytes=self.segment_bytes,
            segment_s=self.segment_s,
            clock=self.clock,
            name=f"{owner} {self._location}",
        )

    def _to_table(self, items: list[Any]) -> Any:
        raise NotImplementedError

    def stats(self) -> dict[str, int]:
        """Counters in rows (``segments`` and ``spilled_segments`` in segments).

        ``queued``: rows handed to the capture; ``written``: rows in segments at the location;
        ``dropped``: rows refused because the queue was full (or the capture closed);
        ``spilled``: rows the location refused, kept in the spill folder; ``resent``: spilled
        rows sent to the location later; ``lost``: rows that neither took (a full disk under
        both); ``segments``: segments at the location; ``spilled_segments``: segments waiting
        in the spill folder.
        """
        return dict(self._writer.counts)

    def flush(self, timeout: float = DEFAULT_CLOSE_TIMEOUT_S) -> bool:
        """Write what was captured so far as a segment now; False if that took longer than
        ``timeout`` seconds."""
        return self._writer.flush(timeout)

    def resend(self) -> int:
        """Send segments waiting in the spill folder (of this or an earlier process) to the
        location; return how many went. The writer also does this after each segment it
        writes."""
        return self._writer.resend()

    def close(self, timeout: float | None = None) -> bool:
        """Write what is queued and stop, waiting at most ``timeout`` seconds (default
        ``close_timeout_s``); True when everything reached the location or the spill folder.

        Rows captured after ``close`` are dropped (and counted).
        """
        done = self._writer.close(self.close_timeout_s if timeout is None else timeout)
        if not done:
            logger.warning(
                "%s did not finish writing within the timeout; rows still queued are not "
                "written (see stats())",
                self._owner,
            )
        return done

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def segments(self) -> list[str]:
        """The names of the segments at the location (oldest first)."""
        return self._location.names()

    def read(self, columns: list[str] | None = None) -> Any:
        """Every segment at the location as one ``pyarrow.Table`` (in segment order).

        Works in any process: the capture need not have written them.
        """
        pa = import_pyarrow(f"{self._owner}.read()")
        tables = list(read_segments(self._location, columns))
        if not tables:
            return self._empty_table(pa)
        try:
            return pa.concat_tables(tables, promote_options="permissive")
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            # Segments with numeric ids and segments with text ids (a batch run's row numbers
            # next to an online deployer's request ids): every id as text.
            tables = [_ids_as_text(pa, t) for t in tables]
            return pa.concat_tables(tables, promote_options="permissive")

    def _empty_table(self, pa: Any) -> Any:
        raise NotImplementedError

    def to_dask(self, columns: list[str] | None = None) -> Any:
        """The segments as a ``dask.dataframe`` (one partition per segment; extras ``[dask]``
        and ``[pandas]``)."""
        try:
            import dask.dataframe as dd
            from dask.delayed import delayed
        except ImportError:
            from modeldeploy.exceptions import MissingDependencyError

            raise MissingDependencyError("dask", "dask", f"{self._owner}.to_dask()") from None
        import_pyarrow(f"{self._owner}.to_dask()")
        location = self._location
        names = location.names()
        if not names:
            return dd.from_pandas(  # type: ignore[no-untyped-call]
                self.read(columns).to_pandas(), npartitions=1
            )

        def load(name: str) -> Any:
            import pyarrow.parquet as pq

            return pq.read_table(location.source(name), columns=columns).to_pandas()

        meta = load(names[0]).iloc[:0]
        parts = [delayed(load)(n) for n in names]
        return dd.from_delayed(parts, meta=meta, verify_meta=False)

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><th style='text-align:left'>{k}</th><td>{v:,}</td></tr>"
            for k, v in self.stats().items()
        )
        where = html.escape(str(self._location))
        return f"<table><caption>{self._owner} {where}</caption><tbody>{rows}</tbody></table>"

    def __repr__(self) -> str:
        s = self._writer.counts
        return (
            f"{self._owner}({self._location}, written={s['written']:,}, dropped={s['dropped']:,}"
            f", spilled={s['spilled']:,}, segments={s['segments']:,})"
        )


class PredictionCapture(_Sink):
    """Write what a deployer served to append-only Parquet segments, off the hot path.

    Give it to a deployer (``OnlineDeployer(..., capture=cap)``, ``BatchDeployer(...,
    capture=cap)``), or call [`record`][modeldeploy.monitoring.PredictionCapture.record] yourself.
    Recording never blocks nor raises: a full queue drops the request and counts it; a location that
    refuses a segment (a full disk, an unreachable object store) gets it spilled to ``spill`` and
    sent again after the next segment that goes through (or on `resend`, also from a later process).

    Parameters
    ----------
    location
        Where segments go: a folder (segments under ``location/prefix/``), an
        [`ArtifactStore`][modeldeploy.registry.stores.ArtifactStore], or a
        [`ModelRegistry`][modeldeploy.ModelRegistry] (its artifact store: S3 for a shared registry).
        Many processes may capture to the same location; segment names never collide.
    prefix
        The sub-folder or key prefix (default ``"capture"``).
    feature_rate
        Share of rows whose features are kept (0 keeps none, 1 all), drawn with ``seed``.
    seed
        Seed of the feature sample.
    spill
        Local folder for segments the location refused (default: a ``modeldeploy-spill``
        folder in the system's temp dir).
    max_queue
        Requests waiting to be written before new ones are dropped.
    segment_rows, segment_bytes, segment_s
        A segment is written once it holds this many rows, or about this many bytes, or has
        been open this many seconds.
    close_timeout_s
        The longest `close` waits.
    clock
        Stamps each row's ``time`` and times the rotation. Default: the system clock.

    Examples
    --------
    >>> import tempfile
    >>> import numpy as np
    >>> folder = tempfile.mkdtemp()
    >>> with PredictionCapture(folder, feature_rate=1.0) as cap:
    ...     ids = cap.new_ids(2)
    ...     cap.record(np.array([[0.5, 1.0], [2.0, 3.0]]), [1, 0], ids=ids, version="churn:3")
    True
    >>> table = cap.read()
    >>> table.column("prediction").to_pylist(), table.column("version").to_pylist()
    ([1, 0], ['churn:3', 'churn:3'])
    >>> table.column("id").to_pylist() == list(ids)
    True
    """

    _owner = "PredictionCapture"
    _kind = "capture"

    def __init__(
        self,
        location: Any,
        *,
        prefix: str | None = None,
        feature_rate: float = 0.1,
        seed: int | None = 0,
        spill: str | Path | None = None,
        max_queue: int = DEFAULT_CAPTURE_QUEUE,
        segment_rows: int = DEFAULT_SEGMENT_ROWS,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
        segment_s: float = DEFAULT_SEGMENT_S,
        close_timeout_s: float = DEFAULT_CLOSE_TIMEOUT_S,
        clock: Clock | None = None,
    ) -> None:
        self.feature_rate = check_float(
            feature_rate, "feature_rate", self._owner, min_value=0, max_value=1
        )
        self.seed = seed
        super().__init__(
            location,
            prefix=prefix,
            spill=spill,
            max_queue=max_queue,
            segment_rows=segment_rows,
            segment_bytes=segment_bytes,
            segment_s=segment_s,
            close_timeout_s=close_timeout_s,
            clock=clock,
        )
        self._rng = np.random.default_rng(seed)
        self._ids_lock = threading.Lock()
        self._next_id = itertools.count()
        self._local = threading.local()

    # ------------------------------------------------------------------ the hot path

    def new_ids(self, n: int) -> np.ndarray:
        """``n`` fresh request ids, unique across processes and hosts (``"<writer>-<n>"``).

        A deployer given this capture calls it for a request that came without ids, so that
        every captured row has one; [`last_ids`][modeldeploy.monitoring.PredictionCapture.last_ids]
        gives them back to the caller. Pass them on (in a response header, with the row you store)
        for labels to find their prediction.
        """
        with self._ids_lock:
            start = next(self._next_id)
            if n > 1:
                self._next_id = itertools.count(start + n)
        token = self._writer.token
        ids = np.array([f"{token}-{i}" for i in range(start, start + n)], dtype=object)
        self._local.ids = ids
        return ids

    def last_ids(self) -> np.ndarray | None:
        """The ids [`new_ids`][modeldeploy.monitoring.PredictionCapture.new_ids] made last in this
        thread (for a request sent without ids),
        or None."""
        return getattr(self._local, "ids", None)

    def record(
        self,
        X: Any,
        y_pred: Any = None,
        *,
        ids: Any = None,
        y_proba: Any = None,
        version: str | None = None,
        classes: Any = None,
    ) -> bool:
        """Queue one scored request; return False when it was dropped (the queue is full).

        Never raises and never waits (a request it cannot read is logged and left out).

        Parameters
        ----------
        X
            The validated features, one row per prediction, or None.
        y_pred
            The predictions. When None, ``classes[argmax(y_proba)]`` (or the argmax).
        ids
            One id per row; when None, [`new_ids`][modeldeploy.monitoring.PredictionCapture.new_ids]
            makes them.
        y_proba
            Class probabilities, one row per prediction, or None.
        version
            The version that answered.
        classes
            The model's ``classes_``, to turn ``y_proba`` into predictions.
        """
        try:
            t = self.clock.now().timestamp()
            pred = None if y_pred is None else np.atleast_1d(np.array(y_pred, copy=True))
            proba = None if y_proba is None else np.array(y_proba, dtype=np.float64, copy=True)
            given = pred if pred is not None else proba
            rows = 0 if given is None else int(np.atleast_1d(given).shape[0])
            if rows == 0:
                return True
            if ids is None:
                ids = self.new_ids(rows)
            item = (X, pred, ids, proba, version, classes, t)
        except Exception:
            logger.warning("%s: could not record a request", self._owner, exc_info=True)
            return False
        return self._writer.offer(item, rows)

    # ------------------------------------------------------------------ the writer's side

    def _to_table(self, items: list[Any]) -> Any:
        pa = import_pyarrow("PredictionCapture")
        ids: list[np.ndarray] = []
        times: list[np.ndarray] = []
        versions: list[Any] = []
        counts: list[int] = []
        preds: list[np.ndarray] = []
        probas: list[tuple[np.ndarray | None, np.ndarray | None]] = []
        features: list[tuple[np.ndarray | None, np.ndarray | None]] = []
        for X, pred, item_ids, proba, version, classes, t in items:
            if proba is not None and proba.ndim == 1:
                proba = np.column_stack([1.0 - proba, proba])
            if pred is None:
                idx = np.asarray(proba).argmax(axis=1)
                pred = idx if classes is None else np.asarray(classes)[idx]
            pred = np.asarray(pred)
            if pred.ndim == 2 and pred.shape[1] == 1:
                pred = pred[:, 0]
            n = pred.shape[0]
            id_arr = np.asarray(item_ids).ravel() if np.ndim(item_ids) else np.asarray([item_ids])
            if id_arr.shape[0] != n or (proba is not None and proba.shape[0] != n):
                raise SchemaError(f"{id_arr.shape[0]} ids for {n} predictions")
            ids.append(id_arr)
            times.append(np.full(n, t))
            versions.append(version)
            counts.append(n)
            preds.append(pred)
            probas.append((proba, None))
            features.append(self._sample_features(X, n))
        n_rows = sum(counts)
        seconds = np.concatenate(times) if times else np.empty(0)
        time_col = pa.array((seconds * 1e6).round().astype("int64"), pa.int64()).cast(
            pa.timestamp("us", tz="UTC")
        )
        # One version per request: a dictionary of them, decoded.
        codes = np.repeat(np.arange(len(versions), dtype=np.int32), counts)
        version_col = pa.DictionaryArray.from_arrays(
            pa.array(codes), pa.array(versions, pa.string())
        ).dictionary_decode()
        return pa.table(
            {
                "id": _id_column(pa, ids),
                "time": time_col,
                "version": version_col,
                "prediction": _value_column(pa, preds),
                "proba": _list_column(pa, probas, counts, n_rows),
                "features": _list_column(pa, features, counts, n_rows),
            }
        )

    def _sample_features(self, X: Any, n: int) -> tuple[np.ndarray | None, np.ndarray | None]:
        """The rows to keep (a matrix) and which rows they are (a mask; None: all)."""
        rate = self.feature_rate
        if X is None or rate <= 0:
            return None, None
        keep = None if rate >= 1 else self._rng.random(n) < rate
        if keep is not None and not keep.any():
            return None, None
        try:
            arr = np.asarray(X, dtype=np.float64)
        except (TypeError, ValueError):  # non-numeric features are not sampled
            return None, None
        return arr.reshape(n, -1), keep

    def _empty_table(self, pa: Any) -> Any:
        return pa.table(
            {
                "id": pa.array([], pa.string()),
                "time": pa.array([], pa.timestamp("us", tz="UTC")),
                "version": pa.array([], pa.string()),
                "prediction": pa.array([], pa.float64()),
                "proba": pa.array([], pa.list_(pa.float64())),
                "features": pa.array([], pa.list_(pa.float64())),
            }
        )


class LabelCapture(_Sink):
    """Write ground truth to append-only Parquet segments, from any process.

    A web endpoint, a nightly job or a notebook logs ``(id, label)`` pairs here; a
    [`LabelJoin`][modeldeploy.monitoring.LabelJoin] later matches them with the captured
    predictions. Same writer as [`PredictionCapture`][modeldeploy.monitoring.PredictionCapture]:
    never blocks, spills what the location refuses.

    Parameters
    ----------
    location
        A folder, an [`ArtifactStore`][modeldeploy.registry.stores.ArtifactStore] or a
        [`ModelRegistry`][modeldeploy.ModelRegistry] (segments under ``prefix``, default
        ``"labels"``).
    prefix, spill, max_queue, segment_rows, segment_bytes, segment_s, close_timeout_s, clock
        As for [`PredictionCapture`][modeldeploy.monitoring.PredictionCapture]; ``clock`` stamps
        each label's ``time``.

    Examples
    --------
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> with LabelCapture(folder) as labels:
    ...     labels.log_labels(["a", "b"], [1, 0])
    True
    >>> labels.read().column("label").to_pylist()
    [1, 0]
    """

    _owner = "LabelCapture"
    _kind = "labels"

    def __init__(
        self,
        location: Any,
        *,
        prefix: str | None = None,
        spill: str | Path | None = None,
        max_queue: int = DEFAULT_CAPTURE_QUEUE,
        segment_rows: int = DEFAULT_SEGMENT_ROWS,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
        segment_s: float = DEFAULT_SEGMENT_S,
        close_timeout_s: float = DEFAULT_CLOSE_TIMEOUT_S,
        clock: Clock | None = None,
    ) -> None:
        super().__init__(
            location,
            prefix=prefix,
            spill=spill,
            max_queue=max_queue,
            segment_rows=segment_rows,
            segment_bytes=segment_bytes,
            segment_s=segment_s,
            close_timeout_s=close_timeout_s,
            clock=clock,
        )

    def log_labels(self, ids: Any, y_true: Any) -> bool:
        """Queue labels, one per id; False when the queue was full (they are dropped and
        counted).

        Raises
        ------
        InvalidParameterError
            When the number of ids and labels differ (nothing is queued).
        """
        id_arr = np.atleast_1d(np.asarray(ids, dtype=object if _has_str(ids) else None)).ravel()
        values = np.atleast_1d(np.array(y_true, copy=True)).ravel()
        if id_arr.shape[0] != values.shape[0]:
            raise InvalidParameterError(
                f"LabelCapture.log_labels needs one label per id. Got {id_arr.shape[0]} ids and "
                f"{values.shape[0]} labels instead."
            )
        if not id_arr.shape[0]:
            return True
        t = self.clock.now().timestamp()
        return self._writer.offer((id_arr, values, t), id_arr.shape[0])

    def _to_table(self, items: list[Any]) -> Any:
        pa = import_pyarrow("LabelCapture")
        ids = np.concatenate([i[0] for i in items])
        labels = np.concatenate([i[1] for i in items])
        seconds = np.concatenate([np.full(i[0].shape[0], i[2]) for i in items])
        id_col = pa.array(ids.tolist() if ids.dtype == object else ids)
        label_col = pa.array(labels.tolist() if labels.dtype == object else labels)
        time_col = pa.array((seconds * 1e6).round().astype("int64"), pa.int64()).cast(
            pa.timestamp("us", tz="UTC")
        )
        return pa.table({"id": id_col, "label": label_col, "time": time_col})

    def _empty_table(self, pa: Any) -> Any:
        return pa.table(
            {
                "id": pa.array([], pa.string()),
                "label": pa.array([], pa.float64()),
                "time": pa.array([], pa.timestamp("us", tz="UTC")),
            }
        )


def _ids_as_text(pa: Any, table: Any) -> Any:
    if "id" not in table.column_names or pa.types.is_string(table.schema.field("id").type):
        return table
    i = table.column_names.index("id")
    return table.set_column(i, "id", table.column(i).cast(pa.string()))


def _id_column(pa: Any, parts: list[np.ndarray]) -> Any:
    """Ids as one column: numbers stay numbers; text (or a mix) becomes text."""
    if parts and all(p.dtype.kind in "iub" for p in parts):
        return pa.array(np.concatenate(parts).astype(np.int64))
    values = [v for p in parts for v in p.tolist()]
    try:
        column = pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # numbers and text mixed: all as text
        column = pa.array([None if v is None else str(v) for v in values], pa.string())
    return column.cast(pa.string()) if pa.types.is_null(column.type) else column


def _value_column(pa: Any, parts: list[np.ndarray]) -> Any:
    values = np.concatenate(parts) if parts else np.empty(0)
    if values.dtype.kind in "OUS":
        return pa.array(values.tolist())
    return pa.array(values)


def _list_column(
    pa: Any,
    blocks: list[tuple[np.ndarray | None, np.ndarray | None]],
    counts: list[int],
    n_rows: int,
) -> Any:
    """A ``list<double>`` column from per-request ``(matrix, keep)`` blocks: a row is the
    matrix's row where kept, null elsewhere (and where the matrix is None)."""
    lengths = np.zeros(n_rows, dtype=np.int64)
    valid = np.zeros(n_rows, dtype=bool)
    values: list[np.ndarray] = []
    start = 0
    for (matrix, keep), n in zip(blocks, counts, strict=True):
        if matrix is not None:
            rows = matrix if keep is None else matrix[keep]
            mask = np.ones(n, dtype=bool) if keep is None else keep
            valid[start : start + n] = mask
            lengths[start : start + n][mask] = matrix.shape[1]
            values.append(np.ascontiguousarray(rows, dtype=np.float64).ravel())
        start += n
    kind = pa.list_(pa.float64())
    if not valid.any():
        return pa.nulls(n_rows, kind)
    offsets = np.zeros(n_rows + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    return pa.ListArray.from_arrays(
        pa.array(offsets), pa.array(np.concatenate(values)), type=kind, mask=pa.array(~valid)
    )


def _has_str(ids: Any) -> bool:
    if isinstance(ids, str):
        return True
    try:
        return any(isinstance(i, str) for i in ids)
    except TypeError:
        return False
