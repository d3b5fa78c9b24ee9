"""BatchDeployer: outputs, errors, progress, monitor hook, scheduled batches, thread safety."""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.tree import DecisionTreeClassifier

from modeldeploy.deployers.batch import BatchDeployer, BatchResult, SkippedChunk
from modeldeploy.exceptions import DeploymentError, InvalidParameterError, SchemaError
from modeldeploy.registry.signature import Signature
from modeldeploy.testing import FakeClock, RecordingMonitor

N_ROWS = 2_000
CHUNK = 300
FEATURES = ["a", "b", "c", "d"]


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(42)
    X = rng.normal(size=(N_ROWS, len(FEATURES)))
    y = (X[:, 0] + 0.5 * X[:, 1] - X[:, 2] * X[:, 3] > 0).astype(np.int64)
    return X, y


@pytest.fixture(scope="module")
def model(data: tuple[np.ndarray, np.ndarray]) -> LogisticRegression:
    X, y = data
    return LogisticRegression().fit(X, y)


def _frame(rows: np.ndarray) -> Any:
    df = pd.DataFrame(rows, columns=FEATURES)
    df.insert(0, "customer_id", np.arange(rows.shape[0], dtype=np.int64) * 7 + 1000)
    return df


def _make_source(kind: str, rows: np.ndarray, tmp_path: Path) -> tuple[Any, list[str] | None]:
    """A source of the given kind holding rows (with a customer_id column where it has columns)."""
    X = rows
    if kind == "array":
        return X, None
    if kind == "npy":
        np.save(tmp_path / "X.npy", X)
        return tmp_path / "X.npy", None
    if kind == "dataframe":
        return _frame(X), ["customer_id"]
    if kind == "csv":
        _frame(X).to_csv(tmp_path / "X.csv", index=False)
        return str(tmp_path / "X.csv"), ["customer_id"]
    if kind == "parquet":
        _frame(X).to_parquet(tmp_path / "X.parquet", row_group_size=700)
        return tmp_path / "X.parquet", ["customer_id"]
    assert kind == "iterable"
    # Uneven chunks, one of them empty: chunk boundaries are the iterable's own.
    cuts = [0, 250, 250, 1100, 1600, N_ROWS]
    return (X[a:b] for a, b in itertools.pairwise(cuts)), None


def _read_output(path: Path) -> tuple[np.ndarray, pd.DataFrame | None]:
    if path.suffix == ".npy":
        return np.load(path), None
    df = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    scores = [c for c in df.columns if c.startswith(("prediction", "proba_"))]
    values = df[scores].to_numpy()
    return (values[:, 0] if scores == ["prediction"] else values), df


@pytest.mark.parametrize("method", ["predict", "predict_proba"])
@pytest.mark.parametrize("output", [None, "npy", "parquet", "csv"])
@pytest.mark.parametrize("kind", ["array", "npy", "dataframe", "csv", "parquet", "iterable"])
def test_outputs_equal_model_predict_for_every_source_and_output(
    kind: str,
    output: str | None,
    method: str,
    data: tuple[np.ndarray, np.ndarray],
    model: LogisticRegression,
    tmp_path: Path,
) -> None:
    X, _ = data
    expected = getattr(model, method)(X)
    source, ids = _make_source(kind, X, tmp_path)
    out = None if output is None else tmp_path / f"scores.{output}"
    with BatchDeployer(model, chunk_size=CHUNK, n_jobs=2, backend="threads", method=method) as job:
        got = job.run(source, out, id_columns=ids)
    if out is None:
        assert isinstance(got, np.ndarray)
        scores = got
    else:
        assert isinstance(got, BatchResult)
        assert got.rows == N_ROWS
        assert got.output == out
        assert not out.with_name(out.name + ".partial").exists()
        scores, df = _read_output(out)
        if df is not None and ids:
            np.testing.assert_array_equal(df["customer_id"], _frame(X)["customer_id"])
    assert scores.shape == expected.shape
    if method == "predict":
        np.testing.assert_array_equal(scores, expected)
    else:
        np.testing.assert_allclose(scores, expected, rtol=1e-12, atol=0)
    assert job.last_result is not None and job.last_result.rows == N_ROWS


def test_proba_columns_are_named_by_class(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 2))
    y = np.where(X[:, 0] > 0, "churn", "stay")
    model = DecisionTreeClassifier(max_depth=3, random_state=0).fit(X, y)
    with BatchDeployer(model, chunk_size=64, method="predict_proba") as job:
        job.run(X, tmp_path / "p.parquet")
    df = pd.read_parquet(tmp_path / "p.parquet")
    assert list(df.columns) == ["proba_churn", "proba_stay"]
    np.testing.assert_allclose(df.to_numpy(), model.predict_proba(X))


def _signature(sample: np.ndarray) -> Signature:
    return Signature.infer(sample, names=FEATURES)


def test_bad_row_error_names_chunk_and_global_rows(
    data: tuple[np.ndarray, np.ndarray], model: LogisticRegression
) -> None:
    X, _ = data
    bad = X.copy()
    bad[1234, 2] = np.nan
    job = BatchDeployer(model, chunk_size=CHUNK, n_jobs=1, signature=_signature(X))
    with pytest.raises(SchemaError) as info:
        job.run(bad)
    message = str(info.value)
    assert "Chunk 4 (rows 1200..1499)" in message
    assert "row 1234" in message
    assert info.value.row == 1234
    assert info.value.column == "c"


def test_skip_reports_bad_chunks_and_scores_the_rest(
    data: tuple[np.ndarray, np.ndarray], model: LogisticRegression, tmp_path: Path
) -> None:
    X, _ = data
    bad = X.copy()
    bad[1234, 2] = np.inf
    bad[10, 0] = np.nan
    with BatchDeployer(
        model,
        chunk_size=CHUNK,
        n_jobs=2,
        backend="threads",
        on_error="skip",
        signature=_signature(X),
    ) as job:
        result = job.run(bad, tmp_path / "s.npy")
        in_memory = job.run(bad)
    assert [(s.chunk, s.rows) for s in result.skipped] == [
        (0, range(300)),
        (4, range(1200, 1500)),
    ]
    assert "row 10" in result.skipped[0].reason and "NaN" in result.skipped[0].reason
    assert "row 1234" in result.skipped[1].reason
    assert result.rows == N_ROWS - 600
    assert result.skipped_rows == 600
    expected = model.predict(X).astype(np.float64)
    for scores in (np.load(tmp_path / "s.npy"), in_memory):
        assert scores.dtype == np.float64  # int labels cannot hold the NaN of skipped rows
        assert np.isnan(scores[:300]).all() and np.isnan(scores[1200:1500]).all()
        keep = np.r_[300:1200, 1500:N_ROWS]
        np.testing.assert_array_equal(scores[keep], expected[keep])
    assert job.last_result is not None and len(job.last_result.skipped) == 2


def test_skip_leaves_rows_out_of_parquet_with_their_ids(
    data: tuple[np.ndarray, np.ndarray], model: LogisticRegression, tmp_path: Path
) -> None:
    X, _ = data
    df = _frame(X)
    df["b"] = df["b"].astype(object)
    df.loc[650, "b"] = "oops"  # a string in a numeric column
    with BatchDeployer(model, chunk_size=CHUNK, on_error="skip", signature=_signature(X)) as job:
        result = job.run(df, tmp_path / "s.parquet", id_columns=["customer_id"])
    assert [s.chunk for s in result.skipped] == [2]
    assert "'oops'" in result.skipped[0].reason
    out = pd.read_parquet(tmp_path / "s.parquet")
    keep = np.r_[0:600, 900:N_ROWS]
    np.testing.assert_array_equal(out["customer_id"], df["customer_id"].to_numpy()[keep])
    np.testing.assert_array_equal(out["prediction"], model.predict(X)[keep])


class _Fragile:
    """Predicts like ``inner`` but raises on any row whose first feature exceeds ``limit``."""

    def __init__(self, inner: Any, limit: float) -> None:
        self.inner = inner
        self.limit = limit

    def predict(self, X: np.ndarray) -> np.ndarray:
        if (np.asarray(X)[:, 0] > self.limit).any():
            raise ArithmeticError("value too large for this model")
        return np.asarray(self.inner.predict(X))


def test_model_failure_raises_deployment_error_naming_chunk(
    data: tuple[np.ndarray, np.ndarray], model: LogisticRegression
) -> None:
    X, _ = data
    X = X.copy()
    X[:, 0] = np.clip(X[:, 0], -1, 1)
    X[777, 0] = 50.0
    with pytest.raises(DeploymentError) as info:
        BatchDeployer(_Fragile(model, 10.0), chunk_size=CHUNK, backend="threads").run(X)
    assert "Chunk 2 (rows 600..899)" in str(info.value)
    assert "ArithmeticError" in str(info.value)
    assert isinstance(info.value.__cause__, ArithmeticError)


def test_empty_input_and_empty_chunks(model: LogisticRegression, tmp_path: Path) -> None:
    empty = np.empty((0, len(FEATURES)))
    with BatchDeployer(model, chunk_size=CHUNK) as job:
        assert job.run(empty).shape == (0,)
        assert job.run([]).shape == (0,)
        proba = BatchDeployer(model, method="predict_proba").run(empty)
        assert proba.shape == (0, 2)
        result = job.run(empty, tmp_path / "e.npy")
        assert (result.rows, result.chunks) == (0, 0)
        assert np.load(tmp_path / "e.npy").shape == (0,)
        result = job.run(iter([empty, empty]), tmp_path / "e.csv")
        assert result.chunks == 2 and result.rows == 0
        assert (tmp_path / "e.csv").read_text() == "prediction\n"


def test_progress_bar_and_callback_report_rows(
    data: tuple[np.ndarray, np.ndarray], model: LogisticRegression, capsys: Any
) -> None:
    X, _ = data
    seen: list[tuple[int, int | None]] = []
    with BatchDeployer(model, chunk_size=CHUNK, n_jobs=2, backend="threads") as job:
        job.run(X, progress=True, callback=lambda done, total: seen.append((done, total)))
        job.run(iter([X[:100], X[100:250]]), callback=lambda d, t: seen.append((d, t)))
    dones = [d for d, _ in seen[:7]]
    assert dones == sorted(dones) and dones[-1] == N_ROWS and len(dones) == 7
    assert {t for _, t in seen[:7]} == {N_ROWS}
    # Rows done grow as chunks finish (in any order); the total of an iterable is unknown.
    assert [t for _, t in seen[7:]] == [None, None] and seen[-1][0] == 250
    err = capsys.readouterr().err
    assert "rows/s" in err and "2.00k" in err


def test_monitor_gets_a_sample_of_every_chunk_and_errors(
    data: tuple[np.ndarray, np.ndarray], model: LogisticRegression
) -> None:
    X, _ = data
    bad = X.copy()
    bad[5, 1] = np.nan
    monitor = RecordingMonitor()
    with BatchDeployer(
        model,
        chunk_size=CHUNK,
        monitor=monitor,
        monitor_rows=50,
        on_error="skip",
        signature=_signature(X),
    ) as job:
        job.run(bad)
    assert len(monitor.batches) == 6  # 7 chunks, the first skipped
    assert len(monitor.errors) == 1 and isinstance(monitor.errors[0], SchemaError)
    for batch in monitor.batches:
        ids = np.asarray(batch["ids"])
        assert len(ids) == 50
        np.testing.assert_array_equal(batch["X"], X[ids])  # ids are global row numbers
        np.testing.assert_array_equal(batch["y"], model.predict(X[ids]))
        np.testing.assert_allclose(batch["proba"], model.predict_proba(X[ids]))


def test_raising_monitor_never_fails_the_run(
    data: tuple[np.ndarray, np.ndarray], model: LogisticRegression
) -> None:
    X, _ = data
    monitor = RecordingMonitor(fail=True)
    with BatchDeployer(model, chunk_size=CHUNK, monitor=monitor) as job:
        np.testing.assert_array_equal(job.run(X), model.predict(X))
    assert len(monitor.batches) == 7


def test_in_flight_chunks_are_bounded_by_workers(
    data: tuple[np.ndarray, np.ndarray], model: LogisticRegression
) -> None:
    X, _ = data
    read = 0
    finished = 0
    most = 0

    def chunks() -> Iterator[np.ndarray]:
        nonlocal read, most
        for start in range(0, N_ROWS, 50):
            read += 1
            most = max(most, read - finished)
            yield X[start : start + 50]

    def done(rows: int, total: int | None) -> None:
        nonlocal finished
        finished += 1

    slow = _Slow(model, 0.002)
    got = BatchDeployer(slow, n_jobs=2, backend="threads").run(chunks(), callback=done)
    np.testing.assert_array_equal(got, model.predict(X))
    assert read == N_ROWS // 50
    assert 2 <= most <= 2 * 2 + 1  # workers x 2 in flight, plus the one being handed over


class _Slow:
    def __init__(self, inner: Any, seconds: float) -> None:
        self.inner = inner
        self.seconds = seconds

    def predict(self, X: np.ndarray) -> np.ndarray:
        time.sleep(self.seconds)
        return np.asarray(self.inner.predict(X))


class _CountsLoads:
    """A model that notes, in a file, every process that unpickles it."""

    def __init__(self, inner: Any, log: Path) -> None:
        self.inner = inner
        self.log = log

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        with open(self.log, "a") as f:
            f.write(f"{os.getpid()}\n")

    def predict(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(self.inner.predict(X))


def test_processes_backend_ships_the_model_once_per_worker(
    data: tuple[np.ndarray, np.ndarray], model: LogisticRegression, tmp_path: Path
) -> None:
    X, _ = data
    np.save(tmp_path / "X.npy", X)
    log = tmp_path / "loads.txt"
    counting = _CountsLoads(model, log)
    with BatchDeployer(counting, chunk_size=100, n_jobs=2, backend="processes") as job:
        from_file = job.run(tmp_path / "X.npy")
        assert job.last_result is not None and job.last_result.chunks == 20
        loads = log.read_text().split()
        from_array = job.run(X)
    np.testing.assert_array_equal(from_file, model.predict(X))
    np.testing.assert_array_equal(from_array, model.predict(X))
    # 20 chunks, 2 worker processes: one load per worker, none in this process, none per chunk.
    assert 1 <= len(loads) <= 2 and len(set(loads)) == len(loads)
    assert str(os.getpid()) not in loads


def test_auto_backend_choice(model: LogisticRegression, data: tuple[np.ndarray, Any]) -> None:
    from modeldeploy.deployers.batch._pools import _ProcessPool, _SerialPool, _ThreadPool
    from modeldeploy.deployers.sources import open_source

    X, _ = data
    big, small = open_source(X), open_source(X[:10])
    job = BatchDeployer(model, chunk_size=CHUNK, n_jobs=2)
    scorer = job._get_scorer()
    assert isinstance(job._pool(scorer, big), _ThreadPool)  # scikit-learn releases the GIL
    assert isinstance(job._pool(scorer, small), _SerialPool)  # one chunk: no pool at all
    slow = BatchDeployer(_Slow(model, 0), chunk_size=CHUNK, n_jobs=2)
    pool = slow._pool(slow._get_scorer(), big)
    assert isinstance(pool, _ProcessPool)  # a pure-Python model: processes
    pool.close()
    single = BatchDeployer(model, chunk_size=CHUNK, n_jobs=1)
    assert isinstance(single._pool(single._get_scorer(), big), _SerialPool)


def test_concurrent_runs_from_many_threads_are_correct(
    data: tuple[np.ndarray, np.ndarray], model: LogisticRegression
) -> None:
    X, _ = data
    job = BatchDeployer(model, chunk_size=97, n_jobs=2, backend="threads")
    rng = np.random.default_rng(1)
    inputs = [X[rng.permutation(N_ROWS)[: 500 + 100 * k]] for k in range(6)]
    outputs: dict[int, np.ndarray] = {}

    def work(k: int) -> None:
        outputs[k] = job.run(inputs[k])

    threads = [threading.Thread(target=work, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for k in range(6):
        np.testing.assert_array_equal(outputs[k], model.predict(inputs[k]))


def test_submit_scores_on_size_threshold_and_flush(
    data: tuple[np.ndarray, np.ndarray], model: LogisticRegression
) -> None:
    X, _ = data
    job = BatchDeployer(model, flush_rows=10, flush_interval_s=None)
    futures: dict[int, Any] = {}
    lock = threading.Lock()

    def client(rows: range) -> None:
        for i in rows:
            fut = job.submit(X[i])
            with lock:
                futures[i] = fut

    threads = [threading.Thread(target=client, args=(range(k, 43, 4),)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # 43 rows with a threshold of 10: scored by size until fewer than 10 wait for flush().
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not (
        job.pending_rows < 10 and sum(f.done() for f in futures.values()) == 43 - job.pending_rows
    ):
        time.sleep(0.01)
    waiting = job.pending_rows
    assert waiting < 10
    assert sum(f.done() for f in futures.values()) == 43 - waiting >= 34
    assert job.flush() == waiting
    assert job.pending_rows == 0
    for i, fut in futures.items():
        np.testing.assert_array_equal(fut.result(timeout=5), model.predict(X[i : i + 1]))
    job.close()


def test_submit_scores_on_time_threshold_and_close_drains(
    data: tuple[np.ndarray, np.ndarray], model: LogisticRegression
) -> None:
    X, _ = data
    clock = FakeClock()
    job = BatchDeployer(model, flush_rows=1_000, flush_interval_s=60, clock=clock)
    fut = job.submit(X[:3])
    clock.advance(59)
    with pytest.raises(TimeoutError):
        fut.result(timeout=0.2)  # 59 s on the deployer's clock: not yet
    clock.advance(1)
    np.testing.assert_array_equal(fut.result(timeout=10), model.predict(X[:3]))
    never = BatchDeployer(model, flush_rows=1_000, flush_interval_s=None)
    waiting = never.submit(X[3:5])
    assert not waiting.done()
    never.close()  # closing scores what waits
    np.testing.assert_array_equal(waiting.result(timeout=0), model.predict(X[3:5]))
    with pytest.raises(DeploymentError, match="closed"):
        never.submit(X[:1])
    job.close()


def test_submit_bad_request_fails_alone(
    data: tuple[np.ndarray, np.ndarray], model: LogisticRegression
) -> None:
    X, _ = data
    with BatchDeployer(
        _Fragile(model, 10.0), flush_rows=100, flush_interval_s=None, signature=_signature(X)
    ) as job:
        good = [job.submit(X[i]) for i in range(5)]
        huge = X[5].copy()
        huge[0] = 99.0
        bad_model = job.submit(huge)
        wrong_shape = job.submit(X[6, :2])
        job.flush()
    with pytest.raises(SchemaError):
        wrong_shape.result(timeout=0)
    with pytest.raises(DeploymentError, match="ArithmeticError"):
        bad_model.result(timeout=0)
    for i, fut in enumerate(good):
        np.testing.assert_array_equal(fut.result(timeout=0), model.predict(X[i : i + 1]))


_FAIL_ON_CHUNK: dict[str, int | None] = {"start": None}


class _FailsOnce:
    """Raises on the chunk starting at ``_FAIL_ON_CHUNK['start']`` while that is set."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def predict(self, X: np.ndarray) -> np.ndarray:
        if _FAIL_ON_CHUNK["start"] is not None and np.array_equal(
            X[0], self.inner.X_ref[_FAIL_ON_CHUNK["start"]]
        ):
            raise OSError("transient failure")
        return np.asarray(self.inner.predict(X))


def test_failed_run_leaves_no_output_and_resumes_identically(
    data: tuple[np.ndarray, np.ndarray], model: LogisticRegression, tmp_path: Path
) -> None:
    X, _ = data
    inner = LogisticRegression().fit(X, data[1])
    inner.X_ref = X
    flaky = _FailsOnce(inner)
    clean = tmp_path / "clean.csv"
    out = tmp_path / "scores.csv"
    out.write_text("old content\n")
    BatchDeployer(flaky, chunk_size=CHUNK, n_jobs=1).run(X, clean)
    _FAIL_ON_CHUNK["start"] = 3 * CHUNK
    try:
        with pytest.raises(DeploymentError, match=r"Chunk 3 \(rows 900\.\.1199\)"):
            BatchDeployer(flaky, chunk_size=CHUNK, n_jobs=1).run(X, out)
    finally:
        _FAIL_ON_CHUNK["start"] = None
    assert out.read_text() == "old content\n"  # the old file is untouched until the end
    assert (tmp_path / "scores.csv.partial").is_dir()
    with pytest.raises(InvalidParameterError, match="another run"):
        BatchDeployer(flaky, chunk_size=CHUNK + 1, n_jobs=1).run(X, out, resume=True)
    result = BatchDeployer(flaky, chunk_size=CHUNK, n_jobs=1).run(X, out, resume=True)
    assert result.resumed_chunks == 3
    assert out.read_bytes() == clean.read_bytes()
    assert not (tmp_path / "scores.csv.partial").exists()


def test_result_repr_and_html() -> None:
    result = BatchResult(
        rows=900,
        seconds=1.5,
        chunks=4,
        skipped=(SkippedChunk(2, 600, 900, "Feature 'a' has NaN <bad>"),),
        output=Path("scores.parquet"),
    )
    assert repr(result) == (
        "BatchResult(rows=900, chunks=4, skipped=1 chunks / 300 rows, seconds=1.500, "
        "output='scores.parquet')"
    )
    page = result._repr_html_()
    assert "600..899" in page and "&lt;bad&gt;" in page and "600" in page
    assert result.rows_per_second == 600.0


def test_deployer_repr_and_html(model: LogisticRegression, data: tuple[np.ndarray, Any]) -> None:
    job = BatchDeployer(model, chunk_size=500, n_jobs=1)
    assert repr(job) == (
        "BatchDeployer(LogisticRegression, chunk_size=500, n_jobs=1, backend='auto', "
        "method='predict', on_error='raise')"
    )
    assert "<caption>BatchResult" not in job._repr_html_()
    job.run(data[0])
    page = job._repr_html_()
    assert "500" in page and "<caption>BatchResult" in page and "2,000" in page


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"chunk_size": 0}, "'chunk_size' parameter of BatchDeployer must be an int >= 1"),
        ({"n_jobs": 0}, "'n_jobs' parameter of BatchDeployer must be an int >= 1"),
        ({"backend": "spark"}, "'backend' parameter of BatchDeployer must be one of"),
        ({"method": "transform"}, "'method' parameter of BatchDeployer must be one of"),
        ({"on_error": "ignore"}, "'on_error' parameter of BatchDeployer must be one of"),
        ({"monitor": object()}, "'monitor' parameter of BatchDeployer"),
        ({"flush_interval_s": 0}, "'flush_interval_s' parameter of BatchDeployer"),
    ],
)
def test_bad_parameters_are_refused(
    kwargs: dict[str, Any], match: str, model: LogisticRegression
) -> None:
    with pytest.raises(InvalidParameterError, match=match):
        BatchDeployer(model, **kwargs)


def test_bad_run_arguments_are_refused(
    model: LogisticRegression, data: tuple[np.ndarray, Any], tmp_path: Path
) -> None:
    X, _ = data
    job = BatchDeployer(model)
    with pytest.raises(InvalidParameterError, match="needs an output path"):
        job.run(X, resume=True)
    with pytest.raises(InvalidParameterError, match="'id_columns'"):
        job.run(X, id_columns=["id"])
    with pytest.raises(InvalidParameterError, match=r"\.npy, \.parquet"):
        job.run(X, tmp_path / "scores.xlsx")
    with pytest.raises(InvalidParameterError, match="does not exist"):
        job.run(tmp_path / "missing.npy")
    regressor = LinearRegression().fit(X, X[:, 0])
    with pytest.raises(InvalidParameterError, match="no such method"):
        BatchDeployer(regressor, method="predict_proba").run(X)
    with pytest.raises(InvalidParameterError, match="ModelVersion or an object with predict"):
        BatchDeployer(42)
    with pytest.raises(InvalidParameterError, match="'client' parameter of BatchDeployer"):
        BatchDeployer(model, backend="dask").run(X)  # no client given, no default client
    job.close()
    with pytest.raises(DeploymentError, match="closed"):
        job.run(X)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    n_rows=st.integers(0, 400),
    chunk_size=st.integers(1, 120),
    n_jobs=st.sampled_from([1, 2]),
    cuts=st.lists(st.integers(0, 400), max_size=6),
)
def test_any_chunking_gives_the_scores_of_one_predict_call(
    n_rows: int, chunk_size: int, n_jobs: int, cuts: list[int], model: LogisticRegression
) -> None:
    rng = np.random.default_rng(n_rows)
    X = rng.normal(size=(n_rows, len(FEATURES)))
    expected = model.predict_proba(X) if n_rows else np.empty((0, 2))
    job = BatchDeployer(
        model, chunk_size=chunk_size, n_jobs=n_jobs, backend="threads", method="predict_proba"
    )
    # Equal up to the last bit that BLAS may round differently on fewer rows.
    np.testing.assert_allclose(job.run(X), expected, rtol=1e-12, atol=1e-15)
    bounds = sorted({0, n_rows, *(c for c in cuts if c <= n_rows)})
    pieces = iter([X[a:b] for a, b in itertools.pairwise(bounds)])
    got = job.run(pieces)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-15)


def test_a_submit_racing_close_is_refused_or_scored_never_lost() -> None:
    X = np.random.default_rng(3).normal(size=(50, 3))
    fitted = LinearRegression().fit(X, X[:, 0])

    class Slow:
        def predict(self, rows: np.ndarray) -> np.ndarray:
            time.sleep(0.3)
            return np.asarray(fitted.predict(rows))

    job = BatchDeployer(Slow(), n_jobs=1, flush_interval_s=1.0)
    first = job.submit(X[:2])
    closer = threading.Thread(target=job.close)
    closer.start()
    time.sleep(0.05)
    try:
        late = job.submit(X[2:3])
    except DeploymentError:
        late = None  # refused at once: the caller knows
    closer.join(timeout=10)
    assert first.result(timeout=5).shape == (2,)
    if late is not None:
        assert late.done()  # resolved (scored or failed), never left hanging
        late.exception(timeout=0)


def test_flush_thresholds_changed_on_a_running_deployer_take_effect() -> None:
    X = np.random.default_rng(4).normal(size=(20, 3))
    clock = FakeClock()
    job = BatchDeployer(
        LinearRegression().fit(X, X[:, 0]), n_jobs=1, flush_interval_s=None, clock=clock
    )
    job.submit(X[:1])
    job.flush()  # the scheduler thread is running now, with no time limit
    job.flush_interval_s = 30
    later = job.submit(X[1:2])
    clock.advance(30)
    assert later.result(timeout=5).shape == (1,)  # flushed by time, not left waiting
    job.close()


@pytest.mark.parametrize("backend", ["threads", "processes"])
def test_fast_path_scores_chunks_with_the_same_answers(backend: str) -> None:
    from sklearn.ensemble import HistGradientBoostingClassifier

    rng = np.random.default_rng(6)
    X = rng.normal(size=(3000, 6))
    model = HistGradientBoostingClassifier(max_iter=20).fit(X, (X[:, 0] * X[:, 1] > 0))
    signature = Signature.infer(X)
    with BatchDeployer(
        model,
        signature=signature,
        chunk_size=700,
        n_jobs=2,
        backend=backend,
        fast_path="require",
        method="predict_proba",
    ) as job:
        proba = job.run(X)
        later = job.submit(X[:5])
        job.flush()
        assert job._get_scorer().fast is not None  # the fast path served
    np.testing.assert_allclose(proba, model.predict_proba(X), rtol=0, atol=1e-9)
    np.testing.assert_allclose(later.result(timeout=5), model.predict_proba(X[:5]), atol=1e-9)


def test_submitted_ids_reach_the_monitor_so_late_labels_find_them() -> None:
    X = np.random.default_rng(8).normal(size=(30, 3))
    model = LogisticRegression().fit(X, (X[:, 0] > 0).astype(int))
    monitor = RecordingMonitor()
    with BatchDeployer(model, n_jobs=1, monitor=monitor, flush_interval_s=None) as job:
        job.submit(X[:2], ids=["a", "b"])
        job.submit(X[2], ids="c")
        bad = job.submit(X[3:5], ids=["d"])
        job.flush()
    assert isinstance(bad.exception(timeout=1), SchemaError)
    assert [list(b["ids"]) for b in monitor.batches] == [["a", "b", "c"]]


# ---------------------------------------------------------------------- hostile paths and files


def _write_source(kind: str, X: np.ndarray, path: Path) -> None:
    if kind == "npy":
        np.save(path, X)
    elif kind == "csv":
        pd.DataFrame(X, columns=FEATURES).to_csv(path, index=False)
    else:
        pd.DataFrame(X, columns=FEATURES).to_parquet(path)


@pytest.mark.parametrize("kind", ["npy", "csv", "parquet"])
@pytest.mark.parametrize("spelling", ["same", "dotdot", "symlink", "hardlink"])
def test_output_that_is_the_input_is_refused_before_anything_is_read(
    data: tuple[np.ndarray, np.ndarray],
    model: LogisticRegression,
    tmp_path: Path,
    kind: str,
    spelling: str,
) -> None:
    X, _ = data
    source = tmp_path / f"customers.{kind}"
    _write_source(kind, X[:500], source)
    before = source.read_bytes()
    (tmp_path / "sub").mkdir()
    output: Path | str = source
    if spelling == "dotdot":
        output = f"{tmp_path}/sub/../customers.{kind}"
    elif spelling == "symlink":
        output = tmp_path / f"link.{kind}"
        output.symlink_to(source)
    elif spelling == "hardlink":
        output = tmp_path / f"hard.{kind}"
        os.link(source, output)
    calls: list[int] = []
    job = BatchDeployer(model, chunk_size=CHUNK, n_jobs=1)
    with pytest.raises(InvalidParameterError, match="is the input") as info:
        job.run(str(source), output, callback=lambda done, total: calls.append(done))
    assert str(source.name) in str(info.value) and "another path" in str(info.value)
    assert source.read_bytes() == before
    assert calls == [] and job.last_result is None
    assert not Path(str(output) + ".partial").exists()


def test_output_that_is_a_memory_mapped_input_is_refused(
    data: tuple[np.ndarray, np.ndarray], model: LogisticRegression, tmp_path: Path
) -> None:
    X, _ = data
    source = tmp_path / "X.npy"
    np.save(source, X)
    mapped = np.load(source, mmap_mode="r")
    with pytest.raises(InvalidParameterError, match="is the input"):
        BatchDeployer(model, n_jobs=1).run(mapped, source)
    del mapped
    np.testing.assert_array_equal(np.load(source), X)


def test_source_inside_the_checkpoint_directory_is_refused(
    data: tuple[np.ndarray, np.ndarray], model: LogisticRegression, tmp_path: Path
) -> None:
    X, _ = data
    partial = tmp_path / "scores.npy.partial"
    partial.mkdir()
    np.save(partial / "X.npy", X)
    with pytest.raises(InvalidParameterError, match="checkpoint"):
        BatchDeployer(model, n_jobs=1).run(partial / "X.npy", tmp_path / "scores.npy")
    assert (partial / "X.npy").exists()  # not removed with an old checkpoint


def test_output_that_is_a_directory_is_refused_before_scoring(
    data: tuple[np.ndarray, np.ndarray], model: LogisticRegression, tmp_path: Path
) -> None:
    X, _ = data
    folder = tmp_path / "scores.npy"
    folder.mkdir()
    job = BatchDeployer(model, chunk_size=CHUNK, n_jobs=1)
    calls: list[int] = []
    with pytest.raises(InvalidParameterError, match="is a directory") as info:
        job.run(X, folder, callback=lambda done, total: calls.append(done))
    assert "file name" in str(info.value)
    assert calls == []
    assert not (tmp_path / "scores.npy.partial").exists()


def _csv_with_bad_line(path: Path, X: np.ndarray, bad_row: int) -> int:
    """Write X as CSV with one extra field on data row ``bad_row``; return its line number."""
    lines = ["a,b,c,d"]
    for i, row in enumerate(X):
        cells = [repr(float(v)) for v in row]
        lines.append(",".join([*cells, "9.0"] if i == bad_row else cells))
    path.write_text("\n".join(lines) + "\n")
    return bad_row + 2  # one header line, lines numbered from 1


def test_malformed_csv_line_raises_schema_error_naming_the_line(
    data: tuple[np.ndarray, np.ndarray], model: LogisticRegression, tmp_path: Path
) -> None:
    X, _ = data
    line = _csv_with_bad_line(tmp_path / "X.csv", X, 1234)
    with pytest.raises(SchemaError, match=rf"line {line}\b") as info:
        BatchDeployer(model, chunk_size=CHUNK, n_jobs=1).run(tmp_path / "X.csv")
    assert "Expected 4 fields" in str(info.value) and "saw 5" in str(info.value)
    assert "on_error='skip'" in str(info.value)


def test_malformed_csv_lines_are_skipped_and_listed_with_on_error_skip(
    data: tuple[np.ndarray, np.ndarray], model: LogisticRegression, tmp_path: Path
) -> None:
    X, _ = data
    line = _csv_with_bad_line(tmp_path / "X.csv", X, 1234)
    job = BatchDeployer(model, chunk_size=CHUNK, n_jobs=1, on_error="skip")
    result = job.run(tmp_path / "X.csv", tmp_path / "scores.npy")
    assert result.rows == N_ROWS - 1
    expected = model.predict(np.delete(X, 1234, axis=0))
    np.testing.assert_array_equal(np.load(tmp_path / "scores.npy"), expected)
    (skip,) = result.skipped
    assert skip.rows == range(1234, 1234)  # the line gave no row: nothing is missing in between
    assert f"line {line}" in skip.reason and "expected 4 fields, saw 5" in skip.reason


def test_csv_with_unterminated_quote_raises_even_with_skip(
    model: LogisticRegression, tmp_path: Path
) -> None:
    path = tmp_path / "X.csv"
    path.write_text('a,b,c,d\n1,2,3,4\n"5,6,7,8\n')
    for on_error in ("raise", "skip"):
        with pytest.raises(SchemaError, match=r"Cannot parse .*X\.csv"):
            BatchDeployer(model, n_jobs=1, on_error=on_error).run(path)


def test_csv_text_in_a_numeric_column_names_the_absolute_row_of_the_bad_value(
    data: tuple[np.ndarray, np.ndarray], model: LogisticRegression, tmp_path: Path
) -> None:
    X, _ = data
    df = pd.DataFrame(X, columns=FEATURES).astype(object)
    df.iloc[1234, 2] = "n/a?"  # pandas reads the whole column of this chunk as text
    df.to_csv(tmp_path / "X.csv", index=False)
    job = BatchDeployer(model, chunk_size=CHUNK, n_jobs=1, signature=_signature(X))
    with pytest.raises(SchemaError) as info:
        job.run(tmp_path / "X.csv")
    assert (info.value.row, info.value.column) == (1234, "c")
    assert "row 1234" in str(info.value) and "'n/a?'" in str(info.value)
