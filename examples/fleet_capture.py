"""Capture predictions in several processes, log labels in another, join them into a Monitor.

Run: python examples/fleet_capture.py   (needs the [pandas] extra)

Two serving processes answer requests with an OnlineDeployer that captures what it served to a
shared folder; a third process logs the labels that arrive later; the join matches them by id
and the monitor's accuracy and F1 equal scikit-learn's on the same pairs.
"""

from __future__ import annotations

import tempfile
from concurrent.futures import ProcessPoolExecutor
from datetime import timedelta

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score

from modeldeploy import LabelCapture, LabelJoin, Monitor, OnlineDeployer, PredictionCapture


def make_model() -> LogisticRegression:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(2_000, 4))
    return LogisticRegression().fit(X, (X[:, 0] + X[:, 1] > 0).astype(int))


def serve(shared: str, worker: int, n_requests: int) -> list[tuple[str, int]]:
    """One serving process: answer requests, capture them; return (id, prediction) pairs."""
    rng = np.random.default_rng(worker)
    served = []
    with (
        PredictionCapture(shared, feature_rate=0.1) as capture,
        OnlineDeployer(make_model(), capture=capture) as deployer,
    ):
        for _ in range(n_requests):
            row = rng.normal(size=4)
            prediction = int(deployer.predict(row)[0])
            request_id = str(capture.last_ids()[0])  # made by the capture: no ids were given
            served.append((request_id, prediction))
    return served


def label(shared: str, served: list[tuple[str, int]]) -> None:
    """Another process: the ground truth arrives (here: the prediction, wrong 20% of the time)."""
    rng = np.random.default_rng(42)
    ids = [i for i, _ in served]
    truth = np.array([p for _, p in served])
    wrong = rng.random(truth.size) < 0.2
    with LabelCapture(shared) as labels:
        labels.log_labels(ids, np.where(wrong, 1 - truth, truth))


def main() -> None:
    shared = tempfile.mkdtemp(prefix="capture-")
    with ProcessPoolExecutor(max_workers=2) as pool:
        parts = list(pool.map(serve, [shared, shared], [1, 2], [300, 300]))
        served = [pair for part in parts for pair in part]
        pool.submit(label, shared, served).result()

    monitor = Monitor(window=timedelta(days=1), thresholds={})
    result = LabelJoin(ttl=timedelta(hours=1)).feed(
        monitor, PredictionCapture(shared), LabelCapture(shared)
    )
    print(result)
    pairs = result.to_pandas()
    y_true, y_pred = pairs["label"], pairs["prediction"]
    metrics = monitor.metrics()
    print(f"monitor: accuracy {metrics['accuracy']:.4f}, f1 {metrics['f1']:.4f}")
    accuracy, f1 = accuracy_score(y_true, y_pred), f1_score(y_true, y_pred)
    print(f"sklearn: accuracy {accuracy:.4f}, f1 {f1:.4f}")
    assert result.counts["matched"] == len(served) == 600


if __name__ == "__main__":
    main()
