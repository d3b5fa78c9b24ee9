"""Checkpoint and resume: a run killed with SIGKILL resumes and writes the same bytes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import RandomForestRegressor

from modeldeploy.deployers.batch import BatchDeployer
from modeldeploy.exceptions import DeploymentError, InvalidParameterError

N_ROWS = 20_000
CHUNK = 500  # 40 chunks

CHILD = textwrap.dedent(
    """
    import sys, time
    import joblib
    from modeldeploy.deployers.batch import BatchDeployer

    source, output, model_path = sys.argv[1:4]
    ids = ["order_id"] if source.endswith(".parquet") else None
    model = joblib.load(model_path)
    job = BatchDeployer(model, chunk_size={chunk}, n_jobs=2, backend="threads")
    # Slow enough to be killed half-way: each finished chunk waits a little.
    job.run(source, output, id_columns=ids, callback=lambda done, total: time.sleep(0.05))
    """
)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("resume")
    rng = np.random.default_rng(3)
    X = rng.normal(size=(N_ROWS, 6)).astype(np.float32)
    y = X[:, 0] * 2 + np.sin(X[:, 1]) + rng.normal(scale=0.1, size=N_ROWS)
    model = RandomForestRegressor(n_estimators=5, max_depth=6, random_state=0).fit(
        X[:2000], y[:2000]
    )
    joblib.dump(model, root / "model.joblib")
    np.save(root / "X.npy", X)
    df = pd.DataFrame(X, columns=[f"f{j}" for j in range(6)])
    df.insert(0, "order_id", [f"o-{i:06d}" for i in range(N_ROWS)])
    df.to_parquet(root / "X.parquet", row_group_size=3_000)
    (root / "child.py").write_text(CHILD.format(chunk=CHUNK))
    return {"root": root, "npy": root / "X.npy", "parquet": root / "X.parquet"}


@pytest.mark.slow
@pytest.mark.parametrize(("source", "suffix"), [("npy", ".npy"), ("parquet", ".parquet")])
def test_sigkilled_run_resumes_with_byte_identical_output(
    files: dict[str, Path], source: str, suffix: str, tmp_path: Path
) -> None:
    model = joblib.load(files["root"] / "model.joblib")
    ids = ["order_id"] if source == "parquet" else None
    clean = tmp_path / f"clean{suffix}"
    with BatchDeployer(model, chunk_size=CHUNK, n_jobs=2, backend="threads") as job:
        job.run(files[source], clean, id_columns=ids)

    out = tmp_path / f"scores{suffix}"
    partial = out.with_name(out.name + ".partial")
    proc = subprocess.Popen(
        [
            sys.executable,
            str(files["root"] / "child.py"),
            str(files[source]),
            str(out),
            str(files["root"] / "model.joblib"),
        ],
        stderr=subprocess.PIPE,
    )
    log = partial / "done.jsonl"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if log.exists() and log.read_text().count("\n") >= 8:
            break
        time.sleep(0.01)
    assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    if proc.stderr:
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    assert not out.exists()  # nothing half-written is ever visible under the output name
    assert partial.is_dir()

    scored: list[int] = []
    with BatchDeployer(model, chunk_size=CHUNK, n_jobs=2, backend="threads") as job:
        result = job.run(
            files[source],
            out,
            id_columns=ids,
            resume=True,
            callback=lambda done, total: scored.append(done),
        )
    assert 8 <= result.resumed_chunks < N_ROWS // CHUNK  # only the rest was scored
    assert result.rows == N_ROWS
    assert out.read_bytes() == clean.read_bytes()
    assert not partial.exists()
    if suffix == ".npy":
        np.testing.assert_array_equal(np.load(out), model.predict(np.load(files["npy"])))


# ---------------------------------------------------------------------- a changed input


class _BreaksAfter:
    """Predicts like ``inner``; while ``armed``, raises from the ``after``-th call on."""

    armed = False

    def __init__(self, inner: Any, after: int) -> None:
        self.inner = inner
        self.after = after
        self.calls = 0

    def predict(self, X: Any) -> np.ndarray:
        self.calls += 1
        if _BreaksAfter.armed and self.calls > self.after:
            raise OSError("the node went away")
        return np.asarray(self.inner.predict(X))


SMALL = 1_000  # 10 chunks of 100
SMALL_CHUNK = 100


def _small_source(kind: str, X: np.ndarray, root: Path) -> Any:
    """A source of ``kind`` holding ``X``, written fresh (files keep their path)."""
    if kind == "array":
        return X.copy()
    if kind == "iterable":
        return (X[i : i + SMALL_CHUNK] for i in range(0, len(X), SMALL_CHUNK))
    if kind == "npy":
        np.save(root / "in.npy", X)
        return root / "in.npy"
    df = pd.DataFrame(X, columns=[f"f{j}" for j in range(X.shape[1])])
    if kind == "parquet":
        df.to_parquet(root / "in.parquet", row_group_size=300)
        return root / "in.parquet"
    assert kind == "csv"
    df.to_csv(root / "in.csv", index=False, float_format="%.6f")
    return root / "in.csv"


def _interrupted_run(model: Any, kind: str, X: np.ndarray, root: Path, out: Path) -> None:
    """Leave a checkpoint with the first three chunks done, as a crashed run would."""
    _BreaksAfter.armed = True
    try:
        with pytest.raises(DeploymentError):
            BatchDeployer(_BreaksAfter(model, 3), chunk_size=SMALL_CHUNK, n_jobs=1).run(
                _small_source(kind, X, root), out
            )
    finally:
        _BreaksAfter.armed = False
    assert out.with_name(out.name + ".partial").is_dir()


KINDS = ["array", "iterable", "npy", "parquet", "csv"]


@pytest.mark.parametrize("kind", KINDS)
def test_resume_refuses_a_source_whose_scored_rows_changed(
    files: dict[str, Path], kind: str, tmp_path: Path
) -> None:
    model = joblib.load(files["root"] / "model.joblib")
    X = np.load(files["npy"])[:SMALL].round(3)
    out = tmp_path / "scores.npy"
    _interrupted_run(model, kind, X, tmp_path, out)
    csv_size = (tmp_path / "in.csv").stat().st_size if kind == "csv" else 0
    changed = X.copy()
    changed[150, [2, 3]] = changed[150, [3, 2]]  # a row of chunk 1; a CSV keeps its size
    source = _small_source(kind, changed, tmp_path)
    if kind == "csv":  # the file kept its size: a size check alone cannot tell
        assert (tmp_path / "in.csv").stat().st_size == csv_size
    job = BatchDeployer(_BreaksAfter(model, 3), chunk_size=SMALL_CHUNK, n_jobs=1)
    with pytest.raises(InvalidParameterError, match=r"chunk 1 \(rows 100\.\.199\)") as info:
        job.run(source, out, resume=True)
    assert "changed" in str(info.value) and "resume=False" in str(info.value)
    assert not out.exists() and out.with_name(out.name + ".partial").is_dir()
    # Put back, it resumes and gives the scores of one clean run.
    result = BatchDeployer(_BreaksAfter(model, 3), chunk_size=SMALL_CHUNK, n_jobs=1).run(
        _small_source(kind, X, tmp_path), out, resume=True
    )
    assert result.resumed_chunks == 3
    np.testing.assert_array_equal(np.load(out), model.predict(X))


def test_resume_refuses_a_source_that_lost_scored_chunks(
    files: dict[str, Path], tmp_path: Path
) -> None:
    model = joblib.load(files["root"] / "model.joblib")
    X = np.load(files["npy"])[:SMALL]
    out = tmp_path / "scores.npy"
    _interrupted_run(model, "iterable", X, tmp_path, out)
    shorter = (X[i : i + SMALL_CHUNK] for i in range(0, 150, SMALL_CHUNK))  # chunks 0 and 1/2
    with pytest.raises(InvalidParameterError, match="chunk 1|chunk 2"):
        BatchDeployer(_BreaksAfter(model, 3), chunk_size=SMALL_CHUNK, n_jobs=1).run(
            shorter, out, resume=True
        )


def test_resume_accepts_changes_after_the_scored_rows(
    files: dict[str, Path], tmp_path: Path
) -> None:
    model = joblib.load(files["root"] / "model.joblib")
    X = np.load(files["npy"])[:SMALL]
    out = tmp_path / "scores.npy"
    _interrupted_run(model, "npy", X, tmp_path, out)
    fixed = X.copy()
    fixed[900:] = 0.0  # rows no run has scored yet: the resumed run scores them as they are now
    result = BatchDeployer(_BreaksAfter(model, 3), chunk_size=SMALL_CHUNK, n_jobs=1).run(
        _small_source("npy", fixed, tmp_path), out, resume=True
    )
    assert result.resumed_chunks == 3
    np.testing.assert_array_equal(np.load(out), model.predict(fixed))
