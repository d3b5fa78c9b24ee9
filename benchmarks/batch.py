"""Batch scoring of a large .npy file: BatchDeployer against raw scikit-learn.

Every case runs in a fresh Python process, so its peak RSS (``ru_maxrss``, plus the RSS of any
worker processes it starts, sampled) is its own. The floor is ``model.predict`` on the whole
loaded array, single-threaded, in the same run.

    python benchmarks/batch.py                    # 2,000,000 x 20 float32 rows (a few minutes)
    python benchmarks/batch.py --rows 5000000     # the size of the issue's figures
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

CASES = ("baseline", "raw", "batch_default", "batch_npy_output", "batch_processes", "batch_dask")
DASK_CASES = ("batch_dask", "dask_ml_parallel_postfit")


def _setup(data: Path, model_path: Path, rows: int, features: int) -> None:
    """Write the data and train the model (in a child, so the parent stays small)."""
    _make_data(data, rows, features)
    _make_model(data, model_path)


def _make_data(path: Path, rows: int, features: int) -> None:
    import numpy as np

    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(rows, features))
    rng = np.random.default_rng(0)
    step = 250_000
    for start in range(0, rows, step):
        n = min(step, rows - start)
        out[start : start + n] = rng.normal(size=(n, features)).astype(np.float32)
    out.flush()
    del out


def _make_model(data: Path, path: Path) -> None:
    import joblib
    import numpy as np
    from sklearn.ensemble import RandomForestClassifier

    X = np.load(data, mmap_mode="r")[:100_000]
    X = np.array(X)
    y = ((X[:, 0] + X[:, 1] * X[:, 2] - X[:, 3]) > 0).astype(np.int64)
    model = RandomForestClassifier(n_estimators=50, max_depth=8, random_state=0).fit(X, y)
    joblib.dump(model, path)


class _TreeRss:
    """Peak RSS of this process plus its children, sampled (worker processes are children)."""

    def __init__(self) -> None:
        import psutil  # type: ignore[import-untyped]

        self.proc = psutil.Process()
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            total = self.proc.memory_info().rss
            for child in self.proc.children(recursive=True):
                with contextlib.suppress(Exception):
                    total += child.memory_info().rss
            self.peak = max(self.peak, total)
            self._stop.wait(0.02)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def _cpu_seconds() -> float:
    """User + system CPU time of this process and its finished children."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _run_case(case: str, data: Path, model_path: Path, tmp: Path, chunk_size: int | None) -> None:
    """Run one case in this (fresh) process and print its figures as JSON."""
    import joblib
    import numpy as np

    model = joblib.load(model_path)
    client: Any = None
    cluster: Any = None
    if case in DASK_CASES:
        # The same 2-worker LocalCluster for both Dask cases, started before the clock.
        from distributed import Client, LocalCluster

        cluster = LocalCluster(  # type: ignore[no-untyped-call]
            n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
        )
        client = Client(cluster)  # type: ignore[no-untyped-call]
    sampler = _TreeRss()
    cpu0 = _cpu_seconds()
    kwargs: dict[str, Any] = {} if chunk_size is None else {"chunk_size": chunk_size}
    t0 = time.perf_counter()
    if case == "baseline":
        # The interpreter with numpy, scikit-learn and the model loaded: every case pays it.
        y = np.zeros(0, dtype=np.int64)
    elif case == "raw":
        X = np.load(data)
        y = model.predict(X)
    else:
        from modeldeploy.deployers.batch import BatchDeployer

        if case == "batch_default":
            with BatchDeployer(model, **kwargs) as job:
                y = job.run(data)
        elif case == "batch_npy_output":
            out = tmp / "scores.npy"
            with BatchDeployer(model, **kwargs) as job:
                job.run(data, output=out)
            y = np.load(out, mmap_mode="r")
        elif case == "batch_processes":
            from joblib.externals.loky import get_reusable_executor

            with BatchDeployer(model, backend="processes", **kwargs) as job:
                y = job.run(data)
            get_reusable_executor().shutdown(wait=True)  # reaped: their CPU time counts
        elif case == "batch_dask":
            with BatchDeployer(model, backend="dask", client=client, **kwargs) as job:
                y = job.run(data)
        elif case == "dask_ml_parallel_postfit":
            da: Any = importlib.import_module("dask.array")
            wrappers: Any = importlib.import_module("dask_ml.wrappers")

            X = da.from_array(np.load(data, mmap_mode="r"), chunks=(chunk_size or 50_000, -1))
            y = wrappers.ParallelPostFit(model).predict(X).compute()
        else:
            raise SystemExit(f"unknown case {case}")
    seconds = time.perf_counter() - t0
    cpu = _cpu_seconds() - cpu0
    if client is not None:
        client.close()
        cluster.close()
    tree = sampler.stop()
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    checksum = int(np.asarray(y).astype(np.int64).sum())
    print(
        json.dumps(
            {
                "case": case,
                "rows": int(np.asarray(y).shape[0]),
                "seconds": seconds,
                "peak_rss": max(own, tree, own + kids if case == "batch_processes" else own),
                "checksum": checksum,
                "cpu_seconds": cpu,
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--chunk-size", type=int, default=None)
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--repeat", type=int, default=3, help="best of N rounds per case")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--tmp", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case == "setup":
        _setup(Path(args.data), Path(args.model), args.rows, args.features)
        return
    if args.case:
        _run_case(args.case, Path(args.data), Path(args.model), Path(args.tmp), args.chunk_size)
        return

    with tempfile.TemporaryDirectory(prefix="modeldeploy-bench-") as tmpdir:
        tmp = Path(tmpdir)
        data, model_path = tmp / "X.npy", tmp / "model.joblib"
        print(f"Writing {args.rows:,} x {args.features} float32 rows to {data} ...", flush=True)
        subprocess.run(
            [
                sys.executable,
                __file__,
                "--case",
                "setup",
                "--data",
                str(data),
                "--model",
                str(model_path),
                "--tmp",
                str(tmp),
                "--rows",
                str(args.rows),
                "--features",
                str(args.features),
            ],
            check=True,
        )
        print(f"cores available: {len(os.sched_getaffinity(0))}", flush=True)
        if importlib.util.find_spec("dask_ml") is None:
            print("note: dask-ml is not installed; the ParallelPostFit comparison is skipped.")
        elif "batch_dask" in args.cases:
            args.cases += ",dask_ml_parallel_postfit"
        cases = args.cases.split(",")
        runs: dict[str, list[dict[str, Any]]] = {case: [] for case in cases}
        # Rounds interleave the cases, and each keeps its best time: on a shared machine a
        # burst of someone else's work then hits one round of every case, not one case.
        for round_ in range(args.repeat):
            for case in cases:
                cmd = [
                    sys.executable,
                    __file__,
                    "--case",
                    case,
                    "--data",
                    str(data),
                    "--model",
                    str(model_path),
                    "--tmp",
                    str(tmp),
                ]
                if args.chunk_size:
                    cmd += ["--chunk-size", str(args.chunk_size)]
                proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
                if proc.returncode:
                    print(f"{case}: failed\n{proc.stderr[-2000:]}")
                    continue
                r = json.loads(proc.stdout.strip().splitlines()[-1])
                runs[case].append(r)
                print(
                    f"round {round_ + 1}: {case:18s} {r['rows'] / r['seconds']:>12,.0f} rows/s "
                    f"{r['peak_rss'] / 2**20:>8.0f} MB peak",
                    flush=True,
                )
        results = {}
        for case, done in runs.items():
            if done:
                results[case] = dict(min(done, key=lambda run: run["seconds"]))
                results[case]["peak_rss"] = max(run["peak_rss"] for run in done)
        raw = results.get("raw")
        if raw is None:
            return
        base = results.pop("baseline", None)
        sums = {r["checksum"] for r in results.values()}
        print(f"\nsame predictions in every case: {len(sums) == 1}")
        print(
            f"\n{args.rows:,} x {args.features} float32 rows, RandomForestClassifier(50, depth 8),"
            f" best of {args.repeat}; load average now {os.getloadavg()[0]:.1f}"
        )
        if base is not None:
            print(
                f"interpreter + numpy + scikit-learn + model, before any data: "
                f"{base['peak_rss'] / 2**20:,.0f} MB (the 'above' column subtracts it)"
            )
        print(
            "\n| case | rows/s | x raw | cores used | peak RSS (MB) | x raw | above baseline (MB) |"
        )
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
        raw_rate = raw["rows"] / raw["seconds"]
        for case, r in results.items():
            rate = r["rows"] / r["seconds"]
            above = "" if base is None else f"{(r['peak_rss'] - base['peak_rss']) / 2**20:,.0f}"
            print(
                f"| {case} | {rate:,.0f} | {rate / raw_rate:.2f} | "
                f"{r['cpu_seconds'] / r['seconds']:.2f} | {r['peak_rss'] / 2**20:,.0f} | "
                f"{r['peak_rss'] / raw['peak_rss']:.2f} | {above} |"
            )


if __name__ == "__main__":
    main()
