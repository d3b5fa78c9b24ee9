"""Real processes: uvicorn servers capture what they serve, labels arrive at other processes,
and the join over the shared folder gives sklearn's metrics on every (prediction, label) pair."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score

from modeldeploy import Monitor
from modeldeploy.monitoring.capture import LabelCapture, PredictionCapture
from modeldeploy.monitoring.join import LabelJoin

httpx = pytest.importorskip("httpx")
pytest.importorskip("uvicorn")
pytest.importorskip("fastapi")

HERE = Path(__file__).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(port: int, env: dict[str, str], workers: int = 1) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "uvicorn", "fleet_app:app", "--app-dir", str(HERE),
           "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]  # fmt: skip
    if workers > 1:
        cmd += ["--workers", str(workers)]
    return subprocess.Popen(cmd, env={**os.environ, **env}, stderr=subprocess.PIPE)


def _wait_ready(port: int, proc: subprocess.Popen[bytes], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server on {port} exited: {proc.stderr.read()!r}")  # type: ignore[union-attr]
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"server on {port} did not start within {timeout} s")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)  # uvicorn shuts down gracefully: lifespan closes captures
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    if proc.stderr is not None:
        proc.stderr.close()


@pytest.fixture
def fleet_env(tmp_path: Path) -> dict[str, str]:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(500, 4))
    model = LogisticRegression().fit(X, (X[:, 0] - X[:, 2] > 0).astype(int))
    joblib.dump(model, tmp_path / "model.joblib")
    return {
        "FLEET_MODEL": str(tmp_path / "model.joblib"),
        "FLEET_SHARED": str(tmp_path / "shared"),
        "FLEET_SPILL": str(tmp_path / "spill"),
    }


@pytest.fixture
def servers(fleet_env: dict[str, str]) -> Iterator[list[tuple[int, subprocess.Popen[bytes]]]]:
    procs: list[tuple[int, subprocess.Popen[bytes]]] = []
    try:
        for _ in range(4):
            port = _free_port()
            procs.append((port, _start(port, fleet_env)))
        for port, proc in procs:
            _wait_ready(port, proc)
        yield procs
    finally:
        for _, proc in procs:
            if proc.poll() is None:
                _stop(proc)


def _truth(rows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The ground truth: the model's rule, with 15% of the labels flipped."""
    y = (rows[:, 0] - rows[:, 2] > 0).astype(int)
    flip = rng.random(y.shape[0]) < 0.15
    return np.asarray(np.where(flip, 1 - y, y))


def _load(
    ports: list[int], n_requests: int, seed: int, label_elsewhere: bool
) -> tuple[list[tuple[str, int, int]], dict[int, set[int]], int]:
    """Send ``n_requests`` predictions from 4 client threads; post each label to another port
    (with ``label_elsewhere``) or to the same one. One connection per call, so that the
    workers of one port share the calls.

    Returns every served ``(id, prediction, label)``, the pids that answered per port, and
    how many labels a process other than the predicting one took.
    """
    served: list[tuple[str, int, int]] = []
    pids: dict[int, set[int]] = {p: set() for p in ports}
    crossed = [0]
    lock = threading.Lock()
    errors: list[BaseException] = []

    def client(k: int) -> None:
        rng = np.random.default_rng(seed + k)
        try:
            with httpx.Client(timeout=30.0, headers={"Connection": "close"}) as http:
                for i in range(n_requests // 4):
                    at = int(rng.integers(len(ports)))
                    port = ports[at]
                    n = int(rng.integers(1, 5))
                    rows = rng.normal(size=(n, 4))
                    body: dict[str, Any] = {"rows": rows.tolist()}
                    if i % 2:  # half the requests bring their ids, half get them from the server
                        body["ids"] = [f"c{k}-{i}-{j}" for j in range(n)]
                    answer = http.post(f"http://127.0.0.1:{port}/predict", json=body)
                    answer.raise_for_status()
                    got = answer.json()
                    labels = _truth(rows, rng)
                    target = ports[(at + 1) % len(ports)] if label_elsewhere else port
                    posted = http.post(
                        f"http://127.0.0.1:{target}/labels",
                        json={"ids": got["ids"], "labels": labels.tolist()},
                    )
                    posted.raise_for_status()
                    with lock:
                        crossed[0] += posted.json()["pid"] != got["pid"]
                        pids[port].add(got["pid"])
                        served.extend(
                            zip(got["ids"], got["predictions"], labels.tolist(), strict=True)
                        )
        except BaseException as exc:  # reported by the test, not lost in the thread
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return served, pids, crossed[0]


def _check_fleet(shared: str, served: list[tuple[str, int, int]]) -> None:
    ids = [s[0] for s in served]
    assert len(set(ids)) == len(ids)  # every served row has its own id
    captured = PredictionCapture(shared).read()
    assert sorted(captured.column("id").to_pylist()) == sorted(ids)  # none lost, none twice
    labels = LabelCapture(shared)
    monitor = Monitor(window=timedelta(days=1), thresholds={})
    result = LabelJoin(ttl=timedelta(hours=1)).feed(monitor, PredictionCapture(shared), labels)
    assert result.counts["matched"] == len(served)
    assert result.counts["duplicate_predictions"] == 0
    assert result.counts["unmatched_labels"] == 0 and result.counts["unmatched_predictions"] == 0
    y_pred = np.array([s[1] for s in served])
    y_true = np.array([s[2] for s in served])
    m = monitor.metrics()
    assert m["n_labelled"] == len(served)
    assert m["accuracy"] == pytest.approx(accuracy_score(y_true, y_pred), abs=1e-12)
    assert m["f1"] == pytest.approx(f1_score(y_true, y_pred), abs=1e-12)
    # The served predictions are what the join saw, row by row.
    pairs = result.to_pandas().set_index("id")
    for i, pred, label in served[:200]:
        assert pairs.loc[i, "prediction"] == pred and pairs.loc[i, "label"] == label


@pytest.mark.slow
def test_four_processes_labels_posted_elsewhere_join_to_sklearn_metrics(
    servers: list[tuple[int, subprocess.Popen[bytes]]], fleet_env: dict[str, str]
) -> None:
    ports = [port for port, _ in servers]
    served, pids, crossed = _load(ports, n_requests=400, seed=1, label_elsewhere=True)
    assert crossed == 400  # every label went to a process that did not predict it
    assert all(len(p) == 1 for p in pids.values())
    assert len(set().union(*pids.values())) == 4  # four distinct processes answered
    for _, proc in servers:
        _stop(proc)
        # uvicorn re-raises the SIGTERM it handled once its graceful shutdown is done.
        assert proc.returncode in (0, -signal.SIGTERM)
    _check_fleet(fleet_env["FLEET_SHARED"], served)


@pytest.mark.slow
def test_uvicorn_with_four_workers_captures_every_request(fleet_env: dict[str, str]) -> None:
    port = _free_port()
    proc = _start(port, fleet_env, workers=4)
    try:
        _wait_ready(port, proc)
        seen: set[int] = set()
        deadline = time.monotonic() + 60
        while len(seen) < 2 and time.monotonic() < deadline:  # more than one worker is up
            seen.add(httpx.get(f"http://127.0.0.1:{port}/health", timeout=5.0).json()["pid"])
        served, pids, crossed = _load([port], n_requests=400, seed=2, label_elsewhere=False)
    finally:
        _stop(proc)
    assert len(pids[port]) >= 2  # the requests were spread over the workers
    assert crossed > 0  # and some labels reached a worker that had not predicted them
    _check_fleet(fleet_env["FLEET_SHARED"], served)
