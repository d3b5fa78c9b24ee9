"""Benchmark prediction capture and the offline label join against pandas and pyarrow.

Run: python benchmarks/capture.py [--rows 10000000]  (a few minutes on 2 cores; about 4 GB)

1. Capture: ``PredictionCapture.record`` of the predictions in requests of 100,000 rows and
   ``LabelCapture.log_labels`` of the labels, written as Parquet segments of 1,000,000 rows
   (rows/s of the writer, including ``close()``).
2. Reading the segments back (``read()``: Parquet to one ``pyarrow.Table`` per side), reported
   on its own.
3. The join, on the tables in memory: ``LabelJoin(ttl=...).join`` (one label per id, one
   prediction per id, TTL), next to ``pandas.merge`` of the same ids (an inner join, nothing
   more; the DataFrames are made beforehand) and ``pyarrow.Table.join`` (Acero's hash join).
   90% of the labels have a prediction; ids are int64 in a random order on both sides.
4. What capture adds to one ``OnlineDeployer.predict`` of one row (20,000 requests from one
   thread, with and without ``capture=``; the writer runs in the background).
5. Peak memory of each join: each runs in a forked child, whose peak RSS (``ru_maxrss``) less
   its RSS when it started is the memory the join added.
"""

from __future__ import annotations

import argparse
import gc
import multiprocessing as mp
import os
import resource
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np

from modeldeploy.monitoring.capture import LabelCapture, PredictionCapture
from modeldeploy.monitoring.join import LabelJoin
from modeldeploy.testing import FakeClock

REQUEST_ROWS = 100_000
SEGMENT_ROWS = 1_000_000
T0 = datetime(2026, 3, 1, tzinfo=timezone.utc)


def best_of(fn: Callable[[], Any], repeat: int = 3) -> tuple[float, Any]:
    best, out = float("inf"), None
    for _ in range(repeat):
        out = None
        gc.collect()
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def _rss() -> int:
    """This process's resident memory now, in bytes (Linux)."""
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _child(fn: Callable[[], Any], conn: Any) -> None:
    start = _rss()
    fn()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    conn.send(max(0, peak - start))
    conn.close()


def peak_extra_mb(fn: Callable[[], Any]) -> float:
    """Memory ``fn`` adds at its peak, measured in a forked child (MB)."""
    ctx = mp.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(fn, child))
    proc.start()
    extra = parent.recv()
    proc.join()
    return float(extra) / 2**20


def make_data(n: int, folder: Path) -> tuple[float, float]:
    """Capture ``n`` predictions and ``n`` labels into ``folder``; return both write rates."""
    rng = np.random.default_rng(0)
    clock = FakeClock(T0)
    pred_ids = rng.permutation(n).astype(np.int64)
    known = rng.choice(pred_ids, size=n * 9 // 10, replace=False)
    unknown = np.arange(n, n + n - known.size, dtype=np.int64)
    label_ids = rng.permutation(np.concatenate([known, unknown]))
    cap = PredictionCapture(folder, segment_rows=SEGMENT_ROWS, feature_rate=0.0, clock=clock,
                            max_queue=1_000)  # fmt: skip
    t = time.perf_counter()
    for lo in range(0, n, REQUEST_ROWS):
        ids = pred_ids[lo : lo + REQUEST_ROWS]
        cap.record(None, (ids % 3 == 0).astype(np.int64), ids=ids,
                   version="churn:3" if lo % (4 * REQUEST_ROWS) else "churn:4")  # fmt: skip
        clock.advance(1.0)
        if (lo // REQUEST_ROWS) % 50 == 49:
            cap.flush()  # keeps the queued requests' memory bounded
    assert cap.close(timeout=600)
    pred_rate = n / (time.perf_counter() - t)
    assert cap.stats()["written"] == n, cap.stats()
    labels = LabelCapture(folder, segment_rows=SEGMENT_ROWS, clock=clock, max_queue=1_000)
    t = time.perf_counter()
    for lo in range(0, n, REQUEST_ROWS):
        ids = label_ids[lo : lo + REQUEST_ROWS]
        labels.log_labels(ids, ((ids + ids // 7) % 3 == 0).astype(np.int64))
        clock.advance(1.0)
        if (lo // REQUEST_ROWS) % 50 == 49:
            labels.flush()
    assert labels.close(timeout=600)
    label_rate = n / (time.perf_counter() - t)
    return pred_rate, label_rate


def online_overhead(folder: Path, n: int = 20_000) -> None:
    from sklearn.linear_model import LogisticRegression

    from modeldeploy import OnlineDeployer

    rng = np.random.default_rng(0)
    X = rng.normal(size=(2_000, 8))
    model = LogisticRegression().fit(X, X[:, 0] > 0)
    rows = [X[i % 2_000] for i in range(n)]
    per_request = {}
    for name in ("without capture", "with capture"):
        cap = PredictionCapture(folder, feature_rate=0.1) if name == "with capture" else None
        with OnlineDeployer(model, capture=cap, max_wait_ms=0) as dep:
            for row in rows[:1_000]:
                dep.predict(row)
            best = float("inf")
            for _ in range(3):
                t = time.perf_counter()
                for row in rows:
                    dep.predict(row)
                best = min(best, time.perf_counter() - t)
        per_request[name] = best / n * 1e6
        if cap is not None:
            cap.close()
            assert cap.stats()["dropped"] == 0, cap.stats()
        print(f"OnlineDeployer.predict, one row, {name}: {per_request[name]:.1f} us/request")
    extra = per_request["with capture"] - per_request["without capture"]
    print(f"capture adds {extra:.1f} us per request")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    args = parser.parse_args()
    n = args.rows
    with tempfile.TemporaryDirectory() as tmp:
        online_overhead(Path(tmp) / "online")
        folder = Path(tmp) / "join"
        pred_rate, label_rate = make_data(n, folder)
        print(f"capture: predictions {pred_rate / 1e6:.2f}M rows/s, labels "
              f"{label_rate / 1e6:.2f}M rows/s (written as Parquet segments)")  # fmt: skip
        captured = PredictionCapture(folder)
        logged = LabelCapture(folder)
        t_pred, preds = best_of(captured.read, repeat=1)
        t_lab, labels = best_of(logged.read, repeat=1)
        print(f"read Parquet: predictions {t_pred:.2f} s, labels {t_lab:.2f} s "
              f"({len(captured.segments())} + {len(logged.segments())} segments)")  # fmt: skip
        size = sum(f.stat().st_size for f in folder.rglob("*.parquet")) / 2**20
        print(f"on disk: {size:.0f} MB")

    for kind in ("int64, dense", "int64, sparse", "text"):
        print(f"\n-- ids: {kind} --")
        p, q = with_ids(preds, kind), with_ids(labels, kind)
        join_cases(p, q)
        del p, q
        gc.collect()


def with_ids(table: Any, kind: str) -> Any:
    """``table`` with its ids as captured (dense), spread over 64 bits, or as text."""
    import pyarrow as pa
    import pyarrow.compute as pc

    ids = table.column("id")
    if kind == "int64, sparse":  # a bijection onto large, scattered ids
        ids = pc.add(pc.multiply(ids, pa.scalar(1_000_003, pa.int64())), 2**40)
    elif kind == "text":
        ids = pc.binary_join_element_wise("req-", pc.cast(ids, pa.string()), "")
    return table.set_column(table.column_names.index("id"), "id", ids)


def join_cases(preds: Any, labels: Any) -> None:
    joiner = LabelJoin(ttl=timedelta(days=1), engine="memory")
    left = preds.select(["id", "time", "version", "prediction"])
    right = labels.select(["id", "label"])
    pd_preds, pd_labels = left.to_pandas(), right.to_pandas()
    cases: dict[str, Callable[[], Any]] = {
        "LabelJoin.join (rules + TTL)": lambda: joiner.join(preds, labels),
        "pandas.merge (inner, ids only)": lambda: pd_preds.merge(pd_labels, on="id"),
        "pyarrow Table.join (inner)": lambda: left.join(right, "id", join_type="inner"),
    }
    times: dict[str, float] = {}
    for name, fn in cases.items():
        times[name], out = best_of(fn)
        rows = out.counts["matched"] if hasattr(out, "counts") else len(out)
        print(f"{name:32s} {times[name]:6.2f} s  {rows:,} pairs  "
              f"peak memory added {peak_extra_mb(fn):6.0f} MB")  # fmt: skip
        del out
    ours = times["LabelJoin.join (rules + TTL)"]
    pandas_ratio = times["pandas.merge (inner, ids only)"] / ours
    arrow_ratio = times["pyarrow Table.join (inner)"] / ours
    print(f"pandas.merge / LabelJoin = {pandas_ratio:.2f}x, "
          f"pyarrow join / LabelJoin = {arrow_ratio:.2f}x")  # fmt: skip
    pandas_mb = pd_preds.memory_usage(deep=True).sum() + pd_labels.memory_usage(deep=True).sum()
    print(f"(inputs: predictions {preds.nbytes / 2**20:.0f} MB and labels "
          f"{labels.nbytes / 2**20:.0f} MB as Arrow, {pandas_mb / 2**20:.0f} MB as pandas; "
          f"{os.cpu_count()} cores)")  # fmt: skip


if __name__ == "__main__":
    main()
