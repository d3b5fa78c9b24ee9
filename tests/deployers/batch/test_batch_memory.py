"""Bounded memory: a run scores more data than the address-space limit it sets allows."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import joblib
import numpy as np
import pytest
from sklearn.linear_model import Ridge

N_ROWS = 1_600_000
N_FEATURES = 20  # float64: 256 MB of data
BUDGET_MB = 96

CHILD = textwrap.dedent(
    """
    import json, resource, sys
    import joblib
    import numpy as np
    from modeldeploy.deployers.batch import BatchDeployer

    data, model_path, warm, out, budget_mb = sys.argv[1:6]
    model = joblib.load(model_path)
    job = BatchDeployer(model, chunk_size=10_000, n_jobs=2, backend="threads")
    job.run(warm, out)  # warm up: threads, allocator arenas and BLAS buffers exist from here

    def vm_bytes():
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024

    limit = vm_bytes() + int(budget_mb) * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    result = job.run(data, out)
    try:
        np.load(data)  # the whole data does not fit under the limit
        whole = "loaded"
    except MemoryError:
        whole = "MemoryError"
    print(json.dumps({"rows": result.rows, "whole": whole, "limit_mb": limit / 2**20}))
    """
)


@pytest.mark.slow
def test_scores_more_data_than_its_memory_limit_allows(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    data = tmp_path / "X.npy"
    X = np.lib.format.open_memmap(data, mode="w+", dtype=np.float64, shape=(N_ROWS, N_FEATURES))
    step = 200_000
    for start in range(0, N_ROWS, step):
        X[start : start + step] = rng.normal(size=(step, N_FEATURES))
    X.flush()
    sample = np.array(X[:5_000])
    model = Ridge().fit(sample, sample @ np.arange(N_FEATURES))
    joblib.dump(model, tmp_path / "model.joblib")
    np.save(tmp_path / "warm.npy", sample)
    assert data.stat().st_size > 2.5 * BUDGET_MB * 2**20

    script = tmp_path / "child.py"
    script.write_text(CHILD)
    env = {**os.environ, "MALLOC_ARENA_MAX": "2", "OPENBLAS_NUM_THREADS": "1"}
    out = tmp_path / "scores.npy"
    proc = subprocess.run(
        [
            sys.executable,
            str(script),
            str(data),
            str(tmp_path / "model.joblib"),
            str(tmp_path / "warm.npy"),
            str(out),
            str(BUDGET_MB),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report == {"rows": N_ROWS, "whole": "MemoryError", "limit_mb": report["limit_mb"]}
    scores = np.load(out, mmap_mode="r")
    for start in range(0, N_ROWS, step):
        np.testing.assert_allclose(
            scores[start : start + step], model.predict(X[start : start + step]), rtol=1e-12
        )
    del X, scores
