"""Attachments and maintenance of a registry's artifacts: store, read, verify, collect garbage.

Plain functions over a registry's stores; :class:`~modeldeploy.registry.ModelRegistry` validates
the arguments and calls them from its documented methods.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modeldeploy.exceptions import IntegrityError, OperationRefusedError
from modeldeploy.registry._helpers import _artifact_key

if TYPE_CHECKING:
    from modeldeploy.registry.registry import ModelRegistry


def _store_attachment(
    registry: ModelRegistry, name: str, number: int, key: str, data: bytes
) -> str:
    """Store ``data`` as attachment ``key`` of ``name:number``; return its sha256."""
    sha256 = hashlib.sha256(data).hexdigest()
    staging = Path(tempfile.mkdtemp(prefix="attach-", dir=registry.artifacts.scratch_dir()))
    try:
        path = staging / "data"
        path.write_bytes(data)
        artifact = _artifact_key(sha256)
        registry.artifacts.put(artifact, path)

        def ensure_artifact() -> None:
            if not registry.artifacts.exists(artifact):
                registry.artifacts.put(artifact, path)

        registry.metadata.set_attachment(
            name,
            number,
            key,
            sha256,
            len(data),
            before_commit=ensure_artifact,
            at=registry._stamp(),
        )
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return sha256


def _read_attachment(registry: ModelRegistry, name: str, version: int, key: str) -> bytes | None:
    """The bytes attached to ``name:version`` under ``key``, sha256-verified, or None."""
    rec = registry.metadata.get_attachment(name, version, key)
    if rec is None:
        return None
    try:
        data = registry.artifacts.read(_artifact_key(rec["sha256"]))
    except FileNotFoundError:
        raise IntegrityError(
            f"The attachment {key!r} of {name}:{version} is missing from the artifact store.",
            name=name,
            version=version,
        ) from None
    if hashlib.sha256(data).hexdigest() != rec["sha256"]:
        raise IntegrityError(
            f"The attachment {key!r} of {name}:{version} is corrupt (sha256 differs from the "
            "one recorded). Attach it again.",
            name=name,
            version=version,
        )
    return data


def _verify_artifacts(registry: ModelRegistry, names: list[str]) -> list[dict[str, Any]]:
    """The missing or corrupt artifacts of every version of the named models."""
    problems: list[dict[str, Any]] = []
    for model_name in names:
        for rec in registry.metadata.list_versions(model_name):
            try:
                data = registry.artifacts.read(_artifact_key(rec["sha256"]))
            except FileNotFoundError:
                problem = "missing"
            else:
                problem = (
                    "" if hashlib.sha256(data).hexdigest() == rec["sha256"] else ("sha256 mismatch")
                )
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


def _collect_garbage(
    registry: ModelRegistry, older_than_s: float, *, force: bool = False
) -> dict[str, int]:
    """Remove unused artifacts and leftovers older than ``older_than_s``; return counts."""
    used = {_artifact_key(s) for s in registry.metadata.referenced_artifacts()}
    if not used and not force:
        keys = list(registry.artifacts.keys())
        stored = sum(1 for key in keys if key.startswith("sha256/"))
        if stored:
            raise OperationRefusedError(
                f"gc found {stored} stored artifact{'s' if stored != 1 else ''} but a metadata "
                f"store that lists none (at {registry.root}): expected the database to list "
                "the artifacts of its versions. This looks like a lost, emptied or replaced "
                "database, not garbage, so nothing was deleted. Restore the database from a "
                "backup; if every version really was deleted, run gc(force=True)."
            )
    orphans = 0
    # File ages are measured on the store's own clock (a file server's or an object store's),
    # not on this host's or the registry's: a skew between them must not make fresh files old.
    cutoff = registry.artifacts.now() - older_than_s
    for key in list(registry.artifacts.keys()):
        if key in used:
            continue
        written = registry.artifacts.modified(key)
        if written is not None and written >= cutoff:
            continue
        registry.artifacts.remove(key)
        orphans += 1
    leftovers = registry.artifacts.cleanup(older_than_s)
    return {"orphan_artifacts": orphans, "leftover_files": leftovers}
