"""PredictionCapture and LabelCapture: segments, rotation, drops, spills, deployers' capture=."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.linear_model import LogisticRegression

from modeldeploy import BatchDeployer, ModelRegistry, OnlineDeployer
from modeldeploy.exceptions import InvalidParameterError
from modeldeploy.monitoring.capture import LabelCapture, PredictionCapture
from modeldeploy.registry.stores import LocalArtifactStore, S3ArtifactStore
from modeldeploy.testing import FakeClock
from modeldeploy.typing import CaptureSink


def _segment_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.parquet") if not p.name.startswith("."))


def test_rows_land_in_segments_with_the_documented_schema(tmp_path: Path) -> None:
    clock = FakeClock()
    cap = PredictionCapture(tmp_path, feature_rate=1.0, clock=clock, segment_rows=3)
    X = np.arange(10.0).reshape(5, 2)
    proba = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7], [0.5, 0.5]])
    assert cap.record(X, None, ids=[1, 2, 3, 4, 5], y_proba=proba, classes=["no", "yes"],
                      version="churn:3")  # fmt: skip
    assert cap.close()
    table = cap.read()
    assert table.schema.field("time").type == pa.timestamp("us", tz="UTC")
    assert table.column("id").to_pylist() == [1, 2, 3, 4, 5]
    assert table.column("prediction").to_pylist() == ["no", "yes", "no", "yes", "no"]
    assert table.column("proba").to_pylist() == proba.tolist()
    assert table.column("features").to_pylist() == X.tolist()
    assert set(table.column("version").to_pylist()) == {"churn:3"}
    assert table.column("time").to_pylist()[0] == clock.now()
    # A segment holds at least segment_rows rows: this request went out as one.
    assert len(cap.segments()) == 1
    assert cap.stats()["written"] == 5 and cap.stats()["segments"] == 1
    assert "written=5" in repr(cap) and "<td>5</td>" in cap._repr_html_()


def test_segments_rotate_by_rows_and_no_row_is_lost_or_doubled(tmp_path: Path) -> None:
    cap = PredictionCapture(tmp_path, segment_rows=100, feature_rate=0.0)
    for i in range(50):
        cap.record(None, np.arange(10) + 10 * i, ids=np.arange(10) + 10 * i)
    assert cap.close()
    assert len(cap.segments()) == 5
    ids = sorted(cap.read().column("id").to_pylist())
    assert ids == list(range(500))
    for path in _segment_files(tmp_path):
        assert pq.read_metadata(path).num_rows == 100


def test_a_segment_is_written_once_it_has_been_open_segment_s(tmp_path: Path) -> None:
    cap = PredictionCapture(tmp_path, segment_s=0.05)
    cap.record(None, [1, 2], ids=["a", "b"])
    deadline = threading.Event()
    for _ in range(200):  # a bounded wait for the writer thread
        if cap.segments():
            break
        deadline.wait(0.05)
    assert len(cap.segments()) == 1
    assert cap.read().column("id").to_pylist() == ["a", "b"]
    cap.close()


def test_feature_sample_follows_the_rate_and_the_seed(tmp_path: Path) -> None:
    X = np.random.default_rng(0).normal(size=(4000, 3))
    tables = []
    for run in range(2):
        cap = PredictionCapture(tmp_path / str(run), feature_rate=0.25, seed=7)
        for lo in range(0, 4000, 100):
            cap.record(X[lo : lo + 100], np.zeros(100), ids=np.arange(lo, lo + 100))
        cap.close()
        tables.append(cap.read())
    kept = [f is not None for f in tables[0].column("features").to_pylist()]
    assert 0.2 < np.mean(kept) < 0.3
    assert tables[0].column("features").equals(tables[1].column("features"))
    rows = np.array([f for f in tables[0].column("features").to_pylist() if f is not None])
    ids = np.array(tables[0].column("id").to_pylist())[kept]
    assert np.array_equal(rows, X[ids])


def test_new_ids_are_unique_across_threads_and_last_ids_is_per_thread(tmp_path: Path) -> None:
    cap = PredictionCapture(tmp_path)
    seen: list[list[str]] = []
    mine: list[bool] = []

    def work() -> None:
        local = []
        for n in (1, 3, 2) * 50:
            ids = cap.new_ids(n)
            mine.append(list(cap.last_ids()) == list(ids))  # type: ignore[arg-type]
            local.extend(ids.tolist())
        seen.append(local)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    everything = [i for part in seen for i in part]
    assert len(everything) == 8 * 300 and len(set(everything)) == len(everything)
    assert all(mine)
    assert PredictionCapture(tmp_path).new_ids(1)[0] not in set(everything)  # another writer


def test_many_threads_capture_every_row_exactly_once(tmp_path: Path) -> None:
    cap = PredictionCapture(tmp_path, segment_rows=700, max_queue=100_000)

    def work(k: int) -> None:
        for i in range(200):
            cap.record(None, [k], ids=[f"{k}-{i}"])

    threads = [threading.Thread(target=work, args=(k,)) for k in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert cap.close()
    ids = cap.read().column("id").to_pylist()
    assert sorted(ids) == sorted(f"{k}-{i}" for k in range(16) for i in range(200))
    assert cap.stats()["written"] == 3200 and cap.stats()["dropped"] == 0


class _StuckStore(LocalArtifactStore):
    """A store whose writes wait until released: a slow object store."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.release = threading.Event()

    def put(self, key: str, source: Path) -> None:
        self.release.wait(30)
        super().put(key, source)


def test_a_full_queue_drops_counts_and_never_blocks(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = _StuckStore(tmp_path / "store")
    cap = PredictionCapture(store, max_queue=5, segment_rows=1, spill=tmp_path / "spill")
    results = [cap.record(None, [i], ids=[i]) for i in range(50)]
    assert not all(results)  # the writer is stuck in its first put: the queue filled up
    stats = cap.stats()
    assert stats["dropped"] == results.count(False) > 0
    assert stats["queued"] == 50
    store.release.set()
    with caplog.at_level("WARNING", logger="modeldeploy.monitoring.capture"):
        assert cap.close()
    assert "fell behind" in caplog.text
    written = cap.stats()["written"]
    assert written == 50 - stats["dropped"]
    assert len(cap.read()) == written
    assert cap.record(None, [1], ids=[1]) is False  # after close: dropped and counted
    assert cap.stats()["dropped"] == stats["dropped"] + 1


def test_close_returns_within_its_timeout_when_the_store_hangs(tmp_path: Path) -> None:
    store = _StuckStore(tmp_path / "store")
    cap = PredictionCapture(store, segment_rows=1, spill=tmp_path / "spill")
    cap.record(None, [1], ids=[1])
    assert cap.close(timeout=0.2) is False
    store.release.set()


def test_an_unreachable_store_spills_and_a_later_capture_resends(tmp_path: Path) -> None:
    # Nothing listens on this port: every put fails at once.
    dead = S3ArtifactStore("s3://nowhere", max_retries=0, retry_timeout_s=0.5)
    dead_env = {"AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_ACCESS_KEY_ID": "x",
                "AWS_SECRET_ACCESS_KEY": "y", "AWS_REGION": "us-east-1"}  # fmt: skip
    old = {k: os.environ.get(k) for k in dead_env}
    os.environ.update(dead_env)
    try:
        cap = PredictionCapture(dead, segment_rows=10, spill=tmp_path / "spill")
        answered = [cap.record(None, np.arange(10), ids=np.arange(10) + 10 * i) for i in range(3)]
        assert cap.close()
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    assert all(answered)
    stats = cap.stats()
    assert stats["spilled"] == 30 and stats["written"] == 0 and stats["spilled_segments"] == 3
    # Later (another process, say) the store is back: the spilled segments go there.
    store = LocalArtifactStore(tmp_path / "store")
    later = PredictionCapture(store, spill=tmp_path / "spill")
    assert later.resend() == 3
    assert sorted(later.read().column("id").to_pylist()) == list(range(30))
    assert not list((tmp_path / "spill").glob("*.parquet"))


def test_capture_to_a_registry_writes_to_its_artifact_store(tmp_path: Path) -> None:
    reg = ModelRegistry(tmp_path / "reg")
    with PredictionCapture(reg) as cap:
        cap.record(None, [1, 0], ids=["a", "b"])
    stored = reg.artifacts.keys()
    keys = [k for k in stored if k.startswith("capture/")]
    assert len(keys) == 1 and keys[0].endswith(".parquet")
    assert PredictionCapture(reg).read().column("id").to_pylist() == ["a", "b"]
    reg.close()


def test_capture_to_s3_is_readable_from_another_capture(s3_url: str, tmp_path: Path) -> None:
    with PredictionCapture(S3ArtifactStore(s3_url), segment_rows=5) as cap:
        for i in range(4):
            cap.record(None, [i, i], ids=[2 * i, 2 * i + 1])
    assert cap.stats()["segments"] == 2
    other = PredictionCapture(S3ArtifactStore(s3_url))
    assert sorted(other.read().column("id").to_pylist()) == list(range(8))


def test_bad_parameters_say_what_was_expected(tmp_path: Path) -> None:
    with pytest.raises(InvalidParameterError, match="feature_rate"):
        PredictionCapture(tmp_path, feature_rate=2)
    with pytest.raises(InvalidParameterError, match="'location' parameter"):
        PredictionCapture(42)
    with pytest.raises(InvalidParameterError, match="one label per id"):
        LabelCapture(tmp_path).log_labels([1, 2], [1])
    with pytest.raises(InvalidParameterError, match="'capture' parameter"):
        OnlineDeployer(LogisticRegression(), capture=object())  # type: ignore[arg-type]


def test_labels_are_captured_with_their_time(tmp_path: Path) -> None:
    clock = FakeClock()
    with LabelCapture(tmp_path, clock=clock) as labels:
        labels.log_labels(["a", "b"], [1, 0])
        clock.advance(5)
        labels.log_labels("c", 1)
    table = labels.read()
    assert table.column("id").to_pylist() == ["a", "b", "c"]
    times = table.column("time").to_pylist()
    assert (times[2] - times[0]).total_seconds() == 5


# ---------------------------------------------------------------------- deployers


@pytest.fixture
def clf() -> tuple[LogisticRegression, np.ndarray]:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 3))
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    return LogisticRegression().fit(X, y), X


def test_online_deployer_captures_what_it_served(
    tmp_path: Path, clf: tuple[LogisticRegression, np.ndarray]
) -> None:
    model, X = clf
    cap = PredictionCapture(tmp_path, feature_rate=1.0)
    assert isinstance(cap, CaptureSink)
    with OnlineDeployer(model, capture=cap, max_wait_ms=0) as dep:
        answers = [dep.predict(X[i], ids=f"r{i}") for i in range(20)]
        probas = dep.predict_proba(X[20:25])
        generated = cap.last_ids()
        dep.predict(X[25:27])
        generated2 = cap.last_ids()
    assert cap.close()
    table = cap.read().to_pandas().set_index("id")
    assert len(table) == 27
    for i in range(20):
        assert table.loc[f"r{i}", "prediction"] == answers[i][0]
        assert np.allclose(table.loc[f"r{i}", "features"], X[i])
    assert generated is not None and len(generated) == 5
    got = np.stack(table.loc[list(generated), "proba"].to_numpy())
    assert np.allclose(got, probas)
    assert list(table.loc[list(generated), "prediction"]) == list(model.predict(X[20:25]))
    assert generated2 is not None and set(generated2) <= set(table.index)


def test_coroutines_on_one_loop_capture_what_each_was_answered(
    tmp_path: Path, clf: tuple[LogisticRegression, np.ndarray]
) -> None:
    import asyncio

    model, X = clf
    cap = PredictionCapture(tmp_path)

    async def main(dep: OnlineDeployer) -> list[Any]:
        calls = [dep.apredict(X[i], ids=f"a{i}", return_version=True) for i in range(64)]
        return list(await asyncio.gather(*calls))

    with OnlineDeployer(model, capture=cap, max_wait_ms=1) as dep:
        answers = asyncio.run(main(dep))
    assert cap.close()
    table = cap.read().to_pandas().set_index("id")
    assert len(table) == 64
    for i, (out, version) in enumerate(answers):
        assert table.loc[f"a{i}", "prediction"] == out[0] == model.predict(X[i : i + 1])[0]
        assert table.loc[f"a{i}", "version"] == version


def test_a_failing_capture_never_fails_a_request(
    clf: tuple[LogisticRegression, np.ndarray], caplog: pytest.LogCaptureFixture
) -> None:
    model, X = clf

    class Broken:
        def new_ids(self, n: int) -> list[int]:
            return list(range(n))

        def record(self, X: Any, y_pred: Any = None, **kwargs: Any) -> bool:
            raise OSError("disk on fire")

    with OnlineDeployer(model, capture=Broken(), max_wait_ms=0) as dep:
        out = dep.predict(X[:3])
    assert np.array_equal(out, model.predict(X[:3]))
    assert "capture failed" in caplog.text


def test_batch_deployer_captures_every_scored_row(
    tmp_path: Path, clf: tuple[LogisticRegression, np.ndarray]
) -> None:
    model, X = clf
    cap = PredictionCapture(tmp_path, feature_rate=1.0)
    with BatchDeployer(model, chunk_size=64, n_jobs=1, capture=cap, method="predict_proba") as job:
        scores = job.run(X)
        fut = job.submit(X[:4])
        job.flush()
        submitted_ids = cap.last_ids()
        fut.result()
    assert cap.close()
    table = cap.read().to_pandas()
    run_rows = table[table["features"].isna()].copy()
    # One segment holds row numbers (run) and generated ids (submit): they are kept as text.
    run_rows["id"] = run_rows["id"].astype(int)
    assert sorted(run_rows["id"]) == list(range(400))
    by_id = run_rows.set_index("id").sort_index()
    assert np.allclose(np.stack(by_id["proba"].to_numpy()), scores)
    assert list(by_id["prediction"]) == list(model.predict(X))
    sub = table[table["features"].notna()]
    assert submitted_ids is not None and sorted(sub["id"]) == sorted(submitted_ids)
    feats = dict(zip(sub["id"], sub["features"], strict=True))
    assert all(np.allclose(feats[i], X[k]) for k, i in enumerate(submitted_ids))


# ---------------------------------------------------------------------- a full disk


_FULL_DISK = textwrap.dedent(
    """
    import json, resource, signal, sys
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from modeldeploy import OnlineDeployer
    from modeldeploy.monitoring.capture import PredictionCapture

    folder, spill = sys.argv[1], sys.argv[2]
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 20))
    model = LogisticRegression().fit(X, X[:, 0] > 0)
    # Files may not grow past 8 KiB: every segment (and every spill) is refused with EFBIG.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (8192, 8192))
    cap = PredictionCapture(folder, feature_rate=1.0, segment_rows=50, spill=spill)
    answered = 0
    with OnlineDeployer(model, capture=cap, max_wait_ms=0, warm=False) as dep:
        for i in range(1000):
            out = dep.predict(X[i % 200], ids=i)
            answered += int(out.shape == (1,))
    done = cap.close()
    print(json.dumps({"answered": answered, "closed": done, **cap.stats()}))
    """
)


@pytest.mark.slow
def test_a_full_disk_never_fails_a_request_and_is_counted(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", _FULL_DISK, str(tmp_path / "cap"), str(tmp_path / "spill")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    stats = json.loads(proc.stdout.strip().splitlines()[-1])
    assert stats["answered"] == 1000 and stats["closed"]
    assert stats["queued"] == 1000
    # Every row is accounted for: written, spilled, dropped or lost, never silently gone.
    assert stats["written"] + stats["spilled"] + stats["dropped"] + stats["lost"] == 1000
    assert stats["lost"] > 0
    # Whatever reached the folder is whole: no partial segment is ever visible.
    for path in _segment_files(tmp_path / "cap"):
        assert pq.read_metadata(path).num_rows > 0


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
# Python 3.12+ warns on fork() with threads running: forking a serving process is the case here.
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_forked_child_captures_with_a_writer_of_its_own(tmp_path: Path) -> None:
    cap = PredictionCapture(tmp_path, feature_rate=0.0)
    cap.record(None, [1], ids=["parent-before"])  # the parent's writer thread is running
    cap.flush()
    pid = os.fork()
    if pid == 0:  # the child: like a gunicorn worker forked from a preloading master
        code = 1
        try:
            cap.record(None, [2, 3], ids=["child-1", "child-2"])
            code = 0 if cap.close(timeout=30) and cap.stats()["written"] == 2 else 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    cap.record(None, [4], ids=["parent-after"])
    assert cap.close()
    assert sorted(cap.read().column("id").to_pylist()) == [
        "child-1", "child-2", "parent-after", "parent-before"
    ]  # fmt: skip


def test_segments_with_numeric_and_text_ids_read_back_as_text(tmp_path: Path) -> None:
    with PredictionCapture(tmp_path, segment_rows=2) as cap:
        cap.record(None, [1, 0], ids=[10, 11])  # a batch run's row numbers
        cap.flush()
        cap.record(None, [1, 1], ids=["req-a", "req-b"])  # an online deployer's request ids
    assert len(cap.segments()) == 2
    assert sorted(cap.read().column("id").to_pylist()) == ["10", "11", "req-a", "req-b"]
