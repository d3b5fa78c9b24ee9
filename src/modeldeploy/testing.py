"""Helpers for your own tests: a clock you move, many threads at once, and a monitor that
records what it gets.

Examples
--------
>>> from datetime import timedelta
>>> from modeldeploy.testing import FakeClock
>>> clock = FakeClock()
>>> start = clock.now()
>>> clock.advance(90)
>>> clock.now() - start == timedelta(seconds=90), clock.monotonic()
(True, 90.0)
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
from datetime import datetime, timedelta, timezone
from typing import Any

from modeldeploy._validation import check_float
from modeldeploy.exceptions import InvalidParameterError
from modeldeploy.typing import Waitable

__all__ = ["FakeClock", "RecordingMonitor", "run_concurrently"]

#: Where a FakeClock starts when given no time: fixed, so tests do not depend on today's date.
DEFAULT_FAKE_START = datetime(2030, 1, 1, tzinfo=timezone.utc)


class FakeClock:
    """A [`Clock`][modeldeploy.typing.Clock] that moves only when told to.

    Give the same instance to every object under test (``ModelRegistry(clock=...)``,
    ``Monitor(clock=...)``, ``RetrainPolicy(clock=...)``, deployers and routers), then move it
    with [`advance`][modeldeploy.testing.FakeClock.advance] to test schedules, cooldowns, windows,
    label TTLs, breaker pauses, alias polling and flush timers without sleeping. Background loops
    wait through [`wait`][modeldeploy.testing.FakeClock.wait], which returns as soon as the fake
    time reaches its deadline (checked every ``poll_s`` real seconds) or the awaited event is set.

    Parameters
    ----------
    start
        The initial ``now()``, an aware ``datetime``. Default: 2030-01-01 00:00 UTC, a fixed
        date so that tests do not depend on the day they run.
    poll_s
        How often, in real seconds, a waiting thread looks at the fake time.

    Examples
    --------
    >>> from datetime import datetime, timezone
    >>> clock = FakeClock(datetime(2031, 5, 1, tzinfo=timezone.utc))
    >>> clock.advance(3600)
    >>> clock.now().isoformat()
    '2031-05-01T01:00:00+00:00'
    >>> clock.set(datetime(2031, 4, 1, tzinfo=timezone.utc))  # a step back, as NTP may do
    >>> clock.now().month, clock.monotonic()  # monotonic time never goes back
    (4, 3600.0)
    """

    def __init__(self, start: datetime | None = None, *, poll_s: float = 0.001) -> None:
        start = DEFAULT_FAKE_START if start is None else start
        self._check_aware(start, "start")
        self.poll_s = check_float(poll_s, "poll_s", "FakeClock", min_value=0, min_inclusive=False)
        self._wall = start.astimezone(timezone.utc)
        self._mono = 0.0
        self._lock = threading.Lock()

    @staticmethod
    def _check_aware(moment: object, param: str) -> None:
        if not isinstance(moment, datetime) or moment.tzinfo is None:
            raise InvalidParameterError(
                f"The {param!r} parameter of FakeClock must be an aware datetime such as "
                f"datetime(2030, 1, 1, tzinfo=timezone.utc). Got {moment!r} instead."
            )

    def now(self) -> datetime:
        """The fake wall time (aware UTC)."""
        with self._lock:
            return self._wall

    def monotonic(self) -> float:
        """Fake seconds since the clock was made, moved only by
        [`advance`][modeldeploy.testing.FakeClock.advance]."""
        with self._lock:
            return self._mono

    def advance(self, seconds: float) -> None:
        """Move both the wall time and the monotonic time forward by ``seconds``."""
        seconds = check_float(seconds, "seconds", "FakeClock.advance", min_value=0)
        with self._lock:
            self._wall += timedelta(seconds=seconds)
            self._mono += seconds

    def set(self, moment: datetime) -> None:
        """Set the wall time (forward or back, as an NTP step would); the monotonic time stays
        where it is."""
        self._check_aware(moment, "moment")
        with self._lock:
            self._wall = moment.astimezone(timezone.utc)

    def sleep(self, seconds: float) -> None:
        """Block until another thread has advanced the clock by ``seconds``."""
        self.wait(threading.Event(), seconds)

    def wait(self, waitable: Waitable, timeout: float | None) -> bool:
        """Wait on ``waitable`` until it is set or notified (True) or until the fake time has
        moved ``timeout`` seconds (False)."""
        if timeout is None:
            return waitable.wait(None)
        deadline = self.monotonic() + timeout
        while True:
            if waitable.wait(self.poll_s if timeout > 0 else 0):
                return True
            if self.monotonic() >= deadline:
                return False

    def __repr__(self) -> str:
        return f"FakeClock({self.now().isoformat()}, monotonic={self.monotonic():g})"


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
    """A [`MonitorSink`][modeldeploy.typing.MonitorSink] that keeps every call, for assertions.

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
