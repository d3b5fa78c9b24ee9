"""Artifact stores: immutable model files addressed by key, and the local-folder default."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from modeldeploy._files import fsync_dir

__all__ = ["ArtifactStore", "LocalArtifactStore"]

_SHA256_RE = re.compile(r"[0-9a-f]{64}")


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _expected_sha256(key: str, source: Path) -> str:
    """The sha256 the content under ``key`` must have: its name for content-addressed keys."""
    last = key.rsplit("/", 1)[-1]
    return last if _SHA256_RE.fullmatch(last) else _sha256_of(source)


class ArtifactStore(ABC):
    """Stores immutable artifact files by key (the registry uses ``sha256/<hex>``)."""

    @abstractmethod
    def put(self, key: str, source: Path) -> None:
        """Store the local file ``source`` under ``key``, atomically; the source is kept.

        Content already under ``key`` counts as stored only once its sha256 is verified; a
        corrupt copy is replaced.
        """

    @abstractmethod
    def exists(self, key: str) -> bool:
        """Whether an artifact is stored under ``key``."""

    @abstractmethod
    def read(self, key: str) -> bytes:
        """The artifact's bytes; ``FileNotFoundError`` when missing."""

    def download(self, key: str, dest: BinaryIO) -> None:
        """Write the artifact's bytes to ``dest``; ``FileNotFoundError`` when missing.

        A remote store overrides it to stream into the host's artifact cache without holding
        the whole artifact in memory twice.
        """
        dest.write(self.read(key))

    @abstractmethod
    def remove(self, key: str) -> None:
        """Delete an artifact (a missing one is not an error)."""

    @abstractmethod
    def keys(self) -> Iterator[str]:
        """Every stored key."""

    def scratch_dir(self) -> Path | None:
        """A folder for staging files before [`put`][modeldeploy.registry.stores.ArtifactStore.put]
        (``None``: the system's temp dir)."""
        return None

    def modified(self, key: str) -> float | None:
        """When the artifact was last written (seconds since the epoch, on
        [`now`][modeldeploy.registry.stores.ArtifactStore.now]'s clock), or None if unknown.

        ``ModelRegistry.gc`` spares unreferenced artifacts written recently, which may belong to
        a registration still running in another process.
        """
        return None

    def now(self) -> float:
        """The current time on the clock the store stamps its writes with (epoch seconds).

        File ages are measured against it, not against this host's clock: a file server or an
        object store whose clock differs from the host's would otherwise make fresh artifacts
        look old (and ``gc`` would remove a registration in progress) or old ones look new.
        """
        return time.time()

    def cleanup(self, older_than_s: float) -> int:
        """Remove leftovers of interrupted writes older than ``older_than_s``; return a count."""
        return 0


class LocalArtifactStore(ArtifactStore):
    """Artifacts as files in a folder, written with temp file, fsync and rename.

    A removed artifact first moves to a ``trash`` folder, so that a process killed between
    removing the file and committing the metadata change loses nothing: `read` brings a
    trashed artifact back.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self._tmp = self.root / "tmp"
        self._trash = self.root / "trash"
        for d in (self.root, self._tmp, self._trash):
            d.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        if ".." in key.split("/") or key.startswith("/"):
            raise ValueError(f"Invalid artifact key {key!r}.")
        return self.root / key

    def _trash_path(self, key: str) -> Path:
        return self._trash / key.replace("/", "__")

    def scratch_dir(self) -> Path:
        return self._tmp

    def put(self, key: str, source: Path) -> None:
        final = self._path(key)
        if final.exists() and _sha256_of(final) == _expected_sha256(key, source):
            os.utime(final)  # fresh again for gc's age check
            return
        # Missing, or there but corrupt (bit rot, a partial copy): write it again. Content is
        # addressed by its hash, so a concurrent writer of the same key writes the same bytes
        # and the atomic rename below cannot lose anything.
        final.parent.mkdir(parents=True, exist_ok=True)
        staged = self._tmp / f"{final.name}.{os.getpid()}.{threading.get_ident()}.part"
        try:
            try:
                os.link(source, staged)
            except OSError:  # different filesystem, or links unsupported
                with open(source, "rb") as src, open(staged, "wb") as dst:
                    while chunk := src.read(1 << 20):
                        dst.write(chunk)
            with open(staged, "rb+") as fh:
                os.fsync(fh.fileno())
            os.replace(staged, final)
        finally:
            staged.unlink(missing_ok=True)
        fsync_dir(final.parent)

    def exists(self, key: str) -> bool:
        return self._path(key).exists() or self._trash_path(key).exists()

    def read(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            trashed = self._trash_path(key)
            if not trashed.exists():
                raise
            path.parent.mkdir(parents=True, exist_ok=True)
            os.replace(trashed, path)
            return path.read_bytes()

    def remove(self, key: str) -> None:
        path = self._path(key)
        if path.exists():
            os.replace(path, self._trash_path(key))

    def modified(self, key: str) -> float | None:
        try:
            return self._path(key).stat().st_mtime
        except FileNotFoundError:
            return None

    def keys(self) -> Iterator[str]:
        for path in self.root.rglob("*"):
            rel = path.relative_to(self.root)
            if path.is_file() and rel.parts[0] not in ("tmp", "trash"):
                yield rel.as_posix()

    def now(self) -> float:
        # The file system's own clock: the modification time of a file written just now.
        fd, name = tempfile.mkstemp(prefix="clock-", dir=self._tmp)
        try:
            return os.fstat(fd).st_mtime
        finally:
            os.close(fd)
            os.unlink(name)

    def cleanup(self, older_than_s: float) -> int:
        cutoff = self.now() - older_than_s
        removed = 0
        for folder in (self._tmp, self._trash):
            for path in folder.iterdir():
                try:
                    if path.stat().st_mtime >= cutoff:
                        continue
                except FileNotFoundError:  # removed meanwhile (another gc, a clock probe)
                    continue
                if path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
                removed += 1
        return removed
