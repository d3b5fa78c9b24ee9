"""Backends: a registry's metadata and artifact stores, checked and opened on first use."""

from __future__ import annotations

from pathlib import Path

import pytest

from modeldeploy.exceptions import InvalidParameterError
from modeldeploy.registry import LocalArtifactStore, SQLiteMetadataStore
from modeldeploy.registry._backends import Backends


def test_defaults_live_under_root_and_open_on_first_use(tmp_path: Path) -> None:
    backends = Backends.from_config(tmp_path / "reg", None, None, "Owner")
    assert backends.root == tmp_path / "reg"
    assert not (tmp_path / "reg").exists()  # nothing opened yet
    assert isinstance(backends.metadata, SQLiteMetadataStore)
    assert (tmp_path / "reg" / "registry.db").exists()
    artifacts = backends.artifacts
    assert isinstance(artifacts, LocalArtifactStore)
    assert artifacts.root == tmp_path / "reg" / "artifacts"
    assert backends.artifacts is artifacts  # made once
    assert backends.artifacts_location() is None  # the default is not worth showing
    backends.close()


def test_an_artifacts_folder_is_used_and_shown(tmp_path: Path) -> None:
    backends = Backends.from_config(tmp_path / "reg", None, tmp_path / "blobs", "Owner")
    assert backends.artifacts_location() == str(tmp_path / "blobs")
    assert isinstance(backends.artifacts, LocalArtifactStore)
    assert backends.artifacts.root == tmp_path / "blobs"


def test_given_stores_are_used_as_they_are(tmp_path: Path) -> None:
    metadata = SQLiteMetadataStore(tmp_path / "db.sqlite")
    artifacts = LocalArtifactStore(tmp_path / "elsewhere")
    backends = Backends.from_config(tmp_path, metadata, artifacts, "Owner")
    assert backends.metadata is metadata and backends.artifacts is artifacts
    assert backends.artifacts_location() == str(tmp_path / "elsewhere")
    backends.close()


def test_a_server_url_is_redacted_and_needs_artifacts() -> None:
    with pytest.raises(InvalidParameterError, match="needs an artifact store every host"):
        Backends.from_config("postgresql://md:secret@db.example:5432/reg", None, None, "Owner")


def test_a_wrong_artifacts_type_names_the_owner(tmp_path: Path) -> None:
    with pytest.raises(InvalidParameterError, match=r"'artifacts' parameter of Owner .* 'int'"):
        Backends.from_config(tmp_path, None, 3, "Owner")  # type: ignore[arg-type]
