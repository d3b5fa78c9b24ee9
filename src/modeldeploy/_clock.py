"""The system clock, and the adapter that turns what users pass as ``clock=`` into a Clock.

Every class that reads time takes ``clock=``: an object with ``now()`` (an aware UTC
``datetime``), ``monotonic()`` (seconds), ``sleep(seconds)`` and ``wait(waitable, timeout)``
(see [`modeldeploy.typing.Clock`][modeldeploy.typing.Clock]). Timed waits of background loops go
through ``clock.wait`` so that they move when a [`FakeClock`][modeldeploy.testing.FakeClock] is
advanced.

What stays on the real clock on purpose: measured latencies, the micro-batcher's
``max_wait_ms``, model-call timeouts (they bound a real thread), compile and warm-up timings,
and file ages in ``ModelRegistry.gc`` (measured on the artifact store's own clock).
"""

from __future__ import annotations

import math
import numbers
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from modeldeploy.exceptions import InvalidParameterError
from modeldeploy.typing import Clock, Waitable

__all__ = ["SYSTEM_CLOCK", "SystemClock", "as_clock", "to_iso"]


class SystemClock:
    """The real clock: ``datetime.now(timezone.utc)``, ``time.monotonic()`` and real waits."""

    def now(self) -> datetime:
        """The current time, an aware UTC ``datetime``."""
        return datetime.now(timezone.utc)

    def monotonic(self) -> float:
        """Seconds from an arbitrary origin that never goes back."""
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        """Block for ``seconds``."""
        if seconds > 0:
            time.sleep(seconds)

    def wait(self, waitable: Waitable, timeout: float | None) -> bool:
        """``waitable.wait(timeout)``: a ``threading.Event`` or a held ``threading.Condition``."""
        return waitable.wait(timeout)

    def __repr__(self) -> str:
        return "SystemClock()"


#: The one system clock every class uses when given no ``clock=``.
SYSTEM_CLOCK = SystemClock()


class _CallableClock:
    """A bare callable returning a ``datetime`` or epoch seconds, seen as a Clock.

    Earlier releases took ``clock=time.time`` (Monitor) or a callable returning a ``datetime``
    (RetrainPolicy); both keep working. ``monotonic()`` follows the callable too, so a fake
    callable moves every timer of the class it is given to; waits are real.
    """

    def __init__(self, fn: Callable[[], Any]) -> None:
        self.fn = fn

    def now(self) -> datetime:
        value = self.fn()
        if isinstance(value, datetime):
            return value.astimezone(timezone.utc)
        return datetime.fromtimestamp(float(value), timezone.utc)

    def monotonic(self) -> float:
        value = self.fn()
        if isinstance(value, datetime):
            return value.timestamp()
        return float(value)

    def sleep(self, seconds: float) -> None:
        SYSTEM_CLOCK.sleep(seconds)

    def wait(self, waitable: Waitable, timeout: float | None) -> bool:
        return waitable.wait(timeout)

    def __repr__(self) -> str:
        return f"clock from {self.fn!r}"


def as_clock(clock: object, owner: str) -> Clock:
    """The Clock for a ``clock=`` argument: None means the system clock.

    Raises
    ------
    InvalidParameterError
        When ``clock`` is neither a Clock nor a callable returning an aware ``datetime`` or a
        finite number of epoch seconds.
    """
    if clock is None:
        return SYSTEM_CLOCK
    if isinstance(clock, Clock):
        return clock
    if callable(clock):
        value = clock()
        if isinstance(value, datetime):
            if value.tzinfo is None:
                raise InvalidParameterError(
                    f"The 'clock' parameter of {owner} returned a naive datetime ({value}); "
                    "a clock must return an aware UTC time: use datetime.now(timezone.utc)."
                )
            return _CallableClock(clock)
        if isinstance(value, (int, float, numbers.Real)) and math.isfinite(float(value)):
            return _CallableClock(clock)
        raise InvalidParameterError(
            f"The 'clock' parameter of {owner} must be a Clock (now(), monotonic(), sleep(), "
            "wait()) or a callable returning an aware datetime or epoch seconds. Its call "
            f"returned {type(value).__name__} instead."
        )
    raise InvalidParameterError(
        f"The 'clock' parameter of {owner} must be a Clock (now(), monotonic(), sleep(), "
        f"wait()), such as modeldeploy.testing.FakeClock, or None. Got {clock!r} instead."
    )


def to_iso(moment: datetime) -> str:
    """An aware time as the ISO 8601 UTC string the registry stores (microseconds)."""
    return moment.astimezone(timezone.utc).isoformat(timespec="microseconds")
