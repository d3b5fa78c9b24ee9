"""Compile a verified fast path for a model, see its report, and serve validated rows with it.

Run with ``python examples/verified_fast_path.py`` (a few seconds). The tree model needs the
optional extra ``[fast]`` (from a checkout: ``pip install -e ".[fast]"``); without it, it is
served by its own predict and the report says why.
"""

from __future__ import annotations

import numpy as np
from sklearn.datasets import make_classification
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from modeldeploy import Signature
from modeldeploy.deployers.fastpath import FastPath, compile_fast_path


def main() -> None:
    X, y = make_classification(n_samples=5_000, n_features=12, random_state=0)
    X[np.random.default_rng(0).random(X.shape) < 0.02] = np.nan  # some missing values
    signature = Signature.infer(X[:4_000])
    models = {
        "imputer + scaler + logistic": make_pipeline(
            SimpleImputer(strategy="median"), StandardScaler(), LogisticRegression()
        ),
        "histogram gradient boosting": HistGradientBoostingClassifier(max_iter=50),
    }
    for name, model in models.items():
        model.fit(X[:4_000], y[:4_000])
        fp = compile_fast_path(model, signature=signature)  # checked before it serves
        print(f"{name}: {fp.report}")

        request = X[4_000:4_010]  # what a caller sends
        rows = signature.validate(request)  # validation stays at the boundary
        assert (fp.predict(rows) == model.predict(request)).all()
        print("  first labels:", fp.predict(rows)[:5], "probabilities:", fp.predict_proba(rows)[0])

        # Store the compiled artifact next to the version; a replica reads it back.
        again = FastPath.from_bytes(fp.to_bytes(), model, signature=signature)
        print(f"  reloaded from {len(fp.to_bytes()):,} bytes: served by {again.report.served_by}")


if __name__ == "__main__":
    main()
