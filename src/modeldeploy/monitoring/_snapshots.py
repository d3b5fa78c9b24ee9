"""Where replicas publish their monitor snapshots: a shared folder, or the registry's artifacts.

A `SnapshotPlace` holds one snapshot per replica, named after it, each replaced whole
on every publish (a temporary file and a rename in a folder; one ``put`` in an artifact
store), so a reader sees either the previous snapshot or the new one, never a mix.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from modeldeploy.exceptions import InvalidParameterError
from modeldeploy.monitoring._persist import read_state, state_bytes, write_state
from modeldeploy.registry import ArtifactStore

__all__ = ["SnapshotPlace", "check_name", "default_replica"]

logger = logging.getLogger("modeldeploy.monitoring")

#: File names (and artifact keys) of snapshots end with this.
SUFFIX = ".monitor.npz"
#: Where snapshots go in an artifact store: ``monitor-snapshots/<fleet>/<replica>.monitor.npz``.
PREFIX = "monitor-snapshots"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


class SnapshotPlace:
    """The shared place of one fleet's monitor snapshots.

    Parameters
    ----------
    place
        A folder (created when missing), an
        [`ArtifactStore`][modeldeploy.registry.stores.ArtifactStore], or a
        [`ModelRegistry`][modeldeploy.ModelRegistry] (its artifact store: S3 for a shared registry).
    fleet
        The fleet's name in an artifact store (one store can hold several fleets); a folder
        is one fleet.

    Examples
    --------
    >>> import tempfile
    >>> place = SnapshotPlace(tempfile.mkdtemp())
    >>> place.put("worker-1", {"params": {}, "published_at": 0.0})
    >>> [(name, state["published_at"]) for name, state in place.states()]
    [('worker-1', 0.0)]
    """

    def __init__(self, place: Any, fleet: str = "default") -> None:
        self.fleet = check_name(fleet, "fleet")
        store = getattr(place, "artifacts", place)  # a ModelRegistry gives its artifact store
        if isinstance(store, ArtifactStore):
            self.store: ArtifactStore | None = store
            self.folder: Path | None = None
        elif isinstance(place, (str, os.PathLike)):
            self.store = None
            self.folder = Path(place)
        else:
            raise InvalidParameterError(
                "The 'place' of monitor snapshots must be a folder (a str or a path), an "
                f"ArtifactStore or a ModelRegistry. Got {type(place).__name__} instead."
            )

    def __repr__(self) -> str:
        where = self.folder if self.store is None else f"{self.store!r} ({PREFIX}/{self.fleet})"
        return f"SnapshotPlace({where})"

    def put(self, replica: str, state: dict[str, Any]) -> None:
        """Replace ``replica``'s snapshot with ``state``, atomically."""
        name = check_name(replica, "replica") + SUFFIX
        if self.store is None:
            assert self.folder is not None
            self.folder.mkdir(parents=True, exist_ok=True)
            write_state(self.folder / name, state)
            return
        scratch = self.store.scratch_dir()
        fd, tmp = tempfile.mkstemp(suffix=SUFFIX, dir=scratch)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(state_bytes(state))
            self.store.put(f"{PREFIX}/{self.fleet}/{name}", Path(tmp))
        finally:
            Path(tmp).unlink(missing_ok=True)

    def states(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """Every replica's snapshot: ``(replica, state)``; one that cannot be read is skipped
        and logged (a foreign or damaged file must not hide the others)."""
        for replica, read in self._sources():
            try:
                yield replica, read_state(read())
            except FileNotFoundError:  # removed since listed
                continue
            except Exception:
                logger.warning(
                    "skipped the monitor snapshot of %r in %r: it cannot be read",
                    replica,
                    self,
                    exc_info=True,
                )

    def _sources(self) -> Iterator[tuple[str, Any]]:
        if self.store is None:
            assert self.folder is not None
            if not self.folder.is_dir():
                return
            for path in sorted(self.folder.glob(f"*{SUFFIX}")):
                yield path.name[: -len(SUFFIX)], path.read_bytes
            return
        store = self.store
        prefix = f"{PREFIX}/{self.fleet}/"
        listed = store.keys()  # an ArtifactStore is no mapping: keys() lists what it stores
        for key in sorted(k for k in listed if k.startswith(prefix) and k.endswith(SUFFIX)):
            yield key[len(prefix) : -len(SUFFIX)], lambda key=key: store.read(key)


def default_replica() -> str:
    """This process's replica name: the host name and the process id."""
    host = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname())[:100] or "host"
    return f"{host}-{os.getpid()}"


def check_name(value: Any, what: str) -> str:
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise InvalidParameterError(
            f"The '{what}' name of a monitor snapshot must be 1-128 letters, digits, '.', '_' "
            f"or '-' (starting with a letter or digit). Got {value!r} instead."
        )
    return value
