"""The registry's behaviour, the same on every combination of metadata and artifact store."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import make_column_transformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder

from modeldeploy import (
    AliasNotFoundError,
    Event,
    IntegrityError,
    ModelNotFoundError,
    ModelRegistry,
    ModelVersion,
    SchemaError,
    VersionNotFoundError,
)
from modeldeploy.exceptions import InvalidParameterError, OperationRefusedError
from modeldeploy.registry.stores import HostArtifactCache

BACKENDS = ["sqlite+local", "sqlite+s3", "postgres+local", "postgres+s3"]


@dataclass
class Backend:
    """One combination of stores, and how to reach its artifacts behind the registry's back."""

    kind: str
    root: str | Path
    artifacts: str | None

    def open(self, **kwargs: Any) -> ModelRegistry:
        """A new registry object on the same stores (its own cache)."""
        return ModelRegistry(self.root, artifacts=self.artifacts, **kwargs)

    def _key(self, sha256: str) -> str:
        return f"sha256/{sha256[:2]}/{sha256}"

    def _local(self, sha256: str) -> Path:
        folder = Path(self.artifacts) if self.artifacts else Path(self.root) / "artifacts"
        return folder / self._key(sha256)

    def _s3(self) -> Any:
        import obstore.store

        return obstore.store.from_url(str(self.artifacts), client_options={"allow_http": True})

    def read(self, sha256: str) -> bytes:
        if self.kind.endswith("s3"):
            import obstore

            return bytes(obstore.get(self._s3(), self._key(sha256)).bytes())
        return self._local(sha256).read_bytes()

    def _host_copy(self, sha256: str) -> Path:
        """This host's cached copy (tests/registry/conftest.py names the folder)."""
        return HostArtifactCache(os.environ["MODELDEPLOY_ARTIFACT_CACHE"]).path(sha256)

    def write(self, sha256: str, data: bytes) -> None:
        """Overwrite an artifact in place (bit rot, tampering), and this host's copy of it."""
        if self.kind.endswith("s3"):
            import obstore

            obstore.put(self._s3(), self._key(sha256), data)
            if self._host_copy(sha256).exists():
                self._host_copy(sha256).write_bytes(data)
        else:
            self._local(sha256).write_bytes(data)

    def remove(self, sha256: str) -> None:
        """Delete an artifact outright (no trash), and this host's copy of it."""
        if self.kind.endswith("s3"):
            import obstore

            obstore.delete(self._s3(), self._key(sha256))
            self._host_copy(sha256).unlink(missing_ok=True)
        else:
            self._local(sha256).unlink()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    kind = request.param
    root: str | Path = tmp_path / "registry"
    artifacts: str | None = None
    if kind.startswith("postgres"):
        root = request.getfixturevalue("pg_url")
        artifacts = str(tmp_path / "artifacts")
    if kind.endswith("s3"):
        artifacts = request.getfixturevalue("s3_url")
    return Backend(kind, root, artifacts)


@pytest.fixture
def registry(backend: Backend) -> Iterator[ModelRegistry]:
    reg = backend.open()
    yield reg
    reg.close()


def test_register_records_everything_about_a_version(
    registry: ModelRegistry, model: LogisticRegression, data: tuple[np.ndarray, np.ndarray]
) -> None:
    X, _ = data
    v = registry.register(
        "churn",
        model,
        sample=X,
        metrics={"f1": np.float64(0.91)},
        params=model.get_params(),
        tags={"team": "growth"},
        description="logistic regression, Q3 data",
    )
    assert (v.name, v.version, v.format) == ("churn", 1, "joblib")
    assert v.created_at.tzinfo is not None
    assert v.created_at.utcoffset() == timedelta(0)
    assert len(v.sha256) == 64 and v.size > 0
    assert v.metrics == {"f1": 0.91} and type(v.metrics["f1"]) is float
    assert v.params["C"] == 1.0 and v.tags == {"team": "growth"}
    assert v.description == "logistic regression, Q3 data"
    assert set(v.environment) >= {"python", "numpy", "scikit-learn", "joblib"}
    assert v.signature is not None and v.signature.n_features == 4
    assert v.parent is None and v.aliases == ()
    assert registry.get("churn", 1) == v


def test_versions_count_up_and_latest_is_default(registry: ModelRegistry, model: object) -> None:
    for _ in range(3):
        registry.register("m", model)
    assert [v.version for v in registry.versions("m")] == [1, 2, 3]
    assert registry.get("m").version == 3


def test_version_numbers_are_never_reused_after_delete(
    registry: ModelRegistry, model: object
) -> None:
    registry.register("m", model)
    registry.register("m", model)
    registry.delete_version("m", 2, reason="bad")
    assert registry.register("m", model).version == 3
    with pytest.raises(VersionNotFoundError, match="no version 2. Existing versions: 1, 3"):
        registry.get("m", 2)


def test_load_returns_a_working_model_and_caches_it(
    registry: ModelRegistry, model: LogisticRegression, data: tuple[np.ndarray, np.ndarray]
) -> None:
    X, _ = data
    v = registry.register("m", model)
    loaded = registry.load("m", 1)
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    assert registry.load("m") is loaded
    assert v.load() is loaded


def test_promote_rollback_and_history(registry: ModelRegistry, model: object) -> None:
    for _ in range(3):
        registry.register("churn", model)
    registry.promote("churn", 1, alias="production", reason="first")
    registry.promote("churn", 2, alias="production", reason="beats v1 on holdout")
    registry.promote("churn", 3, alias="production", reason="beats v2")
    assert registry.get("churn", alias="production").version == 3
    back = registry.rollback("churn", alias="production", reason="complaints from support")
    assert back.version == 2 and back.aliases == ("production",)
    assert registry.rollback("churn", alias="production").version == 1
    with pytest.raises(OperationRefusedError, match="no other existing version"):
        registry.rollback("churn", alias="production")
    moves = [
        (e.kind, e.previous, e.version, e.reason)
        for e in registry.history("churn")
        if e.alias == "production"
    ]
    assert moves == [
        ("promoted", None, 1, "first"),
        ("promoted", 1, 2, "beats v1 on holdout"),
        ("promoted", 2, 3, "beats v2"),
        ("rolled_back", 3, 2, "complaints from support"),
        ("rolled_back", 2, 1, ""),
    ]


def test_rollback_skips_deleted_versions(registry: ModelRegistry, model: object) -> None:
    for _ in range(3):
        registry.register("m", model)
    for v in (1, 2, 3):
        registry.promote("m", v, alias="staging")
    registry.delete_version("m", 2)
    assert registry.rollback("m", alias="staging").version == 1


def test_aliases_are_independent(registry: ModelRegistry, model: object) -> None:
    registry.register("m", model)
    registry.register("m", model)
    registry.promote("m", 1, alias="production")
    registry.promote("m", 2, alias="staging")
    assert registry.aliases("m") == {"production": 1, "staging": 2}
    assert registry.get("m", 2).aliases == ("staging",)
    registry.delete_alias("m", "staging", reason="done")
    assert registry.aliases("m") == {"production": 1}


def test_deleting_an_aliased_version_is_refused_and_keeps_it(
    registry: ModelRegistry, model: object
) -> None:
    registry.register("m", model)
    registry.promote("m", 1, alias="production")
    with pytest.raises(OperationRefusedError, match="in use by alias 'production'"):
        registry.delete_version("m", 1)
    assert registry.load("m", alias="production") is not None


def test_unknown_names_suggest_close_ones(registry: ModelRegistry, model: object) -> None:
    registry.register("churn", model)
    registry.promote("churn", 1, alias="production")
    with pytest.raises(ModelNotFoundError, match="Did you mean 'churn'"):
        registry.get("chrun")
    with pytest.raises(AliasNotFoundError, match="Did you mean 'production'"):
        registry.load("churn", alias="prod")
    with pytest.raises(KeyError):  # lookups are KeyErrors for code that catches those
        registry.get("churn", 7)


def test_empty_registry_errors_say_what_to_do(registry: ModelRegistry) -> None:
    with pytest.raises(ModelNotFoundError, match="register a model first"):
        registry.load("anything")
    assert registry.models() == []


def test_flipped_byte_raises_integrity_error_and_loads_nothing(
    backend: Backend, registry: ModelRegistry, model: object
) -> None:
    v = registry.register("m", model)
    raw = bytearray(backend.read(v.sha256))
    raw[len(raw) // 2] ^= 0x01
    backend.write(v.sha256, bytes(raw))
    fresh = backend.open()  # no cached copy
    with pytest.raises(IntegrityError, match="corrupt.*Nothing was loaded") as info:
        fresh.load("m", 1)
    assert (info.value.name, info.value.version) == ("m", 1)
    assert fresh.verify() == [
        {"name": "m", "version": 1, "sha256": v.sha256, "problem": "sha256 mismatch"}
    ]


def test_missing_artifact_raises_integrity_error(
    backend: Backend, registry: ModelRegistry, model: object
) -> None:
    v = registry.register("m", model)
    backend.remove(v.sha256)
    with pytest.raises(IntegrityError, match="missing"):
        backend.open().load("m")
    assert backend.open().verify("m")[0]["problem"] == "missing"


def test_registering_again_after_bit_rot_replaces_the_corrupt_artifact(
    backend: Backend, registry: ModelRegistry, model: object
) -> None:
    v1 = registry.register("m", model)
    good = backend.read(v1.sha256)
    backend.write(v1.sha256, good[:-1] + bytes([good[-1] ^ 0xFF]))  # same size, one byte off
    v2 = registry.register("m", model)
    assert v2.sha256 == v1.sha256
    assert backend.read(v1.sha256) == good  # the existing copy was verified, found bad, replaced
    assert backend.open().load("m", 2) is not None
    assert registry.verify() == []


def test_an_existing_good_artifact_is_kept(
    backend: Backend, registry: ModelRegistry, model: object
) -> None:
    v1 = registry.register("m", model)
    assert registry.register("m", model).sha256 == v1.sha256
    assert registry.verify() == []


def test_identical_artifacts_are_stored_once_and_survive_deletes(
    backend: Backend, registry: ModelRegistry, model: object
) -> None:
    a = registry.register("m", model)
    b = registry.register("m", model)
    assert a.sha256 == b.sha256
    registry.delete_version("m", 1)
    assert backend.open().load("m", 2) is not None


def test_signature_must_match_the_model(
    registry: ModelRegistry, model: object, data: tuple[np.ndarray, np.ndarray]
) -> None:
    X, _ = data
    with pytest.raises(SchemaError, match="expects 4 features but the sample has 3"):
        registry.register("m", model, sample=X[:, :3])
    assert registry.models() == []


def test_bad_arguments_are_refused_clearly(registry: ModelRegistry, model: object) -> None:
    with pytest.raises(InvalidParameterError, match="'name' parameter of ModelRegistry"):
        registry.register("no spaces", model)
    with pytest.raises(InvalidParameterError, match="must have a predict"):
        registry.register("m", object())
    registry.register("m", model)
    with pytest.raises(InvalidParameterError, match="'version' parameter"):
        registry.promote("m", 0)
    with pytest.raises(VersionNotFoundError):
        registry.promote("m", 5)
    with pytest.raises(InvalidParameterError, match="either 'version' or 'alias'"):
        registry.get("m", 1, alias="production")


def test_parent_records_lineage(registry: ModelRegistry, model: object) -> None:
    v1 = registry.register("m", model)
    v2 = registry.register("m", model, parent=v1)
    assert v2.parent == 1
    with pytest.raises(VersionNotFoundError):
        registry.register("m", model, parent=9)


def test_set_metrics_and_tags_merge_and_are_events(registry: ModelRegistry, model: object) -> None:
    registry.register("m", model, metrics={"f1": 0.8})
    v = registry.set_metrics("m", 1, {"holdout_f1": 0.85})
    assert v.metrics == {"f1": 0.8, "holdout_f1": 0.85}
    assert registry.set_tags("m", 1, {"owner": "ana"}).tags == {"owner": "ana"}
    assert [e.kind for e in registry.history("m")] == ["registered", "updated", "updated"]


def test_custom_events_and_callbacks(backend: Backend, model: object) -> None:
    seen: list[Event] = []
    reg = backend.open(on_event=seen.append)
    reg.register("m", model)
    reg.promote("m", 1, reason="go")
    ev = reg.record_event("m", "swapped", version=1, reason="replica 3", details={"ms": 4})
    assert [e.kind for e in seen] == ["registered", "promoted", "swapped"]
    assert seen[-1] == ev and ev.details == {"ms": 4}
    assert reg.history("m")[-1] == ev


def test_events_are_logged(
    registry: ModelRegistry, model: object, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="modeldeploy.registry"):
        registry.register("m", model)
        registry.promote("m", 1, reason="go")
    messages = [r.getMessage() for r in caplog.records]
    assert messages == ["registered m v1", "promoted m v1 @production (was None): go"]


def test_dataframe_trained_pipeline_round_trips(registry: ModelRegistry) -> None:
    df = pd.DataFrame({"plan": ["a", "b", "a", "c"] * 25, "spend": np.linspace(0, 10, 100)})
    y = (df["spend"] > 5).astype(int)
    pipe = make_pipeline(
        make_column_transformer((OneHotEncoder(), ["plan"]), remainder="passthrough"),
        LogisticRegression(),
    ).fit(df, y)
    v = registry.register("p", pipe, sample=df)
    X = v.signature.validate([{"spend": 9.0, "plan": "b"}])  # type: ignore[union-attr]
    model = v.load()
    assert model.predict(v.signature.to_model_input(X)).tolist() == [1]  # type: ignore[union-attr]


def test_skops_format_loads_without_pickle(
    backend: Backend,
    registry: ModelRegistry,
    model: LogisticRegression,
    data: tuple[np.ndarray, np.ndarray],
) -> None:
    X, _ = data
    registry.register("m", model, format="skops")
    loaded = backend.open().load("m")
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))


def test_cache_is_bounded(backend: Backend, data: tuple[np.ndarray, np.ndarray]) -> None:
    X, y = data
    reg = backend.open(cache_size=2)
    for c in (0.1, 1.0, 10.0):
        reg.register("m", LogisticRegression(C=c).fit(X, y))
    first = reg.load("m", 1)
    reg.load("m", 2)
    reg.load("m", 3)
    assert reg.load("m", 1) is not first  # evicted, loaded again
    assert len(reg._models) == 2


def test_many_threads_share_one_registry(registry: ModelRegistry, model: object) -> None:
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(5):
                v = registry.register("m", model)
                registry.promote("m", v.version)
                registry.load("m", alias="production")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert [v.version for v in registry.versions("m")] == list(range(1, 41))
    assert len(registry.history("m")) == 80


def test_gc_removes_orphans_but_keeps_used_artifacts(
    backend: Backend, registry: ModelRegistry, model: object, data: tuple[np.ndarray, np.ndarray]
) -> None:
    X, y = data
    registry.register("m", model)
    other = registry.register("m", LogisticRegression(C=0.5).fit(X, y))
    registry.delete_version("m", other.version)
    assert registry.gc(older_than_s=0) == {"orphan_artifacts": 0, "leftover_files": 1}
    assert registry.verify() == []
    assert backend.open().load("m", 1) is not None


def test_reprs_for_notebooks(registry: ModelRegistry, model: object) -> None:
    v = registry.register("churn", model, metrics={"f1": 0.9})
    registry.promote("churn", 1)
    v = registry.get("churn", 1)
    assert repr(v).startswith("<ModelVersion churn:1 @production joblib")
    assert "f1=0.9" in repr(v)
    assert "churn:1" in v._repr_html_() and v.sha256 in v._repr_html_()
    html = registry._repr_html_()
    assert "<table>" in html and "production→v1" in html
    assert "promoted" in registry.history("churn")._repr_html_()
    assert repr(registry).endswith("1 models)")


def test_model_version_to_dict_is_json_friendly(registry: ModelRegistry, model: object) -> None:
    import json

    v = registry.register("m", model, sample=np.zeros((3, 4)))
    assert json.loads(json.dumps(v.to_dict()))["version"] == 1
    detached = ModelVersion(**{**v.__dict__, "_registry": None})
    with pytest.raises(RuntimeError, match="detached"):
        detached.load()


def test_attachments_round_trip_are_verified_and_go_with_the_version(
    backend: Backend, registry: ModelRegistry, model: object
) -> None:
    registry.register("m", model)
    registry.register("m", model)
    sha = registry.attach("m", 1, "compiled", b"abc")
    assert registry.attachment("m", 1, "compiled") == b"abc"
    assert registry.attachment("m", 1, "other") is None
    newer = registry.attach("m", 1, "compiled", b"newer")  # replaced
    assert registry.attachment("m", 1, "compiled") == b"newer"
    backend.write(newer, b"tampered")
    with pytest.raises(IntegrityError, match="attachment 'compiled' of m:1 is corrupt"):
        registry.attachment("m", 1, "compiled")
    registry.delete_version("m", 1)
    with pytest.raises(VersionNotFoundError):
        registry.attach("m", 1, "compiled", b"x")
    assert len(sha) == 64
    assert registry.verify() == []


def test_server_urls_are_shown_without_credentials(backend: Backend) -> None:
    reg = backend.open()
    for text in (str(reg.root), repr(reg), reg._repr_html_()):
        assert "md-test-password" not in text and "md-test-secret" not in text
    if backend.kind.startswith("postgres"):
        assert str(reg.root).startswith("postgresql://md@")


def test_a_server_registry_without_shared_artifacts_is_refused(pg_url: str) -> None:
    with pytest.raises(InvalidParameterError, match=r"artifacts='s3://bucket/prefix'"):
        ModelRegistry(pg_url)


def test_gc_measures_file_ages_on_the_stores_clock_not_the_hosts(tmp_path: Path) -> None:
    from modeldeploy.registry.stores import LocalArtifactStore

    store = LocalArtifactStore(tmp_path / "artifacts")
    probe = store.scratch_dir() / "probe"
    probe.write_bytes(b"x")
    assert abs(store.now() - probe.stat().st_mtime) < 60  # the file system's own clock
    assert list(store.scratch_dir().iterdir()) == [probe]  # the clock probe left nothing


def test_alias_events_read_from_the_latest_move_as_the_interface_says(
    registry: ModelRegistry, model: LogisticRegression
) -> None:
    from modeldeploy.registry.stores import MetadataStore

    for _ in range(3):
        registry.register("m", model)
    registry.promote("m", 1)
    registry.promote("m", 2)
    registry.record_event("m", "note", alias="production")
    registry.promote("m", 3)
    registry.rollback("m")
    registry.record_event("m", "note", alias="production", reason="after the rollback")
    registry.record_event("m", "note", alias="staging")  # never moved: every event naming it
    for alias in ("production", "staging", "absent"):
        fast = registry.metadata.alias_events("m", alias)
        assert fast == MetadataStore.alias_events(registry.metadata, "m", alias)
    latest = registry.metadata.alias_events("m", "production")
    assert [(e["kind"], e["version"]) for e in latest] == [("rolled_back", 2), ("note", None)]
    assert latest[1]["reason"] == "after the rollback"
