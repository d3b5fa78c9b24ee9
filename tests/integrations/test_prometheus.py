"""The Prometheus integration, scraped from real exporters on 127.0.0.1 and parsed with
prometheus_client's own parser; multi-process mode with real worker processes."""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.parser import text_string_to_metric_families
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score

from modeldeploy import Monitor, OnlineDeployer, Signature
from modeldeploy.exceptions import InvalidParameterError
from modeldeploy.integrations.prometheus import (
    DeployerMetrics,
    MetricsSink,
    MonitorCollector,
    exposition,
)

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    """Every sample of a scrape: (name, labels) -> value."""
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(samples: Samples, metric: str, /, **labels: str) -> float | None:
    return samples.get((metric, frozenset(labels.items())))


@pytest.fixture
def exporter() -> Iterator[tuple[CollectorRegistry, str]]:
    """A real exporter over its own registry on a free port of 127.0.0.1."""
    registry = CollectorRegistry()
    server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    try:
        yield registry, f"http://127.0.0.1:{server.server_port}/metrics"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def scrape(url: str) -> tuple[str, Samples]:
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode("utf-8")
    return text, parse(text)


class Flaky:
    """A real classifier that raises on rows whose first feature is above 50 and is slow on
    rows whose first feature is below -50."""

    def __init__(self, model: LogisticRegression) -> None:
        self.model = model
        self.classes_ = model.classes_

    def predict(self, X: Any) -> Any:
        X = np.asarray(X)
        if (X[:, 0] > 50).any():
            raise RuntimeError("the model failed on purpose")
        if (X[:, 0] < -50).any():
            time.sleep(0.5)
        return self.model.predict(X)


def test_deployer_counters_match_stats_when_scraped(
    exporter: tuple[CollectorRegistry, str],
    model: LogisticRegression,
    data: tuple[np.ndarray, np.ndarray],
) -> None:
    registry, url = exporter
    X, _ = data
    metrics = DeployerMetrics(registry=registry)
    monitor = Monitor(window=1000, thresholds={})
    sink = metrics.sink(monitor, deployer="api")
    dep = OnlineDeployer(
        Flaky(model),
        signature=Signature.infer(X),
        name="flaky:1",
        monitor=sink,
        on_event=sink.on_event,
        fallback=0,
        timeout_ms=200,
        max_wait_ms=0,
        fast_path="off",
        warm=False,
    )
    with dep:
        # 32 threads x 10 requests of 1-3 rows; every 7th raises, two time out.
        def client(k: int) -> None:
            for i in range(10):
                rows = X[(k * 10 + i) % 290 : (k * 10 + i) % 290 + 1 + i % 3].copy()
                if (k + i) % 7 == 0:
                    rows[:, 0] = 100.0
                dep.predict(rows)

        threads = [threading.Thread(target=client, args=(k,)) for k in range(32)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for _ in range(2):
            slow = X[:1].copy()
            slow[:, 0] = -100.0
            dep.predict(slow)
        dep.swap(model)
        assert dep.flush(10)
        stats = {v.label: v for v in dep.stats().versions}
        text, samples = scrape(url)

    assert "NaN" not in text
    primary = stats["flaky:1"]
    ok = value(samples, "modeldeploy_requests_total", deployer="api", version="flaky:1")
    assert ok == primary.requests
    errors = value(samples, "modeldeploy_errors_total", deployer="api", version="flaky:1")
    assert errors == primary.errors > 0
    timeouts = value(samples, "modeldeploy_timeouts_total", deployer="api", version="flaky:1")
    assert timeouts == primary.timeouts == 2
    fallbacks = value(samples, "modeldeploy_fallbacks_total", deployer="api")
    assert fallbacks == primary.fallbacks == errors
    # One latency observation per answered request, fallback answers under version="fallback".
    count = value(
        samples, "modeldeploy_request_latency_seconds_count", deployer="api", version="flaky:1"
    )
    assert count == primary.requests
    fb_count = value(
        samples, "modeldeploy_request_latency_seconds_count", deployer="api", version="fallback"
    )
    assert fb_count == fallbacks
    # The timed-out requests waited at least timeout_ms for their fallback answer.
    slow_bucket = value(
        samples,
        "modeldeploy_request_latency_seconds_bucket",
        deployer="api",
        version="fallback",
        le="0.1",
    )
    assert slow_bucket is not None and slow_bucket <= fallbacks - 2
    rows = value(samples, "modeldeploy_request_rows_sum", deployer="api", version="flaky:1")
    assert rows == primary.rows
    swapped = value(samples, "modeldeploy_deployment_events_total", deployer="api", kind="swapped")
    assert swapped == 1
    # The monitor behind the sink got the same batches.
    assert monitor.metrics()["n_predictions"] == primary.rows + stats["fallback 0"].rows


def test_monitor_collector_matches_sklearn_and_leaves_out_undefined(
    exporter: tuple[CollectorRegistry, str], data: tuple[np.ndarray, np.ndarray]
) -> None:
    registry, url = exporter
    X, y = data
    monitor = Monitor(
        signature=Signature.infer(X, names=list("abcd")),
        window=1000,
        thresholds={"accuracy": 0.99},
        min_drift_samples=100,
    )
    registry.register(MonitorCollector(monitor, labels={"model": "churn"}))

    text, samples = scrape(url)
    assert "NaN" not in text
    # Nothing logged yet: no quality metric, no coverage, no drift verdict.
    assert value(samples, "modeldeploy_monitor_accuracy", model="churn", version="") is None
    assert not any(name.startswith("modeldeploy_monitor_drift_psi") for name, _ in samples)
    assert value(samples, "modeldeploy_monitor_window_predictions", model="churn", version="") == 0

    rng = np.random.default_rng(1)
    pred_1 = np.where(rng.random(200) < 0.8, y[:200], 1 - y[:200])
    pred_2 = y[200:]
    ids = [f"r{i}" for i in range(300)]
    monitor.log_predictions(X[:200], pred_1, ids=ids[:200], version="m:1")
    monitor.log_predictions(X[200:] + 3.0, pred_2, ids=ids[200:], version="m:2")
    monitor.log_labels(ids[:250], y[:250])
    monitor.check()

    text, samples = scrape(url)
    assert "NaN" not in text
    pred = np.concatenate([pred_1, pred_2])
    assert value(samples, "modeldeploy_monitor_accuracy", model="churn", version="") == (
        pytest.approx(accuracy_score(y[:250], pred[:250]))
    )
    assert value(samples, "modeldeploy_monitor_accuracy", model="churn", version="m:1") == (
        pytest.approx(accuracy_score(y[:200], pred_1))
    )
    assert value(samples, "modeldeploy_monitor_f1", model="churn", version="m:2") == (
        pytest.approx(f1_score(y[200:250], pred_2[:50]))
    )
    assert value(
        samples, "modeldeploy_monitor_label_coverage_ratio", model="churn", version=""
    ) == pytest.approx(250 / 300)
    assert value(samples, "modeldeploy_monitor_labels_total", model="churn") == 250
    assert value(samples, "modeldeploy_monitor_labels_pending", model="churn") == 50
    drift = monitor.drift()
    for feature in "abcd":
        psi = value(samples, "modeldeploy_monitor_drift_psi", model="churn", feature=feature)
        assert psi == pytest.approx(drift[feature].psi)
        detected = value(
            samples,
            "modeldeploy_monitor_drift_detected",
            model="churn",
            feature=feature,
            method=drift[feature].method,
        )
        assert detected == float(drift[feature].drifted)
    assert drift.drifted, "the shifted rows of m:2 should drift"
    alerts = value(
        samples, "modeldeploy_monitor_alerts_recent", model="churn", kind="metric", name="accuracy"
    )
    assert alerts == sum(a.name == "accuracy" for a in monitor.alerts) >= 1
    latency = [k for k in samples if k[0] == "modeldeploy_monitor_latency_seconds"]
    assert latency == []  # no latencies were logged: left out, not NaN


def test_exposition_adds_collectors_to_the_registry(data: tuple[np.ndarray, np.ndarray]) -> None:
    X, y = data
    registry = CollectorRegistry()
    metrics = DeployerMetrics(registry=registry, namespace="shop")
    sink = metrics.sink(deployer="api")
    sink.log_predictions(X[:3], y[:3], version="m:1", latency_s=0.002)
    sink.log_error(PermissionError("no"), version="m:1")
    monitor = Monitor(window=100, thresholds={})
    body, content_type = exposition(MonitorCollector(monitor), registry=registry)
    samples = parse(body.decode())
    assert content_type.startswith("text/plain")
    assert value(samples, "shop_requests_total", deployer="api", version="m:1") == 1
    assert value(samples, "shop_errors_total", deployer="api", version="m:1") == 1
    assert value(samples, "shop_timeouts_total", deployer="api", version="m:1") is None
    assert value(samples, "modeldeploy_monitor_window_predictions", version="") == 0


def test_bad_arguments_are_refused() -> None:
    registry = CollectorRegistry()
    metrics = DeployerMetrics(registry=registry)
    with pytest.raises(InvalidParameterError, match="one DeployerMetrics per process"):
        DeployerMetrics(registry=registry)
    with pytest.raises(InvalidParameterError, match="namespace"):
        DeployerMetrics(registry=CollectorRegistry(), namespace="9bad")
    with pytest.raises(InvalidParameterError, match="latency_buckets"):
        DeployerMetrics(registry=CollectorRegistry(), latency_buckets=[0.1, 0.05])
    with pytest.raises(InvalidParameterError, match="'deployer'"):
        metrics.sink(deployer="")
    with pytest.raises(InvalidParameterError, match="MonitorSink"):
        metrics.sink(object(), deployer="api")  # type: ignore[arg-type]
    with pytest.raises(InvalidParameterError, match="must be a Monitor"):
        MonitorCollector(object())  # type: ignore[arg-type]
    with pytest.raises(InvalidParameterError, match="label names"):
        MonitorCollector(Monitor(window=10, thresholds={}), labels={"bad-name": "x"})
    assert isinstance(metrics.sink(deployer="api"), MetricsSink)


WORKER = textwrap.dedent(
    """
    import sys
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from modeldeploy import OnlineDeployer, Signature
    from modeldeploy.integrations.prometheus import DeployerMetrics

    n = int(sys.argv[1])
    rng = np.random.default_rng(n)
    X = rng.normal(size=(50, 3))
    model = LogisticRegression().fit(X, (X[:, 0] > 0).astype(int))
    metrics = DeployerMetrics()
    with OnlineDeployer(model, signature=Signature.infer(X), name="m:1",
                        monitor=metrics.sink(deployer="web")) as dep:
        for i in range(n):
            dep.predict(X[i % 48 : i % 48 + 2])
        assert dep.flush(10)
    """
)


@pytest.mark.slow
def test_multiprocess_mode_sums_every_worker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "prometheus"
    folder.mkdir()
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    env = {**__import__("os").environ, "PROMETHEUS_MULTIPROC_DIR": str(folder)}
    counts = [30, 45, 60, 75]
    procs = [
        subprocess.Popen([sys.executable, str(script), str(n)], env=env, stderr=subprocess.PIPE)
        for n in counts
    ]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()
    assert len(list(folder.glob("*.db"))) >= len(counts)  # one file per worker process

    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(folder))
    body, _ = exposition()
    samples = parse(body.decode())
    assert value(samples, "modeldeploy_requests_total", deployer="web", version="m:1") == sum(
        counts
    )
    assert value(samples, "modeldeploy_request_rows_sum", deployer="web", version="m:1") == 2 * sum(
        counts
    )
    latency = value(
        samples, "modeldeploy_request_latency_seconds_count", deployer="web", version="m:1"
    )
    assert latency == sum(counts)
    total = value(samples, "modeldeploy_request_latency_seconds_sum", deployer="web", version="m:1")
    assert total is not None and total > 0 and math.isfinite(total)
