"""The whole strategy on a small data set that ships with scikit-learn.

Train, register, promote, load, roll back — with nothing but the core install.
Run: python examples/quickstart.py
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from modeldeploy import ModelRegistry


def main() -> None:
    X, y = load_breast_cancer(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, random_state=0)

    root = Path(tempfile.mkdtemp()) / "model-registry"
    reg = ModelRegistry(root)

    # 1. The model and its versions
    for C in (0.01, 1.0):
        model = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=1000))
        model.fit(X_train, y_train)
        f1 = f1_score(y_test, model.predict(X_test))
        v = reg.register(
            "cancer",
            model,
            sample=X_train,
            metrics={"f1": f1},
            params={"C": C},
            description=f"logistic regression, C={C}",
        )
        print(f"registered {v.ref}: f1={f1:.3f}")
    reg.promote("cancer", 1, reason="first model")
    reg.promote("cancer", 2, reason="higher f1 on the holdout")

    production = reg.get("cancer", alias="production")
    model = production.load()  # sha256-verified, cached
    signature = production.signature
    assert signature is not None  # registered with sample=
    rows = signature.validate(X_test[:5])  # checked against the registered schema
    print(f"{production.ref} predicts {model.predict(signature.to_model_input(rows))}")

    back = reg.rollback("cancer", reason="complaints from support")
    print(f"rolled back production to {back.ref}")

    print("\ntimeline:")
    for event in reg.history("cancer"):
        alias = f" @{event.alias}" if event.alias else ""
        print(f"  {event.time:%H:%M:%S} {event.kind:12s} v{event.version}{alias} {event.reason}")


if __name__ == "__main__":
    main()
