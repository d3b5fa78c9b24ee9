"""Conformance checks for deployers: ours run them in our tests; run them on yours in yours.

[`check_deployer`][modeldeploy.checks.check_deployer] holds a deployer to the contract every
modeldeploy deployer keeps: one answer per row, the same answer whether a row comes alone or in a
batch, correct answers under concurrent calls, ``SchemaError`` for bad input without harm to later
requests, stats that count requests, an ``apredict`` that agrees with ``predict``, and a ``close``
that stops serving.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from modeldeploy.deployers.base import Deployer
from modeldeploy.exceptions import DeploymentError, InvalidParameterError, SchemaError

__all__ = ["check_deployer"]


def _expect(ok: bool, message: str) -> None:
    # An explicit raise, not assert: the checks must hold under python -O too.
    if not ok:
        raise AssertionError(message)


def _same(a: Any, b: Any) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        return False
    if a.dtype.kind in "fc" and b.dtype.kind in "fc":
        return bool(np.allclose(a, b, rtol=1e-7, atol=1e-12, equal_nan=True))
    return bool(np.array_equal(a, b))


def _served(deployer: Deployer) -> int:
    return sum(v.requests for v in deployer.stats().versions if v.role in ("primary", "canary"))


def _check_answers(dep: Deployer, X: np.ndarray, ref: np.ndarray) -> None:
    _expect(
        ref.shape[0] == X.shape[0],
        f"predict returned {ref.shape[0]} answers for {X.shape[0]} rows; expected one per row",
    )
    one = np.asarray(dep.predict(X[0]))
    _expect(
        one.shape[:1] == (1,), f"predict of one 1-D row returned shape {one.shape}, not (1, ...)"
    )
    for i in range(min(X.shape[0], 16)):
        alone = dep.predict(X[i : i + 1])
        _expect(
            _same(alone, ref[i : i + 1]),
            f"row {i} predicted alone gave {alone!r} but {ref[i : i + 1]!r} within the batch",
        )


def _check_threads(dep: Deployer, X: np.ndarray, ref: np.ndarray, threads: int) -> None:
    failures: list[str] = []
    start = threading.Barrier(threads)

    def caller(k: int) -> None:
        rng = np.random.default_rng(k)
        start.wait()
        for _ in range(20):
            idx = rng.choice(X.shape[0], size=int(rng.integers(1, 4)), replace=False)
            try:
                got = dep.predict(X[idx])
            except Exception as exc:  # reported below, with the thread that saw it
                failures.append(f"thread {k}: {type(exc).__name__}: {exc}")
                return
            if not _same(got, ref[idx]):
                failures.append(f"thread {k}: rows {idx.tolist()} got {got!r}, not {ref[idx]!r}")
                return

    workers = [threading.Thread(target=caller, args=(k,)) for k in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    _expect(not any(w.is_alive() for w in workers), "concurrent calls did not finish within 60 s")
    _expect(not failures, "concurrent calls gave wrong answers: " + "; ".join(failures[:3]))


def _check_validation(dep: Deployer, X: np.ndarray, ref: np.ndarray) -> None:
    bad: list[tuple[str, Any]] = [
        ("a row with one column too many", np.hstack([X[:1], X[:1, :1]])),
        ("a 3-D array", X[None, :2]),
    ]
    if X.dtype.kind in "biuf":
        row = X[:1].astype(object)
        row[0, 0] = "not a number"
        bad.append(("a string in a numeric column", row))
    for what, request in bad:
        try:
            dep.predict(request)
        except SchemaError:
            continue
        except Exception as exc:
            raise AssertionError(
                f"predict of {what} raised {type(exc).__name__}, not SchemaError: {exc}"
            ) from exc
        raise AssertionError(f"predict of {what} did not raise SchemaError")
    _expect(_same(dep.predict(X), ref), "after rejecting bad requests, predict answers differently")


def _check_stats(dep: Deployer, X: np.ndarray) -> None:
    before = _served(dep)
    for i in range(3):
        dep.predict(X[i : i + 1])
    after = _served(dep)
    _expect(
        after - before == 3, f"3 predict calls raised the stats' request count by {after - before}"
    )
    stats = dep.stats()
    _expect(isinstance(repr(stats), str), "stats() has no repr")
    html = stats._repr_html_()
    _expect(isinstance(html, str) and html.startswith("<"), "stats()._repr_html_ is not HTML")


def _check_async(dep: Deployer, X: np.ndarray, ref: np.ndarray) -> None:
    async def run() -> list[Any]:
        return list(
            await asyncio.gather(*(dep.apredict(X[i : i + 1]) for i in range(min(8, len(X)))))
        )

    got = asyncio.run(run())
    for i, answer in enumerate(got):
        _expect(_same(answer, ref[i : i + 1]), f"apredict of row {i} differs from predict")


def _check_close(dep: Deployer, X: np.ndarray) -> None:
    dep.close()
    _expect(dep.closed, "closed is False after close()")
    try:
        dep.predict(X[:1])
    except DeploymentError:
        pass
    else:
        raise AssertionError("predict after close() did not raise DeploymentError")
    dep.close()  # a second close is harmless


def check_deployer(
    deployer: Deployer, X: Any, *, threads: int = 8, close: bool = True
) -> list[str]:
    """Check that ``deployer`` keeps the deployer contract.

    Parameters
    ----------
    deployer
        A [`Deployer`][modeldeploy.Deployer] (subclass instance) ready to serve.
    X
        A 2-D array of at least two valid rows.
    threads
        Concurrent callers in the thread-safety check.
    close
        Also check `close` (last, as it ends the deployer).

    Returns
    -------
    list of str
        The names of the checks run, all passed.

    Raises
    ------
    AssertionError
        Naming the first check that failed and what was seen.

    Examples
    --------
    >>> import numpy as np
    >>> from modeldeploy.deployers.base import FunctionDeployer
    >>> dep = FunctionDeployer(lambda X: X.sum(axis=1))
    >>> check_deployer(dep, np.arange(12.0).reshape(6, 2))
    ['answers', 'threads', 'validation', 'stats', 'async', 'close']
    """
    if not isinstance(deployer, Deployer):
        raise InvalidParameterError(
            f"The 'deployer' parameter of check_deployer must be a Deployer. Got {deployer!r}."
        )
    X = np.asarray(X)
    if X.ndim != 2 or X.shape[0] < 2:
        raise InvalidParameterError(
            f"The 'X' parameter of check_deployer must be a 2-D array of at least 2 rows. Got "
            f"shape {X.shape} instead."
        )
    ref = np.asarray(deployer.predict(X))
    checks: list[tuple[str, Callable[[], None]]] = [
        ("answers", lambda: _check_answers(deployer, X, ref)),
        ("threads", lambda: _check_threads(deployer, X, ref, threads)),
        ("validation", lambda: _check_validation(deployer, X, ref)),
        ("stats", lambda: _check_stats(deployer, X)),
        ("async", lambda: _check_async(deployer, X, ref)),
    ]
    if close:
        checks.append(("close", lambda: _check_close(deployer, X)))
    done = []
    for name, check in checks:
        try:
            check()
        except AssertionError as exc:
            raise AssertionError(f"{type(deployer).__name__} failed check {name!r}: {exc}") from exc
        done.append(name)
    return done
