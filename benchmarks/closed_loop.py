"""Benchmark the closed loop on drifting streams, against river's online learners.

Run: python benchmarks/closed_loop.py            (all streams, the loop and river; minutes)
     python benchmarks/closed_loop.py --no-river --streams sea

Three streams generated here with numpy (no downloads), 100,000 rows each:

- ``sea``: SEA (Street & Kim 2001), ``y = x0 + x1 <= theta`` with x uniform in [0, 10]^3 and
  10% of the labels flipped, four abrupt concepts theta = 8, 9, 7, 9.5 of 25,000 rows each.
- ``hyperplane``: a rotating hyperplane, 10 features uniform in [0, 1], 5% label noise, the
  normal vector turning steadily by half a turn over the stream (gradual drift).
- ``stationary``: SEA with theta = 8 throughout: nothing changes, so nothing should retrain.

The loop is the recipe of ``examples/stream.py`` (docs/guides/retraining.md, "Keeping a model
healthy on a stream"), the same model and settings on every stream: an ``OnlineDeployer``
serves batches of 500 requests, the labels of a batch arrive after the next batch was
predicted, a ``Monitor`` watches, a ``RetrainPolicy`` with ``change_detected()`` decides after
each batch; the first model is trained on the first 2,000 rows. river's models (when river is
installed) learn test-then-train, one row at a time, with each label at once. Every method is
scored on the same rows (from row 2,000 on): prequential accuracy per quarter / concept.
Detection delay: labelled rows after an abrupt drift when ``change_detected`` fired for it.
The loop runs ``--repeats`` times per stream; its results must be identical.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))

import stream  # examples/stream.py: the recipe

N = 100_000


def sea() -> tuple[np.ndarray, np.ndarray, list[int]]:
    return stream.sea(N // 4, (8.0, 9.0, 7.0, 9.5), seed=0)


def stationary() -> tuple[np.ndarray, np.ndarray, list[int]]:
    X, y, _ = stream.sea(N, (8.0,), seed=2)
    return X, y, [i * N // 4 for i in range(4)]


def hyperplane(
    n: int = N, d: int = 10, turn: float = np.pi, noise: float = 0.05, seed: int = 1
) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """A hyperplane through the centre of [0, 1]^d whose normal turns by ``turn`` radians."""
    rng = np.random.default_rng(seed)
    a, b = np.linalg.qr(rng.normal(size=(d, 2)))[0].T  # two orthonormal directions
    X = rng.uniform(size=(n, d))
    angle = turn * np.arange(n) / n
    normal = np.cos(angle)[:, None] * a + np.sin(angle)[:, None] * b
    y = (np.einsum("ij,ij->i", X - 0.5, normal) > 0).astype(int)
    flip = rng.random(n) < noise
    y[flip] = 1 - y[flip]
    return X, y, [i * n // 4 for i in range(4)]


STREAMS: dict[str, tuple[Callable[[], tuple[np.ndarray, np.ndarray, list[int]]], bool]] = {
    "sea": (sea, True),  # (generator, whether the quarters are abrupt concepts)
    "hyperplane": (hyperplane, False),
    "stationary": (stationary, False),
}


def fingerprint(result: stream.Result) -> str:
    """What must not change between runs: every served answer and every outcome."""
    h = hashlib.sha256(np.packbits(result.correct).tobytes())
    for labelled, outcome in result.outcomes:
        h.update(f"{labelled}:{outcome.status}:{outcome.reasons}".encode())
    return h.hexdigest()[:12]


def run_loop(
    name: str, X: np.ndarray, y: np.ndarray, starts: list[int], abrupt: bool, repeats: int,
    make_model: Callable[[], Any], label: str,
) -> dict[str, Any]:  # fmt: skip
    prints: set[str] = set()
    seconds = []
    result: stream.Result | None = None
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            result = stream.run(X, y, root=Path(tmp) / "registry", make_model=make_model)
        prints.add(fingerprint(result))
        seconds.append(result.seconds)
    assert result is not None
    bounds = [*starts, len(y)]
    delays = []
    if abrupt:
        for drift in starts[1:]:
            after = [d - (drift - stream.FIRST) for d in result.detections]
            fired = [d for d in after if d > 0]
            delays.append(min(fired) if fired else None)
    worse = sum(
        1
        for _, o in result.outcomes
        if o.status == "promoted" and o.gate is not None and o.gate.improvement < 0
    )
    return {
        "stream": name,
        "method": label,
        "quarters": [result.accuracy(bounds[k], bounds[k + 1]) for k in range(len(starts))],
        "overall": result.accuracy(),
        "delays": delays,
        "retrains": result.stats.get("retrains", 0),
        "promotions": result.count("promoted"),
        "rejections": result.count("rejected"),
        "rollbacks": result.count("rolled_back"),
        "worse_promoted": worse,
        "identical": len(prints) == 1,
        "seconds": min(seconds),
    }


def run_river(
    name: str, X: np.ndarray, y: np.ndarray, starts: list[int], label: str, make: Callable[[], Any]
) -> dict[str, Any]:
    model = make()
    keys = [f"x{i}" for i in range(X.shape[1])]
    rows = [dict(zip(keys, r, strict=True)) for r in X.tolist()]
    labels = y.tolist()
    correct = np.zeros(len(labels), dtype=bool)
    began = time.perf_counter()
    for i, (x, yi) in enumerate(zip(rows, labels, strict=True)):
        correct[i] = model.predict_one(x) == yi
        model.learn_one(x, yi)
    seconds = time.perf_counter() - began
    bounds = [*starts, len(y)]
    scored = correct[stream.FIRST :]
    quarters = [
        float(correct[max(a, stream.FIRST) : b].mean()) for a, b in itertools.pairwise(bounds)
    ]
    return {
        "stream": name,
        "method": label,
        "quarters": quarters,
        "overall": float(scored.mean()),
        "delays": [],
        "retrains": None,
        "promotions": None,
        "rejections": None,
        "rollbacks": None,
        "worse_promoted": None,
        "identical": None,
        "seconds": seconds,
    }


def river_models(which: list[str]) -> dict[str, Callable[[], Any]]:
    try:
        from river import drift, forest, tree
    except ImportError:
        print("river is not installed: pip install river (benchmark only) to compare")
        return {}
    known: dict[str, tuple[str, Callable[[], Any]]] = {
        "hoeffding": ("river HoeffdingTree", tree.HoeffdingTreeClassifier),
        "retrain": (
            "river DriftRetraining(HT, DDM)",
            lambda: drift.DriftRetrainingClassifier(
                model=tree.HoeffdingTreeClassifier(), drift_detector=drift.binary.DDM()
            ),
        ),
        "arf": ("river ARF (10 trees)", lambda: forest.ARFClassifier(n_models=10, seed=42)),
    }
    return dict(known[w] for w in which)


def table(rows: list[dict[str, Any]]) -> str:
    def num(v: Any) -> str:
        return "" if v is None else str(v)

    lines = [
        "| stream | method | prequential accuracy by quarter / concept | overall | detection "
        "delay (labelled rows) | retrains | promoted | rejected | rolled back | worse promoted "
        "| identical runs | seconds |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        quarters = " / ".join(f"{q:.3f}" for q in r["quarters"])
        delays = ", ".join("missed" if d is None else f"{d:,}" for d in r["delays"])
        identical = "" if r["identical"] is None else ("yes" if r["identical"] else "NO")
        lines.append(
            f"| {r['stream']} | {r['method']} | {quarters} | **{r['overall']:.3f}** | {delays} "
            f"| {num(r['retrains'])} | {num(r['promotions'])} | {num(r['rejections'])} "
            f"| {num(r['rollbacks'])} | {num(r['worse_promoted'])} | {identical} "
            f"| {r['seconds']:.1f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--streams", default="sea,hyperplane,stationary")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--river", default="hoeffding,retrain,arf")
    parser.add_argument("--no-river", action="store_true")
    parser.add_argument(
        "--logistic", action="store_true", help="also run the loop with a LogisticRegression"
    )
    args = parser.parse_args()
    models = {} if args.no_river else river_models(args.river.split(","))
    rows = []
    for name in args.streams.split(","):
        generate, abrupt = STREAMS[name]
        X, y, starts = generate()
        loops: list[tuple[str, Callable[[], Any]]] = [("modeldeploy loop (HGB)", stream.model)]
        if args.logistic:
            loops.append(("modeldeploy loop (logistic)", LogisticRegression))
        for label, make_model in loops:
            rows.append(run_loop(name, X, y, starts, abrupt, args.repeats, make_model, label))
            print(table(rows[-1:]).splitlines()[-1], flush=True)
        for label, make in models.items():
            rows.append(run_river(name, X, y, starts, label, make))
            print(table(rows[-1:]).splitlines()[-1], flush=True)
    print()
    print(table(rows))


if __name__ == "__main__":
    main()
