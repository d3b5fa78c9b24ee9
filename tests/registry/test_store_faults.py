"""A damaged, locked, emptied or lost registry.db: clear errors, and gc never deletes artifacts."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sklearn.linear_model import LogisticRegression

from modeldeploy import ModelRegistry
from modeldeploy.exceptions import (
    CorruptStoreError,
    OperationRefusedError,
    RegistryError,
    StoreUnavailableError,
)
from modeldeploy.registry.stores import SQLiteMetadataStore


def _artifacts(root: Path) -> list[Path]:
    return [p for p in (root / "artifacts" / "sha256").rglob("*") if p.is_file()]


def test_a_file_that_is_not_a_database_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "registry.db").write_bytes(b"these are not the bytes of an SQLite database" * 50)
    with pytest.raises(CorruptStoreError, match="registry.db.*not a registry database") as info:
        ModelRegistry(tmp_path).models()
    assert info.value.path == str(tmp_path / "registry.db")
    assert isinstance(info.value, RegistryError)
    assert "Restore it from a backup" in str(info.value)


def test_a_truncated_database_is_reported_as_damaged(tmp_path: Path, model: object) -> None:
    reg = ModelRegistry(tmp_path)
    for _ in range(30):
        reg.register("m", model, description="x" * 2000)
    reg.close()
    db = tmp_path / "registry.db"
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    db.write_bytes(db.read_bytes()[: db.stat().st_size // 2])
    with pytest.raises(CorruptStoreError, match="damaged"):
        ModelRegistry(tmp_path).versions("m")


def test_a_lock_held_beyond_the_busy_timeout_is_store_unavailable(
    tmp_path: Path, model: LogisticRegression
) -> None:
    reg = ModelRegistry(
        tmp_path, metadata=SQLiteMetadataStore(tmp_path / "registry.db", busy_timeout_s=0.05)
    )
    reg.register("m", model)
    other = sqlite3.connect(tmp_path / "registry.db", isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(StoreUnavailableError, match="locked.*busy timeout") as info:
            reg.promote("m", 1)
        assert isinstance(info.value, ConnectionError)
        assert info.value.server == str(tmp_path / "registry.db")
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert reg.promote("m", 1).aliases == ("production",)  # nothing left half-open


def test_an_empty_database_next_to_artifacts_does_not_open_as_empty(
    tmp_path: Path, model: object
) -> None:
    reg = ModelRegistry(tmp_path)
    reg.register("m", model)
    reg.close()
    (tmp_path / "registry.db").write_bytes(b"")
    for suffix in ("-wal", "-shm"):
        (tmp_path / f"registry.db{suffix}").unlink(missing_ok=True)
    with pytest.raises(CorruptStoreError, match=r"missing or empty.*holds model artifacts"):
        ModelRegistry(tmp_path).models()
    (tmp_path / "registry.db").unlink()
    with pytest.raises(CorruptStoreError, match="Restore registry.db from a backup"):
        ModelRegistry(tmp_path).gc(older_than_s=0)
    assert len(_artifacts(tmp_path)) == 1


def test_a_new_empty_folder_or_empty_file_still_opens(tmp_path: Path, model: object) -> None:
    assert ModelRegistry(tmp_path / "new").models() == []
    (tmp_path / "blank").mkdir()
    (tmp_path / "blank" / "registry.db").write_bytes(b"")
    reg = ModelRegistry(tmp_path / "blank")
    assert reg.register("m", model).version == 1


def test_gc_refuses_when_the_database_lists_no_artifact_but_some_exist(
    tmp_path: Path, model: object
) -> None:
    reg = ModelRegistry(tmp_path)
    reg.register("m", model)
    reg.close()
    with sqlite3.connect(tmp_path / "registry.db") as conn:  # a database emptied behind our back
        conn.execute("DELETE FROM versions")
    conn.close()
    with pytest.raises(OperationRefusedError, match="1 stored artifact.*nothing was deleted"):
        ModelRegistry(tmp_path).gc(older_than_s=0)
    assert len(_artifacts(tmp_path)) == 1
    assert ModelRegistry(tmp_path).gc(older_than_s=0, force=True)["orphan_artifacts"] == 1


def test_gc_on_an_unreadable_database_deletes_nothing(tmp_path: Path, model: object) -> None:
    reg = ModelRegistry(tmp_path)
    reg.register("m", model)
    reg.close()
    for suffix in ("", "-wal", "-shm"):
        (tmp_path / f"registry.db{suffix}").unlink(missing_ok=True)
    (tmp_path / "registry.db").write_bytes(b"garbage" * 1000)
    with pytest.raises(CorruptStoreError):
        ModelRegistry(tmp_path).gc(older_than_s=0, force=True)
    assert len(_artifacts(tmp_path)) == 1


def test_an_s3_refusal_for_clock_skew_says_to_synchronise_the_clock() -> None:
    obstore = pytest.importorskip("obstore")
    from modeldeploy.exceptions import RegistryError
    from modeldeploy.registry.stores import S3ArtifactStore

    # What SeaweedFS and AWS answer to a request signed more than ~15 minutes off their clock
    # (seen for real with the wall clock moved by scripts/any-date.sh).
    refused = obstore.exceptions.PermissionDeniedError(
        "Server returned non-2xx status code: 403 Forbidden: <Error><Code>RequestTimeTooSkewed"
        "</Code></Error>"
    )
    error = S3ArtifactStore("s3://bucket/prefix")._failure(refused, "store a key")
    assert isinstance(error, RegistryError)
    assert "clock" in str(error) and "NTP" in str(error) and "AWS_ACCESS_KEY_ID" not in str(error)
