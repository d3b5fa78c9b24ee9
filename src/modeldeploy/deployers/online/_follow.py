"""Following a registry alias: the `AliasFollower` an ``OnlineDeployer.follow`` holds.

A daemon thread polls the registry on the deployer's clock, and wakes at once when the
registry's store announces an alias move (PostgreSQL's LISTEN/NOTIFY); when the alias points at
another version (or the same number with another sha256), the follower hands it to the
deployer's swap.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from modeldeploy.registry import ModelRegistry
from modeldeploy.typing import Clock

# Logged under the deployer's own name, which the online guide documents.
logger = logging.getLogger("modeldeploy.deployers.online")

#: How long one wait on the registry's notifications lasts, so that stop() stays prompt.
_NOTIFY_SLICE_S = 0.25


class AliasFollower:
    """Keeps a deployer on what ``alias`` of ``name`` points at in ``registry``.

    Parameters
    ----------
    registry
        Anything with ``get(name, alias=...)`` returning a ``ModelVersion``.
    name, alias
        The model and the alias to follow.
    current
        Returns the version serving now (``None`` for a bare model).
    swap
        Called as ``swap(version, reason)`` when the alias moved.
    clock
        Times the polls.
    """

    def __init__(
        self,
        registry: Any,
        name: str,
        alias: str,
        *,
        current: Callable[[], Any],
        swap: Callable[[Any, str], None],
        clock: Clock,
    ) -> None:
        self.registry = registry
        self.name = name
        self.alias = alias
        self._current = current
        self._swap = swap
        self._clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, poll_s: float) -> None:
        """Poll every ``poll_s`` seconds (on the clock) from a daemon thread until `stop`."""

        def loop() -> None:
            while not self._wait(poll_s):
                try:
                    self.poll()
                except Exception:
                    logger.warning(
                        "following %s@%s failed; will retry", self.name, self.alias, exc_info=True
                    )

        self._thread = threading.Thread(
            target=loop, name=f"modeldeploy-follow-{self.name}", daemon=True
        )
        self._thread.start()

    def _wait(self, poll_s: float) -> bool:
        """Wait until the aliases may have moved or ``poll_s`` passed; True once stopped.

        A registry whose store announces alias moves wakes the follower at once; others are
        polled every ``poll_s`` seconds, and so is a notifying one, in case a notification was
        missed.
        """
        registry = self.registry
        if not (isinstance(registry, ModelRegistry) and registry.notifies):
            return self._clock.wait(self._stop, poll_s)
        deadline = self._clock.monotonic() + poll_s
        while not self._stop.is_set():
            left = deadline - self._clock.monotonic()
            if left <= 0:
                return False
            try:
                if registry.wait_for_change(self.name, min(left, _NOTIFY_SLICE_S)):
                    return self._stop.is_set()
            except Exception:
                logger.warning("waiting for %s to change failed; polling", self.name, exc_info=True)
                return self._clock.wait(self._stop, poll_s)
        return True

    def poll(self) -> bool:
        """Swap to what the alias points at now; True if it moved."""
        latest = self.registry.get(self.name, alias=self.alias)
        current = self._current()
        if current is not None and (latest.version, latest.sha256) == (
            current.version,
            current.sha256,
        ):
            return False
        logger.info("alias %s@%s moved to %s; swapping", self.name, self.alias, latest.ref)
        self._swap(latest, f"alias {self.alias!r} moved")
        return True

    def stop(self) -> None:
        """End the polling thread (at its next wake-up)."""
        self._stop.set()
