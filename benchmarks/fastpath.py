"""Verified fast paths against the model's own ``predict``, in one process.

Run with ``python benchmarks/fastpath.py`` (about a minute on 2 cores; ``--quick`` for a
shorter run). Models, on 20 features: LogisticRegression, RandomForestClassifier(n_estimators=50,
max_depth=8) and HistGradientBoostingClassifier(max_iter=100).

For each model it times, one row at a time (p50 / p99) and in 64-row batches (p50):

* ``sklearn``: ``model.predict(X)`` on a 2-D array, the floor a user calls without us;
* ``fast``: ``fp.predict(X)`` on a validated array (what a deployer calls after validation);
* ``validate + fast``: ``fp.predict(signature.validate(x))`` from a raw 1-D row, the work at a
  deployer's boundary (no queueing or batching);
* ``deployer``: ``OnlineDeployer(model, signature=signature).predict(x)`` from the same raw row
  (default settings: ``fast_path="auto"``, micro-batching, stats), one caller.

The single-row ``validate + fast`` and ``deployer`` figures are taken in the same loop, one call
of each in turn on the same row, ``--repeat`` times (default 5); the script prints what the
deployer adds over ``validate + fast`` per model (median of the per-repeat p50 differences, and
their range), since a shared machine drifts between runs more than that difference.

and counts label mismatches against ``model.predict`` on 10,000 held-out rows plus a stress set:
rows at every split threshold and one ulp either side (float64 and float32), or on the linear
model's decision boundary and one ulp either side.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn.datasets import make_classification
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression

from modeldeploy.deployers.online import OnlineDeployer
from modeldeploy.fastpath import compile_fast_path
from modeldeploy.registry.signature import Signature


def latencies(fn: Callable[[Any], Any], inputs: list[Any], budget_s: float) -> np.ndarray:
    """Per-call seconds over ``inputs`` (cycled), within a time budget, after a warm-up."""
    for x in inputs[:20]:
        fn(x)
    out = []
    deadline = time.perf_counter() + budget_s
    i = 0
    while i < 200 or (time.perf_counter() < deadline and i < 20 * len(inputs)):
        x = inputs[i % len(inputs)]
        t0 = time.perf_counter()
        fn(x)
        out.append(time.perf_counter() - t0)
        i += 1
    return np.asarray(out)


def paired_latencies(
    fns: list[Callable[[Any], Any]], inputs: list[Any], budget_s: float
) -> list[np.ndarray]:
    """Per-call seconds of each of ``fns``, called in turn on the same input (so that the
    machine's drift hits them alike, and the order alternates), within a time budget, after a
    warm-up."""
    for x in inputs[:20]:
        for fn in fns:
            fn(x)
    out: list[list[float]] = [[] for _ in fns]
    clock = time.perf_counter
    deadline = clock() + budget_s
    i = 0
    while i < 200 or (clock() < deadline and i < 20 * len(inputs)):
        x = inputs[i % len(inputs)]
        # Every other row in reverse order: the second call on a row finds it in cache.
        order = range(len(fns)) if i % 2 == 0 else range(len(fns) - 1, -1, -1)
        for k in order:
            fn = fns[k]
            t0 = clock()
            fn(x)
            out[k].append(clock() - t0)
        i += 1
    return [np.asarray(t) for t in out]


def threshold_rows(model: Any, rows: np.ndarray, n: int) -> np.ndarray:
    """Rows with one feature at a split threshold or one ulp either side, float64 and float32."""
    if hasattr(model, "_predictors"):
        nodes = [p.nodes[p.nodes["is_leaf"] == 0] for it in model._predictors for p in it]
        feats = np.concatenate([nd["feature_idx"] for nd in nodes]).astype(np.int64)
        thrs = np.concatenate([nd["num_threshold"] for nd in nodes]).astype(np.float64)
    else:
        trees = [e.tree_ for e in model.estimators_]
        feats = np.concatenate([t.feature[t.children_left >= 0] for t in trees]).astype(np.int64)
        thrs = np.concatenate([t.threshold[t.children_left >= 0] for t in trees])
    rng = np.random.default_rng(1)
    pick = rng.choice(feats.size, size=min(feats.size, n // 6), replace=False)
    feats, thrs = feats[pick], thrs[pick]
    t32 = thrs.astype(np.float32)
    blocks = []
    for values in (
        thrs,
        np.nextafter(thrs, np.inf),
        np.nextafter(thrs, -np.inf),
        t32.astype(np.float64),
        np.nextafter(t32, np.float32(np.inf)).astype(np.float64),
        np.nextafter(t32, np.float32(-np.inf)).astype(np.float64),
    ):
        block = rows[rng.integers(0, rows.shape[0], size=feats.size)].copy()
        block[np.arange(feats.size), feats] = values
        blocks.append(block)
    return np.concatenate(blocks)


def boundary_rows(model: Any, rows: np.ndarray) -> np.ndarray:
    """Rows moved onto a binary linear model's decision boundary, and one ulp either side."""
    w, b = model.coef_[0], model.intercept_[0]
    on = rows - ((rows @ w + b) / (w @ w))[:, None] * w
    return np.concatenate([on, np.nextafter(on, np.inf), np.nextafter(on, -np.inf)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller time budgets")
    parser.add_argument(
        "--repeat", type=int, default=5, help="paired validate + fast / deployer runs per model"
    )
    args = parser.parse_args()
    budget = 0.5 if args.quick else 2.0

    X, y = make_classification(
        n_samples=30_000, n_features=20, n_informative=10, random_state=0, class_sep=0.8
    )
    X_train, y_train, X_test = X[:20_000], y[:20_000], X[20_000:]
    signature = Signature.infer(X_train)
    models = {
        "LogisticRegression": LogisticRegression(max_iter=1000),
        "RandomForest(50, depth 8)": RandomForestClassifier(
            n_estimators=50, max_depth=8, random_state=0
        ),
        "HistGradientBoosting(100)": HistGradientBoostingClassifier(max_iter=100, random_state=0),
    }
    single_raw = [X_test[i] for i in range(500)]
    single_2d = [X_test[i : i + 1] for i in range(500)]
    batches = [X_test[i : i + 64] for i in range(0, 64 * 50, 64)]
    table = []
    added = []
    for name, model in models.items():
        model.fit(X_train, y_train)
        fp = compile_fast_path(model, signature=signature)
        report = fp.report
        if hasattr(model, "_predictors") or hasattr(model, "estimators_"):
            stress = threshold_rows(model, X_test, 30_000)
        else:
            stress = boundary_rows(model, X_test)
        check = np.concatenate([X_test, stress])
        expected = model.predict(check)
        mismatches = int((fp.predict(check) != expected).sum())
        proba_diff = float(np.abs(fp.predict_proba(check) - model.predict_proba(check)).max())
        dep = OnlineDeployer(model, signature=signature, name=name)
        dep_mismatches = int((dep.predict(check) != expected).sum())
        dep_proba_diff = float(np.abs(dep.predict_proba(check) - model.predict_proba(check)).max())
        print(
            f"{name}: served by {report.served_by} ({report.reason}); compile + check "
            f"{report.compile_s:.2f} s on {report.reference_rows} + {report.stress_rows} rows; "
            f"the deployer serves it by {dep.fast_path_report().served_by}"
        )

        def boundary(x: Any, fp: Any = fp) -> Any:
            return fp.predict(signature.validate(x))

        base = None
        for path, one, inputs in (
            ("sklearn predict", model.predict, single_2d),
            ("fast", fp.predict, single_2d),
        ):
            t1 = latencies(one, inputs, budget) * 1e6
            p50 = float(np.percentile(t1, 50))
            base = base or p50
            t64 = latencies(one, batches, budget / 2) * 1e6
            table.append((name, path, p50, float(np.percentile(t1, 99)),
                          float(np.percentile(t64, 50)), base / p50,
                          "" if path == "sklearn predict" else f"{mismatches} / {check.shape[0]:,}",
                          "" if path == "sklearn predict" else f"{proba_diff:.1e}"))  # fmt: skip
        # validate + fast and the deployer, called in turn on the same rows, several times.
        runs = [
            paired_latencies([boundary, dep.predict], single_raw, budget / args.repeat)
            for _ in range(max(1, args.repeat))
        ]
        diffs = [float(np.percentile(d, 50) - np.percentile(b, 50)) * 1e6 for b, d in runs]
        added.append((name, diffs, dep_mismatches))
        pooled = [np.concatenate([run[k] for run in runs]) * 1e6 for k in (0, 1)]
        timed: list[tuple[str, Callable[[Any], Any], int, float]] = [
            ("validate + fast", boundary, mismatches, proba_diff),
            ("deployer", dep.predict, dep_mismatches, dep_proba_diff),
        ]
        for k, (path, many, mm, pd) in enumerate(timed):
            t1 = pooled[k]
            p50 = float(np.percentile(t1, 50))
            t64 = latencies(many, batches, budget / 2) * 1e6
            table.append((name, path, p50, float(np.percentile(t1, 99)),
                          float(np.percentile(t64, 50)), (base or p50) / p50,
                          f"{mm} / {check.shape[0]:,}", f"{pd:.1e}"))  # fmt: skip
        dep.close()
    print()
    print(
        "| model | path | 1 row p50 (µs) | 1 row p99 (µs) | 64 rows p50 (µs) | speed-up (1 row "
        "p50) | label mismatches | max abs proba diff |"
    )
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for row in table:
        print(
            f"| {row[0]} | {row[1]} | {row[2]:.1f} | {row[3]:.1f} | {row[4]:.1f} | "
            f"{row[5]:.0f}x | {row[6]} | {row[7]} |"
        )
    print()
    print(f"What the deployer adds over validate + fast, 1 row p50 (µs), {len(runs)} paired runs:")
    print("| model | median | range | deployer label mismatches |")
    print("| --- | ---: | ---: | ---: |")
    for name, diffs, mm in added:
        print(
            f"| {name} | {float(np.median(diffs)):.1f} | {min(diffs):.1f} to {max(diffs):.1f} "
            f"| {mm} |"
        )


if __name__ == "__main__":
    main()
