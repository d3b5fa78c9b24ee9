"""Handing what an ``OnlineDeployer`` served to its monitor, off the hot path."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from modeldeploy._config import DEFAULT_BACKGROUND_QUEUE_SIZE
from modeldeploy.deployers.online.traffic import BackgroundWorker
from modeldeploy.typing import MonitorSink

# Logged under the deployer's own name, which the online guide documents.
logger = logging.getLogger("modeldeploy.deployers.online")


class MonitorFeed:
    """A bounded queue to a [`MonitorSink`][modeldeploy.typing.MonitorSink], drained by a daemon
    thread.

    Items are ``(method, X, out, ids, slot, latency_s)`` for a scored request (``slot`` is
    ``None`` for the fallback) or ``("error", exc, label)``. A full queue drops the item (the
    caller counts it); the monitor's failures are logged, never raised.
    """

    def __init__(self, monitor: MonitorSink) -> None:
        self.monitor = monitor
        self._worker = BackgroundWorker(
            self._hand_over, name="monitor", maxsize=DEFAULT_BACKGROUND_QUEUE_SIZE
        )

    def offer(self, item: tuple[Any, ...]) -> bool:
        """Queue one item without waiting; False when the queue is full."""
        return self._worker.offer(item)

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until what was queued so far reached the monitor."""
        return self._worker.flush(timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Hand over what is queued (waiting at most ``timeout`` s), then stop."""
        self._worker.close(timeout=timeout)

    def _hand_over(self, items: list[Any]) -> None:
        monitor = self.monitor
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
