"""Match labels from anywhere to captured predictions by id, in memory or on Dask.

Ground truth comes as a DataFrame, a Parquet or CSV file, ``(ids, labels)`` arrays or a
[`LabelCapture`][modeldeploy.monitoring.LabelCapture]; predictions as a
[`PredictionCapture`][modeldeploy.monitoring.PredictionCapture] (its segments), a ``pyarrow.Table``
or a DataFrame. [`LabelJoin`][modeldeploy.monitoring.LabelJoin] matches them by id and
[`JoinResult.feed`][modeldeploy.monitoring.JoinResult.feed] puts the pairs into a
[`Monitor`][modeldeploy.Monitor] at their prediction time.

The rules, the same in memory and on Dask:

- one label per id: the latest by label time (ties: the later in the input);
- one prediction per id: the earliest by capture time (ties: the earlier in the input); the
  others are counted in ``duplicate_predictions`` and left out;
- with ``ttl``, a label more than ``ttl`` after its prediction is counted in ``expired`` and
  left out (a label before its prediction always matches: labels may come first).
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np

from modeldeploy._clock import as_clock
from modeldeploy._validation import check_choice, check_int
from modeldeploy.exceptions import InvalidParameterError, MissingDependencyError, SchemaError
from modeldeploy.monitoring._segments import import_pyarrow
from modeldeploy.typing import Clock

__all__ = ["JoinResult", "LabelJoin"]

_OWNER = "LabelJoin"
#: Rows (predictions plus labels) above which ``engine="auto"`` joins on Dask.
DEFAULT_DASK_ROWS = 50_000_000
#: Rows per ``Monitor.log_predictions`` call when a join result is fed to a monitor.
DEFAULT_FEED_ROWS = 1_000_000
_SEQ = "_seq"
#: Integer ids spanning at most this many times the rows use a direct-address table (4 bytes
#: per slot: at most 8 bytes per row of the two sides).
_DENSE_SPAN = 2
_DUPS = "_dups"
_EXPIRED = "_expired"


@dataclass
class JoinResult:
    """Predictions matched with their labels, and what did not match.

    ``table`` is a ``pyarrow.Table`` with ``id``, ``time`` (of the prediction), ``version``,
    ``prediction``, ``proba`` (when captured), ``label`` and ``label_time``, one row per
    matched id, in no particular order.
    """

    table: Any
    #: ``predictions``, ``labels``, ``matched``, ``expired``, ``duplicate_predictions``,
    #: ``unmatched_predictions``, ``unmatched_labels`` (labels matching no prediction: an
    #: unknown id, superseded by a later label of the same id, or expired).
    counts: dict[str, int] = field(default_factory=dict)

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v:,}" for k, v in self.counts.items())
        return f"JoinResult({shown})"

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><th style='text-align:left'>{k}</th><td>{v:,}</td></tr>"
            for k, v in self.counts.items()
        )
        return f"<table><caption>JoinResult</caption><tbody>{rows}</tbody></table>"

    def to_pandas(self) -> Any:
        """The matched pairs as a pandas DataFrame."""
        return self.table.to_pandas()

    def feed(self, monitor: Any, *, batch_rows: int = DEFAULT_FEED_ROWS) -> int:
        """Log the matched pairs into ``monitor`` at their prediction times; return the rows.

        Rows go in time order, one ``log_predictions(None, prediction, y_true=label,
        y_proba=proba, version=..., at=time)`` call per run of one version (at most
        ``batch_rows`` rows each), so they land in the window buckets of their prediction
        time. Rows older than a time window are counted out by the monitor as usual.
        """
        batch_rows = check_int(batch_rows, "batch_rows", "JoinResult.feed", min_value=1)
        pa = import_pyarrow("JoinResult.feed")
        import pyarrow.compute as pc

        table = self.table
        if table.num_rows == 0:
            return 0
        table = table.take(pc.sort_indices(table, [("time", "ascending")]))
        times = table.column("time").cast(pa.int64()).to_numpy() / 1e6
        preds = table.column("prediction").to_numpy(zero_copy_only=False)
        labels = table.column("label").to_numpy(zero_copy_only=False)
        versions = table.column("version").to_numpy(zero_copy_only=False)
        proba = _proba_matrix(table)
        change = np.flatnonzero(versions[1:] != versions[:-1]) + 1
        bounds = [0, *change.tolist(), table.num_rows]
        fed = 0
        for a, b in itertools.pairwise(bounds):
            for lo in range(a, b, batch_rows):
                hi = min(b, lo + batch_rows)
                version = versions[lo]
                monitor.log_predictions(
                    None,
                    preds[lo:hi],
                    y_true=labels[lo:hi],
                    y_proba=None if proba is None else proba[lo:hi],
                    version=None if version is None else str(version),
                    at=times[lo:hi],
                )
                fed += hi - lo
        return fed


class LabelJoin:
    """Match labels to captured predictions by id, within a TTL of the prediction.

    Parameters
    ----------
    ttl
        How long after its prediction a label still counts (a ``timedelta`` or seconds);
        ``None``: any time.
    engine
        ``"memory"`` (pyarrow hash lookups and numpy, in this process), ``"dask"``
        (``dask.dataframe``: both sides hash-partitioned by id, each pair of partitions
        joined by the same code; extras ``[dask]`` and ``[pandas]``), or ``"auto"``: Dask
        when either side is a ``dask.dataframe`` or there are more than ``dask_rows`` rows
        (predictions plus labels). The results are equal.
    npartitions
        Partitions of the Dask join (default: about one per million rows, at least 2).
    dask_rows
        Rows (predictions plus labels) above which ``"auto"`` picks Dask.
    id_column, label_column, time_column
        Column names of the labels when given as a table or file.
    clock
        The time of labels given without a time (arrays, a table without ``time_column``).

    Examples
    --------
    >>> import pyarrow as pa
    >>> from datetime import datetime, timezone
    >>> t = datetime(2026, 1, 1, tzinfo=timezone.utc)
    >>> captured = pa.table({"id": ["a", "b", "c"], "time": [t, t, t],
    ...                      "version": ["m:1"] * 3, "prediction": [1, 0, 1]})
    >>> result = LabelJoin().join(captured, (["c", "a", "zz"], [1, 0, 1]))
    >>> sorted(zip(result.table["id"].to_pylist(), result.table["label"].to_pylist()))
    [('a', 0), ('c', 1)]
    >>> result.counts["matched"], result.counts["unmatched_labels"]
    (2, 1)
    """

    def __init__(
        self,
        *,
        ttl: timedelta | float | None = None,
        engine: str = "auto",
        npartitions: int | None = None,
        dask_rows: int = DEFAULT_DASK_ROWS,
        id_column: str = "id",
        label_column: str = "label",
        time_column: str = "time",
        clock: Clock | None = None,
    ) -> None:
        if ttl is not None:
            seconds = ttl.total_seconds() if isinstance(ttl, timedelta) else ttl
            if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds < 0:
                raise InvalidParameterError(
                    f"The 'ttl' parameter of {_OWNER} must be a timedelta or seconds >= 0, or "
                    f"None. Got {ttl!r} instead."
                )
        self.ttl = ttl
        self.engine = check_choice(engine, "engine", _OWNER, ("auto", "memory", "dask"))
        self.npartitions = (
            None
            if npartitions is None
            else check_int(npartitions, "npartitions", _OWNER, min_value=1)
        )
        self.dask_rows = check_int(dask_rows, "dask_rows", _OWNER, min_value=0)
        self.id_column = id_column
        self.label_column = label_column
        self.time_column = time_column
        self.clock = as_clock(clock, _OWNER)

    @property
    def _ttl_us(self) -> int | None:
        if self.ttl is None:
            return None
        seconds = self.ttl.total_seconds() if isinstance(self.ttl, timedelta) else self.ttl
        return round(float(seconds) * 1e6)

    def __repr__(self) -> str:
        return f"LabelJoin(ttl={self.ttl!r}, engine={self.engine!r})"

    # ------------------------------------------------------------------ public

    def join(self, predictions: Any, labels: Any) -> JoinResult:
        """Match ``labels`` to ``predictions`` by id.

        Parameters
        ----------
        predictions
            A [`PredictionCapture`][modeldeploy.monitoring.PredictionCapture] (its segments, read
            from any process), a folder it wrote to, a ``pyarrow.Table`` or a DataFrame with
            ``id`` and ``time`` (and ``version``, ``prediction``, ``proba``) columns, or a
            ``dask.dataframe`` of them.
        labels
            A [`LabelCapture`][modeldeploy.monitoring.LabelCapture], a DataFrame or
            ``pyarrow.Table``, a ``.parquet`` / ``.csv`` file (or a folder of Parquet files),
            or ``(ids, labels)`` arrays.

        Raises
        ------
        SchemaError
            When a required column is missing, or the ids of the two sides cannot be compared
            (numbers on one side, text on the other that is not numbers).
        """
        now_us = round(self.clock.now().timestamp() * 1e6)
        engine = self.engine
        if engine == "auto":
            engine = "dask" if _is_dask(predictions) or _is_dask(labels) else "memory"
        if engine == "dask" or _is_dask(predictions) or _is_dask(labels):
            return self._join_dask(predictions, labels, now_us)
        pred = self._prediction_table(predictions)
        lab = self._label_table(labels)
        if self.engine == "auto" and pred.num_rows + lab.num_rows > self.dask_rows:
            return self._join_dask(pred, lab, now_us)
        pred, lab = _same_id_type(pred, lab)
        table, dups, expired = _match(pred, lab, self._ttl_us, now_us)
        return _result(table, dups, pred.num_rows, lab.num_rows, expired)

    def feed(self, monitor: Any, predictions: Any, labels: Any) -> JoinResult:
        """[`join`][modeldeploy.monitoring.LabelJoin.join], then
        [`JoinResult.feed`][modeldeploy.monitoring.JoinResult.feed] the pairs into ``monitor``."""
        result = self.join(predictions, labels)
        result.feed(monitor)
        return result

    # ------------------------------------------------------------------ inputs

    def _prediction_table(self, predictions: Any) -> Any:
        pa = import_pyarrow(f"{_OWNER}.join()")
        source = predictions
        if isinstance(source, (str, os.PathLike)):
            from modeldeploy.monitoring.capture import PredictionCapture

            path = Path(source)  # the capture's location, or its capture/ folder
            if (path / "capture").is_dir():
                path = path / "capture"
            source = PredictionCapture(path.parent, prefix=path.name)
        if callable(getattr(source, "read", None)) and callable(getattr(source, "segments", None)):
            table = source.read()
        else:
            table = _as_table(source, "predictions")
        for column in ("id", "time"):
            if column not in table.column_names:
                raise SchemaError(
                    f"{_OWNER}.join needs predictions with an {column!r} column; got "
                    f"{table.column_names}. Pass a PredictionCapture or its segments."
                )
        if not pa.types.is_timestamp(table.schema.field("time").type):
            raise SchemaError(
                f"The 'time' column of the predictions must hold timestamps; got "
                f"{table.schema.field('time').type}."
            )
        table = _with_time_us(table, "time")
        for name, kind in (("version", pa.string()), ("prediction", pa.float64())):
            if name not in table.column_names:
                table = table.append_column(name, pa.nulls(table.num_rows, kind))
        return table.drop_columns([c for c in ("features",) if c in table.column_names])

    def _label_table(self, labels: Any) -> Any:
        pa = import_pyarrow(f"{_OWNER}.join()")
        source = labels
        if isinstance(source, tuple) and len(source) == 2:
            ids, values = source
            ids = np.asarray(ids, dtype=object if _any_str(ids) else None).ravel()
            values = np.asarray(values).ravel()
            if ids.shape[0] != values.shape[0]:
                raise SchemaError(
                    f"{_OWNER}.join needs one label per id. Got {ids.shape[0]} ids and "
                    f"{values.shape[0]} labels instead."
                )
            source = pa.table(
                {
                    "id": pa.array(ids.tolist() if ids.dtype == object else ids),
                    "label": pa.array(values.tolist() if values.dtype == object else values),
                }
            )
        elif isinstance(source, (str, os.PathLike)):
            path = Path(source)
            if (path / "labels").is_dir():  # a LabelCapture's location
                path = path / "labels"
            source = _read_file(path)
        elif callable(getattr(source, "read", None)) and callable(
            getattr(source, "segments", None)
        ):
            source = source.read()
        table = _as_table(source, "labels")
        names = table.column_names
        for want in (self.id_column, self.label_column):
            if want not in names:
                raise SchemaError(
                    f"{_OWNER}.join needs labels with an {want!r} column; got {names}. Name "
                    "the columns with id_column= and label_column=."
                )
        columns = {"id": table.column(self.id_column), "label": table.column(self.label_column)}
        if self.time_column in names:
            columns["time"] = table.column(self.time_column)
        out = pa.table(columns)
        if "time" in out.column_names and not pa.types.is_timestamp(out.schema.field("time").type):
            raise SchemaError(
                f"The {self.time_column!r} column of the labels must hold timestamps; got "
                f"{out.schema.field('time').type}."
            )
        return _with_time_us(out, "time") if "time" in out.column_names else out

    # ------------------------------------------------------------------ dask

    def _join_dask(self, predictions: Any, labels: Any, now_us: int) -> JoinResult:
        try:
            import dask
        except ImportError:
            raise MissingDependencyError("dask", "dask", f"{_OWNER}(engine='dask')") from None
        # Dask turns object columns into text by default; probabilities are lists.
        with dask.config.set({"dataframe.convert-string": False}):
            return self._join_partitions(predictions, labels, now_us)

    def _join_partitions(self, predictions: Any, labels: Any, now_us: int) -> JoinResult:
        import dask.dataframe as dd

        pa = import_pyarrow(f"{_OWNER}(engine='dask')")
        pred = self._dask_side(predictions, "predictions")
        lab = self._dask_side(labels, "labels")
        if pred["id"].dtype != lab["id"].dtype:
            # One id type on both sides before hashing, or equal ids land in different parts.
            kind = "int64" if pred["id"].dtype.kind in "iu" else str
            pred = pred.assign(id=pred["id"].astype(kind))
            lab = lab.assign(id=lab["id"].astype(kind))
        n_pred = int(pred.shape[0].compute())
        n_lab = int(lab.shape[0].compute())
        k = self.npartitions or max(2, (n_pred + n_lab) // 1_000_000)
        # Both sides hash-partitioned by id into k parts: partition i of each holds the same ids.
        pred = pred.shuffle(on="id", npartitions=k)
        lab = lab.shuffle(on="id", npartitions=k)
        ttl_us = self._ttl_us
        meta = _match_frame(pred._meta, lab._meta, ttl_us, now_us)
        joined = dd.map_partitions(  # type: ignore[no-untyped-call]
            _match_frame, pred, lab, ttl_us, now_us, meta=meta, align_dataframes=False
        )
        frame = joined.compute()
        table = pa.Table.from_pandas(frame, preserve_index=False)
        dups = int(pa.compute.sum(table.column(_DUPS)).as_py() or 0) if table.num_rows else 0
        table = _text_as_string(table.drop_columns([_DUPS]))
        return _result(table, dups, n_pred, n_lab)

    def _dask_side(self, source: Any, side: str) -> Any:
        """One side as a dask DataFrame with a ``_seq`` column (input order)."""
        import dask.dataframe as dd

        if _is_dask(source):
            frame = source
            if side == "labels":
                rename = {self.id_column: "id", self.label_column: "label"}
                if self.time_column in frame.columns:
                    rename[self.time_column] = "time"
                frame = frame.rename(columns=rename)[list(rename.values())]
        elif side == "predictions" and callable(getattr(source, "to_dask", None)):
            frame = source.to_dask()
            frame = frame.drop(columns=[c for c in ("features",) if c in frame.columns])
        else:
            table = (
                self._prediction_table(source) if side == "predictions" else
                self._label_table(source)
            )  # fmt: skip
            k = max(1, table.num_rows // 1_000_000)
            frame = dd.from_pandas(  # type: ignore[no-untyped-call]
                _to_pandas(table), npartitions=k, sort=False
            )
        # Input order, as the in-memory join sees it: partition number, then row.
        return frame.map_partitions(_number_rows, meta=_number_rows(frame._meta))


# ---------------------------------------------------------------------- the kernel


def _match(
    pred: Any, lab: Any, ttl_us: int | None, now_us: int, *, flag_expired: bool = False
) -> tuple[Any, int, int]:
    """Join one pair of tables (all rows, or one partition of each).

    Returns the matched rows, how many duplicate predictions were left out and how many
    matches were past the TTL: left out too, or kept with an ``_expired`` flag
    (``flag_expired``, for partitions whose counts are summed later).
    """
    pa = import_pyarrow(_OWNER)

    n_l = lab.num_rows
    label_time = _label_times(lab, now_us)
    # Order the labels so the one that counts comes first among its id: latest time, then
    # latest in the input. Reversed input order already does that when times never decrease.
    in_order = bool(np.all(label_time[1:] >= label_time[:-1]))
    if in_order and _SEQ in lab.column_names:
        lab_seq = _seq_of(lab)
        in_order = bool(np.all(lab_seq[1:] >= lab_seq[:-1]))
    order = np.arange(n_l - 1, -1, -1) if in_order else np.lexsort((-_seq_of(lab), -label_time))
    p_idx, l_idx = _lookup(pred.column("id"), lab.column("id"), order)
    pred_time = pred.column("time").cast(pa.int64()).to_numpy()
    dups = 0
    if p_idx.size:
        seen = np.zeros(n_l, dtype=bool)
        seen[l_idx] = True
        if np.count_nonzero(seen) < l_idx.size:
            counts = np.bincount(l_idx, minlength=n_l)
            multi = counts[l_idx] > 1
            # Several predictions of one id: the earliest (then the first in the input) counts.
            pred_seq = _seq_of(pred)
            sub = np.flatnonzero(multi)
            rank = np.lexsort((pred_seq[p_idx[sub]], pred_time[p_idx[sub]], l_idx[sub]))
            sorted_l = l_idx[sub][rank]
            first = np.ones(sorted_l.size, dtype=bool)
            first[1:] = sorted_l[1:] != sorted_l[:-1]
            keep = np.ones(p_idx.size, dtype=bool)
            keep[sub[rank[~first]]] = False
            dups = int((~first).sum())
            p_idx, l_idx = p_idx[keep], l_idx[keep]
    expired = np.zeros(p_idx.size, dtype=bool)
    n_expired = 0
    if ttl_us is not None and p_idx.size:
        expired = label_time[l_idx] - pred_time[p_idx] > ttl_us
        n_expired = int(np.count_nonzero(expired))
        if n_expired and not flag_expired:
            p_idx, l_idx = p_idx[~expired], l_idx[~expired]
    out = pred.drop_columns([c for c in (_SEQ,) if c in pred.column_names]).take(pa.array(p_idx))
    out = out.append_column("label", lab.column("label").take(pa.array(l_idx)))
    out = out.append_column(
        "label_time",
        pa.array(label_time[l_idx], pa.int64()).cast(pa.timestamp("us", tz="UTC")),
    )
    if flag_expired:
        out = out.append_column(_EXPIRED, pa.array(expired))
    return out, dups, n_expired


def _lookup(pred_ids: Any, lab_ids: Any, order: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The predictions with a label (their rows) and the label that counts for each (its row):
    the first of its id in ``order``.

    Integer ids in a compact range (at most ``_DENSE_SPAN`` times the rows) go through a
    direct-address table; other ids (text, sparse integers) through Arrow's hash lookup.
    """
    pa = import_pyarrow(_OWNER)
    import pyarrow.compute as pc

    n_l = len(lab_ids)
    if not n_l or not len(pred_ids):
        return np.empty(0, np.int64), np.empty(0, np.int64)
    if (
        pa.types.is_integer(pred_ids.type)
        and pred_ids.type == lab_ids.type
        and not pred_ids.null_count
        and not lab_ids.null_count
    ):
        p = np.asarray(pred_ids.to_numpy(), dtype=np.int64)
        q = np.asarray(lab_ids.to_numpy(), dtype=np.int64)
        lo = min(int(p.min()), int(q.min()))
        hi = max(int(p.max()), int(q.max()))
        span = hi - lo + 1
        if span <= _DENSE_SPAN * (p.size + q.size):
            kind = np.int32 if n_l < 2**31 - 1 else np.int64
            table = np.full(span, -1, dtype=kind)
            keys = q - lo if lo else q
            rows_l = np.arange(n_l, dtype=kind)
            table[keys] = rows_l  # any one label of each id; duplicates settled below
            losers = np.flatnonzero(table[keys] != rows_l)
            if losers.size:
                repeated = np.zeros(span, dtype=bool)
                repeated[keys[losers]] = True
                rows = order[repeated[keys[order]]]  # duplicated ids' labels, best first
                first = np.unique(keys[rows], return_index=True)[1]
                table[keys[rows[first]]] = rows[first]
            pos = table[p - lo if lo else p]
            p_idx = np.flatnonzero(pos >= 0)
            return p_idx, pos[p_idx].astype(np.int64)
    ordered_ids = lab_ids.take(pa.array(order))
    found = pc.index_in(pred_ids, value_set=ordered_ids)
    p_idx = np.flatnonzero(found.is_valid().to_numpy(zero_copy_only=False))
    l_idx = order[found.drop_null().to_numpy()] if p_idx.size else np.empty(0, np.int64)
    return p_idx, l_idx


def _match_frame(pred: Any, lab: Any, ttl_us: int | None, now_us: int) -> Any:
    """`_match` on one pair of pandas partitions (the Dask engine)."""
    pa = import_pyarrow(_OWNER)
    p = _frame_to_table(pred)
    lab_t = _frame_to_table(lab)
    p, lab_t = _same_id_type(p, lab_t)
    table, dups, _ = _match(p, lab_t, ttl_us, now_us, flag_expired=True)
    column = np.zeros(table.num_rows, dtype=np.int64)
    if table.num_rows:
        column[0] = dups
    table = table.append_column(_DUPS, pa.array(column))
    return table.to_pandas()


def _result(
    table: Any, dups: int, n_pred: int, n_lab: int, n_expired: int | None = None
) -> JoinResult:
    """The counts of a join; ``n_expired`` None: count (and drop) the ``_expired`` rows."""
    import pyarrow.compute as pc

    if n_expired is None:
        flags = table.column(_EXPIRED)
        n_expired = int(pc.sum(flags).as_py() or 0) if table.num_rows else 0
        if n_expired:
            table = table.filter(pc.invert(flags))
        table = table.drop_columns([_EXPIRED])
    matched = table.num_rows
    counts = {
        "predictions": n_pred,
        "labels": n_lab,
        "matched": matched,
        "expired": n_expired,
        "duplicate_predictions": dups,
        "unmatched_predictions": n_pred - matched - n_expired - dups,
        "unmatched_labels": n_lab - matched,
    }
    return JoinResult(table, counts)


# ---------------------------------------------------------------------- helpers


def _seq_of(table: Any) -> np.ndarray:
    if _SEQ in table.column_names:
        return np.asarray(table.column(_SEQ).to_numpy(), dtype=np.int64)
    return np.arange(table.num_rows, dtype=np.int64)


def _label_times(lab: Any, now_us: int) -> np.ndarray:
    pa = import_pyarrow(_OWNER)
    if "time" not in lab.column_names:
        return np.full(lab.num_rows, now_us, dtype=np.int64)
    column = lab.column("time").cast(pa.int64())
    import pyarrow.compute as pc

    return np.asarray(pc.fill_null(column, now_us).to_numpy(), dtype=np.int64)


def _with_time_us(table: Any, name: str) -> Any:
    pa = import_pyarrow(_OWNER)
    i = table.column_names.index(name)
    column = table.column(i)
    kind = column.type
    tz = getattr(kind, "tz", None)
    if tz is None:  # a naive time is taken as UTC
        column = column.cast(pa.timestamp(kind.unit)).cast(pa.timestamp(kind.unit, tz="UTC"))
    return table.set_column(i, name, column.cast(pa.timestamp("us", tz="UTC")))


def _same_id_type(pred: Any, lab: Any) -> tuple[Any, Any]:
    """Both sides' ids of one type: text when the predictions' are, else the predictions'."""
    pa = import_pyarrow(_OWNER)
    p_type = pred.schema.field("id").type
    l_type = lab.schema.field("id").type
    text = _is_text(pa, p_type)
    target = pa.string() if text else p_type
    if text and p_type != target:
        pred = pred.set_column(pred.column_names.index("id"), "id", pred.column("id").cast(target))
    if l_type != target:
        try:
            column = lab.column("id").cast(target)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            raise SchemaError(
                f"The label ids ({l_type}) cannot be compared with the prediction ids "
                f"({p_type}); give the labels the ids the predictions were captured with."
            ) from None
        lab = lab.set_column(lab.column_names.index("id"), "id", column)
    return pred, lab


def _text_as_string(table: Any) -> Any:
    """Text columns as ``string`` (pandas round trips may give ``large_string``)."""
    pa = import_pyarrow(_OWNER)
    for i, f in enumerate(table.schema):
        if _is_text(pa, f.type) and f.type != pa.string():
            table = table.set_column(i, f.name, table.column(i).cast(pa.string()))
        elif f.name == "proba" and pa.types.is_list(f.type):
            table = table.set_column(i, f.name, table.column(i).cast(pa.list_(pa.float64())))
    return table.replace_schema_metadata(None)


def _is_text(pa: Any, kind: Any) -> bool:
    return bool(
        pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind)
    )


def _proba_matrix(table: Any) -> np.ndarray | None:
    if "proba" not in table.column_names:
        return None
    column = table.column("proba").combine_chunks()
    if column.null_count or not len(column):
        return None
    flat = column.flatten().to_numpy()
    width = flat.size // len(column)
    if width * len(column) != flat.size:
        return None
    return np.asarray(flat, dtype=np.float64).reshape(len(column), width)


def _as_table(source: Any, side: str) -> Any:
    pa = import_pyarrow(f"{_OWNER}.join()")
    if isinstance(source, pa.Table):
        return source
    if isinstance(source, pa.RecordBatch):
        return pa.Table.from_batches([source])
    if type(source).__module__.startswith("pandas") and hasattr(source, "columns"):
        return pa.Table.from_pandas(source, preserve_index=False)
    raise InvalidParameterError(
        f"The {side!r} argument of {_OWNER}.join must be a capture, a pyarrow Table, a pandas "
        f"DataFrame, a file path or (ids, labels) arrays. Got {type(source).__name__} instead."
    )


def _read_file(path: Path) -> Any:
    pa = import_pyarrow(f"{_OWNER}.join()")
    if path.is_dir():
        import pyarrow.dataset as ds

        return ds.dataset(path, format="parquet").to_table()
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        return pa.parquet.read_table(path)
    if suffix in (".csv", ".gz"):
        import pyarrow.csv

        return pyarrow.csv.read_csv(path)
    raise InvalidParameterError(
        f"The labels file {str(path)!r} must be a .parquet or .csv file, or a folder of Parquet "
        "files. Got a file ending in {suffix!r} instead."
    )


def _any_str(values: Any) -> bool:
    try:
        return any(isinstance(v, str) for v in values)
    except TypeError:
        return isinstance(values, str)


def _is_dask(obj: Any) -> bool:
    return type(obj).__module__.startswith("dask")


def _to_pandas(table: Any) -> Any:
    return table.to_pandas()


def _frame_to_table(frame: Any) -> Any:
    pa = import_pyarrow(_OWNER)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    for name in ("time",):
        if name in table.column_names:
            kind = table.schema.field(name).type
            if pa.types.is_timestamp(kind):
                table = _with_time_us(table, name)
    return table


def _number_rows(frame: Any, partition_info: Any = None) -> Any:
    """Add ``_seq``: the partition number in the high bits, the row in the low ones."""
    number = 0 if partition_info is None else int(partition_info["number"])
    frame = frame.copy()
    frame[_SEQ] = (np.int64(number) << np.int64(32)) + np.arange(len(frame), dtype=np.int64)
    return frame
