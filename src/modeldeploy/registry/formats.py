"""How models become bytes and back: joblib by default, skops without pickle, or your own.

A format is a [`Serializer`][modeldeploy.registry.formats.Serializer]: a ``name``, ``dump(model,
path)`` and ``load(data)``. Register one with
[`register_format`][modeldeploy.registry.formats.register_format] (or
``ModelRegistry(formats=[...])``) to store model kinds joblib handles badly, such as a torch module.
"""

from __future__ import annotations

import io
import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from modeldeploy.exceptions import InvalidParameterError, MissingDependencyError, SerializationError

__all__ = [
    "JoblibSerializer",
    "Serializer",
    "SkopsSerializer",
    "get_format",
    "register_format",
]


class Serializer(ABC):
    """Turns a model into a file and bytes back into a model.

    Subclass it, set `name`, implement [`dump`][modeldeploy.registry.formats.Serializer.dump] and
    [`load`][modeldeploy.registry.formats.Serializer.load], and register an instance with
    [`register_format`][modeldeploy.registry.formats.register_format].

    Examples
    --------
    >>> import pickle
    >>> from modeldeploy.registry.formats import Serializer, register_format
    >>> class PickleSerializer(Serializer):
    ...     name = "pickle"
    ...     def dump(self, model, path):
    ...         path.write_bytes(pickle.dumps(model))
    ...     def load(self, data):
    ...         return pickle.loads(data)
    >>> register_format(PickleSerializer())
    """

    #: The name stored with each version, used to find the serializer again at load time.
    name: str = ""

    @abstractmethod
    def dump(self, model: Any, path: Path) -> None:
        """Write ``model`` to the file ``path``."""

    @abstractmethod
    def load(self, data: bytes) -> Any:
        """Rebuild a model from the bytes [`dump`][modeldeploy.registry.formats.Serializer.dump]
        wrote (already sha256-verified)."""

    def check(self, path: Path) -> None:  # noqa: B027 - optional hook
        """Raise [`SerializationError`][modeldeploy.exceptions.SerializationError] when what
        [`dump`][modeldeploy.registry.formats.Serializer.dump] wrote to ``path`` could not be loaded
        back with this serializer's settings.

        The registry calls it at registration, before a version is created. The default trusts
        [`dump`][modeldeploy.registry.formats.Serializer.dump].
        """


class JoblibSerializer(Serializer):
    """joblib's pickle with efficient numpy arrays: the default, fast, for trusted models.

    Parameters
    ----------
    compress
        joblib compression level, 0 (none, fastest) to 9.
    """

    name = "joblib"

    def __init__(self, compress: int = 0) -> None:
        self.compress = compress

    def dump(self, model: Any, path: Path) -> None:
        import joblib  # about 30 ms to import: not with the package

        joblib.dump(model, path, compress=self.compress)

    def load(self, data: bytes) -> Any:
        import joblib

        return joblib.load(io.BytesIO(data))


class SkopsSerializer(Serializer):
    """skops' secure format: loads without pickle, trusting only known types.

    Types skops does not trust by default must be named in ``trusted``; loading a model with
    other types raises [`SerializationError`][modeldeploy.exceptions.SerializationError] listing
    them. Needs the ``[skops]`` extra.
    """

    name = "skops"

    def __init__(self, trusted: Sequence[str] = ()) -> None:
        self.trusted = list(trusted)

    @staticmethod
    def _sio() -> Any:
        try:
            import skops.io as sio
        except ImportError:
            raise MissingDependencyError("skops", "skops", "The 'skops' model format") from None
        return sio

    def dump(self, model: Any, path: Path) -> None:
        self._sio().dump(model, path)

    def _refuse_untrusted(self, types: Sequence[str], when: str) -> None:
        untrusted = [t for t in types if t not in self.trusted]
        if untrusted:
            raise SerializationError(
                f"{when}: the skops artifact contains types skops does not trust by default: "
                f"{untrusted}. Expected only trusted types, so it could not be loaded. If you "
                "trust them, register the format with them before registering or loading: "
                f"register_format(SkopsSerializer(trusted={untrusted!r})); or use "
                "format='joblib' for models you trust."
            )

    def check(self, path: Path) -> None:
        self._refuse_untrusted(
            self._sio().get_untrusted_types(file=path), "Refused to register this model"
        )

    def load(self, data: bytes) -> Any:
        sio = self._sio()
        self._refuse_untrusted(sio.get_untrusted_types(data=data), "Refused to load this model")
        return sio.loads(data, trusted=self.trusted or None)


_FORMATS: dict[str, Serializer] = {}
_LOCK = threading.Lock()


def register_format(serializer: Serializer) -> None:
    """Make ``serializer`` available to every registry in this process under its name."""
    if not isinstance(serializer, Serializer) or not serializer.name:
        raise InvalidParameterError(
            "The 'serializer' parameter of register_format must be a Serializer instance with "
            f"a non-empty name. Got {serializer!r} instead."
        )
    with _LOCK:
        _FORMATS[serializer.name] = serializer


def get_format(name: str) -> Serializer:
    """The serializer registered under ``name``."""
    try:
        return _FORMATS[name]
    except KeyError:
        known = ", ".join(sorted(_FORMATS))
        raise SerializationError(
            f"Unknown model format {name!r}. Known formats: {known}. Register a Serializer for "
            "it with modeldeploy.registry.formats.register_format(...)."
        ) from None


register_format(JoblibSerializer())
register_format(SkopsSerializer())
