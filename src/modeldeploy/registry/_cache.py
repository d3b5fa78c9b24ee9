"""The in-process cache of loaded models: bounded, least recently used first out."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any


class ModelCache:
    """Loaded models keyed by their artifact's sha256, at most ``size`` of them.

    Safe from many threads. A model is never None (it has ``predict``), so `get` returns
    None for a miss. ``size=0`` keeps nothing.

    Parameters
    ----------
    size
        How many models to keep; the least recently used goes first.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._models: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, sha256: str) -> Any | None:
        """The cached model of ``sha256`` (now the most recently used), or None."""
        with self._lock:
            model = self._models.get(sha256)
            if model is not None:
                self._models.move_to_end(sha256)
            return model

    def put(self, sha256: str, model: Any) -> None:
        """Keep ``model`` under ``sha256``, dropping the least recently used beyond ``size``."""
        if not self.size:
            return
        with self._lock:
            self._models[sha256] = model
            self._models.move_to_end(sha256)
            while len(self._models) > self.size:
                self._models.popitem(last=False)

    def clear(self) -> None:
        """Forget every model."""
        with self._lock:
            self._models.clear()

    def __contains__(self, sha256: object) -> bool:
        with self._lock:
            return sha256 in self._models

    def __len__(self) -> int:
        with self._lock:
            return len(self._models)

    def __repr__(self) -> str:
        return f"ModelCache({len(self)}/{self.size} models)"
