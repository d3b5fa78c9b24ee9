"""Turning raw request values into checked numeric or categorical columns for a Signature."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from modeldeploy.exceptions import SchemaError


class Feature(Protocol):
    """What the conversions read of a feature (``signature.Feature`` has these fields)."""

    @property
    def name(self) -> str: ...
    @property
    def dtype(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def allow_nan(self) -> bool: ...
    @property
    def allow_inf(self) -> bool: ...
    @property
    def profile(self) -> Mapping[str, Any]: ...


_NUMERIC_KINDS = frozenset("biuf")
#: Dtype names of integer (and bool) features: cast back to them, rounded to them.
INTEGER_DTYPES = ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "bool")


def _is_dataframe(X: Any) -> bool:
    return type(X).__name__ == "DataFrame" and hasattr(X, "columns") and hasattr(X, "iloc")


def _is_missing(v: Any) -> bool:
    if v is None:
        return True
    if isinstance(v, float):
        return math.isnan(v)
    if isinstance(v, np.floating):
        return bool(np.isnan(v))
    return type(v).__name__ in ("NAType", "NaTType")


def _missing_error(f: Feature, j: int, row: int, what: str) -> SchemaError:
    return SchemaError(
        f"Feature {f.name!r} (column {j}) has {what} at row {row}, but no missing values were "
        f"seen at registration. Impute it before predicting, or register the model with "
        f"Signature.infer(sample, allow_nan=[{f.name!r}]).",
        column=f.name,
        row=row,
    )


def _frame_column(series: Any) -> np.ndarray:
    """A pandas column as a numpy array, with nullable dtypes turned into float + NaN."""
    dtype = series.dtype
    kind = getattr(dtype, "kind", "O")
    if kind in _NUMERIC_KINDS and getattr(dtype, "na_value", None) is not None:
        # pandas nullable Int64 / Float64 / boolean: pd.NA becomes NaN.
        return np.asarray(series.to_numpy(dtype=np.float64, na_value=np.nan))
    if kind in _NUMERIC_KINDS:
        return np.asarray(series.to_numpy())
    return np.asarray(series.to_numpy(dtype=object))


def _numeric_column(col: np.ndarray, f: Feature, j: int) -> np.ndarray:
    out = _to_float(col, f, j)
    if not (f.allow_nan and f.allow_inf) and not np.isfinite(out).all():
        if not f.allow_nan and np.isnan(out).any():
            raise _missing_error(f, j, int(np.flatnonzero(np.isnan(out))[0]), "NaN")
        if not f.allow_inf and np.isinf(out).any():
            row = int(np.flatnonzero(np.isinf(out))[0])
            raise SchemaError(
                f"Feature {f.name!r} (column {j}) has {out[row]} at row {row}, but no infinite "
                "values were seen at registration. Clip or impute it before predicting.",
                column=f.name,
                row=row,
            )
    return out


def _to_float(col: np.ndarray, f: Feature, j: int) -> np.ndarray:
    if col.dtype.kind in _NUMERIC_KINDS:
        return col.astype(np.float64, copy=False)
    if col.dtype.kind == "c":
        imaginary = np.flatnonzero(col.imag != 0)
        row = int(imaginary[0]) if imaginary.size else 0
        raise _complex_error(f, j, row, col[row])
    if col.dtype.kind in "SU":
        col = col.astype(object)  # checked value by value, like text from a CSV file
    if col.dtype.kind != "O":
        row = 0
        raise SchemaError(
            f"Feature {f.name!r} (column {j}) is numeric ({f.dtype}) but got {col.dtype} values "
            f"such as {col[row]!r} at row {row}. Convert the column to numbers before predicting.",
            column=f.name,
            row=row,
        )
    out = np.empty(col.shape[0], dtype=np.float64)
    for i, v in enumerate(col):
        if isinstance(v, (int, float, np.integer, np.floating)):
            try:
                out[i] = v
            except OverflowError:
                raise SchemaError(
                    f"Feature {f.name!r} (column {j}) is numeric ({f.dtype}) but row {i} holds "
                    f"{_shorten(v)}, too large for a 64-bit float (at most about 1.8e308). "
                    "Rescale or clip the value before predicting.",
                    column=f.name,
                    row=i,
                ) from None
        elif _is_missing(v):
            out[i] = np.nan
        elif isinstance(v, (complex, np.complexfloating)):
            raise _complex_error(f, j, i, v)
        else:
            raise _text_error(col, f, j, i)
    return out


def _shorten(v: Any, limit: int = 40) -> str:
    text = repr(v)
    return text if len(text) <= limit else f"{text[: limit // 2]}...{text[-8:]} ({len(text)} chars)"


def _complex_error(f: Feature, j: int, row: int, value: Any) -> SchemaError:
    return SchemaError(
        f"Feature {f.name!r} (column {j}) is numeric ({f.dtype}) but row {row} holds the complex "
        f"number {value!r}. Send real numbers (for example the value's .real part).",
        column=f.name,
        row=row,
    )


def _number_text(v: Any) -> bool:
    """Whether ``v`` is a number written as text (``"1.5"``, ``b"7"``)."""
    if not isinstance(v, (str, bytes)):
        return False
    try:
        float(v)
    except ValueError:
        return False
    return True


def _text_error(col: np.ndarray, f: Feature, j: int, i: int) -> SchemaError:
    """The error for a value that is not a number at row ``i``, blaming the right row.

    One bad value in a CSV column makes pandas read the whole column as text, so the first
    text value is a number written as text and the culprit comes later: blame the first value
    that is not a number in any form, and say the others are numbers written as text.
    """
    v = col[i]
    at, note = i, ""
    if _number_text(v):
        for k in range(i + 1, col.shape[0]):
            w = col[k]
            usable = isinstance(w, (int, float, np.integer, np.floating)) or _is_missing(w)
            if not usable and not _number_text(w):
                at, v = k, w
                note = (
                    f" (the values before it, such as {col[i]!r} at row {i}, are numbers "
                    "written as text, as when one bad value in a CSV file makes the whole "
                    "column text)"
                )
                break
    return SchemaError(
        f"Feature {f.name!r} (column {j}) is numeric ({f.dtype}) but row {at} holds "
        f"{_shorten(v)} ({type(v).__name__}){note}. Send a number; strings are never parsed.",
        column=f.name,
        row=at,
    )


def _categorical_column(col: np.ndarray, f: Feature, j: int) -> np.ndarray:
    out = np.empty(col.shape[0], dtype=object)
    for i, v in enumerate(col):
        if _is_missing(v):
            if not f.allow_nan:
                raise _missing_error(f, j, i, "a missing value")
            out[i] = np.nan
        elif isinstance(v, np.str_):
            out[i] = str(v)
        else:
            out[i] = v
    return out


def _to_frame(X: np.ndarray, features: Sequence[Feature]) -> Any:
    """A validated array as a DataFrame with the registered names and dtypes."""
    import pandas as pd  # a DataFrame signature means pandas is installed

    data = {}
    for j, f in enumerate(features):
        col = X[:, j]
        if f.kind == "numeric":
            col = col.astype(np.float64, copy=False)
            if f.dtype in (*INTEGER_DTYPES, "float32") and not np.isnan(col).any():
                col = col.astype(f.dtype)
        data[f.name] = pd.Categorical(col) if f.dtype == "category" else col
    return pd.DataFrame(data, columns=[f.name for f in features])
