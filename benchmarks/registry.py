"""Registry speed next to plain joblib (the floor) and, when installed, MLflow.

Registers and loads a RandomForestClassifier(n_estimators=50, max_depth=8) trained on 10,000 x 20
and prints medians and ratios. Run: python benchmarks/registry.py [--repeats N]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import joblib
import numpy as np
from sklearn.ensemble import RandomForestClassifier

from modeldeploy import ModelRegistry


def timed(fn: Callable[[], Any], repeats: int) -> float:
    """Median seconds of ``repeats`` calls."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    X = rng.normal(size=(10_000, 20))
    y = (X[:, 0] + X[:, 1] * X[:, 2] > 0).astype(int)
    model = RandomForestClassifier(n_estimators=50, max_depth=8, random_state=0).fit(X, y)
    tmp = Path(tempfile.mkdtemp())
    results: dict[str, float] = {}

    counter = iter(range(10**9))
    dump_path = tmp / "model.joblib"
    results["joblib.dump"] = timed(lambda: joblib.dump(model, dump_path), args.repeats)
    results["joblib.load"] = timed(lambda: joblib.load(dump_path), args.repeats)

    reg = ModelRegistry(tmp / "registry")
    reg.register("warmup", model, sample=X)
    results["register (with sample=X)"] = timed(
        lambda: reg.register(f"m{next(counter)}", model, sample=X), args.repeats
    )
    results["register (no sample)"] = timed(
        lambda: reg.register(f"m{next(counter)}", model), args.repeats
    )
    reg.register("churn", model, sample=X)
    reg.promote("churn", 1)

    def cold_load() -> None:
        ModelRegistry(tmp / "registry", cache_size=0).load("churn", alias="production")

    results["load cold (verify + deserialize)"] = timed(cold_load, args.repeats)
    reg.load("churn", alias="production")
    results["load cached, by alias"] = timed(lambda: reg.load("churn", alias="production"), 2000)
    version = reg.get("churn", alias="production")
    results["ModelVersion.load cached"] = timed(version.load, 2000)

    try:
        import mlflow
        import mlflow.sklearn
    except ImportError:
        mlflow = None
    if mlflow is not None:
        mlflow.set_tracking_uri(f"sqlite:///{tmp / 'mlflow.db'}")
        mlflow.set_registry_uri(f"sqlite:///{tmp / 'mlflow.db'}")
        mlflow.create_experiment("bench", artifact_location=(tmp / "mlruns").as_uri())
        mlflow.set_experiment("bench")

        def mlflow_register() -> None:
            with mlflow.start_run():
                info = mlflow.sklearn.log_model(
                    model,
                    name="model",
                    pip_requirements=["scikit-learn"],
                    serialization_format="cloudpickle",  # pickle-based, like joblib
                )
                mlflow.register_model(info.model_uri, "churn")

        mlflow_register()
        results["MLflow log_model + register_model"] = timed(mlflow_register, 5)
        results["MLflow load_model"] = timed(
            lambda: mlflow.sklearn.load_model("models:/churn/1"), 5
        )

    print(f"{'case':40s} {'median':>12s}")
    for case, seconds in results.items():
        shown = f"{seconds * 1e6:9.1f} µs" if seconds < 1e-3 else f"{seconds * 1e3:9.2f} ms"
        print(f"{case:40s} {shown:>12s}")
    print()
    print("ratios (target):")
    print(
        f"  register (with sample) / joblib.dump   = "
        f"{results['register (with sample=X)'] / results['joblib.dump']:.2f}x  (<= 2x)"
    )
    print(
        f"  register (no sample)   / joblib.dump   = "
        f"{results['register (no sample)'] / results['joblib.dump']:.2f}x"
    )
    print(
        f"  cold load / joblib.load                = "
        f"{results['load cold (verify + deserialize)'] / results['joblib.load']:.2f}x  (<= 1.5x)"
    )
    print(
        f"  cached load by alias                   = "
        f"{results['load cached, by alias'] * 1e6:.1f} µs  (< 50 µs)"
    )
    if mlflow is not None:
        mlflow_register_s = results["MLflow log_model + register_model"]
        print(
            f"  MLflow register / ours                 = "
            f"{mlflow_register_s / results['register (with sample=X)']:.1f}x"
        )
        print(
            f"  MLflow load / our cold load            = "
            f"{results['MLflow load_model'] / results['load cold (verify + deserialize)']:.1f}x"
        )


if __name__ == "__main__":
    main()
