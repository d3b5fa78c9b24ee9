"""A custom deployer: business rules in front of a model, held to the same bar as ours.

A fraud team wants hard rules (a blocked country, an absurd amount) to decide before the model,
and the model to decide the rest. Subclassing ``Deployer`` and writing one method,
``predict_batch``, gives validation against the signature, stats, ``apredict``, ``close()`` and
the context manager; ``check_deployer`` then runs the conformance checks every modeldeploy
deployer passes (thread safety, validation, stats, close).

Run it with ``python examples/custom_deployer.py`` (a few seconds).
"""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
from sklearn.datasets import make_classification
from sklearn.ensemble import RandomForestClassifier

from modeldeploy.checks import check_deployer
from modeldeploy.deployers.base import Deployer, FunctionDeployer
from modeldeploy.deployers.online import OnlineDeployer
from modeldeploy.exceptions import SchemaError
from modeldeploy.registry.signature import Signature

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


if __name__ == "__main__":
    main()
