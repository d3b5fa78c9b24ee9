"""ArtifactVault: artifacts and attachments stored with their records, read back verified."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
from sklearn.dummy import DummyClassifier

from modeldeploy.exceptions import IntegrityError, OperationRefusedError, SerializationError
from modeldeploy.registry import JoblibSerializer
from modeldeploy.registry._backends import Backends
from modeldeploy.registry._vault import ArtifactVault, artifact_key, deserialize, hash_file

STAMP = "2024-05-01T12:00:00+00:00"


@pytest.fixture
def vault(tmp_path: Path) -> ArtifactVault:
    return ArtifactVault(Backends(tmp_path), lambda: STAMP)


def _fields() -> dict[str, Any]:
    return {
        "signature": None,
        "metrics": {},
        "params": {},
        "tags": {},
        "description": "",
        "parent": None,
        "environment": {},
    }


def _store(vault: ArtifactVault, model: Any = None) -> dict[str, Any]:
    model = model if model is not None else DummyClassifier().fit([[0.0], [1.0]], [0, 1])
    event = vault.store_version("m", model, JoblibSerializer(), "joblib", _fields())
    return vault.backends.metadata.get_version("m", int(event["version"]))


def _file(vault: ArtifactVault, sha256: str) -> Path:
    assert isinstance(vault.backends.root, Path)
    return vault.backends.root / "artifacts" / artifact_key(sha256)


def _corrupt(vault: ArtifactVault, sha256: str) -> None:
    path = _file(vault, sha256)
    path.chmod(0o644)
    path.write_bytes(b"not the model")


def test_a_stored_version_reads_back_verified_and_stamped(vault: ArtifactVault) -> None:
    rec = _store(vault)
    assert rec["created_at"] == STAMP
    data = vault.read_artifact("m", 1, rec["sha256"])
    assert hashlib.sha256(data).hexdigest() == rec["sha256"] and len(data) == rec["size"]
    model = deserialize(data, "m", 1, "joblib", {})
    assert model.predict([[0.5]]).shape == (1,)


def test_a_corrupt_or_missing_artifact_raises_integrity_error(vault: ArtifactVault) -> None:
    rec = _store(vault)
    _corrupt(vault, rec["sha256"])
    with pytest.raises(IntegrityError, match="m:1 is corrupt"):
        vault.read_artifact("m", 1, rec["sha256"])
    assert vault.verify(["m"]) == [
        {"name": "m", "version": 1, "sha256": rec["sha256"], "problem": "sha256 mismatch"}
    ]
    _file(vault, rec["sha256"]).unlink()
    with pytest.raises(IntegrityError, match="missing from the artifact store"):
        vault.read_artifact("m", 1, rec["sha256"])
    assert vault.verify(["m"])[0]["problem"] == "missing"


def test_a_model_its_format_cannot_write_leaves_no_version(vault: ArtifactVault) -> None:
    class Unpicklable:
        def predict(self, X: Any) -> Any:
            return X

        def __reduce__(self) -> Any:
            raise TypeError("no pickling")

    with pytest.raises(SerializationError, match="Could not save the model"):
        vault.store_version("m", Unpicklable(), JoblibSerializer(), "joblib", _fields())
    assert vault.backends.metadata.list_models() == []


def test_attachments_round_trip_and_are_verified(vault: ArtifactVault) -> None:
    _store(vault)
    assert vault.attachment("m", 1, "fast") is None
    sha256 = vault.attach("m", 1, "fast", b"compiled")
    assert sha256 == hashlib.sha256(b"compiled").hexdigest()
    assert vault.attachment("m", 1, "fast") == b"compiled"
    _corrupt(vault, sha256)
    with pytest.raises(IntegrityError, match="attachment 'fast' of m:1 is corrupt"):
        vault.attachment("m", 1, "fast")


def test_garbage_collection_removes_orphans_only(vault: ArtifactVault, tmp_path: Path) -> None:
    rec = _store(vault)
    orphan = tmp_path / "orphan"
    orphan.write_bytes(b"orphan")
    sha256, _ = hash_file(orphan)
    vault.backends.artifacts.put(artifact_key(sha256), orphan)
    # The orphan goes to the trash, and the trash is emptied of what is older than the cutoff.
    assert vault.collect_garbage(0.0) == {"orphan_artifacts": 1, "leftover_files": 1}
    assert vault.backends.artifacts.exists(artifact_key(rec["sha256"]))
    assert not vault.backends.artifacts.exists(artifact_key(sha256))


def test_a_removed_artifact_is_gone_from_the_keys(vault: ArtifactVault) -> None:
    rec = _store(vault)
    vault.remove_artifact(rec["sha256"])
    assert artifact_key(rec["sha256"]) not in list(vault.backends.artifacts.keys())


def test_garbage_collection_refuses_when_the_database_lists_nothing(tmp_path: Path) -> None:
    stored = ArtifactVault(Backends(tmp_path / "a"), lambda: STAMP)
    rec = _store(stored)
    # Another database over the same artifacts: it lists none of them.
    lost = ArtifactVault(
        Backends(tmp_path / "b", artifacts=stored.backends.artifacts), lambda: STAMP
    )
    with pytest.raises(OperationRefusedError, match="found 1 stored artifact"):
        lost.collect_garbage(0.0)
    assert stored.backends.artifacts.exists(artifact_key(rec["sha256"]))
    assert lost.collect_garbage(0.0, force=True)["orphan_artifacts"] == 1
