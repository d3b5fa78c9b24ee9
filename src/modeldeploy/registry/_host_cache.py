"""A host-local, content-addressed copy of a remote store's artifacts, shared by its processes."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import BinaryIO

from modeldeploy._config import DEFAULT_ARTIFACT_CACHE_LIMIT_BYTES
from modeldeploy.exceptions import InvalidParameterError

__all__ = ["HostArtifactCache", "default_cache_dir"]

logger = logging.getLogger("modeldeploy.registry")

_OWNER = "HostArtifactCache"
#: The environment variable naming the cache folder, or ``off``.
ENV_VAR = "MODELDEPLOY_ARTIFACT_CACHE"
_OFF = {"off", "0", "false", "no", "none"}
#: Temp files of a filler older than this are leftovers of a killed process.
_STALE_TMP_S = 3600.0


def default_cache_dir(environ: Mapping[str, str] | None = None) -> Path:
    """``${XDG_CACHE_HOME:-~/.cache}/modeldeploy/artifacts``, as pip and huggingface_hub do."""
    env = os.environ if environ is None else environ
    base = env.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "modeldeploy" / "artifacts"


class _HashingWriter:
    """A file that hashes and counts what is written to it."""

    def __init__(self, fh: BinaryIO) -> None:
        self.fh = fh
        self.digest = hashlib.sha256()
        self.size = 0

    def write(self, chunk: bytes | memoryview) -> int:
        self.digest.update(chunk)
        self.size += len(chunk)
        return self.fh.write(chunk)


class HostArtifactCache:
    """Artifacts of a remote store kept in a folder of this host, by sha256, verified on use.

    The first process of a host to load a version fetches its artifact from the object store
    into the folder; every later process (a new worker, a restarted pod, a batch job) reads it
    from there at local-file speed. Files are named by their sha256 and checked against it on
    every read, before anything is deserialized: a corrupt or truncated file is removed, counted
    in [`stats`][modeldeploy.registry.stores.HostArtifactCache.stats] and fetched again, never
    loaded.

    Safe for many threads and processes sharing the folder: a filler writes a temp file and
    renames it into place atomically, and fillers of one key write the same bytes. No fsync: a
    file torn by a power loss fails the sha256 check and is fetched again, so durability is not
    worth a slower first load. Bounded: after each fill, the least recently used files (by
    modification time, refreshed on every hit) go until the folder holds at most
    ``limit_bytes``; an artifact larger than the limit is served but not kept.

    ``ModelRegistry`` makes one for an ``s3://`` artifact store unless told otherwise
    (``artifact_cache=False`` or ``MODELDEPLOY_ARTIFACT_CACHE=off``). Deleting the folder is
    always safe.

    Parameters
    ----------
    root
        The cache folder (created on first fill); ``~`` is expanded.
    limit_bytes
        The most bytes of artifacts to keep.

    Examples
    --------
    >>> import hashlib, tempfile
    >>> cache = HostArtifactCache(tempfile.mkdtemp())
    >>> data = b"model bytes"
    >>> sha = hashlib.sha256(data).hexdigest()
    >>> cache.get(sha) is None
    True
    >>> cache.fill(sha, lambda fh: fh.write(data))[0] == data
    True
    >>> cache.get(sha) == data, cache.stats()["hits"]
    (True, 1)
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        limit_bytes: int = DEFAULT_ARTIFACT_CACHE_LIMIT_BYTES,
    ) -> None:
        if not isinstance(limit_bytes, int) or isinstance(limit_bytes, bool) or limit_bytes < 0:
            raise InvalidParameterError(
                f"The 'limit_bytes' parameter of {_OWNER} must be an int >= 0. "
                f"Got {limit_bytes!r} instead."
            )
        self.root = Path(os.path.expanduser(os.fspath(root)))
        self.limit_bytes = limit_bytes
        self._lock = threading.Lock()
        self._stats = {"hits": 0, "misses": 0, "fills": 0, "corrupt": 0, "evicted": 0}

    def __repr__(self) -> str:
        return f"{_OWNER}({str(self.root)!r}, limit_bytes={self.limit_bytes})"

    @classmethod
    def from_config(cls, setting: object, remote: bool, owner: str) -> HostArtifactCache | None:
        """The cache that ``ModelRegistry(artifact_cache=setting)`` asks for, or None.

        ``None`` (the default) means: the folder of ``MODELDEPLOY_ARTIFACT_CACHE`` (``off``
        turns it off), else `default_cache_dir`, for a ``remote`` store only. ``False``
        turns it off, ``True`` asks for the default folder, a path for that folder.
        """
        if isinstance(setting, HostArtifactCache):
            return setting
        if setting is False:
            return None
        if setting is None or setting is True:
            env = os.environ.get(ENV_VAR, "").strip()
            if env.lower() in _OFF:
                return None
            if setting is None and not remote:
                return None
            return cls(env or default_cache_dir())
        if isinstance(setting, str | os.PathLike):
            return cls(setting)
        raise InvalidParameterError(
            f"The 'artifact_cache' parameter of {owner} must be a folder, a HostArtifactCache, "
            f"True, False or None. Got {type(setting).__name__!r} instead."
        )

    # ------------------------------------------------------------------ the interface

    def path(self, sha256: str) -> Path:
        """Where the artifact of ``sha256`` is kept."""
        if len(sha256) != 64 or not all(c in "0123456789abcdef" for c in sha256):
            raise ValueError(f"Not a sha256: {sha256!r}.")
        return self.root / "sha256" / sha256[:2] / sha256

    def get(self, sha256: str) -> bytes | None:
        """The verified bytes of ``sha256``, or None when absent or corrupt (then removed)."""
        path = self.path(sha256)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            self._count("misses")
            return None
        if hashlib.sha256(data).hexdigest() != sha256:
            logger.warning("cached artifact %s is corrupt; removing it", path)
            path.unlink(missing_ok=True)
            self._count("corrupt")
            self._count("misses")
            return None
        # Most recently used, for eviction (evicted meanwhile, or a read-only cache: the bytes
        # are still good).
        with contextlib.suppress(OSError):
            os.utime(path)
        self._count("hits")
        return data

    def fill(self, sha256: str, download: Callable[[BinaryIO], object]) -> tuple[bytes, str]:
        """Run ``download`` into a temp file, keep it as ``sha256`` when its hash matches.

        Returns the downloaded bytes and their actual sha256 (the caller refuses a mismatch;
        mismatched bytes are never kept). Exceptions of ``download`` propagate, nothing kept.
        """
        final = self.path(sha256)
        tmp_dir = self.root / "tmp"
        tmp_dir.mkdir(parents=True, exist_ok=True)
        staged = tmp_dir / f"{sha256}.{os.getpid()}.{threading.get_ident()}.part"
        try:
            with open(staged, "wb") as fh:
                writer = _HashingWriter(fh)
                download(writer)  # type: ignore[arg-type]
            actual = writer.digest.hexdigest()
            data = staged.read_bytes()
            if actual == sha256 and writer.size <= self.limit_bytes:
                final.parent.mkdir(parents=True, exist_ok=True)
                os.replace(staged, final)
                self._count("fills")
                self.evict(keep=final)
        finally:
            staged.unlink(missing_ok=True)
        return data, actual

    def evict(self, keep: Path | None = None) -> int:
        """Remove least recently used files until at most ``limit_bytes`` remain; return how
        many went. ``keep`` (the file just filled) goes last. Stale temp files go too."""
        entries: list[tuple[float, int, Path]] = []
        total = 0
        now = time.time()
        for folder in (self.root / "sha256").glob("??"):
            for path in folder.iterdir():
                try:
                    st = path.stat()
                except FileNotFoundError:  # evicted by another process meanwhile
                    continue
                total += st.st_size
                if path != keep:
                    entries.append((st.st_mtime, st.st_size, path))
        tmp_dir = self.root / "tmp"
        if tmp_dir.is_dir():
            for path in tmp_dir.iterdir():
                try:
                    if now - path.stat().st_mtime > _STALE_TMP_S:
                        path.unlink(missing_ok=True)
                except FileNotFoundError:
                    continue
        removed = 0
        entries.sort()
        for _, size, path in entries:
            if total <= self.limit_bytes:
                break
            path.unlink(missing_ok=True)
            total -= size
            removed += 1
        if removed:
            self._count("evicted", removed)
        return removed

    def size_bytes(self) -> int:
        """Bytes of artifacts the folder holds now (every process's)."""
        total = 0
        for path in (self.root / "sha256").glob("??/*"):
            try:
                total += path.stat().st_size
            except FileNotFoundError:
                continue
        return total

    def stats(self) -> dict[str, int]:
        """This object's counts: ``hits`` (served from the folder, no fetch), ``misses``
        (fetched from the store), ``fills``, ``corrupt`` (dropped files), ``evicted``."""
        with self._lock:
            return dict(self._stats)

    def _count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._stats[name] += n
