"""Registering a version: checking the model and its signature, storing the artifact and record."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modeldeploy import _validation as val
from modeldeploy.exceptions import InvalidParameterError, SchemaError, SerializationError
from modeldeploy.registry._helpers import _OWNER, _artifact_key, _environment, _hash_file
from modeldeploy.registry._metadata import Record
from modeldeploy.registry.formats import Serializer
from modeldeploy.registry.signature import Signature
from modeldeploy.registry.version import ModelVersion, to_json_friendly, to_metrics, to_tags

if TYPE_CHECKING:
    from modeldeploy.registry.registry import ModelRegistry


def _check_signature(model: Any, sample: Any, signature: Signature | None) -> Signature | None:
    """The signature to register: ``signature``, inferred from ``sample``, or None; checked."""
    if not callable(getattr(model, "predict", None)):
        raise InvalidParameterError(
            f"The 'model' parameter of {_OWNER}.register must have a predict(X) method. "
            f"Got {type(model).__name__!r} instead."
        )
    if sample is not None and signature is not None:
        raise InvalidParameterError(
            f"Pass either 'sample' or 'signature' to {_OWNER}.register, not both."
        )
    if sample is not None:
        signature = Signature.infer(sample)
    if signature is not None and not isinstance(signature, Signature):
        raise InvalidParameterError(
            f"The 'signature' parameter of {_OWNER}.register must be a Signature or None. "
            f"Got {type(signature).__name__!r} instead."
        )
    expected = getattr(model, "n_features_in_", None)
    if signature is not None and isinstance(expected, int) and expected != signature.n_features:
        raise SchemaError(
            f"The model expects {expected} features but the sample has "
            f"{signature.n_features}. Pass the rows the model was trained on as 'sample'."
        )
    return signature


def _store_version(
    registry: ModelRegistry,
    name: str,
    model: Any,
    serializer: Serializer,
    format: str,
    *,
    signature: Signature | None,
    metrics: Mapping[str, Any] | None,
    params: Mapping[str, Any] | None,
    tags: Mapping[str, Any] | None,
    description: str,
    parent: int | None,
) -> Record:
    """Serialize ``model``, store its artifact and add the version; return the event record."""
    # Open the metadata store before writing any artifact: a database missing next to artifacts
    # then always means a lost database (the SQLite store refuses to open it as empty).
    registry.metadata  # noqa: B018
    # Checked before anything is written, so a bad value leaves no artifact behind.
    metrics = to_metrics(metrics, f"{_OWNER}.register")
    params = to_json_friendly(params)
    tags = to_tags(tags, f"{_OWNER}.register")
    scratch = registry.artifacts.scratch_dir()
    staging = Path(tempfile.mkdtemp(prefix="register-", dir=scratch))
    try:
        path = staging / "model"
        try:
            serializer.dump(model, path)
        except Exception as exc:
            raise SerializationError(
                f"Could not save the model with the {format!r} format: {exc}. Try another "
                "format, or register a Serializer for this kind of model."
            ) from exc
        # Before any version exists: a model its format would refuse to load is refused now.
        serializer.check(path)
        sha256, size = _hash_file(path)
        key = _artifact_key(sha256)
        registry.artifacts.put(key, path)
        record: Record = {
            "created_at": registry._stamp(),
            "sha256": sha256,
            "size": size,
            "format": format,
            "signature": json.dumps(signature.to_dict()) if signature is not None else None,
            "metrics": metrics,
            "params": params,
            "tags": tags,
            "description": description,
            "parent": parent,
            "environment": _environment(model),
        }

        def ensure_artifact() -> None:
            # Inside the transaction: a concurrent delete of an identical artifact may have
            # removed the file since the put above.
            if not registry.artifacts.exists(key):
                registry.artifacts.put(key, path)

        event = registry.metadata.add_version(name, record, before_commit=ensure_artifact)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return event


def _parent_version(
    registry: ModelRegistry, name: str, parent: int | ModelVersion | None
) -> int | None:
    """The number of a registration's ``parent`` version, checked to exist."""
    if parent is None:
        return None
    if isinstance(parent, ModelVersion):
        if parent.name != name:
            raise InvalidParameterError(
                f"The 'parent' of a version of {name!r} must be a version of the same model."
                f" Got {parent.ref} instead."
            )
        return parent.version
    number = val.check_version(parent, "parent", _OWNER)
    registry.metadata.get_version(name, number)  # raises when unknown
    return number
