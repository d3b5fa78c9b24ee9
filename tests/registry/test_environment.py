"""The environment a model is saved with, and the warning when it is loaded elsewhere."""

from __future__ import annotations

import platform
import warnings

import pytest
import sklearn
from sklearn.linear_model import LogisticRegression

from modeldeploy.exceptions import EnvironmentMismatchWarning
from modeldeploy.registry._environment import environment_of, warn_environment


def test_environment_names_the_libraries_and_python() -> None:
    env = environment_of(LogisticRegression())
    assert env["python"] == platform.python_version()
    assert env["scikit-learn"] == sklearn.__version__
    assert {"numpy", "joblib", "platform"} <= set(env)


def test_an_older_scikit_learn_warns_naming_both_versions() -> None:
    saved = {"python": platform.python_version(), "scikit-learn": "0.1.0"}
    with pytest.warns(EnvironmentMismatchWarning, match=r"m:3 was saved with scikit-learn 0\.1\.0"):
        warn_environment("m", 3, saved)


def test_the_same_environment_or_an_unknown_one_is_silent() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warn_environment("m", 1, environment_of(LogisticRegression()))
        warn_environment("m", 1, {})
