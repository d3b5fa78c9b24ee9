"""The public API of the top-level package: one sorted ``__all__``, and nothing else public."""

from __future__ import annotations

import inspect

import pytest

import modeldeploy
import modeldeploy.exceptions


def test_all_equals_the_public_names_of_the_package() -> None:
    """Like httpx's tests/test_exported_members.py: every class, function and exception the
    package defines or re-exports is in ``__all__``, and ``__all__`` holds nothing else
    (``__version__`` aside). Subpackages and modules are reached as attributes but are not
    exported names; so are ``from __future__`` features. The names are imported on first
    use (PEP 562), so ``dir()`` lists them and ``getattr`` loads them."""
    public = sorted(
        name
        for name in dir(modeldeploy)
        if not name.startswith("_")
        and (inspect.isclass(obj := getattr(modeldeploy, name)) or inspect.isfunction(obj))
    )
    assert modeldeploy.__all__ == sorted([*public, "__version__"])


def test_all_is_sorted_and_complete() -> None:
    assert modeldeploy.__all__ == sorted(modeldeploy.__all__)
    for name in modeldeploy.__all__:
        assert hasattr(modeldeploy, name), name


def test_public_names() -> None:
    expected = {
        "Alert",
        "AliasNotFoundError",
        "BatchDeployer",
        "BatchResult",
        "Deployer",
        "DeploymentError",
        "Event",
        "HybridRouter",
        "IntegrityError",
        "ModelDeployError",
        "ModelNotFoundError",
        "ModelRegistry",
        "ModelVersion",
        "Monitor",
        "OnlineDeployer",
        "PredictionTimeoutError",
        "RetrainPolicy",
        "SchemaError",
        "Signature",
        "VersionNotFoundError",
        "__version__",
    }
    assert expected <= set(modeldeploy.__all__)


def test_names_load_on_first_use_and_are_the_modules_own() -> None:
    import modeldeploy.monitoring
    import modeldeploy.registry

    assert modeldeploy.Monitor is modeldeploy.monitoring.Monitor
    assert modeldeploy.ModelRegistry is modeldeploy.registry.ModelRegistry
    assert "Monitor" in vars(modeldeploy)  # loaded once, then a plain attribute
    with pytest.raises(AttributeError, match="NoSuchThing"):
        getattr(modeldeploy, "NoSuchThing")  # noqa: B009


def test_version_comes_from_package_metadata() -> None:
    from importlib.metadata import version

    assert modeldeploy.__version__ == version("modeldeploy")


def test_every_error_is_a_modeldeploy_error() -> None:
    for name in modeldeploy.exceptions.__all__:
        obj = getattr(modeldeploy.exceptions, name)
        if name.endswith("Error"):
            assert issubclass(obj, modeldeploy.exceptions.ModelDeployError), name
        else:
            assert issubclass(obj, modeldeploy.exceptions.ModelDeployWarning), name
