"""Hybrid deployment: urgent requests answered now, the rest scored in batches.

A churn model is registered once and served by both paths (the router checks they serve the
same version). A checkout page asks about one customer and needs the answer now; a retention
campaign sends thousands of customers and can wait for the next batch; an asyncio service
awaits its answers without blocking its event loop. Core install only.
Run: python examples/hybrid_routing.py
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
from sklearn.datasets import make_classification
from sklearn.ensemble import RandomForestClassifier

from modeldeploy import BatchDeployer, ModelRegistry, OnlineDeployer
from modeldeploy.routing import HybridRouter, by_deadline, by_meta, by_size, first_of


def main() -> None:
    X, y = make_classification(n_samples=20_000, n_features=8, n_informative=5, random_state=0)
    reg = ModelRegistry(Path(tempfile.mkdtemp()) / "model-registry")
    version = reg.register(
        "churn", RandomForestClassifier(n_estimators=30, max_depth=8, random_state=0).fit(X, y),
        sample=X,
    )  # fmt: skip

    rule = first_of(
        by_meta("urgent", online_if=True),  # the caller says so
        by_deadline(online_within=timedelta(seconds=5)),  # the answer is needed soon
        by_size(max_online_rows=1_000),  # otherwise: small online, big to batch
    )
    with (
        OnlineDeployer(version, fast_path="off") as dep,
        # flush_interval_s=None: the router's flush_seconds alone times the batch path.
        BatchDeployer(version, chunk_size=5_000, n_jobs=2, flush_interval_s=None) as job,
        HybridRouter(
            online=dep, batch=job, route=rule, flush_rows=5_000, flush_seconds=0.5
        ) as router,
    ):
        print(router)

        # A checkout page: one customer, answered now by the online path.
        t0 = time.perf_counter()
        now = router.predict(X[0], meta={"urgent": True})
        print(f"checkout: churn={now[0]} in {1e3 * (time.perf_counter() - t0):.2f} ms (online)")

        # A retention campaign: queued; the handle resolves once its batch runs.
        campaign = router.submit(X[:8_000], meta={"campaign": "spring"})
        nightly = router.submit(X[8_000:9_000], deadline=timedelta(hours=8))
        print(f"campaign -> {campaign.path}, nightly -> {nightly.path}, queued: "
              f"{router.stats().pending_rows:,} rows")  # fmt: skip
        scores = campaign.result(timeout=30)  # 8,000 rows >= flush_rows: scored at once
        assert np.array_equal(scores, version.load().predict(X[:8_000]))
        print(f"campaign scored: {scores.mean():.1%} predicted to churn")

        # An asyncio service: awaiting a handle never blocks the event loop.
        async def service() -> None:
            quick = await router.apredict(X[1:3], deadline=1.0)  # online: due in 1 s
            later = router.submit(X[9_000:9_200], deadline=3600.0)  # batch: due in an hour
            rows = await later  # flushed by time (flush_seconds=0.5)
            print(f"asyncio: {quick.tolist()} now, {len(rows)} rows after the flush")

        asyncio.run(service())
        print("nightly done:", nightly.done())  # flushed with the asyncio batch
        print(router.stats())


if __name__ == "__main__":
    main()
