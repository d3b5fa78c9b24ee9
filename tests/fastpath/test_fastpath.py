"""Verified fast paths: same answers as the model, or the model itself serves."""

from __future__ import annotations

import builtins
import json
import pickle
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.datasets import make_classification, make_regression
from sklearn.ensemble import (
    ExtraTreesClassifier,
    ExtraTreesRegressor,
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.impute import SimpleImputer
from sklearn.linear_model import (
    LinearRegression,
    LogisticRegression,
    Ridge,
    SGDClassifier,
    SGDRegressor,
)
from sklearn.model_selection import train_test_split
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MaxAbsScaler, MinMaxScaler, RobustScaler, StandardScaler
from sklearn.svm import LinearSVC
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

from modeldeploy import ModelRegistry, Signature
from modeldeploy.exceptions import DeploymentError, InvalidParameterError
from modeldeploy.fastpath import FastPath, FastPathReport, compile_fast_path
from modeldeploy.fastpath import _linear as _fast_linear
from modeldeploy.fastpath import _parity as _fast_check
from modeldeploy.fastpath import _trees as _fast_trees

ATOL = 1e-9

# ---------------------------------------------------------------------- data and models


def _binary() -> tuple[np.ndarray, np.ndarray]:
    X, y = make_classification(n_samples=1200, n_features=8, n_informative=5, random_state=0)
    return X, y


def _multiclass() -> tuple[np.ndarray, np.ndarray]:
    X, y = make_classification(
        n_samples=1200, n_features=8, n_informative=5, n_classes=3, random_state=1
    )
    return X, y


def _regression() -> tuple[np.ndarray, np.ndarray]:
    X, y = make_regression(n_samples=1200, n_features=8, noise=5.0, random_state=2)
    return X, y


def _with_nan(data: np.ndarray) -> np.ndarray:
    X: np.ndarray = data.copy()
    rng = np.random.default_rng(3)
    X[rng.random(X.shape) < 0.1] = np.nan
    return X


LINEAR: dict[str, tuple[Callable[[], Any], Callable[[], tuple[np.ndarray, np.ndarray]]]] = {
    "logistic-binary": (lambda: LogisticRegression(), _binary),
    "logistic-multinomial": (lambda: LogisticRegression(max_iter=500), _multiclass),
    "sgd-log-ovr": (lambda: SGDClassifier(loss="log_loss", random_state=0), _multiclass),
    "sgd-modified-huber": (lambda: SGDClassifier(loss="modified_huber", random_state=0), _binary),
    "sgd-hinge": (lambda: SGDClassifier(random_state=0), _multiclass),
    "linear-svc": (lambda: LinearSVC(), _multiclass),
    "linear-regression": (lambda: LinearRegression(), _regression),
    "ridge": (lambda: Ridge(alpha=2.0), _regression),
    "sgd-regressor": (lambda: make_pipeline(StandardScaler(), SGDRegressor()), _regression),
    "scaler-logistic": (lambda: make_pipeline(StandardScaler(), LogisticRegression()), _binary),
    "minmax-maxabs-robust-logistic": (
        lambda: make_pipeline(
            RobustScaler(), MinMaxScaler(clip=True), MaxAbsScaler(), LogisticRegression()
        ),
        _multiclass,
    ),
}

TREES: dict[str, tuple[Callable[[], Any], Callable[[], tuple[np.ndarray, np.ndarray]]]] = {
    "decision-tree": (lambda: DecisionTreeClassifier(max_depth=8, random_state=0), _multiclass),
    "random-forest": (
        lambda: RandomForestClassifier(n_estimators=15, max_depth=6, random_state=0),
        _binary,
    ),
    "extra-trees": (
        lambda: ExtraTreesClassifier(n_estimators=10, max_depth=6, random_state=0),
        _multiclass,
    ),
    "gradient-boosting-binary": (
        lambda: GradientBoostingClassifier(n_estimators=15, random_state=0),
        _binary,
    ),
    "gradient-boosting-multiclass": (
        lambda: GradientBoostingClassifier(n_estimators=10, random_state=0),
        _multiclass,
    ),
    "hist-gradient-boosting-binary": (
        lambda: HistGradientBoostingClassifier(max_iter=30, random_state=0),
        _binary,
    ),
    "hist-gradient-boosting-multiclass": (
        lambda: HistGradientBoostingClassifier(max_iter=15, random_state=0),
        _multiclass,
    ),
    "decision-tree-regressor": (lambda: DecisionTreeRegressor(max_depth=8), _regression),
    "random-forest-regressor": (
        lambda: RandomForestRegressor(n_estimators=10, max_depth=6, random_state=0),
        _regression,
    ),
    "extra-trees-regressor": (
        lambda: ExtraTreesRegressor(n_estimators=10, max_depth=6, random_state=0),
        _regression,
    ),
    "gradient-boosting-regressor": (
        lambda: GradientBoostingRegressor(n_estimators=20, random_state=0),
        _regression,
    ),
    "hist-gradient-boosting-regressor": (
        lambda: HistGradientBoostingRegressor(max_iter=30, random_state=0),
        _regression,
    ),
}


def _fit(make: Callable[[], Any], data: Callable[[], tuple[np.ndarray, np.ndarray]]) -> Any:
    X, y = data()
    X_train, X_test, y_train, _ = train_test_split(X, y, test_size=0.3, random_state=0)
    return make().fit(X_train, y_train), X_train, X_test


# ---------------------------------------------------------------------- independent stress sets


def _ulps(values: np.ndarray) -> list[np.ndarray]:
    """Each value, its float64 neighbours, and its float32 cast with its float32 neighbours."""
    v32 = values.astype(np.float32)
    return [
        values,
        np.nextafter(values, np.inf),
        np.nextafter(values, -np.inf),
        v32.astype(np.float64),
        np.nextafter(v32, np.float32(np.inf)).astype(np.float64),
        np.nextafter(v32, np.float32(-np.inf)).astype(np.float64),
    ]


def _tree_stress(model: Any, rows: np.ndarray, limit: int = 4000) -> np.ndarray:
    """Rows with one feature set exactly at a split threshold, or one ulp either side."""
    if hasattr(model, "_predictors"):  # HistGradientBoosting: the thresholds its nodes use
        pairs = [
            (int(node["feature_idx"]), float(node["num_threshold"]))
            for iteration in model._predictors
            for predictor in iteration
            for node in predictor.nodes
            if not node["is_leaf"]
        ]
    else:
        stages = model.estimators_ if hasattr(model, "estimators_") else [model]
        trees = np.asarray(stages, dtype=object).ravel()
        pairs = [
            (int(f), float(t))
            for est in trees
            for f, t in zip(est.tree_.feature, est.tree_.threshold, strict=True)
            if f >= 0
        ]
    rng = np.random.default_rng(4)
    chosen = [pairs[i] for i in rng.permutation(len(pairs))[: limit // 6]]
    feats = np.array([f for f, _ in chosen])
    thrs = np.array([t for _, t in chosen])
    blocks = []
    for values in _ulps(thrs):
        block = rows[rng.integers(0, rows.shape[0], size=feats.size)].copy()
        block[np.arange(feats.size), feats] = values
        blocks.append(block)
    return np.concatenate(blocks)


def _boundary_stress(model: Any, rows: np.ndarray) -> np.ndarray:
    """Rows moved onto the decision boundary along their most influential feature."""
    X = rows
    final = model.steps[-1][1] if hasattr(model, "steps") else model
    if not hasattr(final, "classes_"):  # a regressor has no boundary: perturb by one ulp
        return np.concatenate(_ulps(X))
    Z = model[:-1].transform(X) if hasattr(model, "steps") else X.copy()
    scores = np.atleast_2d(final.decision_function(X).T).T
    coef = np.atleast_2d(final.coef_)
    intercept = np.atleast_1d(final.intercept_)
    if coef.shape[0] == 1:
        w, b = np.repeat(coef, len(Z), 0), np.repeat(intercept, len(Z))
    else:
        top = np.argsort(scores, axis=1)[:, -2:]
        w = coef[top[:, 1]] - coef[top[:, 0]]
        b = intercept[top[:, 1]] - intercept[top[:, 0]]
    j = np.argmax(np.abs(w), axis=1)
    rows = np.arange(len(Z))
    rest = np.einsum("ij,ij->i", Z, w) - Z[rows, j] * w[rows, j]
    Z[rows, j] = -(b + rest) / w[rows, j]
    if hasattr(model, "steps"):
        Z = model[:-1].inverse_transform(Z)
    return np.concatenate(_ulps(Z))


def _assert_same_answers(fp: FastPath, model: Any, rows: np.ndarray) -> None:
    X = rows
    want = model.predict(X)
    got = fp.predict(X)
    if hasattr(model, "classes_"):
        np.testing.assert_array_equal(got, want)
        assert got.dtype == want.dtype
    else:
        np.testing.assert_allclose(got, want, rtol=ATOL, atol=ATOL)
    if hasattr(model, "predict_proba") and fp.has_predict_proba:
        np.testing.assert_allclose(fp.predict_proba(X), model.predict_proba(X), rtol=0, atol=ATOL)


# ---------------------------------------------------------------------- parity per model kind


@pytest.mark.parametrize("name", sorted(LINEAR))
def test_linear_fast_path_matches_predict_on_held_out_and_boundary_rows(name: str) -> None:
    model, X_train, X_test = _fit(*LINEAR[name])
    fp = compile_fast_path(model, signature=Signature.infer(X_train), measure=False)

    assert fp.is_fast, fp.report
    assert fp.report.served_by == "numpy-linear"
    _assert_same_answers(fp, model, X_test)
    _assert_same_answers(fp, model, _boundary_stress(model, X_test))


@pytest.mark.parametrize("name", sorted(TREES))
def test_tree_fast_path_matches_predict_on_held_out_and_threshold_rows(name: str) -> None:
    model, X_train, X_test = _fit(*TREES[name])
    fp = compile_fast_path(model, reference=X_train[:300], stress_rows=6000, measure=False)

    assert fp.is_fast, fp.report
    assert fp.report.served_by == "onnx"
    assert fp.report.label_mismatches == (0 if hasattr(model, "classes_") else None)
    _assert_same_answers(fp, model, X_test)
    _assert_same_answers(fp, model, _tree_stress(model, X_test))


def test_imputer_scaler_pipeline_matches_predict_with_missing_values() -> None:
    X, y = _binary()
    X = _with_nan(X)
    model = make_pipeline(
        SimpleImputer(strategy="median"), StandardScaler(), LogisticRegression()
    ).fit(X[:800], y[:800])
    fp = compile_fast_path(model, signature=Signature.infer(X[:800]), measure=False)

    assert fp.is_fast and fp.report.model == "SimpleImputer -> StandardScaler -> LogisticRegression"
    assert np.isnan(X[800:]).any()
    _assert_same_answers(fp, model, X[800:])


@pytest.mark.parametrize("strategy", ["mean", "constant"])
def test_imputer_minmax_ridge_pipeline_matches_predict(strategy: str) -> None:
    X, y = _regression()
    X = _with_nan(X)
    model = make_pipeline(SimpleImputer(strategy=strategy), MinMaxScaler(), Ridge()).fit(X, y)
    fp = compile_fast_path(model, reference=X[:200], measure=False)

    assert fp.is_fast and fp.report.max_abs_diff is not None
    _assert_same_answers(fp, model, X)


def test_hist_gradient_boosting_with_missing_values_matches_predict() -> None:
    X, y = _binary()
    X = _with_nan(X)
    model = HistGradientBoostingClassifier(max_iter=20, random_state=0).fit(X[:800], y[:800])
    fp = compile_fast_path(model, signature=Signature.infer(X[:800]), measure=False)

    assert fp.is_fast, fp.report
    _assert_same_answers(fp, model, X[800:])
    _assert_same_answers(fp, model, _tree_stress(model, X[800:]))


def test_float32_signature_rows_get_the_same_answers() -> None:
    X, y = _binary()
    X32 = X.astype(np.float32)
    model = RandomForestClassifier(n_estimators=10, max_depth=5, random_state=0).fit(X32, y)
    signature = Signature.infer(X32)
    fp = compile_fast_path(model, signature=signature, measure=False)

    assert signature.dtype == np.float32 and fp.is_fast
    _assert_same_answers(fp, model, signature.validate(X32))


def test_string_class_labels_keep_their_dtype() -> None:
    X, y = _multiclass()
    labels = np.array(["cat", "dog", "eel"])[y]
    for model in (LogisticRegression(max_iter=500), HistGradientBoostingClassifier(max_iter=5)):
        model.fit(X, labels)
        fp = compile_fast_path(model, reference=X[:100], measure=False)
        assert fp.is_fast
        _assert_same_answers(fp, model, X)


# ---------------------------------------------------------------------- refusals and fallbacks


def test_fast_path_that_flips_a_label_is_refused_and_the_model_serves(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    model, X_train, X_test = _fit(*LINEAR["logistic-binary"])
    original = _fast_linear.LinearProgram.predict

    def flip_first(self: Any, rows: np.ndarray) -> np.ndarray:
        out: np.ndarray = original(self, rows).copy()
        out[0] = 1 - out[0]
        return out

    monkeypatch.setattr(_fast_linear.LinearProgram, "predict", flip_first)
    fp = compile_fast_path(model, reference=X_train, measure=False)

    assert not fp.is_fast and fp.report.served_by == "native"
    assert fp.report.kind == "numpy-linear" and fp.report.label_mismatches == 1
    assert "1 of" in fp.report.reason and "labels differ" in fp.report.reason
    np.testing.assert_array_equal(fp.predict(X_test), model.predict(X_test))
    np.testing.assert_array_equal(fp.predict_proba(X_test), model.predict_proba(X_test))
    with pytest.raises(DeploymentError, match="labels differ"):
        compile_fast_path(model, reference=X_train, mode="require", measure=False)


def test_fast_path_with_probabilities_off_by_more_than_atol_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    model, X_train, _ = _fit(*TREES["random-forest"])
    original = _fast_trees.TreeProgram.predict_proba
    monkeypatch.setattr(
        _fast_trees.TreeProgram, "predict_proba", lambda self, rows: original(self, rows) + 1e-6
    )
    fp = compile_fast_path(model, reference=X_train[:200], stress_rows=600, measure=False)

    assert not fp.is_fast and fp.report.label_mismatches == 0
    assert fp.report.max_abs_diff == pytest.approx(1e-6, rel=1e-6)
    assert "exceeds atol" in fp.report.reason


def test_fast_path_disagreeing_only_at_a_threshold_is_caught_by_the_stress_rows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    model, X_train, _ = _fit(*TREES["decision-tree"])
    root_feature = int(model.tree_.feature[0])
    root_threshold = float(model.tree_.threshold[0])
    original = _fast_trees.TreeProgram.predict

    def float32_thresholds(self: Any, rows: np.ndarray) -> np.ndarray:
        # A predictor comparing in float32 at the root: right everywhere except at that split.
        out: np.ndarray = original(self, rows).copy()
        at = rows[:, root_feature].astype(np.float32) == np.float32(root_threshold)
        out[at] = model.classes_[(model.classes_ != out[at][:, None]).argmax(axis=1)]
        return out

    monkeypatch.setattr(_fast_trees.TreeProgram, "predict", float32_thresholds)
    on_reference_only = compile_fast_path(model, reference=X_train, stress_rows=0, measure=False)
    with_stress = compile_fast_path(model, reference=X_train, measure=False)

    assert on_reference_only.is_fast
    assert not with_stress.is_fast and (with_stress.report.label_mismatches or 0) > 0


def test_without_the_fast_extra_auto_falls_back_and_says_why(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    model, X_train, X_test = _fit(*TREES["hist-gradient-boosting-binary"])
    real_import = builtins.__import__

    def no_onnx(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.split(".")[0] in ("onnx", "onnxruntime", "skl2onnx"):
            raise ImportError(f"No module named {name!r}", name=name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_onnx)
    fp = compile_fast_path(model, reference=X_train[:100], measure=False)

    assert not fp.is_fast and fp.report.kind == "onnx" and fp.report.served_by == "native"
    assert "pip install 'modeldeploy[fast]'" in fp.report.reason
    np.testing.assert_array_equal(fp.predict(X_test), model.predict(X_test))
    with pytest.raises(DeploymentError, match=r"modeldeploy\[fast\]"):
        compile_fast_path(model, mode="require", measure=False)
    # The linear path needs no extra.
    linear, X_lin, _ = _fit(*LINEAR["scaler-logistic"])
    assert compile_fast_path(linear, reference=X_lin, measure=False).is_fast


def test_unknown_model_is_served_by_its_own_predict_and_require_raises() -> None:
    X, y = _binary()
    model = KNeighborsClassifier().fit(X, y)
    fp = compile_fast_path(model, measure=False)

    assert fp.report.kind == "native" and "KNeighborsClassifier" in fp.report.reason
    np.testing.assert_array_equal(fp.predict(X[:50]), model.predict(X[:50]))
    np.testing.assert_array_equal(fp.predict_proba(X[:50]), model.predict_proba(X[:50]))
    with pytest.raises(DeploymentError, match="mode='require'"):
        compile_fast_path(model, mode="require")


def test_subclass_overriding_predict_is_not_compiled() -> None:
    class Shifted(LogisticRegression):  # type: ignore[misc]
        def predict(self, rows: Any) -> Any:
            return 1 - super().predict(rows)

    X, y = _binary()
    model = Shifted().fit(X, y)
    fp = compile_fast_path(model, measure=False)

    assert not fp.is_fast
    np.testing.assert_array_equal(fp.predict(X), model.predict(X))


def test_off_mode_never_compiles() -> None:
    model, _, _ = _fit(*LINEAR["logistic-binary"])
    fp = compile_fast_path(model, mode="off")
    assert not fp.is_fast and fp.report.reason == "fast path turned off (mode='off')"


def test_unsupported_pipeline_step_is_served_natively_with_the_step_named() -> None:
    from sklearn.preprocessing import PolynomialFeatures

    X, y = _binary()
    model = make_pipeline(PolynomialFeatures(2), LogisticRegression(max_iter=2000)).fit(X, y)
    fp = compile_fast_path(model, measure=False)
    assert not fp.is_fast and "PolynomialFeatures" in fp.report.reason


def test_regressor_has_no_predict_proba() -> None:
    model, X_train, _ = _fit(*LINEAR["ridge"])
    fp = compile_fast_path(model, reference=X_train, measure=False)
    with pytest.raises(AttributeError, match="predict_proba"):
        fp.predict_proba(X_train)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"mode": "fast"}, "'mode'"), ({"atol": -1.0}, "'atol'"), ({"stress_rows": -1}, "stress")],
)
def test_bad_arguments_raise_invalid_parameter_error(kwargs: dict[str, Any], match: str) -> None:
    model, _, _ = _fit(*LINEAR["logistic-binary"])
    with pytest.raises(InvalidParameterError, match=match):
        compile_fast_path(model, **kwargs)


# ---------------------------------------------------------------------- report, caching, threads


def test_report_records_rows_speed_and_versions_and_serializes() -> None:
    model, X_train, _ = _fit(*TREES["random-forest"])
    fp = compile_fast_path(model, reference=X_train[:200], stress_rows=1200)
    report = fp.report

    assert report.accepted and report.reference_rows == 200 and report.stress_rows == 1200
    assert report.native_p50_us is not None and report.fast_p50_us is not None
    assert report.speedup == pytest.approx(report.native_p50_us / report.fast_p50_us)
    assert {"numpy", "scikit-learn", "onnx", "onnxruntime"} <= set(report.versions)
    data = json.loads(json.dumps(report.to_dict()))
    assert data["served_by"] == "onnx" and data["label_mismatches"] == 0
    assert "served_by='onnx'" in repr(fp) and "<table>" in fp._repr_html_()
    assert isinstance(report, FastPathReport)


def test_artifact_round_trip_serves_the_same_answers() -> None:
    model, X_train, X_test = _fit(*TREES["hist-gradient-boosting-multiclass"])
    fp = compile_fast_path(model, reference=X_train[:200], measure=False)
    data = fp.to_bytes()

    trusted = FastPath.from_bytes(data, model, verify=False)
    verified = FastPath.from_bytes(data, model, reference=X_train[:200])
    assert trusted.is_fast and verified.is_fast and verified.report.label_mismatches == 0
    _assert_same_answers(trusted, model, X_test)
    unpickled = pickle.loads(pickle.dumps(fp))
    assert unpickled.is_fast and unpickled.report == fp.report
    _assert_same_answers(unpickled, model, X_test)


def test_corrupt_or_foreign_artifact_is_rejected() -> None:
    model, X_train, _ = _fit(*TREES["random-forest"])
    data = compile_fast_path(model, reference=X_train[:100], measure=False).to_bytes()
    other, _, _ = _fit(*TREES["decision-tree"])

    with pytest.raises(DeploymentError, match="corrupt"):
        FastPath.from_bytes(data[:-1] + bytes([data[-1] ^ 1]), model)
    with pytest.raises(DeploymentError, match="compiled for"):
        FastPath.from_bytes(data, other)
    with pytest.raises(DeploymentError, match="header"):
        FastPath.from_bytes(b"not an artifact", model)
    with pytest.raises(DeploymentError, match="corrupt"):
        FastPath.from_bytes(data[:20], model)


def test_linear_artifact_recompiles_from_the_model() -> None:
    model, X_train, X_test = _fit(*LINEAR["scaler-logistic"])
    data = compile_fast_path(model, reference=X_train, measure=False).to_bytes()
    restored = FastPath.from_bytes(data, model, reference=X_train)
    assert restored.is_fast
    _assert_same_answers(restored, model, X_test)


def test_concurrent_callers_get_their_own_answers() -> None:
    model, X_train, X_test = _fit(*TREES["gradient-boosting-multiclass"])
    linear, X_lin, X_lin_test = _fit(*LINEAR["minmax-maxabs-robust-logistic"])
    paths = [
        (compile_fast_path(model, reference=X_train[:100], measure=False), model, X_test),
        (compile_fast_path(linear, reference=X_lin, measure=False), linear, X_lin_test),
    ]
    errors: list[str] = []

    def worker(seed: int) -> None:
        rng = np.random.default_rng(seed)
        for _ in range(200):
            fp, est, X = paths[int(rng.integers(2))]
            i = int(rng.integers(len(X) - 8))
            rows = X[i : i + int(rng.integers(1, 8))]
            if not np.array_equal(fp.predict(rows), est.predict(rows)):
                errors.append(f"thread {seed} rows {i}")

    threads = [threading.Thread(target=worker, args=(s,)) for s in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_registry_version_compiles_with_its_signature(tmp_path: Path) -> None:
    model, X_train, X_test = _fit(*LINEAR["scaler-logistic"])
    registry = ModelRegistry(tmp_path / "registry")
    try:
        version = registry.register("churn", model, sample=X_train)
        assert version.signature is not None
        fp = compile_fast_path(version.load(), signature=version.signature, measure=False)
    finally:
        registry.close()
    assert fp.is_fast and fp.report.reference_rows > 0
    rows = version.signature.validate(X_test)
    _assert_same_answers(fp, model, rows)


def test_dataframe_trained_model_compares_against_dataframe_input() -> None:
    pd = pytest.importorskip("pandas")
    X, y = _binary()
    frame = pd.DataFrame(X, columns=[f"f{j}" for j in range(X.shape[1])])
    model = HistGradientBoostingClassifier(max_iter=10).fit(frame, y)
    signature = Signature.infer(frame)
    fp = compile_fast_path(model, signature=signature, measure=False)

    assert fp.is_fast, fp.report
    rows = signature.validate(frame.iloc[:100])
    np.testing.assert_array_equal(fp.predict(rows), model.predict(frame.iloc[:100]))


def test_importing_the_module_does_not_import_onnx() -> None:
    code = (
        "import sys, modeldeploy.fastpath, modeldeploy.deployers.fastpath; "
        "print(any(m.split('.')[0] in ('onnx', 'onnxruntime', 'skl2onnx') for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_float32_hist_gradient_boosting_is_refused_although_held_out_rows_agree(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # What a float32 converter does to HistGradientBoosting, which bins in float64: the labels
    # agree on ordinary rows and flip on rows at a split threshold.
    model, X_train, X_test = _fit(*TREES["hist-gradient-boosting-binary"])
    to_onnx = _fast_trees._Graph.to_onnx
    monkeypatch.setattr(
        _fast_trees._Graph, "to_onnx", lambda self, n, k, cast32: to_onnx(self, n, k, True)
    )
    float32_program = _fast_trees.compile_trees(model)
    fp = compile_fast_path(model, reference=X_train[:300], measure=False)

    np.testing.assert_array_equal(float32_program.predict(X_test), model.predict(X_test))
    assert not fp.is_fast and (fp.report.label_mismatches or 0) > 0
    np.testing.assert_array_equal(fp.predict(X_test), model.predict(X_test))


# ---------------------------------------------------------------------- DataFrame-trained models


def _breast_cancer_frame(pd: Any) -> tuple[Any, Any, Any, Any]:
    from sklearn.datasets import load_breast_cancer

    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    assert isinstance(X, pd.DataFrame)
    return train_test_split(X, y, test_size=0.3, random_state=0)  # type: ignore[no-any-return]


def _assert_serves_like_the_dataframe_model(
    model: Any, signature: Signature, kind: str, held_out: Any
) -> FastPath:
    fp = compile_fast_path(model, signature=signature, measure=False)
    assert fp.is_fast and fp.report.served_by == kind, fp.report
    assert fp.report.label_mismatches == 0
    rows = signature.validate(held_out)
    X_ref = signature.example(1000)
    program = fp._program
    stress = _fast_check.stress_rows(model, program, X_ref, signature, 3000)
    assert stress.shape[0] > 0
    for X in (rows, stress, rows[:1]):
        want = model.predict(signature.to_model_input(X))
        np.testing.assert_array_equal(fp.predict(X), want)
        if fp.has_predict_proba:
            np.testing.assert_allclose(
                fp.predict_proba(X), model.predict_proba(signature.to_model_input(X)), atol=ATOL
            )
    for again in (
        pickle.loads(pickle.dumps(fp)),
        FastPath.from_bytes(fp.to_bytes(), model, signature=signature, verify=False),
    ):
        assert again.is_fast
        np.testing.assert_array_equal(
            again.predict(stress), model.predict(signature.to_model_input(stress))
        )
    return fp


def test_dataframe_trained_scaler_logistic_pipeline_matches_on_the_boundary() -> None:
    pd = pytest.importorskip("pandas")
    X_train, X_test, y_train, _ = _breast_cancer_frame(pd)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(X_train, y_train)
    signature = Signature.infer(X_train)
    fp = _assert_serves_like_the_dataframe_model(model, signature, "numpy-linear", X_test)

    program = fp._program
    assert isinstance(program, _fast_linear.LinearProgram)
    boundary = _fast_linear.linear_boundary_rows(model, program, signature.validate(X_test))
    np.testing.assert_array_equal(
        fp.predict(boundary), model.predict(signature.to_model_input(boundary))
    )


def test_dataframe_trained_plain_logistic_regression_is_accepted() -> None:
    pd = pytest.importorskip("pandas")
    X_train, X_test, y_train, _ = _breast_cancer_frame(pd)
    model = LogisticRegression(solver="liblinear").fit(X_train, y_train)
    _assert_serves_like_the_dataframe_model(model, Signature.infer(X_train), "numpy-linear", X_test)


def test_dataframe_trained_random_forest_is_accepted_through_onnx() -> None:
    pd = pytest.importorskip("pandas")
    pytest.importorskip("onnxruntime")
    X_train, X_test, y_train, _ = _breast_cancer_frame(pd)
    model = RandomForestClassifier(n_estimators=20, max_depth=6, random_state=0)
    model.fit(X_train, y_train)
    signature = Signature.infer(X_train)
    fp = _assert_serves_like_the_dataframe_model(model, signature, "onnx", X_test)

    rows = signature.validate(X_test)
    threshold_rows = _tree_stress(model, rows, limit=1200)
    np.testing.assert_array_equal(
        fp.predict(threshold_rows), model.predict(signature.to_model_input(threshold_rows))
    )


def test_integer_dataframe_columns_are_truncated_like_the_model_input() -> None:
    # Signature.to_model_input casts an int64 column back to int64 (2.7 -> 2); the compiled
    # paths must see the same values, or rows between two integers flip.
    pd = pytest.importorskip("pandas")
    pytest.importorskip("onnxruntime")
    X_train, X_test, y_train, _ = _breast_cancer_frame(pd)
    ints = (X_train * 100).round().astype(np.int64)
    mixed = X_train.assign(**{"mean radius": ints["mean radius"]})
    pipeline = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    forest = RandomForestClassifier(n_estimators=20, max_depth=6, random_state=0)
    held_out = (X_test * 100).round().astype(np.int64)
    cases = [
        (pipeline.fit(mixed, y_train), mixed, "numpy-linear", X_test),
        (forest.fit(ints, y_train), ints, "onnx", held_out),
    ]
    for model, frame, kind, test in cases:
        signature = Signature.infer(frame)
        fp = _assert_serves_like_the_dataframe_model(model, signature, kind, test)
        rows = signature.validate(test)
        between = rows + 0.5  # not integers: the model sees them truncated
        np.testing.assert_array_equal(
            fp.predict(between), model.predict(signature.to_model_input(between))
        )


def test_fast_path_input_has_the_values_and_layout_the_dataframe_gives_the_model() -> None:
    pd = pytest.importorskip("pandas")
    X_train, X_test, _, _ = _breast_cancer_frame(pd)
    frame = X_train.assign(**{"mean radius": X_train["mean radius"].round().astype(np.int64)})
    signature = Signature.infer(frame)
    prepare = _fast_check.frame_input(signature, layout=True)
    assert prepare is not None
    rows = signature.validate(X_test) + 0.25
    for X in (rows, rows[:1], rows[:2]):
        got = prepare(X)
        want = np.asarray(signature.to_model_input(X), dtype=np.float64)
        np.testing.assert_array_equal(got, want)
        assert got.strides == want.strides
        assert got is not X and not np.shares_memory(got, X)


@pytest.mark.parametrize("dtype", [np.int64, np.float32])
def test_dataframe_the_model_reads_as_non_float64_is_refused_for_linear_models(
    dtype: type,
) -> None:
    pd = pytest.importorskip("pandas")
    X_train, X_test, y_train, _ = _breast_cancer_frame(pd)
    frame = (X_train * 100).round().astype(dtype)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(frame, y_train)
    signature = Signature.infer(frame)
    fp = compile_fast_path(model, signature=signature, measure=False)

    assert not fp.is_fast and fp.report.served_by == "native"
    assert f"receives a {np.dtype(dtype)} array" in fp.report.reason
    with pytest.raises(DeploymentError, match="float64 arithmetic only"):
        compile_fast_path(model, signature=signature, mode="require", measure=False)
    rows = signature.validate((X_test * 100).round().astype(dtype))
    np.testing.assert_array_equal(fp.predict(rows), model.predict(signature.to_model_input(rows)))
