"""The FastAPI front, served by a real uvicorn server on 127.0.0.1 and called with httpx,
including a promotion made by another process while clients are sending requests."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import uvicorn
from fastapi import FastAPI
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score

from modeldeploy import ModelRegistry, Monitor, Signature
from modeldeploy.exceptions import DeploymentError, InvalidParameterError
from modeldeploy.integrations.fastapi import ModelService
from modeldeploy.integrations.prometheus import DeployerMetrics

NAMES = ["tenure", "spend", "visits", "complaints"]


@contextmanager
def serve(app: FastAPI) -> Iterator[str]:
    """Run ``app`` with uvicorn in a thread on a free port of 127.0.0.1; yield its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()
        assert not thread.is_alive()


@pytest.fixture
def churn(tmp_path: Path) -> tuple[Path, np.ndarray, np.ndarray, dict[str, Any]]:
    """A registry with two versions of "churn" that answer differently; production -> 1."""
    rng = np.random.default_rng(7)
    X = rng.normal(size=(400, 4))
    y = (X[:, 0] - X[:, 3] > 0).astype(int)
    v1 = LogisticRegression().fit(X, y)
    v2 = LogisticRegression().fit(X, 1 - y)  # the opposite answers: who answered is visible
    root = tmp_path / "registry"
    with ModelRegistry(root) as reg:
        sig = Signature.infer(X, names=NAMES)
        reg.register("churn", v1, signature=sig)
        reg.register("churn", v2, signature=sig)
        reg.promote("churn", 1)
    return root, X, y, {"churn:1": v1, "churn:2": v2}


def rows_of(X: np.ndarray) -> list[dict[str, float]]:
    return [dict(zip(NAMES, map(float, r), strict=True)) for r in X]


def samples_of(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_service_predicts_labels_and_follows_a_promotion_under_load(
    churn: tuple[Path, np.ndarray, np.ndarray, dict[str, Any]], tmp_path: Path
) -> None:
    root, X, y, models = churn
    metrics = DeployerMetrics(registry=CollectorRegistry())
    service = ModelService(root, "churn", poll_s=0.05, metrics=metrics, max_wait_ms=1)
    app = FastAPI(lifespan=service.lifespan)
    app.include_router(service.router(), prefix="/churn")

    @app.get("/own")  # the user's own route, next to ours
    def own() -> dict[str, str]:
        return {"mine": "yes"}

    def predict(client: httpx.Client, start: int) -> dict[str, Any]:
        rows = X[start % 390 : start % 390 + 1 + start % 4]
        r = client.post("/churn/predict", json={"rows": rows_of(rows)})
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        body["expected"] = {v: m.predict(rows).tolist() for v, m in models.items()}
        body["start"] = start
        return body

    with serve(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        assert client.get("/own").json() == {"mine": "yes"}
        assert client.get("/churn/health").json() == {"status": "ok"}
        ready = client.get("/churn/ready")
        assert ready.status_code == 200 and ready.json()["version"] == "churn:1"

        # Phase 1, no promotion: every answer is version 1's, and says so.
        with ThreadPoolExecutor(16) as pool:
            phase1 = list(pool.map(lambda i: predict(client, i), range(200)))
        for b in phase1:
            assert b["version"] == "churn:1"
            assert b["predictions"] == b["expected"]["churn:1"]
            assert len(b["ids"]) == len(b["predictions"])

        # Phase 2: 16 clients send requests while another process promotes version 2.
        promote = (
            "from modeldeploy import ModelRegistry\n"
            f"with ModelRegistry({str(root)!r}) as reg:\n"
            "    reg.promote('churn', 2, reason='better')\n"
        )
        stop = threading.Event()
        answers: list[dict[str, Any]] = []
        failures: list[BaseException] = []

        def load(k: int) -> None:
            i = 0
            while not stop.is_set():
                try:
                    answers.append(predict(client, 1000 * k + i))
                except BaseException as exc:
                    failures.append(exc)
                i += 1

        workers = [threading.Thread(target=load, args=(k,)) for k in range(16)]
        for w in workers:
            w.start()
        time.sleep(0.3)
        subprocess.run([sys.executable, "-c", promote], check=True, timeout=60)
        deadline = time.monotonic() + 30
        while client.get("/churn/ready").json()["version"] != "churn:2":
            assert time.monotonic() < deadline, "the promotion was not picked up"
            time.sleep(0.02)
        time.sleep(0.3)
        stop.set()
        for w in workers:
            w.join()
        assert failures == []
        seen = {b["version"] for b in answers}
        assert seen == {"churn:1", "churn:2"}
        for b in answers:  # during the swap too, each answer says which version gave it
            assert b["predictions"] == b["expected"][b["version"]]

        # Phase 3, after the swap: version 2 answers, and says so.
        with ThreadPoolExecutor(16) as pool:
            phase3 = list(pool.map(lambda i: predict(client, i), range(100)))
        for b in phase3:
            assert b["version"] == "churn:2"
            assert b["predictions"] == b["expected"]["churn:2"]

        # Labels of phase 1 reach the monitor by id; its accuracy is sklearn's on those rows.
        ids = [i for b in phase1 for i in b["ids"]]
        preds = [p for b in phase1 for p in b["predictions"]]
        truth = [
            int(t) for b in phase1 for t in y[b["start"] % 390 : b["start"] % 390 + len(b["ids"])]
        ]
        r = client.post("/churn/labels", json={"ids": ids, "y_true": truth})
        assert r.status_code == 200, r.text
        assert r.json()["matched"] == len(ids)

        text = client.get("/churn/metrics").text
        assert "NaN" not in text
        samples = samples_of(text)
        total = len(phase1) + len(answers) + len(phase3)
        served = sum(
            v
            for (name, labels), v in samples.items()
            if name == "modeldeploy_requests_total" and ("deployer", "churn@production") in labels
        )
        assert served == total
        swaps = samples[
            (
                "modeldeploy_deployment_events_total",
                frozenset({("deployer", "churn@production"), ("kind", "swapped")}),
            )
        ]
        assert swaps == 1
        accuracy = samples[
            (
                "modeldeploy_monitor_accuracy",
                frozenset({("service", "churn@production"), ("version", "churn:1")}),
            )
        ]
        assert accuracy == pytest.approx(accuracy_score(truth, preds))
    assert not service.ready  # the lifespan closed it


def test_bad_requests_get_specific_answers(
    churn: tuple[Path, np.ndarray, np.ndarray, dict[str, Any]], tmp_path: Path
) -> None:
    root, X, _, _ = churn
    state = tmp_path / "monitor.npz"
    service = ModelService(root, "churn", poll_s=1, monitor_state=state)
    app = FastAPI(lifespan=service.lifespan)
    app.include_router(service.router())
    with serve(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        row = rows_of(X[:1])[0]
        missing = {k: v for k, v in row.items() if k != "spend"}
        r = client.post("/predict", json={"rows": [row, missing]})
        assert r.status_code == 422
        assert r.json()["detail"]["column"] == "spend"
        r = client.post("/predict", json={"rows": [["a", 1, 2, 3]]})
        assert r.status_code == 422
        r = client.post("/predict", json={"rows": []})
        assert r.status_code == 422  # pydantic: at least one row
        r = client.post("/predict", json={"rows": [row], "ids": ["a", "b"]})
        assert r.status_code == 422 and "one id per row" in r.json()["detail"]
        r = client.post("/labels", json={"ids": ["a"], "y_true": [1, 0]})
        assert r.status_code == 422
        ok = client.post("/predict", json={"rows": [row], "ids": ["kept"]})
        assert ok.status_code == 200 and ok.json()["ids"] == ["kept"]
    # Closing saved the monitor; a restart picks up the prediction waiting for its label.
    assert Monitor.load(state).label_stats()["pending"] == 1


def test_not_ready_until_open(churn: tuple[Path, np.ndarray, np.ndarray, dict[str, Any]]) -> None:
    root, X, _, _ = churn
    service = ModelService(ModelRegistry(root), "churn")
    app = FastAPI()  # no lifespan: the service is never opened
    app.include_router(service.router())
    with serve(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        assert client.get("/health").status_code == 200
        r = client.get("/ready")
        assert r.status_code == 503 and r.json()["ready"] is False
        assert client.post("/predict", json={"rows": rows_of(X[:1])}).status_code == 503
    with pytest.raises(DeploymentError, match="not open"):
        _ = service.deployer
    service.open()
    try:
        assert service.ready and service.deployer.version == "churn:1"
    finally:
        service.close()
        service.close()


def test_bad_arguments_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidParameterError, match="'registry'"):
        ModelService(42, "churn")  # type: ignore[arg-type]
    with pytest.raises(InvalidParameterError, match="'name'"):
        ModelService(tmp_path, "")
    with pytest.raises(InvalidParameterError, match="'monitor'"):
        ModelService(tmp_path, "churn", monitor="yes")  # type: ignore[arg-type]
