"""A custom deployer: business rules in front of a model, held to the same bar as ours.

A fraud team wants hard rules (a blocked country, an absurd amount) to decide before the model,
and the model to decide the rest. Subclassing ``Deployer`` and writing one method,
``predict_batch``, gives validation against the signature, stats, ``apredict``, ``close()`` and
the context manager; ``check_deployer`` then runs the conformance checks every modeldeploy
deployer passes (thread safety, validation, stats, close).

Then the other way round: an ``OnlineDeployer`` serves any ``Deployer`` as it serves a model
(httpx's ``Client`` over any transport), so the rules alone, as a custom deployer, get
micro-batching, a canary, a shadow, a fallback, a timeout and ``monitor=`` without a line of
their own.

Run it with ``python examples/custom_deployer.py`` (a few seconds).
"""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
from sklearn.datasets import make_classification
from sklearn.ensemble import RandomForestClassifier

from modeldeploy.checks import check_deployer
from modeldeploy.deployers import Deployer, FunctionDeployer, OnlineDeployer
from modeldeploy.exceptions import SchemaError
from modeldeploy.registry.signature import Signature
from modeldeploy.testing import RecordingMonitor, run_concurrently

FEATURES = ["amount", "country_risk", "account_age_days", "n_tx_24h", "avg_amount_30d"]


class RulesThenModel(Deployer):
    """Rules answer first (1 = fraud); the model answers the rows no rule decided.

    The model goes through an ``OnlineDeployer``, so concurrent callers still share model calls.
    """

    def __init__(self, model: Any, signature: Signature, *, max_amount: float) -> None:
        super().__init__(signature=signature, name="rules+forest")
        self.max_amount = max_amount
        self.online = OnlineDeployer(model, signature=signature, name="forest")
        self.rule_hits = 0

    def predict_batch(self, rows: np.ndarray) -> Any:
        blocked = (rows[:, 1] > 0.99) | (rows[:, 0] > self.max_amount)
        out = np.ones(rows.shape[0], dtype=np.int64)
        if not blocked.all():
            out[~blocked] = self.online.predict_batch(rows[~blocked])
        self.rule_hits += int(blocked.sum())  # approximate under threads; fine for a counter
        return out

    def close(self) -> None:
        self.online.close()
        super().close()


class Rules(Deployer):
    """The rules alone: 1 (fraud) for a blocked country or an absurd amount, else 0.

    ``predict_proba_batch`` is implemented, so ``supports_proba`` is True and an
    ``OnlineDeployer`` serving this deployer offers ``predict_proba`` too.
    """

    def __init__(self, signature: Signature, *, max_amount: float) -> None:
        super().__init__(signature=signature, name=f"rules<{max_amount:g}")
        self.max_amount = max_amount

    def predict_batch(self, rows: np.ndarray) -> Any:
        return ((rows[:, 1] > 0.99) | (rows[:, 0] > self.max_amount)).astype(np.int64)

    def predict_proba_batch(self, rows: np.ndarray) -> Any:
        hit = self.predict_batch(rows).astype(float)
        return np.column_stack([1.0 - hit, hit])


def serve_custom_deployer(X: np.ndarray, signature: Signature) -> None:
    """An OnlineDeployer in front of a custom deployer: every feature comes with it."""
    monitor = RecordingMonitor()  # a modeldeploy Monitor in production
    with OnlineDeployer(
        Rules(signature, max_amount=3.0),  # served like a model: validated, micro-batched
        fallback=0,  # answers when the rules raise, time out or are cut off by the breaker
        timeout_ms=250,  # a request that gets no answer within 250 ms gets the fallback
        monitor=monitor,  # every scored request, off the hot path
        max_wait_ms=1.0,
    ) as served:
        served.set_canary(Rules(signature, max_amount=2.5), fraction=0.2)  # sticky by key
        served.set_shadow(Rules(signature, max_amount=2.0))  # scored in the background
        answers = run_concurrently(32, lambda k: served.predict(X[k], key=f"user-{k}"))
        print("served rules:", np.concatenate(answers)[:10], "probabilities:",
              served.predict_proba(X[:1]).tolist())  # fmt: skip
        served.flush()
        print(served.stats())
        print("monitor saw", sum(len(b["y"]) for b in monitor.batches), "scored rows")


def main() -> None:
    X, y = make_classification(n_samples=3000, n_features=5, n_informative=3, random_state=0)
    X[:, 1] = (X[:, 1] - X[:, 1].min()) / np.ptp(X[:, 1])  # a risk score in [0, 1]
    signature = Signature.infer(X, names=FEATURES)
    model = RandomForestClassifier(n_estimators=30, max_depth=6, random_state=0).fit(X, y)

    dep = RulesThenModel(model, signature, max_amount=3.0)
    row = {"amount": 0.2, "country_risk": 0.3, "account_age_days": 1.0, "n_tx_24h": -0.5,
           "avg_amount_30d": 0.1}  # fmt: skip
    print("one row:", dep.predict(row), " a blocked amount:", dep.predict({**row, "amount": 9.0}))
    try:
        dep.predict({"amount": 1.0})
    except SchemaError as exc:
        print("bad request refused:", exc)
    print("async:", asyncio.run(dep.apredict(X[:3])))

    # The same checks our own deployers pass; this one also closes the deployer.
    passed = check_deployer(dep, X[:200])
    print("checks passed:", ", ".join(passed))
    print(dep.stats())

    # No class needed for a plain function.
    double_risk = FunctionDeployer(lambda batch: batch[:, 1] * 2, signature=signature)
    print("function deployer:", double_risk.predict(X[:2]), check_deployer(double_risk, X[:50]))

    serve_custom_deployer(X, signature)


if __name__ == "__main__":
    main()
