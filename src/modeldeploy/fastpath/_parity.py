"""The parity check behind [`compile_fast_path`][modeldeploy.fastpath.compile_fast_path].

Which rows a fast path is compared on (reference rows, then a stress set where a wrong fast path
would show), how it is compared (identical labels, probabilities within ``atol``), how its
speed is measured, and how a compiled path receives the array a DataFrame-trained model would.
"""

from __future__ import annotations

import contextlib
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from modeldeploy._config import DEFAULT_FAST_PATH_REFERENCE_ROWS
from modeldeploy.fastpath._linear import (
    LinearProgram,
    NotCompilableError,
    linear_boundary_rows,
)
from modeldeploy.registry.signature import Signature

__all__ = ["frame_input", "has_proba", "p50_us", "parity", "reference_rows", "stress_rows"]

Predictor = Callable[[np.ndarray], np.ndarray]


def parity(
    model: Any,
    program: Any,
    native_predict: Predictor,
    native_proba: Predictor | None,
    X: np.ndarray,
    atol: float,
) -> tuple[int | None, float | None, str]:
    """Compare on ``X``; return (label mismatches, max |diff|, refusal reason or "")."""
    try:
        with quiet_feature_names():
            want = native_predict(X)
            want_proba = native_proba(X) if native_proba is not None else None
    except Exception as exc:
        raise NotCompilableError(
            f"the model's own predict failed on the check rows ({exc})"
        ) from exc
    try:
        got = np.asarray(program.predict(X))
    except Exception as exc:
        return None, None, f"the fast path raised {type(exc).__name__}: {exc}"
    if got.shape != want.shape:
        return None, None, f"the fast path returned shape {got.shape}, the model {want.shape}"
    classifier = hasattr(model, "classes_") or want.dtype.kind not in "fc"
    mismatches: int | None = 0
    if classifier:
        bad = np.flatnonzero(got != want)
        mismatches = int(bad.size)
        if mismatches:
            row = int(bad[0])
            model_says, fast_says = want[row : row + 1].tolist()[0], got[row : row + 1].tolist()[0]
            reason = (
                f"{mismatches} of {X.shape[0]} labels differ from the model's own predict (first "
                f"at check row {row}: model {model_says!r}, fast path {fast_says!r})"
            )
            return mismatches, None, reason
        diff = 0.0
        if want_proba is not None and has_proba(model, program):
            diff = float(np.max(np.abs(program.predict_proba(X) - want_proba)))
    else:
        mismatches = None
        scale = np.maximum(1.0, np.abs(want.astype(np.float64)))
        diff = float(np.max(np.abs(got.astype(np.float64) - want) / scale))
    if not diff <= atol:
        return (
            mismatches,
            diff,
            (f"largest |difference| {diff:.3g} exceeds atol={atol:g} on {X.shape[0]} check rows"),
        )
    return mismatches, diff, ""


def frame_input(signature: Signature | None, *, layout: bool) -> Predictor | None:
    """What scikit-learn makes of ``signature.to_model_input(X)``, without building a DataFrame.

    A model trained on a DataFrame is served ``signature.to_model_input(X)``: each column cast
    to its registered dtype (an ``int64`` column truncates 2.7 to 2, a ``float32`` column
    rounds) and an array that pandas stores column by column, so scikit-learn computes on a
    column-major (Fortran-ordered) ``X``. BLAS sums the dot products of a column-major ``X`` in
    another order than those of a row-major one, and a score on the decision boundary rounds to
    either side depending on it. The returned function repeats both on validated rows: the same
    casts, and for ``layout=True`` (the numpy linear path) a new float64 array with the strides
    pandas gives. The layout and dtypes are read from a probe DataFrame built by the signature
    itself, not assumed. ``None`` when the model takes the validated array unchanged.

    Raises
    ------
    NotCompilableError
        When a column reaches the model with a non-numeric dtype, or (``layout=True``) when the
        array scikit-learn receives is not float64, whose arithmetic the linear path repeats.
    """
    if signature is None or signature.input_type != "dataframe":
        return None
    frame = signature.to_model_input(np.zeros((2, len(signature.features))))
    casts: list[tuple[int, np.dtype[Any]]] = []
    for j, (name, dtype) in enumerate(zip(signature.names, frame.dtypes, strict=True)):
        if not isinstance(dtype, np.dtype) or dtype.kind not in "biuf":
            raise NotCompilableError(
                f"feature {name!r} reaches the model as a {dtype} DataFrame column; only numeric "
                "numpy dtypes are compiled"
            )
        if dtype != np.float64:
            casts.append((j, dtype))
    fortran = False
    if layout:
        seen = np.asarray(frame)
        if seen.dtype != np.float64:
            found = ", ".join(sorted({str(d) for d in frame.dtypes}))
            raise NotCompilableError(
                f"the model receives a {seen.dtype} array from its DataFrame (column dtypes "
                f"{found}); the numpy linear path repeats float64 arithmetic only"
            )
        item = seen.itemsize
        fortran = seen.strides == (item, item * seen.shape[0])
    if not casts and not fortran:
        return None

    def prepare(X: np.ndarray) -> np.ndarray:
        out: np.ndarray
        if fortran:  # pandas' layout: one column after another, strides (8, 8 * n_rows)
            out = np.empty((X.shape[1], X.shape[0]), dtype=np.float64).T
            out[...] = X
        else:
            out = np.array(X, dtype=np.float64)
        for j, dtype in casts:  # Signature.to_model_input leaves a column with NaN as float64
            col = out[:, j]
            if not np.isnan(col).any():
                out[:, j] = col.astype(dtype)
        return out

    return prepare


def reference_rows(model: Any, signature: Signature | None, reference: Any) -> np.ndarray:
    if reference is not None:
        X = signature.validate(reference) if signature is not None else np.asarray(reference)
    elif signature is not None:
        X = signature.example(DEFAULT_FAST_PATH_REFERENCE_ROWS)
    else:
        n_features = getattr(model, "n_features_in_", None)
        if n_features is None:
            raise NotCompilableError("no reference rows, no signature and no n_features_in_")
        rng = np.random.default_rng(0)
        X = rng.normal(size=(DEFAULT_FAST_PATH_REFERENCE_ROWS, int(n_features)))
    if X.ndim != 2 or X.dtype.kind not in "fiub" or X.shape[0] == 0:
        raise NotCompilableError(
            f"reference rows must be a non-empty 2-D numeric array, got {X.shape}"
        )
    return X if X.dtype.kind == "f" else X.astype(np.float64)


def stress_rows(
    model: Any, program: Any, X_ref: np.ndarray, signature: Signature | None, limit: int
) -> np.ndarray:
    rng = np.random.default_rng(0)
    parts: list[np.ndarray] = []
    if isinstance(program, LinearProgram):
        parts.append(linear_boundary_rows(model, program, X_ref)[:limit].astype(X_ref.dtype))
        nan_features = list(range(X_ref.shape[1])) if program.has_imputer else []
    else:
        from modeldeploy.fastpath._trees import split_points

        feats, thrs = split_points(model)
        if feats.size * 6 > limit:
            keep = np.sort(rng.choice(feats.size, size=limit // 6, replace=False))
            feats, thrs = feats[keep], thrs[keep]
        t32 = thrs.astype(np.float32)
        variants = (
            thrs,
            np.nextafter(thrs, np.inf),
            np.nextafter(thrs, -np.inf),
            t32.astype(np.float64),
            np.nextafter(t32, np.float32(np.inf)).astype(np.float64),
            np.nextafter(t32, np.float32(-np.inf)).astype(np.float64),
        )
        base = X_ref[np.arange(feats.size) % X_ref.shape[0]]
        for values in variants:
            rows = base.copy()
            rows[np.arange(feats.size), feats] = values
            parts.append(rows)
        nan_features = [
            j for j, f in enumerate(signature.features if signature else ()) if f.allow_nan
        ]
    for j in nan_features:  # missing values where the model or its signature accepts them
        rows = X_ref[: min(20, X_ref.shape[0])].copy()
        rows[:, j] = np.nan
        parts.append(rows)
    if not parts:
        return X_ref[:0]
    return np.concatenate(parts)[: max(limit, 0)] if limit else X_ref[:0]


def has_proba(model: Any, program: Any) -> bool:
    if not hasattr(model, "predict_proba") or program is None:
        return False
    if isinstance(program, LinearProgram):
        return program.proba in ("binary-expit", "softmax", "ovr", "modified-huber")
    return getattr(program, "classes", None) is not None


def p50_us(fn: Predictor, row: np.ndarray, budget_s: float = 0.2, most: int = 300) -> float:
    """Median single-row latency in microseconds, within a small time budget."""
    with quiet_feature_names():
        for _ in range(3):
            fn(row)
        times: list[float] = []
        deadline = time.perf_counter() + budget_s
        while len(times) < most and (len(times) < 5 or time.perf_counter() < deadline):
            t0 = time.perf_counter()
            fn(row)
            times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1e6)


@contextlib.contextmanager
def quiet_feature_names() -> Iterator[None]:
    # Without a DataFrame signature the check passes arrays to a model fitted on a DataFrame;
    # scikit-learn warns about that on every call, and the check means to do it.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="X does not have valid feature names")
        yield
