"""The library versions a model is saved with, and the warning when loading elsewhere."""

from __future__ import annotations

import contextlib
import sys
import warnings
from collections.abc import Mapping
from typing import Any

from modeldeploy.exceptions import EnvironmentMismatchWarning


def environment_of(model: Any) -> dict[str, str]:
    """Python, numpy, scikit-learn, joblib, the platform, and the model's own library."""
    import platform
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    import joblib
    import numpy
    import sklearn

    env = {
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "scikit-learn": sklearn.__version__,
        "joblib": joblib.__version__,
        "platform": sys.platform,
    }
    top = type(model).__module__.split(".")[0]
    if top not in ("sklearn", "numpy", "builtins", "__main__", "modeldeploy"):
        with contextlib.suppress(PackageNotFoundError):
            env[top] = dist_version(top)
    return env


def warn_environment(
    name: str, version: int, saved: Mapping[str, str], *, stacklevel: int = 3
) -> None:
    """Warn ([`EnvironmentMismatchWarning`][modeldeploy.exceptions.EnvironmentMismatchWarning]) when
    Python's minor version or
    scikit-learn's version differ from those ``name:version`` was saved with."""
    import platform

    import sklearn

    now = {
        "python": ".".join(platform.python_version().split(".")[:2]),
        "scikit-learn": sklearn.__version__,
    }
    then = {
        "python": ".".join(str(saved.get("python", "")).split(".")[:2]),
        "scikit-learn": saved.get("scikit-learn", ""),
    }
    diffs = [f"{k} {then[k]} (now {now[k]})" for k in now if then[k] and then[k] != now[k]]
    if diffs:
        warnings.warn(
            f"{name}:{version} was saved with {', '.join(diffs)}. Its predictions may differ or "
            "loading may fail; retrain or re-register it with the current versions.",
            EnvironmentMismatchWarning,
            stacklevel=stacklevel,
        )
