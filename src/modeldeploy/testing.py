"""Helpers for your own tests: many threads at once, and a monitor that records what it gets.

Examples
--------
>>> from modeldeploy.testing import RecordingMonitor, run_concurrently
>>> run_concurrently(3, lambda k: k * 10)
[0, 10, 20]
>>> monitor = RecordingMonitor()
>>> monitor.log_predictions([[1.0]], [0], ids=["a"], version="m:1")
>>> monitor.batches[0]["ids"], monitor.batches[0]["version"]
(['a'], 'm:1')
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

__all__ = ["RecordingMonitor", "run_concurrently"]


def run_concurrently(n: int, target: Callable[[int], Any], *, timeout: float = 60.0) -> list[Any]:
    """Call ``target(k)`` for k in ``range(n)`` from ``n`` threads released at the same moment.

    Returns each call's result, or the exception it raised, in ``k`` order. Raises
    ``AssertionError`` when a thread is still running after ``timeout`` seconds.
    """
    results: list[Any] = [None] * n
    start = threading.Barrier(n)

    def call(k: int) -> None:
        start.wait()
        try:
            results[k] = target(k)
        except Exception as exc:  # handed back to the test, which asserts on it
            results[k] = exc

    threads = [threading.Thread(target=call, args=(k,)) for k in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    if any(t.is_alive() for t in threads):
        raise AssertionError(f"some of the {n} threads were still running after {timeout} s")
    return results


class RecordingMonitor:
    """A :class:`~modeldeploy.typing.MonitorSink` that keeps every call, for assertions.

    Parameters
    ----------
    fail
        Raise from ``log_predictions`` (to test that a failing monitor never fails a request).
    gate
        A ``threading.Event`` that ``log_predictions`` waits for (to test that a slow monitor
        never slows a request down).

    Attributes
    ----------
    batches
        One dict per ``log_predictions`` call: ``X``, ``y``, ``ids``, ``proba``, ``version``,
        ``latency``.
    errors, error_versions
        The errors passed to ``log_error`` and the version of each.
    """

    def __init__(self, *, fail: bool = False, gate: threading.Event | None = None) -> None:
        self.fail = fail
        self.gate = gate
        self.batches: list[dict[str, Any]] = []
        self.errors: list[BaseException] = []
        self.error_versions: list[str | None] = []
        self._lock = threading.Lock()

    def log_predictions(
        self,
        X: Any,
        y_pred: Any,
        *,
        ids: Any = None,
        y_proba: Any = None,
        version: str | None = None,
        latency_s: float | None = None,
    ) -> None:
        """Record one scored batch."""
        if self.gate is not None:
            self.gate.wait(30)
        with self._lock:
            self.batches.append(
                {"X": X, "y": y_pred, "ids": ids, "proba": y_proba, "version": version,
                 "latency": latency_s}
            )  # fmt: skip
        if self.fail:
            raise RuntimeError("monitor is down")

    def log_error(self, error: BaseException, *, version: str | None = None) -> None:
        """Record one failed request."""
        with self._lock:
            self.errors.append(error)
            self.error_versions.append(version)
