"""The host artifact cache: later registry objects and processes of a host skip the fetch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from modeldeploy import ModelRegistry
from modeldeploy.exceptions import InvalidParameterError
from modeldeploy.registry.stores import HostArtifactCache

LOAD = textwrap.dedent(
    """
    import json, sys
    from modeldeploy import ModelRegistry

    reg = ModelRegistry(sys.argv[1], artifacts=sys.argv[2], cache_size=0)
    model = reg.load("m", 1)
    print(json.dumps({"classes": model.classes_.tolist(), **reg.artifact_cache.stats()}))
    reg.close()
    """
)


def _load_in(pg_url: str, s3_url: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", LOAD, pg_url, s3_url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


def _result(proc: subprocess.Popen[str]) -> dict[str, object]:
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    result: dict[str, object] = json.loads(out)
    return result


def _fit(c: float = 1.0) -> LogisticRegression:
    X = np.random.default_rng(0).normal(size=(200, 3))
    return LogisticRegression(C=c).fit(X, (X[:, 0] > 0).astype(int))


def _cached_files(folder: Path) -> list[Path]:
    return sorted((folder / "sha256").glob("??/*"))


@pytest.mark.slow
def test_a_second_registry_and_a_second_process_load_from_the_host_cache_without_a_fetch(
    pg_url: str, s3_url: str, host_cache_dir: Path
) -> None:
    first = ModelRegistry(pg_url, artifacts=s3_url, cache_size=0)
    v = first.register("m", _fit())
    first.load("m", 1)
    assert first.artifact_cache is not None
    assert first.artifact_cache.root == host_cache_dir  # MODELDEPLOY_ARTIFACT_CACHE
    assert first.artifact_cache.stats() == {
        "hits": 0,
        "misses": 1,
        "fills": 1,
        "corrupt": 0,
        "evicted": 0,
    }
    assert [p.name for p in _cached_files(host_cache_dir)] == [v.sha256]
    second = ModelRegistry(pg_url, artifacts=s3_url, cache_size=0)
    second.load("m", 1)
    assert second.artifact_cache is not None
    assert second.artifact_cache.stats()["hits"] == 1
    assert second.artifact_cache.stats()["misses"] == 0
    # Another process with the object store unreachable: only the host's copy can serve it.
    dead = {"AWS_ENDPOINT_URL": "http://127.0.0.1:9"}
    result = _result(_load_in(pg_url, s3_url, dead))
    assert result["classes"] == [0, 1]
    assert (result["hits"], result["misses"]) == (1, 0)
    # ... and the same process without the host's copy does need the store (the check is real).
    result_off = _load_in(pg_url, s3_url, {**dead, "MODELDEPLOY_ARTIFACT_CACHE": "off"})
    _, err = result_off.communicate(timeout=120)
    assert result_off.returncode != 0 and "StoreUnavailableError" in err
    first.close()
    second.close()


@pytest.mark.slow
def test_a_corrupt_cached_copy_is_dropped_and_fetched_again_never_loaded(
    pg_url: str, s3_url: str, host_cache_dir: Path
) -> None:
    reg = ModelRegistry(pg_url, artifacts=s3_url, cache_size=0)
    v = reg.register("m", _fit())
    reg.load("m", 1)
    copy = _cached_files(host_cache_dir)[0]
    intact = copy.read_bytes()
    copy.write_bytes(intact[:-10] + b"0123456789")  # bit rot in the last bytes
    other = ModelRegistry(pg_url, artifacts=s3_url, cache_size=0)
    assert other.load("m", 1).classes_.tolist() == [0, 1]
    assert other.artifact_cache is not None
    stats = other.artifact_cache.stats()
    assert (stats["corrupt"], stats["misses"], stats["fills"]) == (1, 1, 1)
    assert copy.read_bytes() == intact  # fetched again, and kept
    assert HostArtifactCache(host_cache_dir).get(v.sha256) == intact
    reg.close()
    other.close()


@pytest.mark.slow
def test_concurrent_fillers_from_several_processes_end_with_one_valid_file(
    pg_url: str, s3_url: str, host_cache_dir: Path
) -> None:
    reg = ModelRegistry(pg_url, artifacts=s3_url)
    v = reg.register("m", _fit())
    procs = [_load_in(pg_url, s3_url) for _ in range(6)]
    results = [_result(p) for p in procs]
    assert all(r["classes"] == [0, 1] for r in results)
    assert sum(int(str(r["hits"])) + int(str(r["misses"])) for r in results) == 6
    files = _cached_files(host_cache_dir)
    assert [p.name for p in files] == [v.sha256]
    assert HostArtifactCache(host_cache_dir).get(v.sha256) is not None
    assert list((host_cache_dir / "tmp").iterdir()) == []  # no temp file left behind
    reg.close()


def test_the_size_limit_evicts_the_least_recently_used(tmp_path: Path) -> None:
    # A folder store with the cache asked for explicitly: the same code as for S3.
    cache = HostArtifactCache(tmp_path / "cache", limit_bytes=10**9)
    reg = ModelRegistry(tmp_path / "registry", artifact_cache=cache, cache_size=0)
    shas = [reg.register("m", _fit(c)).sha256 for c in (1.0, 2.0, 3.0)]
    size = (tmp_path / "registry" / "artifacts" / "sha256" / shas[0][:2] / shas[0]).stat().st_size
    cache.limit_bytes = 2 * size + size // 2  # room for two
    reg.load("m", 1)
    reg.load("m", 2)
    old = cache.path(shas[0])
    os.utime(old, (1, 1))  # long unused
    reg.load("m", 2)  # a hit: version 2 is the most recently used
    reg.load("m", 3)  # the third fill evicts version 1
    assert not old.exists()
    assert cache.path(shas[1]).exists() and cache.path(shas[2]).exists()
    assert cache.stats()["evicted"] == 1
    assert cache.size_bytes() <= cache.limit_bytes
    assert reg.load("m", 1).classes_.tolist() == [0, 1]  # fetched again from the store
    cache.limit_bytes = size - 1  # smaller than one artifact: served, not kept
    cache.evict()
    assert _cached_files(tmp_path / "cache") == []
    assert reg.load("m", 3).classes_.tolist() == [0, 1]
    assert _cached_files(tmp_path / "cache") == []


def test_the_cache_is_on_for_s3_by_default_and_can_be_turned_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s3 = "s3://bucket/prefix"  # nothing is contacted: stores open on first use
    monkeypatch.delenv("MODELDEPLOY_ARTIFACT_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    reg = ModelRegistry(tmp_path / "r", artifacts=s3)
    assert reg.artifact_cache is not None
    assert reg.artifact_cache.root == tmp_path / "xdg" / "modeldeploy" / "artifacts"
    assert reg.artifact_cache.limit_bytes == 2 * 1024**3
    assert ModelRegistry(tmp_path / "r", artifacts=s3, artifact_cache=False).artifact_cache is None
    assert ModelRegistry(tmp_path / "r").artifact_cache is None  # a folder is local already
    assert ModelRegistry(tmp_path / "r", artifacts=tmp_path / "a").artifact_cache is None
    named = ModelRegistry(tmp_path / "r", artifacts=s3, artifact_cache=tmp_path / "c")
    assert named.artifact_cache is not None and named.artifact_cache.root == tmp_path / "c"
    assert ModelRegistry(tmp_path / "r", artifact_cache=True).artifact_cache is not None
    monkeypatch.setenv("MODELDEPLOY_ARTIFACT_CACHE", "off")
    assert ModelRegistry(tmp_path / "r", artifacts=s3).artifact_cache is None
    monkeypatch.setenv("MODELDEPLOY_ARTIFACT_CACHE", str(tmp_path / "env"))
    env = ModelRegistry(tmp_path / "r", artifacts=s3).artifact_cache
    assert env is not None and env.root == tmp_path / "env"
    with pytest.raises(InvalidParameterError, match="'artifact_cache' parameter"):
        ModelRegistry(tmp_path / "r", artifacts=s3, artifact_cache=3)  # type: ignore[arg-type]
    with pytest.raises(InvalidParameterError, match="'limit_bytes' parameter"):
        HostArtifactCache(tmp_path / "c", limit_bytes=-1)
