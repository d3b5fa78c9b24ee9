"""Many processes at once, and processes killed in the middle of a registration."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from modeldeploy import ModelRegistry

pytestmark = pytest.mark.slow

WORKER = textwrap.dedent(
    """
    import sys
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from modeldeploy import ModelRegistry

    root, seed, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(200, 3)); y = (X[:, 0] > 0).astype(int)
    reg = ModelRegistry(root)
    for i in range(count):
        model = LogisticRegression(C=1 + seed + i / 10).fit(X, y)
        v = reg.register("shared", model, sample=X, tags={"worker": seed, "i": i})
        print(v.version, flush=True)
    """
)


def _run(code: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_concurrent_processes_get_versions_one_to_n_exactly(tmp_path: Path) -> None:
    root = str(tmp_path / "reg")
    n_procs, per_proc = 6, 5
    procs = [_run(WORKER, root, str(seed), str(per_proc)) for seed in range(n_procs)]
    outputs = [p.communicate(timeout=180) for p in procs]
    for p, (_, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err
    claimed = sorted(int(line) for out, _ in outputs for line in out.split())
    total = n_procs * per_proc
    assert claimed == list(range(1, total + 1))  # none lost, none duplicated

    reg = ModelRegistry(root)
    versions = reg.versions("shared")
    assert [v.version for v in versions] == list(range(1, total + 1))
    assert reg.verify() == []
    X = np.random.default_rng(0).normal(size=(5, 3))
    for v in versions:
        assert v.load().predict(X).shape == (5,)
    # every worker's registrations are there, in its own order
    for seed in range(n_procs):
        mine = [v for v in versions if v.tags["worker"] == seed]
        assert [v.tags["i"] for v in mine] == list(range(per_proc))


SLOW_DUMP = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from modeldeploy import ModelRegistry
    from modeldeploy.registry.formats import JoblibSerializer

    class Slow(JoblibSerializer):
        name = "slow"
        def dump(self, model, path):
            super().dump(model, path)
            with open(path, "r+b") as fh:      # a half-written file on disk
                fh.truncate(100)
            Path(sys.argv[2]).touch()
            time.sleep(60)

    X = np.random.default_rng(0).normal(size=(50, 3)); y = (X[:, 0] > 0).astype(int)
    reg = ModelRegistry(sys.argv[1], formats=[Slow()])
    reg.register("m", LogisticRegression().fit(X, y), format="slow")
    """
)

KILL_IN_TRANSACTION = textwrap.dedent(
    """
    import os, signal, sys
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from modeldeploy import ModelRegistry
    from modeldeploy.registry.stores import SQLiteMetadataStore

    original = SQLiteMetadataStore._insert_version
    def insert_then_die(self, conn, name, version, record):
        original(self, conn, name, version, record)   # row written, not committed
        os.kill(os.getpid(), signal.SIGKILL)
    SQLiteMetadataStore._insert_version = insert_then_die

    X = np.random.default_rng(0).normal(size=(50, 3)); y = (X[:, 0] > 0).astype(int)
    ModelRegistry(sys.argv[1]).register("m", LogisticRegression().fit(X, y))
    """
)


def _assert_clean_and_usable(root: Path, model: LogisticRegression) -> None:
    reg = ModelRegistry(root)
    assert reg.models() == [] or reg.versions("m") == []
    v = reg.register("m", model)
    assert v.version == 1
    assert reg.verify() == []
    assert ModelRegistry(root).load("m", 1).predict(np.zeros((1, 3))).shape == (1,)


def _fitted() -> LogisticRegression:
    X = np.random.default_rng(1).normal(size=(50, 3))
    return LogisticRegression().fit(X, (X[:, 0] > 0).astype(int))


def test_sigkill_while_writing_the_artifact_leaves_no_version(tmp_path: Path) -> None:
    root, marker = tmp_path / "reg", tmp_path / "dumping"
    proc = _run(SLOW_DUMP, str(root), str(marker))
    deadline = time.monotonic() + 60
    while not marker.exists():
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()
    _assert_clean_and_usable(root, _fitted())
    # the staging leftovers are garbage-collected
    assert ModelRegistry(root).gc(older_than_s=0)["leftover_files"] == 1  # the staging folder
    assert not any((root / "artifacts" / "tmp").iterdir())


def test_sigkill_inside_the_metadata_transaction_leaves_no_version(tmp_path: Path) -> None:
    root = tmp_path / "reg"
    proc = _run(KILL_IN_TRANSACTION, str(root))
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    reg = ModelRegistry(root)
    assert reg.models() == []  # the model row was part of the rolled-back transaction
    _assert_clean_and_usable(root, _fitted())
    # the artifact written before the transaction is an orphan, and gc removes only it
    assert reg.gc(older_than_s=0)["orphan_artifacts"] == 1
    assert reg.verify() == []
    assert ModelRegistry(root).load("m", 1) is not None
