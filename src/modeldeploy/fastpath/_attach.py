"""A registry version's compiled fast path, stored next to it for every replica to load.

Compiling the fast path of a 50-tree forest takes a few tenths of a second. A replica that
follows an alias would pay it on every promotion, during its swap;
[`attach_fast_path`][modeldeploy.fastpath.attach_fast_path] pays it once, where the version is made
(at registration, by the retraining policy, or from the command line), and replicas find the
attachment instead of compiling.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
from typing import TYPE_CHECKING, Literal

from modeldeploy._validation import check_choice
from modeldeploy.fastpath.compile import FastPathReport, compile_fast_path

if TYPE_CHECKING:
    from modeldeploy.registry.version import ModelVersion

__all__ = ["attach_fast_path", "fast_path_key"]

logger = logging.getLogger("modeldeploy.fastpath")


@functools.lru_cache(maxsize=1)
def fast_path_key() -> str:
    """Attachment key of a compiled fast path: it depends on the libraries that run it.

    A replica with other versions of numpy, scikit-learn, onnx, onnxruntime or modeldeploy looks
    under another key, finds nothing, and compiles for itself. Computed once per process (the
    modules imported do not change when packages are upgraded on disk).
    """
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    versions = {}
    for package in ("numpy", "scikit-learn", "onnx", "onnxruntime", "modeldeploy"):
        try:
            versions[package] = dist_version(package)
        except PackageNotFoundError:
            versions[package] = "none"
    digest = hashlib.sha256(json.dumps(versions, sort_keys=True).encode()).hexdigest()
    return f"fast_path-{digest[:16]}"


def attach_fast_path(
    version: ModelVersion, *, mode: Literal["auto", "require"] = "auto"
) -> FastPathReport:
    """Compile a registry version's fast path, verify it, and store it next to the version.

    An [`OnlineDeployer`][modeldeploy.OnlineDeployer] serving the version (a replica following an
    alias, in any process or on any host sharing the registry) then loads the stored fast path
    instead of compiling it. The decision is stored too when the fast path is refused (a model kind
    without one, a parity check that failed), so replicas do not try again either, and it is
    recorded once in the model's history as a ``fast_path`` event. An older attachment under
    the same key is replaced.

    Parameters
    ----------
    version
        A version read from a registry (``registry.get(name, ...)``), whose signature gives the
        parity check its reference rows.
    mode
        ``"auto"`` stores whatever the check decides; ``"require"`` raises when no verified fast
        path can serve, and stores nothing.

    Returns
    -------
    FastPathReport
        Which predictor will serve the version and why.

    Raises
    ------
    DeploymentError
        With ``mode="require"``, when the fast path is refused.
    RuntimeError
        When ``version`` was not read from a registry.

    Examples
    --------
    >>> import numpy as np, tempfile
    >>> from sklearn.linear_model import LogisticRegression
    >>> from modeldeploy import ModelRegistry
    >>> from modeldeploy.fastpath import attach_fast_path
    >>> X = np.random.default_rng(0).normal(size=(200, 3))
    >>> reg = ModelRegistry(tempfile.mkdtemp())
    >>> v = reg.register("m", LogisticRegression().fit(X, X[:, 0] > 0), sample=X)
    >>> attach_fast_path(v).served_by
    'numpy-linear'
    >>> [e.kind for e in reg.history("m")]
    ['registered', 'fast_path']
    """
    mode = check_choice(mode, "mode", "attach_fast_path", ("auto", "require"))  # type: ignore[assignment]
    fast = compile_fast_path(version.load(), signature=version.signature, mode=mode, measure=False)
    report = fast.report
    key = fast_path_key()
    version.attach(key, fast.to_bytes())
    version.record_event(
        "fast_path",
        reason=f"{report.served_by}: {report.reason}",
        details={"key": key, **report.to_dict()},
    )
    logger.info("%s: fast path attached (%s)", version.ref, report.served_by)
    return report
