"""Errors and warnings raised by modeldeploy.

Every error is a [`ModelDeployError`][modeldeploy.exceptions.ModelDeployError], and each also
inherits the builtin exception a caller would naturally catch (``KeyError`` for a failed lookup,
``ValueError`` for bad data)::

    ModelDeployError
    ├── InvalidParameterError (ValueError, TypeError)  a bad argument to one of our functions
    ├── MissingDependencyError (ImportError)           an optional extra is not installed
    ├── RegistryError                                  anything the model registry refuses
    │   ├── ModelNotFoundError (KeyError)              unknown model name
    │   ├── VersionNotFoundError (KeyError)            unknown version of a known model
    │   ├── AliasNotFoundError (KeyError)              unknown alias of a known model
    │   ├── IntegrityError                             artifact missing or its sha256 differs
    │   │   └── AuthenticityError                      record unsigned or its HMAC differs
    │   ├── CorruptStoreError                          registry.db damaged, empty or foreign
    │   ├── SerializationError                         a model could not be saved or loaded
    │   ├── OperationRefusedError (RuntimeError)       e.g. deleting a version an alias uses
    │   └── StoreUnavailableError (ConnectionError)    a registry server could not be reached
    ├── SchemaError (ValueError)                       input does not match the Signature
    ├── StateFileError (ValueError)                    a saved state file is damaged or foreign
    ├── MergeError (ValueError)                        monitors that cannot be merged exactly
    └── DeploymentError (RuntimeError)                 a deployed model failed to answer
        └── PredictionTimeoutError (TimeoutError)      ... or did not answer in time

Warnings are [`ModelDeployWarning`][modeldeploy.exceptions.ModelDeployWarning] subclasses, so they
can be filtered as a family::

    ModelDeployWarning (UserWarning)
    ├── EnvironmentMismatchWarning   a model saved with other library versions than loaded with
    └── DriftWarning                 the data a model sees has drifted from its reference
"""

from __future__ import annotations

from collections.abc import Iterable
from difflib import get_close_matches

__all__ = [
    "AliasNotFoundError",
    "AuthenticityError",
    "CorruptStoreError",
    "DeploymentError",
    "DriftWarning",
    "EnvironmentMismatchWarning",
    "IntegrityError",
    "InvalidParameterError",
    "MergeError",
    "MissingDependencyError",
    "ModelDeployError",
    "ModelDeployWarning",
    "ModelNotFoundError",
    "OperationRefusedError",
    "PredictionTimeoutError",
    "RegistryError",
    "SchemaError",
    "SerializationError",
    "StateFileError",
    "StoreUnavailableError",
    "VersionNotFoundError",
]


def _suggest(word: str, candidates: Iterable[str]) -> str:
    """Return a sentence suggesting close matches of ``word``, or an empty string."""
    candidates = list(candidates)
    lowered = word.lower()
    partial = [c for c in candidates if lowered and (lowered in c.lower() or c.lower() in lowered)]
    close = list(dict.fromkeys(partial + get_close_matches(word, candidates, n=3, cutoff=0.6)))[:3]
    if not close:
        return ""
    quoted = ", ".join(repr(c) for c in close)
    return f" Did you mean {quoted}?"


class ModelDeployError(Exception):
    """Base class of every error raised by modeldeploy."""

    def __str__(self) -> str:
        # KeyError quotes its message; our subclasses of KeyError should read like any other error.
        return str(self.args[0]) if len(self.args) == 1 else super().__str__()


class InvalidParameterError(ModelDeployError, ValueError, TypeError):
    """An argument given to a modeldeploy function or class is invalid."""


class MissingDependencyError(ModelDeployError, ImportError):
    """An optional dependency is needed for this feature; the message names the extra."""

    def __init__(self, package: str, extra: str, feature: str) -> None:
        self.package = package
        self.extra = extra
        super().__init__(
            f"{feature} needs the optional package {package!r}, which is not installed. "
            f"Install it with: pip install 'modeldeploy[{extra}]'"
        )


class RegistryError(ModelDeployError):
    """Base class of the errors raised by [`ModelRegistry`][modeldeploy.ModelRegistry]."""


class ModelNotFoundError(RegistryError, KeyError):
    """No model of this name is registered."""

    def __init__(self, name: str, known: Iterable[str] = ()) -> None:
        self.name = name
        known = list(known)
        hint = _suggest(name, known) or (
            f" Registered models: {', '.join(map(repr, sorted(known)[:10]))}."
            if known
            else " The registry is empty: register a model first with registry.register(...)."
        )
        super().__init__(f"No model named {name!r} in the registry.{hint}")


class VersionNotFoundError(RegistryError, KeyError):
    """The model exists but has no such version (never registered, or deleted)."""

    def __init__(self, name: str, version: int, known: Iterable[int] = ()) -> None:
        self.name = name
        self.version = version
        versions = sorted(known)
        listed = ", ".join(map(str, versions[-10:])) if versions else "none"
        super().__init__(
            f"Model {name!r} has no version {version}. Existing versions: {listed}. "
            f"Use registry.versions({name!r}) to list them."
        )


class AliasNotFoundError(RegistryError, KeyError):
    """The model exists but no version carries this alias."""

    def __init__(self, name: str, alias: str, known: Iterable[str] = ()) -> None:
        self.name = name
        self.alias = alias
        known = list(known)
        hint = _suggest(alias, known) or (
            f" Its aliases are: {', '.join(map(repr, sorted(known)))}."
            if known
            else f" It has no aliases yet: set one with registry.promote({name!r}, VERSION, "
            f"alias={alias!r})."
        )
        super().__init__(f"Model {name!r} has no alias {alias!r}.{hint}")


class IntegrityError(RegistryError):
    """A stored artifact is missing or its sha256 differs from the one recorded at registration.

    Nothing is deserialized when this is raised.
    """

    def __init__(self, message: str, *, name: str | None = None, version: int | None = None):
        self.name = name
        self.version = version
        super().__init__(message)


class AuthenticityError(IntegrityError):
    """A version record or alias move is unsigned, or its HMAC does not match the signing key.

    Raised only by a registry given a signing key (``ModelRegistry(signing_key=...)`` or
    ``$MODELDEPLOY_SIGNING_KEY``): the metadata may have been changed by someone without the key.
    Nothing is loaded. Attributes: ``name``, ``version`` and, for an alias, ``alias``.
    """

    def __init__(
        self,
        message: str,
        *,
        name: str | None = None,
        version: int | None = None,
        alias: str | None = None,
    ):
        self.alias = alias
        super().__init__(message, name=name, version=version)


class CorruptStoreError(RegistryError):
    """The metadata store cannot be trusted to say what the registry holds.

    For example a ``registry.db`` that is not an SQLite database, is damaged, or is empty next to
    existing artifacts. Nothing was changed; the message names the file and how to recover.

    Attributes
    ----------
    path
        The damaged file.
    """

    def __init__(self, message: str, *, path: str) -> None:
        self.path = path
        super().__init__(message)


class SerializationError(RegistryError):
    """A model could not be serialized or deserialized with the chosen format."""


class OperationRefusedError(RegistryError, RuntimeError):
    """The registry refused an operation that would leave it inconsistent.

    For example deleting a version that an alias points at, or rolling back an alias that has
    no earlier version to go back to.
    """


class StoreUnavailableError(RegistryError, ConnectionError):
    """A registry server (the metadata database or the object store) could not be reached.

    Raised after a bounded number of retries; the message names the server (never a password).
    The operation that failed left nothing half-done: try it again once the server is back.

    Attributes
    ----------
    server
        The server's address, without credentials.
    """

    def __init__(self, message: str, *, server: str) -> None:
        self.server = server
        super().__init__(message)


class SchemaError(ModelDeployError, ValueError):
    """Input data does not match the model's [`Signature`][modeldeploy.Signature].

    Attributes
    ----------
    column
        The offending column (feature) name, when the problem is in one column.
    row
        The offending row index, when the problem is in one row.
    """

    def __init__(self, message: str, *, column: str | None = None, row: int | None = None):
        self.column = column
        self.row = row
        super().__init__(message)


class StateFileError(ModelDeployError, ValueError):
    """A saved state file (e.g. [`Monitor.save`][modeldeploy.Monitor.save]) cannot be read.

    It is truncated, damaged, or not a file of this kind; nothing is loaded from it.

    Attributes
    ----------
    path
        The file.
    """

    def __init__(self, message: str, *, path: str | None = None):
        self.path = path
        super().__init__(message)


class MergeError(ModelDeployError, ValueError):
    """Monitors that cannot be merged exactly ([`Monitor.combine`][modeldeploy.Monitor.combine]):
    count-based windows, different settings, or drift baselines that are not the same; nothing is
    merged.
    """


class DeploymentError(ModelDeployError, RuntimeError):
    """A deployed model failed to produce an answer; the cause is chained as ``__cause__``."""


class PredictionTimeoutError(DeploymentError, TimeoutError):
    """A prediction did not finish within the deployer's ``timeout_ms``."""


class ModelDeployWarning(UserWarning):
    """Base class of the warnings emitted by modeldeploy."""


class EnvironmentMismatchWarning(ModelDeployWarning):
    """A model is loaded with other library versions than the ones it was saved with."""


class DriftWarning(ModelDeployWarning):
    """The data a deployed model sees has drifted away from its reference."""
