"""Making labels and predictions comparable: one label type per monitor, and missing values.

A classifier's predictions fix the type of the monitor's class labels (``int``, ``float``,
``bool`` or ``str``). Labels, which often come from another system (a CSV, a queue, JSON), are
converted to that type when the conversion loses nothing (``"1"`` to ``1``, ``1.0`` to ``1``,
``1`` to ``"1"``, ``1`` to ``True``); otherwise a
[`SchemaError`][modeldeploy.exceptions.SchemaError] names the mismatch, since comparing ``"1"`` with
``1`` would silently count every row wrong.

A missing value is ``None`` or a float NaN (and, for regression, ``±inf``): a missing label is
no label, a missing prediction is no answer. Both are reported as masks, never compared.
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import numpy.typing as npt

from modeldeploy.exceptions import SchemaError

__all__ = ["class_kind", "coerce_classes", "missing_mask", "scalar", "to_numbers"]

BoolArray = npt.NDArray[np.bool_]

_INT = re.compile(r"[+-]?[0-9]+")
_KINDS = {"b": "bool", "i": "int", "u": "int", "f": "float", "U": "str", "S": "str"}


def scalar(value: Any) -> Any:
    """A numpy scalar as the equal Python scalar (dict keys and JSON)."""
    return value.item() if isinstance(value, np.generic) else value


def class_kind(example: Any) -> str | None:
    """``"bool"``, ``"int"``, ``"float"`` or ``"str"``: the label type of a value or an array.

    ``None`` for anything else (tuples, custom objects): such labels are compared as they are.
    """
    if isinstance(example, np.ndarray):
        if example.dtype.kind != "O":
            return _KINDS.get(example.dtype.kind)
        example = next((v for v in example.tolist() if not _is_missing(v)), None)
    if isinstance(example, (bool, np.bool_)):
        return "bool"
    if isinstance(example, (int, np.integer)):
        return "int"
    if isinstance(example, (float, np.floating)):
        return "float"
    if isinstance(example, (str, bytes, np.str_, np.bytes_)):
        return "str"
    return None


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, (float, np.floating)) and math.isnan(value))


def missing_mask(values: np.ndarray) -> BoolArray | None:
    """Where ``values`` hold ``None`` or NaN; ``None`` when nothing is missing (the usual case)."""
    kind = values.dtype.kind
    if kind == "f":
        mask = np.isnan(values)
    elif kind == "O":
        mask = np.fromiter((_is_missing(v) for v in values.tolist()), bool, values.size)
    else:
        return None
    return mask if mask.any() else None


def to_numbers(values: np.ndarray, what: str) -> npt.NDArray[np.float64]:
    """``values`` as floats (a regression's labels or predictions); missing values become NaN.

    Raises
    ------
    SchemaError
        When a value is not a number (nor a string holding one).
    """
    kind = values.dtype.kind
    if kind == "f":
        return values.astype(np.float64, copy=False)
    if kind in "biu":
        return values.astype(np.float64)
    out = np.empty(values.shape[0], dtype=np.float64)
    for i, v in enumerate(values.tolist()):
        if _is_missing(v):
            out[i] = math.nan
            continue
        try:
            out[i] = float(v.decode() if isinstance(v, bytes) else v)
        except (TypeError, ValueError, UnicodeDecodeError):
            raise SchemaError(
                f"{what} must hold numbers for a regression monitor; found {v!r} "
                f"({type(v).__name__}) at position {i}. Pass numeric values (or None/NaN for "
                "a missing one).",
                row=i,
            ) from None
    return out


def coerce_classes(
    values: np.ndarray, kind: str | None, what: str
) -> tuple[np.ndarray, BoolArray | None]:
    """Class labels converted to ``kind`` when that loses nothing, and where they are missing.

    Returns the converted values as a typed array (missing entries hold a placeholder, never to
    be read) and the mask of missing ones (``None`` when none is).

    Raises
    ------
    SchemaError
        When a value cannot be converted to ``kind`` without loss (``"yes"`` or ``1.5`` for
        ``int`` labels, ``2`` for ``bool`` labels).
    """
    missing = missing_mask(values)
    if kind is None or values.size == 0:
        return values, missing
    dkind = values.dtype.kind
    # Fast paths: the array already holds the kind (by far the usual case).
    if missing is None and (
        (kind == "int" and dkind in "iu")
        or (kind == "float" and dkind == "f")
        or (kind == "bool" and dkind == "b")
        or (kind == "str" and dkind == "U")
    ):
        return values, None
    if kind in ("int", "float") and dkind in "biuf":
        present = values if missing is None else values[~missing]
        if kind == "float" or dkind in "biu":
            typed = values.astype(np.int64 if kind == "int" else np.float64)
        elif np.all(np.isfinite(present)) and np.all(present == np.floor(present)):
            typed = (
                np.where(missing, 0.0, values).astype(np.int64)
                if missing is not None
                else (values.astype(np.int64))
            )
        else:
            typed = None
        if typed is not None:
            return typed, missing
    out: list[Any] = []
    for i, v in enumerate(values.tolist()):
        if missing is not None and missing[i]:
            out.append(None)
            continue
        converted = _convert(v, kind)
        if converted is _FAIL:
            found = type(v).__name__
            raise SchemaError(
                f"{what} holds {v!r} ({found}) at position {i}, but the monitor's class labels "
                f"are {kind} (the model's predictions are). It cannot be converted to {kind} "
                f"without loss, so comparing it would count the row wrong. Pass {what} as "
                f"{kind} values.",
                row=i,
            )
        out.append(converted)
    placeholder = {"int": 0, "float": 0.0, "bool": False, "str": ""}[kind]
    typed_out = [placeholder if v is None else v for v in out]
    dtype = {"int": np.int64, "float": np.float64, "bool": np.bool_, "str": np.str_}[kind]
    return np.asarray(typed_out, dtype=dtype), missing


_FAIL = object()


def _convert(v: Any, kind: str) -> Any:
    """``v`` as ``kind`` when the conversion loses nothing, else ``_FAIL``."""
    if isinstance(v, (bytes, np.bytes_)):
        try:
            v = bytes(v).decode()
        except UnicodeDecodeError:
            return _FAIL
    if isinstance(v, np.generic):
        v = v.item()
    if kind == "str":
        if isinstance(v, str):
            return v
        if isinstance(v, bool):
            return str(v)
        if isinstance(v, int):
            return str(v)
        if isinstance(v, float) and v.is_integer():
            return str(int(v))
        return _FAIL
    if kind == "bool":
        if isinstance(v, bool):
            return v
        if isinstance(v, (int, float)) and v in (0, 1):
            return bool(v)
        if isinstance(v, str) and v in ("True", "False"):
            return v == "True"
        return _FAIL
    if kind == "int":
        if isinstance(v, bool):
            return int(v)
        if isinstance(v, int):
            return v
        if isinstance(v, float) and v.is_integer():
            return int(v)
        if isinstance(v, str) and _INT.fullmatch(v):
            return int(v)
        return _FAIL
    # kind == "float"
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, str):
        try:
            number = float(v)
        except ValueError:
            return _FAIL
        return _FAIL if math.isnan(number) else number
    return _FAIL
