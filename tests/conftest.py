"""Shared fixtures: small real models and data, a registry in a temporary folder, and the
real servers of the fleet registry (PostgreSQL and an S3-API object store).

``scripts/services.sh`` starts both servers and exports where they are. Without them the tests
that need a server skip; with ``MODELDEPLOY_REQUIRE_SERVERS=1`` (as in CI) a missing server fails
them.
"""

from __future__ import annotations

import importlib.util
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from modeldeploy import ModelRegistry


@pytest.fixture(autouse=True)
def host_cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test gets a host artifact cache of its own (never the user's ~/.cache)."""
    folder = tmp_path / "host-artifact-cache"
    monkeypatch.setenv("MODELDEPLOY_ARTIFACT_CACHE", str(folder))
    return folder


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


REQUIRE_SERVERS = os.environ.get("MODELDEPLOY_REQUIRE_SERVERS") == "1"


def _need(variable: str, what: str, package: str) -> str:
    value = os.environ.get(variable, "")
    missing = (
        f"{what}: set {variable} (source scripts/services.sh; services_start)" if not value else ""
    )
    if not missing and importlib.util.find_spec(package) is None:
        missing = f"{what}: the {package!r} package is not installed (pip install -e '.[dev]')"
    if missing:
        if REQUIRE_SERVERS:
            pytest.fail(f"MODELDEPLOY_REQUIRE_SERVERS=1 but there is no {missing}")
        pytest.skip(f"no {missing}")
    return value


@pytest.fixture
def pg_dsn() -> str:
    """The test PostgreSQL server's URL (with its password: tests only)."""
    return _need("MODELDEPLOY_TEST_PG_DSN", "PostgreSQL server", "psycopg")


@pytest.fixture
def pg_url(pg_dsn: str) -> Iterator[str]:
    """A registry URL on the test server, in a schema of its own, dropped afterwards."""
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:16]}"
    yield f"{pg_dsn}{'&' if '?' in pg_dsn else '?'}schema={schema}"
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
def s3_url() -> str:
    """A fresh prefix in the test bucket."""
    bucket = _need("MODELDEPLOY_TEST_S3_URL", "S3 server", "obstore")
    return f"{bucket.rstrip('/')}/t-{uuid.uuid4().hex[:16]}"
