"""Where [`BatchDeployer`][modeldeploy.BatchDeployer] reads rows from and writes scores to.

Sources are cut into chunks of ``chunk_size`` rows, numbered from 0, each knowing its global row
range. Random-access sources (arrays, ``.npy`` files, DataFrames, Parquet files on Dask) hand out
*lazy* chunk references: a small picklable object holding a path and a row range, read where it
is scored (a worker thread, a worker process or a Dask worker), so the data never travels
through the caller. Sequential sources (CSV files, iterables) are read in the caller, one chunk
at a time.

Outputs are written per chunk as *parts* (see `modeldeploy.deployers._checkpoint`) and
assembled at the end: a ``.npy`` file preallocated with ``numpy.lib.format.open_memmap`` and
filled chunk by chunk, or a Parquet / CSV file with the id columns carried through.

The chunks and their readers live in `modeldeploy.deployers._inputs`, the writers in
`modeldeploy.deployers._outputs`; both are re-exported here.
"""

from __future__ import annotations

import itertools
import os
import re
import warnings
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from modeldeploy.deployers.batch._inputs import (
    _CSV_SUFFIXES,
    _PARQUET_SUFFIXES,
    Chunk,
    ChunkRef,
    LoadedRef,
    _is_dataframe,
    _NpyRange,
    _pandas,
    _ParquetRange,
    _pyarrow_parquet,
    _split_ids,
)
from modeldeploy.exceptions import InvalidParameterError, SchemaError

__all__ = ["Source", "open_source"]

# ---------------------------------------------------------------------- sources


class Source(ABC):
    """Rows to score, cut into chunks.

    Subclass it to read from somewhere else (a database, an object store): implement
    [`refs`][modeldeploy.deployers.batch.Source.refs] to yield one `ChunkRef` per chunk, in order,
    with consecutive row ranges, and [`describe`][modeldeploy.deployers.batch.Source.describe] to
    say what is read (checkpoints compare it on resume). Set ``n_rows`` when known, for progress
    bars.

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
    """A CSV file read in the caller, one chunk at a time.

    A malformed line (too many fields) is a [`SchemaError`][modeldeploy.exceptions.SchemaError]
    naming the line, or, with ``skip_bad_lines``, left out and listed in `bad_lines` as ``(chunk,
    row, line, reason)``, ``row`` being the global row number the line would have had (counting one
    line per row). A file pandas cannot parse past a point (an unterminated quote, bytes that are
    not text) always raises.
    """

    def __init__(self, path: Path, id_columns: Sequence[str]) -> None:
        self.path = path
        self.id_columns = tuple(id_columns)
        #: Leave malformed lines out (and list them) instead of raising.
        self.skip_bad_lines = False
        self.bad_lines: list[tuple[int, int, int, str]] = []
        _pandas("Reading CSV files")

    def refs(self, chunk_size: int, *, lazy: bool) -> Iterator[ChunkRef]:
        pd = _pandas("Reading CSV files")
        sep = "\t" if self.path.name.endswith(".tsv") else ","
        self.bad_lines = []
        start = 0
        on_bad_lines = "warn" if self.skip_bad_lines else "error"
        try:
            reader = pd.read_csv(
                self.path, chunksize=chunk_size, sep=sep, on_bad_lines=on_bad_lines
            )
        except (ValueError, UnicodeDecodeError) as exc:  # ParserError and EmptyDataError too
            raise self._parse_error(exc, start) from exc
        with reader:
            for index in itertools.count():
                try:
                    with warnings.catch_warnings(record=True) as caught:
                        warnings.simplefilter("always", pd.errors.ParserWarning)
                        df = next(reader)
                except StopIteration:
                    return
                except (ValueError, UnicodeDecodeError) as exc:
                    raise self._parse_error(exc, start) from exc
                finally:
                    self._note_bad_lines(index, caught, pd.errors.ParserWarning)
                X, ids = _split_ids(df, self.id_columns, repr(str(self.path)))
                chunk = Chunk(index, start, X, ids)
                start = chunk.stop
                yield LoadedRef(chunk)

    def _note_bad_lines(self, index: int, caught: list[Any], category: type) -> None:
        for w in caught:
            if not issubclass(w.category, category):
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
                continue
            for text in str(w.message).splitlines():
                found = re.search(r"line (\d+): (.*)", text)
                if found is None:
                    continue
                line = int(found.group(1))
                row = line - 2 - len(self.bad_lines)  # the header is line 1
                reason = (
                    f"line {line} of {str(self.path)!r} is malformed ({found.group(2)}); it "
                    "was left out and gave no row"
                )
                self.bad_lines.append((index, row, line, reason))

    def _parse_error(self, exc: Exception, start: int) -> SchemaError:
        found = re.search(r"line (\d+)", str(exc))
        line = int(found.group(1)) if found else None
        what = str(exc).replace("Error tokenizing data. C error: ", "").strip()
        where = f" at line {line}" if line is not None else f" after row {start - 1}"
        hint = (
            " Fix that line, or pass on_error='skip' to leave malformed lines out and list them "
            "in the result."
            if line is not None and not self.skip_bad_lines
            else " Fix the file (an unterminated quote or a binary file cannot be skipped line "
            "by line), then score it again."
        )
        return SchemaError(f"Cannot parse {str(self.path)!r} as CSV{where}: {what}.{hint}")

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
    """Wrap what a user passed to ``BatchDeployer.run`` as a
    [`Source`][modeldeploy.deployers.batch.Source].

    Parameters
    ----------
    data
        A numpy array, a pandas DataFrame, a path to a ``.npy``, ``.csv`` or ``.parquet`` file,
        an iterable whose items are chunks (arrays, DataFrames, lists of rows or dicts), or a
        [`Source`][modeldeploy.deployers.batch.Source] of your own, returned as it is.
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
