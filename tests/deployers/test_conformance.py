"""Every built-in deployer passes check_deployer, with the check parameters it names."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression

from modeldeploy.checks import check_deployer
from modeldeploy.deployers import Deployer, FunctionDeployer, OnlineDeployer
from modeldeploy.registry.signature import Signature

X, y = make_classification(n_samples=120, n_features=4, random_state=3)
SIG = Signature.infer(X)
MODEL = LogisticRegression(max_iter=300).fit(X, y)

BUILT_INS: dict[str, Callable[[], Deployer]] = {
    "OnlineDeployer": lambda: OnlineDeployer(MODEL, signature=SIG),
    "FunctionDeployer": lambda: FunctionDeployer(MODEL.predict, signature=SIG),
    # The extension model: an OnlineDeployer in front of any Deployer passes the same checks.
    "OnlineDeployer(FunctionDeployer)": lambda: OnlineDeployer(
        FunctionDeployer(MODEL.predict, signature=SIG)
    ),
}


@pytest.mark.parametrize("kind", list(BUILT_INS))
def test_built_in_deployer_passes_check_deployer(kind: str) -> None:
    dep = BUILT_INS[kind]()
    passed = check_deployer(dep, X[:30], **dep.check_params)
    assert passed == ["answers", "threads", "validation", "stats", "async", "close"]
    assert dep.closed


def test_every_built_in_deployer_is_covered() -> None:
    import modeldeploy.deployers as deployers

    built_ins = {
        name
        for name, obj in vars(deployers).items()
        if isinstance(obj, type) and issubclass(obj, Deployer) and obj is not Deployer
    }
    assert built_ins <= set(BUILT_INS)


def test_check_params_are_check_deployer_arguments() -> None:
    for kind in BUILT_INS:
        dep = BUILT_INS[kind]()
        assert set(dep.check_params) <= {"threads", "close"}
        np.testing.assert_array_equal(dep.predict(X[:3]), MODEL.predict(X[:3]))
        dep.close()
