"""OnlineDeployer against raw scikit-learn calls and a hand-written micro-batcher.

Run with ``python benchmarks/online.py`` (about two minutes on 2 cores; ``--quick`` for a
shorter run). Models: LogisticRegression and RandomForestClassifier(n_estimators=50,
max_depth=8), both on 20 features.

1. One caller, single rows: p50 / p99 of ``dep.predict(row)`` next to ``model.predict(row)``,
   called alternately on the same rows.
2. 16 and 64 concurrent callers, single rows, closed loop: throughput and p50 / p99 latency of
   ``dep.predict(row)``, of the same threads calling ``model.predict(row)`` directly, and of a
   simple hand-written micro-batcher (one worker thread, batches of up to 64 rows or 2 ms).

Each deployer figure is given with the verified compiled predictor (``fast_path="auto"``, the
default) and calling the model itself (``fast_path="off"``); for concurrent callers also with
``max_wait_ms=2``, the hand-written batcher's budget (the default is 1 ms).
"""

from __future__ import annotations

import argparse
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, Literal

import numpy as np
from sklearn.datasets import make_classification
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression

from modeldeploy._config import DEFAULT_MAX_WAIT_MS
from modeldeploy.deployers.online import OnlineDeployer
from modeldeploy.registry.signature import Signature

FAST_PATHS: tuple[Literal["off", "auto"], ...] = ("off", "auto")


class HandWrittenBatcher:
    """What one would write by hand: a worker thread, a queue, 64 rows or 2 ms per batch."""

    def __init__(self, model: Any, max_batch: int = 64, max_wait_s: float = 0.002) -> None:
        self.model = model
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.q: queue.Queue[tuple[np.ndarray, Future[Any]] | None] = queue.Queue()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def predict(self, row: np.ndarray) -> Any:
        fut: Future[Any] = Future()
        self.q.put((row, fut))
        return fut.result()

    def _loop(self) -> None:
        while True:
            first = self.q.get()
            if first is None:
                return
            items = [first]
            deadline = time.perf_counter() + self.max_wait_s
            while len(items) < self.max_batch:
                remaining = deadline - time.perf_counter()
                if remaining <= 0:
                    break
                try:
                    item = self.q.get(timeout=remaining)
                except queue.Empty:
                    break
                if item is None:
                    return
                items.append(item)
            out = self.model.predict(np.vstack([row for row, _ in items]))
            for i, (_, fut) in enumerate(items):
                fut.set_result(out[i : i + 1])

    def close(self) -> None:
        self.q.put(None)
        self.thread.join()


def one_caller(
    fns: list[Callable[[np.ndarray], Any]], rows: list[np.ndarray], n: int
) -> list[np.ndarray]:
    """Call each of ``fns`` in turn on the same row, ``n`` times: alike conditions for all."""
    times = np.empty((len(fns), n))
    for i in range(n):
        row = rows[i % len(rows)]
        for j, fn in enumerate(fns):
            t0 = time.perf_counter()
            fn(row)
            times[j, i] = time.perf_counter() - t0
    return list(times)


def closed_loop(
    fn: Callable[[np.ndarray], Any], rows: list[np.ndarray], threads: int, seconds: float
) -> tuple[float, float, float]:
    """``threads`` callers, each sending one row and waiting for it, for ``seconds``."""
    lat: list[list[float]] = [[] for _ in range(threads)]
    start = threading.Barrier(threads + 1)
    stop_at = [0.0]

    def caller(k: int) -> None:
        mine = lat[k]
        i = k
        start.wait()
        while True:
            t0 = time.perf_counter()
            if t0 > stop_at[0]:
                return
            fn(rows[i % len(rows)])
            mine.append(time.perf_counter() - t0)
            i += 7

    workers = [threading.Thread(target=caller, args=(k,)) for k in range(threads)]
    for w in workers:
        w.start()
    t0 = time.perf_counter()
    stop_at[0] = t0 + seconds
    start.wait()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - t0
    all_lat = np.concatenate([np.asarray(x) for x in lat])
    p50, p99 = np.percentile(all_lat, [50, 99]) * 1e3
    return all_lat.size / elapsed, float(p50), float(p99)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter runs")
    args = parser.parse_args()
    seconds = 1.5 if args.quick else 4.0

    X, y = make_classification(n_samples=20_000, n_features=20, n_informative=10, random_state=0)
    signature = Signature.infer(X)
    rows = [X[i : i + 1].copy() for i in range(2000)]
    models = {
        "LogisticRegression": LogisticRegression(max_iter=1000).fit(X, y),
        "RandomForest(50, depth 8)": RandomForestClassifier(
            n_estimators=50, max_depth=8, random_state=0
        ).fit(X, y),
    }
    print("## One caller, single rows (latency in microseconds)\n")
    print(
        "| model | deployer | raw p50 | deployer p50 | ratio p50 | raw p99 | deployer p99 "
        "| ratio p99 |"
    )
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, model in models.items():
        for fast in FAST_PATHS:
            dep = OnlineDeployer(model, signature=signature, fast_path=fast)
            n = 1000 if "Forest" in name else 5000
            raw, ours = one_caller([model.predict, dep.predict], rows, n)
            r50, r99 = np.percentile(raw, [50, 99]) * 1e6
            d50, d99 = np.percentile(ours, [50, 99]) * 1e6
            print(
                f"| {name} | fast_path={fast!r} | {r50:.0f} | {d50:.0f} | {d50 / r50:.3f} "
                f"| {r99:.0f} | {d99:.0f} | {d99 / r99:.3f} |"
            )
            dep.close()

    print("\n## Concurrent callers, single rows (closed loop)\n")
    print(
        "| model | callers | method | rows/s | p50 ms | p99 ms | vs naive threads "
        "| vs hand-written batcher |"
    )
    print("| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |")
    for name, model in models.items():
        for threads in (16, 64):
            naive = closed_loop(model.predict, rows, threads, seconds)
            hand = HandWrittenBatcher(model)
            handmade = closed_loop(hand.predict, rows, threads, seconds)
            hand.close()
            results = [("naive threads", naive), ("hand-written batcher", handmade)]
            # The defaults, then the hand-written batcher's 2 ms budget, then the fast path.
            variants: list[tuple[Literal["off", "auto"], float]] = [
                ("off", DEFAULT_MAX_WAIT_MS),
                ("off", 2.0),
                ("auto", DEFAULT_MAX_WAIT_MS),
            ]
            for fast, wait in variants:
                dep = OnlineDeployer(model, signature=signature, fast_path=fast, max_wait_ms=wait)
                served = closed_loop(dep.predict, rows, threads, seconds)
                mean_batch = dep.stats().mean_batch_size
                dep.close()
                setting = f"fast_path={fast!r}, max_wait_ms={wait:g}"
                results.append((f"OnlineDeployer {setting} (mean batch {mean_batch:.1f})", served))
            for label, (tput, p50, p99) in results:
                print(
                    f"| {name} | {threads} | {label} | {tput:,.0f} | {p50:.2f} | {p99:.2f} "
                    f"| {tput / naive[0]:.2f}x | {tput / handmade[0]:.2f}x |"
                )


if __name__ == "__main__":
    main()
