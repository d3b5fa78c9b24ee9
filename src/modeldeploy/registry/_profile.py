"""Inferring a Signature's features and their reference profiles from a training sample."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal, NamedTuple

import numpy as np
import numpy.typing as npt

from modeldeploy.exceptions import InvalidParameterError, SchemaError
from modeldeploy.registry._convert import (
    _NUMERIC_KINDS,
    INTEGER_DTYPES,
    Feature,
    _frame_column,
    _is_dataframe,
    _is_missing,
)

InputType = Literal["ndarray", "dataframe", "records"]
FeatureKind = Literal["numeric", "categorical"]


class InferredFeature(NamedTuple):
    """One feature as inferred from a sample: the fields of ``signature.Feature``, in order."""

    name: str
    dtype: str
    kind: FeatureKind
    allow_nan: bool
    allow_inf: bool
    profile: dict[str, Any]


def _median(profile: Mapping[str, Any]) -> float:
    edges = profile.get("edges") or [math.nan]
    return (
        float(np.interp(0.5, np.linspace(0, 1, len(edges)), edges))
        if len(edges) > 1
        else float(edges[0])
    )


def _all_numbers(col: np.ndarray) -> bool:
    """Whether an object column holds only numbers and missing values, and some numbers."""
    missing = [_is_missing(v) for v in col]
    return not all(missing) and all(
        m or isinstance(v, (int, float, np.number)) for v, m in zip(col, missing, strict=True)
    )


def _columns_of(
    sample: Any, names: Sequence[str] | None
) -> tuple[list[np.ndarray], list[str], list[str], InputType, int]:
    """Split a sample into raw columns, with names, source dtypes, input type and row count."""
    input_type: InputType
    if _is_dataframe(sample):
        col_names = [str(c) for c in sample.columns]
        columns = [
            _frame_column(sample.iloc[:, j])
            if sample.iloc[:, j].dtype.name != "category"
            else sample.iloc[:, j].to_numpy(dtype=object)
            for j in range(sample.shape[1])
        ]
        dtypes = [str(d) for d in sample.dtypes]

        input_type = "dataframe"
        n_rows = int(sample.shape[0])
    elif isinstance(sample, (list, tuple)) and sample and isinstance(sample[0], Mapping):
        col_names = [str(k) for k in sample[0]]
        for i, rec in enumerate(sample):
            if not isinstance(rec, Mapping) or set(map(str, rec)) != set(col_names):
                raise InvalidParameterError(
                    f"Every dict of the 'sample' must have the same keys as the first "
                    f"({col_names}); row {i} has "
                    f"{list(rec) if isinstance(rec, Mapping) else rec!r}."
                )
        columns = [np.asarray([rec[k] for rec in sample], dtype=object) for k in sample[0]]
        dtypes = [str(c.dtype) for c in columns]
        input_type = "records"
        n_rows = len(sample)
    else:
        if hasattr(sample, "to_numpy"):
            sample = sample.to_numpy()
        arr = np.asarray(sample)
        if arr.dtype.kind in "cS" and not isinstance(sample, np.ndarray):
            # One complex or bytes value made numpy convert every value of the rows: look at
            # the values as given, so each column is inferred (or refused) on its own.
            arr = np.asarray(sample, dtype=object)
        if arr.ndim != 2:
            raise InvalidParameterError(
                f"The 'sample' used to infer a Signature must be 2-D (n_rows, n_features). Got "
                f"shape {arr.shape}; use X.reshape(-1, 1) for a single feature."
            )
        columns = [arr[:, j] for j in range(arr.shape[1])]
        dtypes = [str(arr.dtype)] * arr.shape[1]
        col_names = [f"x{j}" for j in range(arr.shape[1])]
        input_type = "ndarray"
        n_rows = int(arr.shape[0])
    if names is not None:
        if len(names) != len(col_names):
            raise InvalidParameterError(
                f"The 'names' parameter of Signature.infer must have one name per column "
                f"({len(col_names)}). Got {len(names)} names."
            )
        col_names = [str(n) for n in names]
    return columns, col_names, dtypes, input_type, n_rows


def _refuse_unusable_numbers(name: str, col: np.ndarray) -> None:
    """Raise for a complex number or a number too large for a float, naming column and row."""
    if col.dtype.kind == "c":
        imaginary = np.flatnonzero(col.imag != 0)
        bad = [int(imaginary[0]) if imaginary.size else 0]
    elif col.dtype.kind == "O":
        bad = [i for i, v in enumerate(col) if isinstance(v, (complex, np.complexfloating))][:1]
        huge = [
            i
            for i, v in enumerate(col)
            if isinstance(v, (int, np.integer)) and not math.isfinite(_as_float(v))
        ][:1]
        if huge and (not bad or huge[0] < bad[0]):
            i = huge[0]
            raise SchemaError(
                f"The 'sample' column {name!r} holds at row {i} an integer too large for a "
                f"64-bit float ({len(str(col[i]))} digits; at most about 1.8e308). Rescale or "
                "clip it before inferring the Signature.",
                column=name,
                row=i,
            )
    else:
        return
    if bad:
        i = bad[0]
        raise SchemaError(
            f"The 'sample' column {name!r} holds the complex number {col[i]!r} at row {i}; a "
            "Signature takes real numbers or categories. Pass the real part (.real).",
            column=name,
            row=i,
        )


def _as_float(v: Any) -> float:
    try:
        return float(v)
    except OverflowError:
        return math.inf


def _infer_feature(
    name: str,
    col: np.ndarray,
    source: str,
    nan_ok: bool,
    keep: npt.NDArray[np.intp] | None,
    bins: int,
    top: int,
) -> InferredFeature:
    _refuse_unusable_numbers(name, col)
    if col.dtype.kind in _NUMERIC_KINDS:
        values = col.astype(np.float64)
        dtype = source.lower().replace("boolean", "bool")
        if dtype not in {"float16", "float32", "float64", "bool"} and col.dtype.kind != "b":
            dtype = source.lower() if source.lower().startswith(("int", "uint")) else "float64"
        return _numeric_feature(name, dtype, values, nan_ok, keep, bins)
    if col.dtype.kind == "O" and source != "category" and _all_numbers(col):
        values = np.asarray([np.nan if _is_missing(v) else float(v) for v in col])
        all_int = all(
            (isinstance(v, (int, np.integer)) and not isinstance(v, bool)) or _is_missing(v)
            for v in col
        )
        return _numeric_feature(name, "int64" if all_int else "float64", values, nan_ok, keep, bins)
    dtype = source if source in ("category", "string", "str") else "object"
    missing = np.fromiter((_is_missing(v) for v in col), dtype=bool, count=col.shape[0])
    present = col[~missing] if keep is None else col[keep][~missing[keep]]
    uniq, counts = np.unique(
        np.asarray([str(v) for v in present], dtype=object), return_counts=True
    )
    order = np.argsort(-counts, kind="stable")[:top]
    profile = {
        "count": int((~missing).sum()),
        "nan": int(missing.sum()),
        "values": {str(uniq[k]): int(counts[k]) for k in order},
        "other": int(counts.sum() - counts[order].sum()),
    }
    return InferredFeature(
        name, dtype, "categorical", bool(nan_ok or missing.any()), False, profile
    )


def _numeric_feature(
    name: str,
    dtype: str,
    values: np.ndarray,
    nan_ok: bool,
    keep: npt.NDArray[np.intp] | None,
    bins: int,
) -> InferredFeature:
    nan = np.isnan(values)
    inf = np.isinf(values)
    sub = values if keep is None else values[keep]
    finite = sub[np.isfinite(sub)]
    profile: dict[str, Any] = {"count": int((~nan).sum()), "nan": int(nan.sum())}
    if finite.size:
        # One sort serves the quantiles and the bin counts: much faster than np.quantile's
        # partition with many kth values. Same linear interpolation as np.quantile's default.
        ordered = np.sort(finite)
        position = np.linspace(0.0, 1.0, bins + 1) * (ordered.size - 1)
        lower = np.floor(position).astype(np.intp)
        upper = np.minimum(lower + 1, ordered.size - 1)
        weight = position - lower
        quantiles = ordered[lower] * (1.0 - weight) + ordered[upper] * weight
        edges = np.unique(np.clip(quantiles, ordered[0], ordered[-1]))
        # np.histogram's bins: [e0, e1), [e1, e2), ..., [e_k-1, e_k] (the last one closed)
        starts = np.searchsorted(ordered, edges[:-1], side="left")
        counts = np.diff(np.append(starts, ordered.size)) if edges.size > 1 else [ordered.size]
        profile.update(
            min=float(finite.min()),
            max=float(finite.max()),
            mean=float(finite.mean()),
            std=float(finite.std()),
            edges=[float(e) for e in edges],
            counts=[int(c) for c in counts],
        )
    return InferredFeature(
        name, dtype, "numeric", bool(nan_ok or nan.any()), bool(inf.any()), profile
    )


def _infer_features(
    sample: Any,
    names: Sequence[str] | None,
    allow_nan: bool | Sequence[str],
    bins: int,
    top_categories: int,
    max_rows: int,
) -> tuple[list[InferredFeature], InputType, int]:
    """The features of ``Signature.infer(sample, ...)``, with the input type and row count."""
    columns, col_names, dtypes, input_type, n_rows = _columns_of(sample, names)
    if n_rows == 0:
        raise InvalidParameterError(
            "The 'sample' used to infer a Signature must have at least one row. Got 0 rows."
        )
    if isinstance(allow_nan, bool):
        nan_ok = set(col_names) if allow_nan else set()
    else:
        nan_ok = set(allow_nan)
        unknown = nan_ok - set(col_names)
        if unknown:
            raise InvalidParameterError(
                f"The 'allow_nan' parameter of Signature.infer names unknown features "
                f"{sorted(unknown)}. Known features: {col_names}."
            )
    rng = np.random.default_rng(0)
    keep = None
    if n_rows > max_rows:
        keep = np.sort(rng.choice(n_rows, size=max_rows, replace=False))
    features = [
        _infer_feature(name, col, dtype, name in nan_ok, keep, bins, top_categories)
        for name, col, dtype in zip(col_names, columns, dtypes, strict=True)
    ]
    return features, input_type, n_rows


def _example_columns(
    features: Sequence[Feature], n_rows: int, random_state: int | None
) -> list[np.ndarray]:
    """Raw columns of synthetic rows drawn from each feature's reference profile."""
    rng = np.random.default_rng(random_state)
    columns = []
    for f in features:
        p = f.profile
        if f.kind == "numeric":
            edges = np.asarray(p.get("edges") or [0.0], dtype=np.float64)
            if edges.size == 1:
                col = np.full(n_rows, edges[0])
            else:
                col = np.interp(rng.random(n_rows), np.linspace(0, 1, edges.size), edges)
            if f.dtype in INTEGER_DTYPES:
                col = np.round(col)
            columns.append(col.astype(object))
        else:
            values = list(p.get("values", {}))
            if not values:
                values = ["missing"]
            counts = np.asarray([p["values"].get(v, 1) for v in values], dtype=np.float64)
            picks = rng.choice(len(values), size=n_rows, p=counts / counts.sum())
            columns.append(np.asarray([values[k] for k in picks], dtype=object))
    return columns
