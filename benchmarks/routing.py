"""HybridRouter overhead per request, next to the model and the deployers it fronts.

One thread, one 20-feature row per request, a LogisticRegression; mean microseconds per
request over 5,000 calls after 200 warm-up calls. Run: python benchmarks/routing.py
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression

from modeldeploy import BatchDeployer, OnlineDeployer, Signature
from modeldeploy.routing import HybridRouter, by_meta


def per_call_us(fn: Callable[[], Any], n: int = 5_000) -> float:
    for _ in range(200):
        fn()
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n * 1e6


def main() -> None:
    X, y = make_classification(n_samples=20_000, n_features=20, random_state=0)
    model = LogisticRegression(max_iter=500).fit(X, y)
    dep = OnlineDeployer(model, signature=Signature.infer(X))
    job = BatchDeployer(model, n_jobs=1, flush_interval_s=None, flush_rows=10**9)
    router = HybridRouter(dep, job, route=by_meta("urgent"), close_deployers=True)
    results = {
        "model.predict (scikit-learn), 1 row (floor)": per_call_us(lambda: model.predict(X[:1])),
        "OnlineDeployer.predict, 1 row": per_call_us(lambda: dep.predict(X[0])),
        "HybridRouter.predict routed online, 1 row": per_call_us(
            lambda: router.predict(X[0], meta={"urgent": True})
        ),
        "BatchDeployer.submit, 1 row": per_call_us(lambda: job.submit(X[0])),
    }
    job.flush()
    results["HybridRouter.submit routed to batch, 1 row"] = per_call_us(
        lambda: router.submit(X[0], meta={"urgent": False})
    )
    t0 = time.perf_counter()
    router.flush()
    flushed = time.perf_counter() - t0
    router.close()
    floor = results["model.predict (scikit-learn), 1 row (floor)"]
    print("| call | µs / request | x model.predict |\n| --- | ---: | ---: |")
    for case, us in results.items():
        print(f"| {case} | {us:.1f} | {us / floor:.2f} |")
    print(f"\nflushing the 5,200 queued rows as one batch: {flushed * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
