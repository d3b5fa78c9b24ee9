"""Background work of :class:`~modeldeploy.deployers.online.OnlineDeployer`.

Following a registry alias (the poll loop and one poll) and handing scored batches and errors
to the monitor, both off the hot path.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

import numpy as np

from modeldeploy.deployers.online._slots import _OWNER
from modeldeploy.exceptions import InvalidParameterError

if TYPE_CHECKING:
    from modeldeploy.deployers.online.deployer import OnlineDeployer

# Logged under the deployer's own name, which the online guide documents.
logger = logging.getLogger("modeldeploy.deployers.online")


def _start_following(
    dep: OnlineDeployer, registry: Any, name: str, alias: str, poll_s: float
) -> None:
    """Make ``dep`` follow ``alias`` of ``name``: a daemon thread polls every ``poll_s`` s
    (on the deployer's clock)."""
    dep._followed = (registry, name, alias)
    stop = threading.Event()
    dep._follow_stop = stop

    def loop() -> None:
        while not dep.clock.wait(stop, poll_s):
            try:
                dep.poll()
            except Exception:
                logger.warning("following %s@%s failed; will retry", name, alias, exc_info=True)

    dep._follow_thread = threading.Thread(
        target=loop, name=f"modeldeploy-follow-{name}", daemon=True
    )
    dep._follow_thread.start()


def _poll(dep: OnlineDeployer) -> bool:
    """Swap ``dep`` to what its followed alias points at; True if the alias moved."""
    if dep._followed is None:
        raise InvalidParameterError(
            f"This {_OWNER} follows no alias; build it with OnlineDeployer.follow(registry, "
            "name, alias) to poll."
        )
    registry, name, alias = dep._followed
    latest = registry.get(name, alias=alias)
    current = dep._route.primary.version
    if current is not None and (latest.version, latest.sha256) == (
        current.version,
        current.sha256,
    ):
        return False
    logger.info("alias %s@%s moved to %s; swapping", name, alias, latest.ref)
    dep._swap(latest, None, None, reason=f"alias {alias!r} moved")
    return True


def _to_monitor(dep: OnlineDeployer, items: list[Any]) -> None:
    """Hand queued batches and errors to ``dep.monitor``; its failures are logged, never raised."""
    monitor = dep.monitor
    assert monitor is not None
    for item in items:
        try:
            if item[0] == "error":
                monitor.log_error(item[1], version=item[2])
                continue
            method, X, out, ids, slot, latency = item
            label = slot.label if slot is not None else "fallback"
            proba = None
            if method == "predict_proba":
                proba = out
                classes = getattr(slot.model if slot is not None else None, "classes_", None)
                idx = np.asarray(out).argmax(axis=1)
                out = idx if classes is None else np.asarray(classes)[idx]
            monitor.log_predictions(
                X, out, ids=ids, y_proba=proba, version=label, latency_s=latency
            )
        except Exception:
            logger.warning("the monitor failed on one batch; predictions go on", exc_info=True)
