"""Tree ensembles compiled to one ONNX ``TreeEnsemble`` node, in float64, run by ONNX Runtime.

Why not skl2onnx: its tree converters emit float32 thresholds and float32 outputs, which flip
labels on rows that sit exactly at a split (scikit-learn compares ``float64(float32(x)) <=
threshold64`` for forests and ``x64 <= threshold64`` for HistGradientBoosting), and its
HistGradientBoosting converter does not run with scikit-learn 1.9. So this module writes the
graph itself with the ``ai.onnx.ml`` opset 5 ``TreeEnsemble`` operator, which takes float64
inputs, thresholds and leaf weights:

* forests, single trees and GradientBoosting get ``Cast(float32) -> Cast(float64)`` in front,
  scikit-learn's own float32 cast; HistGradientBoosting sees the float64 input unchanged;
* leaves are added in scikit-learn's order (a constant first tree holds GradientBoosting's
  initial prediction or HistGradientBoosting's baseline), so the sums match to the bit;
* the final step (averaging, argmax, the loss's inverse link) runs in numpy with the model's own
  functions.

``onnx`` and ``onnxruntime`` are imported here only; this module is imported only to compile.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from modeldeploy.fastpath._linear import NotCompilableError, qualname

__all__ = [
    "TreeProgram",
    "compile_trees",
    "import_onnx",
    "is_tree_model",
    "load_tree_program",
    "split_points",
]

_FOREST_CLF = {
    "sklearn.ensemble._forest.RandomForestClassifier",
    "sklearn.ensemble._forest.ExtraTreesClassifier",
    "sklearn.tree._classes.DecisionTreeClassifier",
    "sklearn.tree._classes.ExtraTreeClassifier",
}
_FOREST_REG = {
    "sklearn.ensemble._forest.RandomForestRegressor",
    "sklearn.ensemble._forest.ExtraTreesRegressor",
    "sklearn.tree._classes.DecisionTreeRegressor",
    "sklearn.tree._classes.ExtraTreeRegressor",
}
_GB = {
    "sklearn.ensemble._gb.GradientBoostingClassifier",
    "sklearn.ensemble._gb.GradientBoostingRegressor",
}
_HGB = {
    "sklearn.ensemble._hist_gradient_boosting.gradient_boosting.HistGradientBoostingClassifier",
    "sklearn.ensemble._hist_gradient_boosting.gradient_boosting.HistGradientBoostingRegressor",
}
_OPSET_ML = 5
_OPSET = 21


def is_tree_model(model: Any) -> bool:
    """Whether ``model`` is one of the tree models this module compiles (by exact type)."""
    name = qualname(model)
    return name in _FOREST_CLF or name in _FOREST_REG or name in _GB or name in _HGB


@dataclass
class _Graph:
    """The attributes of one ``TreeEnsemble`` node, built tree by tree."""

    roots: list[int] = field(default_factory=list)
    features: list[np.ndarray] = field(default_factory=list)
    splits: list[np.ndarray] = field(default_factory=list)
    true_ids: list[np.ndarray] = field(default_factory=list)
    true_leaf: list[np.ndarray] = field(default_factory=list)
    false_ids: list[np.ndarray] = field(default_factory=list)
    false_leaf: list[np.ndarray] = field(default_factory=list)
    missing_true: list[np.ndarray] = field(default_factory=list)
    leaf_targets: list[np.ndarray] = field(default_factory=list)
    leaf_weights: list[np.ndarray] = field(default_factory=list)
    n_nodes: int = 0
    n_leaves: int = 0

    def add_tree(
        self,
        left: np.ndarray,
        right: np.ndarray,
        feature: np.ndarray,
        threshold: np.ndarray,
        missing_left: np.ndarray,
        weight: np.ndarray,
        target: int,
    ) -> None:
        """Add one tree given per-node arrays (``left == -1`` marks a leaf; 0 is the root)."""
        is_leaf = left < 0
        if is_leaf[0]:  # a lone leaf: one split whose both branches reach it
            self._add([0], [0.0], [0], [True], [0], [True], [True], [target], [float(weight[0])])
            return
        inner = np.flatnonzero(~is_leaf)
        leaves = np.flatnonzero(is_leaf)
        position = np.empty(left.shape[0], dtype=np.int64)
        position[inner] = np.arange(inner.size)
        position[leaves] = np.arange(leaves.size)
        lc, rc = left[inner], right[inner]
        self._add(
            feature[inner],
            threshold[inner],
            position[lc],
            is_leaf[lc],
            position[rc],
            is_leaf[rc],
            missing_left[inner].astype(bool),
            np.full(leaves.size, target),
            weight[leaves],
        )

    def _add(self, feat: Any, thr: Any, tid: Any, tleaf: Any, fid: Any, fleaf: Any,
             miss: Any, targets: Any, weights: Any) -> None:  # fmt: skip
        tleaf, fleaf = np.asarray(tleaf, dtype=bool), np.asarray(fleaf, dtype=bool)
        tid, fid = np.asarray(tid, dtype=np.int64), np.asarray(fid, dtype=np.int64)
        self.roots.append(self.n_nodes)
        self.features.append(np.asarray(feat, dtype=np.int64))
        self.splits.append(np.asarray(thr, dtype=np.float64))
        self.true_ids.append(np.where(tleaf, tid + self.n_leaves, tid + self.n_nodes))
        self.true_leaf.append(tleaf)
        self.false_ids.append(np.where(fleaf, fid + self.n_leaves, fid + self.n_nodes))
        self.false_leaf.append(fleaf)
        self.missing_true.append(np.asarray(miss, dtype=bool))
        self.leaf_targets.append(np.asarray(targets, dtype=np.int64))
        self.leaf_weights.append(np.asarray(weights, dtype=np.float64))
        self.n_nodes += len(self.features[-1])
        self.n_leaves += len(self.leaf_weights[-1])

    def to_onnx(self, n_features: int, n_targets: int, cast32: bool) -> bytes:
        import onnx
        from onnx import TensorProto, helper, numpy_helper

        def ints(parts: list[np.ndarray]) -> list[int]:
            return [int(v) for v in np.concatenate(parts)]

        cat = np.concatenate
        ensemble = helper.make_node(
            "TreeEnsemble",
            ["X64"] if cast32 else ["X"],
            ["Y"],
            domain="ai.onnx.ml",
            tree_roots=self.roots,
            nodes_featureids=ints(self.features),
            nodes_splits=numpy_helper.from_array(cat(self.splits)),
            nodes_modes=numpy_helper.from_array(np.zeros(self.n_nodes, dtype=np.uint8)),
            nodes_truenodeids=ints(self.true_ids),
            nodes_trueleafs=ints(self.true_leaf),
            nodes_falsenodeids=ints(self.false_ids),
            nodes_falseleafs=ints(self.false_leaf),
            nodes_missing_value_tracks_true=ints(self.missing_true),
            leaf_targetids=ints(self.leaf_targets),
            leaf_weights=numpy_helper.from_array(cat(self.leaf_weights)),
            n_targets=n_targets,
            aggregate_function=1,  # SUM; averaging and links happen in numpy, as sklearn does
            post_transform=0,
        )
        nodes = [ensemble]
        if cast32:  # scikit-learn's float32 cast of X, then back to float64 for the comparison
            nodes = [
                helper.make_node("Cast", ["X"], ["X32"], to=TensorProto.FLOAT),
                helper.make_node("Cast", ["X32"], ["X64"], to=TensorProto.DOUBLE),
                ensemble,
            ]
        graph = helper.make_graph(
            nodes,
            "modeldeploy_fast_path",
            [helper.make_tensor_value_info("X", TensorProto.DOUBLE, [None, n_features])],
            [helper.make_tensor_value_info("Y", TensorProto.DOUBLE, [None, n_targets])],
        )
        model = helper.make_model(
            graph,
            opset_imports=[
                helper.make_opsetid("", _OPSET),
                helper.make_opsetid("ai.onnx.ml", _OPSET_ML),
            ],
            producer_name="modeldeploy",
        )
        model.ir_version = 10
        onnx.checker.check_model(model)
        return bytes(model.SerializeToString())


def import_onnx() -> None:
    """Import ``onnx`` and ``onnxruntime`` (the ``[fast]`` extra); ``ImportError`` if absent."""
    import onnx  # noqa: F401
    import onnxruntime  # noqa: F401


def _session(artifact: bytes) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    return ort.InferenceSession(artifact, options, providers=["CPUExecutionProvider"])


@dataclass
class TreeProgram:
    """A compiled tree model: an ONNX Runtime session and the numpy step after it."""

    family: str  # "forest", "gb" or "hgb"
    classes: np.ndarray | None
    n_trees: int
    artifact: bytes
    model: Any
    description: str
    session: Any = None
    # Set for DataFrame-trained models: the column casts ``Signature.to_model_input`` applies.
    prepare: Any = None

    def __post_init__(self) -> None:
        if self.session is None:
            self.session = _session(self.artifact)
        self._run = self.session.run

    def raw(self, X: np.ndarray) -> np.ndarray:
        if self.prepare is not None:
            X = self.prepare(X)
        out: np.ndarray = self._run(["Y"], {"X": np.ascontiguousarray(X, dtype=np.float64)})[0]
        return out

    def predict(self, X: np.ndarray) -> np.ndarray:
        raw = self.raw(X)
        classes = self.classes
        out: np.ndarray
        if self.family == "forest":
            raw /= self.n_trees
            out = raw[:, 0] if classes is None else classes.take(np.argmax(raw, axis=1), axis=0)
        elif classes is None:
            out = raw.ravel()
            if self.family == "hgb":
                out = self.model._loss.link.inverse(out)
        elif raw.shape[1] == 1:
            # GradientBoosting predicts the positive class at raw >= 0, HGB at raw > 0.
            positive = raw.ravel() >= 0 if self.family == "gb" else raw.ravel() > 0
            out = classes.take(positive.astype(np.intp), axis=0)
        else:
            out = classes.take(np.argmax(raw, axis=1), axis=0)
        return out

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        raw = self.raw(X)
        if self.family == "forest":
            raw /= self.n_trees
            return raw
        if self.family == "gb" and raw.shape[1] == 1:
            raw = raw.ravel()
        proba: np.ndarray = self.model._loss.predict_proba(raw)
        return proba


def _forest_trees(model: Any) -> list[Any]:
    return list(getattr(model, "estimators_", [model]))


def compile_trees(model: Any) -> TreeProgram:
    """Compile a supported tree model to a `TreeProgram`.

    Raises
    ------
    NotCompilableError
        When the model uses something this compiler does not express exactly.
    """
    name = qualname(model)
    n_features = int(model.n_features_in_)
    graph = _Graph()
    classes: np.ndarray | None = None
    if name in _FOREST_CLF or name in _FOREST_REG:
        if getattr(model, "n_outputs_", 1) != 1:
            raise NotCompilableError("multi-output trees are not compiled")
        trees = _forest_trees(model)
        if name in _FOREST_CLF:
            classes = np.asarray(model.classes_)
            n_targets = int(classes.size)
        else:
            n_targets = 1
        for est in trees:
            t = est.tree_
            value = t.value[:, 0, :]
            if classes is not None:
                # DecisionTreeClassifier.predict_proba normalises each leaf to sum to one.
                norm = value.sum(axis=1)
                norm[norm == 0.0] = 1.0
                value = value / norm[:, None]
            for k in range(n_targets):
                graph.add_tree(
                    t.children_left, t.children_right, t.feature, t.threshold,
                    _missing_left(t), value[:, k], k,
                )  # fmt: skip
        return _program(graph, model, "forest", classes, len(trees), n_features, n_targets)
    if name in _GB:
        init = model.init_
        if not (isinstance(init, str) and init == "zero") and type(init).__name__ not in (
            "DummyClassifier",
            "DummyRegressor",
        ):
            raise NotCompilableError(
                f"GradientBoosting with init={type(init).__name__} is not compiled"
            )
        stages = model.estimators_
        n_targets = int(stages.shape[1])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            init_raw = np.asarray(model._raw_predict_init(np.zeros((1, n_features))))[0]
        for k in range(n_targets):
            _add_constant(graph, float(init_raw[k]), k)
        lr = model.learning_rate
        for stage in stages:
            for k, est in enumerate(stage):
                t = est.tree_
                graph.add_tree(
                    t.children_left, t.children_right, t.feature, t.threshold,
                    _missing_left(t), lr * t.value[:, 0, 0], k,
                )  # fmt: skip
        if hasattr(model, "classes_"):
            classes = np.asarray(model.classes_)
        return _program(graph, model, "gb", classes, len(stages), n_features, n_targets)
    if name in _HGB:
        if getattr(model, "_preprocessor", None) is not None or (
            getattr(model, "is_categorical_", None) is not None and model.is_categorical_.any()
        ):
            raise NotCompilableError(
                "HistGradientBoosting with categorical features is not compiled"
            )
        baseline = np.asarray(model._baseline_prediction, dtype=np.float64).ravel()
        n_targets = int(model.n_trees_per_iteration_)
        for k in range(n_targets):
            _add_constant(graph, float(baseline[k]), k)
        for iteration in model._predictors:
            for k, predictor in enumerate(iteration):
                nodes = predictor.nodes
                if nodes["is_categorical"].any():
                    raise NotCompilableError("HistGradientBoosting with categorical splits")
                leaf = nodes["is_leaf"].astype(bool)
                left = np.where(leaf, -1, nodes["left"].astype(np.int64))
                right = np.where(leaf, -1, nodes["right"].astype(np.int64))
                graph.add_tree(
                    left, right, nodes["feature_idx"], nodes["num_threshold"],
                    nodes["missing_go_to_left"], nodes["value"], k,
                )  # fmt: skip
        if hasattr(model, "classes_"):
            classes = np.asarray(model.classes_)
        n_iter = len(model._predictors)
        return _program(graph, model, "hgb", classes, n_iter, n_features, n_targets)
    raise NotCompilableError(f"{type(model).__name__} is not a known tree model")


def _missing_left(tree: Any) -> np.ndarray:
    missing = getattr(tree, "missing_go_to_left", None)
    if missing is None:
        return np.zeros(tree.node_count, dtype=bool)
    return np.asarray(missing).astype(bool)


def _add_constant(graph: _Graph, value: float, target: int) -> None:
    leaf = np.array([-1])
    graph.add_tree(leaf, leaf, np.zeros(1, np.int64), np.zeros(1), leaf, np.array([value]), target)


def _program(
    graph: _Graph,
    model: Any,
    family: str,
    classes: np.ndarray | None,
    n_trees: int,
    n_features: int,
    n_targets: int,
) -> TreeProgram:
    artifact = graph.to_onnx(n_features, n_targets, cast32=family != "hgb")
    description = f"{type(model).__name__} ({graph.n_nodes} splits, {graph.n_leaves} leaves)"
    return TreeProgram(family, classes, n_trees, artifact, model, description)


def load_tree_program(model: Any, artifact: bytes) -> TreeProgram:
    """Rebuild a `TreeProgram` for ``model`` from a stored ONNX artifact."""
    name = qualname(model)
    family = "forest" if name in _FOREST_CLF or name in _FOREST_REG else "gb"
    if name in _HGB:
        family = "hgb"
    if family == "forest":
        n_trees = len(_forest_trees(model))
    elif family == "gb":
        n_trees = len(model.estimators_)
    else:
        n_trees = len(model._predictors)
    classes = np.asarray(model.classes_) if hasattr(model, "classes_") else None
    return TreeProgram(family, classes, n_trees, artifact, model, type(model).__name__)


def split_points(model: Any) -> tuple[np.ndarray, np.ndarray]:
    """Every ``(feature, threshold)`` the model compares against, deduplicated.

    For HistGradientBoosting this includes the bin thresholds of its bin mapper.
    """
    feats: list[np.ndarray] = []
    thrs: list[np.ndarray] = []
    name = qualname(model)
    if name in _HGB:
        for iteration in model._predictors:
            for predictor in iteration:
                nodes = predictor.nodes[~predictor.nodes["is_leaf"].astype(bool)]
                feats.append(nodes["feature_idx"].astype(np.int64))
                thrs.append(nodes["num_threshold"].astype(np.float64))
        for j, bins in enumerate(getattr(model._bin_mapper, "bin_thresholds_", [])):
            bins = np.asarray(bins, dtype=np.float64)
            feats.append(np.full(bins.size, j, dtype=np.int64))
            thrs.append(bins)
    else:
        trees = (
            [e for stage in model.estimators_ for e in stage]
            if name in _GB
            else _forest_trees(model)
        )
        for est in trees:
            t = est.tree_
            inner = t.children_left >= 0
            feats.append(t.feature[inner].astype(np.int64))
            thrs.append(t.threshold[inner].astype(np.float64))
    if not feats:
        return np.zeros(0, np.int64), np.zeros(0)
    pairs = np.unique(
        np.stack([np.concatenate(feats).astype(np.float64), np.concatenate(thrs)], axis=1), axis=0
    )
    return pairs[:, 0].astype(np.int64), pairs[:, 1]
