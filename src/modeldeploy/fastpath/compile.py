"""Verified fast paths: a compiled predictor that answers exactly like the model, or nothing.

[`compile_fast_path`][modeldeploy.fastpath.compile_fast_path] builds a faster predictor for the
model kinds it knows and checks it against the model's own ``predict`` / ``predict_proba`` before
anyone uses it:

* linear models, and Pipelines of standard scalers and a ``SimpleImputer`` ending in one: exact
  numpy over the fitted attributes (``"numpy-linear"``), no dependency beyond numpy and scipy;
* tree models (decision trees, random forests, extra trees, gradient boosting, histogram
  gradient boosting): one float64 ONNX ``TreeEnsemble`` run by ONNX Runtime on one thread
  (``"onnx"``), from the optional extra ``modeldeploy[fast]``.

For a model trained on a DataFrame, the compiled path first builds the array scikit-learn gets
from ``signature.to_model_input(X)`` (the same column casts, and for linear models the same
column-major layout, which decides how BLAS rounds the dot products).

The check runs on reference rows (given, drawn from the signature's profile, or random) and on
a stress set: rows on a linear model's decision boundary and one ulp either side, or every split
threshold of a tree model and its float64 and float32 neighbours. Labels must be identical and
probabilities (or regression values) within ``atol``. Otherwise the fast path is refused, the
report says why with the numbers, and the model's own ``predict`` serves (``mode="require"``
raises [`DeploymentError`][modeldeploy.exceptions.DeploymentError] instead).
"""

from __future__ import annotations

import functools
import hashlib
import html
import json
import logging
import struct
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

from modeldeploy._config import (
    DEFAULT_FAST_PATH_ATOL,
    DEFAULT_FAST_PATH_STRESS_ROWS,
)
from modeldeploy._validation import check_choice, check_float, check_int
from modeldeploy.exceptions import DeploymentError, MissingDependencyError
from modeldeploy.fastpath import _parity
from modeldeploy.fastpath._linear import (
    LinearProgram,
    NotCompilableError,
    compile_linear,
    is_linear,
)
from modeldeploy.registry.signature import Signature

__all__ = ["FastPath", "FastPathReport", "compile_fast_path"]

logger = logging.getLogger("modeldeploy.fastpath")

Mode = Literal["auto", "require", "off"]
_MODES = ("auto", "require", "off")
_MAGIC = b"MDFASTPATH1\n"
Predictor = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class FastPathReport:
    """Which predictor serves a model, and the evidence for the decision.

    Attributes
    ----------
    model
        What was compiled (``"StandardScaler -> LogisticRegression"``) or the model's class.
    kind
        The candidate fast path: ``"numpy-linear"``, ``"onnx"`` or ``"native"`` (none).
    served_by
        What answers requests: ``kind`` when accepted, else ``"native"`` (the model's own
        methods).
    accepted
        Whether the fast path passed the parity check and serves.
    mode
        The ``mode`` it was compiled with.
    reason
        Why it serves or why it was refused, with the numbers.
    reference_rows, stress_rows
        Rows of each kind the parity check compared on.
    label_mismatches
        Labels that differed (``None`` when not compared).
    max_abs_diff
        Largest probability difference (regressors: relative value difference).
    atol
        The tolerance ``max_abs_diff`` was held to.
    native_p50_us, fast_p50_us
        Median single-row latency measured at compile time, in microseconds.
    compile_s
        Seconds spent compiling and checking.
    versions
        Versions of the libraries the decision was made with.

    Examples
    --------
    >>> r = FastPathReport("LinearRegression", "numpy-linear", "numpy-linear", True, "auto",
    ...                    "parity check passed", native_p50_us=80.0, fast_p50_us=2.0)
    >>> r.speedup
    40.0
    >>> r.to_dict()["served_by"]
    'numpy-linear'
    """

    model: str
    kind: str
    served_by: str
    accepted: bool
    mode: str
    reason: str
    reference_rows: int = 0
    stress_rows: int = 0
    label_mismatches: int | None = None
    max_abs_diff: float | None = None
    atol: float = DEFAULT_FAST_PATH_ATOL
    native_p50_us: float | None = None
    fast_p50_us: float | None = None
    compile_s: float = 0.0
    versions: dict[str, str] = field(default_factory=dict)

    @property
    def speedup(self) -> float | None:
        """``native_p50_us / fast_p50_us`` when both were measured."""
        if self.native_p50_us is None or not self.fast_p50_us:
            return None
        return self.native_p50_us / self.fast_p50_us

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict (for registry events and logs)."""
        data = asdict(self)
        data["speedup"] = self.speedup
        return data

    def __repr__(self) -> str:
        parts = [f"served_by={self.served_by!r}", f"accepted={self.accepted}"]
        if self.reference_rows or self.stress_rows:
            parts.append(f"rows={self.reference_rows}+{self.stress_rows} stress")
        if self.label_mismatches is not None:
            parts.append(f"label_mismatches={self.label_mismatches}")
        if self.max_abs_diff is not None:
            parts.append(f"max_abs_diff={self.max_abs_diff:.3g}")
        if self.speedup is not None:
            parts.append(f"speedup={self.speedup:.0f}x")
        parts.append(f"reason={self.reason!r}")
        return f"FastPathReport({self.model}: {', '.join(parts)})"

    def _repr_html_(self) -> str:
        # Rows without a value (timings not measured) are left out; floats are shortened.
        rows = "".join(
            f"<tr><th>{html.escape(k)}</th><td>"
            f"{html.escape(f'{v:.4g}' if isinstance(v, float) else str(v))}</td></tr>"
            for k, v in self.to_dict().items()
            if v is not None
        )
        return f"<table><caption>Fast path: {html.escape(self.model)}</caption>{rows}</table>"


def library_versions(kind: str) -> dict[str, str]:
    """Versions of numpy, scikit-learn and (for ONNX paths) onnx and onnxruntime."""
    return dict(_library_versions(kind == "onnx"))


@functools.lru_cache(maxsize=2)
def _library_versions(onnx: bool) -> tuple[tuple[str, str], ...]:
    # Reading package metadata costs about half a millisecond a package: once per process,
    # since the modules already imported do not change when packages are upgraded on disk.
    from importlib.metadata import PackageNotFoundError, version

    kind = "onnx" if onnx else "native"
    names = ["numpy", "scikit-learn"] + (["onnx", "onnxruntime"] if kind == "onnx" else [])
    found = {}
    for name in names:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return tuple(found.items())


class FastPath:
    """A model's predictor for validated rows: the compiled fast path, or the model itself.

    Build one with [`compile_fast_path`][modeldeploy.fastpath.compile_fast_path].
    [`predict`][modeldeploy.fastpath.FastPath.predict] and
    [`predict_proba`][modeldeploy.fastpath.FastPath.predict_proba] take the 2-D array that
    [`Signature.validate`][modeldeploy.Signature.validate] returns and answer like the model's own
    methods; `report` says which path serves and why.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.linear_model import LogisticRegression
    >>> from modeldeploy.deployers.fastpath import compile_fast_path
    >>> X = np.random.default_rng(0).normal(size=(200, 3))
    >>> model = LogisticRegression().fit(X, X[:, 0] > 0)
    >>> fp = compile_fast_path(model, reference=X, measure=False)
    >>> fp.report.served_by, fp.report.label_mismatches
    ('numpy-linear', 0)
    >>> bool((fp.predict(X) == model.predict(X)).all())
    True
    """

    def __init__(
        self,
        model: Any,
        report: FastPathReport,
        *,
        program: LinearProgram | Any | None = None,
        signature: Signature | None = None,
    ) -> None:
        self.model = model
        self.report = report
        self.signature = signature
        self._program = program if report.accepted else None
        if self._program is not None:
            self._predict: Predictor = self._program.predict
            self._proba: Predictor | None = (
                self._program.predict_proba if _parity.has_proba(model, program) else None
            )
        else:
            self._predict = self._native_predict
            self._proba = self._native_proba if hasattr(model, "predict_proba") else None

    @property
    def is_fast(self) -> bool:
        """Whether the compiled fast path serves (``False``: the model's own methods do)."""
        return self._program is not None

    @property
    def has_predict_proba(self) -> bool:
        """Whether [`predict_proba`][modeldeploy.fastpath.FastPath.predict_proba] is available for
        this model."""
        return self._proba is not None

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Predictions for validated rows (a 2-D array in the signature's column order)."""
        return self._predict(X)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Class probabilities for validated rows.

        Raises
        ------
        AttributeError
            When the model has no ``predict_proba``.
        """
        if self._proba is None:
            raise AttributeError(
                f"{type(self.model).__name__} has no predict_proba; use predict instead."
            )
        return self._proba(X)

    def _model_input(self, X: np.ndarray) -> Any:
        return X if self.signature is None else self.signature.to_model_input(X)

    def _native_predict(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(self.model.predict(self._model_input(X)))

    def _native_proba(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(self.model.predict_proba(self._model_input(X)))

    # ------------------------------------------------------------------ caching

    def to_bytes(self) -> bytes:
        """The compiled artifact, to store next to the model version.

        [`from_bytes`][modeldeploy.fastpath.FastPath.from_bytes] reads it back for the same model
        without recompiling. Linear fast paths store no arithmetic (they are recompiled from the
        model in microseconds).
        """
        artifact = getattr(self._program, "artifact", b"") or b""
        header = json.dumps(
            {
                "kind": self.report.served_by,
                "model": _qualname(self.model),
                "n_features": getattr(self.model, "n_features_in_", None),
                "sha256": hashlib.sha256(artifact).hexdigest(),
                "versions": self.report.versions,
            },
            sort_keys=True,
        ).encode()
        return _MAGIC + struct.pack("<I", len(header)) + header + artifact

    @classmethod
    def from_bytes(
        cls,
        data: bytes,
        model: Any,
        *,
        signature: Signature | None = None,
        mode: Mode = "auto",
        reference: Any = None,
        verify: bool = True,
        atol: float = DEFAULT_FAST_PATH_ATOL,
        measure: bool | None = None,
    ) -> FastPath:
        """Rebuild a fast path for ``model`` from
        [`to_bytes`][modeldeploy.fastpath.FastPath.to_bytes] output.

        Parameters
        ----------
        data
            What [`to_bytes`][modeldeploy.fastpath.FastPath.to_bytes] returned for this model.
        model
            The same fitted model the artifact was compiled from.
        signature, mode, reference, atol
            As for [`compile_fast_path`][modeldeploy.fastpath.compile_fast_path].
        verify
            Run the parity check again (the default). ``False`` trusts the artifact, for a
            replica that loads what a verified compile stored next to a sha256-checked version.
        measure
            Time single-row predictions of both paths for the report. Default: only when
            verifying; a replica trusting a stored artifact does not spend a few hundred
            milliseconds of its swap timing the model's own ``predict``.

        Raises
        ------
        DeploymentError
            When ``data`` is not a fast-path artifact for this model (with ``mode="require"``,
            also when it is refused).
        """
        mode = check_choice(mode, "mode", "FastPath.from_bytes", _MODES)  # type: ignore[assignment]
        header, artifact = _read_artifact(data, model)
        if header["kind"] != "onnx" or mode == "off":
            return compile_fast_path(
                model, signature=signature, mode=mode, reference=reference, atol=atol
            )
        started = time.perf_counter()
        try:
            from modeldeploy.fastpath._trees import load_tree_program

            program = load_tree_program(model, artifact)
            _take_model_input(program, signature, "onnx")
        except ImportError as exc:
            return _refuse(model, signature, mode, "onnx", _missing(exc), started)
        except NotCompilableError as exc:
            return _refuse(model, signature, mode, "native", f"not compiled: {exc}", started)
        measure = verify if measure is None else measure
        return _finish(
            model, program, "onnx", signature, mode, reference, atol, verify, started, measure
        )

    def __reduce__(self) -> tuple[Any, ...]:
        # Sessions do not pickle; the artifact does (for process-based batch scoring).
        return (_restore, (self.to_bytes(), self.model, self.signature, self.report))

    def __repr__(self) -> str:
        return f"FastPath({self.report!r})"

    def _repr_html_(self) -> str:
        return self.report._repr_html_()


def compile_fast_path(
    model: Any,
    *,
    signature: Signature | None = None,
    mode: Mode = "auto",
    reference: Any = None,
    atol: float = DEFAULT_FAST_PATH_ATOL,
    stress_rows: int = DEFAULT_FAST_PATH_STRESS_ROWS,
    measure: bool = True,
) -> FastPath:
    """Compile and verify a fast predictor for ``model``; fall back to the model when unsure.

    Parameters
    ----------
    model
        A fitted model. Known kinds are compiled; anything else is served by its own methods.
    signature
        The version's [`Signature`][modeldeploy.Signature]: its profile gives the reference rows
        when ``reference`` is not given, and the model's own methods get
        ``signature.to_model_input(X)``.
    mode
        ``"auto"`` serves the fast path when it passes the parity check, else the model;
        ``"require"`` raises instead of falling back; ``"off"`` never compiles.
    reference
        Rows to check parity on (anything ``signature.validate`` accepts, else a 2-D numeric
        array). Default: ``signature.example(1000)``, or 1000 standard normal rows.
    atol
        Largest accepted ``|fast - model|`` for probabilities, and for regression values
        ``|fast - model| / max(1, |model|)``. The compiled paths repeat scikit-learn's
        arithmetic in float64, so the differences measured are 0 or a few ulps (<= 1e-15).
    stress_rows
        Most threshold-stress rows to add to the check.
    measure
        Time single-row predictions of both paths (a fraction of a second) for the report.

    Returns
    -------
    FastPath
        Its ``report`` records the decision, the parity numbers and the speed-up.

    Raises
    ------
    DeploymentError
        With ``mode="require"``, when no verified fast path can serve.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.neighbors import KNeighborsClassifier
    >>> X = np.random.default_rng(0).normal(size=(50, 2))
    >>> fp = compile_fast_path(KNeighborsClassifier().fit(X, X[:, 0] > 0), measure=False)
    >>> fp.report.served_by, fp.is_fast
    ('native', False)
    """
    owner = "compile_fast_path"
    mode = check_choice(mode, "mode", owner, _MODES)  # type: ignore[assignment]
    atol = check_float(atol, "atol", owner, min_value=0.0)
    stress_rows = check_int(stress_rows, "stress_rows", owner, min_value=0)
    started = time.perf_counter()
    if mode == "off":
        return _refuse(
            model, signature, mode, "native", "fast path turned off (mode='off')", started
        )
    if signature is not None and signature.dtype == object:
        reason = "the signature has categorical features; only numeric inputs are compiled"
        return _refuse(model, signature, mode, "native", reason, started)
    program: Any
    try:
        if is_linear(model):
            kind = "numpy-linear"
            program = compile_linear(model)
        else:
            kind = "onnx"
            from modeldeploy.fastpath import _trees

            if not _trees.is_tree_model(model):
                reason = f"{type(model).__name__} has no fast path; its own predict serves"
                return _refuse(model, signature, mode, "native", reason, started)
            try:
                _trees.import_onnx()
                program = _trees.compile_trees(model)
            except ImportError as exc:
                return _refuse(model, signature, mode, kind, _missing(exc), started)
        _take_model_input(program, signature, kind)
    except NotCompilableError as exc:
        return _refuse(model, signature, mode, "native", f"not compiled: {exc}", started)
    except Exception as exc:
        logger.warning("Compiling a fast path for %s failed", type(model).__name__, exc_info=True)
        reason = f"compilation failed: {type(exc).__name__}: {exc}"
        return _refuse(model, signature, mode, kind, reason, started)
    return _finish(
        model, program, kind, signature, mode, reference, atol, True, started, measure,
        stress_rows,
    )  # fmt: skip


# ---------------------------------------------------------------------- verification


def _finish(
    model: Any,
    program: Any,
    kind: str,
    signature: Signature | None,
    mode: str,
    reference: Any,
    atol: float,
    verify: bool,
    started: float,
    measure: bool,
    stress_rows: int = DEFAULT_FAST_PATH_STRESS_ROWS,
) -> FastPath:
    n_ref = n_stress = 0
    mismatches: int | None = None
    max_diff: float | None = None
    reason = "parity not checked (verify=False): trusting a stored, verified artifact"
    native = FastPath(model, _placeholder(model), signature=signature)
    try:
        if verify:
            X_ref = _parity.reference_rows(model, signature, reference)
            X_stress = _parity.stress_rows(model, program, X_ref, signature, stress_rows)
            n_ref, n_stress = X_ref.shape[0], X_stress.shape[0]
            X_all = np.concatenate([X_ref, X_stress]) if n_stress else X_ref
            native_proba = native.predict_proba if native.has_predict_proba else None
            mismatches, max_diff, reason = _parity.parity(
                model, program, native.predict, native_proba, X_all, atol
            )
    except NotCompilableError as exc:
        mismatches, reason = None, f"parity could not be checked: {exc}"
    accepted = reason == "" or not verify
    if accepted and verify:
        reason = "parity check passed"
    native_us = fast_us = None
    if measure and accepted:
        row = _parity.reference_rows(model, signature, reference)[:1]
        native_us = _parity.p50_us(native.predict, row)
        fast_us = _parity.p50_us(program.predict, row)
    report = FastPathReport(
        model=_describe(model, program),
        kind=kind,
        served_by=kind if accepted else "native",
        accepted=accepted,
        mode=mode,
        reason=reason,
        reference_rows=n_ref,
        stress_rows=n_stress,
        label_mismatches=mismatches,
        max_abs_diff=max_diff,
        atol=atol,
        native_p50_us=native_us,
        fast_p50_us=fast_us,
        compile_s=time.perf_counter() - started,
        versions=library_versions(kind),
    )
    return _decide(FastPath(model, report, program=program, signature=signature), mode)


# ---------------------------------------------------------------------- helpers


def _decide(fp: FastPath, mode: str) -> FastPath:
    report = fp.report
    log = logger.info if report.accepted or report.kind == "native" else logger.warning
    log("Fast path for %s: %s (%s)", report.model, report.served_by, report.reason)
    if mode == "require" and not report.accepted:
        raise DeploymentError(
            f"A verified fast path was required (mode='require') for {report.model}, but "
            f"{report.reason}. Use mode='auto' to serve the model's own predict instead."
        )
    return fp


def _refuse(
    model: Any, signature: Signature | None, mode: str, kind: str, reason: str, started: float
) -> FastPath:
    report = FastPathReport(
        model=type(model).__name__,
        kind=kind,
        served_by="native",
        accepted=False,
        mode=mode,
        reason=reason,
        compile_s=time.perf_counter() - started,
        versions=library_versions("native"),
    )
    return _decide(FastPath(model, report, signature=signature), mode)


def _take_model_input(program: Any, signature: Signature | None, kind: str) -> None:
    # A DataFrame-trained model computes on what scikit-learn makes of the DataFrame
    # (column casts, column-major layout); the compiled path starts from the same array.
    program.prepare = _parity.frame_input(signature, layout=kind == "numpy-linear")


def _placeholder(model: Any) -> FastPathReport:
    return FastPathReport(type(model).__name__, "native", "native", False, "off", "reference")


def _missing(exc: ImportError) -> str:
    package = getattr(exc, "name", None) or "onnxruntime"
    return str(MissingDependencyError(package, "fast", "The ONNX fast path for tree models"))


def _describe(model: Any, program: Any) -> str:
    return str(getattr(program, "description", type(model).__name__))


def _qualname(model: Any) -> str:
    return f"{type(model).__module__}.{type(model).__qualname__}"


def _read_artifact(data: bytes, model: Any) -> tuple[dict[str, Any], bytes]:
    if not isinstance(data, (bytes, bytearray)) or not bytes(data).startswith(_MAGIC):
        raise DeploymentError(
            "Expected a fast-path artifact written by FastPath.to_bytes(); the data does not "
            "start with its header. Recompile with compile_fast_path(model) instead."
        )
    offset = len(_MAGIC)
    try:
        (size,) = struct.unpack("<I", data[offset : offset + 4])
        header: dict[str, Any] = json.loads(bytes(data[offset + 4 : offset + 4 + size]))
    except (struct.error, ValueError) as exc:
        raise DeploymentError(
            f"The fast-path artifact is corrupt: its header cannot be read ({exc}). Recompile "
            "it with compile_fast_path(model)."
        ) from exc
    artifact = bytes(data[offset + 4 + size :])
    if header.get("model") != _qualname(model) or header.get("n_features") != getattr(
        model, "n_features_in_", None
    ):
        raise DeploymentError(
            f"This fast-path artifact was compiled for {header.get('model')} with "
            f"{header.get('n_features')} features, not for this {_qualname(model)}. "
            "Recompile it with compile_fast_path(model)."
        )
    if hashlib.sha256(artifact).hexdigest() != header.get("sha256"):
        raise DeploymentError(
            "The fast-path artifact is corrupt: its sha256 differs from the one in its header. "
            "Recompile it with compile_fast_path(model)."
        )
    return header, artifact


def _restore(
    data: bytes, model: Any, signature: Signature | None, report: FastPathReport
) -> FastPath:
    header, artifact = _read_artifact(data, model)
    program: Any = None
    if report.accepted and header["kind"] == "onnx":
        from modeldeploy.fastpath._trees import load_tree_program

        program = load_tree_program(model, artifact)
    elif report.accepted:
        program = compile_linear(model)
    if program is not None:
        _take_model_input(program, signature, header["kind"])
    return FastPath(model, report, program=program, signature=signature)
