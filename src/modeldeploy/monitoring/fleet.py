"""A fleet of replicas, one view: each replica's monitor publishes snapshots periodically.

Every replica (a uvicorn or gunicorn worker, a pod) keeps its own [`Monitor`][modeldeploy.Monitor]
with a time-based window and a [`MonitorPublisher`][modeldeploy.MonitorPublisher] that writes its
snapshot to a shared place every few seconds; [`Monitor.fleet`][modeldeploy.Monitor.fleet] merges
the latest snapshots exactly into one monitor, the fleet view.
"""

from __future__ import annotations

import logging
import threading
from types import TracebackType
from typing import Any

from modeldeploy._config import DEFAULT_PUBLISH_EVERY_S
from modeldeploy._validation import check_float
from modeldeploy.monitoring._snapshots import SnapshotPlace, check_name, default_replica
from modeldeploy.monitoring.monitor import Monitor

__all__ = ["MonitorPublisher"]

logger = logging.getLogger("modeldeploy.monitoring")

_OWNER = "MonitorPublisher"


class MonitorPublisher:
    """Publish a monitor's snapshot to a shared place now and every ``every_s`` seconds.

    A daemon thread calls [`Monitor.publish`][modeldeploy.Monitor.publish]; a failure
    (a full disk, an object store out of reach) is logged and counted in `failures`,
    never raised into the serving process, and the next round tries again.
    [`close`][modeldeploy.MonitorPublisher.close] stops the thread and publishes a last time, so a
    replica that shuts down cleanly leaves its final counts behind (they count in the fleet view
    until they leave the window).

    Parameters
    ----------
    monitor
        The replica's monitor (with a time-based window, so that replicas merge).
    place
        A shared folder, an [`ArtifactStore`][modeldeploy.registry.stores.ArtifactStore], or a
        [`ModelRegistry`][modeldeploy.ModelRegistry] (its artifact store).
    replica
        This replica's name; default: host name and process id.
    fleet
        The fleet's name in an artifact store.
    every_s
        Seconds between two snapshots (default 10).

    Examples
    --------
    >>> import datetime as dt, tempfile
    >>> shared = tempfile.mkdtemp()
    >>> mon = Monitor(window=dt.timedelta(minutes=30), reference_predictions=[0, 1])
    >>> with MonitorPublisher(mon, shared, replica="worker-1", every_s=60) as publisher:
    ...     mon.log_predictions(None, [1, 0, 1], y_true=[1, 0, 0])
    >>> publisher.published, publisher.failures  # at start and at close
    (2, 0)
    >>> Monitor.fleet(shared).metrics()["n_labelled"]
    3
    """

    def __init__(
        self,
        monitor: Monitor,
        place: Any,
        *,
        replica: str | None = None,
        fleet: str = "default",
        every_s: float = DEFAULT_PUBLISH_EVERY_S,
    ) -> None:
        self.monitor = monitor
        self.place = place
        self.fleet = fleet
        self.every_s = check_float(every_s, "every_s", _OWNER, min_value=0, min_inclusive=False)
        SnapshotPlace(place, fleet)  # a bad place or fleet name fails here, not in the thread
        self.replica = default_replica() if replica is None else check_name(replica, "replica")
        self.published = 0
        self.failures = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"modeldeploy-publisher-{self.replica}", daemon=True
        )
        self._lock = threading.Lock()
        self.publish()
        self._thread.start()

    def publish(self) -> bool:
        """Publish one snapshot now; True when it was written (a failure is logged)."""
        with self._lock:
            try:
                self.monitor.publish(self.place, replica=self.replica, fleet=self.fleet)
            except Exception:
                self.failures += 1
                logger.warning(
                    "could not publish the monitor snapshot of %r (failure %d); trying again "
                    "in %g s",
                    self.replica,
                    self.failures,
                    self.every_s,
                    exc_info=True,
                )
                return False
            self.published += 1
            return True

    def close(self) -> None:
        """Stop publishing, after one last snapshot (idempotent)."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._thread.join()
        self.publish()

    def _run(self) -> None:
        # The monitor's clock times the period, so a FakeClock moves the publisher too.
        while not self.monitor.clock.wait(self._stop, self.every_s):
            self.publish()

    def __enter__(self) -> MonitorPublisher:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._stop.is_set() else f"every {self.every_s:g} s"
        return (
            f"MonitorPublisher({self.replica!r}, {state}, {self.published} published, "
            f"{self.failures} failed)"
        )
