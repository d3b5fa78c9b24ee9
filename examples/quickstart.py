"""The whole deployment strategy on a data set that ships with scikit-learn.

Train and register a model, serve it online (and score a batch), monitor it, inject a drift,
let the retrain policy retrain, judge and roll out a new version through a canary, and print
the timeline. Runs in seconds with nothing but the core install.

Run: python examples/quickstart.py
"""

from __future__ import annotations

import logging
import tempfile
import textwrap
from datetime import timedelta
from pathlib import Path

import numpy as np
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from modeldeploy import ModelRegistry, Monitor, OnlineDeployer, RetrainPolicy, Signature
from modeldeploy.deployers.batch import BatchDeployer
from modeldeploy.retraining import CanaryRollout, Gate, drift_detected, metric_below


def train(X: np.ndarray, y: np.ndarray) -> Pipeline:
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(X, y)


def say(text: str) -> None:
    """Print ``text`` wrapped at 100 columns, continuation lines indented."""
    print(textwrap.fill(text, width=100, subsequent_indent="    "))


def drifted(X: np.ndarray) -> np.ndarray:
    """A recalibrated instrument: the first ten measurements now read 60% high."""
    X = X.copy()
    X[:, :10] *= 1.6
    return X


def main() -> None:
    logging.basicConfig(level=logging.ERROR)  # alerts are printed by on_alert below
    rng = np.random.default_rng(0)
    data = load_breast_cancer()
    X, y, names = data.data, data.target, list(data.feature_names)
    X_train, X_live, y_train, y_live = train_test_split(X, y, test_size=0.5, random_state=0)
    root = Path(tempfile.mkdtemp()) / "model-registry"

    # 1. The model and its versions -------------------------------------------------------
    reg = ModelRegistry(root)
    print(f"registry: {root}")
    print(f"  (look at it afterwards: modeldeploy --registry {root} history cancer)")
    model = train(X_train, y_train)
    v1 = reg.register(
        "cancer",
        model,
        # The signature keeps the data set's feature names, so errors and drift name them.
        signature=Signature.infer(X_train, names=names),
        metrics={"f1": f1_score(y_train, model.predict(X_train))},
        params={"C": 1.0},
        tags={"team": "oncology"},
        description="scaler + logistic regression",
    )
    reg.promote("cancer", v1, reason="first model")
    production = reg.get("cancer", alias="production")
    print(f"registered {production!r}")

    # 2. The deployment method: online (and a batch) --------------------------------------
    alerts: list[object] = []
    monitor = Monitor.for_version(
        production,
        window=1500,
        thresholds={"f1": 0.9, "drift": "psi"},
        min_drift_samples=300,
        on_alert=alerts.append,
    )
    dep = OnlineDeployer(production, monitor=monitor)
    served_by = dep.fast_path_report().served_by
    print(f"serving {dep.version} through {served_by!r}")
    if served_by == "numpy-linear":
        say(
            "  ('numpy-linear': the scaler and the logistic regression folded into one matrix "
            "product in numpy, checked to answer exactly like the pipeline before it serves)"
        )
    with BatchDeployer(production, chunk_size=100) as job:
        scores = job.run(X_live)
    print(f"batch-scored {len(scores)} rows; {int(scores.sum())} predicted benign")

    served = [0]

    def stream(n: int, *, drift: bool) -> None:
        """n requests, one row each, then their labels (hours later, in real life)."""
        rows = rng.integers(0, len(X_live), size=n)
        Xs = X_live[rows] * rng.normal(1.0, 0.01, size=(n, X.shape[1]))  # a little noise
        Xs = drifted(Xs) if drift else Xs
        ids = [f"req-{served[0] + i}" for i in range(n)]
        for i in range(n):
            dep.predict(Xs[i], ids=[ids[i]], key=ids[i])
        served[0] += n
        dep.flush()
        monitor.log_labels(ids, y_live[rows])

    # 3. Monitoring and maintenance -------------------------------------------------------
    policy = RetrainPolicy(
        reg,
        "cancer",
        trainer=train,
        triggers=[metric_below("f1", 0.9, min_samples=200), drift_detected(share=0.3)],
        gate=Gate(metric="f1", min_improvement=0.02),
        rollout=CanaryRollout(fraction=0.5, min_samples=150),
        cooldown=timedelta(hours=1),
    )

    def recent_labelled() -> tuple[np.ndarray, np.ndarray]:
        rows = rng.integers(0, len(X_live), size=600)
        return drifted(X_live[rows] * rng.normal(1.0, 0.01, size=(600, X.shape[1]))), y_live[rows]

    stream(300, drift=False)
    print(
        f"\nbefore the drift: f1 {monitor.metrics()['f1']:.3f}, "
        f"policy says {policy.run(monitor, recent_labelled, deployer=dep).status}"
    )

    stream(400, drift=True)
    drift = monitor.drift()
    print(
        f"after the drift:  f1 {monitor.metrics()['f1']:.3f}, "
        f"{len(drift.drifted)} of {len(drift)} features drifted; {len(alerts)} alerts, e.g."
    )
    for alert in alerts[:2]:
        print(f"  {alert}")
    outcome = policy.run(monitor, recent_labelled, deployer=dep)
    say(f"policy: {outcome.status}: {'; '.join(outcome.reasons)}")

    stream(500, drift=True)  # the canary gets half of the traffic
    outcome = policy.run(monitor, recent_labelled, deployer=dep)
    say(f"policy: {outcome.status}: {'; '.join(outcome.reasons)}")
    print(f"now serving {dep.version}; production is {reg.get('cancer', alias='production').ref}")

    stream(300, drift=True)
    print(f"f1 of {dep.version} since: {monitor.metrics(version=dep.version)['f1']:.3f}")

    print("\ntimeline:")
    for event in reg.history("cancer"):
        where = f"@{event.alias} " if event.alias else ""
        version = f"v{event.version} " if event.version is not None else ""
        head = f"  {event.time:%H:%M:%S} {event.kind:18s} {version}{where}"
        print(
            textwrap.fill(event.reason, width=100, initial_indent=head, subsequent_indent=" " * 30)
        )
    dep.close()


if __name__ == "__main__":
    main()
