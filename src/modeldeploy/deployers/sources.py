"""Where :class:`~modeldeploy.deployers.batch.BatchDeployer` reads rows from and writes scores to.

Sources are cut into chunks of ``chunk_size`` rows, numbered from 0, each knowing its global row
range. Random-access sources (arrays, ``.npy`` files, DataFrames, Parquet files on Dask) hand out
*lazy* chunk references: a small picklable object holding a path and a row range, read where it
is scored (a worker thread, a worker process or a Dask worker), so the data never travels
through the caller. Sequential sources (CSV files, iterables) are read in the caller, one chunk
at a time.

Outputs are written per chunk as *parts* (see :mod:`modeldeploy.deployers._checkpoint`) and
assembled at the end: a ``.npy`` file preallocated with ``numpy.lib.format.open_memmap`` and
filled chunk by chunk, or a Parquet / CSV file with the id columns carried through.
"""

from __future__ import annotations

import itertools
import os
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from modeldeploy.exceptions import InvalidParameterError, MissingDependencyError, SchemaError

__all__ = [
    "Chunk",
    "ChunkRef",
    "LoadedRef",
    "Source",
    "open_output",
    "open_source",
    "output_columns",
]

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


# ---------------------------------------------------------------------- sources


class Source(ABC):
    """Rows to score, cut into chunks.

    Subclass it to read from somewhere else (a database, an object store): implement
    :meth:`refs` to yield one :class:`ChunkRef` per chunk, in order, with consecutive row
    ranges, and :meth:`describe` to say what is read (checkpoints compare it on resume). Set
    ``n_rows`` when known, for progress bars.

    Attributes
    ----------
    n_rows
        The number of rows when known up front (``None`` for CSV files and iterables).
    """

    n_rows: int | None = None
    #: Whether chunks can be read anywhere from a small handle (path and row range).
    random_access: bool = False

    @abstractmethod
    def refs(self, chunk_size: int, *, lazy: bool) -> Iterator[ChunkRef]:
        """Chunk handles in order; ``lazy`` asks for handles that read where they are loaded."""

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """A JSON-friendly description, used to tell whether a checkpoint belongs to this run."""


class _ArraySource(Source):
    random_access = True

    def __init__(self, X: np.ndarray) -> None:
        self.X = X.reshape(-1, 1) if X.ndim == 1 else X
        self.n_rows = int(self.X.shape[0])

    def refs(self, chunk_size: int, *, lazy: bool) -> Iterator[ChunkRef]:
        assert self.n_rows is not None
        for index, start in enumerate(range(0, self.n_rows, chunk_size)):
            yield LoadedRef(Chunk(index, start, self.X[start : start + chunk_size]))

    def describe(self) -> dict[str, Any]:
        return {"kind": "array", "shape": list(self.X.shape), "dtype": str(self.X.dtype)}


class _NpySource(Source):
    random_access = True

    def __init__(self, path: Path) -> None:
        self.path = path
        shape, fortran, dtype, offset = _npy_header(path)
        if dtype.hasobject:
            raise InvalidParameterError(
                f"Cannot read {str(path)!r} chunk by chunk: it holds Python objects. Batch "
                "scoring reads .npy files of numeric dtype; save object arrays as Parquet or CSV."
            )
        if len(shape) not in (1, 2):
            raise InvalidParameterError(
                f"Expected a .npy file holding a 1-D or 2-D array; {str(path)!r} holds shape "
                f"{shape}. Reshape it to (n_rows, n_features) before scoring."
            )
        self.shape = tuple(int(s) for s in shape)
        self.dtype = dtype
        self.offset = offset
        self.fortran = fortran and len(shape) == 2
        self.n_rows = self.shape[0]

    def refs(self, chunk_size: int, *, lazy: bool) -> Iterator[ChunkRef]:
        assert self.n_rows is not None
        for index, start in enumerate(range(0, self.n_rows, chunk_size)):
            yield _NpyRange(
                str(self.path),
                index,
                start,
                min(start + chunk_size, self.n_rows),
                self.offset,
                self.dtype.str,
                self.shape[1:],
                self.fortran,
                self.n_rows,
            )

    def describe(self) -> dict[str, Any]:
        return {
            "kind": "npy",
            "path": str(self.path.resolve()),
            "shape": list(self.shape),
            "dtype": self.dtype.str,
            "bytes": self.path.stat().st_size,
        }


def _npy_header(path: Path) -> tuple[tuple[int, ...], bool, np.dtype[Any], int]:
    """Shape, Fortran order, dtype and data offset of a .npy file, reading only its header.

    (Not ``np.load(mmap_mode="r")``: mapping the whole file would count its full size against
    the address space of the process.)
    """
    fmt = np.lib.format
    with open(path, "rb") as f:
        try:
            version = fmt.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = fmt.read_array_header_1_0(f)
            elif version == (2, 0):
                shape, fortran, dtype = fmt.read_array_header_2_0(f)
            else:
                shape, fortran, dtype = fmt._read_array_header(f, version)  # type: ignore[attr-defined]
        except ValueError as exc:
            raise InvalidParameterError(
                f"Cannot read {str(path)!r} as a .npy file: {exc}. Pass a file written by "
                "numpy.save."
            ) from exc
        return tuple(shape), bool(fortran), np.dtype(dtype), f.tell()


class _FrameSource(Source):
    random_access = True

    def __init__(self, df: Any, id_columns: Sequence[str]) -> None:
        self.df = df
        self.id_columns = tuple(id_columns)
        self.n_rows = int(df.shape[0])
        _split_ids(df.iloc[:0], self.id_columns, "the DataFrame")

    def refs(self, chunk_size: int, *, lazy: bool) -> Iterator[ChunkRef]:
        assert self.n_rows is not None
        for index, start in enumerate(range(0, self.n_rows, chunk_size)):
            part = self.df.iloc[start : start + chunk_size]
            X, ids = _split_ids(part, self.id_columns, "the DataFrame")
            yield LoadedRef(Chunk(index, start, X, ids))

    def describe(self) -> dict[str, Any]:
        return {
            "kind": "dataframe",
            "shape": list(self.df.shape),
            "columns": [str(c) for c in self.df.columns],
        }


class _CsvSource(Source):
    def __init__(self, path: Path, id_columns: Sequence[str]) -> None:
        self.path = path
        self.id_columns = tuple(id_columns)
        _pandas("Reading CSV files")

    def refs(self, chunk_size: int, *, lazy: bool) -> Iterator[ChunkRef]:
        pd = _pandas("Reading CSV files")
        sep = "\t" if self.path.name.endswith(".tsv") else ","
        start = 0
        with pd.read_csv(self.path, chunksize=chunk_size, sep=sep) as reader:
            for index, df in enumerate(reader):
                X, ids = _split_ids(df, self.id_columns, repr(str(self.path)))
                chunk = Chunk(index, start, X, ids)
                start = chunk.stop
                yield LoadedRef(chunk)

    def describe(self) -> dict[str, Any]:
        return {
            "kind": "csv",
            "path": str(self.path.resolve()),
            "bytes": self.path.stat().st_size,
        }


class _ParquetSource(Source):
    random_access = True

    def __init__(self, path: Path, id_columns: Sequence[str]) -> None:
        pq = _pyarrow_parquet("Reading Parquet files")
        self.path = path
        self.id_columns = tuple(id_columns)
        meta = pq.ParquetFile(path).metadata
        self.n_rows = int(meta.num_rows)
        starts, total = [], 0
        for g in range(meta.num_row_groups):
            starts.append(total)
            total += meta.row_group(g).num_rows
        self.group_starts = tuple(starts)

    def refs(self, chunk_size: int, *, lazy: bool) -> Iterator[ChunkRef]:
        assert self.n_rows is not None
        if lazy:
            for index, start in enumerate(range(0, self.n_rows, chunk_size)):
                stop = min(start + chunk_size, self.n_rows)
                yield _ParquetRange(
                    str(self.path), index, start, stop, self.group_starts, self.id_columns
                )
            return
        # Streamed in the caller: decodes each row group once, whatever the chunk size.
        pq = _pyarrow_parquet("Reading Parquet files")
        import pyarrow as pa

        pending: list[Any] = []
        buffered = 0
        index = start = 0
        batches = pq.ParquetFile(self.path).iter_batches(batch_size=chunk_size)
        for batch in itertools.chain(batches, [None]):
            if batch is not None:
                pending.append(batch)
                buffered += batch.num_rows
            while buffered >= chunk_size or (batch is None and buffered):
                table = pa.Table.from_batches(pending)
                take = min(chunk_size, buffered)
                X, ids = _split_ids(
                    table.slice(0, take).to_pandas(), self.id_columns, repr(str(self.path))
                )
                yield LoadedRef(Chunk(index, start, X, ids))
                rest = table.slice(take)
                pending = rest.to_batches() if rest.num_rows else []
                buffered -= take
                index += 1
                start += take

    def describe(self) -> dict[str, Any]:
        return {
            "kind": "parquet",
            "path": str(self.path.resolve()),
            "rows": self.n_rows,
            "bytes": self.path.stat().st_size,
        }


class _IterableSource(Source):
    def __init__(self, chunks: Iterable[Any], id_columns: Sequence[str]) -> None:
        self.chunks = chunks
        self.id_columns = tuple(id_columns)

    def refs(self, chunk_size: int, *, lazy: bool) -> Iterator[ChunkRef]:
        start = 0
        for index, item in enumerate(self.chunks):
            X: Any = item
            ids = None
            if _is_dataframe(item):
                X, ids = _split_ids(item, self.id_columns, f"chunk {index}")
            elif isinstance(item, np.ndarray) and item.ndim == 1:
                X = item.reshape(-1, 1)
            chunk = Chunk(index, start, X, ids)
            start = chunk.stop
            yield LoadedRef(chunk)

    def describe(self) -> dict[str, Any]:
        return {"kind": "iterable", "type": type(self.chunks).__name__}


def open_source(data: Any, id_columns: Sequence[str] = ()) -> Source:
    """Wrap what a user passed to ``BatchDeployer.run`` as a :class:`Source`.

    Parameters
    ----------
    data
        A numpy array, a pandas DataFrame, a path to a ``.npy``, ``.csv`` or ``.parquet`` file,
        an iterable whose items are chunks (arrays, DataFrames, lists of rows or dicts), or a
        :class:`Source` of your own, returned as it is.
    id_columns
        Columns of a DataFrame, CSV or Parquet source to carry to the output instead of scoring.

    Raises
    ------
    InvalidParameterError
        For a source of an unknown kind, or id columns on a source without columns.
    """
    ids = tuple(id_columns)
    if isinstance(data, Source):
        return data  # a source of the user's own (a database cursor, an object store, ...)
    if isinstance(data, (str, os.PathLike)):
        path = Path(data)
        name = path.name.lower()
        if not path.is_file():
            raise InvalidParameterError(
                f"The source {str(path)!r} does not exist or is not a file. Pass an existing "
                ".npy, .csv or .parquet file, an array, a DataFrame or an iterable of chunks."
            )
        if name.endswith(".npy"):
            _no_ids(ids, "a .npy file")
            return _NpySource(path)
        if name.endswith(_CSV_SUFFIXES):
            return _CsvSource(path, ids)
        if name.endswith(_PARQUET_SUFFIXES):
            return _ParquetSource(path, ids)
        raise InvalidParameterError(
            f"Cannot tell the format of {str(path)!r} from its name. Batch scoring reads files "
            "ending in .npy, .csv (.csv.gz, .tsv) or .parquet (.pq); rename it, or read it "
            "yourself and pass the chunks as an iterable."
        )
    if isinstance(data, np.ndarray):
        _no_ids(ids, "a numpy array")
        return _ArraySource(data)
    if _is_dataframe(data):
        return _FrameSource(data, ids)
    if isinstance(data, Iterable) and not isinstance(data, (bytes, dict)):
        return _IterableSource(data, ids)
    raise InvalidParameterError(
        "The 'source' parameter of BatchDeployer.run must be a numpy array, a pandas DataFrame, "
        "a path to a .npy, .csv or .parquet file, or an iterable of chunks. Got "
        f"{type(data).__name__} instead."
    )


def _no_ids(ids: Sequence[str], what: str) -> None:
    if ids:
        raise InvalidParameterError(
            f"The 'id_columns' parameter of BatchDeployer.run names columns, but the source is "
            f"{what}, which has none. Got {list(ids)!r}; pass a DataFrame, CSV or Parquet source "
            "to carry ids through."
        )


# ---------------------------------------------------------------------- outputs


def output_columns(y: np.ndarray, method: str, classes: Sequence[Any] | None) -> list[str]:
    """Column names of the scores in a Parquet or CSV output."""
    if method == "predict_proba":
        if classes is not None and len(classes) == y.shape[1]:
            return [f"proba_{c}" for c in classes]
        return [f"proba_{j}" for j in range(y.shape[1])]
    if y.ndim == 1:
        return ["prediction"]
    return [f"prediction_{j}" for j in range(y.shape[1])]


class Output(ABC):
    """How scored chunks are written as parts and assembled into the final file."""

    #: File name suffix of a part.
    suffix: str

    def __init__(self, path: Path) -> None:
        self.path = path

    @abstractmethod
    def write_part(
        self, path: Path, y: np.ndarray, ids: dict[str, np.ndarray] | None, columns: list[str]
    ) -> None:
        """Write one scored chunk to ``path``."""

    @abstractmethod
    def assemble(
        self, parts: Sequence[tuple[Path | None, int, int]], n_rows: int, to: Path
    ) -> None:
        """Write the final file ``to`` from parts in order (``None`` for a skipped chunk)."""


class _NpyOutput(Output):
    suffix = ".npy"

    def write_part(
        self, path: Path, y: np.ndarray, ids: dict[str, np.ndarray] | None, columns: list[str]
    ) -> None:
        with open(path, "wb") as f:
            np.save(f, y, allow_pickle=False)

    def assemble(
        self, parts: Sequence[tuple[Path | None, int, int]], n_rows: int, to: Path
    ) -> None:
        first = next((np.load(p, mmap_mode="r") for p, _, _ in parts if p is not None), None)
        row_shape: tuple[int, ...] = () if first is None else tuple(first.shape[1:])
        dtype = np.dtype(np.float64) if first is None else first.dtype
        holes = any(p is None and stop > start for p, start, stop in parts)
        if holes and dtype.kind in "biu":
            # Skipped rows hold NaN, which integers and booleans cannot.
            dtype = np.dtype(np.float64)
        del first
        out = np.lib.format.open_memmap(to, mode="w+", dtype=dtype, shape=(n_rows, *row_shape))
        try:
            for p, start, stop in parts:
                if p is None:
                    if stop > start:
                        out[start:stop] = np.nan if dtype.kind in "fc" else 0
                    continue
                out[start:stop] = np.load(p, allow_pickle=False)
            out.flush()
        finally:
            del out


class _ParquetOutput(Output):
    suffix = ".parquet"

    def write_part(
        self, path: Path, y: np.ndarray, ids: dict[str, np.ndarray] | None, columns: list[str]
    ) -> None:
        pq = _pyarrow_parquet("Writing Parquet files")
        import pyarrow as pa

        pq.write_table(pa.Table.from_pandas(_frame(y, ids, columns), preserve_index=False), path)

    def assemble(
        self, parts: Sequence[tuple[Path | None, int, int]], n_rows: int, to: Path
    ) -> None:
        pq = _pyarrow_parquet("Writing Parquet files")
        import pyarrow as pa

        files = [p for p, _, _ in parts if p is not None]
        if not files:
            empty = pa.table({"prediction": pa.array([], type=pa.float64())})
            pq.write_table(empty, to)
            return
        schema = pq.read_schema(files[0])
        with pq.ParquetWriter(to, schema) as writer:
            for p in files:
                writer.write_table(pq.read_table(p).cast(schema))


class _CsvOutput(Output):
    suffix = ".csv"

    def write_part(
        self, path: Path, y: np.ndarray, ids: dict[str, np.ndarray] | None, columns: list[str]
    ) -> None:
        _frame(y, ids, columns).to_csv(path, index=False)

    def assemble(
        self, parts: Sequence[tuple[Path | None, int, int]], n_rows: int, to: Path
    ) -> None:
        files = [p for p, _, _ in parts if p is not None]
        with open(to, "wb") as out:
            if not files:
                out.write(b"prediction\n")
            for k, p in enumerate(files):
                with open(p, "rb") as f:
                    if k:
                        f.readline()  # each part repeats the header
                    while block := f.read(1 << 20):
                        out.write(block)


def _frame(y: np.ndarray, ids: dict[str, np.ndarray] | None, columns: list[str]) -> Any:
    pd = _pandas("Writing Parquet or CSV files")
    data: dict[str, Any] = dict(ids or {})
    clash = [c for c in columns if c in data]
    if clash:
        raise InvalidParameterError(
            f"The id column {clash[0]!r} has the name of a score column. Rename it before "
            "scoring; score columns are named 'prediction' or 'proba_<class>'."
        )
    if y.ndim == 1:
        data[columns[0]] = y
    else:
        for j, name in enumerate(columns):
            data[name] = y[:, j]
    return pd.DataFrame(data)


def open_output(path: str | os.PathLike[str]) -> Output:
    """The writer for an output path, chosen by its suffix.

    Raises
    ------
    InvalidParameterError
        When the suffix is not ``.npy``, ``.parquet`` / ``.pq`` or ``.csv``.
    """
    p = Path(path)
    name = p.name.lower()
    if name.endswith(".npy"):
        return _NpyOutput(p)
    if name.endswith(_PARQUET_SUFFIXES):
        _pyarrow_parquet("Writing Parquet files")
        return _ParquetOutput(p)
    if name.endswith(".csv"):
        _pandas("Writing CSV files")
        return _CsvOutput(p)
    raise InvalidParameterError(
        "The 'output' parameter of BatchDeployer.run must be a path ending in .npy, .parquet "
        f"(.pq) or .csv. Got {str(p)!r} instead."
    )
