"""Benchmark the Monitor against the floor: scipy / numpy for drift, sklearn.metrics for metrics.

Run: python benchmarks/monitor.py  (about a minute on 2 cores)

1. Drift check of a 100,000 x 20 window against its reference, next to scipy.stats.ks_2samp per
   column and a numpy PSI with a pre-fitted reference. The monitor bins rows as they are logged
   (``log_predictions``) and a check (``drift()``) only sums bins, so both parts are shown.
2. Logging 1,000,000 labelled predictions in batches of 1,000 and reading accuracy, precision,
   recall and F1, next to sklearn.metrics on the same labels; then one-at-a-time logging.
3. A canary: two versions' traffic into one monitor, labels by id later, each version's metrics
   read with ``metrics(version=...)``, next to sklearn.metrics on each version's rows.
4. The delayed-label path: 1,000,000 binary predictions logged with ids in batches of 1,000,
   their labels by id later (in batches of 10,000, and of 1,000), then the metrics read, next
   to the four sklearn.metrics calls on the same arrays; int64 ids and string ids. Timed in
   CPU seconds of this process (``time.process_time``), best of 3, as the machine is shared.
5. Merging: Monitor.combine of 4 replicas' monitors, and the fleet view read from 4 published
   snapshots.
"""

from __future__ import annotations

import functools
import gc
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import numpy as np
from scipy import stats
from sklearn import metrics as skm

from modeldeploy.monitoring.monitor import Monitor
from modeldeploy.registry.signature import Signature

N_ROWS, N_FEATURES = 100_000, 20
N_LABELLED, BATCH = 1_000_000, 1_000
N_ONE_AT_A_TIME = 300_000


def best_of(fn: Callable[[], Any], repeat: int = 5) -> tuple[float, Any]:
    """Best wall time of ``repeat`` runs, and the last result."""
    best, out = float("inf"), None
    for _ in range(repeat):
        gc.collect()
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def peak_mb(fn: Callable[[], Any]) -> float:
    """Peak memory traced while ``fn`` runs, in MB (numpy allocations included)."""
    gc.collect()
    tracemalloc.start()
    fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 2**20


def drift_benchmark(rows: list[tuple[str, float, str]]) -> None:
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(N_ROWS, N_FEATURES))
    cur = rng.normal(size=(N_ROWS, N_FEATURES))
    cur[:, :3] += 0.05  # three features drift a little
    y_pred = np.zeros(N_ROWS, dtype=np.int64)

    def scipy_ks() -> list[float]:
        return [stats.ks_2samp(ref[:, j], cur[:, j]).pvalue for j in range(N_FEATURES)]

    interior = [np.quantile(ref[:, j], np.linspace(0, 1, 11))[1:-1] for j in range(N_FEATURES)]
    ref_p = [
        np.maximum(np.bincount(np.searchsorted(e, ref[:, j], "right"), minlength=10) / N_ROWS, 1e-4)
        for j, e in enumerate(interior)
    ]

    def numpy_psi() -> list[float]:
        out = []
        for j, e in enumerate(interior):
            c = np.bincount(np.searchsorted(e, cur[:, j], "right"), minlength=10) / N_ROWS
            c = np.maximum(c, 1e-4)
            out.append(float(np.sum((c - ref_p[j]) * np.log(c / ref_p[j]))))
        return out

    t_fit, mon = best_of(lambda: Monitor(reference=ref, window=N_ROWS, thresholds={}), 1)
    sig = Signature.infer(ref)

    def ingest(m: Monitor) -> None:
        m.log_predictions(cur, y_pred)

    def ours_full(signature: bool = False) -> Any:
        m = Monitor(signature=sig, window=N_ROWS, thresholds={}) if signature else mon
        ingest(m)
        return m.drift()

    t_ks, ks = best_of(scipy_ks)
    t_psi, psi_np = best_of(numpy_psi)
    t_ingest, _ = best_of(lambda: ingest(mon))
    t_check, result = best_of(mon.drift)
    t_total = t_ingest + t_check
    psi_ours = [result[f"x{j}"].psi for j in range(N_FEATURES)]
    assert np.allclose(psi_ours, psi_np, rtol=1e-9), "PSI differs from the numpy floor"
    t_sig, _ = best_of(lambda: ours_full(signature=True))
    mem = peak_mb(lambda: ours_full())
    ks_drifted = sum(p < 0.01 for p in ks)
    ours_drifted = sum(result[f"x{j}"].p_value < 0.01 for j in range(N_FEATURES))
    rows += [
        ("scipy.stats.ks_2samp, 20 columns (floor)", t_ks, f"{ks_drifted} drifted at p<0.01"),
        ("numpy PSI, pre-fitted reference (floor)", t_psi, "10 decile bins"),
        ("Monitor: fit sketch from reference= (once)", t_fit, "200 quantile bins per feature"),
        ("Monitor: log_predictions (bins the window)", t_ingest, ""),
        ("Monitor: drift() (PSI + KS, 20 features)", t_check, f"{ours_drifted} drifted at p<0.01"),
        (
            "Monitor: log + drift() total",
            t_total,
            f"{t_total / t_psi:.2f}x numpy PSI, {t_ks / t_total:.1f}x faster than scipy KS",
        ),
        ("Monitor from Signature (20 bins): log + drift()", t_sig, ""),
        ("Monitor: peak memory traced during log + drift()", mem, "MB"),
    ]


def metrics_benchmark(rows: list[tuple[str, float, str]]) -> None:
    rng = np.random.default_rng(1)
    y_true = rng.integers(0, 2, N_LABELLED)
    y_pred = np.where(rng.random(N_LABELLED) < 0.1, 1 - y_true, y_true)

    def sklearn_four() -> tuple[float, ...]:
        return (
            skm.accuracy_score(y_true, y_pred),
            skm.precision_score(y_true, y_pred),
            skm.recall_score(y_true, y_pred),
            skm.f1_score(y_true, y_pred),
        )

    mon = Monitor(window=N_LABELLED, thresholds={})

    def log_all() -> None:
        for a in range(0, N_LABELLED, BATCH):
            mon.log_predictions(None, y_pred[a : a + BATCH], y_true=y_true[a : a + BATCH])

    t_sk, expected = best_of(sklearn_four)
    t_log, _ = best_of(log_all, 3)
    t_read, got = best_of(mon.metrics, 20)
    assert np.allclose([got[k] for k in ("accuracy", "precision", "recall", "f1")], expected)
    rows += [
        ("sklearn.metrics: 4 calls on 1,000,000 labels (floor)", t_sk, ""),
        (
            "Monitor.metrics(): all metrics of the window",
            t_read,
            f"{t_sk / t_read:.0f}x faster than sklearn",
        ),
        (
            "Monitor: log 1,000,000 labelled rows in batches of 1,000",
            t_log,
            f"{N_LABELLED / t_log / 1e6:.2f} M rows/s; log + read {t_sk / (t_log + t_read):.2f}x "
            "sklearn",
        ),
    ]
    ints_pred, ints_true = y_pred[:N_ONE_AT_A_TIME].tolist(), y_true[:N_ONE_AT_A_TIME].tolist()

    def one_at_a_time(preds: Any, truth: Any) -> None:
        m = Monitor(window=100_000, thresholds={})
        log = m.log_predictions
        for p, t in zip(preds, truth, strict=True):
            log(None, p, y_true=t)
        m.flush()

    X_rows = np.random.default_rng(2).normal(size=(N_ONE_AT_A_TIME // 3, N_FEATURES))
    with_x = Monitor(reference=X_rows[:10_000], window=100_000, thresholds={})

    def one_at_a_time_with_features() -> None:
        log = with_x.log_predictions
        for i in range(X_rows.shape[0]):
            log(X_rows[i], ints_pred[i], y_true=ints_true[i])
        with_x.flush()

    t_one, _ = best_of(lambda: one_at_a_time(ints_pred, ints_true), 3)
    t_x, _ = best_of(one_at_a_time_with_features, 1)
    t_np, _ = best_of(lambda: one_at_a_time(y_pred[:N_ONE_AT_A_TIME], y_true[:N_ONE_AT_A_TIME]), 3)
    rows += [
        (
            "Monitor: one-at-a-time log_predictions (Python ints)",
            t_one,
            f"{N_ONE_AT_A_TIME / t_one:,.0f} rows/s",
        ),
        (
            "Monitor: one-at-a-time log_predictions (numpy scalars)",
            t_np,
            f"{N_ONE_AT_A_TIME / t_np:,.0f} rows/s",
        ),
        (
            "Monitor: one-at-a-time, with a 20-feature row binned for drift",
            t_x,
            f"{X_rows.shape[0] / t_x:,.0f} rows/s",
        ),
    ]


def canary_benchmark(rows: list[tuple[str, float, str]]) -> None:
    n = N_LABELLED
    rng = np.random.default_rng(3)
    y_true = rng.integers(0, 2, n)
    canary = rng.random(n) < 0.2
    y_pred = np.where(rng.random(n) < np.where(canary, 0.2, 0.1), 1 - y_true, y_true)
    ids = np.arange(n)

    def sklearn_per_version() -> list[float]:
        return [
            f(y_true[rows_], y_pred[rows_])
            for rows_ in (canary, ~canary)
            for f in (skm.accuracy_score, skm.precision_score, skm.recall_score, skm.f1_score)
        ]

    batches = []
    for a in range(0, n, BATCH):
        sel = slice(a, a + BATCH)
        for flag, version in ((True, "churn:9"), (False, "churn:8")):
            rows_ = ids[sel][canary[sel] == flag]
            batches.append((version, rows_))

    def log_and_label() -> Monitor:
        m = Monitor(window=n, max_pending=n, thresholds={})
        for version, rows_ in batches:
            m.log_predictions(None, y_pred[rows_], ids=rows_, version=version)
        for a in range(0, n, 10 * BATCH):
            m.log_labels(ids[a : a + 10 * BATCH], y_true[a : a + 10 * BATCH])
        return m

    def unversioned() -> None:
        m = Monitor(window=n, max_pending=n, thresholds={})
        for _, rows_ in batches:
            m.log_predictions(None, y_pred[rows_], ids=rows_)
        for a in range(0, n, 10 * BATCH):
            m.log_labels(ids[a : a + 10 * BATCH], y_true[a : a + 10 * BATCH])

    t_sk, expected = best_of(sklearn_per_version, 3)
    t_log, mon = best_of(log_and_label, 3)
    t_plain, _ = best_of(unversioned, 3)

    def read() -> list[float]:
        out = []
        for v in ("churn:9", "churn:8"):
            m = mon.metrics(version=v)
            out += [m[k] for k in ("accuracy", "precision", "recall", "f1")]
        return out

    t_read, got = best_of(read, 20)
    assert np.allclose(got, expected), "per-version metrics differ from sklearn"
    rows += [
        ("sklearn.metrics: 4 calls x 2 versions' rows (floor)", t_sk, ""),
        (
            "Monitor.metrics(version=...) x 2 versions",
            t_read,
            f"{t_sk / t_read:.0f}x faster than sklearn",
        ),
        (
            "Monitor: log 1,000,000 rows of 2 versions by id, label them later",
            t_log,
            f"{n / t_log / 1e6:.2f} M rows/s; the same without version=: {t_plain:.2f} s",
        ),
    ]


def best_cpu(fn: Callable[[], Any], repeat: int = 3) -> tuple[float, Any]:
    """Least CPU time of this process over ``repeat`` runs, and the last result."""
    best, out = float("inf"), None
    for _ in range(repeat):
        gc.collect()
        t = time.process_time()
        out = fn()
        best = min(best, time.process_time() - t)
    return best, out


def delayed_labels_benchmark(rows: list[tuple[str, float, str]]) -> None:
    n = N_LABELLED
    rng = np.random.default_rng(4)
    y_true = rng.integers(0, 2, n)
    y_pred = np.where(rng.random(n) < 0.1, 1 - y_true, y_true)
    int_ids = rng.permutation(n).astype(np.int64)
    str_ids = np.asarray([f"req-{i:09d}" for i in int_ids.tolist()])

    def sklearn_four() -> list[float]:
        return [
            f(y_true, y_pred)
            for f in (skm.accuracy_score, skm.precision_score, skm.recall_score, skm.f1_score)
        ]

    def by_id(ids: np.ndarray, label_batch: int) -> list[float | None]:
        m = Monitor(window=n, reference_predictions=[0, 1], thresholds={})
        for a in range(0, n, BATCH):
            m.log_predictions(None, y_pred[a : a + BATCH], ids=ids[a : a + BATCH])
            if (a + BATCH) % label_batch == 0:
                c = a + BATCH - label_batch
                m.log_labels(ids[c : c + label_batch], y_true[c : c + label_batch])
        got = m.metrics()
        return [got[k] for k in ("accuracy", "precision", "recall", "f1")]

    t_sk, expected = best_cpu(sklearn_four)
    rows.append(("sklearn.metrics: 4 calls on 1,000,000 labels, CPU s (floor)", t_sk, ""))
    for label_batch in (10 * BATCH, BATCH):
        for kind, ids in (("int64", int_ids), ("string", str_ids)):
            t_ours, got = best_cpu(functools.partial(by_id, ids, label_batch))
            assert np.allclose(got, expected), "metrics by id differ from sklearn"
            rows.append(
                (
                    f"Monitor: predictions with {kind} ids + labels by id in batches of "
                    f"{label_batch:,} + metrics(), CPU s",
                    t_ours,
                    f"{t_sk / t_ours:.2f}x sklearn",
                )
            )


def merge_benchmark(rows: list[tuple[str, float, str]]) -> None:
    import datetime as dt
    import tempfile

    rng = np.random.default_rng(5)
    X = rng.normal(size=(N_ROWS, N_FEATURES))
    y_pred = rng.integers(0, 2, N_ROWS)
    fleet = {
        "reference": X[:5_000],
        "reference_predictions": y_pred[:5_000],
        "window": dt.timedelta(hours=1),
        "thresholds": {},
    }
    parts = [Monitor(**fleet) for _ in range(4)]  # type: ignore[arg-type]
    for i, part in enumerate(parts):
        rows_ = slice(i * N_ROWS // 4, (i + 1) * N_ROWS // 4)
        part.log_predictions(X[rows_], y_pred[rows_], ids=np.arange(N_ROWS)[rows_])
    t_combine, _ = best_of(lambda: Monitor.combine(parts), 3)
    with tempfile.TemporaryDirectory() as shared:
        t_publish, _ = best_of(lambda: parts[0].publish(shared, replica="w0"), 3)
        for i, part in enumerate(parts[1:], start=1):
            part.publish(shared, replica=f"w{i}")
        t_fleet, _ = best_of(lambda: Monitor.fleet(shared), 3)
    rows += [
        ("Monitor.combine of 4 replicas (25,000 waiting ids and 20 features each)", t_combine, ""),
        ("Monitor.publish: one replica's snapshot to a folder", t_publish, ""),
        ("Monitor.fleet: read 4 snapshots and merge them", t_fleet, ""),
    ]


def main() -> None:
    rows: list[tuple[str, float, str]] = []
    drift_benchmark(rows)
    metrics_benchmark(rows)
    canary_benchmark(rows)
    delayed_labels_benchmark(rows)
    merge_benchmark(rows)
    print("| what | time (s) | note |")
    print("| --- | ---: | --- |")
    for what, value, note in rows:
        if note == "MB":
            print(f"| {what} | {value:.1f} MB | memory, not time |")
        else:
            print(f"| {what} | {value:.4f} | {note} |")


if __name__ == "__main__":
    main()
