"""Scheduled batches: rows queued by [`BatchDeployer.submit`][modeldeploy.BatchDeployer.submit] and
scored together.

A background thread scores what waits once ``flush_rows`` rows wait or the oldest request has
waited ``flush_interval_s`` (on the deployer's clock);
[`BatchDeployer.flush`][modeldeploy.BatchDeployer.flush] and `BatchDeployer.close` score it at once.
Submitters wait (back-pressure) while ten times ``flush_rows`` rows are queued.
"""

from __future__ import annotations

import concurrent.futures as cf
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from modeldeploy.deployers.batch._inputs import _is_dataframe
from modeldeploy.deployers.batch._pools import _OWNER, _CaptureFeed, _MonitorFeed, _Scorer
from modeldeploy.exceptions import DeploymentError, SchemaError
from modeldeploy.typing import Clock


class Thresholds(Protocol):
    """When a schedule scores what waits; read live, so that a changed setting holds."""

    @property
    def flush_rows(self) -> int: ...

    @property
    def flush_interval_s(self) -> float | None: ...


class _Schedule:
    """Requests waiting to be scored together; a background thread flushes on thresholds."""

    def __init__(
        self,
        thresholds: Thresholds,
        *,
        scorer: Callable[[], _Scorer],
        feed: Callable[[], _MonitorFeed | None],
        clock: Clock,
        capture: Callable[[], _CaptureFeed | None] | None = None,
    ) -> None:
        self.thresholds = thresholds
        self._scorer = scorer
        self._feed = feed
        self._capture = capture
        self._clock = clock
        self.cond = threading.Condition()
        self.pending: list[tuple[cf.Future[np.ndarray], Any, int, Any]] = []
        self.pending_rows = 0
        self.oldest = 0.0
        self.closing = False
        self.thread = threading.Thread(
            target=self._work, name="modeldeploy-batch-schedule", daemon=True
        )
        self.thread.start()

    @property
    def max_rows(self) -> int:
        """Rows queued before submitters wait; read live, so a changed ``flush_rows`` holds."""
        return max(1, int(self.thresholds.flush_rows)) * 10

    def submit(self, X: Any, ids: Any = None) -> cf.Future[np.ndarray]:
        fut: cf.Future[np.ndarray] = cf.Future()
        scorer = self._scorer()
        try:
            checked = scorer.validate(X)
        except SchemaError as exc:
            fut.set_exception(exc)
            return fut
        n = int(checked.shape[0])
        if ids is not None:
            ids = [ids] if np.ndim(ids) == 0 else list(ids)
            if len(ids) != n:
                fut.set_exception(
                    SchemaError(f"Got {len(ids)} ids for {n} rows; pass one id per row.")
                )
                return fut
        elif self._capture is not None and (capture := self._capture()) is not None:
            ids = list(capture.new_ids(n))  # the caller reads them with capture.last_ids()
        with self.cond:
            if self.closing:
                raise DeploymentError(f"This {_OWNER} is closed; submit to a new one.")
            while self.pending_rows >= self.max_rows and not self.closing:
                self.cond.wait()  # back-pressure: the flusher is behind
            if not self.pending:
                self.oldest = self._clock.monotonic()
            self.pending.append((fut, checked, n, ids))
            self.pending_rows += n
            self.cond.notify_all()
        return fut

    def _take(self) -> list[tuple[cf.Future[np.ndarray], Any, int, Any]]:
        batch, self.pending, self.pending_rows = self.pending, [], 0
        self.cond.notify_all()
        return batch

    def _work(self) -> None:
        while True:
            with self.cond:
                while not self.closing:
                    # Read the thresholds live: a user may change them on a running deployer.
                    interval = self.thresholds.flush_interval_s
                    if self.pending_rows >= self.thresholds.flush_rows:
                        break
                    if self.pending and interval is not None:
                        left = self.oldest + interval - self._clock.monotonic()
                        if left <= 0:
                            break
                        self._clock.wait(self.cond, left)
                    else:
                        self.cond.wait()
                batch = self._take()
                stop = self.closing
            self._score(batch)
            if stop:
                return

    def flush(self) -> int:
        with self.cond:
            batch = self._take()
        return self._score(batch)

    def _score(self, batch: list[tuple[cf.Future[np.ndarray], Any, int, Any]]) -> int:
        return self._score_running([b for b in batch if b[0].set_running_or_notify_cancel()])

    def _score_running(self, batch: list[tuple[cf.Future[np.ndarray], Any, int, Any]]) -> int:
        if not batch:
            return 0
        try:
            scorer = self._scorer()
        except Exception as exc:  # every queued request gets an answer, even if it is an error
            for fut, _, _, _ in batch:
                fut.set_exception(exc)
            return 0
        t0 = time.perf_counter()
        parts = [checked for _, checked, _, _ in batch]
        try:
            if len(parts) == 1:
                X = parts[0]
            elif _is_dataframe(parts[0]):
                import pandas as pd

                X = pd.concat(parts, ignore_index=True)
            else:
                X = np.concatenate(parts)
            y, _ = scorer.score(X)
        except Exception as exc:
            if len(batch) == 1:
                error = DeploymentError(
                    f"model.{scorer.method} failed on a submitted batch of {batch[0][2]} rows: "
                    f"{type(exc).__name__}: {exc}"
                )
                error.__cause__ = exc
                batch[0][0].set_exception(error)
                feed = self._feed()
                if feed is not None:
                    feed.put("error", error)
                return 0
            # One bad request must not fail the others batched with it: score them one by one.
            return sum(self._score_running([b]) for b in batch)
        offset = 0
        for fut, _, n, _ in batch:
            fut.set_result(y[offset : offset + n])
            offset += n
        capture = None if self._capture is None else self._capture()
        if capture is not None:
            capture.put(X, y, [i for b in batch for i in b[3]])
        feed = self._feed()
        if feed is not None:
            given = [b[3] for b in batch]
            ids = (
                [i for request_ids in given for i in request_ids]
                if all(g is not None for g in given)
                else np.arange(offset)
            )
            feed.put("predictions", (X, y, None, ids, time.perf_counter() - t0))
        return offset

    def close(self) -> None:
        with self.cond:
            self.closing = True
            self.cond.notify_all()
        self.thread.join()
