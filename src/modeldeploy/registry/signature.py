"""The input schema of a model version, and its compact reference profile.

Dtype policy (what ``Signature.validate`` does with each kind of value):

* Numeric features accept any real number: ``bool``, every int and float dtype, Python numbers,
  and pandas' nullable ``Int64`` / ``Float64`` / ``boolean`` columns. Strings are never parsed
  into numbers (``"1.5"`` in a numeric column is a ``SchemaError``).
* The validated array is ``float32`` when every feature was registered as ``float32``, and
  ``float64`` otherwise (integers included: scikit-learn computes in float64 anyway). A float64
  input for a float32 signature is cast; a value too large for float32 becomes ``inf`` and is
  refused like any other ``inf``.
* An integer feature accepts floats. This is deliberate: pandas turns an int column with a missing
  value into ``float64``, and refusing that is the most reported complaint about MLflow's schema
  enforcement.
* ``NaN`` (or ``None`` / ``pd.NA``) is accepted in a feature only when the registration sample had
  a missing value there; ``inf`` likewise. Pass ``allow_nan=True`` (or a list of feature names) to
  [`Signature.infer`][modeldeploy.Signature.infer] when the sample happened to be complete but
  production data is not.
* Features of ``object``, ``string`` or ``category`` dtype whose values are not all numbers are
  categorical: any value is accepted (unknown categories are the model's business), and the
  validated array is then an ``object`` array.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from modeldeploy._config import (
    DEFAULT_PROFILE_BINS,
    DEFAULT_PROFILE_MAX_ROWS,
    DEFAULT_PROFILE_TOP_CATEGORIES,
)
from modeldeploy.exceptions import InvalidParameterError, SchemaError
from modeldeploy.registry._convert import (
    _NUMERIC_KINDS,
    _categorical_column,
    _complex_error,
    _frame_column,
    _is_dataframe,
    _numeric_column,
    _to_frame,
)
from modeldeploy.registry._profile import (
    FeatureKind,
    InputType,
    _example_columns,
    _infer_features,
    _median,
)

__all__ = ["Feature", "Signature"]

_SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Feature:
    """One input column of a [`Signature`][modeldeploy.Signature].

    Attributes
    ----------
    name
        Column name (``x0``, ``x1``, ... when the sample had none).
    dtype
        The dtype seen at registration, as a numpy or pandas dtype name (``"float64"``,
        ``"int64"``, ``"bool"``, ``"category"``, ``"object"``, ...).
    kind
        ``"numeric"`` or ``"categorical"``.
    allow_nan
        Whether missing values are accepted.
    allow_inf
        Whether infinite values are accepted (numeric features only).
    profile
        The reference profile: for numeric features ``count``, ``nan``, ``min``, ``max``,
        ``mean``, ``std``, quantile bin ``edges`` and the ``counts`` per bin; for categorical
        features ``count``, ``nan``, the ``values`` with their counts and the ``other`` count.
    """

    name: str
    dtype: str
    kind: FeatureKind
    allow_nan: bool = False
    allow_inf: bool = False
    profile: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict."""
        return {
            "name": self.name,
            "dtype": self.dtype,
            "kind": self.kind,
            "allow_nan": self.allow_nan,
            "allow_inf": self.allow_inf,
            "profile": dict(self.profile),
        }


class Signature:
    """The input schema captured at registration, with a compact reference profile.

    Build one with [`Signature.infer`][modeldeploy.Signature.infer] from a sample of the training
    data (a numpy array, a pandas DataFrame or a list of dicts); the registry does this for you when
    ``register`` gets ``sample=``. [`validate`][modeldeploy.Signature.validate] turns a request (a
    batch or one row, as an array, a DataFrame, a dict or a list of dicts) into a 2-D array in the
    registered column order, or raises [`SchemaError`][modeldeploy.exceptions.SchemaError] naming
    the column and row at fault.

    Examples
    --------
    >>> import numpy as np
    >>> from modeldeploy import Signature
    >>> sig = Signature.infer(np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]))
    >>> sig.n_features, sig.names
    (2, ['x0', 'x1'])
    >>> sig.validate([7.0, 8.0])
    array([[7., 8.]])
    >>> sig.validate({"x1": 8.0, "x0": 7.0})
    array([[7., 8.]])
    >>> sig.validate(np.array([[1.0, float("nan")]]))
    Traceback (most recent call last):
    ...
    modeldeploy.exceptions.SchemaError: Feature 'x1' (column 1) has NaN at row 0, but no ...
    """

    __slots__ = (
        "_all_finite_ok",
        "_any_missing_ok",
        "_index",
        "_numeric",
        "_out_dtype",
        "features",
        "input_type",
        "n_rows",
    )

    def __init__(
        self,
        features: Sequence[Feature],
        *,
        input_type: InputType = "ndarray",
        n_rows: int = 0,
    ) -> None:
        if not features:
            raise InvalidParameterError("A Signature needs at least one feature. Got none.")
        names = [f.name for f in features]
        if len(set(names)) != len(names):
            dupes = sorted({n for n in names if names.count(n) > 1})
            raise InvalidParameterError(
                f"Feature names of a Signature must be unique. Got duplicates: {dupes}."
            )
        self.features: tuple[Feature, ...] = tuple(features)
        self.input_type: InputType = input_type
        self.n_rows = n_rows
        self._index = {f.name: i for i, f in enumerate(self.features)}
        self._numeric = all(f.kind == "numeric" for f in self.features)
        float32 = self._numeric and all(f.dtype == "float32" for f in self.features)
        self._out_dtype: np.dtype[Any] = np.dtype(
            np.float32 if float32 else (np.float64 if self._numeric else object)
        )
        self._any_missing_ok = any(f.allow_nan for f in self.features)
        self._all_finite_ok = not any(f.allow_nan or f.allow_inf for f in self.features)

    # ------------------------------------------------------------------ description

    @property
    def n_features(self) -> int:
        """Number of input columns."""
        return len(self.features)

    @property
    def names(self) -> list[str]:
        """Column names in the registered order."""
        return [f.name for f in self.features]

    @property
    def dtypes(self) -> dict[str, str]:
        """Registered dtype of each column."""
        return {f.name: f.dtype for f in self.features}

    @property
    def dtype(self) -> np.dtype[Any]:
        """Dtype of the arrays [`validate`][modeldeploy.Signature.validate] returns."""
        return self._out_dtype

    def __getitem__(self, name: str) -> Feature:
        try:
            return self.features[self._index[name]]
        except KeyError:
            raise KeyError(
                f"No feature {name!r} in this signature. Features: {self.names}"
            ) from None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Signature):
            return NotImplemented
        return self.features == other.features and self.input_type == other.input_type

    def __hash__(self) -> int:
        return hash((self.features, self.input_type))

    def __repr__(self) -> str:
        shown = ", ".join(f"{f.name}: {f.dtype}" for f in self.features[:6])
        more = f", ... ({self.n_features - 6} more)" if self.n_features > 6 else ""
        return f"Signature({self.n_features} features: {shown}{more}; from {self.input_type})"

    def _repr_html_(self) -> str:
        rows = []
        for f in self.features:
            p = f.profile
            if f.kind == "numeric" and p.get("count"):
                summary = f"min {p['min']:.4g}, median {_median(p):.4g}, max {p['max']:.4g}"
            elif f.kind == "categorical":
                summary = f"{len(p.get('values', {}))} categories"
            else:
                summary = ""
            rows.append(
                "<tr>"
                + "".join(
                    f"<td>{html.escape(str(v))}</td>"
                    for v in (f.name, f.dtype, f.kind, "yes" if f.allow_nan else "no", summary)
                )
                + "</tr>"
            )
        head = "".join(f"<th>{h}</th>" for h in ("feature", "dtype", "kind", "NaN ok", "profile"))
        return (
            f"<table><caption>Signature: {self.n_features} features from {self.input_type}, "
            f"profiled on {self.n_rows} rows</caption><thead><tr>{head}</tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>"
        )

    # ------------------------------------------------------------------ (de)serialization

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict; [`from_dict`][modeldeploy.Signature.from_dict] reads it back."""
        return {
            "schema": _SCHEMA_VERSION,
            "input_type": self.input_type,
            "n_rows": self.n_rows,
            "features": [f.to_dict() for f in self.features],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Signature:
        """Rebuild a signature from [`to_dict`][modeldeploy.Signature.to_dict] output."""
        features = [
            Feature(
                name=f["name"],
                dtype=f["dtype"],
                kind=f["kind"],
                allow_nan=bool(f.get("allow_nan", False)),
                allow_inf=bool(f.get("allow_inf", False)),
                profile=f.get("profile", {}),
            )
            for f in data["features"]
        ]
        return cls(features, input_type=data.get("input_type", "ndarray"), n_rows=data["n_rows"])

    # ------------------------------------------------------------------ inference

    @classmethod
    def infer(
        cls,
        sample: Any,
        *,
        names: Sequence[str] | None = None,
        allow_nan: bool | Sequence[str] = False,
        bins: int = DEFAULT_PROFILE_BINS,
        top_categories: int = DEFAULT_PROFILE_TOP_CATEGORIES,
        max_rows: int = DEFAULT_PROFILE_MAX_ROWS,
    ) -> Signature:
        """Infer a signature and its reference profile from a sample of training data.

        Parameters
        ----------
        sample
            A 2-D numpy array, a pandas DataFrame, or a list of dicts (one per row).
        names
            Column names for an array sample (default ``x0``, ``x1``, ...).
        allow_nan
            Accept missing values in every feature (``True``) or in the named ones, even though
            the sample has none. Features where the sample has missing values accept them anyway.
        bins
            Number of quantile bins in each numeric feature's profile.
        top_categories
            Most frequent categories kept in a categorical feature's profile.
        max_rows
            The profile is computed on a uniform subsample of at most this many rows (the
            missing-value check always sees every row).

        Raises
        ------
        InvalidParameterError
            When the sample is not 2-D, is empty, or its names do not fit.
        """
        inferred, input_type, n_rows = _infer_features(
            sample, names, allow_nan, bins, top_categories, max_rows
        )
        return cls([Feature(*f) for f in inferred], input_type=input_type, n_rows=n_rows)

    # ------------------------------------------------------------------ validation

    def validate(self, X: Any, *, extra: Literal["error", "ignore"] = "error") -> np.ndarray:
        """Check ``X`` against the signature; return it as a 2-D array in registered order.

        Parameters
        ----------
        X
            A batch (2-D array, DataFrame, list of dicts, list of rows) or a single row (1-D
            array, dict, one-row DataFrame). With one feature, a 1-D array is a column of rows.
        extra
            What to do with DataFrame columns or dict keys the signature does not know:
            ``"error"`` (the default) or ``"ignore"``.

        Returns
        -------
        numpy.ndarray
            Shape ``(n_rows, n_features)``, dtype [`dtype`][modeldeploy.Signature.dtype].

        Raises
        ------
        SchemaError
            Naming the column and row: wrong number of columns, missing or unknown columns,
            non-numeric values in a numeric feature, NaN or inf where none was registered.
        """
        if type(X) is np.ndarray and X.dtype.kind in _NUMERIC_KINDS:
            return self._validate_numeric_array(X)
        if isinstance(X, Mapping):
            return self._validate_records([X], extra)
        if _is_dataframe(X):
            return self._validate_frame(X, extra)
        if isinstance(X, (list, tuple)) and X and all(isinstance(r, Mapping) for r in X):
            return self._validate_records(X, extra)
        if hasattr(X, "to_numpy") and not isinstance(X, np.ndarray):  # pandas Series, etc.
            X = X.to_numpy()
        try:
            arr = np.asarray(X)
        except (ValueError, TypeError) as exc:
            raise SchemaError(
                f"Expected a 2-D array-like with {self.n_features} columns, a DataFrame or a "
                f"dict; could not read the input as an array ({exc})."
            ) from exc
        if arr.dtype.kind in _NUMERIC_KINDS:
            return self._validate_numeric_array(arr)
        as_text = arr.dtype.kind == "S" or (arr.dtype.kind == "U" and self._numeric)
        if (arr.dtype.kind == "c" or as_text) and not isinstance(X, np.ndarray):
            # numpy turned every value of the rows into complex or text because of one value:
            # look at the values as given, so the error blames that one.
            arr = np.asarray(X, dtype=object)
        arr2 = self._as_2d(arr)
        if arr2.dtype.kind == "c":
            imaginary = np.argwhere(arr2.imag != 0)
            row, j = (int(imaginary[0][0]), int(imaginary[0][1])) if imaginary.size else (0, 0)
            raise _complex_error(self.features[j], j, row, arr2[row, j])
        return self._assemble([arr2[:, j] for j in range(self.n_features)])

    def _as_2d(self, arr: np.ndarray) -> np.ndarray:
        if arr.ndim == 1:
            if self.n_features == 1 and arr.shape[0] != 1:
                arr = arr.reshape(-1, 1)
            else:
                arr = arr.reshape(1, -1)
        elif arr.ndim == 0:
            raise SchemaError(
                f"Expected a row of {self.n_features} values or a 2-D batch; got a scalar "
                f"({arr.item()!r})."
            )
        elif arr.ndim != 2:
            raise SchemaError(
                f"Expected a 2-D array of shape (n_rows, {self.n_features}); got {arr.ndim} "
                f"dimensions, shape {arr.shape}."
            )
        if arr.shape[1] != self.n_features:
            raise SchemaError(
                f"Expected {self.n_features} features per row ({_short(self.names)}); got "
                f"{arr.shape[1]}. Pass the columns in the registered order, or a DataFrame / "
                "dicts with these names."
            )
        return arr

    def _validate_numeric_array(self, arr: np.ndarray) -> np.ndarray:
        arr = self._as_2d(arr)
        if not self._numeric:
            return self._assemble([arr[:, j] for j in range(self.n_features)])
        if arr.dtype != self._out_dtype:
            with np.errstate(over="ignore"):  # too large for float32 becomes inf, refused below
                arr = arr.astype(self._out_dtype)
        if self._all_finite_ok:
            if not np.isfinite(arr).all():
                self._check_nonfinite(arr)
        elif not np.isfinite(arr).all():
            self._check_nonfinite(arr)
        return arr

    def _check_nonfinite(self, arr: np.ndarray) -> None:
        """Raise for the first NaN or inf in a feature that does not accept it."""
        for j, f in enumerate(self.features):
            _numeric_column(arr[:, j], f, j)

    def _validate_frame(self, df: Any, extra: str) -> np.ndarray:
        cols = [str(c) for c in df.columns]
        if len(set(cols)) != len(cols):
            dupes = sorted({c for c in cols if cols.count(c) > 1})
            raise SchemaError(f"The DataFrame has duplicate columns {dupes}; names must be unique.")
        self._check_names(cols, extra, "DataFrame columns", row=None)
        if [str(c) for c in df.columns] != cols:  # pragma: no cover - str() is idempotent
            df = df.rename(columns=str)
        positions = {c: i for i, c in enumerate(cols)}
        return self._assemble(
            [df.iloc[:, positions[name]].to_numpy(dtype=object) for name in self.names]
            if not self._numeric
            else [_frame_column(df.iloc[:, positions[name]]) for name in self.names]
        )

    def _check_names(self, got: Sequence[str], extra: str, what: str, row: int | None) -> None:
        missing = [n for n in self.names if n not in got]
        where = f" in row {row}" if row is not None else ""
        if missing:
            raise SchemaError(
                f"Missing feature{'s' if len(missing) > 1 else ''} {_short(missing)}{where}: "
                f"expected {what} {_short(self.names)}; got {_short(list(got))}.",
                column=missing[0],
                row=row,
            )
        if extra == "error":
            unknown = [c for c in got if c not in self._index]
            if unknown:
                raise SchemaError(
                    f"Unknown feature{'s' if len(unknown) > 1 else ''} {_short(unknown)}{where}: "
                    f"the signature has {_short(self.names)}. Drop the extra "
                    f"{what}, or call validate(..., extra='ignore').",
                    column=unknown[0],
                    row=row,
                )

    def _validate_records(self, records: Sequence[Mapping[str, Any]], extra: str) -> np.ndarray:
        n = len(records)
        columns = [np.empty(n, dtype=object) for _ in self.features]
        names = self.names
        for i, rec in enumerate(records):
            if len(rec) != self.n_features or any(k not in self._index for k in rec):
                self._check_names([str(k) for k in rec], extra, "keys", row=i)
            for j, name in enumerate(names):
                columns[j][i] = rec[name]
        return self._assemble(columns)

    def _assemble(self, columns: Sequence[np.ndarray]) -> np.ndarray:
        """Convert raw columns (any dtype) to the output array, checking each value."""
        n = columns[0].shape[0] if columns else 0
        out = np.empty((n, self.n_features), dtype=self._out_dtype)
        for j, (f, col) in enumerate(zip(self.features, columns, strict=True)):
            if f.kind == "numeric":
                out[:, j] = _numeric_column(col, f, j)
            else:
                out[:, j] = _categorical_column(col, f, j)
        if self._numeric:
            return self._validate_numeric_array(out)
        return out

    # ------------------------------------------------------------------ helpers for deployers

    def to_model_input(self, X: np.ndarray) -> Any:
        """Turn a validated array back into what the model was trained on.

        A model trained on a DataFrame (with ``feature_names_in_``, or a ``ColumnTransformer``
        selecting by name) gets a DataFrame with the registered names and dtypes; any other model
        gets the array unchanged.
        """
        if self.input_type != "dataframe":
            return X
        return _to_frame(X, self.features)

    def example(self, n_rows: int = 8, *, random_state: int | None = 0) -> np.ndarray:
        """Synthetic rows drawn from the reference profile, validated.

        Useful to warm up a model before it serves, and to smoke-test a deployment without
        keeping any training data around.
        """
        return self._assemble(_example_columns(self.features, n_rows, random_state))


# ---------------------------------------------------------------------- module helpers


def _short(names: Sequence[str], limit: int = 8) -> str:
    shown = ", ".join(repr(n) for n in names[:limit])
    return f"[{shown}{', ...' if len(names) > limit else ''}]"
