"""Watch a deployed model and catch a drift before the labels say anything.

A churn-like classifier is registered, then monitored while an upstream change slowly shifts one
feature, and the labels arrive two hours late. The monitor flags the drift within the hour it
becomes real; the realized F1 confirms the damage only when the late labels come in. The F1
estimated from the probabilities (which assumes the model is still calibrated) does not see this
kind of change: it is a stand-in while labels are missing, not a substitute for drift checks.
The report is saved as a self-contained HTML file and a PNG plot.

Run: python examples/monitoring.py [output folder]   (needs matplotlib for the plot)
"""

from __future__ import annotations

import logging
import sys
import tempfile
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression

from modeldeploy import ModelRegistry
from modeldeploy.monitoring.monitor import Alert, Monitor


def make_data(rng: np.random.Generator, n: int, shift: float = 0.0) -> tuple[np.ndarray, ...]:
    """Four features; the label follows x0 + x1. An upstream change adds ``shift`` to x1."""
    X = rng.normal(size=(n, 4))
    y = (X[:, 0] + X[:, 1] + rng.normal(0, 0.5, n) > 0).astype(int)
    X[:, 1] += shift  # e.g. a unit change in a pipeline: same meaning, new numbers
    return X, y


def main(out: Path) -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    rng = np.random.default_rng(0)
    X_train, y_train = make_data(rng, 5_000)
    model = LogisticRegression().fit(X_train, y_train)
    reg = ModelRegistry(out / "model-registry")
    version = reg.register("churn", model, sample=X_train)

    alerts: list[Alert] = []
    mon = Monitor.for_version(
        version,
        window=4_000,
        thresholds={"f1": 0.8, "drift": "ks", "p_value": 0.001},
        on_alert=alerts.append,
    )

    pending: list[tuple[list[str], np.ndarray]] = []
    for hour in range(14):
        shift = max(0.0, (hour - 5) * 0.25)  # stable for 6 hours, then drifting
        X, y = make_data(rng, 1_000, shift)
        ids = [f"h{hour}-{i}" for i in range(len(X))]
        mon.log_predictions(
            X, model.predict(X), ids=ids, y_proba=model.predict_proba(X), version=version.ref
        )
        pending.append((ids, y))
        if hour >= 2:  # labels arrive two hours late
            late_ids, late_y = pending.pop(0)
            mon.log_labels(late_ids, late_y)
        m = mon.metrics()
        print(
            f"hour {hour:2d}  shift {shift:.2f}  drifted {mon.drift().drifted!s:12}"
            f"  estimated f1 {m['estimated_f1']:.3f}  realized f1 {m['f1']:.3f}"
            f"  (labelled {m['n_labelled']})"
        )
    print(f"{len(alerts)} alerts, each sent once: {[f'{a.kind}:{a.name}' for a in alerts]}")

    report = mon.report()
    html = report.save_html(out / "monitoring-report.html")
    print(f"report: {html} ({html.stat().st_size // 1024} kB)")
    try:
        fig = report.plot()
    except ImportError:
        print("matplotlib is not installed: no plot")
    else:
        fig.savefig(out / "monitoring.png", dpi=90)
        print(f"plot: {out / 'monitoring.png'}")
    reg.close()


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp()))
