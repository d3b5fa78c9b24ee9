"""The metadata and artifact stores a registry names, opened on first use."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from modeldeploy.exceptions import InvalidParameterError
from modeldeploy.registry._artifacts import ArtifactStore, LocalArtifactStore
from modeldeploy.registry._host_cache import HostArtifactCache
from modeldeploy.registry._locations import is_postgres_url, is_s3_url, redact
from modeldeploy.registry._metadata import MetadataStore
from modeldeploy.registry._postgres import PostgresMetadataStore
from modeldeploy.registry._s3 import S3ArtifactStore
from modeldeploy.registry._sqlite import SQLiteMetadataStore


class Backends:
    """A registry's two stores: given ones, or the defaults under ``root`` made when first used.

    Parameters
    ----------
    root
        The registry folder, or the redacted URL of a server registry (for display).
    metadata
        A ready metadata store, or None for SQLite at ``root/registry.db``.
    artifacts
        A ready artifact store, or None for a folder: ``folder``, else ``root/artifacts``.
    folder
        Where the default artifact store goes when it is not under ``root``.
    cache
        The host's copy of a remote artifact store's artifacts, or None.
    """

    def __init__(
        self,
        root: Path | str,
        *,
        metadata: MetadataStore | None = None,
        artifacts: ArtifactStore | None = None,
        folder: Path | None = None,
        cache: HostArtifactCache | None = None,
    ) -> None:
        self.root = root
        self.cache = cache
        self._metadata = metadata
        self._artifacts = artifacts
        self._folder = folder
        self._lock = threading.Lock()

    @classmethod
    def from_config(
        cls,
        root: str | os.PathLike[str],
        metadata: MetadataStore | None,
        artifacts: ArtifactStore | str | os.PathLike[str] | None,
        owner: str,
        artifact_cache: object = None,
    ) -> Backends:
        """The stores of ``ModelRegistry(root, metadata=..., artifacts=..., artifact_cache=...)``,
        checked; the host cache is on by default for an S3 store only.

        Raises
        ------
        InvalidParameterError
            For a server registry without an artifact store, or an ``artifacts`` of a wrong type.
        """
        location = os.fspath(root)
        shown: Path | str = Path(location)
        if is_postgres_url(location):
            shown = redact(location)
            if metadata is None:
                metadata = PostgresMetadataStore(location)
        if artifacts is None and isinstance(metadata, PostgresMetadataStore):
            raise InvalidParameterError(
                f"A registry whose metadata is on a server ({metadata.url}) needs an artifact "
                "store every host can reach too. Got no 'artifacts' instead: pass "
                "artifacts='s3://bucket/prefix' (or an ArtifactStore); a local folder would not "
                "be shared by the other hosts."
            )
        if isinstance(artifacts, str | os.PathLike) and is_s3_url(artifacts):
            artifacts = S3ArtifactStore(os.fspath(artifacts))
        if isinstance(artifacts, ArtifactStore) or artifacts is None:
            remote = isinstance(artifacts, S3ArtifactStore)
            cache = HostArtifactCache.from_config(artifact_cache, remote, owner)
            return cls(shown, metadata=metadata, artifacts=artifacts, cache=cache)
        if isinstance(artifacts, str | os.PathLike):
            cache = HostArtifactCache.from_config(artifact_cache, False, owner)
            return cls(shown, metadata=metadata, folder=Path(artifacts), cache=cache)
        raise InvalidParameterError(
            f"The 'artifacts' parameter of {owner} must be an 's3://' URL, a folder, an "
            f"ArtifactStore or None. Got {type(artifacts).__name__!r} instead."
        )

    @property
    def metadata(self) -> MetadataStore:
        """The metadata store (opened on first use)."""
        if self._metadata is None:
            with self._lock:
                if self._metadata is None:
                    assert isinstance(self.root, Path)  # a server URL gets its store in __init__
                    self._metadata = SQLiteMetadataStore(self.root / "registry.db")
        return self._metadata

    @property
    def artifacts(self) -> ArtifactStore:
        """The artifact store (created on first use)."""
        if self._artifacts is None:
            with self._lock:
                if self._artifacts is None:
                    folder = self._folder
                    if folder is None:
                        assert isinstance(self.root, Path)
                        folder = self.root / "artifacts"
                    self._artifacts = LocalArtifactStore(folder)
        return self._artifacts

    def artifacts_location(self) -> str | None:
        """Where artifacts live, for display, when not the default folder under ``root``."""
        if self._folder is not None:
            return str(self._folder)
        if self._artifacts is None:
            return None
        if isinstance(self._artifacts, S3ArtifactStore):
            return self._artifacts.url
        if isinstance(self._artifacts, LocalArtifactStore):
            if isinstance(self.root, Path) and self._artifacts.root == self.root / "artifacts":
                return None
            return str(self._artifacts.root)
        return repr(self._artifacts)

    def close(self) -> None:
        """Close this thread's connections of the metadata store, if it was opened."""
        if self._metadata is not None:
            self._metadata.close()
