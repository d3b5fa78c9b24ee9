"""``import modeldeploy`` stays light: heavy libraries are imported when first used.

Not a timing test (timings are in benchmarks/import_time.py and docs/performance.md): it checks,
in a fresh interpreter, which modules the import pulls in.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

#: Each costs from tens to hundreds of milliseconds to import, and is needed only by some calls.
HEAVY = (
    "scipy",  # drift tests and the linear fast path's expit
    "sklearn",  # environment checks, some fast paths
    "joblib",  # the joblib format and batch pools
    "importlib.metadata",  # __version__ and fast path keys
    "asyncio",  # the async APIs
    "pandas",
    "pyarrow",
    "matplotlib",
    "dask",
    "onnxruntime",
    "psycopg",
    "obstore",
    "prometheus_client",
    "fastapi",
    "modeldeploy.integrations",
)


def modules_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys, json; print(json.dumps(sorted(sys.modules)))"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return set(json.loads(out.stdout.splitlines()[-1]))


def test_import_modeldeploy_loads_its_parts_on_first_use() -> None:
    loaded = modules_after("import modeldeploy")
    assert "modeldeploy.exceptions" in loaded  # the check itself works
    assert "modeldeploy.deployers" not in loaded and "numpy" not in loaded


def test_the_public_classes_pull_in_no_heavy_module() -> None:
    loaded = modules_after(
        "from modeldeploy import (BatchDeployer, HybridRouter, ModelRegistry, Monitor,\n"
        "    OnlineDeployer, RetrainPolicy)"
    )
    assert "modeldeploy.deployers.online.deployer" in loaded  # the check itself works
    assert [m for m in HEAVY if m in loaded] == []


@pytest.mark.parametrize(
    ("code", "needed"),
    [
        ("import modeldeploy; modeldeploy.__version__", "importlib.metadata"),
        (
            "import numpy as np\n"
            "from sklearn.linear_model import LogisticRegression\n"
            "from modeldeploy.fastpath import compile_fast_path\n"
            "X = np.random.default_rng(0).normal(size=(50, 2))\n"
            "m = LogisticRegression().fit(X, (X[:, 0] > 0).astype(int))\n"
            "compile_fast_path(m, reference=X).predict_proba(X)",
            "scipy.special",
        ),
    ],
)
def test_what_is_deferred_comes_when_used(code: str, needed: str) -> None:
    assert needed in modules_after(code)


def test_version_is_the_installed_distributions() -> None:
    from importlib.metadata import version

    import modeldeploy

    assert modeldeploy.__version__ == version("modeldeploy")
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        modeldeploy.nope  # noqa: B018
