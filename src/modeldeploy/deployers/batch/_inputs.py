"""Chunks of rows, as [`Source`][modeldeploy.deployers.batch.Source] objects hand them out.

A `ChunkRef` is a picklable handle on one chunk; loading it gives a `Chunk`. Lazy
references (rows of a ``.npy`` or Parquet file) read their rows where they are loaded, so only a
path and a row range travel to the worker. Exported by `modeldeploy.deployers.batch`.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from modeldeploy.exceptions import MissingDependencyError, SchemaError

__all__ = ["Chunk", "ChunkRef", "LoadedRef"]

_CSV_SUFFIXES = (".csv", ".csv.gz", ".csv.bz2", ".csv.zip", ".csv.xz", ".tsv")
_PARQUET_SUFFIXES = (".parquet", ".pq")


def _pandas(feature: str) -> Any:
    try:
        import pandas as pd
    except ImportError:  # pragma: no cover - pandas is installed in the test environment
        raise MissingDependencyError("pandas", "pandas", feature) from None
    return pd


def _pyarrow_parquet(feature: str) -> Any:
    try:
        import pyarrow.parquet as pq
    except ImportError:  # pragma: no cover - pyarrow is installed in the test environment
        raise MissingDependencyError("pyarrow", "pandas", feature) from None
    return pq


def _is_dataframe(X: Any) -> bool:
    return type(X).__name__ == "DataFrame" and hasattr(X, "columns") and hasattr(X, "iloc")


def _n_rows(X: Any) -> int:
    shape = getattr(X, "shape", None)
    if shape is not None and len(shape) >= 1:
        return int(shape[0])
    return len(X)


# ---------------------------------------------------------------------- chunks


@dataclass
class Chunk:
    """One chunk of rows, read and ready to score.

    Attributes
    ----------
    index
        Position of the chunk in the source, from 0.
    start
        Global row number of the chunk's first row.
    X
        The features: a 2-D array, a DataFrame, or anything ``Signature.validate`` accepts.
    ids
        The id columns of these rows (name to 1-D array), or ``None``.
    """

    index: int
    start: int
    X: Any
    ids: dict[str, np.ndarray] | None = None

    @property
    def n_rows(self) -> int:
        """Number of rows in the chunk."""
        return _n_rows(self.X)

    @property
    def stop(self) -> int:
        """Global row number one past the chunk's last row."""
        return self.start + self.n_rows

    def digest(self) -> str:
        """A hash of the chunk's rows and ids, so a resumed run can tell they did not change."""
        h = hashlib.sha256()  # hardware-accelerated on most CPUs: the fastest here
        h.update(f"{self.start}:{self.n_rows};".encode())
        _hash_into(h, self.X)
        for name in sorted(self.ids or {}):
            h.update(f"id:{name};".encode())
            _hash_into(h, (self.ids or {})[name])
        return h.hexdigest()[:32]


def _hash_into(h: Any, X: Any) -> None:
    """Feed the content of a chunk's features or ids into ``h`` (fast for arrays and frames)."""
    if _is_dataframe(X):
        pd = _pandas("Reading DataFrames")
        h.update(repr([(str(c), str(t)) for c, t in X.dtypes.items()]).encode())
        rows = pd.util.hash_pandas_object(X, index=False).to_numpy()
        h.update(np.ascontiguousarray(rows).view(np.uint8).data)
        return
    if isinstance(X, np.ndarray) and not X.dtype.hasobject:
        h.update(f"{X.dtype.str}{X.shape};".encode())
        h.update(np.ascontiguousarray(X).reshape(-1).view(np.uint8).data)
        return
    if isinstance(X, np.ndarray) and X.ndim == 1:
        try:
            pd = _pandas("Hashing object arrays")
            h.update(f"O{X.shape};".encode())
            h.update(pd.util.hash_array(X).view(np.uint8).data)
            return
        except (TypeError, ValueError):
            pass  # values pandas cannot hash: fall back to joblib's pickle-based hash
    import joblib  # imported when first needed: it is not cheap to import

    h.update(joblib.hash(X).encode())


class ChunkRef(ABC):
    """A picklable handle on one chunk: its index, row range and how to read it."""

    index: int
    start: int
    stop: int

    @abstractmethod
    def load(self) -> Chunk:
        """Read the chunk's rows."""


@dataclass
class LoadedRef(ChunkRef):
    """A chunk already in memory (a view of an array, a slice of a DataFrame, a CSV chunk).

    Examples
    --------
    >>> import numpy as np
    >>> from modeldeploy.deployers.sources import Chunk, LoadedRef
    >>> ref = LoadedRef(Chunk(index=3, start=300, X=np.zeros((100, 2))))
    >>> ref.index, ref.start, ref.stop, ref.load().n_rows
    (3, 300, 400, 100)
    """

    chunk: Chunk
    index: int = field(init=False)
    start: int = field(init=False)
    stop: int = field(init=False)

    def __post_init__(self) -> None:
        self.index = self.chunk.index
        self.start = self.chunk.start
        self.stop = self.chunk.stop

    def load(self) -> Chunk:
        return self.chunk


@dataclass
class _NpyRange(ChunkRef):
    """Rows ``start:stop`` of a ``.npy`` file, read with one ``readinto`` (no whole-file map)."""

    path: str
    index: int
    start: int
    stop: int
    offset: int
    dtype: str
    row_shape: tuple[int, ...]
    fortran: bool
    n_total: int

    def _fill(self, f: Any, at: int, buf: np.ndarray) -> None:
        f.seek(at)
        got = 0
        while got < buf.size:
            read = f.readinto(memoryview(buf[got:]))  # type: ignore[arg-type]
            if not read:
                raise SchemaError(
                    f"The .npy file {self.path!r} ended early: expected rows {self.start}.."
                    f"{self.stop - 1}, the file holds fewer. Was it truncated or rewritten "
                    "while being scored?",
                    row=self.start,
                )
            got += read

    def load(self) -> Chunk:
        n = self.stop - self.start
        dtype = np.dtype(self.dtype)
        with open(self.path, "rb", buffering=0) as f:
            if self.fortran:
                # Column-major file: each column's rows are contiguous, read them one by one.
                X = np.empty((n, *self.row_shape), dtype=dtype, order="F")
                for j in range(X.shape[1]):
                    at = self.offset + (j * self.n_total + self.start) * dtype.itemsize
                    self._fill(f, at, X[:, j].view(np.uint8))
            else:
                X = np.empty((n, *self.row_shape), dtype=dtype)
                row_bytes = dtype.itemsize * int(np.prod(self.row_shape, dtype=np.int64))
                self._fill(f, self.offset + self.start * row_bytes, X.reshape(-1).view(np.uint8))
        if X.ndim == 1:
            X = X.reshape(-1, 1)
        return Chunk(self.index, self.start, X)


@dataclass
class _ParquetRange(ChunkRef):
    """Rows ``start:stop`` of a Parquet file: reads only the row groups they overlap."""

    path: str
    index: int
    start: int
    stop: int
    group_starts: tuple[int, ...]
    id_columns: tuple[str, ...]

    def load(self) -> Chunk:
        pq = _pyarrow_parquet("Reading Parquet files")
        pf = pq.ParquetFile(self.path)
        bounds = (*self.group_starts, pf.metadata.num_rows)
        groups = [
            g
            for g in range(len(self.group_starts))
            if bounds[g] < self.stop and bounds[g + 1] > self.start
        ]
        table = pf.read_row_groups(groups)
        table = table.slice(self.start - bounds[groups[0]], self.stop - self.start)
        df = table.to_pandas()
        X, ids = _split_ids(df, self.id_columns, self.path)
        return Chunk(self.index, self.start, X, ids)


def _split_ids(df: Any, id_columns: Sequence[str], where: str) -> tuple[Any, dict[str, Any] | None]:
    """Separate the id columns of a DataFrame chunk from its features."""
    if not id_columns:
        return df, None
    missing = [c for c in id_columns if c not in df.columns]
    if missing:
        raise SchemaError(
            f"The id column {missing[0]!r} is not in {where}; its columns are "
            f"{[str(c) for c in df.columns][:12]}. Pass id_columns that exist, or none.",
            column=str(missing[0]),
        )
    ids = {str(c): df[c].to_numpy() for c in id_columns}
    return df.drop(columns=list(id_columns)), ids
