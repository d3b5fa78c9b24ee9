"""The shared registry (PostgreSQL + an S3-API store) next to the embedded one (SQLite + folder).

Registers and loads two models on both, and measures how fast followers of an alias in other
processes serve a promotion whose fast path is attached:

* a RandomForestClassifier(n_estimators=50, max_depth=8) trained on 10,000 x 20 (~0.8 MB);
* a KNeighborsClassifier(algorithm="brute") holding 30,000 x 20 training rows (~5 MB).

Loads are timed three ways: cold on a connected registry (``cache_size=0``: metadata read,
object fetched, sha256 verified, deserialized), cold on a new registry object (the same plus
the first-use set-up: a database connection, the schema check, an S3 client), and cached.
On the servers, those rows fetch from the object store (``artifact_cache=False``); the
"host cache" rows read the host's verified copy instead (``HostArtifactCache``, warm: another
process of the host fetched it already; empty: this process is the host's first).

Needs the servers of ``scripts/services.sh`` (or any PostgreSQL and S3 endpoint), found from
``MODELDEPLOY_TEST_PG_DSN`` / ``MODELDEPLOY_TEST_S3_URL`` and the ``AWS_*`` variables, or from
``--pg`` / ``--s3``; without them it says so and exits 0. MLflow is measured only when it is
installed (on the same PostgreSQL and S3 endpoint). Run::

    source scripts/services.sh; trap services_stop EXIT; services_start
    python benchmarks/registry_remote.py [--repeats N] [--followers N] [--promotions N]
"""

from __future__ import annotations

import argparse
import copy
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.ensemble import RandomForestClassifier
from sklearn.neighbors import KNeighborsClassifier

from modeldeploy import ModelRegistry


def timed(fn: Callable[[], Any], repeats: int) -> float:
    """Median seconds of ``repeats`` calls."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def servers(pg: str | None, s3: str | None) -> tuple[str, str] | str:
    """The two URLs when both servers answer, else why not."""
    pg = pg or os.environ.get("MODELDEPLOY_TEST_PG_DSN")
    s3 = s3 or os.environ.get("MODELDEPLOY_TEST_S3_URL")
    if not pg or not s3:
        return (
            "no servers given: set MODELDEPLOY_TEST_PG_DSN and MODELDEPLOY_TEST_S3_URL "
            "(source scripts/services.sh; services_start) or pass --pg and --s3"
        )
    try:
        import obstore
        import obstore.store
        import psycopg
    except ImportError as exc:
        return f"{exc.name} is not installed (pip install 'modeldeploy[postgres,s3]')"
    try:
        psycopg.connect(pg, connect_timeout=3).close()
    except psycopg.Error as exc:
        return f"PostgreSQL is not reachable ({str(exc).strip().splitlines()[0]})"
    endpoint = os.environ.get("AWS_ENDPOINT_URL", "")
    try:
        store = obstore.store.from_url(
            s3,
            client_options={"allow_http": endpoint.startswith("http://"), "timeout": "3s"},
            retry_config={"max_retries": 0},
        )
        list(obstore.list(store, "ready-check"))
    except Exception as exc:  # obstore raises its own error classes for every failure
        return f"the S3 store is not reachable ({str(exc).strip().splitlines()[0]})"
    return pg, s3


def follower(
    pg: str, s3: str, name: str, ready: Any, served: Any, stop: Any
) -> None:  # pragma: no cover - runs in a child process
    """Follow ``name@production`` with a registry of this process's own; report each swap."""
    from modeldeploy import OnlineDeployer

    reg = ModelRegistry(pg, artifacts=s3)
    with OnlineDeployer.follow(reg, name, "production", poll_s=30.0) as dep:
        last = dep.version
        ready.put((os.getpid(), last))
        while not stop.is_set():
            now = dep.version
            if now != last:
                served.put((os.getpid(), now, time.monotonic()))
                last = now
            time.sleep(0.0005)
    reg.close()


def promote_to_followers(
    reg: ModelRegistry, pg: str, s3: str, model: Any, X: np.ndarray, args: argparse.Namespace
) -> dict[str, Any]:
    """Promotion -> every follower serving the new version, with and without attachments."""
    from modeldeploy.fastpath import attach_fast_path

    name = "followed"
    attach_s = []
    # Each version a distinct artifact (another sha256), the same trees: as costly to load
    # and compile as a retrained forest.
    for i in range(args.promotions + args.unattached + 1):
        variant = copy.deepcopy(model)
        variant.random_state = 1000 + i
        v = reg.register(name, variant, sample=X)
        if i <= args.promotions:
            t0 = time.perf_counter()
            attach_fast_path(v)
            attach_s.append(time.perf_counter() - t0)
    reg.promote(name, 1)
    ctx = multiprocessing.get_context("spawn")
    ready, served, stop = ctx.Queue(), ctx.Queue(), ctx.Event()
    procs = [
        ctx.Process(target=follower, args=(pg, s3, name, ready, served, stop), daemon=True)
        for _ in range(args.followers)
    ]
    for p in procs:
        p.start()
    for _ in procs:
        ready.get(timeout=120)

    def promote(version: int) -> float:
        t0 = time.monotonic()
        reg.promote(name, version)
        seen: dict[int, float] = {}
        while len(seen) < len(procs):
            pid, ref, at = served.get(timeout=60)
            if ref == f"{name}:{version}":
                seen[pid] = at
        return max(seen.values()) - t0

    attached = [promote(v) for v in range(2, args.promotions + 2)]
    unattached = [
        promote(v) for v in range(args.promotions + 2, args.promotions + args.unattached + 2)
    ]
    stop.set()
    for p in procs:
        p.join(timeout=10)
    return {"attach": attach_s, "attached": attached, "unattached": unattached}


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def measure(
    label: str,
    open_registry: Callable[..., ModelRegistry],
    models: dict[str, tuple[Any, np.ndarray]],
    repeats: int,
    results: dict[str, float],
    host_cache: Path | None = None,
) -> None:
    reg = open_registry()
    counter = iter(range(10**9))
    for kind, (model, X) in models.items():
        reg.register(f"warmup-{kind}", model, sample=X)
        results[f"{label} register {kind}"] = timed(
            lambda: reg.register(f"{kind}-{next(counter)}", model, sample=X),  # noqa: B023
            repeats,
        )
        reg.register(kind, model, sample=X)
        reg.promote(kind, 1)
        uncached = open_registry(cache_size=0)
        uncached.load(kind, alias="production")
        results[f"{label} load cold {kind}"] = timed(
            lambda: uncached.load(kind, alias="production"),  # noqa: B023
            repeats,
        )
        uncached.close()
        fresh_times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fresh = open_registry(cache_size=0)
            fresh.load(kind, alias="production")
            fresh_times.append(time.perf_counter() - t0)
            fresh.close()
        results[f"{label} load cold, new registry object {kind}"] = statistics.median(fresh_times)
        if host_cache is not None:
            host_cache_figures(label, kind, open_registry, host_cache, repeats, results)
        reg.load(kind, alias="production")
        results[f"{label} load cached {kind}"] = timed(
            lambda: reg.load(kind, alias="production"),  # noqa: B023
            2000,
        )
    reg.close()


def host_cache_figures(
    label: str,
    kind: str,
    open_registry: Callable[..., ModelRegistry],
    folder: Path,
    repeats: int,
    results: dict[str, float],
) -> None:
    """Cold loads through the host artifact cache: warm (connected, new object) and empty."""
    warm = open_registry(cache_size=0, artifact_cache=folder)
    warm.load(kind, alias="production")  # the host's first process filled it
    results[f"{label} load cold, host cache warm {kind}"] = timed(
        lambda: warm.load(kind, alias="production"), repeats
    )
    warm.close()
    fresh_times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fresh = open_registry(cache_size=0, artifact_cache=folder)
        fresh.load(kind, alias="production")
        fresh_times.append(time.perf_counter() - t0)
        fresh.close()
    results[f"{label} load cold, new registry object, host cache warm {kind}"] = statistics.median(
        fresh_times
    )
    empty_times = []
    for i in range(repeats):
        empty = open_registry(cache_size=0, artifact_cache=folder / f"empty-{kind}-{i}")
        empty.models()  # connected: time the fetch and fill only
        t0 = time.perf_counter()
        empty.load(kind, alias="production")
        empty_times.append(time.perf_counter() - t0)
        empty.close()
    results[f"{label} load cold, host cache empty (fills it) {kind}"] = statistics.median(
        empty_times
    )


def mlflow_figures(
    pg: str, s3: str, model: Any, repeats: int, results: dict[str, float]
) -> None:  # pragma: no cover - only when mlflow is installed
    import mlflow
    import mlflow.sklearn

    schema = f"mlflow_{uuid.uuid4().hex[:8]}"
    uri = pg.replace("postgresql://", "postgresql+psycopg://", 1)
    uri += f"{'&' if '?' in uri else '?'}options=-csearch_path%3D{schema}"
    import psycopg

    with psycopg.connect(pg, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    mlflow.create_experiment("bench", artifact_location=f"{s3}/mlflow-{schema}")
    mlflow.set_experiment("bench")

    def register() -> None:
        with mlflow.start_run():
            info = mlflow.sklearn.log_model(
                model,
                name="model",
                pip_requirements=["scikit-learn"],
                serialization_format="cloudpickle",
            )
            mlflow.register_model(info.model_uri, "forest")

    register()
    results["MLflow register forest"] = timed(register, min(repeats, 5))
    results["MLflow load forest"] = timed(
        lambda: mlflow.sklearn.load_model("models:/forest/1"), min(repeats, 5)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--followers", type=int, default=4, help="follower processes")
    parser.add_argument("--promotions", type=int, default=30, help="with attached fast paths")
    parser.add_argument(
        "--unattached", type=int, default=3, help="promotions without attachments, to compare"
    )
    parser.add_argument("--pg", help="PostgreSQL URL (default: $MODELDEPLOY_TEST_PG_DSN)")
    parser.add_argument("--s3", help="s3://bucket[/prefix] (default: $MODELDEPLOY_TEST_S3_URL)")
    args = parser.parse_args()
    found = servers(args.pg, args.s3)
    if isinstance(found, str):
        print(f"registry_remote: skipped: {found}")
        return
    pg_base, s3_base = found

    rng = np.random.default_rng(0)
    X = rng.normal(size=(10_000, 20))
    y = (X[:, 0] + X[:, 1] * X[:, 2] > 0).astype(int)
    forest = RandomForestClassifier(n_estimators=50, max_depth=8, random_state=0).fit(X, y)
    X_big = rng.normal(size=(30_000, 20))
    knn = KNeighborsClassifier(algorithm="brute").fit(X_big, (X_big[:, 0] > 0).astype(int))
    models = {"forest": (forest, X), "knn-5MB": (knn, X_big)}

    tmp = Path(tempfile.mkdtemp())
    run_id = uuid.uuid4().hex[:12]
    schema = f"bench_{run_id}"
    pg = f"{pg_base}{'&' if '?' in pg_base else '?'}schema={schema}"
    s3 = f"{s3_base.rstrip('/')}/bench-{run_id}"

    def local(**kwargs: Any) -> ModelRegistry:
        return ModelRegistry(tmp / "registry", **kwargs)

    def remote(**kwargs: Any) -> ModelRegistry:
        kwargs.setdefault("artifact_cache", False)  # the object store itself, unless asked
        return ModelRegistry(pg, artifacts=s3, **kwargs)

    # Followers (other processes) use the default host cache: here, not in ~/.cache.
    os.environ["MODELDEPLOY_ARTIFACT_CACHE"] = str(tmp / "host-cache")

    results: dict[str, float] = {}
    followers: dict[str, Any] = {}
    try:
        measure("local", local, models, args.repeats, results)
        measure("remote", remote, models, args.repeats, results, tmp / "bench-host-cache")
        reg = remote()
        followers = promote_to_followers(reg, pg, s3, forest, X, args)
        reg.close()
        try:
            import mlflow  # noqa: F401
        except ImportError:
            mlflow_installed = False
        else:
            mlflow_installed = True
            mlflow_figures(pg_base, s3, forest, args.repeats, results)
    finally:
        cleanup(pg_base, schema, s3)

    print(f"{'case':66s} {'median':>12s}")
    for case, seconds in results.items():
        shown = f"{seconds * 1e6:9.1f} µs" if seconds < 1e-3 else f"{seconds * 1e3:9.2f} ms"
        print(f"{case:66s} {shown:>12s}")
    print()
    attach = followers["attach"]
    attached, unattached = followers["attached"], followers["unattached"]
    shown = f"{statistics.median(attach) * 1e3:9.1f} ms"
    print(f"{'attach_fast_path forest (compile + store)':66s} {shown:>12s}")
    print(
        f"promote -> all {args.followers} followers serving, fast path attached "
        f"({len(attached)} promotions): p50 {percentile(attached, 50) * 1e3:.1f} ms, "
        f"p99 {percentile(attached, 99) * 1e3:.1f} ms, max {max(attached) * 1e3:.1f} ms"
    )
    if unattached:
        print(
            f"promote -> all {args.followers} followers serving, no attachment "
            f"({len(unattached)} promotions): p50 {percentile(unattached, 50) * 1e3:.1f} ms"
        )
    print()
    print("ratios (target):")
    for kind in models:
        reg_ratio = results[f"remote register {kind}"] / results[f"local register {kind}"]
        load_ratio = results[f"remote load cold {kind}"] / results[f"local load cold {kind}"]
        fresh_ratio = (
            results[f"remote load cold, new registry object {kind}"]
            / results[f"local load cold, new registry object {kind}"]
        )
        print(f"  {kind}: register remote / local                  = {reg_ratio:.2f}x  (<= 3x)")
        print(f"  {kind}: cold load remote / local                 = {load_ratio:.2f}x  (<= 2x)")
        print(f"  {kind}: cold load, new registry object, r / l    = {fresh_ratio:.2f}x")
        warm_ratio = (
            results[f"remote load cold, host cache warm {kind}"]
            / results[f"local load cold {kind}"]
        )
        fresh_warm_ratio = (
            results[f"remote load cold, new registry object, host cache warm {kind}"]
            / results[f"local load cold, new registry object {kind}"]
        )
        print(f"  {kind}: cold load, host cache warm, r / l        = {warm_ratio:.2f}x  (<= 2x)")
        print(f"  {kind}: new registry object, host cache warm, r / l = {fresh_warm_ratio:.2f}x")
    print(
        f"  promote -> followers p99 (attached)               = "
        f"{percentile(attached, 99) * 1e3:.1f} ms  (<= 200 ms)"
    )
    if mlflow_installed:
        print(
            f"  MLflow register / ours (remote)                   = "
            f"{results['MLflow register forest'] / results['remote register forest']:.1f}x"
            "  (>= 3x)"
        )
    else:
        print("  MLflow: not installed, not measured")


def cleanup(pg_base: str, schema: str, s3: str) -> None:
    """Drop the benchmark's schema and objects (best effort)."""
    try:
        import obstore
        import obstore.store
        import psycopg

        with psycopg.connect(pg_base, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        endpoint = os.environ.get("AWS_ENDPOINT_URL", "")
        store = obstore.store.from_url(
            s3, client_options={"allow_http": endpoint.startswith("http://")}
        )
        paths = [meta["path"] for batch in obstore.list(store) for meta in batch]
        if paths:
            obstore.delete(store, paths)
    except Exception as exc:  # a leftover schema or prefix is harmless on a test server
        print(f"registry_remote: cleanup incomplete ({exc})", file=sys.stderr)


if __name__ == "__main__":
    main()
