"""Write Monitor state files with the code of this checkout, and what they read back.

The files beside this script were written by it at commit 73c2916 (state format 2, before the
monitor was split into components); tests/monitoring/test_persist.py loads them with the
current code. Run: python tests/monitoring/data/make_states.py tests/monitoring/data
"""

from __future__ import annotations

import datetime as dt
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

from modeldeploy.monitoring import Monitor
from modeldeploy.testing import FakeClock


def clean(d: Any) -> Any:
    if isinstance(d, dict):
        return {k: clean(v) for k, v in d.items()}
    if isinstance(d, list):
        return [clean(v) for v in d]
    if isinstance(d, float) and not math.isfinite(d):
        return None
    return d


def main(out: Path) -> None:
    clock = FakeClock(dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc))
    rng = np.random.default_rng(7)
    X = rng.normal(size=(400, 3))
    mon = Monitor(
        reference=X,
        window=200,
        buckets=4,
        thresholds={"accuracy": 0.9, "drift": "psi"},
        name="churn:3",
        clock=clock,
        min_samples=10,
        min_drift_samples=50,
    )
    for v, shift in (("churn:3", 0.0), ("churn:4", 0.8)):
        Xb = rng.normal(size=(60, 3)) + shift
        pred = (Xb[:, 0] > 0).astype(int)
        mon.log_predictions(
            Xb, pred, ids=[f"{v}-{i}" for i in range(60)], version=v, latency_s=0.004
        )
    mon.log_labels([f"churn:3-{i}" for i in range(40)], rng.integers(0, 2, 40))
    mon.log_labels([f"churn:4-{i}" for i in range(30)], rng.integers(0, 2, 30))
    mon.log_labels(["early-1", "early-2"], [1, 0])  # before their predictions
    mon.log_error(RuntimeError("boom"), version="churn:4")
    for i in range(5):  # one-row calls
        mon.log_predictions(X[i], int(X[i, 0] > 0), ids=f"one-{i}", version="churn:3", y_true=1)
    clock.advance(5)
    mon.check()
    mon.save(out / "monitor_v2_classification.npz")

    clock2 = FakeClock(dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc))
    reg = Monitor(window=dt.timedelta(minutes=10), buckets=5, thresholds={"mae": 0.5}, clock=clock2)
    for step in range(6):
        y = rng.normal(size=50)
        reg.log_predictions(
            None,
            y + rng.normal(scale=0.3, size=50),
            ids=[f"r{step}-{i}" for i in range(50)],
            latency_s=0.01,
        )
        clock2.advance(60)
    reg.log_labels([f"r{s}-{i}" for s in range(6) for i in range(0, 50, 2)], rng.normal(size=150))
    reg.save(out / "monitor_v2_regression.npz")

    expected = {}
    for key, m, c in (("classification", mon, clock), ("regression", reg, clock2)):
        rep = m.report().to_dict()
        expected[key] = clean(
            {
                "metrics": m.metrics(),
                "version_metrics": {v: m.metrics(version=v) for v in m.versions()},
                "versions": m.versions(),
                "label_stats": m.label_stats(),
                "drift": m.drift().to_dict(),
                "errors": rep["errors"],
                "rows_logged": rep["rows_logged"],
                "alerts": [a.to_dict() for a in m.alerts],
                "history": rep["history"],
                "window": rep["window"],
                "task": rep["task"],
                "now": c.now().isoformat(),
            }
        )
    (out / "monitor_v2_expected.json").write_text(
        json.dumps(expected, indent=1, sort_keys=True) + "\n"
    )


if __name__ == "__main__":
    main(Path(sys.argv[1]))
