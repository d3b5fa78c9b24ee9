"""Where [`BatchDeployer`][modeldeploy.BatchDeployer] writes scores to.

Scored chunks are written as *parts* (see `modeldeploy.deployers._checkpoint`) and
assembled at the end: a ``.npy`` file preallocated with ``numpy.lib.format.open_memmap`` and
filled chunk by chunk, or a Parquet / CSV file with the id columns carried through.
Also importable from `modeldeploy.deployers.sources` (the documented path).
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from modeldeploy.deployers.batch._inputs import _PARQUET_SUFFIXES, _pandas, _pyarrow_parquet
from modeldeploy.exceptions import InvalidParameterError

__all__ = ["Output", "check_output", "open_output", "output_columns"]


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


def _source_file(source: Any) -> Path | None:
    """The file a source reads from, when it reads one: a path, a memory-mapped array, ..."""
    if isinstance(source, (str, os.PathLike)):
        return Path(source)
    if isinstance(source, np.memmap) and isinstance(source.filename, (str, os.PathLike)):
        return Path(source.filename)
    base = getattr(source, "base", None)
    if isinstance(base, np.memmap):  # a view of a memory-mapped array
        return _source_file(base)
    path = getattr(source, "path", None)  # our file sources, and custom ones that say
    return Path(path) if isinstance(path, (str, os.PathLike)) else None


def _same_file(a: Path, b: Path) -> bool:
    try:
        if os.path.samefile(a, b):  # hard links, symlinks, case-insensitive file systems
            return True
    except OSError:
        pass  # one of them does not exist yet
    return os.path.realpath(a) == os.path.realpath(b)


def check_output(output: Path, source: Any) -> None:
    """Refuse an output path that would destroy the input or cannot be written as a file.

    Called before anything is read or scored: the output is written to a temp file and renamed
    over ``output`` at the end, and ``resume=False`` removes ``<output>.partial/``, so an output
    that is the input (by any spelling: ``..``, a symlink, a hard link) would replace the data
    with its scores.

    Raises
    ------
    InvalidParameterError
        When ``output`` is the source file, the source lives inside the output's checkpoint
        directory, or ``output`` is a directory.
    """
    if output.is_dir():
        raise InvalidParameterError(
            f"The 'output' parameter of BatchDeployer.run is a directory ({str(output)!r}); "
            "expected a file name ending in .npy, .parquet or .csv. Pass a file path such as "
            f"{str(output / ('scores' + output.suffix if output.suffix else 'scores.parquet'))!r}."
        )
    source_file = _source_file(source)
    if source_file is None:
        return
    if _same_file(source_file, output):
        raise InvalidParameterError(
            f"The 'output' parameter of BatchDeployer.run ({str(output)!r}) is the input file "
            f"({str(source_file)!r}): writing the scores there would replace the data being "
            "scored. Write the scores to another path."
        )
    partial = os.path.realpath(output.with_name(output.name + ".partial"))
    if os.path.realpath(source_file).startswith(partial + os.sep):
        raise InvalidParameterError(
            f"The source {str(source_file)!r} is inside {partial!r}, the checkpoint directory "
            f"of the output {str(output)!r}, which a run removes. Move the source, or write the "
            "scores to another path."
        )
