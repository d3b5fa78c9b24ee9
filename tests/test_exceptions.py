from __future__ import annotations

import pytest

from modeldeploy.exceptions import (
    AliasNotFoundError,
    AuthenticityError,
    CorruptStoreError,
    IntegrityError,
    MissingDependencyError,
    ModelNotFoundError,
    PredictionTimeoutError,
    RegistryError,
    SchemaError,
    StoreUnavailableError,
    VersionNotFoundError,
)


def test_lookup_errors_are_key_errors_with_readable_messages() -> None:
    err = ModelNotFoundError("chrun", ["churn", "fraud"])
    assert isinstance(err, KeyError)
    assert str(err) == "No model named 'chrun' in the registry. Did you mean 'churn'?"
    assert err.name == "chrun"


def test_model_not_found_in_empty_registry_says_what_to_do() -> None:
    assert "register a model first" in str(ModelNotFoundError("x", []))


def test_version_not_found_lists_existing_versions() -> None:
    err = VersionNotFoundError("churn", 9, [1, 2, 3])
    assert "1, 2, 3" in str(err)
    assert (err.name, err.version) == ("churn", 9)


def test_alias_not_found_suggests_close_alias() -> None:
    assert "Did you mean 'production'?" in str(AliasNotFoundError("m", "prod", ["production"]))


def test_schema_error_is_value_error_with_context() -> None:
    err = SchemaError("bad", column="age", row=3)
    assert isinstance(err, ValueError)
    assert (err.column, err.row) == ("age", 3)


def test_timeout_is_builtin_timeout() -> None:
    with pytest.raises(TimeoutError):
        raise PredictionTimeoutError("slow")


def test_missing_dependency_names_the_extra() -> None:
    err = MissingDependencyError("tqdm", "progress", "A progress bar")
    assert isinstance(err, ImportError)
    assert "pip install 'modeldeploy[progress]'" in str(err)


def test_store_and_signing_errors_are_catchable_as_what_they_are() -> None:
    unavailable = StoreUnavailableError("locked", server="/r/registry.db")
    assert isinstance(unavailable, ConnectionError) and isinstance(unavailable, RegistryError)
    assert unavailable.server == "/r/registry.db"
    corrupt = CorruptStoreError("damaged", path="/r/registry.db")
    assert isinstance(corrupt, RegistryError) and corrupt.path == "/r/registry.db"
    forged = AuthenticityError("unsigned", name="m", version=2, alias="production")
    assert isinstance(forged, IntegrityError)
    assert (forged.name, forged.version, forged.alias) == ("m", 2, "production")
