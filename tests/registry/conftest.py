"""Each registry test gets a host artifact cache of its own (never the user's ~/.cache)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def host_cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "host-artifact-cache"
    monkeypatch.setenv("MODELDEPLOY_ARTIFACT_CACHE", str(folder))
    return folder
