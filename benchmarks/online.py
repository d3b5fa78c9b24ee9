"""OnlineDeployer next to raw scikit-learn and hand-written micro-batchers (threads, asyncio).

Run with ``python benchmarks/online.py`` (about four minutes on 2 cores; ``--quick`` for a
shorter run, ``--sections`` to pick sections). Models: LogisticRegression and
RandomForestClassifier(n_estimators=50, max_depth=8), both on 20 features.

1. ``lone``: one caller, single rows: p50 / p99 of ``dep.predict(row)`` next to
   ``model.predict(row)``, called alternately on the same rows; one coroutine awaiting
   ``dep.apredict(row)`` next to validate + the compiled predictor called in the coroutine; and
   what ``dep.predict`` adds over validate + the compiled predictor, paired in one loop.
2. ``threads``: 16 and 64 threads, single rows, closed loop: throughput and p50 / p99 latency of
   ``dep.predict(row)``, of the same threads calling ``model.predict(row)`` directly, and of a
   hand-written threaded micro-batcher (one worker thread, batches of up to 64 rows or 2 ms).
3. ``async``: 16 and 64 coroutines on one event loop, single rows, closed loop: ``await
   dep.apredict(row)`` (default; ``inline_max_ms=0``, every batch on a helper thread;
   ``fast_path="off"``) next to a minimal hand-written asyncio batcher (validate, compiled
   predictor, futures: none of the library's features). The loop lag is how late a coroutine
   that only yields gets back the loop (p99), what other requests of a server would wait; the
   CPU time per request (``time.process_time``) is what preemption by other processes does
   not inflate.
4. ``handoff``: one coroutine awaiting ``dep.apredict`` on 1-, 16- and 64-row batches, run on
   the loop and handed to a helper thread (``inline_max_ms=0``): what the hand-off costs, which
   the ``inline_max_ms`` default is weighed against.
5. ``ceiling``: one caller sending 64-row batches through ``dep.predict``: what batching can reach.
6. ``fastapi``: a FastAPI app (uvicorn, one worker, 127.0.0.1, in a child process) under a
   bounded load of httpx async clients (in this process, sharing the 2 cores): requests/s,
   client-side p50 / p99 and the server's CPU time per request, for a handler awaiting
   ``dep.apredict``, one calling ``dep.predict`` (a sync handler, in FastAPI's thread pool), one
   calling validate + the compiled predictor directly and one calling scikit-learn directly.

Cases of one table run interleaved, ``--repeat`` rounds; figures are medians over rounds and
ratios are taken within a round (same machine state), then their median.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import queue
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from functools import partial
from typing import Any, Literal

import numpy as np
from sklearn.datasets import make_classification
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression

from modeldeploy.deployers.online import OnlineDeployer
from modeldeploy.fastpath import compile_fast_path
from modeldeploy.registry.signature import Signature

SECTIONS = ("lone", "threads", "async", "handoff", "ceiling", "fastapi")


def make_models() -> tuple[np.ndarray, Signature, dict[str, Any]]:
    X, y = make_classification(n_samples=20_000, n_features=20, n_informative=10, random_state=0)
    models = {
        "LogisticRegression": LogisticRegression(max_iter=1000).fit(X, y),
        "RandomForest(50, depth 8)": RandomForestClassifier(
            n_estimators=50, max_depth=8, random_state=0
        ).fit(X, y),
    }
    return X, Signature.infer(X), models


def deployer(model: Any, signature: Signature, **kwargs: Any) -> OnlineDeployer:
    """An OnlineDeployer; options this version of the library lacks are left out (so that the
    script also measures an older checkout, for before/after figures)."""
    known = inspect.signature(OnlineDeployer).parameters
    return OnlineDeployer(
        model, signature=signature, **{k: v for k, v in kwargs.items() if k in known}
    )


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


class HandWrittenAsyncBatcher:
    """The minimal asyncio batcher: validate, queue a future, score what queued in one loop
    iteration with the compiled predictor, resolve the futures. No stats, routing, fallback,
    timeouts, cancellation care or several loops."""

    def __init__(self, signature: Signature, fast: Any) -> None:
        self.signature = signature
        self.fast = fast
        self.items: list[tuple[np.ndarray, asyncio.Future[Any]]] = []
        self.scheduled = False

    async def predict(self, row: Any) -> Any:
        arr = self.signature.validate(row)
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self.items.append((arr, fut))
        if not self.scheduled:
            self.scheduled = True
            loop.call_soon(self._flush)
        return await fut

    def _flush(self) -> None:
        self.scheduled = False
        items, self.items = self.items, []
        out = self.fast.predict(np.concatenate([a for a, _ in items]))
        start = 0
        for a, fut in items:
            n = a.shape[0]
            fut.set_result(out[start : start + n])
            start += n


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


def paired(
    fns: list[Callable[[np.ndarray], Any]], rows: list[np.ndarray], n: int
) -> list[np.ndarray]:
    """:func:`one_caller` for two functions, the order swapped every other row (the second
    call on a row finds warmer caches)."""
    times = np.empty((2, n))
    for i in range(n):
        row = rows[i % len(rows)]
        for j in (0, 1) if i % 2 else (1, 0):
            t0 = time.perf_counter()
            fns[j](row)
            times[j, i] = time.perf_counter() - t0
    return list(times)


def one_coroutine(
    fns: list[Callable[[np.ndarray], Awaitable[Any]]], rows: list[np.ndarray], n: int
) -> list[np.ndarray]:
    """:func:`one_caller` for coroutine functions, on one event loop."""

    async def main() -> np.ndarray:
        times = np.empty((len(fns), n))
        for i in range(n):
            row = rows[i % len(rows)]
            for j, fn in enumerate(fns):
                t0 = time.perf_counter()
                await fn(row)
                times[j, i] = time.perf_counter() - t0
        return times

    return list(asyncio.run(main()))


Result = dict[str, float]


def closed_loop(
    fn: Callable[[np.ndarray], Any], rows: list[np.ndarray], threads: int, seconds: float
) -> Result:
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
    return {"rows/s": all_lat.size / elapsed, "p50": float(p50), "p99": float(p99)}


def closed_loop_async(
    fn: Callable[[np.ndarray], Awaitable[Any]],
    rows: list[np.ndarray],
    coroutines: int,
    seconds: float,
) -> Result:
    """``coroutines`` callers on one event loop, each awaiting one row at a time; plus a
    coroutine that only yields, timing how long each loop iteration keeps it waiting."""

    async def main() -> Result:
        lat: list[float] = []
        lags: list[float] = []
        stop_at = time.perf_counter() + seconds

        async def caller(k: int) -> None:
            i = k
            while True:
                t0 = time.perf_counter()
                if t0 > stop_at:
                    return
                await fn(rows[i % len(rows)])
                lat.append(time.perf_counter() - t0)
                i += 7

        async def yielder() -> None:
            while True:
                t0 = time.perf_counter()
                if t0 > stop_at:
                    return
                await asyncio.sleep(0)
                lags.append(time.perf_counter() - t0)

        t0 = time.perf_counter()
        cpu0 = time.process_time()
        await asyncio.gather(yielder(), *(caller(k) for k in range(coroutines)))
        cpu = time.process_time() - cpu0
        elapsed = time.perf_counter() - t0
        p50, p99 = np.percentile(lat, [50, 99]) * 1e3
        return {
            "rows/s": len(lat) / elapsed,
            "p50": float(p50),
            "p99": float(p99),
            "lag p99": float(np.percentile(lags, 99) * 1e3),
            "cpu us": cpu / len(lat) * 1e6,
        }

    return asyncio.run(main())


def rounds(
    cases: dict[str, Callable[[], Result]], repeat: int, floor: str
) -> dict[str, tuple[Result, float]]:
    """Run the cases interleaved ``repeat`` times; median figures and median ratio to ``floor``
    (taken within each round)."""
    runs: dict[str, list[Result]] = {name: [] for name in cases}
    for _ in range(repeat):
        for name, case in cases.items():
            runs[name].append(case())
    out = {}
    for name, results in runs.items():
        med = {k: statistics.median(r[k] for r in results) for k in results[0]}
        ratio = statistics.median(
            r["rows/s"] / f["rows/s"] for r, f in zip(results, runs[floor], strict=True)
        )
        out[name] = (med, ratio)
    return out


def section_lone(models: dict[str, Any], signature: Signature, rows: list[np.ndarray]) -> None:
    print("## One caller, single rows (latency in microseconds)\n")
    print(
        "| model | deployer | raw p50 | deployer p50 | ratio p50 | raw p99 | deployer p99 "
        "| ratio p99 |"
    )
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    fast_paths: tuple[Literal["off", "auto"], ...] = ("off", "auto")
    for name, model in models.items():
        for fast in fast_paths:
            dep = deployer(model, signature, fast_path=fast)
            n = 1000 if "Forest" in name else 5000
            raw, ours = one_caller([model.predict, dep.predict], rows, n)
            r50, r99 = np.percentile(raw, [50, 99]) * 1e6
            d50, d99 = np.percentile(ours, [50, 99]) * 1e6
            print(
                f"| {name} | fast_path={fast!r} | {r50:.0f} | {d50:.0f} | {d50 / r50:.3f} "
                f"| {r99:.0f} | {d99:.0f} | {d99 / r99:.3f} |"
            )
            dep.close()

    print("\nOne coroutine, single rows (latency in microseconds):\n")
    print("| model | validate + compiled p50 | `apredict` p50 | validate + compiled p99 "
          "| `apredict` p99 |")  # fmt: skip
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, model in models.items():
        dep = deployer(model, signature)
        compiled = compile_fast_path(model, signature=signature)

        async def direct(row: np.ndarray, compiled: Any = compiled) -> Any:
            return compiled.predict(signature.validate(row))

        floor, ours = one_coroutine([direct, dep.apredict], rows, 3000)
        f50, f99 = np.percentile(floor, [50, 99]) * 1e6
        d50, d99 = np.percentile(ours, [50, 99]) * 1e6
        print(f"| {name} | {f50:.0f} | {d50:.0f} | {f99:.0f} | {d99:.0f} |")
        dep.close()

    print("\nWhat `dep.predict` adds over validate + the compiled predictor, one thread, paired:")
    print("median over 7 blocks of the difference of p50s (2,000 calls of each per block, in")
    print("turn on the same row, the order swapped every other row).\n")
    print("| model | deployer adds (µs) | range over blocks |")
    print("| --- | ---: | --- |")
    for name, model in models.items():
        dep = deployer(model, signature)
        compiled = compile_fast_path(model, signature=signature)

        def validate_and_predict(row: np.ndarray, compiled: Any = compiled) -> Any:
            return compiled.predict(signature.validate(row))

        adds = []
        for _ in range(7):
            a, b = paired([validate_and_predict, dep.predict], rows, 2000)
            adds.append((np.median(b) - np.median(a)) * 1e6)
        print(f"| {name} | {statistics.median(adds):.2f} | {min(adds):.2f} to {max(adds):.2f} |")
        dep.close()


def section_threads(
    models: dict[str, Any],
    signature: Signature,
    rows: list[np.ndarray],
    seconds: float,
    repeat: int,
) -> None:
    print("\n## Concurrent threads, single rows (closed loop)\n")
    print(
        "| model | threads | method | rows/s | p50 ms | p99 ms | vs naive threads "
        "| vs hand-written batcher |"
    )
    print("| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |")
    for name, model in models.items():
        for threads in (16, 64):
            hand = HandWrittenBatcher(model)
            deps = {fast: deployer(model, signature, fast_path=fast) for fast in ("off", "auto")}
            cases: dict[str, Callable[[], Result]] = {
                "naive threads": partial(closed_loop, model.predict, rows, threads, seconds),
                "hand-written batcher": partial(closed_loop, hand.predict, rows, threads, seconds),
            }
            for fast, dep in deps.items():
                cases[f"OnlineDeployer fast_path={fast!r}"] = partial(
                    closed_loop, dep.predict, rows, threads, seconds
                )
            got = rounds(cases, repeat, "naive threads")
            hand.close()
            means = {f: d.stats().mean_batch_size for f, d in deps.items()}
            for dep in deps.values():
                dep.close()
            hand_ratio = got["hand-written batcher"][1]
            for label, (res, ratio) in got.items():
                if label.startswith("OnlineDeployer"):
                    label += f" (mean batch {means[label.split(chr(39))[1]] or 0:.1f})"
                print(
                    f"| {name} | {threads} | {label} | {res['rows/s']:,.0f} | {res['p50']:.2f} "
                    f"| {res['p99']:.2f} | {ratio:.2f}x | {ratio / hand_ratio:.2f}x |"
                )


def section_async(
    models: dict[str, Any],
    signature: Signature,
    rows: list[np.ndarray],
    seconds: float,
    repeat: int,
) -> None:
    print("\n## Concurrent coroutines on one event loop, single rows (closed loop)\n")
    print(
        "| model | coroutines | method | rows/s | p50 ms | p99 ms | loop lag p99 ms "
        "| CPU µs / request | vs hand-written asyncio batcher |"
    )
    print("| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, model in models.items():
        fast = compile_fast_path(model, signature=signature)
        variants: dict[str, dict[str, Any]] = {
            "`apredict` (default)": {},
            "`apredict`, `inline_max_ms=0` (every batch on a helper thread)": {"inline_max_ms": 0},
            "`apredict`, `fast_path='off'`": {"fast_path": "off"},
        }
        for coroutines in (16, 64):
            hand = HandWrittenAsyncBatcher(signature, fast)
            cases: dict[str, Callable[[], Result]] = {
                "hand-written asyncio batcher": partial(
                    closed_loop_async, hand.predict, rows, coroutines, seconds
                )
            }
            deps = {}
            for label, kwargs in variants.items():
                dep = deps[label] = deployer(model, signature, **kwargs)
                cases[label] = partial(closed_loop_async, dep.apredict, rows, coroutines, seconds)
            got = rounds(cases, repeat, "hand-written asyncio batcher")
            for label, (res, ratio) in got.items():
                if label in deps:
                    label += f" (mean batch {deps[label].stats().mean_batch_size or 0:.1f})"
                print(
                    f"| {name} | {coroutines} | {label} | {res['rows/s']:,.0f} "
                    f"| {res['p50']:.2f} | {res['p99']:.2f} | {res['lag p99']:.2f} "
                    f"| {res['cpu us']:.1f} | {ratio:.2f}x |"
                )
            for dep in deps.values():
                dep.close()


def section_handoff(models: dict[str, Any], signature: Signature, X: np.ndarray) -> None:
    print("\n## What a batch's hand-off to a helper thread costs (the inline threshold)\n")
    print("One coroutine awaiting `apredict` on batches of 1, 16 and 64 rows for 1 s: run on the")
    print("loop (default) or handed to a helper thread (`inline_max_ms=0`); p50 latency and CPU")
    print("time per batch.\n")
    print(
        "| model | rows | on the loop p50 µs | CPU µs | handed off p50 µs | CPU µs "
        "| hand-off adds µs |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, model in models.items():
        deps = {
            "loop": deployer(model, signature),
            "hop": deployer(model, signature, inline_max_ms=0),
        }
        for size in (1, 16, 64):
            batches = [X[i : i + size] for i in range(0, 2000, size)]
            res = {}
            for label, dep in deps.items():

                async def run(
                    dep: OnlineDeployer = dep, batches: list[np.ndarray] = batches
                ) -> tuple[float, float]:
                    for b in batches[:50]:  # the cost estimate learns this size
                        await dep.apredict(b)
                    lat: list[float] = []
                    cpu0 = time.process_time()
                    end = time.perf_counter() + 1.0
                    while time.perf_counter() < end:
                        t0 = time.perf_counter()
                        await dep.apredict(batches[len(lat) % len(batches)])
                        lat.append(time.perf_counter() - t0)
                    cpu = (time.process_time() - cpu0) / len(lat)
                    return float(np.median(lat)) * 1e6, cpu * 1e6

                res[label] = asyncio.run(run())
            (l50, lcpu), (h50, hcpu) = res["loop"], res["hop"]
            print(
                f"| {name} | {size} | {l50:.0f} | {lcpu:.0f} | {h50:.0f} | {hcpu:.0f} "
                f"| {h50 - l50:.0f} |"
            )
        for dep in deps.values():
            dep.close()


def section_ceiling(
    models: dict[str, Any], signature: Signature, X: np.ndarray, seconds: float
) -> None:
    print("\n## Batched ceiling: one caller sending 64-row batches through `predict`\n")
    print("| model | rows/s |")
    print("| --- | ---: |")
    batches = [X[i : i + 64] for i in range(0, 6400, 64)]
    for name, model in models.items():
        dep = deployer(model, signature)
        n = 0
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            dep.predict(batches[n % len(batches)])
            n += 1
        print(f"| {name} | {n * 64 / (time.perf_counter() - t0):,.0f} |")
        dep.close()


# ---------------------------------------------------------------------- FastAPI


def serve(port: int) -> None:
    """The FastAPI app (child process): one endpoint per way of calling the forest."""
    import uvicorn
    from fastapi import FastAPI
    from pydantic import BaseModel

    _, signature, models = make_models()
    model = models["RandomForest(50, depth 8)"]
    dep = OnlineDeployer(model, signature=signature, name="forest")
    fast = compile_fast_path(model, signature=signature)
    app = FastAPI()

    class Row(BaseModel):
        features: list[float]

    # FastAPI reads the handlers' (string) annotations in this module's namespace.
    globals()["Row"] = Row

    @app.get("/cpu")
    async def cpu() -> dict[str, Any]:
        stats = dep.stats()
        return {"cpu": time.process_time(), "batches": stats.batches, "rows": stats.batched_rows}

    @app.post("/sklearn")
    def raw_model(row: Row) -> dict[str, Any]:  # blocking: FastAPI runs it in its threads
        return {"prediction": int(model.predict(np.asarray([row.features]))[0])}

    @app.post("/compiled")
    async def compiled(row: Row) -> dict[str, Any]:
        return {"prediction": int(fast.predict(signature.validate(row.features))[0])}

    @app.post("/deployer")
    async def deployed(row: Row) -> dict[str, Any]:
        out, version = await dep.apredict(row.features, return_version=True)
        return {"prediction": int(out[0]), "version": version}

    @app.post("/deployer-sync")
    def deployed_sync(row: Row) -> dict[str, Any]:
        out, version = dep.predict(row.features, return_version=True)
        return {"prediction": int(out[0]), "version": version}

    uvicorn.run(app, host="127.0.0.1", port=port, workers=1, log_level="warning")


def load(port: int, path: str, rows: list[list[float]], clients: int, seconds: float) -> Result:
    """``clients`` httpx async clients in a closed loop for ``seconds``; the server's CPU time
    per request from its ``/cpu`` endpoint."""
    import httpx

    async def main() -> Result:
        limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", limits=limits, timeout=30.0
        ) as client:
            lat: list[float] = []
            stop_at = time.perf_counter() + seconds

            async def caller(k: int) -> None:
                i = k
                while time.perf_counter() < stop_at:
                    t0 = time.perf_counter()
                    r = await client.post(path, json={"features": rows[i % len(rows)]})
                    r.raise_for_status()
                    lat.append(time.perf_counter() - t0)
                    i += 7

            await asyncio.gather(*(caller(k) for k in range(clients)))  # warm the connections
            lat.clear()
            stop_at = time.perf_counter() + seconds
            cpu0 = (await client.get("/cpu")).json()["cpu"]
            t0 = time.perf_counter()
            await asyncio.gather(*(caller(k) for k in range(clients)))
            elapsed = time.perf_counter() - t0
            cpu1 = (await client.get("/cpu")).json()["cpu"]
        p50, p99 = np.percentile(lat, [50, 99]) * 1e3
        return {
            "rows/s": len(lat) / elapsed,
            "p50": float(p50),
            "p99": float(p99),
            "cpu us": (cpu1 - cpu0) / len(lat) * 1e6,
        }

    return asyncio.run(main())


def section_fastapi(X: np.ndarray, seconds: float, repeat: int, clients: int) -> None:
    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, __file__, "--serve", str(port)])
    try:
        deadline = time.perf_counter() + 120
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/cpu", timeout=1.0)
                break
            except httpx.TransportError:
                if time.perf_counter() > deadline or server.poll() is not None:
                    raise RuntimeError("the FastAPI app did not start") from None
                time.sleep(0.2)
        rows = [X[i].tolist() for i in range(2000)]
        paths = {
            "handler calls validate + compiled predictor (floor)": "/compiled",
            "handler awaits `dep.apredict`": "/deployer",
            "sync handler calls `dep.predict` (thread pool)": "/deployer-sync",
            "sync handler calls scikit-learn `model.predict` (thread pool)": "/sklearn",
        }
        cases: dict[str, Callable[[], Result]] = {
            label: partial(load, port, path, rows, clients, seconds)
            for label, path in paths.items()
        }
        got = rounds(cases, repeat, next(iter(paths)))
        floor_cpu = got[next(iter(paths))][0]["cpu us"]
        print(
            f"\n## FastAPI app, RandomForest(50, depth 8), {clients} httpx clients "
            "(uvicorn, one worker)\n"
        )
        print(
            "| handler | requests/s | p50 ms | p99 ms | server CPU µs / request "
            "| minus floor | vs floor |"
        )
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
        for label, (res, ratio) in got.items():
            print(
                f"| {label} | {res['rows/s']:,.0f} | {res['p50']:.2f} | {res['p99']:.2f} "
                f"| {res['cpu us']:.0f} | {res['cpu us'] - floor_cpu:+.0f} | {ratio:.2f}x |"
            )
    finally:
        server.terminate()
        server.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter runs, one round")
    parser.add_argument("--seconds", type=float, default=None, help="seconds per case")
    parser.add_argument("--repeat", type=int, default=None, help="interleaved rounds")
    parser.add_argument("--clients", type=int, default=32, help="FastAPI clients")
    parser.add_argument(
        "--sections", default=",".join(SECTIONS), help=f"comma-separated, of {SECTIONS}"
    )
    parser.add_argument("--models", default="all", help="'all', 'forest' or 'linear'")
    parser.add_argument("--serve", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        serve(args.serve)
        return
    seconds = args.seconds or (1.0 if args.quick else 2.0)
    repeat = args.repeat or (1 if args.quick else 3)
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections {sorted(unknown)}; pick from {SECTIONS}")

    X, signature, models = make_models()
    if args.models == "forest":
        models = {k: v for k, v in models.items() if "Forest" in k}
    elif args.models == "linear":
        models = {k: v for k, v in models.items() if "Forest" not in k}
    rows = [X[i : i + 1].copy() for i in range(2000)]
    print(json.dumps({"seconds": seconds, "repeat": repeat, "sections": sections}))
    if "lone" in sections:
        section_lone(models, signature, rows)
    if "threads" in sections:
        section_threads(models, signature, rows, seconds, repeat)
    if "async" in sections:
        section_async(models, signature, rows, seconds, repeat)
    if "handoff" in sections:
        section_handoff(models, signature, X)
    if "ceiling" in sections:
        section_ceiling(models, signature, X, seconds)
    if "fastapi" in sections:
        section_fastapi(X, seconds, repeat, args.clients)


if __name__ == "__main__":
    main()
