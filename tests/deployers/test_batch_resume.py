"""Checkpoint and resume: a run killed with SIGKILL resumes and writes the same bytes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import RandomForestRegressor

from modeldeploy.deployers.batch import BatchDeployer

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
