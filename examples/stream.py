"""Keeping a model healthy on a stream: the recipe of the retraining guide, on an SEA stream.

An SEA stream (Street & Kim 2001: ``y = x0 + x1 <= theta``, x uniform in [0, 10]^3, 10% of
the labels flipped) changes its concept abruptly three times. It is served in batches of 500
requests by an ``OnlineDeployer`` that hands what it served to a ``Monitor``; the labels of a
batch arrive after the next batch was predicted; a simulated clock moves one minute per batch.
After each batch a ``RetrainPolicy`` looks at the monitor: its change detector dates the rise
of the errors, the challenger trains on the rows served since then, the gate judges it on the
most recent of them, and the policy refreshes it as the new concept's rows accumulate.

Run: python examples/stream.py            (a reduced stream, a few seconds)
     python benchmarks/closed_loop.py     (the full streams, against river)
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier
from threadpoolctl import threadpool_limits

from modeldeploy import ModelRegistry, Monitor, OnlineDeployer, RetrainPolicy
from modeldeploy.retraining import DataRequest, Gate, Outcome, change_detected
from modeldeploy.testing import FakeClock

BATCH = 500  # requests per batch; one minute of the simulated clock
FIRST = 2_000  # rows the first model is trained on
MAX_TRAIN = 20_000  # most recent labelled rows a challenger trains on


def sea(
    n_per_concept: int, thetas: tuple[float, ...] = (8.0, 9.0, 7.0, 9.5), *, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """An SEA stream with abrupt concept changes: rows, labels, and where each concept starts."""
    rng = np.random.default_rng(seed)
    n = n_per_concept * len(thetas)
    X = rng.uniform(0.0, 10.0, size=(n, 3))
    theta = np.repeat(np.asarray(thetas), n_per_concept)
    y = (X[:, 0] + X[:, 1] <= theta).astype(int)
    flip = rng.random(n) < 0.10
    y[flip] = 1 - y[flip]
    return X, y, [i * n_per_concept for i in range(len(thetas))]


def model() -> HistGradientBoostingClassifier:
    """The one model choice of the recipe: gradient-boosted trees, no tuning."""
    return HistGradientBoostingClassifier(random_state=0)


class LabelledRows:
    """The labelled rows the loop has seen, with when each was served (bounded)."""

    def __init__(self, limit: int = 50_000) -> None:
        self.limit = limit
        self.X: np.ndarray | None = None
        self.y = np.zeros(0, dtype=int)
        self.served = np.zeros(0)

    def add(self, X: np.ndarray, y: np.ndarray, served: float) -> None:
        self.X = X if self.X is None else np.concatenate([self.X, X])[-self.limit :]
        self.y = np.concatenate([self.y, y])[-self.limit :]
        self.served = np.concatenate([self.served, np.full(len(y), served)])[-self.limit :]

    def since(self, request: DataRequest) -> tuple[np.ndarray, np.ndarray]:
        """What ``RetrainPolicy.run`` calls: the rows served since the change, oldest first
        (the most recent rows when no change is dated), at most ``MAX_TRAIN``."""
        assert self.X is not None
        start = 0
        if request.since is not None:
            start = int(np.searchsorted(self.served, request.since.timestamp(), side="left"))
        start = max(start, len(self.y) - MAX_TRAIN)
        return self.X[start:], self.y[start:]


@dataclass
class Result:
    """What one run of the loop did."""

    correct: np.ndarray  # per row from FIRST on: was the served prediction right
    outcomes: list[tuple[int, Outcome]] = field(default_factory=list)  # (rows labelled, outcome)
    detections: list[int] = field(default_factory=list)  # rows labelled when a change fired
    stats: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def accuracy(self, start: int = 0, stop: int | None = None) -> float:
        """Prequential accuracy over stream rows ``start:stop`` (from ``FIRST`` on)."""
        part = self.correct[max(start - FIRST, 0) : None if stop is None else stop - FIRST]
        return float(part.mean())

    def count(self, status: str) -> int:
        return sum(o.status == status for _, o in self.outcomes)


def run(
    X: np.ndarray,
    y: np.ndarray,
    *,
    root: Path,
    make_model: Callable[[], Any] = model,
) -> Result:
    """Serve the stream through the loop, batch by batch, and return what happened."""
    began = time.perf_counter()
    clock = FakeClock()
    registry = ModelRegistry(root, clock=clock)
    first = registry.register("stream", make_model().fit(X[:FIRST], y[:FIRST]), sample=X[:FIRST])
    first = registry.promote("stream", first, reason="first model")
    monitor = Monitor.for_version(first, clock=clock, thresholds={})
    deployer = OnlineDeployer(first, monitor=monitor)
    # The recipe (docs/guides/retraining.md, "Keeping a model healthy on a stream").
    policy = RetrainPolicy(
        registry,
        "stream",
        trainer=make_model(),
        triggers=[change_detected()],
        gate=Gate(metric="accuracy", min_improvement=0.0),
        cooldown=timedelta(minutes=2),
        retry_labels=1_000,
        clock=clock,
    )
    # One thread for scikit-learn's OpenMP: on a busy machine its spinning threads make a
    # retrain take seconds instead of a fraction of one.
    with threadpool_limits(1):
        result = _serve(X, y, clock, monitor, deployer, policy)
    result.stats = policy.stats()
    result.seconds = time.perf_counter() - began
    return result


def _serve(
    X: np.ndarray,
    y: np.ndarray,
    clock: FakeClock,
    monitor: Monitor,
    deployer: OnlineDeployer,
    policy: RetrainPolicy,
) -> Result:
    rows = LabelledRows()
    result = Result(correct=np.zeros(len(y) - FIRST, dtype=bool))
    waiting: tuple[np.ndarray, np.ndarray, list[str], float] | None = None
    labelled = 0
    try:
        for start in range(FIRST, len(y), BATCH):
            clock.advance(60.0)
            stop = min(start + BATCH, len(y))
            ids = [f"r{i}" for i in range(start, stop)]
            served = deployer.predict(X[start:stop], ids=ids)
            result.correct[start - FIRST : stop - FIRST] = served == y[start:stop]
            if waiting is not None:  # the labels of the previous batch arrive now
                Xl, yl, idl, at = waiting
                monitor.log_labels(idl, yl)
                rows.add(Xl, yl, at)
                labelled = start - FIRST
            waiting = (X[start:stop], y[start:stop], ids, clock.now().timestamp())
            outcome = policy.run(monitor, rows.since, deployer=deployer)
            if outcome.status != "skipped":
                result.outcomes.append((labelled, outcome))
            fired = outcome.decision.triggers if outcome.decision is not None else ()
            if any(t.fired and t.values.get("kind") == "change" for t in fired):
                result.detections.append(labelled)
    finally:
        deployer.close()
    return result


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    X, y, starts = sea(6_000)
    with tempfile.TemporaryDirectory() as tmp:
        result = run(X, y, root=Path(tmp) / "registry")
    bounds = [*starts, len(y)]
    for k in range(len(starts)):
        print(
            f"concept {k + 1}: prequential accuracy {result.accuracy(bounds[k], bounds[k + 1]):.3f}"
        )
    print(f"overall {result.accuracy():.3f} in {result.seconds:.1f} s; policy {result.stats}")
    for labelled, outcome in result.outcomes:
        print(
            f"  after {labelled + FIRST:>6,} rows: {outcome.status:<16} {outcome.reasons[0][:90]}"
        )


if __name__ == "__main__":
    main()
