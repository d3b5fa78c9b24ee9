"""Shared fixtures: small real models and data, and a registry in a temporary folder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from modeldeploy import ModelRegistry


@pytest.fixture
def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 4))
    y = (X[:, 0] + 0.5 * X[:, 1] > 0).astype(int)
    return X, y


@pytest.fixture
def model(data: tuple[np.ndarray, np.ndarray]) -> LogisticRegression:
    X, y = data
    return LogisticRegression().fit(X, y)


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[ModelRegistry]:
    reg = ModelRegistry(tmp_path / "registry")
    yield reg
    reg.close()
