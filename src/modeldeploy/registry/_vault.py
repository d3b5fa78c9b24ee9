"""The registry's artifacts and attachments: stored, read back sha256-verified, kept clean."""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from modeldeploy.exceptions import IntegrityError, OperationRefusedError, SerializationError
from modeldeploy.registry._backends import Backends
from modeldeploy.registry._metadata import Record
from modeldeploy.registry.formats import Serializer, get_format


def artifact_key(sha256: str) -> str:
    """Where the artifact store keeps the bytes of ``sha256``."""
    return f"sha256/{sha256[:2]}/{sha256}"


def hash_file(path: Path) -> tuple[str, int]:
    """The sha256 and size of a file, read in chunks."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def deserialize(
    data: bytes, name: str, version: int, format: str, environment: Mapping[str, str]
) -> Any:
    """Load a verified artifact with its format, naming the version when that fails."""
    try:
        model = get_format(format).load(data)
    except SerializationError:
        raise
    except Exception as exc:
        raise SerializationError(
            f"Could not load {name}:{version} with the {format!r} format: {exc}. Check that "
            "the libraries it was saved with are installed "
            f"({', '.join(f'{k} {v}' for k, v in environment.items())})."
        ) from exc
    return model


class ArtifactVault:
    """Writes artifacts and attachments with their records, reads them back verified.

    Every artifact is addressed by its sha256 (`artifact_key`) and checked against it on
    each read. Writes stage the bytes in the artifact store's scratch folder and make sure they
    are stored inside the metadata transaction that records them.

    Parameters
    ----------
    backends
        The metadata and artifact stores (opened on first use).
    stamp
        Now, as the metadata stores keep times (the registry's clock).
    """

    def __init__(self, backends: Backends, stamp: Callable[[], str]) -> None:
        self.backends = backends
        self.stamp = stamp

    # ------------------------------------------------------------------ versions

    def store_version(
        self, name: str, model: Any, serializer: Serializer, format: str, fields: Record
    ) -> Record:
        """Serialize ``model``, store its artifact and add the version described by ``fields``
        (its signature, metrics, ...); return the ``registered`` event record.

        Raises
        ------
        SerializationError
            When the format cannot write the model, or would not load it back.
        """
        # Open the metadata store before writing any artifact: a database missing next to
        # artifacts then always means a lost database (the SQLite store refuses to open it).
        metadata = self.backends.metadata
        artifacts = self.backends.artifacts
        staging = Path(tempfile.mkdtemp(prefix="register-", dir=artifacts.scratch_dir()))
        try:
            path = staging / "model"
            try:
                serializer.dump(model, path)
            except Exception as exc:
                raise SerializationError(
                    f"Could not save the model with the {format!r} format: {exc}. Try another "
                    "format, or register a Serializer for this kind of model."
                ) from exc
            # Before any version exists: a model its format would refuse to load is refused now.
            serializer.check(path)
            sha256, size = hash_file(path)
            key = artifact_key(sha256)
            artifacts.put(key, path)
            record: Record = {
                "created_at": self.stamp(),
                "sha256": sha256,
                "size": size,
                "format": format,
                **fields,
            }

            def ensure_artifact() -> None:
                # Inside the transaction: a concurrent delete of an identical artifact may have
                # removed the file since the put above.
                if not artifacts.exists(key):
                    artifacts.put(key, path)

            return metadata.add_version(name, record, before_commit=ensure_artifact)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def read_artifact(self, name: str, version: int, sha256: str) -> bytes:
        """A version's artifact bytes, checked against the sha256 recorded at registration.

        Raises
        ------
        IntegrityError
            When the artifact is missing or its sha256 differs.
        """
        try:
            data, actual = self._read(sha256)
        except FileNotFoundError:
            raise IntegrityError(
                f"The artifact of {name}:{version} (sha256 {sha256[:12]}...) is missing from "
                "the artifact store. Restore it from a backup, or delete this version with "
                f"registry.delete_version({name!r}, {version}).",
                name=name,
                version=version,
            ) from None
        if actual != sha256:
            raise IntegrityError(
                f"The artifact of {name}:{version} is corrupt: its sha256 is {actual[:12]}..., "
                f"but {sha256[:12]}... was recorded at registration. Nothing was loaded. Restore "
                "the file from a backup or register the model again.",
                name=name,
                version=version,
            )
        return data

    def _read(self, sha256: str) -> tuple[bytes, str]:
        """The stored bytes of ``sha256`` and their actual sha256 (the caller compares).

        Through the host cache when there is one: a verified copy there saves the fetch, and a
        fetch fills it (only with bytes whose hash matches).
        """
        key = artifact_key(sha256)
        artifacts = self.backends.artifacts
        cache = self.backends.cache
        if cache is None:
            data = artifacts.read(key)
            return data, hashlib.sha256(data).hexdigest()
        cached = cache.get(sha256)
        if cached is not None:
            return cached, sha256
        return cache.fill(sha256, lambda dest: artifacts.download(key, dest))

    def remove_artifact(self, sha256: str) -> None:
        """Remove the artifact of ``sha256`` (no version uses it any more)."""
        self.backends.artifacts.remove(artifact_key(sha256))

    # ------------------------------------------------------------------ attachments

    def attach(self, name: str, version: int, key: str, data: bytes) -> str:
        """Store ``data`` as attachment ``key`` of ``name:version``; return its sha256."""
        metadata = self.backends.metadata
        artifacts = self.backends.artifacts
        sha256 = hashlib.sha256(data).hexdigest()
        staging = Path(tempfile.mkdtemp(prefix="attach-", dir=artifacts.scratch_dir()))
        try:
            path = staging / "data"
            path.write_bytes(data)
            artifact = artifact_key(sha256)
            artifacts.put(artifact, path)

            def ensure_artifact() -> None:
                if not artifacts.exists(artifact):
                    artifacts.put(artifact, path)

            metadata.set_attachment(
                name,
                version,
                key,
                sha256,
                len(data),
                before_commit=ensure_artifact,
                at=self.stamp(),
            )
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return sha256

    def attachment(self, name: str, version: int, key: str) -> bytes | None:
        """The bytes attached to ``name:version`` under ``key``, sha256-verified, or None.

        Raises
        ------
        IntegrityError
            When the stored bytes are missing or differ from what was attached.
        """
        rec = self.backends.metadata.get_attachment(name, version, key)
        if rec is None:
            return None
        try:
            data, actual = self._read(rec["sha256"])
        except FileNotFoundError:
            raise IntegrityError(
                f"The attachment {key!r} of {name}:{version} is missing from the artifact store.",
                name=name,
                version=version,
            ) from None
        if actual != rec["sha256"]:
            raise IntegrityError(
                f"The attachment {key!r} of {name}:{version} is corrupt (sha256 differs from the "
                "one recorded). Attach it again.",
                name=name,
                version=version,
            )
        return data

    # ------------------------------------------------------------------ maintenance

    def verify(self, names: Iterable[str]) -> list[dict[str, Any]]:
        """The missing or corrupt artifacts of every version of the named models."""
        problems: list[dict[str, Any]] = []
        for model_name in names:
            for rec in self.backends.metadata.list_versions(model_name):
                try:
                    data = self.backends.artifacts.read(artifact_key(rec["sha256"]))
                except FileNotFoundError:
                    problem = "missing"
                else:
                    intact = hashlib.sha256(data).hexdigest() == rec["sha256"]
                    problem = "" if intact else "sha256 mismatch"
                if problem:
                    problems.append(
                        {
                            "name": model_name,
                            "version": rec["version"],
                            "sha256": rec["sha256"],
                            "problem": problem,
                        }
                    )
        return problems

    def collect_garbage(self, older_than_s: float, *, force: bool = False) -> dict[str, int]:
        """Remove unused artifacts and leftovers older than ``older_than_s``; return counts.

        Raises
        ------
        OperationRefusedError
            When the metadata store lists no artifact but the artifact store holds some
            (without ``force``): a lost database, not garbage.
        """
        artifacts = self.backends.artifacts
        used = {artifact_key(s) for s in self.backends.metadata.referenced_artifacts()}
        if not used and not force:
            keys = list(artifacts.keys())
            stored = sum(1 for key in keys if key.startswith("sha256/"))
            if stored:
                raise OperationRefusedError(
                    f"gc found {stored} stored artifact{'s' if stored != 1 else ''} but a "
                    f"metadata store that lists none (at {self.backends.root}): expected the "
                    "database to list the artifacts of its versions. This looks like a lost, "
                    "emptied or replaced database, not garbage, so nothing was deleted. Restore "
                    "the database from a backup; if every version really was deleted, run "
                    "gc(force=True)."
                )
        orphans = 0
        # File ages are measured on the store's own clock (a file server's or an object
        # store's), not on this host's: a skew between them must not make fresh files old.
        cutoff = artifacts.now() - older_than_s
        for key in list(artifacts.keys()):
            if key in used:
                continue
            written = artifacts.modified(key)
            if written is not None and written >= cutoff:
                continue
            artifacts.remove(key)
            orphans += 1
        leftovers = artifacts.cleanup(older_than_s)
        return {"orphan_artifacts": orphans, "leftover_files": leftovers}
